"""What the director sends and hears: the backing track or the microphone, and the choir
played on a sound device.

The sources hand ``DirectorClientProtocol`` one 512-frame stereo int16 chunk at a time; the Player
plays the mix, 1.1.3's way. Each opens only the direction it uses (the microphone for
``--live``, the speakers for playback), so a machine without a microphone can play the
choir. ``simulated_card`` stands in for a sound card with ``--simulate``.
"""
import collections
import queue

import numpy as np
from twisted.internet import defer

from choir_protocol.rehearsal.constants import CHUNKS_PER_SECOND, FRAMES_PER_CHUNK

PLAYBACK_BUFFER_CHUNKS = int(2 * CHUNKS_PER_SECOND)  # 1.1.3's director: 2 s before playing
SIMULATED_HISS = 0.003  # RMS of the simulated microphone's noise, about -50 dBFS


def simulated_card(**_devices):
    """A sound card that is not there (``--simulate``): it keeps real time, plays into
    nothing, and its microphone hears a quiet hiss."""
    from .simulated_devices import EchoDevice
    card = EchoDevice(FRAMES_PER_CHUNK, gain=0.0, noise=SIMULATED_HISS)
    card.name = "simulated sound card"
    return card


# -- what is sent ----------------------------------------------------------------------

END = object()  # a source has nothing more to send


class TrackSource:
    """A backing track, loaded: chunks on demand."""

    live = False

    def __init__(self, track: np.ndarray):
        self.track = track
        self.total_chunks = len(track) // FRAMES_PER_CHUNK
        self.closed = False
        self.on_data = None

    def take(self, index: int):
        if self.closed or index >= self.total_chunks:
            return END
        return self.track[index * FRAMES_PER_CHUNK:(index + 1) * FRAMES_PER_CHUNK]

    def monitor(self, index: int):
        """Chunk ``index`` down-mixed to mono, float (1.0 = full scale), for the speakers."""
        if index >= self.total_chunks:
            return None
        chunk = self.track[index * FRAMES_PER_CHUNK:(index + 1) * FRAMES_PER_CHUNK]
        return chunk.astype(np.float32).mean(axis=1) / 32768.0

    def start(self):
        pass

    def close(self):
        self.closed = True


class LiveSource:
    """The microphone, through the device layer: chunks arrive in real time."""

    live = True
    total_chunks = None

    def __init__(self, reactor, device):
        self.reactor = reactor
        self.device = device
        self.pending = collections.deque()
        self.closed = False
        self.on_data = None  # called on the reactor thread when a chunk arrives
        self.stream = None

    def start(self):
        self.stream = self.device.open(self._callback)
        self.stream.start()

    def _callback(self, indata, outdata, status):  # the device's thread
        outdata.fill(0)
        pcm = np.clip(np.rint(indata[:, 0] * 32768.0), -32768, 32767).astype("<i2")
        self.reactor.callFromThread(self._arrived, np.repeat(pcm[:, None], 2, axis=1))

    def _arrived(self, chunk):
        if not self.closed:
            self.pending.append(chunk)
            if self.on_data is not None:
                self.on_data()

    def take(self, index: int):
        if self.pending:
            return self.pending.popleft()
        return END if self.closed else None

    def monitor(self, index: int):
        return None

    def close(self):
        if not self.closed:
            self.closed = True
            self.pending.clear()
            if self.stream is not None:
                self.stream.close()


# -- what the director hears -----------------------------------------------------------

class Player:
    """Plays the mix on a sound device, 1.1.3's way: 2 s of buffer before starting (again
    after an under-run). Chunks go from the reactor thread to the audio thread through a
    thread-safe queue."""

    def __init__(self, reactor, device, buffer_chunks=PLAYBACK_BUFFER_CHUNKS):
        self.reactor = reactor
        self.device = device
        self.buffer_chunks = buffer_chunks
        self.queue = queue.Queue()
        self.finished = defer.Deferred()
        self.playing = False
        self.all_in = False
        self.underruns = 0
        self.played = 0
        self.stream = None
        from .devices import CallbackStop
        self._callback_stop = CallbackStop

    def start(self):
        self.stream = self.device.open(self._callback, finished=self._finished)
        self.stream.start()

    def feed(self, samples: np.ndarray):
        self.queue.put(samples)

    def end(self):
        self.all_in = True
        self.queue.put(None)

    def _callback(self, indata, outdata, status):  # the device's thread
        if not self.playing:
            if self.all_in or self.queue.qsize() >= self.buffer_chunks:
                self.playing = True
            else:
                outdata.fill(0)
                return
        try:
            samples = self.queue.get_nowait()
        except queue.Empty:
            self.playing = False  # re-buffer
            self.underruns += 1
            outdata.fill(0)
            return
        if samples is None:
            outdata.fill(0)
            raise self._callback_stop
        outdata[:, 0] = samples
        outdata[:, 1] = samples
        self.played += 1

    def _finished(self):  # the device's thread, or the one that stopped it
        self.reactor.callFromThread(self._fire_finished)

    def _fire_finished(self):
        if not self.finished.called:
            self.finished.callback(None)

    def close(self):
        if self.stream is not None:
            self.stream.close()
            self.stream = None
