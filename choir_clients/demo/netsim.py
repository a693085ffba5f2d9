"""A TCP proxy that adds network delay and jitter, for demos and tests.

Each direction is delayed by ``delay`` plus a uniform random ``jitter``; like TCP
it never reorders, so a late packet holds back the ones behind it.
"""
import collections
import random

from twisted.internet import endpoints, protocol


class _DelayedLink:
    """Bytes written now come out of ``transport`` ``delay`` (+ jitter) seconds later."""

    def __init__(self, clock, delay: float, jitter: float, rng: random.Random):
        self.clock, self.delay, self.jitter, self.rng = clock, delay, jitter, rng
        self.transport = None  # set once the far side is connected
        self._queue = collections.deque()  # (due, data)
        self._last_due = 0.0
        self._timer = None
        self.closing = False

    def write(self, data: bytes) -> None:
        due = max(self.clock.seconds() + self.delay + self.rng.uniform(0, self.jitter), self._last_due)
        self._last_due = due
        self._queue.append((due, data))
        self._schedule()

    def close(self) -> None:
        """Close the far side once what is on its way has arrived."""
        self.closing = True
        self._schedule()

    def _schedule(self) -> None:
        if self._timer is None and self.transport is not None:
            wait = max(0.0, self._queue[0][0] - self.clock.seconds()) if self._queue else 0.0
            self._timer = self.clock.callLater(wait, self._drain)

    def _drain(self) -> None:
        self._timer = None
        now = self.clock.seconds()
        out = []
        while self._queue and self._queue[0][0] <= now:
            out.append(self._queue.popleft()[1])
        if out:
            self.transport.write(b"".join(out))
        if self._queue:
            self._schedule()
        elif self.closing:
            self.transport.loseConnection()

    def cancel(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None


class _Target(protocol.Protocol):
    def __init__(self, incoming: "_Incoming"):
        self.incoming = incoming

    def connectionMade(self):
        self.incoming.target_connected(self)

    def dataReceived(self, data):
        self.incoming.downlink.write(data)

    def connectionLost(self, reason):
        self.incoming.downlink.close()


class _Incoming(protocol.Protocol):
    def __init__(self, factory: "DelayProxy"):
        self.factory = factory
        rng = random.Random(factory.rng.random())
        self.uplink = _DelayedLink(factory.clock, factory.delay, factory.jitter, rng)
        self.downlink = _DelayedLink(factory.clock, factory.delay, factory.jitter, rng)
        self.target = None

    def connectionMade(self):
        self.downlink.transport = self.transport
        d = endpoints.connectProtocol(self.factory.target, _Target(self))
        d.addErrback(lambda _: self.transport.loseConnection())

    def target_connected(self, target: _Target) -> None:
        self.target = target
        self.uplink.transport = target.transport
        self.uplink._schedule()

    def dataReceived(self, data):
        self.uplink.write(data)

    def connectionLost(self, reason):
        self.downlink.cancel()
        self.uplink.close()


class DelayProxy(protocol.Factory):
    """Listen with this factory; each connection is relayed to ``target`` (a client
    endpoint) with ``delay`` + up to ``jitter`` seconds each way."""

    def __init__(self, clock, target, delay: float, jitter: float = 0.0, seed: int = 0):
        self.clock, self.target, self.delay, self.jitter = clock, target, delay, jitter
        self.rng = random.Random(seed)

    def buildProtocol(self, addr):
        return _Incoming(self)
