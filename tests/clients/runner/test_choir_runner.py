"""choir-runner against the daemon's RunnerService, in-process: real HTTP, socket.io over
WebSocket on 127.0.0.1, real ffmpeg. Each test registers with the CLI's own ``run`` and
waits for the runner's own record of the job's end (no sleep-and-hope)."""
import os
import subprocess
import sys
import uuid as uuidlib

from ffmpeg import probe
from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from choir_clients.runner import runner as R
from choir_protocol.runners import jobs as J
from choir_protocol.runners import publishing as P
from choir_protocol.runners.hls_codecs import runner_guess
from choir_protocol.runners.jobs import JobState, JobType

from ...support import media_files
from ...support.choir_runner import RunnerFixture
from ...support.daemon_process import until
from ...support.media_files import ffmpeg


def make_video(path, seconds=2, size="1280x720"):
    return media_files.make_video(path, seconds, size, rate=30, source="testsrc2")


class ChoirRunnerTest(RunnerFixture, unittest.TestCase):
    timeout = 120

    async def test_cli_register_list_unregister(self):
        await self.start_daemon()
        code, _, err = await self.cli("register", "--url", self.url, "--registration-token",
                                      "ptrrt-nobody", "--runner-name", "r")
        self.assertEqual((code, err), (1, f"choir-runner: {self.url} does not know this "
                                          "registration token\n"))
        await self.register("r")
        code, _, err = await self.cli("register", "--url", self.url, "--registration-token",
                                      "x", "--runner-name", "r")
        self.assertEqual(code, 1)
        self.assertIn("already registered", err)
        code, out, _ = await self.cli("list-registered")
        self.assertEqual(code, 0)
        self.assertIn(self.url, out)
        self.assertEqual([r.name for r in await self.store.list_runners()], ["r"])
        code, out, err = await self.cli("unregister", "--url", self.url, "--runner-name", "r")
        self.assertEqual(code, 0, err)
        self.assertEqual(await self.store.list_runners(), [])
        self.assertEqual(R.load_registrations(), [])
        code, _, err = await self.cli("register", "--url", "http://127.0.0.1:1",
                                      "--registration-token", "x", "--runner-name", "r")
        self.assertEqual(code, 1)
        self.assertIn("cannot reach http://127.0.0.1:1: connection refused", err)
        code, _, err = await self.cli("register", "--url", self.url)
        self.assertEqual(code, 2)
        self.assertIn("missing --registration-token, --runner-name", err)

    async def test_web_video_job_life(self):
        await self.start_daemon()
        await self.register()
        runner = self.start_runner()
        source = make_video(os.path.join(self.tmp, "in.mp4"), size="1280x720")
        uuid, media_id = await self.make_job(JobType.VOD_WEB_VIDEO, source,
                                             J.web_video_payload, 360, 25)
        outcome, job = await self.finished(runner, uuid)
        self.assertEqual((outcome, job.state, job.failures), ("completed", JobState.COMPLETED, 0))
        (path,) = (await self.outputs(media_id)).values()
        streams = probe(path)["streams"]
        video = next(s for s in streams if s["codec_type"] == "video")
        self.assertEqual((video["codec_name"], video["width"], video["height"]),
                         ("h264", 640, 360))
        self.assertEqual(video["r_frame_rate"], "25/1")
        self.assertIn("aac", [s["codec_name"] for s in streams])
        self.assertEqual(os.listdir(runner.work_dir), [])  # temp files cleaned

    async def test_portrait_web_video(self):
        await self.start_daemon()
        await self.register()
        runner = self.start_runner()
        source = make_video(os.path.join(self.tmp, "in.mp4"), size="720x1280", seconds=1)
        uuid, media_id = await self.make_job(JobType.VOD_WEB_VIDEO, source,
                                             J.web_video_payload, 360, 30)
        outcome, _ = await self.finished(runner, uuid)
        self.assertEqual(outcome, "completed")
        (path,) = (await self.outputs(media_id)).values()
        video = probe(path)["streams"][0]
        self.assertEqual((video["width"], video["height"]), (360, 640))

    async def test_audio_merge_job(self):
        await self.start_daemon()
        await self.register()
        runner = self.start_runner()
        audio, cover = os.path.join(self.tmp, "mix.flac"), os.path.join(self.tmp, "cover.png")
        ffmpeg("-f", "lavfi", "-i", "sine=frequency=330:sample_rate=48000", "-t", "3.5", audio)
        ffmpeg("-f", "lavfi", "-i", "testsrc2=size=1920x1080", "-frames:v", "1", cover)
        uuid, media_id = await self.make_job(
            JobType.VOD_AUDIO_MERGE, None, J.audio_merge_payload, 720, 25,
            private={"inputs": {"max-quality": audio, "preview": cover}})
        outcome, job = await self.finished(runner, uuid)
        self.assertEqual((outcome, job.state), ("completed", JobState.COMPLETED))
        (path,) = (await self.outputs(media_id)).values()
        found = probe(path)
        kinds = {s["codec_type"]: s for s in found["streams"]}
        self.assertEqual((kinds["video"]["width"], kinds["video"]["height"]), (1280, 720))
        self.assertEqual(kinds["audio"]["codec_name"], "aac")
        self.assertLessEqual(abs(float(found["format"]["duration"]) - 3.5), 0.2)

    async def test_hls_job(self):
        await self.start_daemon()
        await self.register()
        runner = self.start_runner()
        source = make_video(os.path.join(self.tmp, "in.mp4"), seconds=5, size="640x480")
        uuid, media_id = await self.make_job(JobType.VOD_HLS, source, J.hls_payload, 240, 25)
        outcome, job = await self.finished(runner, uuid)
        self.assertEqual((outcome, job.state), ("completed", JobState.COMPLETED))
        files = job.private_payload["result"]["files"]
        with open(files["resolutionPlaylistFile"], encoding="utf-8") as f:
            playlist = f.read()
        self.assertIn("#EXT-X-MAP:URI=", playlist)
        # the playlist names the fMP4 stored next to it (the daemon renames both)
        self.assertIn(f'#EXT-X-MAP:URI="{os.path.basename(files["videoFile"])}"', playlist)
        self.assertIn("#EXT-X-ENDLIST", playlist)
        video = probe(files["videoFile"])
        self.assertIn("mp4", video["format"]["format_name"])
        stream = next(s for s in video["streams"] if s["codec_type"] == "video")
        self.assertEqual((stream["width"], stream["height"]), (320, 240))
        # the master playlist's CODECS: ffprobe's of the rendition, and the guess for an
        # unprobed one, say the same (H.264 High at level 1.3 for 320x240 at 25 fps, AAC-LC)
        self.assertEqual(P.probe_from_ffprobe(video).codecs, "avc1.64000d,mp4a.40.2")
        self.assertEqual(runner_guess(320, 240, 25), "avc1.64000d,mp4a.40.2")
        self.assertEqual(sorted(os.path.splitext(p)[1] for p in
                                (await self.outputs(media_id)).values()), [".m3u8", ".mp4"])

    async def test_ffmpeg_failure_is_reported(self):
        await self.start_daemon()
        await self.register()
        runner = self.start_runner(stop_after_one=True)
        corrupt = os.path.join(self.tmp, "corrupt.mp4")
        with open(corrupt, "wb") as f:
            f.write(b"\x00\x00\x00\x18ftypmp42" + os.urandom(20000))
        uuid, _ = await self.make_job(JobType.VOD_WEB_VIDEO, corrupt, J.web_video_payload,
                                      360, 25)
        outcome, job = await self.finished(runner, uuid)
        self.assertEqual(outcome, "failed")
        self.assertEqual((job.state, job.failures), (JobState.PENDING, 1))
        self.assertIn("exited with status", job.error)

    async def test_download_over_the_limit_is_refused(self):
        await self.start_daemon()
        await self.register()
        runner = self.start_runner(stop_after_one=True, http_options={"max_download": 1000})
        source = make_video(os.path.join(self.tmp, "in.mp4"), seconds=1)
        uuid, _ = await self.make_job(JobType.VOD_WEB_VIDEO, source, J.web_video_payload,
                                      360, 25)
        outcome, job = await self.finished(runner, uuid)
        self.assertEqual((outcome, job.failures), ("failed", 1))
        self.assertIn("over the limit of 1000 bytes", job.error)

    async def test_stop_aborts_running_jobs(self):
        await self.start_daemon()
        await self.register()
        runner = self.start_runner(concurrency=1)
        source = make_video(os.path.join(self.tmp, "in.mp4"), seconds=30, size="1920x1080")
        uuid, _ = await self.make_job(JobType.VOD_WEB_VIDEO, source, J.web_video_payload,
                                      1080, 60)
        await until(lambda: uuid in runner.running, 30, "the job to start")
        await self.job_when(uuid, lambda job: job.progress, 60, "some progress")
        await runner.stop()
        job = await self.store.get_job(uuid)
        self.assertEqual((job.state, job.failures), (JobState.PENDING, 0))
        self.assertIn((uuid, "aborted"), runner.outcomes)

    async def test_unknown_runner_token_forgets_the_server(self):
        await self.start_daemon()
        await self.register()
        runner = self.start_runner()
        await until(lambda: runner.instances and runner.instances[0].socket.connected, 10,
                    "the socket.io connection")
        (registered,) = await self.store.list_runners()
        await self.store.unregister_runner(registered.id)
        runner.instances[0].wake()
        await until(lambda: not runner.instances, 10, "the runner to forget the server")
        self.assertEqual(R.load_registrations(), [])


