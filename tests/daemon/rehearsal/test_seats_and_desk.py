"""Nobody takes a seat without singing, and the desk cannot be flooded or used by anyone.

The real Room and protocols on a Clock (tests/support/daemon_helpers.py MemoryDaemon): every
timeout is reached by moving the clock.
"""
import random

from twisted.internet import defer, reactor
from twisted.internet.protocol import Protocol
from twisted.trial import unittest

from choir_clients.demo.simulated import SimulatedSinger
from choir_protocol.rehearsal import desk as desk_messages
from choir_protocol.rehearsal.chunks import ChunkReader, refusal_reason
from choir_protocol.rehearsal.constants import MIX_CHUNK_SIZE, TRACK_CHUNK_SIZE, Signal
from choir_protocol.rehearsal.header import Header
from choir_twisted.rehearsal import protocols
from choir_twisted.rehearsal.protocols import (DESK_IDLE_TIMEOUT, DESK_LIST_BUDGET,
                                               FIRST_TRACK_TIMEOUT)
from choir_twisted.service import Options

from ...support.daemon_helpers import MemoryDaemon, TcpDaemon, service_daemon, voice_signal, within

REFUSAL = [(Signal.ABORT, MIX_CHUNK_SIZE)]


def chunks_of(director) -> list:
    return [(index, size) for index, size, _ in director.received]


def squat(daemon, host="10.0.0.66"):
    """A client that sends a director's header and nothing more."""
    peer = daemon.raw_peer("director", host=host)
    peer.send(Header("", "No group", "squatter").to_bytes())
    return peer


def singers_session(daemon, director, chunks=40) -> None:
    director.stream(chunks)
    director.end()
    daemon.run_until(lambda: daemon.room.session is None)


# -- the director's seat ------------------------------------------------------------------

def test_a_header_alone_opens_no_session_and_is_closed():
    daemon = MemoryDaemon()
    daemon.singer("Ann", voice=voice_signal(40, seed=1))
    squatter = squat(daemon)
    daemon.advance(1.0)
    assert daemon.room.session is None and not squatter.closed

    director = daemon.director()  # a real one, after the squatter: the seat is free
    singers_session(daemon, director)
    assert daemon.room.last_session.director is director.protocol
    assert daemon.room.last_session.ended == "complete" and len(director.mix) == 40

    daemon.advance(FIRST_TRACK_TIMEOUT)
    assert squatter.closed
    reader = ChunkReader(MIX_CHUNK_SIZE)
    assert [i for i, _ in reader.feed(squatter.take_output())] == [Signal.ABORT]
    assert list(daemon.room.directors) == [director.protocol]


def test_squatters_reconnecting_in_a_loop_never_refuse_a_director():
    daemon = MemoryDaemon()
    daemon.singer("Ann", voice=voice_signal(400, seed=1))
    for round_ in range(10):
        squatters = [squat(daemon) for _ in range(5)]
        director = daemon.director()
        singers_session(daemon, director, 20)
        assert not director.refused, round_
        assert len(director.mix) == 20
        for squatter in squatters:
            squatter.transport.peer_closes()  # and they come back, next round
        daemon.advance(0.1)
    assert daemon.room.sessions_done == 10


def test_the_first_track_chunk_takes_the_seat_from_another_waiting_director():
    daemon = MemoryDaemon()
    daemon.singer("Ann", voice=voice_signal(100, seed=1))
    early, late = daemon.director(), daemon.director()
    late.stream(10)  # the first to send chunk 0 opens the session
    daemon.run_until(lambda: len(late.mix) == 10)
    early.stream(10)
    daemon.advance(0.1)
    assert chunks_of(early) == REFUSAL and early.closed
    late.stream(10)
    late.end()
    daemon.run_until(lambda: daemon.room.session is None)
    assert len(late.mix) == 20 and daemon.room.last_session.ended == "complete"


def test_a_director_with_no_singer_is_still_refused_at_once():
    daemon = MemoryDaemon()
    director = daemon.director()
    daemon.advance(0.05)
    assert chunks_of(director) == REFUSAL and director.closed


# -- a client at the wrong port ---------------------------------------------------------

def test_our_singer_at_the_director_port_is_told_where_singers_go():
    daemon = service_daemon()
    daemon.singer("Ann")
    wrong = daemon.raw_peer("director")
    wrong.send(Header("Bob", "Bass", "choir-singer 0.3").to_bytes())
    daemon.advance(0.05)
    sent = [(i, c) for i, c in ChunkReader(TRACK_CHUNK_SIZE).feed(wrong.take_output())]
    assert [i for i, _ in sent] == [Signal.REFUSED]  # in the size a singer client reads
    assert refusal_reason(sent[0][1]) == "this is the director port; singers use port 8868"
    assert wrong.closed and not daemon.room.directors and daemon.room.session is None


