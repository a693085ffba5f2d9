"""Helpers to drive the rehearsal daemon in tests.

Two ways to run it:

* ``MemoryDaemon``: the real Room and protocols on a ``twisted.internet.task.Clock``,
  each connection on a ``FakeTransport`` (a StringTransport that delivers what the
  peer sends the way a TCP socket would: held back while the daemon has paused
  reading, and ``connectionLost`` on the next turn after a close). Time only moves
  when the test says so, so the 5, 10 and 30 s rules cost no real time. The peers
  (``MemorySinger``, ``MemoryDirector``, ``MemoryDesk``) react to what the daemon
  sent after every step of the clock.
* ``TcpDaemon``: the real Room and protocols on loopback TCP with the real reactor,
  for the I/O faults. ``ObservedRoom`` lets a test wait for a state of the room
  (checked after every tick and on every join, leave and end of session) instead
  of sleeping.

Over 400 lines: the in-memory daemon and each of its peers (singer, director, desk), which
the rule tests use together.
"""
import itertools

import numpy as np
from twisted.internet import defer, reactor
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from choir_protocol.rehearsal import desk
from choir_protocol.rehearsal.adpcm import MonoDecoder, MonoEncoder
from choir_protocol.rehearsal.chunks import ChunkReader, encode_index
from choir_protocol.rehearsal.connections import (ABORT_FROM_SINGER, KEEPALIVE_FROM_SINGER,
                                                  DirectorClientConnection, SingerClientConnection)
from choir_protocol.rehearsal.constants import (FRAMES_PER_CHUNK, MIX_CHUNK_SIZE, SAMPLE_RATE,
                                                TRACK_CHUNK_SIZE)
from choir_protocol.rehearsal.events import (MixChunk, SessionEnded, SessionRefused, SessionStarted,
                                             TrackAudio)
from choir_protocol.rehearsal.header import Header
from choir_twisted.rehearsal.protocols import (DeskProtocol, DirectorProtocol, RoomFactory,
                                               SingerProtocol)
from choir_twisted.rehearsal.room import TICK, Room

from .simulated import SimulatedSinger

SILENT_TRACK_PAYLOAD = bytes(TRACK_CHUNK_SIZE - 4)


# -- signals ------------------------------------------------------------------------------

def voice_signal(chunks: int, seed: int, amplitude: float = 8000.0) -> np.ndarray:
    """Mono int16: a sine whose frequency jumps (phase-continuously) at every chunk.

    Every chunk differs from its neighbours, so a mix shifted by even one chunk does
    not match; the frequencies (200-1000 Hz) survive IMA ADPCM well.
    """
    rng = np.random.default_rng(seed)
    freqs = np.repeat(rng.uniform(200.0, 1000.0, chunks), FRAMES_PER_CHUNK)
    phase = np.cumsum(2 * np.pi * freqs / SAMPLE_RATE)
    return np.rint(amplitude * np.sin(phase)).astype("<i2")



def stereo_track(chunks: int, seed: int = 1) -> np.ndarray:
    """A director's track (n, 2) int16, both channels the same (so mono == either)."""
    mono = voice_signal(chunks, seed)
    return np.stack([mono, mono], axis=1)


def mismatch(mix: np.ndarray, expected: np.ndarray, shift_chunks: int = 0) -> float:
    """Relative error of ``mix`` against ``expected`` delayed by ``shift_chunks``.

    ``expected`` is fitted in scale chunk by chunk first, so only the shape and the
    alignment count, not the level (which the mixer may ramp when a singer leaves):
    0 is a perfect match, 1 no resemblance at all.
    """
    shift = shift_chunks * FRAMES_PER_CHUNK
    mix = np.asarray(mix, np.float64)
    expected = np.asarray(expected, np.float64)
    if shift > 0:
        mix, expected = mix[shift:], expected[:len(expected) - shift]
    elif shift < 0:
        mix, expected = mix[:shift], expected[-shift:]
    n = min(len(mix), len(expected)) // FRAMES_PER_CHUNK
    mix = mix[:n * FRAMES_PER_CHUNK].reshape(n, FRAMES_PER_CHUNK)
    expected = expected[:n * FRAMES_PER_CHUNK].reshape(n, FRAMES_PER_CHUNK)
    energy = np.einsum("ij,ij->i", expected, expected)
    total = float(np.sum(mix * mix))
    if total == 0 or not energy.all():
        return 1.0
    scale = np.einsum("ij,ij->i", mix, expected) / energy
    residual = mix - scale[:, None] * expected
    return float(np.sqrt(np.sum(residual * residual) / total))


