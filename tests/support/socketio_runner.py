"""A runner's socket.io connection for the tests, over a real WebSocket (Autobahn): to the
daemon (``SocketRunner``, joined), or frame by frame to a NotificationHub (``HubClient``)."""
import time

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import defer, endpoints, reactor
from twisted.web import resource, server

AVAILABLE = '42/runners,["available-jobs"]'
KNOWN_RUNNERS = {"ptrt-good": "runner-1"}  # a hub's runners: NotificationHub(.., .get)


def socketio_factory(port) -> WebSocketClientFactory:
    """A factory of WebSockets to the socket.io endpoint on 127.0.0.1:``port``."""
    return WebSocketClientFactory(f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket")


class SocketRunner(WebSocketClientProtocol):
    """Answers pings; every other frame is kept in ``frames`` and, with its arrival time,
    queued in ``arrivals`` for tests that await the next one."""

    def onOpen(self):
        self.closed = defer.Deferred()  # fires when the server hangs up
        self.frames = []
        self.arrivals = defer.DeferredQueue()
        self.factory.opened.callback(self)

    def onMessage(self, payload, isBinary):
        text = payload.decode()
        if text == "2":
            self.sendMessage(b"3")
        else:
            self.frames.append(text)
            self.arrivals.put((time.monotonic(), text))

    def onClose(self, wasClean, code, reason):
        if not self.factory.opened.called:
            self.factory.opened.errback(ConnectionError(reason))
        elif not self.closed.called:
            self.closed.callback(None)

    def available_jobs(self) -> int:
        return self.frames.count(AVAILABLE)


async def connect_socket(port, runner_token, test=None) -> SocketRunner:
    """A socket joined to the /runners namespace with ``runner_token`` (checked: the open
    frame, then the namespace's sid). ``test``: dropped at the test's end."""
    factory = socketio_factory(port)
    factory.protocol, factory.opened = SocketRunner, defer.Deferred()
    await endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(factory)
    sock = await factory.opened
    if test is not None:
        test.addCleanup(sock.dropConnection)
    _, opening = await sock.arrivals.get()
    assert opening.startswith("0{"), opening
    sock.sendMessage(('40/runners,{"runnerToken":"%s"}' % runner_token).encode())
    _, joined = await sock.arrivals.get()
    assert joined.startswith('40/runners,{"sid":'), joined
    return sock


def hub_site(hub) -> server.Site:
    """A site serving ``hub`` (a NotificationHub) at /socket.io, as the daemon does."""
    root = resource.Resource()
    root.putChild(b"socket.io", hub.resource())
    return server.Site(root)


class HubClient(WebSocketClientProtocol):
    """A socket.io client as PeerTube's runner behaves (or, with answer_pings off, does not):
    every frame, pings too, is queued in ``frames``."""

    answer_pings = True

    def __init__(self):
        super().__init__()
        self.frames = defer.DeferredQueue()
        self.closed = defer.Deferred()
        self.pings = 0

    def onOpen(self):
        self.factory.opened.callback(self)

    def onMessage(self, payload, isBinary):
        text = payload.decode()
        if text == "2":
            self.pings += 1
            if self.answer_pings:
                self.sendMessage(b"3")
        self.frames.put(text)

    def onClose(self, wasClean, code, reason):
        if not self.closed.called:
            self.closed.callback(time.monotonic())

    async def next_frame(self, skip_pings=True):
        while True:
            frame = await self.frames.get()
            if not (skip_pings and frame == "2"):
                return frame


async def open_hub_client(test, port, answer_pings=True) -> HubClient:
    """A HubClient connected to 127.0.0.1:``port`` (the hub's open frame not read yet),
    dropped at ``test``'s end, which waits for it to be closed."""
    factory = socketio_factory(port)
    factory.protocol, factory.opened = HubClient, defer.Deferred()
    await endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(factory)
    client = await factory.opened
    client.answer_pings = answer_pings
    test.addCleanup(lambda: client.closed)
    test.addCleanup(client.dropConnection)
    return client
