"""The runner HTTP API over real HTTP on 127.0.0.1, with a real SQLite store.

Over 400 lines: every route of the runner API on one real store and HTTP server; the error
answers are in test_runner_errors.py.
"""
import io
import json
import os
import secrets

from twisted.internet import defer
from twisted.trial import unittest
from twisted.web import client
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH

from choir_protocol.networks import parse_networks
from choir_protocol.runners import jobs as J
from choir_protocol.runners.jobs import JobState, JobType
from choir_twisted.runners.api import parse_multipart
from choir_twisted.store.store import Store

from ...support.http import Answer, multipart
from ...support.runner_api import P, check_problem, serve_api


class ChunkedProducer:
    """A body of unknown length: the client sends it with chunked transfer-encoding."""

    length = UNKNOWN_LENGTH

    def __init__(self, data):
        self.data = data

    def startProducing(self, consumer):
        for i in range(0, len(self.data), 16384):
            consumer.write(self.data[i:i + 16384])
        return defer.succeed(None)

    def stopProducing(self):
        pass

    def pauseProducing(self):
        pass

    def resumeProducing(self):
        pass


class RunnerAPITest(unittest.TestCase):
    timeout = 30

    async def asyncSetUp(self, max_upload_bytes=10 * 1024 * 1024):
        await serve_api(self, max_upload_bytes)

    async def post(self, path, body=None, *, raw=None, content_type="application/json",
                   producer=None, headers=None):
        if raw is None and body is not None:
            raw = json.dumps(body).encode()
        headers = Headers({b"content-type": [content_type.encode()], **(headers or {})})
        if producer is None and raw is not None:
            producer = client.FileBodyProducer(io.BytesIO(raw))
        if path.startswith("/"):
            path = f"http://127.0.0.1:{self.port.getHost().port}{path}"
        url = path.encode()
        response = await self.agent.request(b"POST", url, headers, producer)
        return Answer(response, await client.readBody(response))

    assertProblem = check_problem

    # -- fixtures --

    async def register(self, name="runner-1"):
        reg = await self.store.create_registration_token()
        a = await self.post(P + "/register", {"registrationToken": reg.token, "name": name,
                                              "description": "d", "version": "1.0"})
        self.assertEqual(a.code, 200, a.body)
        self.assertTrue(a.json["runnerToken"].startswith("ptrt-"))
        return a.json["runnerToken"]

    async def make_job(self, type=JobType.VOD_WEB_VIDEO, priority=100, source=None,
                       media=True):
        media_id = None
        if media:
            m = await self.store.create_media("recording", "song", now=self.clock.seconds())
            media_id = m.id
        uuid = str(secrets.token_hex(8))
        private = {}
        if source is not None:
            private = {"inputs": {"max-quality": source}}
        payload = J.web_video_payload("", uuid, media_id or uuid, 720, 30)
        tr = await self.store.create_job(type, payload, priority=priority,
                                         private_payload=private, media_id=media_id,
                                         uuid=uuid, now=self.clock.seconds())
        return tr.job

    async def accepted(self, token, job):
        a = await self.post(f"{P}/jobs/{job.uuid}/accept", {"runnerToken": token})
        self.assertEqual(a.code, 200, a.body)
        return a.json["job"]["jobToken"]

    def files_on_disk(self):
        return [os.path.join(d, f) for d, _, fs in os.walk(self.files_dir) for f in fs]

    # -- the whole life of a job --

    async def test_the_life_of_a_job(self):
        await self.asyncSetUp()
        source = os.path.join(self.files_dir, "source.wav")
        content = os.urandom(300_000) + b"end"
        with open(source, "wb") as f:
            f.write(content)
        job = await self.make_job(source="source.wav")
        other = await self.make_job(type=JobType.TRANSCRIPTION, priority=50)
        token = await self.register()

        a = await self.post(P + "/jobs/request", {"runnerToken": token})
        self.assertEqual(a.code, 200)
        self.assertEqual([j["uuid"] for j in a.json["availableJobs"]], [other.uuid, job.uuid])
        # every URL a runner reads is absolute: PeerTube's runner passes it to new URL()
        base = f"http://127.0.0.1:{self.port.getHost().port}"
        listed = a.json["availableJobs"][1]["payload"]
        self.assertEqual(listed["input"]["videoFileUrl"], base + job.payload["input"]["videoFileUrl"])
        self.assertEqual(listed["output"], job.payload["output"])
        a = await self.post(P + "/jobs/request", {"runnerToken": token,
                                                  "jobTypes": [JobType.VOD_WEB_VIDEO]})
        self.assertEqual([j["uuid"] for j in a.json["availableJobs"]], [job.uuid])

        a = await self.post(f"{P}/jobs/{job.uuid}/accept", {"runnerToken": token})
        self.assertEqual(a.code, 200, a.body)
        wire = a.json["job"]
        self.assertEqual(wire["state"], {"id": 2, "label": "Processing"})
        self.assertEqual(wire["uuid"], job.uuid)
        job_token = wire["jobToken"]
        self.assertTrue(job_token.startswith("ptrjt-"))
        self.assertIsNotNone(wire["startedAt"])
        self.assertEqual(wire["payload"], listed)

        # the input file, by the payload's (absolute) URL
        url = wire["payload"]["input"]["videoFileUrl"]
        a = await self.post(url, {"runnerToken": token, "jobToken": job_token})
        self.assertEqual(a.code, 200)
        self.assertEqual(a.body, content)
        self.assertEqual(a.length, len(content))  # announced, then streamed
        # a missing input file: preview not given
        a = await self.post(J.preview_url("", job.uuid, job.media_id),
                            {"runnerToken": token, "jobToken": job_token})
        self.assertProblem(a, 404, "file_not_found")

        self.clock.advance(5)
        a = await self.post(f"{P}/jobs/{job.uuid}/update",
                            {"runnerToken": token, "jobToken": job_token, "progress": 42})
        self.assertEqual(a.code, 204, a.body)
        stored = await self.store.get_job(job.uuid)
        self.assertEqual((stored.progress, stored.updated_at), (42, self.clock.seconds()))
        body, ctype = multipart([("runnerToken", token), ("jobToken", job_token),
                                 ("progress", "60")])
        a = await self.post(f"{P}/jobs/{job.uuid}/update", raw=body, content_type=ctype)
        self.assertEqual(a.code, 204, a.body)
        self.assertEqual((await self.store.get_job(job.uuid)).progress, 60)

        video = os.urandom(200_000)
        body, ctype = multipart([("runnerToken", token), ("jobToken", job_token)],
                                [("payload[videoFile]", "out.mp4", video)])
        a = await self.post(f"{P}/jobs/{job.uuid}/success", raw=body, content_type=ctype)
        self.assertEqual(a.code, 204, a.body)
        stored = await self.store.get_job(job.uuid)
        self.assertEqual(stored.state, JobState.COMPLETED)
        files = await self.store.media_files(job.media_id, role="output")
        self.assertEqual(len(files), 1)
        expected = os.path.join(self.files_dir, "media", job.media_id, "720p.mp4")
        self.assertEqual(files[0].path, expected)
        self.assertEqual(files[0].name, "720p.mp4")
        self.assertEqual(files[0].size, len(video))
        with open(expected, "rb") as f:
            self.assertEqual(f.read(), video)
        self.assertEqual(stored.private_payload["result"]["files"], {"videoFile": expected})
        self.assertEqual(sorted(self.files_on_disk()), sorted([source, expected]))

        # after success: every job-token call says "not processing"
        creds = {"runnerToken": token, "jobToken": job_token}
        for path, extra in (("update", {}), ("error", {"message": "x"}),
                            ("abort", {"reason": "x"}), ("success", {})):
            a = await self.post(f"{P}/jobs/{job.uuid}/{path}", {**creds, **extra})
            self.assertProblem(a, 400, "runner_job_not_in_processing_state")
        a = await self.post(url, creds)
        self.assertProblem(a, 400, "runner_job_not_in_processing_state")

        a = await self.post(P + "/unregister", {"runnerToken": token})
        self.assertEqual(a.code, 204)
        a = await self.post(P + "/jobs/request", {"runnerToken": token})
        self.assertProblem(a, 404, "unknown_runner_token")

    async def listed_url(self, headers=None):
        """The videoFileUrl a runner is given in jobs/request and in accept."""
        job = await self.make_job()
        token = await self.register(f"runner-{job.uuid}")
        a = await self.post(P + "/jobs/request", {"runnerToken": token}, headers=headers)
        listed = a.json["availableJobs"][0]["payload"]["input"]["videoFileUrl"]
        a = await self.post(f"{P}/jobs/{job.uuid}/accept", {"runnerToken": token},
                            headers=headers)
        self.assertEqual(a.json["job"]["payload"]["input"]["videoFileUrl"], listed)
        return listed[:-len(job.payload["input"]["videoFileUrl"])]

    async def test_payload_urls_follow_the_host_the_runner_used(self):
        await self.asyncSetUp()
        self.assertEqual(await self.listed_url({b"host": [b"runner-side.example:8000"]}),
                         "http://runner-side.example:8000")

    async def test_payload_urls_from_the_public_url_with_its_prefix(self):
        await self.asyncSetUp()
        self.api.public_url = "https://choir.example/choir/"
        self.assertEqual(await self.listed_url({b"x-forwarded-host": [b"evil.example"]}),
                         "https://choir.example/choir")

    async def test_forwarded_headers_count_only_from_a_trusted_proxy(self):
        await self.asyncSetUp()
        forwarded = {b"x-forwarded-proto": [b"https"], b"x-forwarded-host": [b"choir.example"]}
        here = f"http://127.0.0.1:{self.port.getHost().port}"
        self.assertEqual(await self.listed_url(forwarded), here)
        self.api.trusted_proxies = parse_networks("127.0.0.0/8")
        self.assertEqual(await self.listed_url(forwarded), "https://choir.example")

    async def test_transcription_success_keeps_the_language(self):
        await self.asyncSetUp()
        job = await self.make_job(type=JobType.TRANSCRIPTION, media=False)
        token = await self.register()
        job_token = await self.accepted(token, job)
        body, ctype = multipart([("runnerToken", token), ("jobToken", job_token)],
                                [("payload[videoFile]", "x.mp4", b"wrong")])
        a = await self.post(f"{P}/jobs/{job.uuid}/success", raw=body, content_type=ctype)
        self.assertProblem(a, 400, "bad_request")
        self.assertIn("payload[vttFile]", a.json["detail"])
        self.assertEqual(self.files_on_disk(), [])
        body, ctype = multipart([("runnerToken", token), ("jobToken", job_token),
                                 ("payload[inputLanguage]", "fr")],
                                [("payload[vttFile]", "subs.vtt", b"WEBVTT\n")])
        a = await self.post(f"{P}/jobs/{job.uuid}/success", raw=body, content_type=ctype)
        self.assertEqual(a.code, 204, a.body)
        path = os.path.join(self.files_dir, "media", job.uuid, "subtitles.vtt")
        self.assertEqual(self.files_on_disk(), [path])
        stored = await self.store.get_job(job.uuid)
        self.assertEqual(stored.private_payload["result"]["inputLanguage"], "fr")

    # -- errors of RUNNERS.md --

    async def test_hostile_json_is_a_bad_request_not_a_500(self):
        await self.asyncSetUp()
        token = await self.register()
        job = await self.make_job()
        cases = [(b"[" * 100000, "nested too deeply"),
                 (b'{"runnerToken": "\\ud800"}', "not text"),
                 (b'{"registrationToken": "\\udfff", "name": "x"}', "not text")]
        for (raw, words), path in zip(cases, ["/jobs/request", "/jobs/request", "/register"]):
            a = await self.post(P + path, raw=raw)
            self.assertIn(words, self.assertProblem(a, 400, "bad_request")["detail"])
        await self.accepted(token, job)
        a = await self.post(f"{P}/jobs/{job.uuid}/update",
                            raw=b'{"runnerToken": "%s", "jobToken": "\\ud800"}' % token.encode())
        self.assertProblem(a, 400, "bad_request")
        with self.assertRaises(J.JobError):
            J.check_job_token(await self.store.get_job(job.uuid), "\ud800", "r")
        self.assertEqual(self.flushLoggedErrors(), [])

    async def test_registration_errors(self):
        await self.asyncSetUp()
        a = await self.post(P + "/register", {"registrationToken": "ptrrt-nope", "name": "x"})
        self.assertProblem(a, 404, "unknown_registration_token")
        await self.register("taken")
        reg = await self.store.create_registration_token()
        a = await self.post(P + "/register", {"registrationToken": reg.token, "name": "taken"})
        self.assertProblem(a, 400, "runner_name_already_taken")

    async def test_unknown_runner_token_everywhere(self):
        await self.asyncSetUp()
        job = await self.make_job()
        bad = {"runnerToken": "ptrt-nope", "jobToken": "ptrjt-x", "reason": "r", "message": "m"}
        for path in ("/unregister", "/jobs/request", f"/jobs/{job.uuid}/accept",
                     f"/jobs/{job.uuid}/abort", f"/jobs/{job.uuid}/update",
                     f"/jobs/{job.uuid}/error", f"/jobs/{job.uuid}/success",
                     f"/jobs/{job.uuid}/files/videos/{job.media_id}/max-quality"):
            a = await self.post(P + path, bad)
            self.assertProblem(a, 404, "unknown_runner_token")

    async def test_accept_a_job_not_pending(self):
        await self.asyncSetUp()
        job = await self.make_job()
        first, second = await self.register("a"), await self.register("b")
        await self.accepted(first, job)
        a = await self.post(f"{P}/jobs/{job.uuid}/accept", {"runnerToken": second})
        self.assertProblem(a, 409, "runner_job_not_in_pending_state")
        a = await self.post(f"{P}/jobs/no-such-job/accept", {"runnerToken": second})
        self.assertProblem(a, 404, "unknown_runner_job")

    async def test_a_runner_cannot_touch_another_runners_job(self):
        await self.asyncSetUp()
        source = os.path.join(self.files_dir, "s.wav")
        with open(source, "wb") as f:
            f.write(b"secret")
        mine, theirs = await self.make_job(source=source), await self.make_job(source=source)
        me, other = await self.register("me"), await self.register("other")
        my_token = await self.accepted(me, mine)
        their_token = await self.accepted(other, theirs)
        # my runner token with their job token, or my job token on their job: both refused
        for job, token in ((theirs, their_token), (theirs, my_token), (mine, their_token)):
            creds = {"runnerToken": me if job is theirs else other, "jobToken": token}
            for path, extra in (("update", {}), ("abort", {"reason": "r"}),
                                ("error", {"message": "m"})):
                a = await self.post(f"{P}/jobs/{job.uuid}/{path}", {**creds, **extra})
                self.assertProblem(a, 404, "unknown_runner_job")
            a = await self.post(job.payload["input"]["videoFileUrl"], creds)
            self.assertProblem(a, 404, "unknown_runner_job")
            self.assertNotIn(b"secret", a.body)
        body, ctype = multipart([("runnerToken", me), ("jobToken", their_token)],
                                [("payload[videoFile]", "v.mp4", b"evil")])
        a = await self.post(f"{P}/jobs/{theirs.uuid}/success", raw=body, content_type=ctype)
        self.assertProblem(a, 404, "unknown_runner_job")
        self.assertEqual(self.files_on_disk(), [source])
        for job in (mine, theirs):
            stored = await self.store.get_job(job.uuid)
            self.assertEqual((stored.state, stored.failures), (JobState.PROCESSING, 0))
        # the wrong video id in the URL
        a = await self.post(J.max_quality_url("", mine.uuid, theirs.media_id),
                            {"runnerToken": me, "jobToken": my_token})
        self.assertProblem(a, 404, "unknown_video")

    async def test_garbage_and_missing_fields(self):
        await self.asyncSetUp()
        token = await self.register()
        job = await self.make_job()
        job_token = await self.accepted(token, job)
        cases = [
            (P + "/register", b"{not json"),
            (P + "/register", b'{"name": "x"}'),
            (P + "/register", b'{"registrationToken": 3, "name": "x"}'),
            (P + "/register", b"[1, 2]"),
            (P + "/register", b""),
            (P + "/register", b"\xff\xfe"),
            (P + "/jobs/request", b"{}"),
            (P + "/jobs/request", json.dumps({"runnerToken": token, "jobTypes": "vod"}).encode()),
            (f"{P}/jobs/{job.uuid}/update", json.dumps({"runnerToken": token}).encode()),
            (f"{P}/jobs/{job.uuid}/update", json.dumps(
                {"runnerToken": token, "jobToken": job_token, "progress": "lots"}).encode()),
            (f"{P}/jobs/{job.uuid}/error", json.dumps(
                {"runnerToken": token, "jobToken": job_token}).encode()),
            (f"{P}/jobs/{job.uuid}/abort", json.dumps(
                {"runnerToken": token, "jobToken": job_token}).encode()),
            (f"{P}/jobs/{job.uuid}/accept", b"NaN"),
        ]
        for path, raw in cases:
            a = await self.post(path, raw=raw)
            self.assertProblem(a, 400, "bad_request", (path, raw))
        a = await self.post(f"{P}/jobs/{job.uuid}/update",
                            {"runnerToken": token, "jobToken": job_token, "progress": 101})
        self.assertProblem(a, 400, "invalid_progress")
        a = await self.post(f"{P}/jobs/{job.uuid}/success", raw=b"--x\r\ngarbage",
                            content_type="multipart/form-data; boundary=zzz")
        self.assertProblem(a, 400, "bad_request")
        stored = await self.store.get_job(job.uuid)
        self.assertEqual((stored.state, stored.failures), (JobState.PROCESSING, 0))

    async def test_oversized_uploads_are_refused(self):
        await self.asyncSetUp(max_upload_bytes=64 * 1024)
        token = await self.register()
        job = await self.make_job()
        job_token = await self.accepted(token, job)
        body, ctype = multipart([("runnerToken", token), ("jobToken", job_token)],
                                [("payload[videoFile]", "big.mp4", os.urandom(300_000))])
        a = await self.post(f"{P}/jobs/{job.uuid}/success", raw=body, content_type=ctype)
        self.assertProblem(a, 413, "payload_too_large")
        # the same without a Content-Length (chunked)
        a = await self.post(f"{P}/jobs/{job.uuid}/success", content_type=ctype,
                            producer=ChunkedProducer(body))
        self.assertProblem(a, 413, "payload_too_large")
        self.assertEqual(self.files_on_disk(), [])
        self.assertEqual((await self.store.get_job(job.uuid)).state, JobState.PROCESSING)
        # a small one still goes through, chunked too
        body, ctype = multipart([("runnerToken", token), ("jobToken", job_token)],
                                [("payload[videoFile]", "ok.mp4", b"small video")])
        a = await self.post(f"{P}/jobs/{job.uuid}/success", content_type=ctype,
                            producer=ChunkedProducer(body))
        self.assertEqual(a.code, 204, a.body)
        self.assertEqual(len(self.files_on_disk()), 1)

    async def test_only_uploads_may_be_big(self):
        await self.asyncSetUp()  # uploads up to 10 MiB; every other body 1 MiB
        token = await self.register()
        job = await self.make_job()
        big = json.dumps({"runnerToken": token, "pad": "x" * (2 * 1024 ** 2)}).encode()
        for path in ("/register", "/jobs/request", f"/jobs/{job.uuid}/accept",
                     f"/jobs/{job.uuid}/error", f"/jobs/{job.uuid}/files/videos/x/max-quality"):
            a = await self.post(P + path, raw=big)
            problem = self.assertProblem(a, 413, "payload_too_large")
            self.assertIn(str(1024 ** 2), problem["detail"])
            a = await self.post(P + path, producer=ChunkedProducer(big))  # chunked: the same
            self.assertProblem(a, 413, "payload_too_large")
        self.assertEqual((await self.store.get_job(job.uuid)).state, JobState.PENDING)
        job_token = await self.accepted(token, job)
        body, ctype = multipart([("runnerToken", token), ("jobToken", job_token)],
                                [("payload[videoFile]", "v.mp4", os.urandom(3 * 1024 ** 2))])
        a = await self.post(f"{P}/jobs/{job.uuid}/success", raw=body, content_type=ctype)
        self.assertEqual(a.code, 204, a.body)

    async def test_five_errors_and_the_job_is_errored(self):
        await self.asyncSetUp()
        token = await self.register()
        job = await self.make_job()
        for attempt in range(1, 6):
            job_token = await self.accepted(token, job)
            a = await self.post(f"{P}/jobs/{job.uuid}/error", {
                "runnerToken": token, "jobToken": job_token, "message": f"boom {attempt}"})
            self.assertEqual(a.code, 204, a.body)
            stored = await self.store.get_job(job.uuid)
            self.assertEqual(stored.failures, attempt)
            self.assertEqual(stored.state,
                             JobState.ERRORED if attempt == 5 else JobState.PENDING)
        self.assertEqual(stored.error, "boom 5")
        a = await self.post(f"{P}/jobs/{job.uuid}/accept", {"runnerToken": token})
        self.assertProblem(a, 409, "runner_job_not_in_pending_state")
        a = await self.post(f"{P}/jobs/{job.uuid}/update",
                            {"runnerToken": token, "jobToken": job_token})
        self.assertProblem(a, 400, "runner_job_not_in_processing_state")

    async def test_abort_makes_the_job_pending_and_notifies(self):
        await self.asyncSetUp()
        token = await self.register()
        job = await self.make_job()
        job_token = await self.accepted(token, job)
        self.assertEqual(self.hub.notifications_sent, 0)
        a = await self.post(f"{P}/jobs/{job.uuid}/abort",
                            {"runnerToken": token, "jobToken": job_token, "reason": "bye"})
        self.assertEqual(a.code, 204, a.body)
        self.assertEqual(self.hub.notifications_sent, 1)
        stored = await self.store.get_job(job.uuid)
        self.assertEqual((stored.state, stored.failures, stored.job_token),
                         (JobState.PENDING, 0, None))
        a = await self.post(P + "/jobs/request", {"runnerToken": token})
        self.assertEqual([j["uuid"] for j in a.json["availableJobs"]], [job.uuid])
        # the old job token is dead
        a = await self.post(f"{P}/jobs/{job.uuid}/update",
                            {"runnerToken": token, "jobToken": job_token})
        self.assertProblem(a, 404, "unknown_runner_job")

    async def test_at_most_ten_jobs_lowest_priority_first(self):
        await self.asyncSetUp()
        token = await self.register()
        made = [await self.make_job(priority=p, media=False) for p in range(12, 0, -1)]
        a = await self.post(P + "/jobs/request", {"runnerToken": token})
        got = [j["uuid"] for j in a.json["availableJobs"]]
        self.assertEqual(got, [j.uuid for j in reversed(made)][:10])

    async def test_socketio_is_mounted(self):
        await self.asyncSetUp()
        url = f"http://127.0.0.1:{self.port.getHost().port}/socket.io/?EIO=3&transport=polling"
        response = await self.agent.request(b"GET", url.encode())
        body = json.loads(await client.readBody(response))
        self.assertEqual(response.code, 400)
        self.assertEqual(body["code"], 5)

    # -- what another process (choir-admin) does to the store is seen at once --

    async def other_process(self):
        other = await Store.open(data_dir=self.tmp)  # another pool on the same file
        self.addCleanup(other.close)
        return other

    async def test_a_runner_removed_by_another_process_is_refused_at_once(self):
        await self.asyncSetUp()
        token = await self.register()
        for _ in range(2):  # the second answer comes from the cache
            self.assertEqual((await self.post(P + "/jobs/request", {"runnerToken": token})).code, 200)
        other = await self.other_process()
        [runner] = await other.list_runners()
        self.assertTrue(await other.unregister_runner(runner.id))
        a = await self.post(P + "/jobs/request", {"runnerToken": token})
        self.assertProblem(a, 404, "unknown_runner_token")

    async def test_a_job_made_pending_by_another_process_is_listed_at_once(self):
        await self.asyncSetUp()
        token = await self.register()

        async def listed():
            a = await self.post(P + "/jobs/request", {"runnerToken": token})
            self.assertEqual(a.code, 200, a.body)
            return [j["uuid"] for j in a.json["availableJobs"]]
        self.assertEqual(await listed(), [])
        self.assertEqual(await listed(), [])  # cached
        other = await self.other_process()
        tr = await other.create_job(JobType.VOD_WEB_VIDEO, {"input": {}}, now=self.clock.seconds())
        self.assertEqual(await listed(), [tr.job.uuid])
        [runner] = await other.list_runners()
        await other.accept(tr.job.uuid, runner.id, now=self.clock.seconds())
        self.assertEqual(await listed(), [])


class MultipartParserTest(unittest.TestCase):
    def test_a_boundary_split_across_reads(self):
        data = os.urandom(200_000)
        body, ctype = multipart([("a", "1")], [("f", "x.bin", data)])
        got = io.BytesIO()
        fields, files = parse_multipart(io.BytesIO(body), ctype, lambda n, fn: got)
        self.assertEqual(fields, {"a": "1"})
        self.assertEqual(files, {"f": "x.bin"})
        self.assertEqual(got.getvalue(), data)
