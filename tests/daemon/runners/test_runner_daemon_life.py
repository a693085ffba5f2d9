"""A runner's job across the daemon's life: restarts (SIGTERM and SIGKILL) with the job
surviving, the stalled-job watchdog, and one runner reaching for another's job.

The restart and trespass tests run a real ``twistd -n choir`` process (TwistdDaemon) on
loopback; the test process writes jobs straight into the daemon's store file, as
choir-admin does. The watchdog test runs RunnerService in-process with a short stall
timeout and watchdog period. Every wait is on a real event (``until``), never a sleep.
"""
import json
import os
import signal
import uuid as uuidlib

from twisted.internet import defer, reactor, task, threads
from twisted.trial import unittest

from choir_protocol.runners import jobs as J
from choir_protocol.runners.jobs import JobState, JobType
from choir_protocol.runners.tokens import hash_token
from choir_twisted.runners.service import RunnerService
from choir_twisted.store.store import Store

from ...support.daemon_process import TwistdDaemon, until
from ...support.http import http_post, loopback_agent, multipart
from ...support.paths import temp_dir
from ...support.runner_api import (INPUTS, P, check_problem, encode_call, job_token_calls,
                                   write_inputs)
from ...support.socketio_runner import connect_socket


class RunnerClient:
    """Just enough of a runner, over real HTTP."""

    def __init__(self, port):
        self.port = port
        self.agent = loopback_agent()

    async def post(self, path, body=None, kind="json", files=()):
        if kind == "json":
            raw, ctype = json.dumps(body).encode(), "application/json"
        else:
            raw, ctype = multipart(list(body.items()), list(files))
        return await http_post(self.agent, self.port, path, raw, ctype)

    async def call(self, path, kind, fields):
        raw, ctype = encode_call(kind, fields)
        return await http_post(self.agent, self.port, path, raw, ctype)

    async def register(self, registration_token, name):
        a = await self.post(P + "/register", {"registrationToken": registration_token,
                                              "name": name})
        assert a.code == 200, a.body
        return a.json["runnerToken"]

    async def accept(self, runner_token, job_uuid):
        a = await self.post(f"{P}/jobs/{job_uuid}/accept", {"runnerToken": runner_token})
        assert a.code == 200, a.body
        return a.json["job"]


async def make_job(store, files_dir, **kw):
    """A web-video job in the store, its four input files written under ``files_dir``."""
    media = await store.create_media("recording", "song")
    uuid = str(uuidlib.uuid4())
    tr = await store.create_job(JobType.VOD_WEB_VIDEO,
                                J.web_video_payload("", uuid, media.id, 720, 30),
                                private_payload=write_inputs(files_dir), media_id=media.id,
                                uuid=uuid, **kw)
    return tr.job


class DaemonTestCase(unittest.TestCase):
    timeout = 90

    def setUp(self):
        self.data_dir = temp_dir(self)
        self.daemons = 0

    def start_daemon(self) -> TwistdDaemon:
        self.daemons += 1
        daemon = TwistdDaemon(self.data_dir, os.path.join(self.data_dir, f"choir-{self.daemons}.log"))
        self.addCleanup(self._reap, daemon)
        return daemon

    @staticmethod
    def _reap(daemon):
        if daemon.process.poll() is None:
            return threads.deferToThread(daemon.stop)

    async def open_store(self) -> Store:
        store = await Store.open(data_dir=self.data_dir)
        self.addCleanup(store.close)
        return store

    def log_of(self, daemon) -> str:
        text = ""
        for path in (daemon.log_file, daemon.log_file + ".out"):
            if os.path.exists(path):
                with open(path, errors="replace") as f:
                    text += f.read()
        return text


