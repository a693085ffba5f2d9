"""The daemon's listeners that need more than ``strports.service``."""
import socket

from twisted.application import service
from twisted.application.internet import StreamServerEndpointService
from twisted.internet import endpoints, reactor

from choir_protocol.addresses import format_server

from .endpoint_check import WILDCARDS
from .publishing.http_url import write_http_url


class RehearsalPort(StreamServerEndpointService):
    """A rehearsal port's listener. twistd's start (``startup.makeService``) listens it
    before twistd daemonizes, so that a port in use is told on the terminal; the
    privileged start that twistd makes later then finds it listening."""

    def __init__(self, role: str, description: str, factory):
        super().__init__(endpoints.serverFromString(reactor, description), factory)
        self._raiseSynchronously = True  # a port in use raises, rather than being logged
        self.role = role
        self.setName(role)

    def listen(self) -> None:
        """Listens now; raises what the endpoint raises (CannotListenError)."""
        if self._waitingForPort is None:
            super().privilegedStartService()

    def privilegedStartService(self):
        self.listen()


class HttpUrlService(service.Service):
    """Writes DATA_DIR/http-url (``http_url``) once the runner API listens: started after
    the runners' service, whose start listens at once."""

    def __init__(self, runners, public_url: str | None):
        self.runners = runners
        self.public_url = public_url

    def startService(self):
        super().startService()
        url = self.public_url or local_http_url(self.runners.port.getHost())
        if url is not None:
            write_http_url(self.runners.data_dir, url)


def local_http_url(address) -> str | None:
    """``http://HOST:PORT`` of a listening port's address: the interface it is bound to,
    or this host's name when it listens on all of them; None for a unix socket."""
    port = getattr(address, "port", None)
    if port is None:
        return None
    host = address.host if address.host not in WILDCARDS else socket.gethostname()
    return f"http://{format_server(host, port)}"
