"""Engine.IO v4 / Socket.IO v5 over a WebSocket, sans-IO, in the style of h11 and wsproto.

One WebSocket text message is one Engine.IO packet: ``receive_frame(text)`` returns events
and raises ProtocolError on anything the protocol (or this subset of it) does not allow; the
methods that send return the text frame to write. The caller owns the socket and the clock:
the server sends ``ping()`` every ``ping_interval`` ms and drops a peer that has not answered
within ``ping_timeout`` ms.

Subset and choices:
- websocket transport only: no polling, no upgrade (``5``), no noop (``6``), no binary
  packets (Socket.IO ``5``/``6``, or a bytes frame): all are ProtocolError;
- heartbeat direction is v4's: the server pings, the client pongs. A ping from the client,
  a pong from the server, and a ping/pong with data (``2probe``) are ProtocolError (engine.io
  itself answers a client ping with "invalid heartbeat direction"). A pong that answers no
  ping is accepted: it is harmless and only refreshes the caller's timer;
- event names are strings (Socket.IO also allows numbers), never a reserved name;
- a namespace that is not offered, a namespace connected twice, an event, ack or disconnect on
  a namespace that is not connected, an ack nobody asked for: ProtocolError;
- encoding is Socket.IO's: type digit, then the namespace and a comma unless it is ``/``, then
  the ack id, then compact JSON. Decoding also accepts a namespace ending the frame (``41/x``).
"""
import enum
import json
import re

import attrs

from ..errors import ProtocolError

RESERVED_EVENTS = frozenset({"connect", "connect_error", "disconnect", "disconnecting",
                             "newListener", "removeListener"})
_ACK_ID = re.compile(r"[0-9]{1,15}")  # below 2**53, as JavaScript numbers


# -- events -----------------------------------------------------------------------------

@attrs.frozen
class Opened:
    sid: str
    ping_interval: int  # ms
    ping_timeout: int  # ms
    max_payload: int  # bytes


@attrs.frozen
class Ping:
    pass


@attrs.frozen
class Pong:
    pass


@attrs.frozen
class Closed:
    pass


@attrs.frozen
class NamespaceConnectRequested:
    namespace: str
    auth: dict | None


@attrs.frozen
class NamespaceConnected:
    namespace: str
    sid: str


@attrs.frozen
class NamespaceRefused:
    namespace: str
    message: str


@attrs.frozen
class NamespaceDisconnected:
    namespace: str


@attrs.frozen
class EventReceived:
    namespace: str
    name: str
    args: tuple
    ack_id: int | None = None


@attrs.frozen
class AckReceived:
    namespace: str
    ack_id: int
    args: tuple


# -- the codec --------------------------------------------------------------------------

_ABSENT = object()


def _dumps(value) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _bad_constant(name):
    raise ValueError(f"{name} is not JSON")


def _finite_float(text):
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{text} overflows a double")
    return value


def _loads(text: str):
    return json.loads(text, parse_constant=_bad_constant, parse_float=_finite_float)


def encode_packet(kind: int, namespace: str = "/", ack_id: int | None = None,
                  data=_ABSENT) -> str:
    """A Socket.IO packet inside an Engine.IO message (``4``)."""
    if not namespace.startswith("/") or "," in namespace:
        raise ValueError(f"bad namespace {namespace!r}")
    frame = f"4{kind}" + ("" if namespace == "/" else namespace + ",")
    if ack_id is not None:
        frame += str(ack_id)
    return frame if data is _ABSENT else frame + _dumps(data)


def decode_packet(text: str) -> tuple[int, str, int | None, object]:
    """``(kind, namespace, ack_id, data)`` of a Socket.IO packet (the text after ``4``);
    data is ``_ABSENT`` when there is none."""
    if not text or text[0] not in "0123456":
        raise ProtocolError(f"unknown Socket.IO packet type in {text[:40]!r}")
    kind, i = int(text[0]), 1
    if kind in (5, 6):
        raise ProtocolError("binary Socket.IO packets are not supported")
    namespace = "/"
    if text.startswith("/", i):
        end = text.find(",", i)
        end = len(text) if end < 0 else end
        namespace, i = text[i:end], end + 1
    ack_id = None
    if match := _ACK_ID.match(text, i):
        ack_id, i = int(match.group()), match.end()
    if i >= len(text):
        return kind, namespace, ack_id, _ABSENT
    try:
        data = _loads(text[i:])
    except (ValueError, RecursionError) as e:
        raise ProtocolError(f"bad JSON in Socket.IO packet {text[:40]!r}: {e}") from None
    return kind, namespace, ack_id, data


def _event_args(namespace, data) -> tuple[str, tuple]:
    if not isinstance(data, list) or not data or not isinstance(data[0], str):
        raise ProtocolError(f"event on {namespace} is not [name, ...args]: {data!r:.60}")
    if data[0] in RESERVED_EVENTS:
        raise ProtocolError(f"reserved event name {data[0]!r} on {namespace}")
    return data[0], tuple(data[1:])


