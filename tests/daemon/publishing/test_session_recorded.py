"""Publishing starts at a session's end: the daemon's room tells the runner side
(``Room.on_session_recorded``); the sessions directory is scanned only at start-up."""
import os

from twisted.internet import defer, reactor
from twisted.trial import unittest

from choir_twisted.service import Options, makeService

from ...support.paths import temp_dir
from ...support.publishing import make_session, until_media

LOOPBACK = "tcp:0:interface=127.0.0.1"


class SessionRecordedTest(unittest.TestCase):
    timeout = 60

    async def start(self):
        self.data_dir = temp_dir(self)
        self.sessions = os.path.join(self.data_dir, "sessions")
        options = Options()
        options.parseOptions(["--data-dir", self.data_dir, "--singers", LOOPBACK,
                              "--director", LOOPBACK, "--desk", LOOPBACK, "--http", LOOPBACK])
        self.top = makeService(options, reactor)
        self.top.startService()
        self.addCleanup(lambda: defer.maybeDeferred(self.top.stopService))
        self.store = self.top.runners.store
        await self.top.room_service.recovered

    async def test_a_session_is_published_when_the_room_says_it_is_recorded(self):
        await self.start()
        self.assertEqual(self.top.room.on_session_recorded, self.top.runners.session_recorded)
        directory = make_session(self.sessions, "s1")
        self.top.room.on_session_recorded(directory)
        media = await until_media(self.store)
        self.assertEqual(media.path, os.path.join(directory, "mix.flac"))

    async def test_a_recovered_session_is_published(self):
        await self.start()
        published = []
        self.top.runners.session_recorded = published.append  # what the room was given
        self.top.room.on_session_recorded = self.top.runners.session_recorded
        self.top.room_service._report_recovered(["s2"])
        self.assertEqual(published, [os.path.join(self.sessions, "s2")])