def test_our_director_at_the_singer_port_is_told_where_directors_go():
    daemon = service_daemon()
    wrong = daemon.raw_peer("singers")
    wrong.send(Header(client_version="choir-director 0.1").to_bytes())
    daemon.advance(0.05)
    sent = ChunkReader(MIX_CHUNK_SIZE).feed(wrong.take_output())
    assert [i for i, _ in sent] == [Signal.REFUSED]
    assert refusal_reason(sent[0][1]) == "this is the singer port; directors use port 8878"
    assert wrong.closed and not daemon.room.singers


def test_our_singer_refused_by_a_full_room_is_told_why():
    """Our singer client gets -4 with the reason (it prints it and stops, not retrying in
    a loop); a 1.1.3 singer is closed on, as by the 1.1.3 server."""
    daemon = service_daemon("--max-singers", "1")
    daemon.singer("Ann")
    ours, theirs = daemon.raw_peer("singers"), daemon.raw_peer("singers")
    ours.send(Header("Bob", "Bass", "choir-singer 0.1.0").to_bytes())
    theirs.send(Header("Cy", "Bass", "").to_bytes())
    daemon.advance(0.05)
    sent = ChunkReader(TRACK_CHUNK_SIZE).feed(ours.take_output())
    assert [i for i, _ in sent] == [Signal.REFUSED]
    assert refusal_reason(sent[0][1]) == "the room is full (1 singer at most)"
    assert ours.closed and theirs.closed and theirs.take_output() == b""
    assert len(daemon.room.singers) == 1


# -- singers per address ------------------------------------------------------------------

def test_one_address_cannot_fill_the_room():
    daemon = service_daemon("--max-singers-per-address", "2")
    first = [daemon.singer(f"S{i}", host="10.0.0.5") for i in range(2)]
    third = daemon.singer("S2", host="10.0.0.5")
    other = daemon.singer("Elsewhere", host="10.0.0.6")
    daemon.advance(0.05)
    assert third.closed and not other.closed and not any(s.closed for s in first)
    first[0].transport.peer_closes()
    daemon.advance(0.05)
    again = daemon.singer("S3", host="10.0.0.5")  # a seat of that address is free again
    daemon.advance(0.05)
    assert not again.closed
    assert len(daemon.room.singers) == 3


def test_the_per_address_cap_has_a_default_and_can_be_lifted():
    options = Options()
    options.parseOptions([])
    assert options["max-singers-per-address"] == 50
    options = Options()
    options.parseOptions(["--max-singers-per-address", "0"])
    assert options["max-singers-per-address"] == 0


# -- the desk ---------------------------------------------------------------------------

def test_the_desk_is_refused_to_an_address_without_a_director():
    daemon = MemoryDaemon()
    daemon.singer("Ann")
    stranger = daemon.desk(host="10.0.0.9")
    daemon.advance(0.05)
    assert stranger.closed
    assert stranger.replies == [{"error": "the mixing desk is served only to the director's address"}]

    director = daemon.director(host="10.0.0.9")  # the director's machine gets it
    director.stream(5)
    desk = daemon.desk(host="10.0.0.9")
    desk.request({"action": "list", "all": True})
    daemon.run_until(lambda: desk.replies)
    assert [e["name"] for e in desk.replies[0]] == ["Ann"]
    local = daemon.desk(host="127.0.0.1")  # and this machine, by default (--desk-from)
    local.request({"action": "list"})
    daemon.run_until(lambda: local.replies)
    assert not local.closed


def test_a_desk_past_its_request_budget_is_dropped_and_a_polling_one_is_not():
    daemon = MemoryDaemon()
    daemon.singer("Ann")
    daemon.director().stream(5)
    polite, flood = daemon.desk(), daemon.desk()
    for _ in range(40):  # 4 lists a second for 10 s
        polite.request({"action": "list"})
        daemon.advance(0.25)
    burst = int(DESK_LIST_BUDGET[1])
    for _ in range(burst + 1):
        flood.request({"action": "list"})
    daemon.advance(0.05)
    assert len(polite.replies) == 40 and not polite.closed
    assert len(flood.replies) == burst and flood.closed


def test_an_idle_desk_is_closed():
    daemon = MemoryDaemon()
    daemon.singer("Ann")
    daemon.director().stream(5)
    desk = daemon.desk()
    daemon.advance(DESK_IDLE_TIMEOUT - 1)
    desk.request({"action": "list"})  # a request restarts the wait
    daemon.advance(DESK_IDLE_TIMEOUT - 1)
    assert not desk.closed
    daemon.advance(2)
    assert desk.closed


