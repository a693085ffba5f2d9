"""Fuzz targets of the sans-IO parsers: the 512-byte header, chunk framing, the four
connection state machines, mixing-desk messages, Engine.IO / Socket.IO frames.

Each case is a byte (or text) stream built mostly from well-formed pieces with faults mixed
in, cut at arbitrary points, so that the parsers get past their first check. The only
exception a parser may raise is ProtocolError; the server-side calls a caller makes
(``invite``, ``accept_namespace``...) are made only where the caller would make them.
"""
import gzip
import json
import struct

from hypothesis import strategies as st

from choir_protocol.rehearsal import desk
from choir_protocol.rehearsal.chunks import ChunkReader, encode_index
from choir_protocol.rehearsal.connections import (DirectorClientConnection,
                                                  DirectorServerConnection, SingerClientConnection,
                                                  SingerServerConnection, SingerState)
from choir_protocol.rehearsal.constants import (HEADER_SIZE, INDEX_MULTIPLIER, MIX_CHUNK_SIZE,
                                                TRACK_CHUNK_SIZE, VOCAL_GROUPS, VOICE_CHUNK_SIZE)
from choir_protocol.rehearsal.header import AUTH_KEY, Header
from choir_protocol.runners import socketio as sio

from .harness import pure

# -- building blocks ---------------------------------------------------------------------------

INT32 = st.integers(-2**31, 2**31 - 1)


