"""Faults of directors and singers, one test per fault, over real loopback TCP.

The daemon (the real Room and protocols) listens on 127.0.0.1 with the real
reactor as its clock; the tests wait on events (connections lost, sessions over,
states of the room checked at every tick), never on a fixed sleep. The singers are
tests.support.simulated.SimulatedSinger (real-time paced, calibrated device latency), so a
correct mix equals the track at lag 0. See tests/support/daemon_helpers.py.
"""
import socket

import numpy as np
from twisted.internet import defer, protocol, reactor
from twisted.trial import unittest

from choir_protocol.rehearsal.adpcm import StereoEncoder
from choir_protocol.rehearsal.chunks import encode_index
from choir_protocol.rehearsal.connections import DirectorClientConnection, SingerClientConnection
from choir_protocol.rehearsal.constants import FRAMES_PER_CHUNK, TRACK_CHUNK_SIZE, VOCAL_GROUPS
from choir_protocol.rehearsal.events import MixChunk, SessionStarted
from choir_protocol.rehearsal.header import Header
from choir_twisted.rehearsal.protocols import (DIRECTOR_BACKLOG_LIMIT, DIRECTOR_SEND_BUFFER,
                                               SINGER_BACKLOG_LIMIT)

from ...support.daemon_helpers import FaultySinger, TcpDaemon, mismatch, stereo_track, within
from ...support.simulated import SimulatedDirector, SimulatedSinger

TRACK_CHUNKS = 120  # about 1.4 s
GOOD_CHUNKS = 40  # what a faulty director sends right before its fault


def mono(track: np.ndarray) -> np.ndarray:
    return track[:, 0]


def assert_mix_is_track(testcase, mix: np.ndarray, track: np.ndarray, first=0, last=None):
    """The mix (chunks first..last) has the track's shape at lag 0 and at no other lag."""
    start, stop = first * FRAMES_PER_CHUNK, None if last is None else last * FRAMES_PER_CHUNK
    mix, expected = mix[start:stop], mono(track)[start:stop]
    testcase.assertGreater(np.abs(mix).max(), 1000)
    testcase.assertLess(mismatch(mix, expected), 0.1)
    for shift in (-1, 1):
        testcase.assertGreater(mismatch(mix, expected, shift), 0.5)


class FaultyDirector(protocol.Protocol):
    """Sends its header and GOOD_CHUNKS chunks of ``track``; ``commit(fault)`` misbehaves."""

    def __init__(self, track: np.ndarray):
        self.track = track
        self.conn = DirectorClientConnection()
        self.encoder = StereoEncoder()
        self.first_mix = defer.Deferred()
        self.lost = defer.Deferred()
        self.closed_by_us = False

    def payload(self, index: int) -> bytes:
        chunk = self.track[index * FRAMES_PER_CHUNK:(index + 1) * FRAMES_PER_CHUNK]
        return self.encoder.encode(np.ascontiguousarray(chunk[:, 0]).tobytes(),
                                   np.ascontiguousarray(chunk[:, 1]).tobytes())

    def connectionMade(self):
        self.transport.write(self.conn.initiate(Header()) + b"".join(
            self.conn.send_track(i, self.payload(i)) for i in range(GOOD_CHUNKS)))

    def dataReceived(self, data):
        for event in self.conn.receive_data(data):
            if isinstance(event, MixChunk) and not self.first_mix.called:
                self.first_mix.callback(None)

    def commit(self, fault: str) -> None:
        if fault == "wrong index":  # skips five chunks
            self.transport.write(encode_index(GOOD_CHUNKS + 5) + self.payload(GOOD_CHUNKS))
        elif fault == "wrong size":  # 514-byte chunks, as the seed's prose says
            self.transport.write(b"".join(encode_index(i) + self.payload(i)[:510]
                                          for i in range(GOOD_CHUNKS, GOOD_CHUNKS + 10)))
        elif fault == "garbage":
            self.transport.write(np.random.default_rng(5).integers(0, 256, 5000, np.uint8).tobytes())
        elif fault == "disconnect":
            self.closed_by_us = True
            self.transport.abortConnection()
        else:
            raise ValueError(fault)

    def connectionLost(self, reason):
        self.lost.callback(None)


