"""Writes a session to disk as it goes, on a thread of its own.

``sessions/<id>/mix.flac`` is encoded as the mix comes (flushed about once a
second); each singer's audio is journaled as received (see tracks.py) and becomes
``singer-NNN-<name>-<group>.flac``, aligned at chunk 0, when the session ends;
``session.json`` is rewritten atomically every few seconds and at the end. A
daemon killed mid-session loses at most the last second or two.

The reactor only ever puts items on a queue bounded in bytes: a disk that cannot
keep up loses recording (counted in session.json), never the live session.
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

from choir_protocol.constants import SAMPLE_RATE

from .tracks import JOURNAL_SUFFIX, convert_journals

FLUSH_SECONDS = 1.0
SUMMARY_SECONDS = 5.0
QUEUE_BYTES = 64 << 20  # about a minute of audio from 1000 singers
CONVERSION_NICENESS = 10  # the next session's live work comes first
_STOP = object()


def track_name(row: int, name: str, group: str) -> str:
    label = re.sub(r"[^\w.-]+", "_", f"{name}-{group}" if name else group or "singer").strip("_")
    return f"singer-{row + 1:03d}-{label[:60]}"


class SessionRecorder:
    """One session's recording. Its public methods are for the reactor thread."""

    log = Logger()

    def __init__(self, directory: str, summary: dict):
        self.directory = directory
        os.makedirs(directory, exist_ok=True)
        self.lost_bytes = 0
        self._summary = dict(summary, tracks="recording")
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._queued = 0  # bytes on the queue; changed under _lock
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._write_summary()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"recorder {os.path.basename(directory)}")
        self._thread.start()

    # -- reactor side -----------------------------------------------------------------

    def add_singer(self, row: int, name: str, group: str) -> None:
        self._put(("singer", row, track_name(row, name, group)), 0)

    def add_voices(self, batch: list) -> None:
        """``batch``: (row, chunks as they came on the wire)."""
        self._put(("voices", batch), sum(len(raw) for _, raw in batch))

    def add_mix(self, first_index: int, pcm: np.ndarray) -> None:
        self._put(("mix", first_index, pcm), pcm.nbytes)

    def update(self, summary: dict) -> None:
        self._put(("summary", dict(summary)), 0)

    def close(self, summary: dict) -> None:
        # these must get through, whatever the byte budget: they end the thread
        self._queue.put((("summary", dict(summary)), 0))
        self._queue.put(_STOP)

    def wait(self, timeout=None) -> bool:
        """Block until every file is written and closed (tracks converted)."""
        return self._done.wait(timeout)

    def _put(self, item, size: int) -> None:
        with self._lock:
            if self._queued + size > QUEUE_BYTES:
                self.lost_bytes += size
                if self.lost_bytes == size:
                    self.log.error("Recorder of {dir} cannot keep up: dropping audio",
                                   dir=self.directory)
                return
            self._queued += size
        self._queue.put((item, size))

    # -- recorder thread ----------------------------------------------------------------

    def _run(self) -> None:
        journals: dict = {}  # row -> open journal file
        pending_voices: dict = {}  # row -> [raw chunks], written at the next flush
        mix = soundfile.SoundFile(os.path.join(self.directory, "mix.flac"), "w", SAMPLE_RATE, 1,
                                  "PCM_16", format="FLAC")
        pending_mix: list = []
        last_flush = last_summary = time.monotonic()
        try:
            while (entry := self._queue.get()) is not _STOP:
                (kind, *args), size = entry
                with self._lock:
                    self._queued -= size
                if kind == "voices":
                    for row, raw in args[0]:
                        pending_voices[row].append(raw)
                elif kind == "mix":
                    pending_mix.append(args[1])
                elif kind == "singer":
                    row, name = args
                    journals[row] = open(os.path.join(self.directory, name + JOURNAL_SUFFIX), "wb")
                    pending_voices[row] = []
                elif kind == "summary":
                    self._summary.update(args[0])
                now = time.monotonic()
                if now - last_flush > FLUSH_SECONDS:
                    self._flush(pending_mix, mix, pending_voices, journals)
                    pending_mix, last_flush = [], now
                if now - last_summary > SUMMARY_SECONDS:
                    self._write_summary()
                    last_summary = now
            self._flush(pending_mix, mix, pending_voices, journals)
        except Exception:
            self.log.failure("Recorder of {dir} failed", dir=self.directory)
        finally:
            mix.close()
            for journal in journals.values():
                journal.close()
            self._summary["recording_lost_bytes"] = self.lost_bytes
            self._summary["tracks"] = "converting"
            self._write_summary()
            self._finish_tracks()
            self._done.set()

    @staticmethod
    def _flush(pending_mix: list, mix, pending_voices: dict, journals: dict) -> None:
        """One write per file per second: cheap, and at most a second to lose."""
        if pending_mix:
            mix.write(np.concatenate(pending_mix).reshape(-1))
        for row, runs in pending_voices.items():
            if runs:
                journals[row].write(b"".join(runs))
                journals[row].flush()
                runs.clear()

    def _finish_tracks(self) -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), CONVERSION_NICENESS)
        except (AttributeError, OSError):
            pass
        try:
            names = convert_journals(self.directory, self._summary.get("mix_chunks", 0))
            self._summary["tracks"] = "ready"
        except Exception:
            self.log.failure("Converting the tracks of {dir} failed", dir=self.directory)
            names, self._summary["tracks"] = [], "failed"
        self._summary["files"] = ["mix.flac"] + names
        self._write_summary()

    def _write_summary(self) -> None:
        path = os.path.join(self.directory, "session.json")
        with open(path + ".tmp", "w") as f:
            json.dump(self._summary, f, indent=2)
        os.replace(path + ".tmp", path)
