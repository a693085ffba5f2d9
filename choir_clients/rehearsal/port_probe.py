"""Ask a port that hung up on the director what it is.

Our daemon's mixing-desk and HTTP ports close the connection on a director's bytes without
a word. Asked in their own language, they answer: a desk's header and list request, and
an HTTP request, each on a connection of its own, both at once, for a couple of seconds.
The answers are read by ``choir_protocol.rehearsal.peer_kind.recognise``.
"""
from twisted.internet import defer, endpoints, protocol

from choir_protocol.rehearsal import desk
from choir_protocol.rehearsal.header import Header
from choir_protocol.rehearsal.peer_kind import NOTHING, UNKNOWN, Peer, enough, recognise

from .director_options import CLIENT_VERSION

PROBE_SECONDS = 2.0
QUESTIONS = (
    Header(client_version=CLIENT_VERSION).to_bytes() + desk.encode_message({"action": "list"}),
    b"HEAD / HTTP/1.0\r\n\r\n",
)


class _Question(protocol.Protocol):
    """Sends one question; ``answer`` fires with the first bytes of the reply."""

    def __init__(self, question: bytes):
        self.question = question
        self.data = b""
        self.answer = defer.Deferred()
        self.stopped = False

    def connectionMade(self):
        if self.stopped:
            self.transport.abortConnection()
            return
        self.transport.write(self.question)

    def dataReceived(self, data):
        self.data += data
        if enough(self.data):
            self.transport.abortConnection()

    def stop(self):
        """Another question was answered: stop listening."""
        self.stopped = True
        if self.transport is not None:
            self.transport.abortConnection()

    def connectionLost(self, reason):
        self.answer.callback(self.data)


async def _ask(reactor, host: str, port: int, asking: _Question, timeout: float) -> bytes:
    endpoint = endpoints.HostnameEndpoint(reactor, host, port, timeout=timeout)
    try:
        await endpoints.connectProtocol(endpoint, asking)
    except Exception:  # (refused, unreachable: it says nothing)
        return b""
    timer = reactor.callLater(timeout, asking.transport.abortConnection)
    data = await asking.answer
    if timer.active():
        timer.cancel()
    return data


async def probe(reactor, host: str, port: int, timeout: float = PROBE_SECONDS) -> Peer:
    """What answers at ``host:port``: a desk, a web server, ... or ``NOTHING``. Returns at
    the first answer it recognises, with every probing connection closed."""
    askings = [_Question(question) for question in QUESTIONS]
    found = defer.Deferred()

    def answered(data):
        peer = recognise(data)
        if peer.kind not in (NOTHING, UNKNOWN) and not found.called:
            found.callback(peer)
        return data

    def all_answered(answers):
        if not found.called:
            found.callback(Peer(UNKNOWN) if any(answers) else Peer(NOTHING))

    everything = defer.gatherResults([
        defer.ensureDeferred(_ask(reactor, host, port, asking, timeout)).addCallback(answered)
        for asking in askings])
    everything.addCallback(all_answered)
    peer = await found
    for asking in askings:
        asking.stop()
    await everything
    return peer
