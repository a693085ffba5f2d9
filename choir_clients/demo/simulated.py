"""Simulated singers over real TCP, for the demo, the tests and the benchmarks; and the
director's connection on a track, for the tests and benchmarks.

A SimulatedSinger behaves as a calibrated singer client: it plays each chunk it
hears (at real-time pace, after a playback buffer), records through a device
whose round-trip latency is ``device_latency`` chunks, drops the first that many
recorded chunks and labels the rest with the index that was in the singer's ears
(PROTOCOL.md, "Timing and synchronisation"). Its voice is what it heard, so a
correct daemon returns a mix equal to the track at lag 0. Its uplink adds a delay
with jitter, keeping TCP's order.
"""
import collections
import random

import numpy as np
from twisted.internet import defer, protocol

from choir_protocol.rehearsal.adpcm import MonoEncoder, StereoDecoder
from choir_protocol.rehearsal.connections import SingerClientConnection
from choir_protocol.rehearsal.constants import (CHUNKS_PER_SECOND, DIRECTOR_LEAD_CHUNKS,
                                                FRAMES_PER_CHUNK)
from choir_protocol.rehearsal.events import KeepAlive, SessionEnded, SessionStarted, TrackAudio
from choir_protocol.rehearsal.header import Header

from ..rehearsal.director_connection import DirectorClientProtocol
from ..rehearsal.playback import TrackSource

CHUNK_SECONDS = 1 / CHUNKS_PER_SECOND
SILENCE = np.zeros(FRAMES_PER_CHUNK, "<i2")


class SimulatedSinger(protocol.Protocol):
    def __init__(self, clock, name="sim", group="Alto", *, delay=0.0, jitter=0.0, device_latency=3,
                 buffer_chunks=8, seed=0, pace=True, check_in=True, voice_gain=1.0):
        self.clock = clock
        self.header = Header(name, group, "choir-test")
        self.delay, self.jitter = delay, jitter
        self.latency = device_latency
        self.buffer_chunks = buffer_chunks
        self.pace = pace
        self.do_check_in = check_in
        self.voice_gain = voice_gain
        self.random = random.Random(seed)
        self.conn = SingerClientConnection()
        self.ready = defer.Deferred()
        self.session_over = defer.Deferred()
        self.disconnected = defer.Deferred()
        self.sent_chunks = 0
        self.keepalives = 0
        self._last_due = 0.0
        self._link = collections.deque()  # (due time, bytes) on their way to the server
        self._link_timer = None
        self._reset()

    def _reset(self):
        self._decoder = StereoDecoder()
        self._encoder = MonoEncoder()
        self._to_play = []  # mono int16 chunks heard, not yet played
        self._track_over = False
        self._recorded = 0  # chunks recorded by the simulated device
        self._device_line = [SILENCE] * self.latency  # what the microphone hears, delayed
        self._player = None

    def connectionMade(self):
        self.transport.setTcpNoDelay(True)
        self.transport.write(self.conn.initiate(self.header))
        self.ready.callback(self)

    def dataReceived(self, data):
        for event in self.conn.receive_data(data):
            if isinstance(event, SessionStarted):
                self._reset()
                if self.do_check_in:
                    self._send(self.conn.check_in())
            elif isinstance(event, TrackAudio):
                left, right = self._decoder.decode(event.payload)
                mono = ((np.frombuffer(left, "<i2").astype(np.int32) + np.frombuffer(right, "<i2")) >> 1)
                self._to_play.append(mono.astype("<i2"))
                self._maybe_start()
            elif isinstance(event, SessionEnded):
                self._track_over = True
                self._to_play += [SILENCE] * self.latency  # to record the tail
                self._maybe_start()
            elif isinstance(event, KeepAlive):
                self.keepalives += 1

    def _maybe_start(self):
        if self.do_check_in and self._player is None and (
                len(self._to_play) >= self.buffer_chunks or self._track_over):
            self._player = self.clock.callLater(0, self._play)

    def _play(self):
        """One device period: play a chunk, record one."""
        if not self._to_play:
            if self._track_over:
                self.conn.session_done()
                self._player = None
                if not self.session_over.called:
                    self.session_over.callback(self.sent_chunks)
                return
            self._player = self.clock.callLater(CHUNK_SECONDS, self._play)  # under-run: wait
            return
        played = self._to_play.pop(0)
        self._device_line.append(played)
        recorded = self._device_line.pop(0)
        if self._recorded >= self.latency:  # compensation: drop the first L recorded chunks
            index = self._recorded - self.latency
            voice = np.clip(recorded.astype(np.float64) * self.voice_gain, -32768, 32767).astype("<i2")
            self._send(self.conn.send_voice(index, self._encoder.encode(voice.tobytes())))
            self.sent_chunks += 1
        self._recorded += 1
        self._player = self.clock.callLater(CHUNK_SECONDS if self.pace else 0, self._play)

    def _send(self, data):
        """Send over a link with delay and jitter; TCP keeps the order."""
        due = self.clock.seconds() + self.delay + self.random.uniform(0, self.jitter)
        self._link.append((max(due, self._last_due), data))
        self._last_due = self._link[-1][0]
        if self._link_timer is None:
            self._drain_link()

    def _drain_link(self):
        self._link_timer = None
        now = self.clock.seconds()
        out = []
        while self._link and self._link[0][0] <= now:
            out.append(self._link.popleft()[1])
        if out and self.transport is not None and self.transport.connected:
            self.transport.write(b"".join(out))
        if self._link:
            self._link_timer = self.clock.callLater(max(0.0, self._link[0][0] - now), self._drain_link)

    def connectionLost(self, reason):
        for timer in (self._player, self._link_timer):
            if timer is not None and timer.active():
                timer.cancel()
        self.lost_reason = reason
        self.disconnected.callback(None)


class SimulatedDirector(DirectorClientProtocol):
    """The director's own connection streaming a track (int16 stereo array), with no silence
    timer and ``first_mix`` fired with the first mix chunk: for the tests and benchmarks.

    ``hold``: send the header, and no track (a director the daemon knows, who starts no
    session: its address may use the daemon's desk)."""

    def __init__(self, track: np.ndarray, lead_chunks=DIRECTOR_LEAD_CHUNKS,
                 header: Header | None = None, hold: bool = False):
        super().__init__(None, TrackSource(track), lead=lead_chunks, on_mix=self._mixed,
                         idle_timeout=None, held=hold,
                         header=header if header is not None else Header())
        self.first_mix = defer.Deferred()

    def _mixed(self, index, pcm):
        if not self.first_mix.called:
            self.first_mix.callback(None)