def level(pcm: np.ndarray) -> float:
    """RMS of int16 samples."""
    return float(np.sqrt(np.mean(np.square(np.asarray(pcm, np.float64))))) if len(pcm) else 0.0


# -- in memory, on a Clock ----------------------------------------------------------------

class FakeTransport(StringTransport):
    """A StringTransport that behaves like a TCP transport where the daemon can tell.

    * What the peer sends (``deliver``) is held back while reading is paused and
      handed over, coalesced, on the next turn after ``resumeProducing``.
    * ``loseConnection``/``abortConnection`` (and ``peer_closes``) end the connection
      with ``connectionLost`` on the next turn of the clock, as a reactor would.
    """

    def __init__(self, clock, protocol, host: str, port: int):
        super().__init__(hostAddress=IPv4Address("TCP", "127.0.0.1", 8868),
                         peerAddress=IPv4Address("TCP", host, port), lenient=True)
        self.clock = clock
        self.protocol = protocol
        self.closed = False  # loseConnection, abortConnection or the peer closed
        self._inbox: list = []
        self._delivery = None

    def deliver(self, data: bytes) -> None:
        if self.closed:
            return
        if self.producerState == "paused" or self._inbox:
            self._inbox.append(data)
        else:
            self.protocol.dataReceived(data)

    def resumeProducing(self):
        super().resumeProducing()
        if self._inbox and self._delivery is None:
            self._delivery = self.clock.callLater(0, self._deliver_inbox)

    def _deliver_inbox(self):
        self._delivery = None
        if self.closed or self.producerState == "paused" or not self._inbox:
            return
        data, self._inbox = b"".join(self._inbox), []
        self.protocol.dataReceived(data)

    def loseConnection(self):
        super().loseConnection()
        self._close()

    def abortConnection(self):
        super().abortConnection()
        self._close()

    def peer_closes(self):
        self._close()

    def _close(self):
        if not self.closed:
            self.closed = True
            self.clock.callLater(0, self._lost)

    def _lost(self):
        self.connected = False
        self.protocol.connectionLost(Failure(ConnectionDone()))


class MemoryPeer:
    """A client connected to the in-memory daemon; sends only what the test sends."""

    protocol_attr = ""  # the MemoryDaemon factory to use

    def __init__(self, daemon: "MemoryDaemon", port: int, protocol_attr: str | None = None,
                 host: str = "10.0.0.1"):
        self.daemon = daemon
        factory = getattr(daemon, protocol_attr or self.protocol_attr)
        self.protocol = factory.buildProtocol(None)
        self.transport = FakeTransport(daemon.clock, self.protocol, host, port)
        self.protocol.makeConnection(self.transport)
        self.address = [host, port]

    @property
    def closed(self) -> bool:
        """The connection is over (whoever closed it)."""
        return self.transport.closed

    def send(self, data: bytes) -> None:
        self.transport.deliver(data)

    def take_output(self) -> bytes:
        data = self.transport.value()
        self.transport.clear()
        return data

    def react(self) -> None:
        pass


