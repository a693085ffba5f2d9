"""Simulated sound cards, on a thread of their own, keeping the contract of ``devices``:
a card that hears what it played after a latency (EchoDevice, and choir-singer's
``--simulate`` card), a microphone that plays a file, and a silent card.
"""
import logging
import threading
import time

import numpy as np

from choir_protocol.rehearsal.constants import SAMPLE_RATE

from .audio import BLOCK, INPUT_CHANNELS, OUTPUT_CHANNELS, AudioDevice, AudioStream, StreamStatus
from .devices import BLOCK_SECONDS, CallbackStop, DeviceError

log = logging.getLogger(__name__)


class _SimulatedDevice(AudioDevice):
    """A device whose stream is a thread calling back with 512-frame blocks."""

    def __init__(self, realtime: bool = True, underrun_every: int | None = None):
        if underrun_every is not None and underrun_every < 1:
            raise ValueError("underrun_every must be a positive number of blocks")
        self.realtime = realtime
        self.underrun_every = underrun_every

    def open(self, callback, finished=None) -> AudioStream:
        return _ThreadStream(self, callback, finished)

    # What a simulated device does, block by block (called on the stream's thread).
    def _reset(self) -> None:
        """A new stream begins."""

    def _microphone(self, block: int, indata: np.ndarray) -> None:
        """Fill ``indata`` (512, 1) with what the microphone hears during ``block``."""
        raise NotImplementedError

    def _played(self, block: int, outdata: np.ndarray) -> None:
        """``outdata`` (512, 2) was played during ``block``."""


