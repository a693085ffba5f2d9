"""choir-runner's socket.io client: hears ``available-jobs`` from one server.

Autobahn WebSocket to ``/socket.io/?EIO=4&transport=websocket`` at the server's host root
(as socket.io-client does), namespace ``/runners`` with auth ``{runnerToken}``; the framing
is choir_protocol.runners.socketio's client side. The server pings; a server silent for longer than
pingInterval + pingTimeout is dropped (engine.io's client rule). Any drop reconnects after
a back-off that doubles from 1 s to 60 s (with jitter) and resets once the namespace is
joined again.
"""
import random
from urllib.parse import urlsplit

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import defer, endpoints, ssl, task
from twisted.logger import Logger

from choir_protocol.errors import ProtocolError
from choir_protocol.runners.socketio import (Closed, EventReceived, NamespaceConnected,
                                             NamespaceDisconnected, NamespaceRefused, Opened, Ping,
                                             SocketIOClientConnection)

from ..cli import plain_reason

NAMESPACE = "/runners"
FIRST_DELAY, MAX_DELAY = 1.0, 60.0


class _Socket(WebSocketClientProtocol):
    def onOpen(self):
        self.conn = SocketIOClientConnection()
        self.watchdog = None

    def onMessage(self, payload, isBinary):
        owner = self.factory.owner
        try:
            events = self.conn.receive_frame(payload.decode("utf-8") if not isBinary else payload)
        except (ProtocolError, UnicodeDecodeError) as e:
            owner.log.warn("{url}: socket.io protocol error: {e}", url=owner.url, e=e)
            self.dropConnection(abort=True)
            return
        for event in events:
            if isinstance(event, Opened):
                self.sendMessage(self.conn.connect_namespace(
                    NAMESPACE, {"runnerToken": owner.runner_token}).encode())
                self._arm()
            elif isinstance(event, Ping):
                self.sendMessage(self.conn.pong().encode())
                self._arm()
            elif isinstance(event, NamespaceConnected):
                owner.joined()
            elif isinstance(event, NamespaceRefused):
                owner.refused(event.message)
                self.dropConnection(abort=False)
            elif isinstance(event, EventReceived) and event.name == "available-jobs":
                owner.on_available_jobs()
            elif isinstance(event, (NamespaceDisconnected, Closed)):
                self.dropConnection(abort=False)

    def _arm(self):
        if self.watchdog is not None and self.watchdog.active():
            self.watchdog.cancel()
        silence = (self.conn.ping_interval + self.conn.ping_timeout) / 1000
        self.watchdog = self.factory.reactor.callLater(silence, self._silent)

    def _silent(self):
        self.factory.owner.log.warn("{url}: no ping from the server: reconnecting",
                                    url=self.factory.owner.url)
        self.dropConnection(abort=True)

    def onClose(self, wasClean, code, reason):
        watchdog = getattr(self, "watchdog", None)
        if watchdog is not None and watchdog.active():
            watchdog.cancel()
        self.factory.closed.callback(reason)


class NotificationClient:
    """Keeps one socket.io connection to ``url`` up until ``stop()``.

    ``on_connect()`` runs each time the namespace is joined, ``on_available_jobs()`` on each
    notification, ``on_refused(message)`` when the server refuses the runner token."""

    log = Logger()

    def __init__(self, reactor, url, runner_token, on_connect, on_available_jobs, on_refused):
        self.reactor = reactor
        self.url = url.rstrip("/")
        self.runner_token = runner_token
        self.on_connect, self.on_available_jobs = on_connect, on_available_jobs
        self.on_refused = on_refused
        self.connected = False
        self._stopping = False
        self._delay = FIRST_DELAY
        self._protocol = self._loop = None

    def start(self):
        self._loop = defer.ensureDeferred(self._run())

    def _endpoint(self):
        parts = urlsplit(self.url)
        secure = parts.scheme == "https"
        port = parts.port or (443 if secure else 80)
        endpoint = endpoints.HostnameEndpoint(self.reactor, parts.hostname, port)
        if secure:
            endpoint = endpoints.wrapClientTLS(ssl.optionsForClientTLS(parts.hostname), endpoint)
        scheme = "wss" if secure else "ws"
        return endpoint, f"{scheme}://{parts.netloc}/socket.io/?EIO=4&transport=websocket"

    async def _run(self):
        endpoint, ws_url = self._endpoint()
        while not self._stopping:
            factory = WebSocketClientFactory(ws_url)
            factory.protocol, factory.owner, factory.reactor = _Socket, self, self.reactor
            factory.noisy = False  # no "Starting factory" line per attempt
            factory.closed = defer.Deferred()
            try:
                self._protocol = await endpoint.connect(factory)
                reason = await factory.closed
            except defer.CancelledError:
                break
            except Exception as e:
                reason = plain_reason(e)
            finally:
                self._protocol = None
            was_connected, self.connected = self.connected, False
            if self._stopping:
                break
            delay = self._delay * random.uniform(0.8, 1.2)
            self._delay = min(self._delay * 2, MAX_DELAY)
            self.log.warn("{url}: socket.io {what} ({reason}); reconnecting in {delay:.1f} s",
                          url=self.url, what="connection lost" if was_connected else
                          "unreachable", reason=reason or "closed", delay=delay)
            try:
                await task.deferLater(self.reactor, delay, lambda: None)
            except defer.CancelledError:
                break

    def joined(self):
        self.connected = True
        self._delay = FIRST_DELAY
        self.log.info("{url}: connected, listening for jobs", url=self.url)
        self.on_connect()

    def refused(self, message):
        self.log.warn("{url}: socket.io refused the runner: {message}", url=self.url,
                      message=message)
        self.on_refused(message)

    async def stop(self):
        self._stopping = True
        if self._protocol is not None:
            closed = self._protocol.factory.closed
            self._protocol.sendClose()  # autobahn drops it if the server does not answer
            await closed
        if self._loop is not None:
            self._loop.cancel()
            try:
                await self._loop
            except defer.CancelledError:
                pass
