"""PeerTube's own runner (0.0.22, unmodified, ``tests/support/peertube_runner.py``) against a real
``twistd -n choir``: a recorded rehearsal and an uploaded video published by it, its
unregistering, a job reaching it by notification alone, and a job given back by the
stalled-job watchdog after the runner was killed in the middle of it, then finished by
another real runner. Every output is probed with ffprobe. Skipped, saying why, without node
>= 20 or the runner bundle; failed instead with CI=true.
"""
import os
import time

import attrs
import soundfile
from twisted.internet import endpoints

from choir_clients.demo.signals import broadband_track
from choir_clients.demo.simulated import SimulatedDirector
from choir_protocol.rehearsal.constants import SAMPLE_RATE
from choir_protocol.runners import jobs as J
from choir_protocol.runners.jobs import JobState, JobType

from ..support.media_files import make_video
from ..support.peertube_runner import RealRunnerCase, local_seconds, stream, stream_seconds, upload
from ..support.sessions import EIGHT_SINGERS, connect_singers


class RecordedRehearsalTest(RealRunnerCase):
    async def test_a_recorded_rehearsal_is_published_by_the_real_runner(self):
        await self.start_daemon("--resolutions", "240,360", "--choir-name", "Real Runner Choir")
        runner = await self.start_runner("pt-rehearsal")
        await self.until_idle(runner)

        # the rehearsal: three simulated singers 0-50 ms away, a 6 s track
        await connect_singers(self, self.daemon, EIGHT_SINGERS[:3])
        await self.until(lambda: "(3 connected)" in self.daemon_log(), 30, "3 singers to join")
        director = SimulatedDirector(broadband_track(6.0))
        await endpoints.connectProtocol(self.daemon.endpoint("director"), director)
        await director.done
        self.assertFalse(director.refused)

        # the daemon publishes it; the runner hears of it and does every job
        [media] = await self.until(self.store.list_media, 60, "the session to be published")
        self.assertEqual(media.kind, "recording")
        jobs = await self.run_media_jobs(media.id, count=3)
        self.assertEqual(sorted((j.type, j.payload["output"]["resolution"]) for j in jobs), [
            (JobType.VOD_AUDIO_MERGE, 360), (JobType.VOD_HLS, 240), (JobType.VOD_HLS, 360)])
        self.assertEqual(set((await self.ran_by(jobs)).values()), {"pt-rehearsal"})

        mix, rate = soundfile.read(media.path, dtype="float32")
        self.assertEqual(rate, SAMPLE_RATE)
        seconds = len(mix) / SAMPLE_RATE
        self.assertGreater(seconds, 5.5)
        outputs = await self.outputs(media.id)

        # the audio merge's MP4: the cover as H.264 640x360 and the mix as AAC. The real
        # runner's still picture runs on past the audio: the audio stream is the measure.
        info = await self.probe(outputs["360p.mp4"])
        video, audio = stream(info, "video"), stream(info, "audio")
        self.assertEqual(audio["codec_name"], "aac")
        self.assertLess(abs(stream_seconds(audio) - seconds), 0.1,
                        f"audio {stream_seconds(audio)} s, mix {seconds} s")
        self.assertGreaterEqual(stream_seconds(video), seconds - 0.1)

        await self.assert_hls(outputs, (360, 240), seconds)
        shown = await self.assert_published(media.id, jobs)
        self.assertTrue(shown["name"].startswith("Real Runner Choir, "), shown["name"])
        # PeerTube's runner does not scale the preview in an audio merge (it only makes its
        # sides even): the cover the daemon serves must already be the job's resolution
        self.assert_picture(video, 360, "360p.mp4 (the audio merge's picture)")


class UploadTest(RealRunnerCase):
    async def test_an_uploaded_video_is_transcoded_by_the_real_runner(self):
        await self.start_daemon("--resolutions", "240,360")
        runner = await self.start_runner("pt-upload")
        await self.until_idle(runner)
        source = await self.blocking(make_video, os.path.join(self.tmp, "in.mp4"), 3)
        media = await self.upload_video(source, "lavfi test")
        jobs = await self.run_media_jobs(media["id"], count=4)
        self.assertEqual(sorted((j.type, j.payload["output"]["resolution"]) for j in jobs), [
            (JobType.VOD_HLS, 240), (JobType.VOD_HLS, 360),
            (JobType.VOD_WEB_VIDEO, 240), (JobType.VOD_WEB_VIDEO, 360)])
        self.assertEqual(set((await self.ran_by(jobs)).values()), {"pt-upload"})

        outputs = await self.outputs(media["id"])
        for resolution in (360, 240):
            name = f"{resolution}p.mp4"
            info = await self.probe(outputs[name])
            self.assertLess(abs(float(info["format"]["duration"]) - 3.0), 0.2, name)
            self.assert_picture(stream(info, "video"), resolution, name)
            audio = stream(info, "audio")
            self.assertEqual(audio["codec_name"], "aac", name)
            self.assertLess(abs(stream_seconds(audio) - 3.0), 0.2, name)
            self.assertEqual(len(info["streams"]), 2, name)
        await self.assert_hls(outputs, (360, 240), 3.0)
        await self.assert_published(media["id"], jobs)