class TogetherTest(unittest.TestCase):
    """The audio merge's two ffmpegs run together; one failing kills the other."""

    timeout = 30

    async def test_a_failure_kills_the_other_process(self):
        from choir_clients.runner import jobs as runner_jobs
        marker = f"choir-test-{uuidlib.uuid4().hex}"
        started = reactor.seconds()
        with self.assertRaises(runner_jobs.JobFailed):
            await runner_jobs._together(
                runner_jobs.run(reactor, [sys.executable, "-c", f"import time; time.sleep(20)  # {marker}"]),
                runner_jobs.run(reactor, ["sh", "-c", "sleep 0.2; exit 3"]))
        self.assertLess(reactor.seconds() - started, 10)
        alive = subprocess.run(["pgrep", "-f", marker], capture_output=True)
        self.assertEqual(alive.stdout, b"")

    async def test_both_succeed(self):
        from choir_clients.runner import jobs as runner_jobs
        out = await runner_jobs._together(runner_jobs.run(reactor, ["true"]),
                                          runner_jobs.run(reactor, ["true"]))
        self.assertIsNone(out)


class RetryingTest(unittest.TestCase):
    """A finished job's result is sent again while the server cannot be reached."""

    def test_unreachable_then_delivered(self):
        from choir_clients.runner import jobs as runner_jobs
        from choir_clients.runner.api import Unreachable
        clock = task.Clock()
        calls = []

        async def call():
            calls.append(clock.seconds())
            if len(calls) < 3:
                raise Unreachable("http://x: connection refused")
            return "sent"
        d = defer.ensureDeferred(runner_jobs.retrying(clock, call, delays=(2.0, 10.0, 30.0)))
        clock.advance(2.0)
        clock.advance(10.0)
        self.assertEqual(self.successResultOf(d), "sent")
        self.assertEqual(calls, [0.0, 2.0, 12.0])

    def test_refusals_are_final_and_retries_end(self):
        from choir_clients.runner import jobs as runner_jobs
        from choir_clients.runner.api import ServerProblem, Unreachable
        clock = task.Clock()

        async def refused():
            raise ServerProblem(413, "payload_too_large", "too big")
        self.failureResultOf(defer.ensureDeferred(runner_jobs.retrying(clock, refused)),
                             ServerProblem)

        async def down():
            raise Unreachable("down")
        d = defer.ensureDeferred(runner_jobs.retrying(clock, down, delays=(1.0, 1.0)))
        clock.advance(1.0)
        clock.advance(1.0)
        self.failureResultOf(d, Unreachable)