class DaemonRestartTest(DaemonTestCase):
    async def job_survives(self, stop):
        store = await self.open_store()
        job = await make_job(store, self.data_dir)
        registration = await store.create_registration_token()
        first = self.start_daemon()
        runner = RunnerClient(first.ports["http"])
        token = await runner.register(registration.token, "runner-1")
        a = await runner.post(P + "/jobs/request", {"runnerToken": token})
        self.assertEqual([j["uuid"] for j in a.json["availableJobs"]], [job.uuid])
        job_token = (await runner.accept(token, job.uuid))["jobToken"]
        creds = {"runnerToken": token, "jobToken": job_token}
        a = await runner.post(f"{P}/jobs/{job.uuid}/update", {**creds, "progress": 40})
        self.assertEqual(a.code, 204, a.body)
        before = await store.get_job(job.uuid)
        self.assertEqual((before.state, before.progress, before.job_token_hash),
                         (JobState.PROCESSING, 40, hash_token(job_token)))

        returncode = await threads.deferToThread(stop, first)
        self.assertIsNotNone(first.process.poll())
        second = self.start_daemon()

        # the same job, as the runner left it, under the same job token
        after = await store.get_job(job.uuid)
        self.assertEqual(after, before)
        runner = RunnerClient(second.ports["http"])
        a = await runner.post(f"{P}/jobs/{job.uuid}/update", {**creds, "progress": 70})
        self.assertEqual(a.code, 204, a.body)
        self.assertEqual((await store.get_job(job.uuid)).progress, 70)
        a = await runner.post(job.payload["input"]["videoFileUrl"], creds)
        self.assertEqual((a.code, a.body), (200, INPUTS["max-quality"][1]))
        video = os.urandom(100_000)
        a = await runner.post(f"{P}/jobs/{job.uuid}/success", creds, kind="multipart",
                              files=[("payload[videoFile]", "out.mp4", video)])
        self.assertEqual(a.code, 204, a.body)
        done = await store.get_job(job.uuid)
        self.assertEqual((done.state, done.failures, done.runner_id),
                         (JobState.COMPLETED, 0, before.runner_id))
        [output] = await store.media_files(job.media_id, role="output")
        self.assertEqual(os.path.dirname(output.path),
                         os.path.join(self.data_dir, "media", job.media_id))
        with open(output.path, "rb") as f:
            self.assertEqual(f.read(), video)
        # the runner itself survived too
        a = await runner.post(P + "/jobs/request", {"runnerToken": token})
        self.assertEqual((a.code, a.json["availableJobs"]), (200, []))
        return returncode

    async def test_a_job_survives_a_restart_sigterm(self):
        stopped = []

        def terminate(daemon):
            stopped.append(daemon)
            return daemon.stop()
        returncode = await self.job_survives(terminate)
        # twistd stops cleanly, then exits by the signal that stopped it
        self.assertEqual(returncode, -signal.SIGTERM)
        log = self.log_of(stopped[0])
        self.assertIn("Main loop terminated", log)
        self.assertNotIn("Traceback", log)

    async def test_a_job_survives_a_sigkill(self):
        def kill(daemon):
            daemon.process.send_signal(signal.SIGKILL)
            return daemon.process.wait(10)
        returncode = await self.job_survives(kill)
        self.assertEqual(returncode, -signal.SIGKILL)


class TrespassTest(DaemonTestCase):
    async def test_a_runner_cannot_touch_another_runners_job(self):
        store = await self.open_store()
        theirs, mine = await make_job(store, self.data_dir), await make_job(store, self.data_dir)
        daemon = self.start_daemon()
        runner = RunnerClient(daemon.ports["http"])
        registration = await store.create_registration_token()
        me = await runner.register(registration.token, "me")
        other = await runner.register(registration.token, "other")
        their_token = (await runner.accept(other, theirs.uuid))["jobToken"]
        my_token = (await runner.accept(me, mine.uuid))["jobToken"]
        a = await runner.post(f"{P}/jobs/{theirs.uuid}/update",
                              {"runnerToken": other, "jobToken": their_token, "progress": 33})
        self.assertEqual(a.code, 204, a.body)
        before = await store.get_job(theirs.uuid)

        for job_token in (their_token, my_token):  # their token stolen, or mine
            for name, path, kind, extra, content in job_token_calls(theirs.uuid,
                                                                    theirs.media_id):
                a = await runner.call(path, kind,
                                      {"runnerToken": me, "jobToken": job_token, **extra})
                check_problem(self, a, 404, "unknown_runner_job", name)
                if content is not None:
                    self.assertNotIn(content, a.body, name)
        self.assertEqual(await store.get_job(theirs.uuid), before)
        self.assertEqual(await store.media_files(theirs.media_id), [])
        self.assertFalse(os.path.exists(os.path.join(self.data_dir, "media")))

        # their job is still theirs: they go on and finish it
        creds = {"runnerToken": other, "jobToken": their_token}
        a = await runner.post(theirs.payload["input"]["videoFileUrl"], creds)
        self.assertEqual((a.code, a.body), (200, INPUTS["max-quality"][1]))
        a = await runner.post(f"{P}/jobs/{theirs.uuid}/success", creds, kind="multipart",
                              files=[("payload[videoFile]", "out.mp4", b"their video")])
        self.assertEqual(a.code, 204, a.body)
        self.assertEqual((await store.get_job(theirs.uuid)).state, JobState.COMPLETED)
        self.assertEqual((await store.get_job(mine.uuid)).state, JobState.PROCESSING)