def test_a_list_too_long_for_one_message_is_cut_not_fatal():
    daemon = MemoryDaemon()
    rng = random.Random(7)
    for i in range(500):  # long names that gzip cannot shrink much
        name = "".join(chr(rng.randrange(0x4E00, 0x9FFF)) for _ in range(72))
        daemon.singer(name, host=f"10.1.{i // 250}.{i % 250}")
    daemon.director().stream(5)
    desk = daemon.desk()
    desk.request({"action": "list", "all": True})
    daemon.run_until(lambda: desk.replies)
    shown = desk.replies[0]
    assert 0 < len(shown) < 500 and not desk.closed
    assert len(desk_messages.encode_message(shown)) <= desk_messages.MAX_MESSAGE + 2


def test_many_desks_share_one_built_list(monkeypatch):
    daemon = MemoryDaemon()
    for name in ("Ann", "Bob"):
        daemon.singer(name)
    daemon.director().stream(5)
    built = []
    real = desk_messages.encode_list_reply
    monkeypatch.setattr(desk_messages, "encode_list_reply",
                        lambda entries: built.append(1) or real(entries))
    desks = [daemon.desk() for _ in range(20)]
    for desk in desks:
        desk.request({"action": "list", "all": True})
    daemon.run_until(lambda: all(d.replies for d in desks))
    assert len(built) == 1
    assert all(d.replies == desks[0].replies for d in desks)
    desks[0].request({"action": "adjust_gain", "id": desks[0].replies[0][0]["id"], "gain": 0.5})
    desks[1].request({"action": "list", "all": True})  # a change shows at once
    daemon.run_until(lambda: len(desks[1].replies) == 2)
    assert sorted(e["gain"] for e in desks[1].replies[1]) == [0.5, 1.0]


# -- over real TCP: a refused client is closed by the daemon, not left half-open -------------

class _Closed(Protocol):
    """Sends ``data`` on connection; ``lost`` fires when the daemon closes the connection."""

    def __init__(self, data: bytes):
        self.data = data
        self.received = b""
        self.lost = defer.Deferred()

    def connectionMade(self):
        self.transport.write(self.data)

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        self.lost.callback(None)


class RefusedIsClosedTest(unittest.TestCase):
    """Twisted closes a connection with a pull producer registered only once the producer
    is gone: refusals used to leave the daemon's side in CLOSE_WAIT, holding a descriptor."""

    async def _refused(self, daemon, listener: str, header: Header) -> bytes:
        client = await daemon.connect(listener, _Closed(header.to_bytes()))
        await within(client.lost, 5)  # the daemon closed it; we never did
        return client.received

    async def test_a_director_refused_with_no_singer_is_closed(self):
        daemon = TcpDaemon(self)
        got = await self._refused(daemon, "director", Header(client_version="1.1.3"))
        self.assertEqual([i for i, _ in ChunkReader(MIX_CHUNK_SIZE).feed(got)], [Signal.ABORT])

    async def test_a_singer_at_the_director_port_is_closed(self):
        daemon = TcpDaemon(self)
        got = await self._refused(daemon, "director", Header("Ann", "Alto", "choir-singer 1"))
        self.assertEqual([i for i, _ in ChunkReader(TRACK_CHUNK_SIZE).feed(got)], [Signal.REFUSED])

    async def test_a_director_that_sends_no_track_is_closed(self):
        daemon = TcpDaemon(self)
        await daemon.connect_singers([SimulatedSinger(reactor, "Ann", "Alto")])
        self.patch(protocols, "FIRST_TRACK_TIMEOUT", 0.2)
        got = await self._refused(daemon, "director", Header(client_version="squatter"))
        self.assertEqual([i for i, _ in ChunkReader(MIX_CHUNK_SIZE).feed(got)], [Signal.ABORT])


def test_refusals_repeated_in_a_loop_log_a_line_then_a_count():
    from twisted.logger import capturedLogs
    daemon = MemoryDaemon()
    daemon.singer("Ann")
    with capturedLogs() as events:
        for _ in range(200):  # a stranger's desk, reconnecting as fast as it can
            daemon.desk(host="10.0.0.9")
            daemon.advance(0.01)
        daemon.advance(10)
    refusals = [e for e in events if "10.0.0.9" in str(e.get("subject", ""))]
    assert len(refusals) == 2  # the first refusal, then "Refused N more ... in the last 10 s"
    assert refusals[1]["n"] == 199


def test_control_characters_of_a_peer_never_reach_the_log_raw():
    from twisted.logger import capturedLogs, formatEvent
    daemon = MemoryDaemon()
    with capturedLogs() as events:
        daemon.singer("\x1b[2J\x1b[31mEvil\rAnn", "Alto\x07", voice=voice_signal(20, seed=1))
        director = daemon.raw_peer("director")
        director.send(Header(client_version="\x1b]0;pwned\x07").to_bytes())
        singers_session(daemon, daemon.director(), 20)  # its summary names each singer
        daemon.room.stop()
    text = "\n".join(formatEvent(e) for e in events)
    assert "Evil" in text and "pwned" in text and "Alto" in text  # logged, escaped
    assert "chunks, 0 late" in text
    assert not any(c in text for c in "\x1b\x07\r")
