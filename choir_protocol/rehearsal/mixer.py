"""The synchronised mixer of one session.

Singers' chunks are mixed by index, never by arrival time, so network delay and
jitter move nobody in the mix. The driver feeds chunks in as they arrive and calls
``mix(now)`` once per tick; each call returns every mix chunk that has become due
as one ``MixBlock``, which carries both the mix and each singer's aligned audio
(for the recorder), so the arithmetic runs over all singers at once.

Rules (1.1.3's where they are right):

* Chunk *m* is due when every active singer has delivered it, or when the fastest
  singer is ``window`` chunks past it (the late singers are left out of *m*).
* Before the first chunk goes out, singers who were invited but have not checked
  in yet also hold the mix back; a check-in after that is refused.
* At the end of the track the fastest singer cannot get further ahead, so the
  leader is taken to advance in real time from the moment it delivered the last
  chunk: the slower singers get the same window at the end as anywhere else.
  (1.1.3 closed the mix as soon as the fastest singer was done.)
* Each singer contributes ``gain / n`` where *n* counts the singers present in
  that chunk, so the mix keeps its level when a singer leaves or stalls. (1.1.3
  froze *n* at the start, so the mix dropped when someone left.) A singer who
  leaves while its last chunks are still queued fades out over up to
  ``ramp_chunks`` while the others' share rises in step: a unison mix stays
  exactly level. Any other change of *n* is smoothed over one chunk.
* Sums saturate at 16 bits; they never wrap around.
"""
from collections import deque
import enum

import attrs
import numpy as np

from ..errors import ProtocolError
from .adpcm import MonoDecoder
from .constants import CHUNKS_PER_SECOND, FRAMES_PER_CHUNK, MIX_WINDOW_CHUNKS

PCM = np.dtype("<i2")
RAMP_CHUNKS = 22  # about 0.25 s
# Chunks mixed in one pass at most: a backlog is caught up over several passes, so
# a pass never stalls the caller (the reactor) and its arrays stay in cache.
MAX_PASS_CHUNKS = 16


class MixState(enum.Enum):
    WAITING = "waiting"  # no mix chunk out yet
    MIXING = "mixing"
    DONE = "done"  # every chunk of the track has been mixed
    ABORTED = "aborted"  # nobody (left) to mix


class VoiceState(enum.Enum):
    INVITED = "invited"  # chunk 0 sent, no check-in yet
    ACTIVE = "active"
    REFUSED = "refused"  # checked in after the mix started
    LEFT = "left"  # dropped out (-2), disconnected, or broke the protocol


class Voice:
    """One singer's part in the session. Created by ``Mixer.invite``."""

    __slots__ = ("key", "name", "group", "state", "row", "gain", "next_index", "_queue",
                 "_queue_start", "_decoder", "delivered", "late", "missing", "left_at", "reason")

    def __init__(self, key, name, group, gain):
        self.key = key
        self.name = name
        self.group = group
        self.gain = gain
        self.state = VoiceState.INVITED
        self.row = -1  # column in MixBlock.voices, set at check-in
        self.next_index = 0  # next chunk index expected from the singer
        self._queue = deque()  # ADPCM payloads not mixed yet
        self._queue_start = 0  # index of _queue[0]
        self._decoder = MonoDecoder()
        self.delivered = 0
        self.late = 0  # chunks that came after their mix chunk went out
        self.missing = 0  # mix chunks that went out without this singer
        self.left_at = None  # first index not delivered, once it left
        self.reason = ""

    @property
    def active(self) -> bool:
        return self.state is VoiceState.ACTIVE


@attrs.frozen(eq=False)
class MixBlock:
    first_index: int
    mix: np.ndarray  # (k, 512) int16 little-endian: the mix sent to the director
    voices: np.ndarray  # (k, rows, 512) int16: each singer aligned at its row, zeros where missing

    @property
    def count(self) -> int:
        return len(self.mix)