# -- the state machines -----------------------------------------------------------------

class EngineState(enum.Enum):
    OPENING = "opening"  # server: open packet not sent; client: not received
    OPEN = "open"
    CLOSED = "closed"


class _Connection:
    def __init__(self):
        self.state = EngineState.OPENING
        self.pending: set[str] = set()  # namespaces asked for and not yet answered
        self.connected: set[str] = set()
        self._awaited_acks: set[tuple[str, int]] = set()  # (namespace, id) we asked for
        self._owed_acks: set[tuple[str, int]] = set()  # (namespace, id) the peer asked for

    def receive_frame(self, text: str) -> list:
        if not isinstance(text, str):
            raise ProtocolError("binary WebSocket frames are not supported")
        if self.state is EngineState.CLOSED:
            raise ProtocolError(f"frame {text[:40]!r} after the connection closed")
        if not text or text[0] not in "0123456":
            raise ProtocolError(f"unknown Engine.IO packet type in {text[:40]!r}")
        kind, body = text[0], text[1:]
        if kind == "0":
            return [self._receive_open(body)]
        if self.state is not EngineState.OPEN:
            raise ProtocolError(f"Engine.IO packet {text[:40]!r} before the open packet")
        if kind == "4":
            return self._receive_packet(*decode_packet(body))
        if kind in "56":
            raise ProtocolError(f"Engine.IO packet {kind} is not used on a websocket")
        if body:
            raise ProtocolError(f"Engine.IO packet {kind} with data {body[:40]!r}")
        if kind == "1":
            self.state = EngineState.CLOSED
            return [Closed()]
        return [self._receive_heartbeat(kind)]

    def _require_connected(self, namespace, what):
        if namespace not in self.connected:
            raise ProtocolError(f"{what} on namespace {namespace}, which is not connected")

    def _receive_packet(self, kind, namespace, ack_id, data):
        if kind == 1:
            if data is not _ABSENT or ack_id is not None:
                raise ProtocolError(f"disconnect from {namespace} with data")
            self._require_connected(namespace, "disconnect")
            self.connected.discard(namespace)
            return [NamespaceDisconnected(namespace)]
        if kind == 2:
            self._require_connected(namespace, "event")
            name, args = _event_args(namespace, data)
            if ack_id is not None:
                self._owed_acks.add((namespace, ack_id))
            return [EventReceived(namespace, name, args, ack_id)]
        if kind == 3:
            self._require_connected(namespace, "ack")
            if not isinstance(data, list) or ack_id is None:
                raise ProtocolError(f"ack on {namespace} is not <id>[...args]")
            if (namespace, ack_id) not in self._awaited_acks:
                raise ProtocolError(f"ack {ack_id} on {namespace} answers nothing we sent")
            self._awaited_acks.remove((namespace, ack_id))
            return [AckReceived(namespace, ack_id, tuple(data))]
        return [self._receive_connect(kind, namespace, ack_id, data)]

    def _send(self, kind, namespace, ack_id=None, data=_ABSENT) -> str:
        if self.state is not EngineState.OPEN:
            raise RuntimeError(f"cannot send on a connection that is {self.state.value}")
        return encode_packet(kind, namespace, ack_id, data)

    def emit(self, namespace: str, name: str, *args, ack_id: int | None = None) -> str:
        """An event; with an ``ack_id`` the peer must answer it with an ack of that id."""
        if namespace not in self.connected:
            raise RuntimeError(f"namespace {namespace} is not connected")
        if not isinstance(name, str) or name in RESERVED_EVENTS:
            raise ValueError(f"bad event name {name!r}")
        frame = self._send(2, namespace, ack_id, [name, *args])
        if ack_id is not None:
            self._awaited_acks.add((namespace, ack_id))
        return frame

    def ack(self, namespace: str, ack_id: int, *args) -> str:
        """The answer to an EventReceived that carried this ack_id."""
        if (namespace, ack_id) not in self._owed_acks:
            raise RuntimeError(f"no event on {namespace} asked for ack {ack_id}")
        self._owed_acks.remove((namespace, ack_id))
        return self._send(3, namespace, ack_id, list(args))

    def disconnect_namespace(self, namespace: str) -> str:
        if namespace not in self.connected:
            raise RuntimeError(f"namespace {namespace} is not connected")
        self.connected.remove(namespace)
        return self._send(1, namespace)

    def close(self) -> str:
        self.state = EngineState.CLOSED
        return "1"