class UnregisterTest(RealRunnerCase):
    async def test_the_real_runner_unregisters(self):
        await self.start_daemon("--resolutions", "360")
        runner = await self.start_runner("pt-leaving")
        await self.until_idle(runner)
        self.assertEqual(await self.blocking(runner.list_registered),
                         [(self.base, "pt-leaving")])
        before = self.requests_logged("/api/v1/runners/unregister")

        await self.blocking(runner.unregister, self.base, "pt-leaving")  # checks list-registered
        self.assertEqual(await self.runner_names(), [])
        self.assertEqual(self.requests_logged("/api/v1/runners/unregister"), before + 1)
        self.assertIn('"POST /api/v1/runners/unregister HTTP/1.1" 204', self.daemon_log())
        self.assertTrue(runner.alive())  # the server goes on, with no instance
        self.assertEqual(await self.store.list_runners(), [])


class NotificationTest(RealRunnerCase):
    async def test_a_new_job_reaches_the_idle_runner_without_polling(self):
        """The real runner never polls: a job made while it waits reaches it only through
        the daemon's ``available-jobs`` on its socket.io connection."""
        await self.start_daemon("--resolutions", "240")
        runner = await self.start_runner("pt-waiting")
        await self.until_idle(runner)  # connected, asked once, found nothing
        idle = self.requests_logged()
        self.assertEqual(idle, 1)
        self.assertEqual(len(runner.asked_at(self.base)), 1)
        # meanwhile (about a second): the runner asks nothing, its socket stays open
        source = await self.blocking(make_video, os.path.join(self.tmp, "in.mp4"), 2)
        api = (await self.admin("api-tokens", "create"))["token"]
        self.assertEqual(self.requests_logged(), idle, "the runner asked without being told")
        self.assertNotIn("Disconnected from", runner.log())

        started, told = time.monotonic(), local_seconds()
        status, media = await self.blocking(upload, self.base, api, source, "while waiting")
        self.assertEqual(status, 201, media)
        jobs = await self.run_media_jobs(media["id"], deadline=30, count=2)
        self.assertLess(time.monotonic() - started, 30)
        self.assertEqual(set((await self.ran_by(jobs)).values()), {"pt-waiting"})
        asked = runner.asked_at(self.base)
        self.assertGreater(len(asked), 1)
        # its next round began once the upload had made the jobs (its log has ms; 10 ms slack
        # for the two clocks' rounding), and within a couple of seconds (debounce: 1 s)
        self.assertGreaterEqual(asked[1], told - 0.01, (asked, told))
        self.assertLess(asked[1] - told, 3.0, (asked, told))
        self.assertNotIn("Disconnected from", runner.log())


class KilledRunnerTest(RealRunnerCase):
    timeout = 240

    async def test_a_killed_runners_job_goes_back_and_another_runner_finishes_it(self):
        """SIGKILL (node and its ffmpeg) in the middle of a web-video job: the job stays
        processing until the daemon's stalled-job watchdog gives it back (pending, not a
        failure); a second real runner then does it and the HLS after it.

        The watchdog returns a VOD job after 2 minutes without an update, and twistd has
        no option to shorten that: the test backdates the job's last update by that much in
        the store (as another process, like choir-admin) instead of waiting 2 minutes; the
        daemon's own watchdog (every 10 s) does the rest."""
        await self.start_daemon("--resolutions", "480")
        first = await self.start_runner("pt-doomed")
        await self.until_idle(first)
        source = await self.blocking(make_video, os.path.join(self.tmp, "long.mp4"), 24,
                                     "1280x720", 25, "testsrc2")
        media = await self.upload_video(source, "long")
        [web] = [j for j in await self.store.media_jobs(media["id"])
                 if j.type == JobType.VOD_WEB_VIDEO]
        [doomed_id] = [r.id for r in await self.store.list_runners()]

        # mid-job: accepted, and its ffmpeg writing the output (the real runner reports
        # progress every 60 s only: none would come in time)
        def writing():
            d = first.transcoding_dir
            try:
                return first.ffmpeg_running() and any(
                    n.startswith("output-") and os.path.getsize(os.path.join(d, n)) > 0
                    for n in os.listdir(d))
            except OSError:  # a file went away as we looked
                return False

        async def mid_job():
            job = await self.store.get_job(web.uuid)
            return job.state is JobState.PROCESSING and job.runner_id == doomed_id \
                and writing() and job
        job = await self.until(mid_job, 60, "the web-video job to be transcoding")
        await self.blocking(first.kill)  # the group: node and ffmpeg
        self.assertFalse(first.group_pids())
        job = await self.store.get_job(web.uuid)
        self.assertEqual((job.state, job.runner_id), (JobState.PROCESSING, doomed_id))

        # 2 minutes later, as far as the watchdog can tell
        aged = attrs.evolve(job, updated_at=job.updated_at - J.VOD_STALLED_AFTER - 1)
        await self.store.save(J.Transition(aged, JobState.PROCESSING), previous=job)

        async def given_back():
            j = await self.store.get_job(web.uuid)
            return j.state is JobState.PENDING and j
        back = await self.until(given_back, 20, "the watchdog to give the job back")
        self.assertEqual((back.failures, back.runner_id, back.job_token, back.progress),
                         (0, None, None, None))
        self.assertIn(f"Job {web.uuid} stalled (no update from its runner): back to pending",
                      self.daemon_log())

        second = await self.start_runner("pt-second")
        jobs = await self.run_media_jobs(media["id"], count=2)
        self.assertEqual(set((await self.ran_by(jobs)).values()), {"pt-second"})
        outputs = await self.outputs(media["id"])
        info = await self.probe(outputs["480p.mp4"])
        self.assertLess(abs(float(info["format"]["duration"]) - 24.0), 0.2)
        self.assert_picture(stream(info, "video"), 480, "480p.mp4")
        self.assertEqual(stream(info, "audio")["codec_name"], "aac")
        await self.assert_hls(outputs, (480,), 24.0)
        await self.assert_published(media["id"], jobs)
        self.assertTrue(second.alive())
