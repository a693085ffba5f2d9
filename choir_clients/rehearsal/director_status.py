"""What the director sees while a session runs: one status line (progress, time, singers in
the mix, mix level), shown by the terminal's ``LineRenderer``."""
import math

import numpy as np

from . import media
from .director_connection import chunk_seconds
from .terminal import LineRenderer


class DirectorStatus:
    """The director's status line: rewritten in place on a terminal; elsewhere (a log, a
    pipe) printed as a line every ``interval`` seconds."""

    WIDTH = 24

    def __init__(self, out, total_chunks=None, tty=None, interval=5.0):
        self.display = LineRenderer(out, tty=tty, interval=interval)
        self.total_chunks = total_chunks
        self.received = 0
        self.singers = None
        self.level = None

    @property
    def tty(self) -> bool:
        return self.display.tty

    @property
    def interval(self) -> float:
        return self.display.interval

    @interval.setter
    def interval(self, seconds: float):
        self.display.interval = seconds

    def render(self) -> str:
        elapsed = media.format_time(chunk_seconds(self.received))
        if self.total_chunks:
            filled = int(self.WIDTH * min(1.0, self.received / self.total_chunks))
            bar = "[" + "#" * filled + "-" * (self.WIDTH - filled) + "]"
            position = f"{bar} {elapsed} / {media.format_time(chunk_seconds(self.total_chunks))}"
        else:
            position = f"live {elapsed}"
        singers = "?" if self.singers is None else str(self.singers)
        if self.level is None:
            level = "   - dBFS"
        elif self.level == -math.inf:
            level = "-inf dBFS"
        else:
            level = f"{self.level:5.1f} dBFS"
        return f"{position}  singers: {singers}  mix: {level}"

    def update(self, force=False):
        self.display.status(self.render(), force=force)

    def note(self, message: str):
        """A message on a line of its own."""
        self.display.note(message)

    def clear(self):
        """Take the status line off the screen (a terminal), e.g. when nothing happened."""
        self.display.clear()

    def finish(self):
        self.display.status(self.render(), force=True)
        self.display.close()


def level_dbfs(pcm: bytes) -> float:
    """RMS level of a mix chunk in dB full scale (a full-scale sine is -3 dBFS)."""
    samples = np.frombuffer(pcm, "<i2").astype(np.float64)
    rms = math.sqrt(float(np.mean(samples * samples))) if len(samples) else 0.0
    return 20 * math.log10(rms / 32768.0) if rms > 0 else -math.inf