class MemorySinger(MemoryPeer):
    """A singer client: checks in on chunk 0 and sings ``voice`` back, index by index.

    ``auto_check_in``/``auto_sing`` can be turned off to act by hand. ``received``
    logs every chunk the daemon sent as (index, size); ``sent_pcm`` holds, per
    index, the PCM the daemon decodes from what this singer sent.
    """

    protocol_attr = "singer_factory"

    def __init__(self, daemon, port, name, group="Alto", *, voice=None, auto_check_in=True,
                 auto_sing=True, host="10.0.0.1"):
        super().__init__(daemon, port, host=host)
        self.name = name
        self.voice = voice if voice is not None else np.zeros(0, "<i2")
        self.auto_check_in = auto_check_in
        self.auto_sing = auto_sing
        self.client = SingerClientConnection()
        self._raw = ChunkReader(TRACK_CHUNK_SIZE)
        self.raw = bytearray()  # everything the daemon sent
        self.received: list = []  # (index, size) of every chunk from the daemon
        self.heard: list = []  # track indices of the current session
        self.sessions_ended = 0
        self.checked_in = False
        self.sent_pcm: dict = {}
        self.send(Header(name, group, "choir-test").to_bytes())

    def react(self) -> None:
        data = self.take_output()
        if not data:
            return
        self.raw += data
        self.received += [(index, len(chunk)) for index, chunk in self._raw.feed(data)]
        for event in self.client.receive_data(data):
            if isinstance(event, SessionStarted):
                self.heard = []
                self.checked_in = False
                self._encoder, self._decoder = MonoEncoder(), MonoDecoder()
                self.sent_pcm = {}
                if self.auto_check_in:
                    self.check_in()
            elif isinstance(event, TrackAudio):
                self.heard.append(event.index)
                if self.auto_sing and self.checked_in:
                    self.sing_upto(event.index + 1)
            elif isinstance(event, SessionEnded):
                self.sessions_ended += 1
                self.client.session_done()

    def check_in(self) -> None:
        self.checked_in = True
        self.send(self.client.check_in())

    def sing_upto(self, end: int) -> None:
        """Send the voice chunks from the next one up to ``end`` (exclusive)."""
        out = []
        while self.client.sent_index < end:
            index = self.client.sent_index
            pcm = self.voice[index * FRAMES_PER_CHUNK:(index + 1) * FRAMES_PER_CHUNK]
            pcm = np.pad(pcm, (0, FRAMES_PER_CHUNK - len(pcm))).astype("<i2").tobytes()
            payload = self._encoder.encode(pcm)
            self.sent_pcm[index] = np.frombuffer(self._decoder.decode(payload), "<i2")
            out.append(self.client.send_voice(index, payload))
        if out:
            self.send(b"".join(out))

    def abort(self) -> None:
        self.auto_sing = False
        self.send(ABORT_FROM_SINGER)

    def keepalive(self) -> None:
        self.send(KEEPALIVE_FROM_SINGER)

    def received_indices(self) -> list:
        return [index for index, _ in self.received]


