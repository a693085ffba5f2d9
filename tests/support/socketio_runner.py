"""A runner's socket.io connection for the tests, over a real WebSocket (Autobahn)."""
import time

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import defer, endpoints, reactor

AVAILABLE = '42/runners,["available-jobs"]'


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
    factory = WebSocketClientFactory(f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket")
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