class NonReadingSinger(protocol.Protocol):
    """Checks in when chunk 0 comes, then never reads its socket again (nor sends)."""

    def __init__(self, name: str):
        self.header = Header(name, "Bass", "choir-test")
        self.conn = SingerClientConnection()
        self.bytes_read = 0

    def connectionMade(self):
        # A small receive buffer, as on a slow link: the daemon notices sooner.
        self.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.transport.write(self.conn.initiate(self.header))

    def dataReceived(self, data):
        self.bytes_read += len(data)
        if any(isinstance(event, SessionStarted) for event in self.conn.receive_data(data)):
            self.transport.write(self.conn.check_in())
            self.transport.pauseProducing()  # stops reading, for good


class NonReadingDirector(FaultyDirector):
    """Sends its whole track at once, then never reads the mix (nor its socket)."""

    def connectionMade(self):
        self.transport.setTcpNoDelay(True)
        self.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        chunks = len(self.track) // FRAMES_PER_CHUNK
        self.transport.write(self.conn.initiate(Header()) + b"".join(
            self.conn.send_track(i, self.payload(i)) for i in range(chunks)))
        self.transport.pauseProducing()  # stops reading, for good


class AheadSinger(protocol.Protocol):
    """Checks in on chunk 0 and at once sends voice chunks far past the end of the track."""

    def __init__(self, name: str):
        self.header = Header(name, "Tenor", "choir-test")
        self.conn = SingerClientConnection()
        self.disconnected = defer.Deferred()

    def connectionMade(self):
        self.transport.write(self.conn.initiate(self.header))

    def dataReceived(self, data):
        if any(isinstance(event, SessionStarted) for event in self.conn.receive_data(data)):
            self.transport.write(self.conn.check_in() + b"".join(
                self.conn.send_voice(i, bytes(256)) for i in range(TRACK_CHUNKS + 100)))

    def connectionLost(self, reason):
        self.disconnected.callback(None)


def held_for(singer) -> int:
    """Bytes the daemon holds for ``singer``: BoundedOutput's backlog plus the
    transport's own write buffer."""
    transport = singer.transport  # a twisted.internet.abstract.FileDescriptor
    buffered = len(transport.dataBuffer) - transport.offset + transport._tempDataLen
    return singer.output.backlog_bytes + buffered


