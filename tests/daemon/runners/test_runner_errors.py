"""Every refusal RUNNERS.md names, route by route, over real HTTP on 127.0.0.1.

Each test asserts the exact HTTP status and problem+json ``code``, and that the refused
call changed nothing. ``job_token_calls`` (tests/support/runner_api.py) lists every route
that carries a job token. PeerTube itself sends a ``code`` only for its three runner codes
(unknown_runner_token, runner_job_not_in_pending_state, runner_job_not_in_processing_state);
the other codes here are ours, on PeerTube's statuses.
"""
import json
import os
import secrets

from twisted.trial import unittest

from choir_protocol.runners import jobs as J
from choir_protocol.runners.jobs import JobState, JobType
from choir_twisted.runners.api import MAX_JSON_BYTES

from ...support.http import http_post, multipart
from ...support.runner_api import (INPUTS, P, check_problem, encode_call, job_token_calls,
                                   serve_api, write_inputs)


class RunnerErrorsTest(unittest.TestCase):
    timeout = 30

    async def asyncSetUp(self, max_upload_bytes=10 * 1024 * 1024):
        await serve_api(self, max_upload_bytes)
        self.private = write_inputs(self.files_dir)

    async def post(self, path, body=None, *, raw=None, content_type="application/json"):
        if raw is None:
            raw = json.dumps(body).encode()
        return await http_post(self.agent, self.port.getHost().port, path, raw, content_type)

    async def call(self, path, kind, fields):
        raw, ctype = encode_call(kind, fields)
        return await self.post(path, raw=raw, content_type=ctype)

    # -- fixtures --

    async def register(self, name):
        reg = await self.store.create_registration_token()
        a = await self.post(P + "/register", {"registrationToken": reg.token, "name": name})
        self.assertEqual(a.code, 200, a.body)
        return a.json["runnerToken"]

    async def make_job(self, parent_uuid=None):
        media = await self.store.create_media("recording", "song", now=self.clock.seconds())
        uuid = secrets.token_hex(8)
        tr = await self.store.create_job(
            JobType.VOD_WEB_VIDEO, J.web_video_payload("", uuid, media.id, 720, 30),
            private_payload=self.private, media_id=media.id, uuid=uuid,
            parent_uuid=parent_uuid, now=self.clock.seconds())
        return tr.job

    async def accepted(self, token, job):
        a = await self.post(f"{P}/jobs/{job.uuid}/accept", {"runnerToken": token})
        self.assertEqual(a.code, 200, a.body)
        return a.json["job"]["jobToken"]

    async def completed(self, token, job):
        job_token = await self.accepted(token, job)
        body, ctype = multipart([("runnerToken", token), ("jobToken", job_token)],
                                [("payload[videoFile]", "out.mp4", b"video")])
        a = await self.post(f"{P}/jobs/{job.uuid}/success", raw=body, content_type=ctype)
        self.assertEqual(a.code, 204, a.body)
        return job_token

    async def cancelled(self, job):
        job = await self.store.get_job(job.uuid)
        await self.store.save(J.cancel(job, self.clock.seconds(),
                                       await self.store.children(job.uuid)))

    def output_files(self):
        media = os.path.join(self.files_dir, "media")
        return [os.path.join(d, f) for d, _, fs in os.walk(media) for f in fs]

    async def assertEveryJobTokenCall(self, job, runner_token, job_token, status, code,
                                      video_id=None):
        before = await self.store.get_job(job.uuid)
        outputs = self.output_files()
        for name, path, kind, extra, content in job_token_calls(job.uuid,
                                                                video_id or job.media_id):
            a = await self.call(path, kind,
                                {"runnerToken": runner_token, "jobToken": job_token, **extra})
            check_problem(self, a, status, code, name)
            if content is not None:
                self.assertNotIn(content, a.body, name)
        self.assertEqual(await self.store.get_job(job.uuid), before)
        self.assertEqual(self.output_files(), outputs)

    # -- register --

    async def test_register_with_an_unknown_or_revoked_registration_token(self):
        await self.asyncSetUp()
        a = await self.post(P + "/register", {"registrationToken": "ptrrt-nope", "name": "x"})
        check_problem(self, a, 404, "unknown_registration_token")
        reg = await self.store.create_registration_token()
        self.assertTrue(await self.store.revoke_registration_token(reg.token))
        a = await self.post(P + "/register", {"registrationToken": reg.token, "name": "x"})
        check_problem(self, a, 404, "unknown_registration_token")
        self.assertEqual(await self.store.list_runners(), [])

    async def test_register_a_name_already_taken(self):
        await self.asyncSetUp()
        await self.register("taken")
        reg = await self.store.create_registration_token()
        a = await self.post(P + "/register", {"registrationToken": reg.token, "name": "taken"})
        check_problem(self, a, 400, "runner_name_already_taken")
        self.assertEqual([r.name for r in await self.store.list_runners()], ["taken"])

    # -- the runner token --

    async def test_an_unknown_runner_token_on_every_route(self):
        await self.asyncSetUp()
        token = await self.register("me")
        job = await self.make_job()
        job_token = await self.accepted(token, job)
        for path in ("/unregister", "/jobs/request", f"/jobs/{job.uuid}/accept"):
            a = await self.post(P + path, {"runnerToken": "ptrt-nope"})
            check_problem(self, a, 404, "unknown_runner_token", path)
        # with a real job token, JSON and multipart alike, and the four file routes
        await self.assertEveryJobTokenCall(job, "ptrt-nope", job_token, 404,
                                           "unknown_runner_token")

    # -- accept --

    async def test_accept_a_job_in_every_state_but_pending(self):
        await self.asyncSetUp()
        token = await self.register("me")
        processing, done, cancelled, parent = [await self.make_job() for _ in range(4)]
        waiting = await self.make_job(parent_uuid=parent.uuid)
        await self.accepted(token, processing)
        await self.completed(token, done)
        await self.cancelled(cancelled)
        await self.cancelled(parent)  # its waiting child becomes parent-cancelled
        errored = await self.make_job()
        for _ in range(J.MAX_FAILURES):
            job_token = await self.accepted(token, errored)
            a = await self.post(f"{P}/jobs/{errored.uuid}/error",
                                {"runnerToken": token, "jobToken": job_token, "message": "x"})
            self.assertEqual(a.code, 204, a.body)
        still_waiting = await self.make_job(parent_uuid=processing.uuid)
        expected = [(processing, JobState.PROCESSING), (done, JobState.COMPLETED),
                    (cancelled, JobState.CANCELLED), (waiting, JobState.PARENT_CANCELLED),
                    (errored, JobState.ERRORED), (still_waiting, JobState.WAITING_FOR_PARENT_JOB)]
        for job, state in expected:
            before = await self.store.get_job(job.uuid)
            self.assertEqual(before.state, state)
            a = await self.post(f"{P}/jobs/{job.uuid}/accept", {"runnerToken": token})
            check_problem(self, a, 409, "runner_job_not_in_pending_state", state.label)
            self.assertEqual(await self.store.get_job(job.uuid), before)

    async def test_accept_an_unknown_job(self):
        await self.asyncSetUp()
        token = await self.register("me")
        a = await self.post(f"{P}/jobs/{secrets.token_hex(8)}/accept", {"runnerToken": token})
        check_problem(self, a, 404, "unknown_runner_job")

    # -- the job token --

    async def test_an_unknown_job_on_every_job_token_route(self):
        await self.asyncSetUp()
        token = await self.register("me")
        job = await self.make_job()
        job_token = await self.accepted(token, job)
        for name, path, kind, extra, _ in job_token_calls("no-such-job", job.media_id):
            a = await self.call(path, kind, {"runnerToken": token, "jobToken": job_token,
                                             **extra})
            check_problem(self, a, 404, "unknown_runner_job", name)

    async def test_another_runners_job_on_every_job_token_route(self):
        await self.asyncSetUp()
        me, other = await self.register("me"), await self.register("other")
        mine, theirs = await self.make_job(), await self.make_job()
        my_token = await self.accepted(me, mine)
        their_token = await self.accepted(other, theirs)
        # their job with their job token, with my job token; my job with their job token
        await self.assertEveryJobTokenCall(theirs, me, their_token, 404, "unknown_runner_job")
        await self.assertEveryJobTokenCall(theirs, me, my_token, 404, "unknown_runner_job")
        await self.assertEveryJobTokenCall(mine, other, their_token, 404, "unknown_runner_job")
        # a made-up job token on my own job
        await self.assertEveryJobTokenCall(mine, me, J.new_job_token(), 404,
                                           "unknown_runner_job")
        # and both runners can still use their own job
        for token, job, job_token in ((me, mine, my_token), (other, theirs, their_token)):
            for name, path, kind, extra, content in job_token_calls(job.uuid, job.media_id):
                if content is not None:
                    a = await self.call(path, kind, {"runnerToken": token, "jobToken": job_token})
                    self.assertEqual((a.code, a.body), (200, content), name)

    async def test_a_job_no_longer_processing_on_every_job_token_route(self):
        await self.asyncSetUp()
        token = await self.register("me")
        done, errored = await self.make_job(), await self.make_job()
        done_token = await self.completed(token, done)
        await self.assertEveryJobTokenCall(done, token, done_token, 400,
                                           "runner_job_not_in_processing_state")
        for _ in range(J.MAX_FAILURES):
            errored_token = await self.accepted(token, errored)
            a = await self.post(f"{P}/jobs/{errored.uuid}/error", {
                "runnerToken": token, "jobToken": errored_token, "message": "x"})
            self.assertEqual(a.code, 204, a.body)
        self.assertEqual((await self.store.get_job(errored.uuid)).state, JobState.ERRORED)
        # (PeerTube clears the job token of an errored job, so it says 404 there)
        await self.assertEveryJobTokenCall(errored, token, errored_token, 400,
                                           "runner_job_not_in_processing_state")

    async def test_a_job_given_back_or_cancelled_forgets_its_job_token(self):
        """Abort, error (below 5), the watchdog and cancel clear the job token, as
        PeerTube's resetToPending and setToErrorOrCancel do: the old token is unknown."""
        await self.asyncSetUp()
        token = await self.register("me")
        aborted, failed, cancelled = await self.make_job(), await self.make_job(), await self.make_job()
        creds = {"runnerToken": token}
        aborted_token = await self.accepted(token, aborted)
        a = await self.post(f"{P}/jobs/{aborted.uuid}/abort",
                            {**creds, "jobToken": aborted_token, "reason": "bye"})
        self.assertEqual(a.code, 204, a.body)
        failed_token = await self.accepted(token, failed)
        a = await self.post(f"{P}/jobs/{failed.uuid}/error",
                            {**creds, "jobToken": failed_token, "message": "boom"})
        self.assertEqual(a.code, 204, a.body)
        cancelled_token = await self.accepted(token, cancelled)
        await self.cancelled(cancelled)
        for job, job_token in ((aborted, aborted_token), (failed, failed_token),
                               (cancelled, cancelled_token)):
            await self.assertEveryJobTokenCall(job, token, job_token, 404, "unknown_runner_job")

    async def test_success_losing_a_race_is_not_processing(self):
        """The job is cancelled between the token check and the write: 400, no file kept."""
        await self.asyncSetUp()
        token = await self.register("me")
        job = await self.make_job()
        job_token = await self.accepted(token, job)
        children = self.store.children

        async def cancel_first(uuid):
            self.store.children = children  # once
            await self.cancelled(job)
            return await children(uuid)
        self.store.children = cancel_first
        body, ctype = multipart([("runnerToken", token), ("jobToken", job_token)],
                                [("payload[videoFile]", "out.mp4", b"video")])
        a = await self.post(f"{P}/jobs/{job.uuid}/success", raw=body, content_type=ctype)
        check_problem(self, a, 400, "runner_job_not_in_processing_state")
        self.assertEqual((await self.store.get_job(job.uuid)).state, JobState.CANCELLED)
        self.assertEqual(self.output_files(), [])
        self.assertEqual(await self.store.media_files(job.media_id, role="output"), [])

    async def test_missing_job_token_or_fields_are_bad_requests(self):
        await self.asyncSetUp()
        token = await self.register("me")
        job = await self.make_job()
        job_token = await self.accepted(token, job)
        for name, path, kind, extra, _ in job_token_calls(job.uuid, job.media_id):
            a = await self.call(path, kind, {"runnerToken": token, **extra})
            check_problem(self, a, 400, "bad_request", name)
        for path, fields in (("abort", {}), ("error", {}), ("error", {"message": 3})):
            a = await self.post(f"{P}/jobs/{job.uuid}/{path}",
                                {"runnerToken": token, "jobToken": job_token, **fields})
            check_problem(self, a, 400, "bad_request", (path, fields))
        stored = await self.store.get_job(job.uuid)
        self.assertEqual((stored.state, stored.failures), (JobState.PROCESSING, 0))

    # -- input files --

    async def test_a_video_id_that_is_not_the_jobs(self):
        """Ours: 404 unknown_video. PeerTube: 404 for no such video, 403 for a video that
        exists but is not the job's."""
        await self.asyncSetUp()
        token = await self.register("me")
        job, other = await self.make_job(), await self.make_job()
        job_token = await self.accepted(token, job)
        for name, path, kind, extra, content in job_token_calls(job.uuid, other.media_id):
            if content is None:
                continue
            a = await self.call(path, kind, {"runnerToken": token, "jobToken": job_token})
            check_problem(self, a, 404, "unknown_video", name)
            self.assertNotIn(content, a.body)

    async def test_input_files_that_are_missing(self):
        await self.asyncSetUp()
        token = await self.register("me")
        job = await self.make_job()
        job_token = await self.accepted(token, job)
        creds = {"runnerToken": token, "jobToken": job_token}
        calls = job_token_calls(job.uuid, job.media_id, filename="not-a-task-file.mp4")
        a = await self.call(calls[-1][1], "json", creds)
        check_problem(self, a, 404, "file_not_found")
        for name, _ in INPUTS.values():
            os.unlink(os.path.join(self.files_dir, name))
        for name, path, kind, extra, content in job_token_calls(job.uuid, job.media_id):
            if content is not None:
                a = await self.call(path, kind, creds)
                check_problem(self, a, 404, "file_not_found", name)
        self.assertEqual((await self.store.get_job(job.uuid)).state, JobState.PROCESSING)

    # -- sizes --

    async def test_a_json_body_too_large(self):
        await self.asyncSetUp()
        token = await self.register("me")
        job = await self.make_job()
        job_token = await self.accepted(token, job)
        a = await self.post(f"{P}/jobs/{job.uuid}/error", {
            "runnerToken": token, "jobToken": job_token, "message": "x" * (MAX_JSON_BYTES + 1)})
        check_problem(self, a, 413, "payload_too_large")
        stored = await self.store.get_job(job.uuid)
        self.assertEqual((stored.state, stored.failures), (JobState.PROCESSING, 0))

    async def test_an_upload_over_the_limit(self):
        await self.asyncSetUp(max_upload_bytes=32 * 1024)
        token = await self.register("me")
        job = await self.make_job()
        job_token = await self.accepted(token, job)
        creds = [("runnerToken", token), ("jobToken", job_token)]
        for path in ("update", "success"):
            body, ctype = multipart(creds, [("payload[videoFile]", "big.mp4", b"v" * 100_000)])
            a = await self.post(f"{P}/jobs/{job.uuid}/{path}", raw=body, content_type=ctype)
            check_problem(self, a, 413, "payload_too_large", path)
        self.assertEqual(self.output_files(), [])
        self.assertEqual((await self.store.get_job(job.uuid)).state, JobState.PROCESSING)