def split(data: bytes, cuts) -> list:
    """``data`` cut at the fractions ``cuts`` (0..1): how TCP may deliver it."""
    points = sorted({int(c * len(data)) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]


CUTS = st.lists(st.floats(0, 1), max_size=8)

# UTF-8 text of every kind: control characters, combining marks, astral planes, and
# the bytes 1.1.3 leaves when it cuts a name in the middle of a character
FIELD_TEXT = st.text(st.characters(codec="utf-8"), max_size=80)


@st.composite
def header_bytes(draw):
    """A 512-byte header: any version, fields of any bytes, the key right or broken."""
    version = draw(st.one_of(st.sampled_from([1, 2, 3]), st.integers(0, 0xFFFF)))
    fields = draw(st.one_of(
        st.tuples(FIELD_TEXT, FIELD_TEXT, st.sampled_from(VOCAL_GROUPS) | FIELD_TEXT).map(
            lambda t: b"".join(s.encode("utf-8")[:n].ljust(n, b" ")
                               for s, n in zip(t, (218, 24, 12)))),
        st.binary(min_size=254, max_size=254)))
    key = draw(st.one_of(st.just(AUTH_KEY), st.just(AUTH_KEY), st.binary(min_size=256, max_size=256),
                         st.integers(0, 255).map(lambda i: AUTH_KEY[:i] + bytes([AUTH_KEY[i] ^ 1])
                                                 + AUTH_KEY[i + 1:])))
    data = struct.pack(">H", version) + fields + key
    # a header that is not 512 bytes, now and then
    return draw(st.one_of(st.just(data), st.just(data), st.just(data),
                          st.binary(max_size=HEADER_SIZE + 8)))


def index_bytes():
    """A chunk's 4-byte index: valid audio and signals mostly, any int32 sometimes."""
    return st.one_of(
        st.integers(0, 6).map(encode_index),
        st.integers(-5, -1).map(encode_index),
        st.integers(-(2**31 // INDEX_MULTIPLIER), (2**31 - 1) // INDEX_MULTIPLIER).map(encode_index),
        INT32.map(lambda i: struct.pack(">i", i)))


@st.composite
def chunk_stream(draw, size):
    """Chunks of ``size`` bytes: mostly consecutive audio from 0, signals and faults mixed
    in (a wrong index, a short or long chunk, junk)."""
    out, next_audio = [], 0
    for kind in draw(st.lists(st.sampled_from("aaaasssfj"), max_size=24)):
        if kind == "a":
            out.append(encode_index(next_audio) + bytes(size - 4))
            next_audio += 1
        elif kind == "s":
            signal = draw(st.sampled_from([-1, -2, -3, -4, -5]))
            out.append(encode_index(signal) + bytes(size - 4))
            if signal == -1:
                next_audio = 0
        elif kind == "f":
            out.append(draw(index_bytes()) + bytes(draw(st.integers(0, size))))
        else:
            out.append(draw(st.binary(max_size=size + 8)))
    return b"".join(out)


# -- header ------------------------------------------------------------------------------------

def run_header(data: bytes):
    header = Header.parse(data)
    assert isinstance(header.name, str) and isinstance(header.group, str)


# -- chunks ------------------------------------------------------------------------------------

SIZES = st.sampled_from([VOICE_CHUNK_SIZE, TRACK_CHUNK_SIZE, MIX_CHUNK_SIZE])


@st.composite
def chunk_cases(draw):
    size = draw(SIZES)
    return size, draw(chunk_stream(size)), draw(CUTS)


def run_chunks(case):
    size, data, cuts = case
    reader, got = ChunkReader(size), 0
    for piece in split(data, cuts):
        chunks = reader.feed(piece)
        assert all(len(chunk) == size for _, chunk in chunks)
        got += len(chunks) * size
    assert got + reader.pending == len(data)  # nothing lost, nothing made up


# -- connections -------------------------------------------------------------------------------

ROLES = {  # role -> (connection class, chunk size it reads, whether a header comes first)
    "singer-server": (SingerServerConnection, VOICE_CHUNK_SIZE, True),
    "director-server": (DirectorServerConnection, TRACK_CHUNK_SIZE, True),
    "singer-client": (SingerClientConnection, TRACK_CHUNK_SIZE, False),
    "director-client": (DirectorClientConnection, MIX_CHUNK_SIZE, False),
}


@st.composite
def connection_cases(draw):
    role = draw(st.sampled_from(sorted(ROLES)))
    _, size, has_header = ROLES[role]
    header = draw(st.one_of(st.just(Header(name="n", client_version="v").to_bytes()),
                            header_bytes())) if has_header else b""
    # the server's own moves between reads: invite the singer, end its session
    moves = draw(st.lists(st.sampled_from(["invite", "end", None, None]), max_size=8))
    return role, header + draw(chunk_stream(size)), draw(CUTS), moves


def run_connection(case):
    role, data, cuts, moves = case
    conn = ROLES[role][0]()
    for i, piece in enumerate(split(data, cuts)):
        move = moves[i] if i < len(moves) else None
        if role == "singer-server":
            if move == "invite" and conn.state is SingerState.IDLE:
                conn.invite()  # the room invites idle singers only
            elif move == "end":
                conn.end_session()
        conn.receive_data(piece)  # events, or ProtocolError (the connection is closed)


# -- mixing desk -------------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12)
BOMB = gzip.compress(bytes(2 * desk.MAX_DECOMPRESSED))  # inflates past the limit

DESK_REQUESTS = st.one_of(
    st.just({"action": "list"}),
    st.fixed_dictionaries({"action": st.just("adjust_gain"),
                           "id": st.one_of(st.tuples(st.text(max_size=15), st.integers()).map(list),
                                           JSON),
                           "gain": st.one_of(st.floats(), st.integers(), JSON)}),
    st.dictionaries(st.sampled_from(["action", "id", "gain", "all"]), JSON),
    JSON)


def framed(payload: bytes) -> bytes:
    return struct.pack(">H", min(len(payload), 0xFFFF)) + payload


DESK_MESSAGE = st.one_of(
    DESK_REQUESTS.map(lambda m: framed(gzip.compress(json.dumps(m).encode()))),
    st.binary(max_size=200).map(lambda b: framed(gzip.compress(b))),  # gzip, not JSON
    st.sampled_from([b"[" * 5000, b'"\\ud800"', b"1e999", b"NaN", b"\xff\xfe"]).map(
        lambda b: framed(gzip.compress(b))),
    st.just(framed(BOMB[:0xFFFF])),
    st.binary(max_size=64),  # junk, a length claiming more than comes
    DESK_REQUESTS.map(lambda m: gzip.compress(json.dumps(m).encode())).map(
        lambda p: framed(p)[:max(2, len(p) // 2)]))  # cut short


@st.composite
def desk_cases(draw):
    return b"".join(draw(st.lists(DESK_MESSAGE, max_size=6))), draw(CUTS)


def run_desk(case):
    data, cuts = case
    reader = desk.MessageReader()
    for piece in split(data, cuts):
        for message in reader.feed(piece):
            request = desk.parse_request(message)
            assert isinstance(request, (desk.ListSingers, desk.AdjustGain))


# -- socket.io ---------------------------------------------------------------------------------

NAMESPACES = st.sampled_from(["/runners", "/runners", "/", "/x/runners", "/other", "/runners,",
                              "/run,ners", "", "/" + "a" * 300])
JSON_TEXT = st.one_of(
    JSON.map(lambda v: json.dumps(v)),
    st.sampled_from(['{"runnerToken":"ptrt-x"}', '{"runnerToken":"\\ud800"}', '["\\udfff"]',
                     '["available-jobs"]', '["connect"]', '[1]', "[]", "{}", "NaN", "1e999",
                     "-Infinity", "[" * 3000, '{"a":' * 3000, '"\\u0000"', "[1,]", "{'a':1}"]),
    st.text(max_size=30))
ACK_IDS = st.one_of(st.just(""), st.integers(0, 20).map(str), st.just("9" * 20))


@st.composite
def socketio_frame(draw):
    """An Engine.IO packet as a WebSocket text message."""
    kind = draw(st.sampled_from("0123456789x"))
    if kind != "4" or draw(st.integers(0, 9)) == 0:
        return kind + draw(st.one_of(st.just(""), st.just("probe"), JSON_TEXT))
    packet = draw(st.sampled_from("0123456789"))
    namespace = draw(NAMESPACES)
    comma = "," if namespace not in ("", "/") and draw(st.booleans()) else ""
    return "4" + packet + namespace + comma + draw(ACK_IDS) + draw(
        st.one_of(st.just(""), JSON_TEXT))


SOCKETIO_FRAMES = st.one_of(socketio_frame(), socketio_frame(), socketio_frame(),
                            st.text(max_size=40), st.binary(max_size=10))


@st.composite
def socketio_cases(draw):
    side = draw(st.sampled_from(["server", "client"]))
    frames = draw(st.lists(SOCKETIO_FRAMES, max_size=10))
    if side == "client" and draw(st.booleans()):  # mostly past the open packet
        frames.insert(0, sio.SocketIOServerConnection("s").open_frame())
    if side == "server" and draw(st.booleans()):
        frames.insert(0, '40/runners,{"runnerToken":"t"}')
    # the caller's answers: accept or refuse a namespace, emit with an ack id, send a ping
    answers = draw(st.lists(st.sampled_from(["accept", "refuse", "emit", "ping", None]),
                            max_size=10))
    return side, frames, answers


def run_socketio(case):
    side, frames, answers = case
    if side == "server":
        conn = sio.SocketIOServerConnection("s", max_payload=2000,
                                            namespaces=lambda ns: ns.endswith("/runners"))
        conn.open_frame()
    else:
        conn = sio.SocketIOClientConnection()
    acks = iter(range(1000))
    for i, frame in enumerate(frames):
        answer = answers[i] if i < len(answers) else None
        for event in conn.receive_frame(frame):
            if isinstance(event, sio.Opened):  # our runner joins as soon as it is open
                conn.connect_namespace("/runners", {"runnerToken": "t"})
            elif isinstance(event, sio.NamespaceConnectRequested):
                if answer == "refuse":
                    conn.refuse_namespace(event.namespace, "no")
                else:
                    conn.accept_namespace(event.namespace, "n")
        if conn.state is not sio.EngineState.OPEN:
            continue
        if answer == "emit" and conn.connected:
            conn.emit(sorted(conn.connected)[0], "available-jobs", ack_id=next(acks))
        elif answer == "ping" and side == "server":
            conn.ping()


TARGETS = [
    pure("tcp-header", header_bytes(), run_header),
    pure("tcp-chunks", chunk_cases(), run_chunks),
    pure("tcp-connections", connection_cases(), run_connection),
    pure("desk", desk_cases(), run_desk),
    pure("socketio-codec", socketio_cases(), run_socketio),
]
