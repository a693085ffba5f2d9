"""choir-admin --url --token against a RunnerService on 127.0.0.1: the operator token made
on the daemon's machine, then the commands over the admin HTTP API, answering as the local
commands do on the same store."""
import io
import json
import os
import re
import socket
import time

import attrs
from twisted.internet import reactor
from twisted.trial import unittest

from choir_clients.admin import admin
from choir_protocol.runners import jobs as J
from choir_protocol.runners.jobs import JobState, JobType
from choir_twisted.runners.service import RunnerService

from ...support.media_files import ffmpeg
from ...support.paths import temp_dir
from ...support.store import jobs_in_every_state, uploaded_concert


class RemoteAdminTest(unittest.TestCase):
    timeout = 60

    async def setUp(self):
        self.dir = temp_dir(self)
        self.service = RunnerService(reactor, "tcp:0:interface=127.0.0.1", self.dir)
        await self.service.startService()
        self.addCleanup(self.service.stopService)
        self.store = self.service.store
        self.url = f"http://127.0.0.1:{self.service.port.getHost().port}"
        self.now = time.time()
        code, out, err = await self.local("operator-tokens", "create", "--name", "laptop")
        self.assertEqual((code, err), (0, ""))
        self.token = out.splitlines()[-1]
        self.created_text = out

    async def run_admin(self, *args):
        out, err = io.StringIO(), io.StringIO()
        code = await admin.run(list(args), out, err, now=self.now)
        return code, out.getvalue(), err.getvalue()

    def local(self, *args):
        return self.run_admin("--data-dir", self.dir, *args)

    def remote(self, *args, token=None, url=None):
        return self.run_admin("--url", url or self.url, "--token", token or self.token, *args)

    async def assertSame(self, *args):
        """The command answers the same over HTTP as on the data directory."""
        here, there = await self.local(*args), await self.remote(*args)
        self.assertEqual(there, here, args)
        self.assertEqual(there[0], 0, there[2])
        return there[1]

    def assertOneLine(self, answer, code, text):
        self.assertEqual((answer[0], answer[1]), (code, ""), answer)
        self.assertEqual(answer[2].count("\n"), 1, answer[2])
        self.assertTrue(answer[2].startswith("choir-admin: "), answer[2])
        self.assertIn(text, answer[2])

    # -- operator tokens and failures ------------------------------------------------------

    async def test_an_operator_token_is_shown_once_and_works_until_revoked(self):
        self.assertTrue(self.token.startswith("choir-op-"))
        self.assertEqual(self.created_text.count(self.token), 1)
        self.assertIn("--token <the token below>", self.created_text)
        code, out, _ = await self.local("--json", "operator-tokens", "list")
        [listed] = json.loads(out)
        self.assertEqual((listed["name"], listed["revoked"], listed["lastUsedAt"]),
                         ("laptop", False, None))
        self.assertNotIn(self.token, out)

        self.assertEqual(await self.remote("runners", "list"),
                         (0, "No registered runners.\n", ""))
        code, out, _ = await self.local("operator-tokens", "list")
        self.assertEqual(out.splitlines()[1].split()[:2], [listed["id"][:8], "laptop"])
        self.assertNotIn("never", out.splitlines()[1])  # LAST USED: just now

        self.assertOneLine(await self.remote("jobs", "list", token="choir-op-nope"), 1,
                           "refused the operator token")
        code, out, err = await self.local("operator-tokens", "revoke", listed["id"][:8])
        self.assertEqual((code, err), (0, ""))
        self.assertOneLine(await self.remote("jobs", "list"), 1, "refused the operator token")
        self.assertOneLine(await self.local("operator-tokens", "revoke", listed["id"]), 1,
                           "already revoked")

    async def test_what_cannot_be_done_remotely_or_reached_says_so_in_one_line(self):
        for args in (["operator-tokens", "list"], ["operator-tokens", "create"],
                     ["api-tokens", "list"], ["media", "submit", "/etc/hostname"]):
            self.assertOneLine(await self.remote(*args), 1, "only on the data directory")
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        closed.close()
        self.assertOneLine(await self.remote("jobs", "list", url=url), 1, "connection refused")
        # usage errors: --url and --token go together
        self.assertEqual((await self.run_admin("--token", "x", "jobs", "list"))[0], 2)
        self.assertEqual((await self.run_admin("--url", self.url, "jobs", "list"))[0], 2)
        self.assertEqual((await self.run_admin("--url", "ftp://x", "--token", "t", "jobs",
                                               "list"))[0], 2)

    # -- tokens ----------------------------------------------------------------------------

    async def test_registration_tokens_remotely(self):
        code, out, err = await self.remote("--json", "tokens", "create", "--runner-name", "gpu")
        self.assertEqual((code, err), (0, ""))
        made = json.loads(out)
        # the URL the runners are told is choir-admin's --url (no http-url file here)
        self.assertEqual((made["url"], made["urlGuessed"]), (self.url, False))
        self.assertEqual(made["registerCommands"]["peertube-runner"],
                         f"peertube-runner register --url {self.url} "
                         f"--registration-token {made['token']} --runner-name gpu")
        self.assertEqual(made["registerCommand"], made["registerCommands"]["choir-runner"])
        self.assertEqual(made["registerCommand"],
                         f"choir-runner register --url {self.url} "
                         f"--registration-token {made['token']} --runner-name gpu")
        self.assertEqual([(t.id, t.prefix) for t in await self.store.list_registration_tokens()],
                         [(made["id"], made["token"][:14])])
        code, out, _ = await self.remote("tokens", "create")
        second = out.split("Registration token: ")[1].split()[0]
        await self.store.register_runner(second, "box")
        await self.assertSame("tokens", "list")
        await self.assertSame("--json", "tokens", "list")
        listed = (await self.remote("--json", "tokens", "list"))[1]
        self.assertEqual(sorted(t["prefix"] for t in json.loads(listed)),
                         sorted([made["token"][:14], second[:14]]))
        self.assertNotIn(second, listed)  # shown once, by create

        code, out, err = await self.remote("tokens", "revoke", made["token"])
        self.assertEqual((code, err), (0, ""))
        self.assertIn(f"Revoked registration token {made['token'][:14]} ({made['id']})", out)
        self.assertEqual([t.prefix for t in await self.store.list_registration_tokens()],
                         [second[:14]])
        self.assertEqual(len(await self.store.list_runners()), 1)  # revoking keeps runners
        for again in (made["token"], made["token"][:14], made["id"]):  # already revoked
            self.assertEqual(await self.remote("tokens", "revoke", again),
                             await self.local("tokens", "revoke", again))
        await self.assertSame("--json", "tokens", "list", "--all")

    # -- runners and jobs ------------------------------------------------------------------

    async def make_jobs(self):
        tok = await self.store.create_registration_token()
        r = await self.store.register_runner(tok.token, "r1", "desc", "0.1.2", "10.1.2.3")
        await self.store.register_runner(tok.token, "idle", None, None, None,
                                         now=self.now - 4000)
        return (r, *await jobs_in_every_state(self.store, r, private_payload={"p": 1}))

    async def test_runners_and_jobs_answer_as_on_the_data_directory(self):
        r, pending, processing, child, done = await self.make_jobs()
        await self.assertSame("runners", "list")
        await self.assertSame("--json", "runners", "list")
        out = await self.assertSame("jobs", "list")
        self.assertEqual(len(out.splitlines()), 5)
        await self.assertSame("--json", "jobs", "list")
        await self.assertSame("jobs", "list", "--state", "pending,processing")
        await self.assertSame("jobs", "list", "--type", JobType.VOD_HLS, "--state", "waiting")
        await self.assertSame("jobs", "list", "--limit", "2")
        await self.assertSame("jobs", "list", "--state", "cancelled")
        out = await self.assertSame("jobs", "show", pending.uuid[:8])
        self.assertIn(f"{child.uuid}  {JobType.VOD_HLS}  Waiting for parent job to finish", out)
        await self.assertSame("--json", "jobs", "show", child.uuid)
        await self.assertSame("jobs", "show", processing.uuid)
        for value in ("0000ffff-nope", "ab"):
            self.assertEqual(await self.remote("jobs", "show", value),
                             await self.local("jobs", "show", value))

        code, out, err = await self.remote("jobs", "cancel", pending.uuid[:10])
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(out, f"Cancelled job {pending.uuid} (was pending); 1 waiting child "
                              f"job(s) parent-cancelled.\n")
        self.assertEqual((await self.store.get_job(child.uuid)).state, JobState.PARENT_CANCELLED)
        self.assertEqual(await self.remote("jobs", "cancel", done.uuid),
                         (1, "", f"choir-admin: job {done.uuid} is completed: cannot cancel "
                                 f"it\n"))

        code, out, err = await self.remote("--json", "runners", "remove", "r1")
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(json.loads(out), {"removed": r.id, "name": "r1", "jobsRequeued": 1})
        job = await self.store.get_job(processing.uuid)
        self.assertEqual((job.state, job.runner_id), (JobState.PENDING, None))
        self.assertEqual(await self.remote("runners", "remove", "r1"),
                         (1, "", "choir-admin: unknown runner 'r1'\n"))

    # -- media -----------------------------------------------------------------------------

    async def test_media_list_and_show(self):
        m = await uploaded_concert(self.store)
        job = (await self.store.create_job(JobType.VOD_HLS, {"output": {"resolution": 720}},
                                           media_id=m.id)).job
        code, out, err = await self.remote("media", "show", m.id)
        self.assertEqual((code, err), (0, ""))
        # its files as signed links (media_links)
        self.assertRegex(out, rf"concert.mp4  3.0 MiB  {re.escape(self.url)}/api/v1/media/"
                              rf"{m.id}/signed/[0-9]+/[0-9a-f]{{32}}/files/concert.mp4\n")
        self.assertIn(f"{job.uuid}  {JobType.VOD_HLS}  720         Pending", out)
        self.assertLess(out.index("Inputs:"), out.index("concert.mp4  3.0"))
        self.assertLess(out.index("Outputs:"), out.index("720p.mp4  2.0 KiB"))

        # the list wants a token the media API takes: the operator's, or an API token
        code, out, err = await self.remote("media", "list")
        self.assertEqual((code, err), (0, ""))
        local = (await self.local("media", "list"))[1]
        self.assertEqual(out, local)
        api = (await self.store.create_api_token("web")).token
        self.assertEqual((await self.remote("media", "list", token=api))[1], local)
        code, out, _ = await self.remote("--json", "media", "show", m.id[:8], token=api)
        shown = json.loads(out)
        self.assertEqual(sorted((f["role"], f["name"], f["size"]) for f in shown["files"]),
                         [("input", "concert.mp4", 3 * 1024 * 1024),
                          ("output", "720p.mp4", 2048)])
        self.assertEqual(shown["jobs"], [{"uuid": job.uuid, "type": JobType.VOD_HLS,
                                          "state": "Pending"}])
        self.assertOneLine(await self.remote("media", "show", "nope", token=api), 1,
                           "unknown media 'nope'")

    # -- studio edits ----------------------------------------------------------------------

    async def published(self):
        """A media whose one job (web video, 240p) completed with a real 2 s MP4."""
        video = os.path.join(self.dir, "clip.mp4")
        ffmpeg("-f", "lavfi", "-i", "testsrc=s=320x240:d=2", "-c:v", "libx264", "-preset",
               "ultrafast", video)
        media = await self.store.create_media("upload", "clip", path=video,
                                              probe={"duration": 2.0})
        job = (await self.store.create_job(
            JobType.VOD_WEB_VIDEO, J.web_video_payload("", "j1", media.id, 240, 25),
            uuid="j1", media_id=media.id)).job
        reg = await self.store.create_registration_token()
        runner = await self.store.register_runner(reg.token, "r1")
        job = await self.store.accept(job.uuid, runner.id)
        done = J.success(job, time.time())
        done = attrs.evolve(done, job=attrs.evolve(done.job, private_payload={
            "result": {"files": {"videoFile": video}}}))
        await self.store.save(done, previous=job)
        return media

    async def test_studio_edits_locally_and_remotely(self):
        media = await self.published()
        logo = os.path.join(self.dir, "logo.png")
        ffmpeg("-f", "lavfi", "-i", "color=c=red:s=32x32", "-frames:v", "1", logo)
        code, out, err = await self.local("--json", "media", "studio", "--cut", ":1.5",
                                          "--watermark", logo, media.id[:8])
        self.assertEqual((code, err), (0, ""))
        made = json.loads(out)
        self.assertEqual([j["type"] for j in made["jobs"]], [JobType.STUDIO])
        studio = await self.store.get_job(made["jobs"][0]["uuid"])
        self.assertEqual([t["name"] for t in studio.payload["tasks"]], ["cut", "add-watermark"])
        self.assertEqual(studio.payload["tasks"][0]["options"], {"end": 1.5})
        (stored,) = studio.private_payload["inputs"]["task-files"].values()
        with open(stored, "rb") as a, open(logo, "rb") as b:
            self.assertEqual(a.read(), b.read())  # a copy in the data directory
        self.assertTrue(stored.startswith(os.path.join(self.dir, "media", media.id, "studio")))

        # one edit at a time, said in one line
        self.assertOneLine(await self.remote("media", "studio", "--cut", "1:", media.id), 1,
                           "still being transcoded")
        await self.store.save(J.cancel(studio, time.time()))
        code, out, err = await self.remote("media", "studio", "--intro", logo, media.id)
        self.assertOneLine((code, out, err), 1, "add-intro: a video clip is needed")
        code, out, err = await self.remote("media", "studio", "--cut", "0.5:", "--outro",
                                           os.path.join(self.dir, "clip.mp4"), media.id)
        self.assertEqual((code, err), (0, ""), out)
        self.assertIn(f"Media {media.id}: an edit of 1 jobs", out)
        edits = [j for j in await self.store.media_jobs(media.id)
                 if j.type == JobType.STUDIO and j.state is JobState.PENDING]
        self.assertEqual([t["name"] for t in edits[0].payload["tasks"]], ["cut", "add-outro"])

    async def test_studio_usage_errors(self):
        for args, words in ((["media", "studio", "m1"], "nothing to do"),
                            (["media", "studio", "--cut", "5", "m1"], "START:END"),
                            (["media", "studio", "--cut", "a:b", "m1"], "not a number"),
                            (["media", "studio", "--intro", "/nope.mp4", "m1"], "no such file")):
            code, out, err = await self.local(*args)
            self.assertEqual(code, 2, (args, out, err))
            self.assertIn(words, err)