class WatchdogTest(unittest.TestCase):
    """RunnerService in-process with a 1.5 s stall timeout checked every 0.2 s."""

    timeout = 60
    STALL = 1.5

    async def start(self):
        self.data_dir = temp_dir(self)
        self.service = RunnerService(reactor, "tcp:0:interface=127.0.0.1", self.data_dir,
                                     watchdog_interval=0.2, vod_stalled_after=self.STALL)
        self.watchdog_runs = []  # the clock time each finished watchdog pass started at
        watchdog = self.service._watchdog

        def counted():
            started = self.service.clock()
            return watchdog().addCallback(lambda _: self.watchdog_runs.append(started))
        self.service._watchdog = counted
        await self.service.startService()
        self.addCleanup(self.service.stopService)
        self.store = self.service.store
        self.runner = RunnerClient(self.service.port.getHost().port)

    def heartbeat(self, creds, job_uuid, every=0.25):
        """The runner's update loop for one job; -> the list of the answers' codes."""
        codes = []

        async def beat():
            a = await self.runner.post(f"{P}/jobs/{job_uuid}/update", creds)
            codes.append(a.code)
        loop = task.LoopingCall(lambda: defer.ensureDeferred(beat()))
        stopped = loop.start(every)

        def stop():
            if loop.running:
                loop.stop()
            return stopped  # fires once the beat in flight, if any, is answered
        self.addCleanup(stop)
        return codes

    async def test_a_stalled_job_goes_back_to_pending_and_runners_hear_of_it(self):
        await self.start()
        registration = await self.store.create_registration_token()
        slow = await self.runner.register(registration.token, "slow")
        other = await self.runner.register(registration.token, "other")
        sock = await connect_socket(self.runner.port, other)
        self.addCleanup(sock.dropConnection)

        media = await self.store.create_media("recording", "song")
        specs = []
        for _ in range(2):
            uuid = str(uuidlib.uuid4())
            specs.append({"uuid": uuid, "type": JobType.VOD_WEB_VIDEO, "media_id": media.id,
                          "payload": J.web_video_payload("", uuid, media.id, 720, 30)})
        stalled, alive = [tr.job for tr in await self.store.create_jobs(specs)]
        self.service.hub.notify_available_jobs()  # as the daemon's own job makers do
        await until(lambda: sock.available_jobs() == 1, 10, "available-jobs for the new jobs")
        await until(lambda: self.service.hub._pending is None, 10, "no notification pending")

        stalled_token = (await self.runner.accept(slow, stalled.uuid))["jobToken"]
        accepted = await self.runner.accept(slow, alive.uuid)
        alive_since = self.service.clock()
        alive_creds = {"runnerToken": slow, "jobToken": accepted["jobToken"]}
        beats = self.heartbeat(alive_creds, alive.uuid)
        before = await self.store.get_job(stalled.uuid)

        # nothing else becomes pending: the next available-jobs is the watchdog's doing
        await until(lambda: sock.available_jobs() == 2, 20, "available-jobs after the watchdog")
        job = await self.store.get_job(stalled.uuid)
        self.assertEqual((job.state, job.failures, job.job_token, job.runner_id, job.progress,
                          job.started_at), (JobState.PENDING, before.failures, None, None, None,
                                            None))
        self.assertGreaterEqual(job.updated_at - before.updated_at, self.STALL)
        a = await self.runner.post(f"{P}/jobs/{stalled.uuid}/update",
                                   {"runnerToken": slow, "jobToken": stalled_token})
        check_problem(self, a, 404, "unknown_runner_job")

        a = await self.runner.post(P + "/jobs/request", {"runnerToken": other})
        self.assertEqual([j["uuid"] for j in a.json["availableJobs"]], [stalled.uuid])
        wire = await self.runner.accept(other, stalled.uuid)
        self.assertEqual((wire["state"]["id"], wire["failures"]), (2, 0))
        self.assertNotEqual(wire["jobToken"], stalled_token)
        new_creds = {"runnerToken": other, "jobToken": wire["jobToken"]}
        a = await self.runner.post(f"{P}/jobs/{stalled.uuid}/update", new_creds)
        self.assertEqual(a.code, 204, a.body)
        a = await self.runner.post(f"{P}/jobs/{stalled.uuid}/success", new_creds,
                                   kind="multipart", files=[("payload[videoFile]", "v.mp4", b"v")])
        self.assertEqual(a.code, 204, a.body)
        self.assertEqual((await self.store.get_job(stalled.uuid)).state, JobState.COMPLETED)

        # the job updated every 0.25 s is never returned, however many passes look at it
        await until(lambda: any(t > alive_since + 3 * self.STALL for t in self.watchdog_runs),
                    20, "watchdog passes well past the stall timeout")
        job = await self.store.get_job(alive.uuid)
        self.assertEqual((job.state, job.job_token_hash, job.runner_id),
                         (JobState.PROCESSING, hash_token(accepted["jobToken"]), job.runner_id))
        self.assertIsNotNone(job.runner_id)
        self.assertGreater(len(beats), 3)
        self.assertEqual(set(beats), {204})
        self.assertEqual(sock.available_jobs(), 2)
