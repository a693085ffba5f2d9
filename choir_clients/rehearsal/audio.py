"""The audio-device layer: one interface, a real device and simulated ones.

A device opens a duplex *stream*: once per block of 512 frames it calls
``callback(indata, outdata, status)`` on a thread of its own, with ``indata`` the
microphone (512, 1) float32 and ``outdata`` the (512, 2) float32 block to play,
to be filled by the callback. This is sounddevice's own callback contract, so the
real device is a thin wrapper and the client code is the same for both kinds.
Values are floats in [-1, 1); 1.0 is 16-bit full scale (32768).
"""
import abc

import attrs
import numpy as np

from choir_protocol.rehearsal.constants import FRAMES_PER_CHUNK, SAMPLE_RATE

BLOCK = FRAMES_PER_CHUNK
INPUT_CHANNELS = 1
OUTPUT_CHANNELS = 2


@attrs.frozen
class StreamStatus:
    """What the device reports with a block (sounddevice's CallbackFlags, simplified)."""

    input_overflow: bool = False
    output_underflow: bool = False

    def __bool__(self) -> bool:
        return self.input_overflow or self.output_underflow


class AudioStream(abc.ABC):
    """A running (or ready) duplex stream; ``close`` stops it for good."""

    @abc.abstractmethod
    def start(self) -> None: ...

    @abc.abstractmethod
    def stop(self) -> None: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()


class AudioDevice(abc.ABC):
    """Where sound goes in and out: ``open(callback)`` returns an AudioStream."""

    name: str = "device"
    sample_rate: int = SAMPLE_RATE

    @abc.abstractmethod
    def open(self, callback) -> AudioStream: ...


def to_pcm16(block: np.ndarray) -> bytes:
    """Float samples -> 16-bit little-endian PCM, saturating."""
    return np.clip(np.rint(block * 32768.0), -32768, 32767).astype("<i2").tobytes()


def from_pcm16(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, "<i2").astype(np.float32) / 32768.0
