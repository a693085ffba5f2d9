"""What choir-singer's client keeps on the reactor: its connection to the server
(``ServerLink``) and what happened in each session (``SessionReport``)."""
from twisted.internet import protocol

from choir_protocol.rehearsal.connections import SingerClientConnection


class SessionReport:
    """What happened in one session, as the reactor saw it."""

    def __init__(self, number: int):
        self.number = number
        self.received = 0  # track chunks
        self.played = 0
        self.buffered = 0
        self.sent = 0  # voice chunks
        self.late = 0
        self.underruns = 0
        self.started_playing = False
        self.track_ended = False
        self.dropped = None  # the reason, once dropped out
        self.finished = False

    @property
    def over(self) -> bool:
        return self.finished or self.dropped is not None


class ServerLink(protocol.Protocol):
    """One TCP connection to the server; the client does the thinking."""

    def __init__(self, client):
        self.client = client
        self.conn = SingerClientConnection()
        self.alive = False
        self.made_at = None
        self.received_any = False

    def connectionMade(self):
        self.alive = True
        try:
            self.transport.setTcpNoDelay(True)
        except (AttributeError, OSError):
            pass
        self.client._link_made(self)

    def dataReceived(self, data):
        self.client._link_data(self, data)

    def connectionLost(self, reason):
        self.alive = False
        self.client._link_lost(self, reason)

    def write(self, data: bytes) -> None:
        if self.alive:
            self.transport.write(data)
