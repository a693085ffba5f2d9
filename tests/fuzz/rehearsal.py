"""The rehearsal fuzz target: the daemon's three TCP ports (singers, director, desk).

The real Room and protocols on a Clock (``daemon_helpers.MemoryDaemon``). A director that
streams a track and singers that sing it back make real sessions, while raw clients on each
port send what the fuzzer gives them (headers of every version and role, chunk streams with
faults, desk messages, junk); clients close, stop reading, and the clock jumps over the
5, 10 and 30 s rules. The daemon may refuse or drop any client; it must not raise (from
``dataReceived`` or a timer) or log a failure.
"""
import contextlib
import traceback

from hypothesis import strategies as st

from choir_protocol.rehearsal import desk
from choir_protocol.rehearsal.constants import TRACK_CHUNK_SIZE, VOICE_CHUNK_SIZE
from choir_protocol.rehearsal.header import Header

from ..support.daemon_helpers import MemoryDaemon
from .harness import LogWatch, Outcome, Target
from .wire import DESK_MESSAGE, DESK_REQUESTS, chunk_stream, header_bytes

ROLES = ("singers", "director", "desk")
HEADERS = st.one_of(
    st.sampled_from([Header("raw", "Alto", "1.1.3"), Header("raw", "Bass", "choir-singer 0.3"),
                     Header("raw", "No group", "choir-director 0.3"), Header("", "", "")]).map(
        lambda h: h.to_bytes()),
    header_bytes())
PAYLOAD = {"singers": st.one_of(chunk_stream(VOICE_CHUNK_SIZE), st.binary(max_size=300)),
           "director": st.one_of(chunk_stream(TRACK_CHUNK_SIZE), st.binary(max_size=600)),
           "desk": st.lists(DESK_MESSAGE, max_size=4).map(b"".join)}


@st.composite
def raw_client(draw):
    role = draw(st.sampled_from(ROLES))
    return role, draw(HEADERS) if draw(st.integers(0, 4)) else b""


MOVES = st.one_of(
    # (a payload of any role's kind, sent by raw client i: the wrong kind is a fault too)
    st.tuples(st.just("raw"), st.integers(0, 2), st.sampled_from(ROLES).flatmap(PAYLOAD.get)),
    st.tuples(st.just("stream"), st.integers(1, 200)),  # the director's track chunks
    st.tuples(st.just("end")),  # ... and its end
    st.tuples(st.just("desk"), DESK_REQUESTS),
    st.tuples(st.just("abort"), st.integers(0, 3)),  # a singer drops out
    st.tuples(st.just("mute"), st.integers(0, 3)),  # a singer stops singing (it still reads)
    st.tuples(st.just("close"), st.integers(0, 7)),
    st.tuples(st.just("wait"), st.sampled_from([0.04, 0.2, 1.0])),  # peers react each tick
    st.tuples(st.just("jump"), st.sampled_from([5.5, 10.5, 31.0, 125.0])))  # they do not

# a session under way, mostly: the director streams, the singers hear it and sing
SESSION_START = [("stream", 40), ("wait", 0.2), ("stream", 60), ("wait", 1.0)]
SESSION_END = [("end",), ("wait", 1.0), ("wait", 1.0)]


@st.composite
def moves(draw):
    start = SESSION_START if draw(st.integers(0, 3)) else []
    end = SESSION_END if draw(st.booleans()) else []
    return start + draw(st.lists(MOVES, max_size=12)) + end


REHEARSAL_CASES = st.fixed_dictionaries({
    "singers": st.sampled_from([0, 1, 1, 2, 2, 3]),
    "director": st.sampled_from([True, True, True, False]),
    "desk": st.booleans(),
    "raw": st.lists(raw_client(), max_size=3),
    "moves": moves(),
})


def run_rehearsal(case, watch) -> Outcome:
    outcome = Outcome()
    try:
        daemon = MemoryDaemon(max_singers=3)
        singers = [daemon.singer(f"s{i}", auto_sing=True) for i in range(case["singers"])]
        director = daemon.director() if case["director"] else None
        console = daemon.desk(host="127.0.0.1") if case["desk"] else None
        raw = []
        for role, header in case["raw"]:
            peer = daemon.raw_peer(role)
            if header:
                peer.send(header)
            raw.append((role, peer))
        everyone = singers + [p for p in (director, console) if p] + [p for _, p in raw]
        for move in case["moves"]:
            kind = move[0]
            if kind == "raw" and raw:
                raw[move[1] % len(raw)][1].send(move[2])
            elif kind == "stream" and director and not director.client.track_ended:
                director.stream(move[1])
            elif kind == "end" and director and not director.client.track_ended:
                director.end()
            elif kind == "desk" and console:
                console.send(_encoded(move[1]))
            elif kind in ("abort", "mute") and singers:
                singer = singers[move[1] % len(singers)]
                singer.abort() if kind == "abort" else setattr(singer, "auto_sing", False)
            elif kind == "close" and everyone:
                everyone[move[1] % len(everyone)].transport.peer_closes()
            elif kind == "wait":
                daemon.advance(move[1])
            elif kind == "jump":
                daemon.clock.advance(move[1])
        daemon.advance(1.0)
        for peer in everyone:
            peer.transport.peer_closes()
        daemon.clock.advance(1.0)
        daemon.room.stop()
        daemon.clock.advance(1.0)
    except Exception:  # from dataReceived or a timer: a real reactor logs it
        outcome.tracebacks.append(traceback.format_exc())
    outcome.tracebacks += watch.take()
    return outcome


def _encoded(message) -> bytes:
    try:
        return desk.encode_message(message)
    except (ValueError, TypeError):  # not JSON, or too long for one message
        return desk.encode_message({"action": "list"})


def rehearsal_target(gc_every=1) -> Target:
    @contextlib.contextmanager
    def open_watch():
        with LogWatch() as watch:
            count = [0]

            def run(case):
                count[0] += 1
                outcome = run_rehearsal(case, watch)
                if count[0] % gc_every == 0:
                    outcome.tracebacks += watch.take(collect=True)
                return outcome
            yield run
    return Target("tcp-rehearsal", REHEARSAL_CASES, open_watch)
