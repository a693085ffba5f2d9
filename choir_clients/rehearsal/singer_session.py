"""One rehearsal session as the sound card lives it, block by block (sans-IO).

The singer's duplex stream calls back once per 512-frame block. For that block the
client asks ``play()`` what to put in the speakers and hands the microphone's block
to ``record()``; the track comes in with ``add_track()`` / ``end_track()``. Out come
events (``take_events()``): above all ``VoiceChunk(index, samples)``, the audio
recorded while track chunk ``index`` was in the singer's ears.

Positions count samples of the stream since the session object was created, the
same count for what is played and what is recorded (the callback gives both for
the same period). With the calibrated round-trip latency ``L`` samples, a sound
played at output position ``p`` is heard by the microphone at input position
``p + L``. Each track chunk's output position is remembered when it is played, so
voice chunk ``i`` is the recorded samples ``[pos(i) + L, pos(i) + L + 512)``:
sample-exact, whatever ``L`` (1.1.3 only compensated whole chunks). Without
under-runs ``pos(i) = start + 512 i``. After the end of the track the session plays
silence until the tail of the last chunk is recorded, then says ``Finished``.

With ``voice`` (a recording sung instead of the microphone: ``choir-singer --input-file``),
voice chunk ``i`` is the recording's chunk ``i`` (silence past its end), sent when the
microphone's chunk would have been: the recording lines up with the track to the sample,
whatever the latency.

Playback waits until ``buffer_chunks`` chunks are queued (or the track has ended),
playing silence meanwhile. Once it has started, a block for which no chunk is
there (the track came later than its play time: ``LateChunk``) and a block the
device reports as an output under-run or input overflow (``DeviceUnderrun``) each
cost one error; beyond ``error_budget`` errors the session drops out
(``StoppedEarly``) and sends no more voice.

Not thread-safe: one thread (the audio callback) owns it.
"""
import collections

import attrs
import numpy as np

from choir_protocol.rehearsal.constants import CHUNKS_PER_SECOND, FRAMES_PER_CHUNK

BLOCK = FRAMES_PER_CHUNK
BUFFER_CHUNKS = int(CHUNKS_PER_SECOND)  # 86: 1.1.3's playback buffer (one second)
ERROR_BUDGET = 5  # 1.1.3's: sound-card errors forgiven in a session

_SILENCE = np.zeros((BLOCK, 2), np.float32)


@attrs.frozen(eq=False)
class VoiceChunk:
    index: int
    samples: np.ndarray  # (512,) float32, what the microphone recorded


@attrs.frozen
class PlaybackStarted:
    position: int  # output position of track chunk 0
    buffered: int  # chunks queued when it started


@attrs.frozen
class LateChunk:
    index: int  # the track chunk that was not there when it was due
    errors: int  # errors so far in this session


@attrs.frozen
class DeviceUnderrun:
    what: str  # "output under-run" or "input overflow"
    errors: int


@attrs.frozen
class StoppedEarly:
    reason: str


@attrs.frozen
class Finished:
    chunks: int  # voice chunks produced (the whole track)