class MemoryDirector(MemoryPeer):
    """A director client: ``stream`` track chunks, ``end`` the track, collect the mix."""

    protocol_attr = "director_factory"

    def __init__(self, daemon, port, header_and=b"", host="10.0.0.1"):
        super().__init__(daemon, port, host=host)
        self.client = DirectorClientConnection()
        self._raw = ChunkReader(MIX_CHUNK_SIZE)
        self.received: list = []  # (index, size, payload) of every chunk from the daemon
        self.mix: list = []  # int16 arrays, one per mix chunk
        self.refused = False
        self.send(Header("", "No group", "choir-test").to_bytes() + header_and)

    def stream(self, count: int, payload: bytes = SILENT_TRACK_PAYLOAD) -> None:
        self.send(b"".join([self.client.send_track(self.client.sent, payload)
                            for _ in range(count)]))

    def end(self) -> None:
        self.send(self.client.end_track())

    def react(self) -> None:
        data = self.take_output()
        if not data:
            return
        self.received += [(index, len(chunk), chunk[4:]) for index, chunk in self._raw.feed(data)]
        for event in self.client.receive_data(data):
            if isinstance(event, MixChunk):
                self.mix.append(np.frombuffer(event.pcm, "<i2"))
            elif isinstance(event, SessionRefused):
                self.refused = True

    def mix_signal(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        chunks = self.mix[start:stop]
        return np.concatenate(chunks) if chunks else np.zeros(0, "<i2")


class MemoryDesk(MemoryPeer):
    """The director's mixing desk: send requests, collect the replies."""

    protocol_attr = "desk_factory"

    def __init__(self, daemon, port, host="10.0.0.1"):
        super().__init__(daemon, port, host=host)
        self._reader = desk.MessageReader()
        self.replies: list = []
        self.send(Header("", "No group", "choir-test").to_bytes())

    def request(self, message) -> None:
        self.send(desk.encode_message(message))

    def react(self) -> None:
        data = self.take_output()
        if data:
            self.replies += self._reader.feed(data)


class MemoryDaemon:
    """The Room and its protocols on a Clock, with peers that react after every step."""

    def __init__(self, *, room=None, clock=None, factories=None, data_dir=None, tick=TICK,
                 **room_options):
        self.clock = clock if clock is not None else Clock()
        self.room = room if room is not None else Room(self.clock, data_dir=data_dir, tick=tick,
                                                       **room_options)
        self.tick = self.room._tick_interval
        if factories is None:
            factories = {"singers": RoomFactory(self.room, SingerProtocol),
                         "director": RoomFactory(self.room, DirectorProtocol),
                         "desk": RoomFactory(self.room, DeskProtocol)}
        self.singer_factory = factories["singers"]
        self.director_factory = factories["director"]
        self.desk_factory = factories["desk"]
        self.peers: list = []
        self._ports = itertools.count(40001)
        self.room.start()

    @classmethod
    def from_service(cls, top, clock) -> "MemoryDaemon":
        """Drive the Room of ``makeService(options, clock)`` through its own factories."""
        factories = {name: top.getServiceNamed(name).factory for name in ("singers", "director", "desk")}
        return cls(room=top.room, clock=clock, factories=factories)

    def _add(self, peer):
        self.peers.append(peer)
        return peer

    def singer(self, name: str, group: str = "Alto", **options) -> MemorySinger:
        return self._add(MemorySinger(self, next(self._ports), name, group, **options))

    def director(self, **options) -> MemoryDirector:
        return self._add(MemoryDirector(self, next(self._ports), **options))

    def desk(self, **options) -> MemoryDesk:
        return self._add(MemoryDesk(self, next(self._ports), **options))

    def raw_peer(self, role: str, host: str = "10.0.0.1") -> MemoryPeer:
        """A bare connection to the ``role`` listener ("singers", "director", "desk")."""
        attr = {"singers": "singer_factory", "director": "director_factory", "desk": "desk_factory"}[role]
        return self._add(MemoryPeer(self, next(self._ports), attr, host=host))

    @property
    def now(self) -> float:
        return self.clock.seconds()

    def advance(self, seconds: float) -> None:
        """Move the clock by ``seconds``, in steps of at most one tick; peers react each step."""
        target = self.clock.seconds() + seconds
        while True:
            step = min(self.tick, target - self.clock.seconds())
            if step <= 1e-9:
                break
            self.clock.advance(step)
            self.react()

    def react(self) -> None:
        for peer in list(self.peers):
            peer.react()

    def run_until(self, predicate, limit: float = 30.0) -> float:
        """Advance tick by tick until ``predicate()``; returns the clock time it took."""
        start = self.clock.seconds()
        self.react()
        while not predicate():
            if self.clock.seconds() - start > limit:
                raise AssertionError(f"condition not reached within {limit} s of daemon time")
            self.advance(self.tick)
        return self.clock.seconds() - start


# -- real TCP -----------------------------------------------------------------------------

class ObservedRoom(Room):
    """A Room a test can wait on: ``when(predicate)`` fires once it holds.

    The predicate is checked after every tick and every join, leave and end of a
    session; no behaviour of the Room changes.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._waiters: list = []
        self.tick_hooks: list = []  # called after every tick

    def when(self, predicate, timeout: float = 15.0) -> defer.Deferred:
        d = defer.Deferred()
        if predicate():
            d.callback(None)
            return d
        self._waiters.append((predicate, d))
        d.addTimeout(timeout, reactor)
        return d

    def _check_waiters(self) -> None:
        for entry in list(self._waiters):
            predicate, d = entry
            if d.called:
                self._waiters.remove(entry)
            elif predicate():
                self._waiters.remove(entry)
                d.callback(None)

    def tick(self):
        super().tick()
        for hook in self.tick_hooks:
            hook()
        self._check_waiters()

    def singer_joined(self, singer):
        refused = super().singer_joined(singer)
        self._check_waiters()
        return refused

    def singer_left(self, singer, reason):
        super().singer_left(singer, reason)
        self._check_waiters()

    def _carry_out(self, actions):  # e.g. the end of a session
        super()._carry_out(actions)
        self._check_waiters()


class ObservedFactory(RoomFactory):
    """Builds the daemon's protocols unchanged, giving each a ``lost`` Deferred."""

    def __init__(self, room, protocol_class):
        super().__init__(room, protocol_class)
        self.built: list = []

    def buildProtocol(self, addr):
        p = super().buildProtocol(addr)
        p.lost = defer.Deferred()
        original = p.connectionLost

        def connectionLost(reason, original=original, p=p):
            try:
                original(reason)
            finally:
                p.lost.callback(getattr(p, "_close_reason", None) or reason.getErrorMessage())

        p.connectionLost = connectionLost
        self.built.append(p)
        return p


class TcpDaemon:
    """The daemon on 127.0.0.1 (ports chosen by the system), cleaned up with the test."""

    def __init__(self, testcase, **room_options):
        room_options.setdefault("data_dir", None)
        room_options.setdefault("tick", 0.01)
        self.room = ObservedRoom(reactor, **room_options)
        self.factories = {}
        self.ports = {}
        self.clients: list = []
        for name, protocol_class in (("singers", SingerProtocol), ("director", DirectorProtocol),
                                     ("desk", DeskProtocol)):
            factory = self.factories[name] = ObservedFactory(self.room, protocol_class)
            port = reactor.listenTCP(0, factory, interface="127.0.0.1")
            self.ports[name] = port
            testcase.addCleanup(port.stopListening)
        self.room.start()
        testcase.addCleanup(self.room.stop)
        testcase.addCleanup(self.close_everything)  # runs first

    def port_number(self, name: str) -> int:
        return self.ports[name].getHost().port

    async def connect(self, name: str, client: Protocol) -> Protocol:
        """Connect ``client`` to the listener ``name`` (singers, director, desk)."""
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port_number(name))
        client = await connectProtocol(endpoint, client)
        self.clients.append(client)
        if isinstance(getattr(client, "disconnected", None), defer.Deferred):
            # SimulatedSinger fires it with the Failure: keep it from being "unhandled".
            client.disconnected.addErrback(lambda failure: failure.value)
        return client

    async def connect_singers(self, singers: list) -> None:
        before = len(self.room.singers)
        for singer in singers:
            await self.connect("singers", singer)
        await self.room.when(lambda: len(self.room.singers) >= before + len(singers))

    def server_side(self, name: str, singer_name: str):
        """The daemon's protocol for the peer of listener ``name`` whose header has ``singer_name``."""
        for p in self.factories[name].built:
            if p.header is not None and p.header.name == singer_name:
                return p
        raise LookupError(singer_name)

    def close_everything(self) -> defer.Deferred:
        """Close every connection and wait for both ends to see it (a clean reactor)."""
        for client in self.clients:
            if client.transport is not None and client.transport.connected:
                client.transport.abortConnection()
        waits = [p.lost for f in self.factories.values() for p in f.built if not p.lost.called]
        return defer.gatherResults(waits)


