"""Connection caps and HTTP timeouts, so that idle or slow peers cannot take every descriptor.

* ``ConnectionLimits`` counts the open connections of every listener together: per
  address (an IPv4 address, or an IPv6 /64: one subscriber gets a whole /64) and per
  group ("rehearsal": singers, director and desk; "http"), the group totals derived
  from RLIMIT_NOFILE so that a flood of rehearsal connections leaves descriptors to the
  runner API, and the other way round. ``LimitedFactory`` wraps a listener's factory
  with it; refusals are logged once per address and reason, then summed up every 10 s.
* ``HeaderDeadlineChannel``: twisted.web's idle timeout restarts at every byte, so a
  client sending a header line every 25 s kept its connection for ever; a request's
  head (request line and headers) must now arrive whole within ``header_timeout``.
* ``raise_descriptor_limit``: the soft RLIMIT_NOFILE up to the hard one, at start.
"""
import ipaddress
import resource

from twisted.application import service
from twisted.internet import protocol
from twisted.internet.interfaces import ILoggingContext
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.web import http
from zope.interface import directlyProvides, providedBy

from choir_protocol.networks import in_networks

from .rehearsal.links import has_plain_socket

DEFAULT_MAX_PER_ADDRESS = 256  # above a large choir behind one NAT, far below a flood
REFUSAL_LOG_INTERVAL = 10.0  # seconds between summaries of refusals for one address
# Of the descriptors: rehearsal connections may hold two each (the socket, and the singer's
# journal while recorded), HTTP ones two (the socket, a file sent or received); the last
# quarter is left to the store, the logs, the recorder's mix and the listening sockets.
REHEARSAL_SHARE = 4  # at most RLIMIT_NOFILE // 4 rehearsal connections
HTTP_SHARE = 8  # at most RLIMIT_NOFILE // 8 HTTP connections
REHEARSAL, HTTP = "rehearsal", "http"
HTTP_IDLE_TIMEOUT = 60.0  # seconds without a byte from an HTTP client (twisted.web: 12 h)
HTTP_HEADER_TIMEOUT = 30.0  # seconds for a request's head, from its first byte


def address_key(host: str) -> str:
    """What a connection is counted under: an IPv4 address (IPv4-mapped IPv6 included), or
    an IPv6 address's /64 network."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return host


def group_totals(descriptors: int) -> dict:
    """The most connections of each group a descriptor limit allows."""
    return {REHEARSAL: max(1, descriptors // REHEARSAL_SHARE),
            HTTP: max(1, descriptors // HTTP_SHARE)}


class RefusalLog:
    """One line at the first refusal for a subject, then, while refusals go on, one
    summary per ``interval``: a flood writes a line every 10 s, not one per connection."""

    log = Logger()

    def __init__(self, clock, interval=REFUSAL_LOG_INTERVAL):
        self.clock = clock
        self.interval = interval
        self._windows: dict = {}  # subject -> [refusals since the last line, DelayedCall]

    def refused(self, subject: str, why: str) -> None:
        window = self._windows.get(subject)
        if window is not None:
            window[0] += 1
            return
        self.log.warn("Refusing a connection from {subject}: {why}", subject=subject, why=why)
        self._windows[subject] = [0, self.clock.callLater(self.interval, self._flush, subject)]

    def _flush(self, subject: str) -> None:
        window = self._windows[subject]
        if not window[0]:
            del self._windows[subject]
            return
        self.log.warn("Refused {n} more connections from {subject} in the last {s:g} s",
                      n=window[0], subject=subject, s=self.interval)
        window[:] = [0, self.clock.callLater(self.interval, self._flush, subject)]

    def stop(self) -> None:
        for _, call in self._windows.values():
            if call.active():
                call.cancel()
        self._windows.clear()


class ConnectionLimits:
    """Open connections per address and per group, across every listener of the daemon."""

    def __init__(self, clock, *, per_address=DEFAULT_MAX_PER_ADDRESS, totals=None, exempt=()):
        self.per_address = per_address  # 0: no limit
        self.totals = dict(totals or {})  # group -> most connections (absent or 0: no limit)
        self.exempt = tuple(exempt)  # networks not capped per address (reverse proxies)
        self.by_address: dict = {}
        self.by_group: dict = {}
        self.refusals = RefusalLog(clock)

    def admit(self, host: str, group: str) -> str | None:
        """The key the new connection is counted under ("" for an exempt address), or
        None when it is refused (logged)."""
        total = self.totals.get(group)
        if total and self.by_group.get(group, 0) >= total:
            self.refusals.refused(f"any address ({group})",
                                  f"{total} {group} connections are open, the most the "
                                  "descriptor limit allows")
            return None
        key = "" if in_networks(host, self.exempt) else address_key(host)
        if key and self.per_address and self.by_address.get(key, 0) >= self.per_address:
            self.refusals.refused(key, f"it has {self.per_address} connections open "
                                       "(--max-connections-per-address)")
            return None
        if key:
            self.by_address[key] = self.by_address.get(key, 0) + 1
        self.by_group[group] = self.by_group.get(group, 0) + 1
        return key

    def release(self, key: str, group: str) -> None:
        if key:
            left = self.by_address[key] - 1
            if left:
                self.by_address[key] = left
            else:
                del self.by_address[key]
        self.by_group[group] -= 1


def _log_prefix(wrapped) -> str:
    return wrapped.logPrefix() if ILoggingContext.providedBy(wrapped) else type(wrapped).__name__


class _Refused(protocol.Protocol):
    """Closes at once. (Returning None from buildProtocol would not do under TLS, whose
    factory wraps whatever ours returns.)"""

    def connectionMade(self):
        self.transport.abortConnection()


class _Counted(ProtocolWrapper):
    """Releases its connection's place when the connection ends.

    On plain TCP the wrapped protocol gets the socket's own transport, not this wrapper:
    the rehearsal protocols and the socket.io hub write to such sockets directly
    (``links.has_plain_socket``). The reactor still delivers to the wrapper, and autobahn,
    when it takes an HTTP connection over for a WebSocket, swaps the protocol inside the
    wrapper, so the end of every connection is seen here.
    """

    def __init__(self, factory, wrapped, key):
        super().__init__(factory, wrapped)
        self.key = key

    def makeConnection(self, transport):
        directlyProvides(self, providedBy(transport))
        protocol.Protocol.makeConnection(self, transport)  # not ProtocolWrapper's: see above
        self.factory.registerProtocol(self)
        self.wrappedProtocol.makeConnection(transport if has_plain_socket(transport) else self)

    def logPrefix(self):
        return _log_prefix(self.wrappedProtocol)


class LimitedFactory(WrappingFactory):
    """A listener's factory whose connections count against ``limits`` in ``group``."""

    protocol = _Counted
    noisy = False  # the wrapped factory already logs its start and stop

    def __init__(self, wrapped, limits: ConnectionLimits, group: str):
        super().__init__(wrapped)
        self.limits, self.group = limits, group

    def logPrefix(self):
        return _log_prefix(self.wrappedFactory)  # "Singer port starting on ...", as before

    def buildProtocol(self, addr):
        host = getattr(addr, "host", None)
        if host is None:  # a UNIX socket (or a test's None): no address to count by
            return self.wrappedFactory.buildProtocol(addr)
        key = self.limits.admit(host, self.group)
        if key is None:
            refused = _Refused()
            refused.factory = self
            return refused
        wrapped = self.wrappedFactory.buildProtocol(addr)
        if wrapped is None:
            self.limits.release(key, self.group)
            return None
        return self.protocol(self, wrapped, key)

    def unregisterProtocol(self, p):
        super().unregisterProtocol(p)
        self.limits.release(p.key, self.group)


