"""Connection caps, HTTP and socket.io timeouts, and the descriptor limit (choir_twisted.limits).

Unit tests on a Clock with in-memory transports; then real twistd daemons on loopback,
one of them started with a low RLIMIT_NOFILE (util-linux's ``prlimit``).

Over 400 lines: each cap and timeout on a Clock, then the same in real daemons; together
because the caps are shared by every port.
"""
import http.client
import os
import select
import shutil
import socket
import time

from twisted.internet import protocol, reactor, tcp
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import capturedLogs, formatEvent
from twisted.trial import unittest
from twisted.web import resource, server

from choir_protocol.networks import parse_networks
from choir_twisted import limits as L
from choir_twisted.rehearsal.protocols import RoomFactory, SingerProtocol
from choir_twisted.rehearsal.room import Room
from choir_twisted.runners.notifications import AUTH_TIMEOUT, NotificationHub
from choir_twisted.runners.service import RunnerService

from ..support.daemon_process import TwistdDaemon, until
from ..support.paths import temp_dir
from ..support.socketio_runner import KNOWN_RUNNERS, hub_site, open_hub_client


def peer(host, port=40000):
    return (IPv6Address if ":" in host else IPv4Address)("TCP", host, port)


class Echo(protocol.Protocol):
    def dataReceived(self, data):
        self.transport.write(data)


def connect(factory, host, port=40000):
    """A connection through ``factory`` on a StringTransport: (protocol, transport)."""
    p = factory.buildProtocol(peer(host, port))
    t = StringTransport(peerAddress=peer(host, port))
    p.makeConnection(t)
    return p, t


def aborted(transport) -> bool:
    return transport.disconnected  # set by StringTransport.abortConnection only


def messages(events):
    return [formatEvent(e) for e in events
            if e.get("log_namespace", "").startswith("choir_twisted.limits")]


class AddressKeyTest(unittest.TestCase):
    def test_ipv4_and_mapped_ipv4_are_one_address_and_an_ipv6_64_is_one(self):
        self.assertEqual(L.address_key("203.0.113.5"), "203.0.113.5")
        self.assertEqual(L.address_key("::ffff:203.0.113.5"), "203.0.113.5")
        self.assertEqual(L.address_key("2001:db8:1:2::1"), "2001:db8:1:2::/64")
        self.assertEqual(L.address_key("2001:db8:1:2:ffff::9"), "2001:db8:1:2::/64")
        self.assertNotEqual(L.address_key("2001:db8:1:3::1"), L.address_key("2001:db8:1:2::1"))


