"""socket.io notifications to runners, over real WebSockets on 127.0.0.1."""
import json
import time

from twisted.internet import defer, endpoints, protocol, reactor
from twisted.internet.task import Clock
from twisted.trial import unittest
from twisted.web import client

from choir_twisted.runners.notifications import NotificationHub

from ...support.socketio_runner import KNOWN_RUNNERS, hub_site, open_hub_client


class NotificationsTest(unittest.TestCase):
    timeout = 20

    def start(self, **options):
        self.hub = NotificationHub(options.pop("clock", reactor), KNOWN_RUNNERS.get, **options)
        self.port = reactor.listenTCP(0, hub_site(self.hub), interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.addCleanup(self.hub.stop)

    async def connect(self, token="ptrt-good", answer_pings=True, namespace="/runners"):
        runner = await open_hub_client(self, self.port.getHost().port, answer_pings)
        opening = await runner.next_frame()
        self.assertEqual(opening[0], "0")
        runner.opening = json.loads(opening[1:])
        if token is not None:
            runner.sendMessage(('40%s,{"runnerToken":"%s"}' % (namespace, token)).encode())
            runner.answer = await runner.next_frame()
        return runner

    async def test_a_runner_joins_and_hears_available_jobs(self):
        self.start()
        runner = await self.connect()
        self.assertEqual(runner.opening["upgrades"], [])
        self.assertEqual((runner.opening["pingInterval"], runner.opening["pingTimeout"]), (25000, 20000))
        self.assertTrue(runner.answer.startswith('40/runners,{"sid":'), runner.answer)
        self.hub.notify_available_jobs()
        self.assertEqual(await runner.next_frame(), '42/runners,["available-jobs"]')

    async def test_a_runner_behind_a_path_prefix_hears_on_its_own_namespace(self):
        """PeerTube's runner registered at https://host/choir joins "/choir/runners"."""
        self.start()
        plain, prefixed = await self.connect(), await self.connect(namespace="/choir/runners")
        self.assertTrue(prefixed.answer.startswith('40/choir/runners,{"sid":'), prefixed.answer)
        other = await self.connect(namespace="/live-videos", token=None)
        other.sendMessage(b'40/live-videos,{"runnerToken":"ptrt-good"}')
        await other.closed  # a namespace not offered is a protocol error
        self.hub.notify_available_jobs()
        self.assertEqual(await plain.next_frame(), '42/runners,["available-jobs"]')
        self.assertEqual(await prefixed.next_frame(), '42/choir/runners,["available-jobs"]')
        self.assertEqual(len(self.hub.sockets), 2)

    async def test_a_token_that_is_not_text_is_refused_not_crashed_on(self):
        self.start()
        runner = await self.connect(token="\\ud800")
        self.assertEqual(runner.answer, '44/runners,{"message":"Unknown runner token"}')
        self.assertEqual(self.flushLoggedErrors(), [])

    async def test_an_unknown_runner_token_is_refused(self):
        self.start()
        runner = await self.connect(token="ptrt-stranger")
        self.assertEqual(runner.answer, '44/runners,{"message":"Unknown runner token"}')
        self.assertEqual(len(self.hub.sockets), 0)  # not among those notified

    async def test_a_runner_that_never_answers_pings_is_dropped(self):
        self.start(ping_interval=0.2, ping_timeout=0.2)
        good = await self.connect()
        mute = await self.connect(answer_pings=False)
        started = time.monotonic()
        dropped_at = await mute.closed
        self.assertGreaterEqual(dropped_at - started, 0.2 + 0.2 - 0.05)
        self.assertGreaterEqual(mute.pings, 1)
        self.assertEqual(len(self.hub.sockets), 1)  # the good one stays
        while good.pings < 3:  # it answered every ping and is still there
            await good.frames.get()
        self.assertFalse(good.closed.called)

    async def test_polling_and_other_versions_get_a_clear_error(self):
        self.start()
        agent = client.Agent(reactor)
        base = f"http://127.0.0.1:{self.port.getHost().port}/socket.io/"
        for query, code in (("?EIO=4&transport=polling", 0), ("?EIO=3&transport=websocket", 5),
                            ("?EIO=4&transport=websocket", 3)):  # no Upgrade header
            response = await agent.request(b"GET", (base + query).encode())
            body = json.loads(await client.readBody(response))
            self.assertEqual(response.code, 400)
            self.assertEqual(body["code"], code)
            self.assertIn(b"application/json", response.headers.getRawHeaders(b"content-type")[0])

    async def test_a_refused_websocket_handshake_logs_no_error(self):
        """A handshake autobahn refuses (here: an unknown WebSocket version) closes the
        connection before onConnect: nothing of ours may fail on the way out."""
        self.start()
        got = defer.Deferred()

        class Raw(protocol.Protocol):
            def connectionMade(self):
                self.data = b""
                self.transport.write(
                    b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n"
                    b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    b"Sec-WebSocket-Version: 99\r\n\r\n")

            def dataReceived(self, data):
                self.data += data

            def connectionLost(self, reason):
                got.callback(self.data)
        await endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", self.port.getHost().port) \
            .connect(protocol.Factory.forProtocol(Raw))
        answer = await got
        self.assertTrue(answer.startswith(b"HTTP/1.1 4"), answer[:80])
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertEqual(len(self.hub.sockets), 0)

    def test_available_jobs_is_debounced_to_once_a_second(self):
        clock = Clock()
        hub = NotificationHub(clock, KNOWN_RUNNERS.get)
        for _ in range(5):
            hub.notify_available_jobs()
        self.assertEqual(hub.notifications_sent, 1)  # the first goes at once
        clock.advance(0.5)
        hub.notify_available_jobs()
        hub.notify_available_jobs()
        self.assertEqual(hub.notifications_sent, 1)
        clock.advance(0.5)
        self.assertEqual(hub.notifications_sent, 2)  # one more, a second after the first
        clock.advance(5)
        self.assertEqual(hub.notifications_sent, 2)  # nothing new, nothing sent
        hub.notify_available_jobs()
        self.assertEqual(hub.notifications_sent, 3)

    async def test_a_broadcast_reaches_every_runner_whole_and_logs_nothing(self):
        # Sent straight to the sockets where nothing is queued before it.
        from twisted.logger import LogLevel, globalLogPublisher

        self.start(debounce=0)
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        runners = [await self.connect() for _ in range(5)]
        for _ in range(3):
            self.hub.notify_available_jobs()
        self.assertEqual(self.hub.notifications_sent, 3)
        for runner in runners:
            for _ in range(3):
                self.assertEqual(await runner.next_frame(), '42/runners,["available-jobs"]')
        # autobahn's debug calls (one per frame sent) are no-ops, not lines in the daemon's log
        self.assertEqual([e for e in events if e.get("log_level") == LogLevel.debug], [])
        # and the ordinary way still works alongside (bytes already queued on one socket)
        socket = next(iter(self.hub.sockets))
        socket.transport.write(socket.factory.prepareMessage(b"2").payloadHybi)
        self.assertIsNone(socket.raw_socket())
        self.hub.notify_available_jobs()
        for runner in runners:
            self.assertEqual(await runner.next_frame(), '42/runners,["available-jobs"]')

    async def test_an_oversized_message_closes_that_connection_only(self):
        from choir_twisted.runners.notifications import MAX_MESSAGE
        self.start(debounce=0)
        good = await self.connect()
        greedy = await self.connect()
        greedy.sendMessage(b"4" + b"x" * MAX_MESSAGE)
        await greedy.closed
        self.assertEqual(len(self.hub.sockets), 1)
        self.hub.notify_available_jobs()
        self.assertEqual(await good.next_frame(), '42/runners,["available-jobs"]')