def within(d: defer.Deferred, seconds: float = 10.0) -> defer.Deferred:
    """``d``, failing with TimeoutError if it has not fired within ``seconds``."""
    return d.addTimeout(seconds, reactor)


class FaultySinger(SimulatedSinger):
    """A SimulatedSinger that misbehaves once it is about to send voice chunk ``at``.

    fault: "stall" (keeps the connection, sends nothing more), "quit" (closes
    its connection), "garbage" (sends bytes that are no chunks).
    """

    def __init__(self, clock, name, *, fault: str, at: int, **options):
        super().__init__(clock, name, **options)
        self.fault = fault
        self.at = at
        self.faulted = False

    def _send(self, data):
        if len(data) == 260 and data[:4] == encode_index(self.at) or self.faulted:
            if not self.faulted:
                self.faulted = True
                if self.fault in ("quit", "garbage"):
                    # What is on its way still gets there first (TCP keeps the order).
                    if self._link_timer is not None:
                        self._link_timer.cancel()
                        self._link_timer = None
                    self.transport.write(b"".join(data for _, data in self._link))
                    self._link.clear()
                if self.fault == "quit":
                    self.transport.loseConnection()
                elif self.fault == "garbage":
                    rng = np.random.default_rng(99)
                    self.transport.write(rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
            return
        super()._send(data)


def service_daemon(*args) -> MemoryDaemon:
    """The daemon as ``twistd choir ARGS`` makes it (no recording, no HTTP), in memory."""
    from twisted.internet.task import Clock

    from choir_twisted.service import Options, makeService
    options = Options()
    options.parseOptions(["--no-record", "--no-runners", "--singers", "tcp:8868",
                          "--director", "tcp:8878", "--desk", "tcp:8858", *args])
    clock = Clock()
    return MemoryDaemon.from_service(makeService(options, clock=clock), clock)