class ConnectionLimitsTest(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()

    def factory(self, group=L.REHEARSAL, **options):
        limits = options.pop("limits", None) or L.ConnectionLimits(self.clock, **options)
        factory = protocol.Factory.forProtocol(Echo)
        return L.LimitedFactory(factory, limits, group), limits

    def test_an_address_past_its_cap_is_closed_at_once_and_others_are_served(self):
        factory, limits = self.factory(per_address=3)
        admitted = [connect(factory, "203.0.113.5", 40000 + i) for i in range(3)]
        extra, extra_transport = connect(factory, "203.0.113.5", 40010)
        self.assertTrue(aborted(extra_transport))  # closed at once, no Echo behind it
        self.assertFalse(any(t.disconnecting for _, t in admitted))
        other, other_transport = connect(factory, "198.51.100.7")
        other.dataReceived(b"hi")
        self.assertEqual(other_transport.value(), b"hi")  # served, through the wrapper
        # one closes: its place is free again
        admitted[0][0].connectionLost(None)
        again, again_transport = connect(factory, "203.0.113.5", 40011)
        self.assertFalse(again_transport.disconnecting)
        self.assertEqual(limits.by_address, {"203.0.113.5": 3, "198.51.100.7": 1})

    def test_the_cap_is_shared_by_every_listener(self):
        rehearsal, limits = self.factory(per_address=2)
        http, _ = self.factory(L.HTTP, limits=limits)
        connect(rehearsal, "203.0.113.5")
        connect(http, "203.0.113.5")
        self.assertTrue(aborted(connect(http, "203.0.113.5")[1]))
        self.assertTrue(aborted(connect(rehearsal, "203.0.113.5")[1]))

    def test_an_ipv6_64_counts_as_one_address(self):
        factory, _ = self.factory(per_address=1)
        connect(factory, "2001:db8:1:2::1")
        self.assertTrue(aborted(connect(factory, "2001:db8:1:2::2")[1]))
        self.assertFalse(connect(factory, "2001:db8:1:3::1")[1].disconnecting)

    def test_a_group_past_its_total_is_refused_whatever_the_address(self):
        rehearsal, limits = self.factory(per_address=0, totals={L.REHEARSAL: 2, L.HTTP: 1})
        http, _ = self.factory(L.HTTP, limits=limits)
        connect(rehearsal, "203.0.113.1")
        connect(rehearsal, "203.0.113.2")
        self.assertTrue(aborted(connect(rehearsal, "203.0.113.3")[1]))
        self.assertFalse(connect(http, "203.0.113.3")[1].disconnecting)  # its own share
        self.assertTrue(aborted(connect(http, "203.0.113.4")[1]))

    def test_trusted_proxies_are_not_capped_per_address(self):
        factory, limits = self.factory(per_address=1, exempt=parse_networks("127.0.0.1"))
        for port in range(5):
            self.assertFalse(connect(factory, "127.0.0.1", port)[1].disconnecting)
        self.assertEqual(limits.by_group, {L.REHEARSAL: 5})
        connect(factory, "203.0.113.5")
        self.assertTrue(aborted(connect(factory, "203.0.113.5", 2)[1]))

    def test_no_limit_means_no_limit(self):
        factory, _ = self.factory(per_address=0)
        for port in range(1000):
            self.assertFalse(connect(factory, "203.0.113.5", port)[1].disconnecting)

    def test_a_flood_logs_one_line_then_one_summary_per_10_seconds(self):
        factory, limits = self.factory(per_address=1)
        connect(factory, "203.0.113.5")
        with capturedLogs() as events:
            for port in range(500):
                connect(factory, "203.0.113.5", port)
            self.assertEqual(len(messages(events)), 1)
            self.assertIn("Refusing a connection from 203.0.113.5", messages(events)[0])
            self.assertIn("1 connections open", messages(events)[0])
            self.clock.advance(L.REFUSAL_LOG_INTERVAL)
            for port in range(20):  # the flood goes on
                connect(factory, "203.0.113.5", port)
            self.clock.advance(L.REFUSAL_LOG_INTERVAL)
            self.clock.advance(L.REFUSAL_LOG_INTERVAL)  # it stopped: nothing more to say
            self.clock.advance(L.REFUSAL_LOG_INTERVAL)
        self.assertEqual(messages(events)[1:], [
            "Refused 499 more connections from 203.0.113.5 in the last 10 s",
            "Refused 20 more connections from 203.0.113.5 in the last 10 s"])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertNotIn("Traceback", "".join(messages(events)))

    async def test_the_room_protocols_keep_their_plain_socket(self):
        """Singers are read and written straight on the socket (links.has_plain_socket):
        behind the wrapper their transport is still the TCP connection."""
        room = Room(reactor, data_dir=None)
        limits = L.ConnectionLimits(reactor, per_address=4)
        built = []

        class Recording(RoomFactory):
            def buildProtocol(self, addr):
                built.append(super().buildProtocol(addr))
                return built[-1]

        factory = L.LimitedFactory(Recording(room, SingerProtocol), limits, L.REHEARSAL)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.assertEqual(port.factory.logPrefix(), "Singer port")  # the wrapped factory's
        client = socket.create_connection(("127.0.0.1", port.getHost().port))
        self.addCleanup(client.close)

        await until(lambda: built and built[0].connected, 5, "a connection")
        self.assertIsInstance(built[0].transport, tcp.Server)
        self.assertEqual(limits.by_address, {"127.0.0.1": 1})
        built[0].drop("test over")
        await until(lambda: not limits.by_address, 5, "the place released")


class WebSocketPlaceTest(unittest.TestCase):
    timeout = 20

    async def test_a_websocket_taken_over_from_http_releases_its_place_when_it_ends(self):
        """autobahn swaps the HTTP channel for its own protocol: the place must still be
        given back, and the hub still write to the plain socket directly."""
        hub = NotificationHub(reactor, KNOWN_RUNNERS.get)
        limits = L.ConnectionLimits(reactor, per_address=4)
        port = reactor.listenTCP(0, L.LimitedFactory(L.bound_site(hub_site(hub)), limits,
                                                     L.HTTP), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.addCleanup(hub.stop)
        runner = await open_hub_client(self, port.getHost().port)
        await runner.next_frame()
        runner.sendMessage(b'40/runners,{"runnerToken":"ptrt-good"}')
        await runner.next_frame()
        self.assertEqual(limits.by_address, {"127.0.0.1": 1})
        socket_io, = hub.sockets
        self.assertIsNotNone(socket_io.raw_socket())
        runner.dropConnection()
        await runner.closed
        await until(lambda: not limits.by_address, 5, "the place released")
        self.assertEqual(limits.by_group, {L.HTTP: 0})


class DescriptorLimitTest(unittest.TestCase):
    class FakeRlimit:
        RLIMIT_NOFILE, RLIM_INFINITY = 7, -1

        def __init__(self, soft, hard, refuse=False):
            self.limits, self.refuse = (soft, hard), refuse

        def getrlimit(self, which):
            return self.limits

        def setrlimit(self, which, limits):
            if self.refuse:
                raise ValueError("not allowed")
            self.limits = limits

    def test_the_soft_limit_is_raised_to_the_hard_one_and_shared_out(self):
        rlimit = self.FakeRlimit(1024, 65536)
        limits = L.ConnectionLimits(Clock())
        with capturedLogs() as events:
            L.LimitsService(limits, max_singers=1000, rlimit=rlimit).startService()
        self.assertEqual(rlimit.limits, (65536, 65536))
        self.assertEqual(limits.totals, {L.REHEARSAL: 16384, L.HTTP: 8192})
        lines = [formatEvent(e) for e in events]
        self.assertEqual(lines, ["Descriptor limit 65536 (raised from 1024): at most 16384 "
                                 "rehearsal and 8192 HTTP connections, 256 per address"])

    def test_a_low_limit_that_cannot_be_raised_is_kept_and_warned_about(self):
        rlimit = self.FakeRlimit(1024, 4096, refuse=True)
        limits = L.ConnectionLimits(Clock())
        with capturedLogs() as events:
            L.LimitsService(limits, max_singers=1000, rlimit=rlimit).startService()
        self.assertEqual(limits.totals, {L.REHEARSAL: 256, L.HTTP: 128})
        self.assertIn("--max-singers 1000 is more than the descriptor limit allows",
                      formatEvent(events[-1]))


class HTTPTimeoutsTest(unittest.TestCase):
    """The runner API's site as RunnerService builds it, on a Clock."""

    def site(self, clock):
        class Upload(resource.Resource):
            isLeaf = True

            def render_POST(self, request):
                return b"%d" % len(request.content.read())

        return L.bound_site(server.Site(Upload(), reactor=clock))

    def channel(self, clock, site=None):
        channel = (site or self.site(clock)).buildProtocol(peer("203.0.113.5"))
        transport = StringTransport()
        channel.makeConnection(transport)
        return channel, transport

    def test_a_slowloris_is_closed_30_s_after_its_first_byte(self):
        clock = Clock()
        channel, transport = self.channel(clock)
        channel.dataReceived(b"GET / HTTP/1.1\r\n")
        for _ in range(5):  # a header line every 25 s restarts the idle timer each time...
            clock.advance(5)
            channel.dataReceived(b"X-a: b\r\n")
            if transport.disconnecting:
                break
            clock.advance(20)
        clock.advance(0)
        # ...but the head had to be whole by 30 s
        self.assertTrue(aborted(transport))
        self.assertAlmostEqual(clock.seconds(), L.HTTP_HEADER_TIMEOUT, delta=5)

    def test_a_request_line_sent_a_byte_at_a_time_is_closed_too(self):
        clock = Clock()
        channel, transport = self.channel(clock)
        for byte in b"GET / HTTP/1.1":
            channel.dataReceived(bytes([byte]))
            clock.advance(10)
        self.assertTrue(aborted(transport))

    def test_an_idle_connection_is_closed_after_60_s(self):
        clock = Clock()
        _, transport = self.channel(clock)
        clock.advance(L.HTTP_IDLE_TIMEOUT - 1)
        self.assertFalse(transport.disconnecting)
        clock.advance(1)
        self.assertTrue(transport.disconnecting)

    def test_a_slow_long_upload_is_not_cut(self):
        clock = Clock()
        channel, transport = self.channel(clock)
        channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n")
        for _ in range(20):  # a byte every 20 s: 400 s for the body
            clock.advance(20)
            channel.dataReceived(b"x")
        self.assertFalse(transport.disconnecting)
        self.assertTrue(transport.value().endswith(b"\r\n\r\n20"), transport.value())
        # and the next request on the connection gets its own 30 s for its head
        channel.dataReceived(b"GET / HTTP/1.1\r\n")
        clock.advance(L.HTTP_HEADER_TIMEOUT - 1)
        self.assertFalse(transport.disconnecting)
        clock.advance(1)
        self.assertTrue(aborted(transport))

    def test_the_runner_service_listens_with_the_bounded_site_and_the_caps(self):
        data_dir = temp_dir(self)
        memory = MemoryReactorClock()
        limits = L.ConnectionLimits(memory, per_address=1)
        runners = RunnerService(memory, "tcp:0:interface=127.0.0.1", data_dir, limits=limits)
        runners.startService()
        self.addCleanup(runners.stopService)
        factory = memory.tcpServers[0][1]
        channel, transport = self.channel(memory, site=factory)
        self.assertTrue(aborted(connect(factory, "203.0.113.5", 2)[1]))  # the cap holds
        channel.dataReceived(b"GET / HTTP/1.1\r\n")
        memory.advance(L.HTTP_HEADER_TIMEOUT)
        self.assertTrue(aborted(transport))


class SocketIOAuthTimeoutTest(unittest.TestCase):
    timeout = 20

    def test_the_default_is_10_s(self):
        self.assertEqual(AUTH_TIMEOUT, 10.0)
        self.assertEqual(NotificationHub(Clock(), KNOWN_RUNNERS.get).auth_timeout, 10.0)

    async def test_a_socket_that_never_authenticates_is_closed(self):
        hub = NotificationHub(reactor, KNOWN_RUNNERS.get, auth_timeout=0.3)
        port = reactor.listenTCP(0, hub_site(hub), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.addCleanup(hub.stop)

        async def open_socket(token=None):
            runner = await open_hub_client(self, port.getHost().port)
            await runner.next_frame()  # engine.io open
            if token is not None:
                runner.sendMessage(('40/runners,{"runnerToken":"%s"}' % token).encode())
                runner.answer = await runner.next_frame()
            return runner

        good = await open_socket("ptrt-good")
        silent = await open_socket()
        stranger = await open_socket("ptrt-stranger")
        started = time.monotonic()
        with capturedLogs() as events:
            await silent.closed
            await stranger.closed  # refused, and it stayed: closed at the same deadline
        self.assertGreaterEqual(time.monotonic() - started, 0.2)
        self.assertFalse(good.closed.called)
        self.assertEqual(len(hub.sockets), 1)
        self.assertEqual(sum("no valid runner token within 0.3 s" in formatEvent(e)
                             for e in events), 2)


# -- real twistd ------------------------------------------------------------------------------

def wait_for_closes(sockets, n, deadline=5.0) -> list:
    """Waits until the daemon has closed ``n`` of ``sockets`` (they sent nothing, so the
    daemon's only answer can be a close) -> those it closed, at that moment."""
    end = time.monotonic() + deadline
    while True:
        readable, _, _ = select.select(sockets, [], [], max(0.0, end - time.monotonic()))
        if len(readable) >= n or time.monotonic() >= end:
            break
        time.sleep(0.01)  # let the other closes arrive; select returns at the first
    for sock in readable:
        sock.setblocking(False)
        try:
            assert sock.recv(1) == b""
        except ConnectionResetError:
            pass  # aborted: also a close
    return readable


def http_answers(port, conn=None) -> bool:
    """A request to the runner API is answered (on a new connection, or on ``conn``)."""
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/socket.io/?EIO=4&transport=polling")
        response = conn.getresponse()
        response.read()
        return response.status == 400  # engine.io's "transport unknown"
    finally:
        if own:
            conn.close()


class TwistdLimitsTest(unittest.TestCase):
    def setUp(self):
        self.tmp = temp_dir(self)
        self.sockets = []
        self.addCleanup(lambda: [s.close() for s in self.sockets])

    def daemon(self, *extra, prefix=()):
        """A daemon that has seen TwistdDaemon's probes of its ports close (they count until
        then), and one HTTP connection left open, that still counts."""
        log = os.path.join(self.tmp, "choir.log")
        daemon = TwistdDaemon(os.path.join(self.tmp, "data"), log, "--no-record", *extra,
                              prefix=prefix)
        self.addCleanup(daemon.stop)
        # answered after the reactor met the probes' earlier closes
        kept = http.client.HTTPConnection("127.0.0.1", daemon.ports["http"], timeout=5)
        kept.connect()
        self.addCleanup(kept.close)
        self.assertTrue(http_answers(daemon.ports["http"], kept))
        return daemon, log

    def open(self, port, n):
        new = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
        self.sockets += new
        return new

    def test_connections_past_the_per_address_cap_are_closed_and_logged_once(self):
        daemon, log = self.daemon("--max-connections-per-address", "5")
        opened = self.open(daemon.ports["desk"], 8) + self.open(daemon.ports["singers"], 21)
        closed = wait_for_closes(opened, 25)
        self.assertEqual(len(closed), 25)  # 4 kept (and the HTTP one), whichever they were
        kept = [s for s in opened if s not in closed]
        kept[0].close()  # a place frees: the runner API is reachable from here again
        for _ in range(100):
            try:
                if http_answers(daemon.ports["http"]):
                    break
            except (ConnectionError, http.client.HTTPException):
                time.sleep(0.05)  # the daemon has not yet seen the close
        else:
            self.fail("the runner API never answered")
        self.assertEqual(select.select(kept[1:], [], [], 0)[0], [])  # the others still open
        with open(log) as f:
            lines = [line for line in f if "Refusing a connection from 127.0.0.1" in line]
        self.assertEqual(len(lines), 1, lines)
        self.assertNotIn("Traceback", open(log).read())

    def test_a_low_descriptor_limit_is_raised_and_rehearsal_floods_leave_http_served(self):
        if shutil.which("prlimit") is None:
            self.skipTest("util-linux's prlimit is not installed")
        daemon, log = self.daemon(prefix=("prlimit", "--nofile=100:256"))
        with open(log) as f:
            text = f.read()
        self.assertIn("Descriptor limit 256 (raised from 100): at most 64 rehearsal and 32 HTTP "
                      "connections, 256 per address", text)
        # 1100 idle desks at 1024 descriptors made runner requests fail; here at a quarter scale
        flood = self.open(daemon.ports["singers"], 40) + self.open(daemon.ports["desk"], 60)
        closed = wait_for_closes(flood, 36)
        self.assertEqual(len(closed), 36)  # 64 kept: a quarter of 256
        self.assertTrue(all(http_answers(daemon.ports["http"]) for _ in range(11)))
        kept = [s for s in flood if s not in closed]
        self.assertEqual(select.select(kept, [], [], 0)[0], [])  # all 64 still open
        with open(log) as f:
            self.assertEqual(f.read().count("Refusing a connection from any address (rehearsal)"),
                             1)