class SocketIOServerConnection(_Connection):
    """The server's side of one Engine.IO websocket connection."""

    def __init__(self, sid: str, ping_interval: int = 25000, ping_timeout: int = 20000,
                 max_payload: int = 1000000, namespaces=frozenset({"/runners"})):
        """``namespaces``: the ones offered, a set or a predicate on the name."""
        super().__init__()
        self.sid, self.max_payload = sid, max_payload
        self.ping_interval, self.ping_timeout = ping_interval, ping_timeout  # ms
        self.offers = namespaces if callable(namespaces) else frozenset(namespaces).__contains__

    def open_frame(self) -> str:
        if self.state is not EngineState.OPENING:
            raise RuntimeError("the open packet was already sent")
        self.state = EngineState.OPEN
        return "0" + _dumps({"sid": self.sid, "upgrades": [], "pingInterval": self.ping_interval,
                             "pingTimeout": self.ping_timeout, "maxPayload": self.max_payload})

    def receive_frame(self, text: str) -> list:
        if isinstance(text, str) and len(text.encode("utf-8", "surrogatepass")) > self.max_payload:
            raise ProtocolError(f"frame of {len(text)} characters is over {self.max_payload} bytes")
        return super().receive_frame(text)

    def _receive_open(self, body):
        raise ProtocolError("client sent an Engine.IO open packet")

    def _receive_heartbeat(self, kind):
        if kind == "2":
            raise ProtocolError("client sent a ping: in Engine.IO v4 only the server pings")
        return Pong()

    def _receive_connect(self, kind, namespace, ack_id, data):
        if kind != 0:
            raise ProtocolError(f"client sent Socket.IO packet type {kind}")
        if not self.offers(namespace):
            raise ProtocolError(f"client asked for namespace {namespace}, which is not offered")
        if namespace in self.connected or namespace in self.pending:
            raise ProtocolError(f"client asked for namespace {namespace} twice")
        if ack_id is not None or not (data is _ABSENT or isinstance(data, dict)):
            raise ProtocolError(f"connect to {namespace}: auth is not an object")
        self.pending.add(namespace)
        return NamespaceConnectRequested(namespace, None if data is _ABSENT else data)

    def _answer(self, namespace):
        if namespace not in self.pending:
            raise RuntimeError(f"no connection to {namespace} is awaiting an answer")
        self.pending.remove(namespace)

    def accept_namespace(self, namespace: str, sid: str) -> str:
        self._answer(namespace)
        self.connected.add(namespace)
        return self._send(0, namespace, data={"sid": sid})

    def refuse_namespace(self, namespace: str, message: str) -> str:
        self._answer(namespace)
        return self._send(4, namespace, data={"message": message})

    def ping(self) -> str:
        if self.state is not EngineState.OPEN:
            raise RuntimeError(f"cannot ping a connection that is {self.state.value}")
        return "2"


class SocketIOClientConnection(_Connection):
    """Our runner's side: waits for the open packet, answers pings."""

    ping_interval = ping_timeout = max_payload = sid = None

    def _receive_open(self, body):
        if self.state is not EngineState.OPENING:
            raise ProtocolError("server sent a second open packet")
        try:
            handshake = _loads(body)
        except (ValueError, RecursionError) as e:
            raise ProtocolError(f"bad JSON in the open packet: {e}") from None
        fields = ("sid", str), ("pingInterval", int), ("pingTimeout", int), ("maxPayload", int)
        if not isinstance(handshake, dict) or not all(
                type(handshake.get(key)) is kind for key, kind in fields):
            raise ProtocolError(f"bad open packet {body[:100]!r}")
        self.state = EngineState.OPEN
        self.sid, self.ping_interval, self.ping_timeout, self.max_payload = (
            handshake[key] for key, _ in fields)
        return Opened(self.sid, self.ping_interval, self.ping_timeout, self.max_payload)

    def _receive_heartbeat(self, kind):
        if kind == "3":
            raise ProtocolError("server sent a pong: in Engine.IO v4 the client answers pings")
        return Ping()

    def _receive_connect(self, kind, namespace, ack_id, data):
        if kind not in (0, 4):
            raise ProtocolError(f"server sent Socket.IO packet type {kind}")
        if namespace not in self.pending:
            raise ProtocolError(f"server answered a connection to {namespace} never asked for")
        key = "sid" if kind == 0 else "message"
        if ack_id is not None or not isinstance(data, dict) or not isinstance(data.get(key), str):
            raise ProtocolError(f"bad connect answer on {namespace}: no {key!r}")
        self.pending.remove(namespace)
        if kind == 4:
            return NamespaceRefused(namespace, data["message"])
        self.connected.add(namespace)
        return NamespaceConnected(namespace, data["sid"])

    def connect_namespace(self, namespace: str, auth: dict | None = None) -> str:
        if namespace in self.pending or namespace in self.connected:
            raise RuntimeError(f"namespace {namespace} is already connected or connecting")
        frame = self._send(0, namespace, data=_ABSENT if auth is None else auth)
        self.pending.add(namespace)
        return frame

    def pong(self) -> str:
        if self.state is not EngineState.OPEN:
            raise RuntimeError(f"cannot pong on a connection that is {self.state.value}")
        return "3"