class Mixer:
    def __init__(self, *, window: int = MIX_WINDOW_CHUNKS, monitor_level: float = 0.0,
                 ramp_chunks: int = RAMP_CHUNKS):
        self.window = window
        self.monitor_level = monitor_level
        self.state = MixState.WAITING
        self.voices: dict = {}  # key -> Voice, every voice invited to this session
        self._rows: list[Voice] = []  # checked-in voices by row
        self._active: list[Voice] = []
        self._invited = 0  # voices still INVITED
        self.next_mix = 0  # index of the next mix chunk
        self.track_chunks = 0  # director chunks seen so far
        self.end_index = None  # last chunk of the track, once the director said so
        self._tip_done_at = None  # when the fastest singer delivered end_index
        self._monitor = deque()  # mono int16 of director chunks next_mix.., when monitoring
        self._ramp_chunks = ramp_chunks
        self._fades: list = []  # (voice, first faded index, left_at) of leavers still queued
        self._last_norm = None  # normalisation at the last sample mixed

    # -- membership ------------------------------------------------------------------

    def invite(self, key, name: str = "", group: str = "", gain: float = 1.0) -> Voice:
        if self.state is not MixState.WAITING or key in self.voices:
            raise ValueError(f"cannot invite {key!r} now")
        voice = Voice(key, name, group, gain)
        self.voices[key] = voice
        self._invited += 1
        return voice

    def check_in(self, voice: Voice) -> bool:
        """Take a singer into the mix; False if it comes too late (refused)."""
        if voice.state is not VoiceState.INVITED:
            raise ProtocolError(f"check-in while {voice.state.value}")
        self._invited -= 1
        if self.state is not MixState.WAITING:
            voice.state = VoiceState.REFUSED
            voice.reason = "checked in after the mix started"
            return False
        voice.state = VoiceState.ACTIVE
        voice.row = len(self._rows)
        self._rows.append(voice)
        self._active.append(voice)
        return True

    def leave(self, voice: Voice, reason: str) -> None:
        """The singer is out from now on; what it already sent is still mixed."""
        if voice.state is VoiceState.INVITED:
            self._invited -= 1
        elif voice.state is VoiceState.ACTIVE:
            self._active.remove(voice)
            voice.left_at = voice.next_index
            if voice.left_at > self.next_mix:  # its last chunks are queued: fade them out
                self._fades.append((voice, max(self.next_mix, voice.left_at - self._ramp_chunks),
                                    voice.left_at))
        else:
            return
        voice.state = VoiceState.LEFT
        voice.reason = reason

    def set_gain(self, voice: Voice, gain: float) -> None:
        voice.gain = float(gain)

    # -- input -----------------------------------------------------------------------

    def add_track(self, index: int, monitor_pcm: bytes | None = None) -> None:
        """The director's chunk ``index`` went out to the singers."""
        if index != self.track_chunks or self.end_index is not None:
            raise ProtocolError(f"director chunk {index} out of order (expected {self.track_chunks})")
        self.track_chunks += 1
        if self.monitor_level:
            self._monitor.append(monitor_pcm)

    def end_track(self) -> None:
        if self.end_index is None:
            self.end_index = self.track_chunks - 1

    def add_audio(self, voice: Voice, first_index: int, payloads: list) -> None:
        """Consecutive ADPCM payloads from one singer, starting at ``first_index``.

        The caller has checked the order; here the index is checked against the
        track: a singer cannot sing what it has not heard.
        """
        last = first_index + len(payloads) - 1
        if last >= self.track_chunks:
            raise ProtocolError(f"singer sent chunk {last} before the director sent it")
        if first_index != voice.next_index:
            raise ProtocolError(f"singer sent chunk {first_index}, expected {voice.next_index}")
        voice.next_index = last + 1
        voice.delivered += len(payloads)
        if voice.state is not VoiceState.ACTIVE:
            return
        late = self.next_mix - first_index
        if late > 0:  # keep the codec state right, then drop what came too late
            decode = voice._decoder.decode
            for payload in payloads[:late]:
                decode(payload)
            voice.late += min(late, len(payloads))
            payloads = payloads[late:]
            first_index = self.next_mix
            if not payloads:
                return
        if not voice._queue:
            voice._queue_start = first_index
        voice._queue.extend(payloads)

    # -- output ----------------------------------------------------------------------

    def _tip(self, now: float) -> float:
        """Index the fastest singer has reached, advancing in real time past the end."""
        tip = max(v.next_index for v in self._active) - 1
        if self.end_index is not None and tip >= self.end_index:
            if self._tip_done_at is None:
                self._tip_done_at = now
            return self.end_index + (now - self._tip_done_at) * CHUNKS_PER_SECOND
        return tip

    def _due(self, now: float) -> int:
        """One past the last chunk that can go out now."""
        if not self._active:
            return self.next_mix
        upto = int(self._tip(now) + 1e-6) - self.window + 1  # forced by the window (1e-6: float noise)
        if self.state is MixState.MIXING or not self._invited:
            upto = max(upto, min(v.next_index for v in self._active))
        if self.end_index is not None:
            upto = min(upto, self.end_index + 1)
        return upto

    def mix(self, now: float) -> MixBlock | None:
        """The mix chunks due at time ``now`` (seconds, any origin), at most
        MAX_PASS_CHUNKS of them, or None."""
        if self.state in (MixState.DONE, MixState.ABORTED):
            return None
        if self.end_index == -1:  # the director sent no audio at all
            self.state = MixState.DONE
            return None
        first = self.next_mix
        upto = min(self._due(now), first + MAX_PASS_CHUNKS)
        count = upto - first
        block = None
        if count > 0:
            block = self._mix_block(first, count)
            self.next_mix = upto
            self.state = MixState.MIXING
            if self.end_index is not None and upto > self.end_index:
                self.state = MixState.DONE
        if not self._active and self.state is not MixState.DONE:
            if self.state is MixState.MIXING or (self._rows and not self._invited):
                self.state = MixState.ABORTED
        return block

    def _mix_block(self, first: int, count: int) -> MixBlock:
        rows = len(self._rows)
        voices = np.zeros((count, rows, FRAMES_PER_CHUNK), PCM)
        gains = np.zeros(rows, np.float32)
        present = np.zeros(count, np.float32)  # voices with audio in each chunk
        end = first + count
        for voice in self._rows:
            if voice.state is VoiceState.ACTIVE and voice.next_index < end:
                voice.missing += end - max(voice.next_index, first)
            queue = voice._queue
            if not queue:
                continue
            gains[voice.row] = voice.gain  # a voice that left still sings what it sent
            start = voice._queue_start
            take = min(len(queue), end - start)
            payload = b"".join([queue.popleft() for _ in range(take)])
            voice._queue_start = start + take
            pcm = np.frombuffer(voice._decoder.decode(payload), PCM)
            voices[start - first:start - first + take, voice.row] = pcm.reshape(take, FRAMES_PER_CHUNK)
            present[start - first:start - first + take] += 1
        # einsum's own loop, not BLAS: BLAS threads spin on the cores the daemon needs
        mixed = np.einsum("r,krs->ks", gains, voices, dtype=np.float32, casting="unsafe")
        weight = np.repeat(present[:, None], FRAMES_PER_CHUNK, axis=1)
        self._fade_out(first, end, voices, mixed, weight)
        mixed *= self._normalisation(weight)
        if self.monitor_level and self._monitor:
            monitor = np.frombuffer(b"".join([self._monitor.popleft() for _ in range(count)]), PCM)
            mixed += self.monitor_level * monitor.reshape(count, FRAMES_PER_CHUNK)
        np.rint(mixed, out=mixed)
        np.clip(mixed, -32768, 32767, out=mixed)
        return MixBlock(first, mixed.astype(PCM), voices)

    def _fade_out(self, first, end, voices, mixed, weight) -> None:
        """Fade leavers out over their last queued chunks; their weight follows."""
        for voice, fade_start, left_at in self._fades:
            lo, hi = max(first, fade_start), min(end, left_at)
            if lo >= hi:
                continue
            span = (left_at - fade_start) * FRAMES_PER_CHUNK
            done = (lo - fade_start) * FRAMES_PER_CHUNK
            samples = np.arange(done + 1, done + 1 + (hi - lo) * FRAMES_PER_CHUNK, dtype=np.float32)
            cut = (samples / span).reshape(hi - lo, FRAMES_PER_CHUNK)  # 0 -> 1: how much is gone
            mixed[lo - first:hi - first] -= voice.gain * cut * voices[lo - first:hi - first, voice.row]
            weight[lo - first:hi - first] -= cut
        self._fades = [f for f in self._fades if f[2] > end]

    def _normalisation(self, weight: np.ndarray) -> np.ndarray:
        """1 / voices present, per sample; a jump between chunks is spread over the chunk."""
        norm = np.divide(1.0, weight, out=np.zeros_like(weight), where=weight > 0.01)
        silent = weight <= 0.01  # nobody there: keep the factor, there is nothing to scale
        if silent.any():
            norm[silent] = np.nan
        previous = self._last_norm
        rise = np.arange(1, FRAMES_PER_CHUNK + 1, dtype=np.float32) / FRAMES_PER_CHUNK
        for j in range(len(norm)):
            row = norm[j]
            if np.isnan(row[0]):
                row[np.isnan(row)] = previous if previous is not None else 0.0
                continue
            if previous is not None and abs(row[0] - previous) > 1e-6:
                row += (previous - row[0]) * (1 - rise)
            previous = float(row[-1])
        self._last_norm = previous
        return norm

    # -- status ----------------------------------------------------------------------

    @property
    def active_voices(self) -> list:
        return list(self._active)

    @property
    def checked_in(self) -> int:
        return len(self._rows)

    @property
    def invited(self) -> int:
        return self._invited

    def buffered_chunks(self) -> int:
        return sum(len(v._queue) for v in self._rows) + len(self._monitor)