class DirectorFaultTests(unittest.TestCase):
    """A director that breaks the protocol or vanishes mid-session: it is closed, its
    session ends, the singers get the end of session (-1), and the next director's
    session works fully (in 1.1.3 one bad director chunk jammed the server)."""

    timeout = 30

    async def director_fault(self, fault: str) -> None:
        daemon = TcpDaemon(self)
        room = daemon.room
        singers = [SimulatedSinger(reactor, f"S{i}", delay=0.02, jitter=0.01, seed=i) for i in range(2)]
        await daemon.connect_singers(singers)
        track = stereo_track(TRACK_CHUNKS, seed=11)

        bad = await daemon.connect("director", FaultyDirector(track))
        await within(bad.first_mix)  # the session runs
        bad.commit(fault)
        await within(bad.lost)
        close_reason = await within(daemon.factories["director"].built[0].lost)
        if not bad.closed_by_us:
            self.assertIn("protocol error", close_reason)  # closed by the daemon
        await within(defer.gatherResults([s.session_over for s in singers]))  # -1 reached them
        self.assertIsNone(room.session)
        self.assertTrue(room.last_session.ended.startswith("director left"), room.last_session.ended)
        self.assertEqual(len(room.singers), 2)

        good = await daemon.connect("director", SimulatedDirector(track))
        await within(good.done)
        self.assertFalse(good.refused)
        self.assertEqual(len(good.mix), TRACK_CHUNKS)
        self.assertEqual(room.last_session.ended, "complete")
        self.assertEqual(room.last_session.mixer.checked_in, 2)
        assert_mix_is_track(self, good.mix_signal, track)

    async def test_wrong_index(self):
        """Fault: a director sends a chunk with the wrong index."""
        await self.director_fault("wrong index")

    async def test_wrong_sized_chunks(self):
        """Fault: a director sends 514-byte chunks (the seed's prose) instead of 516."""
        await self.director_fault("wrong size")

    async def test_garbage(self):
        """Fault: a director sends garbage."""
        await self.director_fault("garbage")

    async def test_disconnect_mid_session(self):
        """Fault: a director disconnects mid-session."""
        await self.director_fault("disconnect")


    async def test_director_that_stops_reading_is_dropped_with_bounded_memory(self):
        """Fault: a director that never reads the mix. What the daemon holds back for it
        stays bounded (DIRECTOR_BACKLOG_LIMIT); it is dropped past the limit, the session
        ends and the singers are told, and the next director's session works."""
        daemon = TcpDaemon(self, window=30)
        chunks = 6000  # about 6 MB of mix, which an unbounded daemon would hold
        track = stereo_track(chunks, seed=19)
        singers = [SimulatedSinger(reactor, "Fast", pace=False)]
        await daemon.connect_singers(singers)
        await daemon.connect("director", NonReadingDirector(track))
        server_bad = daemon.factories["director"].built[0]
        # the kernel's buffer is kept small, else it holds a minute of mix before we see it
        self.assertLessEqual(server_bad.transport.getHandle().getsockopt(
            socket.SOL_SOCKET, socket.SO_SNDBUF), 2 * DIRECTOR_SEND_BUFFER)  # Linux doubles it
        held = []
        daemon.room.tick_hooks.append(
            lambda: held.append(held_for(server_bad) if server_bad.connected else 0))
        reason = await within(server_bad.lost, 30)
        self.assertEqual(reason, "the director is not reading the mix")
        self.assertTrue(server_bad.output.overflowed)
        self.assertLessEqual(max(held), DIRECTOR_BACKLOG_LIMIT + 65536 + 2 * 1028 * 100)
        await within(defer.gatherResults([s.session_over for s in singers]))
        self.assertTrue(daemon.room.last_session.ended.startswith("director left"),
                        daemon.room.last_session.ended)
        good = await daemon.connect("director", SimulatedDirector(stereo_track(60, seed=3)))
        await within(good.done)
        self.assertEqual(daemon.room.last_session.ended, "complete")


    async def test_a_peers_control_characters_are_escaped_in_the_log(self):
        """A name or client version with ANSI escapes reaches the log escaped, never raw
        (a terminal reading the log would obey them)."""
        from twisted.logger import formatEvent, globalLogPublisher
        lines = []
        observer = lambda event: lines.append(formatEvent(event))  # noqa: E731
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        daemon = TcpDaemon(self)
        singers = [SimulatedSinger(reactor, "S0", pace=False)]
        await daemon.connect_singers(singers)

        class Evil(SimulatedDirector):
            def connectionMade(self):
                self.transport.write(self.conn.initiate(Header("\x1b[2Jboss", VOCAL_GROUPS[0],
                                                               "\x1b[31mevil 1.0")))
                self.transport.loseConnection()
        lost = defer.Deferred()
        evil = Evil(stereo_track(10, seed=1))
        evil.connectionLost = lambda reason: lost.callback(None)
        await daemon.connect("director", evil)
        await within(lost)
        await within(daemon.factories["director"].built[0].lost)
        mine = [line for line in lines if "boss" in line or "evil" in line]
        self.assertTrue(mine, lines)
        self.assertFalse([line for line in mine if "\x1b" in line], mine)
        self.assertTrue(any("\\x1b[31mevil" in line for line in mine), mine)


