"""The socket.io fuzz target: runners' WebSocket connections to ``/socket.io/``.

A case is an upgrade request (right, mostly, or with a query, key or version the server must
refuse) through the daemon's real HTTP channel, then a run of client moves: WebSocket frames
(Engine.IO / Socket.IO text from the codec fuzzer's vocabulary, the real namespace connect
with a real runner token, binary, control, fragmented, unmasked, reserved bits, a length past
the limit), raw bytes, and the daemon's own moves (its ping clock advancing, an
available-jobs broadcast, a hang-up on removed runners). The connection then ends, cleanly
or not. Whatever the client does, the daemon may only close the connection.
"""
import contextlib
import struct

from hypothesis import strategies as st

from .daemon import Cat, Daemon, Ref, render
from .harness import Target
from .wire import CUTS, SOCKETIO_FRAMES, split

GOOD_QUERY = "EIO=4&transport=websocket"
QUERIES = st.sampled_from([GOOD_QUERY] * 4 + [
    "EIO=3&transport=websocket", "transport=websocket", "EIO=4&transport=polling", "EIO=4",
    "", "EIO=%ff&transport=websocket", "EIO=4&EIO=4&transport=websocket",
    "EIO=4&transport=websocket&sid=abc", "EIO=4&transport=websocket&t=%ED%A0%80"])
HANDSHAKE_HEADERS = st.fixed_dictionaries(
    {"Sec-WebSocket-Key": st.sampled_from(["dGhlIHNhbXBsZSBub25jZQ=="] * 6 + ["", "x", "a" * 100]),
     "Sec-WebSocket-Version": st.sampled_from(["13"] * 6 + ["8", "x", ""])},
    optional={"Sec-WebSocket-Extensions": st.sampled_from(
                  ["permessage-deflate", "permessage-deflate; client_max_window_bits", "x"]),
              "Sec-WebSocket-Protocol": st.sampled_from(["x", "a, b", ""]),
              "Origin": st.sampled_from(["http://example.org", "null", "\xff"])})

CONNECT = Cat(('40/runners,{"runnerToken":"', Ref("runner_token"), '"}'))
CONNECT_PREFIXED = Cat(('40/x/runners,{"runnerToken":"', Ref("runner_token"), '"}'))
TEXT_FRAMES = st.one_of(SOCKETIO_FRAMES.filter(lambda f: isinstance(f, str)),
                        st.sampled_from([CONNECT, CONNECT, CONNECT_PREFIXED, "3", "3", "2",
                                         "1", "41/runners,", '42/runners,["x"]',
                                         '43/runners,0[]', "40/runners,", "\ud800"]))

MOVES = st.one_of(
    st.tuples(st.just("text"), TEXT_FRAMES, st.integers(1, 3)),  # (fragments)
    st.tuples(st.just("text"), TEXT_FRAMES, st.just(1)),
    st.tuples(st.just("frame"), st.sampled_from([0x0, 0x2, 0x3, 0x8, 0x9, 0xA, 0xB, 0xF]),
              st.binary(max_size=130), st.sampled_from(["", "", "unmasked", "rsv", "not-fin"])),
    st.tuples(st.just("huge"), st.sampled_from([0x1, 0x2, 0x9])),  # a length past the limit
    st.tuples(st.just("bytes"), st.binary(max_size=40)),
    st.tuples(st.just("clock"), st.sampled_from([1.0, 20.0, 25.0, 45.0, 3600.0])),
    st.tuples(st.just("notify")),
    st.tuples(st.just("hang-up")))

RIGHT_HANDSHAKE = st.tuples(st.just(GOOD_QUERY), st.just(
    {"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"}))


@st.composite
def moves(draw):
    """Mostly a runner's: it joins /runners with its token first."""
    first = [("text", CONNECT, 1)] if draw(st.integers(0, 3)) else []
    return first + draw(st.lists(MOVES, max_size=10))


WS_CASES = st.fixed_dictionaries({
    "handshake": st.one_of(RIGHT_HANDSHAKE, RIGHT_HANDSHAKE, RIGHT_HANDSHAKE,
                           st.tuples(QUERIES, HANDSHAKE_HEADERS)),
    "moves": moves(),
    "cuts": CUTS,  # how the handshake is cut
    "slot": st.integers(0, 7),
})

MASK = b"\x37\xfa\x21\x3d"


def ws_frame(opcode: int, payload: bytes, *, fin=True, masked=True, rsv=0,
             length=None) -> bytes:
    """A client-to-server WebSocket frame (RFC 6455); ``length`` overrides the real one."""
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    bit = 0x80 if masked else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack(">H", n)
    else:
        head += bytes([bit | 127]) + struct.pack(">Q", n)
    if not masked:
        return head + payload
    return head + MASK + bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))


def upgrade_request(case) -> bytes:
    query, headers = case["handshake"]
    lines = [f"GET /socket.io/?{query} HTTP/1.1", "Host: localhost:8000",
             "Upgrade: websocket", "Connection: Upgrade"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return "\r\n".join(lines).encode("utf-8", "surrogatepass") + b"\r\n\r\n"


def move_bytes(move, daemon) -> bytes:
    kind = move[0]
    if kind == "text":
        data, fragments = render(move[1], daemon), move[2]
        if fragments == 1:
            return ws_frame(0x1, data)
        size = max(1, len(data) // fragments)
        pieces = [data[i:i + size] for i in range(0, len(data), size)] or [b""]
        return b"".join(ws_frame(0x1 if i == 0 else 0x0, p, fin=i == len(pieces) - 1)
                        for i, p in enumerate(pieces))
    if kind == "frame":
        _, opcode, payload, fault = move
        return ws_frame(opcode, payload, masked=fault != "unmasked",
                        rsv=4 if fault == "rsv" else 0, fin=fault != "not-fin")
    if kind == "huge":
        return ws_frame(move[1], b"x" * 16, length=10 ** 9)
    return move[1]


def run_ws(daemon, case):
    hub = daemon.service.hub

    def drive(connection, outcome):
        for piece in split(upgrade_request(case), case["cuts"]):
            connection.send(piece)
        daemon.settle()
        for move in case["moves"]:
            if connection.closing:
                break
            kind = move[0]
            if kind == "clock":
                daemon.hub_clock.advance(move[1])
            elif kind == "notify":
                hub.notify_available_jobs()
            elif kind == "hang-up":
                hub.keep_only(set())  # as if every runner were removed
            else:
                connection.send(move_bytes(move, daemon))
            daemon.settle()
    return daemon.case(case["slot"], drive)


def ws_target(gc_every=1) -> Target:
    @contextlib.contextmanager
    def open_daemon():
        with Daemon(gc_every) as daemon:
            yield lambda case: run_ws(daemon, case)
    return Target("socketio-websocket", WS_CASES, open_daemon)