class SingerSession:
    def __init__(self, latency_samples: int, *, buffer_chunks: int = BUFFER_CHUNKS,
                 error_budget: int = ERROR_BUDGET, voice: np.ndarray | None = None):
        if latency_samples < 0:
            raise ValueError("the latency cannot be negative")
        self.latency = int(latency_samples)
        self.voice = None if voice is None else np.asarray(voice, np.float32).reshape(-1)
        self.buffer_chunks = max(1, buffer_chunks)
        self.error_budget = error_budget
        self._queue = collections.deque()  # (512, 2) float32 blocks not played yet
        self.received = 0  # track chunks received
        self.track_ended = False
        self.started = False
        self.played = 0  # track chunks played
        self.positions = []  # output position of each played track chunk
        self.voiced = 0  # voice chunks produced
        self.errors = 0
        self.dropped = False
        self.finished = False
        self.out_position = 0  # samples played so far
        self.in_position = 0  # samples recorded so far
        self._input = np.zeros(0, np.float32)  # recorded samples from _input_start on
        self._input_start = 0
        self._events = []

    # -- the track (from the network) -----------------------------------------------------

    def add_track(self, index: int, stereo: np.ndarray) -> None:
        """Track chunk ``index`` (consecutive from 0): (512, 2) floats in [-1, 1)."""
        if index != self.received or self.track_ended:
            raise ValueError(f"track chunk {index} out of order (expected {self.received})")
        if stereo.shape != (BLOCK, 2):
            raise ValueError(f"a track chunk is ({BLOCK}, 2), not {stereo.shape}")
        self.received += 1
        if not self.dropped:
            self._queue.append(np.asarray(stereo, np.float32))

    def end_track(self) -> None:
        self.track_ended = True

    def drop_out(self, reason: str) -> None:
        """Stop here (Ctrl-C, lost connection, too many errors): silence, no more voice."""
        if not self.dropped and not self.finished:
            self.dropped = True
            self._queue.clear()
            self._events.append(StoppedEarly(reason))

    @property
    def buffered(self) -> int:
        return len(self._queue)

    @property
    def over(self) -> bool:
        return self.finished or self.dropped

    # -- the sound card --------------------------------------------------------------------

    def play(self, underflow: bool = False) -> np.ndarray:
        """The (512, 2) block to play next; ``underflow``: the device reported an output
        under-run with this period."""
        position = self.out_position
        self.out_position += BLOCK
        if self.over:
            return _SILENCE
        if not self.started:
            if len(self._queue) >= self.buffer_chunks or (self.track_ended and self._queue):
                self.started = True
                self._events.append(PlaybackStarted(position, len(self._queue)))
            elif self.track_ended:  # a track without audio
                self._finish()
                return _SILENCE
            else:
                return _SILENCE
        if underflow:
            self._error(DeviceUnderrun("output under-run", self.errors + 1))
            if self.dropped:
                return _SILENCE
        if self._queue:
            self.positions.append(position)
            self.played += 1
            return self._queue.popleft()
        if not self.track_ended:
            self._error(LateChunk(self.played, self.errors + 1))
        return _SILENCE  # a late chunk, or the tail after the end of the track

    def record(self, samples: np.ndarray, overflow: bool = False) -> None:
        """The next recorded block (512 samples, mono; (512, 1) is fine)."""
        samples = np.asarray(samples, np.float32).reshape(-1)
        self.in_position += len(samples)
        if self.over:
            return
        if overflow and self.started:
            self._error(DeviceUnderrun("input overflow", self.errors + 1))
            if self.dropped:
                return
        self._input = np.concatenate([self._input, samples])
        self._emit()
        # keep only what a coming voice chunk can still need
        if self.voiced < self.played:
            needed = self.positions[self.voiced] + self.latency
        else:
            needed = self.out_position + self.latency
        drop = min(max(0, needed - self._input_start), len(self._input))
        if drop:
            self._input = self._input[drop:]
            self._input_start += drop

    def take_events(self) -> list:
        events, self._events = self._events, []
        return events

    # -- inside ----------------------------------------------------------------------------

    def _emit(self) -> None:
        while self.voiced < self.played:
            begin = self.positions[self.voiced] + self.latency
            if begin + BLOCK > self.in_position:
                break
            offset = begin - self._input_start
            assert offset >= 0, "recorded samples dropped too early"
            if self.voice is None:
                samples = self._input[offset:offset + BLOCK].copy()
            else:
                samples = np.zeros(BLOCK, np.float32)
                piece = self.voice[self.voiced * BLOCK:(self.voiced + 1) * BLOCK]
                samples[:len(piece)] = piece
            self._events.append(VoiceChunk(self.voiced, samples))
            self.voiced += 1
        if self.track_ended and not self._queue and self.voiced == self.received:
            self._finish()

    def _finish(self) -> None:
        if not self.finished:
            self.finished = True
            self._events.append(Finished(self.voiced))

    def _error(self, event) -> None:
        self.errors += 1
        self._events.append(event)
        if self.errors > self.error_budget:
            self.drop_out(f"{self.errors} playback errors (more than {self.error_budget})")