class SingerFaultTests(unittest.TestCase):
    timeout = 30

    async def run_session(self, daemon, singers, track):
        await daemon.connect_singers(singers)
        director = await daemon.connect("director", SimulatedDirector(track))
        await within(director.done)
        self.assertFalse(director.refused)
        self.assertEqual(len(director.mix), len(track) // FRAMES_PER_CHUNK)
        self.assertEqual(daemon.room.last_session.ended, "complete")
        return director, {v.name: v for v in daemon.room.last_session.mixer.voices.values()}

    async def test_singer_stalls(self):
        """Fault: a singer stops sending mid-session (stays connected): the mix waits
        for it only until the others are a mix window ahead, then goes on without it;
        its missing chunks are counted."""
        window = 30
        daemon = TcpDaemon(self, window=window)
        track = stereo_track(TRACK_CHUNKS, seed=12)
        singers = [SimulatedSinger(reactor, "Steady", delay=0.02, jitter=0.01),
                   FaultySinger(reactor, "Stalls", fault="stall", at=50, delay=0.02)]
        leads = []  # how far Steady is past the mix, while the mix is past the stall

        def sample():
            session = daemon.room.session
            if session is not None and session.mixer.next_mix > 50:
                steady = next(v for v in session.mixer.voices.values() if v.name == "Steady")
                if steady.next_index < TRACK_CHUNKS:  # (at the end the window runs in time)
                    leads.append(steady.next_index - session.mixer.next_mix)

        daemon.room.tick_hooks.append(sample)
        director, voices = await self.run_session(daemon, singers, track)
        self.assertEqual(voices["Stalls"].delivered, 50)
        self.assertEqual(voices["Stalls"].missing, TRACK_CHUNKS - 50)
        self.assertEqual(voices["Steady"].missing, 0)
        self.assertTrue(leads)
        self.assertGreaterEqual(min(leads), window - 1)  # not before the window...
        self.assertLessEqual(max(leads), window + 8)  # ...and not much later
        assert_mix_is_track(self, director.mix_signal, track, last=50)
        assert_mix_is_track(self, director.mix_signal, track, first=50)  # Steady alone
        self.assertEqual(len(daemon.room.singers), 2)  # stalled, not dropped

    async def test_singer_disconnects(self):
        """Fault: a singer disconnects mid-session; the others continue."""
        daemon = TcpDaemon(self, window=30)
        track = stereo_track(TRACK_CHUNKS, seed=13)
        quitter = FaultySinger(reactor, "Quits", fault="quit", at=50, delay=0.02)
        singers = [SimulatedSinger(reactor, "Steady", delay=0.02, jitter=0.01), quitter]
        director, voices = await self.run_session(daemon, singers, track)
        self.assertTrue(quitter.disconnected.called)
        self.assertEqual(voices["Quits"].state.value, "left")
        self.assertEqual(voices["Quits"].delivered, 50)
        self.assertEqual(voices["Steady"].missing, 0)
        assert_mix_is_track(self, director.mix_signal, track)
        self.assertEqual(len(daemon.room.singers), 1)

    async def test_lagging_singer_is_mixed_at_lag_zero(self):
        """Fault: a singer 2 s behind the others (extra network delay), within the mix
        window, is still mixed at lag 0: nothing of it is missing or late."""
        daemon = TcpDaemon(self)  # the default window, about 4 s
        track = stereo_track(TRACK_CHUNKS, seed=14)
        # The prompt singer is silent, so the mix is the lagging singer alone.
        singers = [SimulatedSinger(reactor, "Prompt", voice_gain=0.0),
                   SimulatedSinger(reactor, "Lagging", delay=2.0, jitter=0.05, seed=3)]
        director, voices = await self.run_session(daemon, singers, track)
        self.assertEqual((voices["Lagging"].missing, voices["Lagging"].late), (0, 0))
        self.assertEqual(voices["Lagging"].delivered, TRACK_CHUNKS)
        assert_mix_is_track(self, director.mix_signal, track)

    async def test_singer_sends_garbage(self):
        """Fault: a singer sends garbage mid-session: it alone is closed."""
        daemon = TcpDaemon(self, window=30)
        track = stereo_track(TRACK_CHUNKS, seed=15)
        bad = FaultySinger(reactor, "Garbage", fault="garbage", at=50, delay=0.02)
        singers = [SimulatedSinger(reactor, "Steady", delay=0.02, jitter=0.01), bad]
        director, voices = await self.run_session(daemon, singers, track)
        self.assertTrue(bad.disconnected.called)
        self.assertIn("protocol error", await within(daemon.server_side("singers", "Garbage").lost))
        self.assertEqual(voices["Garbage"].state.value, "left")
        self.assertEqual(voices["Steady"].missing, 0)
        assert_mix_is_track(self, director.mix_signal, track)
        self.assertEqual(len(daemon.room.singers), 1)

    async def test_singer_ahead_of_director(self):
        """Fault: a singer sends chunks it has not been sent yet (ahead of the
        director): it alone is closed."""
        daemon = TcpDaemon(self, window=30)
        track = stereo_track(TRACK_CHUNKS, seed=16)

        ahead = AheadSinger("Ahead")
        singers = [SimulatedSinger(reactor, "Steady", delay=0.02, jitter=0.01), ahead]
        director, voices = await self.run_session(daemon, singers, track)
        self.assertTrue(ahead.disconnected.called)
        reason = await within(daemon.server_side("singers", "Ahead").lost)
        self.assertIn("before the director sent it", reason)
        self.assertEqual(voices["Ahead"].state.value, "left")
        self.assertEqual(voices["Steady"].missing, 0)
        assert_mix_is_track(self, director.mix_signal, track)
        self.assertEqual(len(daemon.room.singers), 1)

    async def test_singer_that_stops_reading_is_dropped_with_bounded_memory(self):
        """Fault: a singer that never reads its socket: what the daemon holds back for it
        stays bounded (SINGER_BACKLOG_LIMIT), it is dropped once past the limit, and the
        session of the others goes on to the end."""
        daemon = TcpDaemon(self, window=30)
        # Small kernel buffers on the daemon's side, as on a slow link, so the bound
        # is reached within a few megabytes of track (accepted sockets inherit them).
        daemon.ports["singers"].socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        chunks = 6000  # 3 MB of track, about 70 s of audio, mixed as fast as it can go
        track = stereo_track(chunks, seed=17)
        stuck = NonReadingSinger("Stuck")
        await daemon.connect_singers([SimulatedSinger(reactor, "Steady", pace=False), stuck])
        server_stuck = daemon.server_side("singers", "Stuck")
        held, writes = [], []
        daemon.room.tick_hooks.append(lambda: held.append(held_for(server_stuck)))
        send = server_stuck.send
        server_stuck.send = lambda data: (writes.append(len(data)), send(data))

        director = await daemon.connect("director", SimulatedDirector(track))
        reason = await within(server_stuck.lost)
        self.assertEqual(reason, "not reading what we send")
        self.assertIsNotNone(daemon.room.session)  # dropped while the session runs
        self.assertEqual([s.header.name for s in daemon.room.singers], ["Steady"])
        await within(director.done, 30)
        self.assertFalse(director.refused)
        self.assertEqual(len(director.mix), chunks)
        self.assertEqual(daemon.room.last_session.ended, "complete")
        self.assertEqual(daemon.room.last_session.mixer.voices[server_stuck.peer].state.value, "left")
        # Held back at most: the limit and the write that crossed it, plus the
        # transport's buffer (64 KiB) and the write that crossed that.
        bound = SINGER_BACKLOG_LIMIT + 65536 + 2 * max(writes)
        self.assertLessEqual(max(held), bound)
        self.assertTrue(server_stuck.output.overflowed)  # the limit was reached
        self.assertGreater(chunks * TRACK_CHUNK_SIZE, 2 * bound)  # an unbounded daemon would hold more
        self.assertLess(stuck.bytes_read, 1 << 20)
