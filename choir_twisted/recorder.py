"""Writes a session to disk as it goes, on a thread of its own.

``sessions/<id>/mix.flac``, one FLAC per singer aligned at chunk 0 (silence where
the singer had no audio) and ``session.json``. Blocks are buffered for about a
second before they are encoded, so a daemon killed mid-session loses at most the
last couple of seconds; session.json is rewritten atomically every few seconds.
The reactor only ever puts blocks on a bounded queue: a slow disk loses recording,
never the live session.
"""
import json
import os
import queue
import re
import threading
import time

import numpy as np
import soundfile
from twisted.logger import Logger

from choir_protocol.constants import FRAMES_PER_CHUNK, SAMPLE_RATE

FLUSH_CHUNKS = 86  # encode about once a second
SUMMARY_SECONDS = 5.0
QUEUE_BLOCKS = 4096  # about 2 minutes of 40 ms blocks
_STOP = object()


def _file_name(row: int, name: str, group: str) -> str:
    label = re.sub(r"[^\w.-]+", "_", f"{name}-{group}" if name else group or "singer").strip("_")
    return f"singer-{row + 1:03d}-{label[:60]}.flac"


class SessionRecorder:
    """One session's recording. ``write``/``update``/``close`` are for the reactor thread."""

    log = Logger()

    def __init__(self, directory: str, summary: dict):
        self.directory = directory
        os.makedirs(directory, exist_ok=True)
        self._queue: queue.Queue = queue.Queue(QUEUE_BLOCKS)
        self.dropped_blocks = 0
        self._summary = dict(summary)
        self._thread = threading.Thread(target=self._run, name=f"recorder {os.path.basename(directory)}",
                                        daemon=True)
        self._done = threading.Event()
        self._thread.start()

    def write(self, block, singers: list) -> None:
        """Queue a MixBlock; ``singers`` names the block's rows (dicts with name, group)."""
        self._put(("block", block, singers))

    def update(self, summary: dict) -> None:
        self._put(("summary", dict(summary)))

    def close(self, summary: dict) -> None:
        self._put(("summary", dict(summary)))
        self._queue.put(_STOP)  # must get through: it ends the thread

    def wait(self, timeout=None) -> bool:
        return self._done.wait(timeout)

    def _put(self, item) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.dropped_blocks += 1
            if self.dropped_blocks in (1, 100, 10000):
                self.log.error("Recorder of {dir} cannot keep up: {n} blocks lost",
                               dir=self.directory, n=self.dropped_blocks)

    # -- recorder thread ----------------------------------------------------------------

    def _run(self) -> None:
        files: list = []  # SoundFile per singer row, then the mix last
        mix = soundfile.SoundFile(os.path.join(self.directory, "mix.flac"), "w", SAMPLE_RATE, 1,
                                  "PCM_16", format="FLAC")
        pending: list = []
        pending_chunks = 0
        last_summary = 0.0
        try:
            while True:
                item = self._queue.get()
                if item is _STOP:
                    break
                if item[0] == "summary":
                    self._summary = item[1]
                    if time.monotonic() - last_summary > SUMMARY_SECONDS:
                        self._write_summary()
                        last_summary = time.monotonic()
                    continue
                _, block, singers = item
                while len(files) < len(singers):
                    row = len(files)
                    files.append(soundfile.SoundFile(
                        os.path.join(self.directory, _file_name(row, **singers[row])), "w",
                        SAMPLE_RATE, 1, "PCM_16", format="FLAC"))
                pending.append(block)
                pending_chunks += block.count
                if pending_chunks >= FLUSH_CHUNKS:
                    self._flush(pending, mix, files)
                    pending, pending_chunks = [], 0
            self._flush(pending, mix, files)
        except Exception:
            self.log.failure("Recorder of {dir} failed", dir=self.directory)
        finally:
            for f in files + [mix]:
                f.close()
            self._summary["files"] = sorted(n for n in os.listdir(self.directory) if n.endswith(".flac"))
            self._summary["recording_blocks_lost"] = self.dropped_blocks
            self._write_summary()
            self._done.set()

    @staticmethod
    def _flush(blocks: list, mix, files: list) -> None:
        if not blocks:
            return
        mix.write(np.concatenate([b.mix for b in blocks]).reshape(-1))
        for row, f in enumerate(files):
            # Rows join at check-in, before the first block: every track starts at chunk 0.
            f.write(np.concatenate([b.voices[:, row] if row < b.voices.shape[1]
                                    else np.zeros((b.count, FRAMES_PER_CHUNK), np.int16)
                                    for b in blocks]).reshape(-1))

    def _write_summary(self) -> None:
        path = os.path.join(self.directory, "session.json")
        with open(path + ".tmp", "w") as f:
            json.dump(self._summary, f, indent=2)
        os.replace(path + ".tmp", path)
