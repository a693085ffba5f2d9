"""socket.io notifications for runners, over Autobahn WebSockets.

PeerTube's runner opens ``/socket.io/?EIO=4&transport=websocket``, joins the
``/runners`` namespace with its runner token, answers pings, and asks for jobs
whenever it hears ``available-jobs``. The framing is choir_protocol.runners.socketio; this
module only moves frames, runs the ping clock and fans notifications out.
"""
import json
import secrets

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.internet import defer, tcp
from twisted.logger import Logger
from twisted.web import resource

from choir_protocol.errors import ProtocolError
from choir_protocol.runners.socketio import (Closed, NamespaceConnectRequested,
                                             NamespaceDisconnected, Pong, SocketIOServerConnection)
from choir_protocol.text import is_text

NAMESPACE = "/runners"
PING_INTERVAL = 25.0
PING_TIMEOUT = 20.0
AUTH_TIMEOUT = 10.0  # seconds for a new socket to join /runners with a valid runner token
DEBOUNCE = 1.0  # available-jobs at most once a second
MAX_MESSAGE = 64 * 1024  # a runner's socket.io frames are a few dozen bytes


class RunnerSocket(WebSocketServerProtocol):
    # Not ``log``: that is autobahn's own (txaio) logger, whose debug calls are no-ops.
    # Replaced by a twisted Logger, every frame sent wrote a debug line to the daemon's log.
    _log = Logger()
    # until onConnect accepts the handshake (a refused one closes without them)
    hub = runner = namespace = None
    _ping_timer = _pong_deadline = _auth_deadline = None

    def onConnect(self, request):
        problem = _query_problem(request.params)
        if problem:
            raise ConnectionDeny(400, problem[1])
        self.hub = self.factory.hub
        self.conn = SocketIOServerConnection(secrets.token_urlsafe(15),
                                             ping_interval=int(self.hub.ping_interval * 1000),
                                             ping_timeout=int(self.hub.ping_timeout * 1000),
                                             namespaces=_runners_namespace)
        self.runner = None
        self._ping_timer = self._pong_deadline = None
        return None

    def onOpen(self):
        self._send(self.conn.open_frame())
        self._schedule_ping()
        # a socket that answers pings but never authenticates would stay for ever
        self._auth_deadline = self.hub.clock.callLater(self.hub.auth_timeout, self._no_auth)

    def onMessage(self, payload, isBinary):
        if isBinary:
            self._fail("binary frames are not part of this protocol")
            return
        try:
            events = self.conn.receive_frame(payload.decode("utf-8"))
        except (ProtocolError, UnicodeDecodeError) as e:
            self._fail(f"protocol error: {e}")
            return
        for event in events:
            if isinstance(event, NamespaceConnectRequested):
                self._authenticate(event)
            elif isinstance(event, Pong):
                self._cancel(self._pong_deadline)
                self._pong_deadline = None
            elif isinstance(event, (NamespaceDisconnected, Closed)):
                self.hub.remove(self)
                if isinstance(event, Closed):
                    self.dropConnection(abort=False)

    @defer.inlineCallbacks
    def _authenticate(self, event):
        token = (event.auth or {}).get("runnerToken")
        runner = (yield defer.maybeDeferred(self.hub.authenticate, token)) \
            if isinstance(token, str) and is_text(token) else None
        if self.conn.state.name == "CLOSED" or not self.ready:
            return
        if runner is None:
            self._send(self.conn.refuse_namespace(event.namespace, "Unknown runner token"))
            return
        self.runner = runner
        self._cancel(self._auth_deadline)
        self._auth_deadline = None
        # A runner registered at https://host/prefix joins "/prefix/runners" (socket.io's
        # client takes the URL's path as the namespace): the notifications go there.
        self.namespace = event.namespace
        self._send(self.conn.accept_namespace(event.namespace, secrets.token_urlsafe(15)))
        self.hub.add(self)

    def hang_up(self) -> None:
        if self.namespace in self.conn.connected:
            self._send(self.conn.disconnect_namespace(self.namespace))
        self.dropConnection(abort=False)

    @property
    def ready(self) -> bool:
        return self.state == WebSocketServerProtocol.STATE_OPEN

    def _send(self, frame: str) -> None:
        if self.ready:
            self.sendMessage(frame.encode("utf-8"))

    def raw_socket(self):
        """The connection's socket when a frame may be written to it directly, now: a plain
        TCP connection, open, with nothing queued before (in Twisted or in autobahn) and no
        per-message compression. None otherwise. See ``NotificationHub._broadcast``."""
        t = self.transport
        if (self._perMessageCompress is not None or self.send_queue
                or not isinstance(t, tcp.Connection) or t.TLS or not t.connected
                or t.disconnecting or t._writeDisconnected or t._tempDataLen
                or len(t.dataBuffer) > t.offset):
            return None
        return t.socket

    def _schedule_ping(self):
        self._ping_timer = self.hub.clock.callLater(self.hub.ping_interval, self._ping)

    def _ping(self):
        self._ping_timer = None
        if not self.ready:
            return
        self._send(self.conn.ping())
        self._pong_deadline = self.hub.clock.callLater(self.hub.ping_timeout, self._no_pong)
        self._schedule_ping()

    def _no_auth(self):
        self._auth_deadline = None
        self._fail(f"no valid runner token within {self.hub.auth_timeout:g} s")

    def _no_pong(self):
        self._pong_deadline = None
        self._fail(f"no pong within {self.hub.ping_timeout:g} s")

    def _fail(self, reason: str):
        self._log.warn("Dropping runner socket {peer}: {reason}", peer=self.peer, reason=reason)
        self.hub.remove(self)
        self.dropConnection(abort=True)

    @staticmethod
    def _cancel(call):
        if call is not None and call.active():
            call.cancel()

    def onClose(self, wasClean, code, reason):
        self._cancel(self._ping_timer)
        self._cancel(self._pong_deadline)
        self._cancel(self._auth_deadline)
        if self.hub is not None:
            self.hub.remove(self)


