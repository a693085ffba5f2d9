"""Writes a session to disk as it goes, on a thread of its own.

``sessions/<id>/mix.flac`` is encoded as the mix comes (flushed about once a
second); each singer's audio is journaled as received (see tracks.py) and becomes
``singer-NNN-<name>-<group>.flac``, aligned at chunk 0, when the session ends;
``session.json`` is rewritten atomically every few seconds and at the end. A
daemon killed mid-session loses at most the last second or two.

The reactor only ever puts items on a queue bounded in bytes: a disk that cannot
keep up loses recording (counted in session.json), never the live session.
"""
import os
import queue
import re
import threading
import time

import attrs
import numpy as np
import soundfile
from twisted.logger import Logger

from choir_protocol.rehearsal.constants import SAMPLE_RATE
from choir_protocol.rehearsal.session_summary import RECORDING, SessionSummary

from .summary_file import write_summary, write_summary_anyhow
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

    def __init__(self, directory: str, summary: SessionSummary):
        self.directory = directory
        self.lost_bytes = 0
        # why writing stopped (e.g. "No space left on device"), set once by either thread;
        # the room reads it at its next sweep and ends the session
        self.failed: str | None = None
        self._summary = attrs.evolve(summary, tracks=RECORDING)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._queued = 0  # bytes on the queue; changed under _lock
        self._lock = threading.Lock()
        self._done = threading.Event()
        try:
            os.makedirs(directory, exist_ok=True)
            self._write_summary()
        except OSError as e:
            self._fail(e)
            self._done.set()  # nothing more will be written
            return
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

    def update(self, summary: SessionSummary) -> None:
        self._put(("summary", summary), 0)

    def close(self, summary: SessionSummary) -> None:
        # these must get through, whatever the byte budget: they end the thread
        self._queue.put((("summary", summary), 0))
        self._queue.put(_STOP)

    def wait(self, timeout=None) -> bool:
        """Block until every file is written and closed (tracks converted)."""
        return self._done.wait(timeout)

    @property
    def done(self) -> bool:
        """``wait`` would return at once: the summary below is the last word."""
        return self._done.is_set()

    @property
    def summary(self) -> SessionSummary:
        """What session.json says (or would, on a disk that refused it); final once done."""
        return self._summary

    def _put(self, item, size: int) -> None:
        if self.failed is not None:
            return
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

    def _fail(self, error: OSError) -> None:
        if self.failed is None:
            self.failed = error.strerror or str(error)
            self.log.error("Recording {dir} stopped: {why}", dir=self.directory, why=self.failed)

    def _run(self) -> None:
        journals: dict = {}  # row -> open journal file
        pending_voices: dict = {}  # row -> [raw chunks], written at the next flush
        mix = None
        pending_mix: list = []
        last_flush = last_summary = time.monotonic()
        try:
            try:
                mix = soundfile.SoundFile(os.path.join(self.directory, "mix.flac"), "w",
                                          SAMPLE_RATE, 1, "PCM_16", format="FLAC")
            except (OSError, RuntimeError) as e:  # libsndfile's errors are RuntimeErrors
                self._fail(e if isinstance(e, OSError) else OSError(None, str(e)))
            while (entry := self._queue.get()) is not _STOP:
                (kind, *args), size = entry
                with self._lock:
                    self._queued -= size
                if kind == "summary":  # the room's part: the recorder's own fields stay
                    self._summary = attrs.evolve(args[0], tracks=self._summary.tracks)
                if self.failed is not None:
                    continue  # drain the queue: the room ends the session
                try:
                    if kind == "voices":
                        for row, raw in args[0]:
                            pending_voices[row].append(raw)
                    elif kind == "mix":
                        pending_mix.append(args[1])
                    elif kind == "singer":
                        row, name = args
                        journals[row] = open(os.path.join(self.directory, name + JOURNAL_SUFFIX),
                                             "wb")
                        pending_voices[row] = []
                    now = time.monotonic()
                    if now - last_flush > FLUSH_SECONDS:
                        self._flush(pending_mix, mix, pending_voices, journals)
                        pending_mix, last_flush = [], now
                    if now - last_summary > SUMMARY_SECONDS:
                        self._write_summary()
                        last_summary = now
                except (OSError, RuntimeError) as e:  # a full or failing disk
                    self._fail(e if isinstance(e, OSError) else OSError(None, str(e)))
            if self.failed is None:
                self._flush(pending_mix, mix, pending_voices, journals)
        except Exception as e:
            self.log.failure("Recorder of {dir} failed", dir=self.directory)
            self.failed = self.failed or f"recorder error: {e}"
        finally:
            self._close_all(mix, journals)
            self._done.set()

    def _close_all(self, mix, journals: dict) -> None:
        """Every file closed and session.json written, as far as the disk allows: never raises,
        so ``wait`` always returns (a stop would otherwise hang on a full disk)."""
        for file in ([mix] if mix is not None else []) + list(journals.values()):
            try:
                file.close()
            except (OSError, RuntimeError) as e:
                self._fail(e if isinstance(e, OSError) else OSError(None, str(e)))
        self._summary = attrs.evolve(self._summary, recording_lost_bytes=self.lost_bytes,
                                     recording_failed=self.failed, tracks="converting")
        try:
            self._write_summary()
        except OSError as e:
            self._fail(e)
        self._finish_tracks()

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
        if self.failed is not None:
            # the disk is full or failing: the journals stay, and the daemon's next start
            # converts them (recovery), with the space freed by then
            self._summary = attrs.evolve(self._summary, tracks="pending", files=("mix.flac",))
            self._write_summary_anyhow()
            return
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), CONVERSION_NICENESS)
        except (AttributeError, OSError):
            pass
        try:
            names, tracks = convert_journals(self.directory, self._summary.mix_chunks), "ready"
        except (OSError, RuntimeError) as e:  # the disk filled up while converting
            self.log.error("Converting the tracks of {dir} stopped: {why}", dir=self.directory,
                           why=getattr(e, "strerror", None) or e)
            names, tracks = [], "pending"
        except Exception:
            self.log.failure("Converting the tracks of {dir} failed", dir=self.directory)
            names, tracks = [], "failed"
        self._summary = attrs.evolve(self._summary, tracks=tracks, files=("mix.flac", *names))
        self._write_summary_anyhow()

    def _write_summary_anyhow(self) -> None:
        try:
            write_summary_anyhow(self.directory, self._summary)
        except OSError as e:
            self.log.error("Cannot write {dir}/session.json: {why}", dir=self.directory,
                           why=e.strerror)

    def _write_summary(self) -> None:
        write_summary(self.directory, self._summary)
