"""A job's success: its result files are listed in the transaction that makes it COMPLETED,
so whoever follows the store (the change feed, the webhook after it) never sees the job done
without its files."""
import os
import secrets
import sqlite3

from twisted.trial import unittest

from choir_protocol.runners import jobs as J
from choir_protocol.runners.jobs import JobState, JobType
from choir_twisted.store.store import DB_NAME

from ...support.http import http_post, multipart
from ...support.runner_api import P, serve_api


class SuccessTransactionTest(unittest.TestCase):
    timeout = 30

    def watch_commits(self):
        """After every transaction of the store's pool, what another process reading the
        database sees: [(job uuid, its output files' names)] of its COMPLETED jobs."""
        seen = []
        observer = sqlite3.connect(os.path.join(self.tmp, DB_NAME))
        self.addCleanup(observer.close)
        interact = self.store.pool.runInteraction

        def look(result):
            rows = observer.execute(
                "SELECT uuid, media_id FROM jobs WHERE state = ?",
                (int(JobState.COMPLETED),)).fetchall()
            seen.append([(uuid, sorted(n for (n,) in observer.execute(
                "SELECT name FROM media_files WHERE media_id = ? AND role = 'output'",
                (media_id,)))) for uuid, media_id in rows])
            return result

        def runInteraction(*args, **kw):
            return interact(*args, **kw).addCallback(look)
        self.store.pool.runInteraction = runInteraction
        return seen

    async def test_completed_is_seen_only_with_its_files(self):
        await serve_api(self)
        media = await self.store.create_media("recording", "song", now=self.clock.seconds())
        uuid = secrets.token_hex(8)
        await self.store.create_job(
            JobType.VOD_HLS, J.web_video_payload("", uuid, media.id, 720, 30),
            media_id=media.id, uuid=uuid, now=self.clock.seconds())
        registration = await self.store.create_registration_token()
        runner = await self.store.register_runner(registration.token, "runner-1")
        job = await self.store.accept(uuid, runner.id, now=self.clock.seconds())
        seen = self.watch_commits()

        body, ctype = multipart(
            [("runnerToken", runner.token), ("jobToken", job.job_token)],
            [("payload[videoFile]", "out.mp4", os.urandom(10_000)),
             ("payload[resolutionPlaylistFile]", "out.m3u8", b"#EXTM3U\nout.mp4\n")])
        answer = await http_post(self.agent, self.port.getHost().port,
                                 f"{P}/jobs/{uuid}/success", body, ctype)
        self.assertEqual(answer.code, 204, answer.body)

        completed = [s for s in seen if s]
        self.assertTrue(completed, "no commit made the job COMPLETED")
        names = sorted(f.name for f in await self.store.media_files(media.id, "output"))
        self.assertEqual(len(names), 2)
        # from the first commit that shows it COMPLETED on, its files are there
        self.assertEqual(completed, [[(uuid, names)]] * len(completed))
