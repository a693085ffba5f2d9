"""A live status line for terminal programs.

On a terminal the status line is rewritten in place (``\\r``); anything else (a log
file, a pipe) gets a status line every ``interval`` seconds instead. Notes (state
changes, warnings) are printed on lines of their own on both.
"""
import math
import shutil
import sys
import time

SILENCE_DB = -90.0


def dbfs(samples, gain: float = 1.0) -> float:
    """Peak level of float samples (1.0 = full scale), times ``gain``, in dB full scale."""
    import numpy as np

    peak = float(np.max(np.abs(samples))) * gain if len(samples) else 0.0
    return 20 * math.log10(peak) if peak > 1e-9 else SILENCE_DB


def level_bar(db: float | None, width: int = 20, floor: float = -60.0) -> str:
    """``[#########.........] -23 dBFS``: a meter from ``floor`` to 0 dBFS."""
    if db is None:
        return "[" + " " * width + "]    - dBFS"
    filled = int(round(width * min(1.0, max(0.0, (db - floor) / -floor))))
    bar = "#" * filled + "." * (width - filled)
    if db >= -0.5:
        bar = bar[:-1] + "!"  # clipping
    shown = "-inf" if db <= SILENCE_DB else f"{db:4.0f}"
    return f"[{bar}] {shown} dBFS"


class LineRenderer:
    def __init__(self, stream=None, *, tty: bool | None = None, interval: float = 5.0,
                 clock=time.monotonic):
        self.stream = stream if stream is not None else sys.stdout
        if tty is None:
            isatty = getattr(self.stream, "isatty", None)
            tty = bool(isatty and isatty())
        self.tty = tty
        self.interval = interval
        self.clock = clock
        self._line = ""  # the status line on screen (tty) or last printed
        self._last_print = None

    def _width(self) -> int:
        return max(20, shutil.get_terminal_size((100, 24)).columns - 1)

    def status(self, text: str, force: bool = False) -> None:
        """The live line: redrawn on a terminal, printed every ``interval`` s otherwise
        (at once when ``force``)."""
        if self.tty:
            text = text[:self._width()]
            if text != self._line:
                self.stream.write("\r" + text + "\x1b[K")
                self.stream.flush()
                self._line = text
            return
        now = self.clock()
        if force or self._last_print is None or now - self._last_print >= self.interval:
            self.stream.write(text + "\n")
            self.stream.flush()
            self._line, self._last_print = text, now

    def note(self, text: str) -> None:
        """A line of its own (kept in the scroll-back), the status line redrawn below it."""
        if self.tty:
            self.stream.write("\r\x1b[K" + text + "\n")
            if self._line:
                self.stream.write(self._line)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def clear(self) -> None:
        """Take the status line off the screen (a terminal), e.g. when nothing happened."""
        if self.tty and self._line:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
        self._line = ""

    def close(self) -> None:
        """Leave the cursor on a fresh line."""
        if self.tty and self._line:
            self.stream.write("\n")
            self.stream.flush()
        self._line = ""