def _query_problem(params: dict):
    """(engine.io error code, message) for a request we do not serve, else None."""
    def one(name):
        values = params.get(name) or params.get(name.encode()) or []
        value = values[0] if values else None
        return value.decode() if isinstance(value, bytes) else value

    if one("EIO") != "4":
        return 5, "Unsupported protocol version: only Engine.IO 4 (EIO=4)"
    if one("transport") != "websocket":
        return 0, "Transport unknown: only transport=websocket is served (no polling)"
    return None


def _send_all(targets, data: bytes) -> list:
    """Sends ``data`` on each (RunnerSocket, raw socket) -> [(RunnerSocket, bytes not sent)]."""
    unsent = []
    for socket, raw in targets:
        try:
            sent = raw.send(data)
        except OSError:  # full (BlockingIOError) or broken: the transport will meet it
            sent = 0
        if sent < len(data):
            unsent.append((socket, data[sent:]))
    return unsent


def _runners_namespace(namespace: str) -> bool:
    """``/runners``, or ``/prefix/runners`` for a runner registered at https://host/prefix."""
    return namespace == NAMESPACE or (namespace.endswith(NAMESPACE) and "," not in namespace)


class NotificationHub:
    """The connected runners, and the debounced ``available-jobs`` broadcast."""

    log = Logger()

    def __init__(self, clock, authenticate, *, ping_interval=PING_INTERVAL,
                 ping_timeout=PING_TIMEOUT, debounce=DEBOUNCE, auth_timeout=AUTH_TIMEOUT):
        self.clock = clock
        self.authenticate = authenticate  # runner token -> runner (or None), may be a Deferred
        self.ping_interval, self.ping_timeout, self.debounce = ping_interval, ping_timeout, debounce
        self.auth_timeout = auth_timeout
        self.sockets: set = set()
        self.factory = WebSocketServerFactory()
        self.factory.protocol = RunnerSocket
        self.factory.hub = self
        # autobahn accepts messages of any size by default: memory stays bounded here
        self.factory.setProtocolOptions(maxFramePayloadSize=MAX_MESSAGE,
                                        maxMessagePayloadSize=MAX_MESSAGE)
        self._last_sent = None
        self._pending = None
        self.notifications_sent = 0

    def add(self, socket) -> None:
        self.sockets.add(socket)

    def remove(self, socket) -> None:
        self.sockets.discard(socket)

    def keep_only(self, runner_ids) -> int:
        """Hangs up on every runner not in ``runner_ids`` (removed or unregistered: it must
        hear of no more jobs), with a socket.io disconnect first. -> how many."""
        gone = [s for s in self.sockets
                if s.runner is not None and getattr(s.runner, "id", None) not in runner_ids]
        for socket in gone:
            self.remove(socket)
            socket.hang_up()
        return len(gone)

    def notify_available_jobs(self) -> None:
        """A job became pending: tell every runner, at most once per ``debounce``."""
        if self._pending is not None:
            return  # one is on its way and will cover this one
        now = self.clock.seconds()
        wait = 0.0 if self._last_sent is None else self._last_sent + self.debounce - now
        if wait <= 0:
            self._broadcast()
        else:
            self._pending = self.clock.callLater(wait, self._broadcast)

    def _broadcast(self) -> None:
        self._pending = None
        self._last_sent = self.clock.seconds()
        self.notifications_sent += 1
        if not self.sockets:
            return
        by_namespace = {}
        for socket in list(self.sockets):
            by_namespace.setdefault(socket.namespace or NAMESPACE, []).append(socket)
        for namespace, sockets in by_namespace.items():
            frame = '42%s,["available-jobs"]' % namespace
            prepared = self.factory.prepareMessage(frame.encode("utf-8"))  # framed once for all
            # The frame goes straight to the kernel where nothing is queued before it:
            # Twisted's transport.write would hold it until the reactor's next turn and pay
            # an epoll_ctl on each side of the send (and the first runner would hear nothing
            # before the last frame is queued). What the kernel does not take at once is
            # queued as usual.
            direct, data = [], prepared.payloadHybi
            for socket in sockets:
                if socket.ready:
                    raw = socket.raw_socket()
                    if raw is None:
                        socket.sendPreparedMessage(prepared)
                    else:
                        direct.append((socket, raw))
            for socket, rest in _send_all(direct, data):
                socket.transport.write(rest)

    def resource(self) -> resource.Resource:
        return SocketIOResource(self)

    def stop(self) -> None:
        if self._pending is not None and self._pending.active():
            self._pending.cancel()
        self._pending = None


class SocketIOResource(resource.Resource):
    """``/socket.io/``: WebSocket only; anything else gets engine.io's JSON error."""

    isLeaf = True

    def __init__(self, hub: NotificationHub):
        super().__init__()
        self._websocket = WebSocketResource(hub.factory)

    def render(self, request):
        params = {k.decode(errors="replace"): [v.decode(errors="replace") for v in vs]
                  for k, vs in request.args.items()}  # a key may be junk too (%ff)
        problem = _query_problem(params)
        if problem is None and (request.getHeader("upgrade") or "").lower() != "websocket":
            problem = (3, "Bad request: a WebSocket upgrade is expected")
        if problem is not None:
            request.setResponseCode(400)
            request.setHeader("content-type", "application/json")
            return json.dumps({"code": problem[0], "message": problem[1]}).encode()
        return self._websocket.render(request)