class HeaderDeadlineChannel(http.HTTPChannel):
    """An HTTPChannel that gives each request's head its site's ``header_timeout`` seconds
    from its first byte (the idle timeout, ``timeOut``, restarts at every byte)."""

    _head_deadline = None
    _log = Logger()

    def dataReceived(self, data):
        if self.line_mode and not self._handlingRequest:  # between requests, or in a head
            self._start_head_deadline()
        super().dataReceived(data)

    def lineReceived(self, line):
        self._start_head_deadline()  # also for heads already buffered behind a request
        super().lineReceived(line)

    def allHeadersReceived(self):
        self._cancel_head_deadline()
        super().allHeadersReceived()

    def connectionLost(self, reason):
        self._cancel_head_deadline()
        super().connectionLost(reason)

    @property
    def header_timeout(self) -> float:
        return getattr(self.factory, "header_timeout", HTTP_HEADER_TIMEOUT)

    def _start_head_deadline(self):
        if self._head_deadline is None and self.header_timeout:
            self._head_deadline = self.callLater(self.header_timeout, self._head_too_slow)

    def _cancel_head_deadline(self):
        if self._head_deadline is not None:
            if self._head_deadline.active():
                self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_slow(self):
        self._head_deadline = None
        self._log.info("Closing HTTP client {peer}: no complete request head within {s:g} s",
                       peer=str(self.transport.getPeer()), s=self.header_timeout)
        self.transport.abortConnection()


def bound_site(site, *, idle_timeout=HTTP_IDLE_TIMEOUT, header_timeout=HTTP_HEADER_TIMEOUT):
    """``site`` (a twisted.web Site) with an idle timeout and a deadline per request head.
    A long upload is not cut: the idle timer restarts at every piece of the body."""
    site.timeOut = idle_timeout
    site.header_timeout = header_timeout
    site.protocol = HeaderDeadlineChannel  # HTTP/1.1 only: the daemon serves no HTTP/2
    return site


def raise_descriptor_limit(rlimit=resource) -> tuple:
    """Soft RLIMIT_NOFILE up to the hard limit -> (soft before, soft now)."""
    soft, hard = rlimit.getrlimit(rlimit.RLIMIT_NOFILE)
    if hard != soft:
        try:
            rlimit.setrlimit(rlimit.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):  # e.g. an unlimited hard limit the kernel refuses
            return soft, soft
    return soft, hard


class LimitsService(service.Service):
    """Raises the descriptor limit at start, sets the group totals from it, logs both."""

    log = Logger()

    def __init__(self, limits: ConnectionLimits, max_singers=0, rlimit=resource):
        self.limits, self.max_singers, self.rlimit = limits, max_singers, rlimit

    def startService(self):
        super().startService()
        before, now = raise_descriptor_limit(self.rlimit)
        if now == self.rlimit.RLIM_INFINITY or now <= 0:
            self.log.info("No descriptor limit: connections capped per address only")
            return
        self.limits.totals = group_totals(now)
        raised = f" (raised from {before})" if now != before else ""
        per_address = self.limits.per_address or "no limit"
        self.log.info("Descriptor limit {now}{raised}: at most {rehearsal} rehearsal and "
                      "{http} HTTP connections, {per} per address", now=now, raised=raised,
                      rehearsal=self.limits.totals[REHEARSAL], http=self.limits.totals[HTTP],
                      per=per_address)
        if self.max_singers > self.limits.totals[REHEARSAL]:
            self.log.warn("--max-singers {n} is more than the descriptor limit allows: raise "
                          "it (LimitNOFILE= in systemd, ulimit -n)", n=self.max_singers)

    def stopService(self):
        super().stopService()
        self.limits.refusals.stop()
