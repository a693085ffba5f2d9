"""Per-connection output: bounded, and straight to the socket when it can be."""
from collections import deque

from twisted.internet import tcp
from twisted.internet.interfaces import IPullProducer, IPushProducer
from zope.interface import implementer


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
        transport.registerProducer(self, self.streaming)

    streaming = True  # Twisted pauses us when its buffer is full, resumes when drained

    def write(self, data: bytes) -> None:
        if self.overflowed:
            return
        if not self.paused:
            self.transport.write(data)
            return
        self._hold(data)

    def _hold(self, data: bytes) -> None:
        self.backlog.append(data)
        self.backlog_bytes += len(data)
        if self.backlog_bytes > self.limit:
            self.overflowed = True
            self.stopProducing()

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

    def release(self) -> None:
        """Before ``loseConnection``: what is held back goes to Twisted, and we stop being
        its producer. Twisted closes a connection only once its buffer is empty and no
        pull producer is registered (it would ask ours for more, for ever)."""
        if self.backlog:
            self.transport.write(b"".join(self.backlog))
            self.stopProducing()
        self.overflowed = True  # nothing more is written
        self.transport.unregisterProducer()


@implementer(IPullProducer)
class DirectOutput(BoundedOutput):
    """For plain TCP: ``send`` on the socket, Twisted only for what it does not take.

    Every ``transport.write`` makes Twisted register the socket for writing and
    unregister it once drained: two epoll calls per write, per singer, per tick.
    Here data goes straight to the socket while Twisted holds nothing of ours; a
    remainder is handed to Twisted, and, as its pull producer, we hear when its
    buffer is empty again. Until then new data waits in the bounded backlog.
    """

    streaming = False  # Twisted calls resumeProducing each time its buffer is empty

    def __init__(self, transport, limit: int):
        self._socket = transport.getHandle()
        super().__init__(transport, limit)

    def write(self, data: bytes) -> None:
        if self.overflowed:
            return
        if self.paused:  # Twisted still holds data of ours: keep the order
            self._hold(data)
            return
        try:
            sent = self._socket.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:  # let Twisted meet the error and close the connection
            sent = 0
        if sent < len(data):
            self.paused = True
            self.transport.write(data[sent:] if sent else data)

    def resumeProducing(self) -> None:
        """Twisted's buffer is empty."""
        self.paused = False
        if self.backlog:
            data = b"".join(self.backlog)
            self.backlog.clear()
            self.backlog_bytes = 0
            self.write(data)


def has_plain_socket(transport) -> bool:
    """A TCP (or UNIX) connection without TLS: its socket can be used directly."""
    return isinstance(transport, tcp.Connection) and not transport.TLS


def output_for(transport, limit: int) -> BoundedOutput:
    if has_plain_socket(transport):
        return DirectOutput(transport, limit)
    return BoundedOutput(transport, limit)  # TLS, or a test transport
