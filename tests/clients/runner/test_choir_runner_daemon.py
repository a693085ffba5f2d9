"""A real ``choir-runner server`` process against a real ``twistd -n choir``: SIGTERM while
it transcodes gives the job back (abort: pending, not a failure) and exits 0."""
import os
import signal
import subprocess
import uuid as uuidlib

from twisted.internet import reactor, task
from twisted.trial import unittest

from choir_protocol.runners import jobs as J
from choir_protocol.runners.jobs import JobState, JobType
from choir_twisted.store.store import Store

from ...support.daemon_process import TwistdDaemon, until
from ...support.paths import temp_dir
from ...support.programs import RUNNER_COMMAND


class RunnerProcessTest(unittest.TestCase):
    timeout = 180

    def setUp(self):
        self.tmp = temp_dir(self)
        self.env = {**os.environ, "CHOIR_CONFIG_DIR": os.path.join(self.tmp, "config")}

    def runner(self, *args, **kw):
        return subprocess.Popen([*RUNNER_COMMAND, *args],
                                env=self.env, **kw)

    async def test_sigterm_aborts_the_running_job_and_exits_0(self):
        data_dir = os.path.join(self.tmp, "data")
        os.makedirs(data_dir)
        daemon = TwistdDaemon(data_dir, os.path.join(self.tmp, "choir.log"))
        self.addCleanup(daemon.stop)
        store = await Store.open(data_dir=data_dir)  # another process's view, like choir-admin
        self.addCleanup(store.close)
        token = (await store.create_registration_token()).token
        url = f"http://127.0.0.1:{daemon.ports['http']}"
        register = self.runner("register", "--url", url, "--registration-token", token,
                               "--runner-name", "proc-runner", stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
        await until(lambda: register.poll() is not None, 30, "register")
        self.assertEqual(register.returncode, 0, register.stderr.read())

        # a small input upscaled to 1080p60: slow enough to be caught in the middle
        source = os.path.join(self.tmp, "long.mp4")
        subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i",
                        "testsrc2=size=320x180:rate=30", "-t", "120", "-c:v", "libx264",
                        "-preset", "ultrafast", source], check=True)
        media = await store.create_media("upload", "long", path=source)
        uuid = str(uuidlib.uuid4())
        await store.create_job(JobType.VOD_WEB_VIDEO,
                               J.web_video_payload("", uuid, media.id, 1080, 60),
                               media_id=media.id, uuid=uuid)

        log_path = os.path.join(self.tmp, "runner.log")
        with open(log_path, "wb") as log:
            server = self.runner("server", "--concurrency", "1",
                                 "--work-dir", os.path.join(self.tmp, "work"),
                                 stdout=log, stderr=subprocess.STDOUT)
        self.addCleanup(lambda: server.poll() is None and server.kill())

        job = None
        for _ in range(1200):  # the store is the daemon's: wait until it shows progress
            job = await store.get_job(uuid)
            if job.state is JobState.PROCESSING and job.progress:
                break
            self.assertIsNone(server.poll(), "the runner died")
            await task.deferLater(reactor, 0.1, lambda: None)
        self.assertTrue(job.progress, f"no progress: {job}")

        server.send_signal(signal.SIGTERM)
        await until(lambda: server.poll() is not None, 30, "the runner to exit")
        with open(log_path, encoding="utf-8") as f:
            log_text = f.read()
        self.assertEqual(server.returncode, 0, log_text)
        job = await store.get_job(uuid)
        self.assertEqual((job.state, job.failures), (JobState.PENDING, 0), log_text)
        self.assertIn(f"job {uuid} given back (aborted)", log_text)
        self.assertIn("connected, listening for jobs", log_text)
        self.assertEqual(os.listdir(os.path.join(self.tmp, "work")), [])  # temp files gone
        # no ffmpeg left behind
        left = subprocess.run(["pgrep", "-f", source], capture_output=True, text=True)
        self.assertEqual(left.stdout.strip(), "")
