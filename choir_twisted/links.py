"""Per-connection output handling shared by the rehearsal protocols."""
from collections import deque

from zope.interface import implementer
from twisted.internet.interfaces import IPushProducer


@implementer(IPushProducer)
class BoundedOutput:
    """Writes to a transport, holding back (up to a bound) what it cannot take yet.

    Registered as the transport's streaming producer, so Twisted tells us when its
    own buffer is full; past ``limit`` bytes held back the peer is not reading and
    ``overflowed`` turns true. Memory per peer stays bounded.
    """

    def __init__(self, transport, limit: int):
        self.transport = transport
        self.limit = limit
        self.paused = False
        self.backlog: deque = deque()
        self.backlog_bytes = 0
        self.overflowed = False
        transport.registerProducer(self, True)

    def write(self, data: bytes) -> None:
        if self.overflowed:
            return
        if not self.paused:
            self.transport.write(data)
            return
        self.backlog.append(data)
        self.backlog_bytes += len(data)
        if self.backlog_bytes > self.limit:
            self.overflowed = True
            self.backlog.clear()
            self.backlog_bytes = 0

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        while self.backlog and not self.paused:
            data = self.backlog.popleft()
            self.backlog_bytes -= len(data)
            self.transport.write(data)

    def stopProducing(self) -> None:
        self.backlog.clear()
        self.backlog_bytes = 0