class _ThreadStream(AudioStream):
    def __init__(self, device: _SimulatedDevice, callback, finished):
        self.device = device
        self.error = None
        self.blocks = 0  # blocks called back so far
        self._callback = callback
        self._finished = finished
        self._lock = threading.Lock()
        self._thread = None
        self._stopping = threading.Event()
        self._closed = False
        self._opened = False

    @property
    def active(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def start(self) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the stream is closed")
            if self.active:
                return
            if not self._opened:
                self.device._reset()
                self._opened = True
            self._stopping = threading.Event()
            self._thread = threading.Thread(target=self._run, args=(self._stopping,),
                                            name=f"audio {self.device.name}", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        with self._lock:
            thread = self._thread
            self._stopping.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def close(self) -> None:
        self.stop()
        self._closed = True

    def _run(self, stopping: threading.Event) -> None:
        device = self.device
        indata = np.zeros((BLOCK, INPUT_CHANNELS), np.float32)
        outdata = np.zeros((BLOCK, OUTPUT_CHANNELS), np.float32)
        start = time.monotonic()
        first = self.blocks
        try:
            while not stopping.is_set():
                block = self.blocks
                if device.realtime:  # block k is due at start + k * 512 / 44100: no drift
                    delay = start + (block - first) * BLOCK_SECONDS - time.monotonic()
                    if delay > 0 and stopping.wait(delay):
                        break
                device._microphone(block, indata)
                outdata.fill(0)
                underrun = device.underrun_every is not None and (block + 1) % device.underrun_every == 0
                self.blocks += 1
                try:
                    self._callback(indata, outdata, StreamStatus(output_underflow=underrun))
                except CallbackStop:
                    device._played(block, outdata)
                    break
                device._played(block, outdata)
        except Exception as e:
            self.error = e
            log.exception("error in the audio callback: the stream stops")
        finally:
            if self._finished is not None:
                try:
                    self._finished()
                except Exception:
                    log.exception("error in the stream's finished callback")


class EchoDevice(_SimulatedDevice):
    """A simulated singer: the microphone hears what is played, ``latency_samples`` later.

    The microphone gets the mono mix (L + R) / 2 of what the callback played,
    delayed by exactly ``latency_samples`` stream positions (silence before),
    times ``gain``, plus white Gaussian noise of RMS ``noise`` (seeded by ``seed``).
    ``latency_samples`` must be at least 512 (see the module's docstring).
    ``realtime`` paces the blocks at 512 / 44100 s (absolute deadlines, no drift);
    without it the blocks follow each other as fast as the callback returns.
    ``underrun_every=n`` flags ``status.output_underflow`` on every n-th block
    (blocks n-1, 2n-1, ... counted from 0); the sound itself is not altered.
    """

    def __init__(self, latency_samples: int, gain: float = 1.0, noise: float = 0.0, seed: int = 0,
                 realtime: bool = True, underrun_every: int | None = None):
        super().__init__(realtime, underrun_every)
        latency_samples = int(latency_samples)
        if latency_samples < BLOCK:
            raise ValueError(f"latency_samples={latency_samples}: a duplex callback device cannot "
                             f"hear a block before it is played; the least latency is {BLOCK} samples")
        self.latency_samples = latency_samples
        self.gain = float(gain)
        self.noise = float(noise)
        self.seed = seed
        self.name = f"echo ({latency_samples} samples)"
        self._reset()

    def _reset(self) -> None:
        self._rng = np.random.default_rng(self.seed)
        # line[i] is the sound the microphone will hear at input position base + i
        self._line = np.zeros(self.latency_samples + BLOCK, np.float32)
        self._base = 0

    def _microphone(self, block: int, indata: np.ndarray) -> None:
        position = block * BLOCK
        if position != self._base:  # (only if a stream restarts after stop: keep the line in step)
            self._advance(position)
        indata[:, 0] = self._line[:BLOCK]
        if self.noise:
            indata[:, 0] += (self.noise * self._rng.standard_normal(BLOCK)).astype(np.float32)

    def _played(self, block: int, outdata: np.ndarray) -> None:
        position = block * BLOCK
        if position != self._base:
            self._advance(position)
        # played at positions [p, p + 512) -> heard at [p + latency, p + latency + 512)
        start = self.latency_samples
        self._line[start:start + BLOCK] = self.gain * (outdata[:, 0] + outdata[:, 1]) * np.float32(0.5)
        self._advance(position + BLOCK)

    def _advance(self, position: int) -> None:
        shift = position - self._base
        if shift <= 0:
            return
        if shift >= len(self._line):
            self._line[:] = 0
        else:
            self._line[:-shift] = self._line[shift:]
            self._line[-shift:] = 0
        self._base = position


class FileMicrophone(_SimulatedDevice):
    """A device whose microphone plays an audio file (44.1 kHz; mixed to mono), then
    silence; what the callback plays is discarded."""

    def __init__(self, path, realtime: bool = True, underrun_every: int | None = None):
        super().__init__(realtime, underrun_every)
        import soundfile
        try:
            data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        except (OSError, RuntimeError, soundfile.LibsndfileError) as e:
            raise DeviceError(f"cannot read {path}: {e}") from e
        if rate != SAMPLE_RATE:
            raise DeviceError(f"{path} is sampled at {rate} Hz: it must be {SAMPLE_RATE} Hz")
        self.path = path
        self.samples = data.mean(axis=1, dtype=np.float32)
        self.name = f"file {path}"

    @property
    def blocks(self) -> int:
        """How many blocks the file fills (the last one padded with silence)."""
        return -(-len(self.samples) // BLOCK)

    def _microphone(self, block: int, indata: np.ndarray) -> None:
        piece = self.samples[block * BLOCK:(block + 1) * BLOCK]
        indata[:len(piece), 0] = piece
        indata[len(piece):, 0] = 0


SIMULATED_NOISE = 0.001  # RMS of the simulated card's noise (-60 dBFS): a quiet room


def simulated_card_name(latency_ms: float) -> str:
    """The name of choir-singer's ``--simulate`` card, which keys its calibration."""
    return f"simulated {latency_ms:g} ms"


class SimulatedCard(EchoDevice):
    """choir-singer's ``--simulate LATENCY_MS`` card: an EchoDevice whose microphone hears
    what it played ``latency_ms`` later (rounded to the sample), plus a quiet noise, in
    real time. ``card_names`` is what its calibration is kept for."""

    def __init__(self, latency_ms: float, noise: float = SIMULATED_NOISE, seed=None):
        super().__init__(round(latency_ms * SAMPLE_RATE / 1000), noise=noise, seed=seed)
        self.latency_ms = latency_ms
        self.name = simulated_card_name(latency_ms)
        self.card_names = (self.name, self.name)


class SilentCard(_SimulatedDevice):
    """A card that hears silence and plays into nothing, paced in real time like a real
    one: what choir-singer runs on when a recording replaces the microphone."""

    def __init__(self, name: str = "no sound card", realtime: bool = True):
        super().__init__(realtime)
        self.name = name
        self.card_names = (name, name)

    def _microphone(self, block: int, indata: np.ndarray) -> None:
        indata.fill(0)
