"""Studio edits over real HTTP: POST /api/v1/media/{id}/studio/edit plans a
video-studio-transcoding job on the media's max-quality file, serves its task files to the
runner holding it, and the result replaces the max-quality file before every rendition is
made again. The test plays the runner by hand (choir-runner and PeerTube's runner have
their own tests), so every byte served and stored can be checked."""
import os

from twisted.internet import threads

from choir_protocol.runners.jobs import JobState, JobType
from choir_twisted.publishing.publisher import probe_file

from ...support.daemon_process import until
from ...support.http import multipart
from ...support.media_files import ffmpeg
from ...support.paths import temp_dir
from ...support.publishing import M, PublishingCase, R, until_value


def read(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


class StudioAPITest(PublishingCase):
    timeout = 120

    def clip(self, name="clip.mp4", size="640x360", seconds=3):
        return self.generated(name, "-f", "lavfi", "-i", f"testsrc=s={size}:r=25:d={seconds}",
                              "-f", "lavfi", "-i", f"sine=d={seconds}", "-c:v", "libx264",
                              "-preset", "ultrafast", "-c:a", "aac", "-shortest")

    async def edit(self, media_id, fields=(), files=(), token=None, json_tasks=None):
        headers = {"Authorization": f"Bearer {token or self.token}"}
        if json_tasks is not None:
            return await self.http("POST", f"{M}/{media_id}/studio/edit",
                                   {"tasks": json_tasks}, headers=headers)
        body, ctype = multipart(fields, files)
        return await self.http("POST", f"{M}/{media_id}/studio/edit", raw=body,
                               content_type=ctype, headers=headers)

    async def run_jobs(self, media_id, runner_token, produce):
        """Plays the runner until every job of the media has ended; ``produce(wire)`` ->
        the success files of one job. -> the wires of the jobs it ran, in order."""
        ran = []
        while True:
            jobs = await self.store.media_jobs(media_id)
            pending = [j for j in jobs if j.state is JobState.PENDING]
            if not pending:
                self.assertTrue(all(j.state is JobState.COMPLETED for j in jobs
                                    if j.state is not JobState.WAITING_FOR_PARENT_JOB))
                return ran
            wire = await self.accept(runner_token, pending[0])
            await self.succeed(runner_token, wire, await produce(wire))
            ran.append(wire)

    async def transcode(self, wire):
        """A runner's work, done with real ffmpeg on what the daemon serves."""
        source = await self.fetch(self.runner, wire["jobToken"],
                                  wire["payload"]["input"]["videoFileUrl"])
        self.assertEqual(source.code, 200, source.body)
        work = temp_dir(self)
        with open(os.path.join(work, "in.mp4"), "wb") as f:
            f.write(source.body)
        res = (wire["payload"].get("output") or {}).get("resolution", 360)
        if wire["type"] == JobType.VOD_HLS:
            ffmpeg("-i", os.path.join(work, "in.mp4"), "-vf", f"scale=-2:{res}", "-c:v",
                   "libx264", "-preset", "ultrafast", "-c:a", "copy", "-f", "hls",
                   "-hls_segment_type", "fmp4", "-hls_flags", "single_file",
                   "-hls_playlist_type", "vod", "-hls_segment_filename",
                   os.path.join(work, "r.mp4"), os.path.join(work, "r.m3u8"))
            return [("payload[videoFile]", "r.mp4", read(os.path.join(work, "r.mp4"))),
                    ("payload[resolutionPlaylistFile]", "r.m3u8",
                     read(os.path.join(work, "r.m3u8")))]
        if wire["type"] == JobType.STUDIO:
            cut = wire["payload"]["tasks"][0]["options"]
            ffmpeg("-i", os.path.join(work, "in.mp4"), "-ss", str(cut["start"]), "-to",
                   str(cut["end"]), "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
                   os.path.join(work, "out.mp4"))
            return [("payload[videoFile]", "out.mp4", read(os.path.join(work, "out.mp4")))]
        ffmpeg("-i", os.path.join(work, "in.mp4"), "-vf", f"scale=-2:{res}", "-c:v", "libx264",
               "-preset", "ultrafast", "-c:a", "copy", os.path.join(work, "out.mp4"))
        return [("payload[videoFile]", "out.mp4", read(os.path.join(work, "out.mp4")))]

    async def published(self):
        """A 3 s 640x360 upload, every job done: -> its id."""
        self.token = await self.serving()
        self.runner = await self.register()
        body, ctype = multipart([], [("file", "clip.mp4", read(self.clip()))])
        a = await self.http("POST", M, raw=body, content_type=ctype,
                            headers={"Authorization": f"Bearer {self.token}"})
        self.assertEqual(a.code, 201, a.body)
        media_id = a.json["id"]
        await self.run_jobs(media_id, self.runner, self.transcode)
        await until(lambda: len(self.sink.bodies) == 1, what="the first webhook")
        return media_id

    async def test_an_edit_replaces_the_max_quality_file_and_redoes_the_renditions(self):
        media_id = await self.published()
        before = {f.name: f for f in await self.store.media_files(media_id, "output")}
        intro = read(self.clip("intro.mp4", seconds=1))
        logo = read(self.generated("logo.png", "-f", "lavfi", "-i", "color=c=red:s=64x64",
                                   "-frames:v", "1"))
        a = await self.edit(media_id, [("tasks[0][name]", "cut"),
                                       ("tasks[0][options][start]", "0.5"),
                                       ("tasks[0][options][end]", "2.5"),
                                       ("tasks[1][name]", "add-intro"),
                                       ("tasks[2][name]", "add-watermark")],
                            [("tasks[1][options][file]", "intro.mp4", intro),
                             ("tasks[2][options][file]", "logo.png", logo)])
        self.assertEqual(a.code, 201, a.body)
        self.assertEqual(a.json["state"], "processing")
        studio = [j for j in a.json["jobs"] if j["type"] == JobType.STUDIO]
        self.assertEqual(len(studio), 1)
        self.assertEqual(studio[0]["state"]["id"], JobState.PENDING)
        redone = [j for j in a.json["jobs"] if j["parentUuid"] == studio[0]["uuid"]]
        self.assertEqual(sorted(j["type"] for j in redone), [JobType.VOD_HLS])
        self.assertEqual(os.listdir(os.path.join(self.data_dir, "uploads")), [])

        # the runner is told of it, with PeerTube's payload: absolute URLs, its task files
        listed = await self.http("POST", R + "/jobs/request", {"runnerToken": self.runner})
        self.assertEqual([j["type"] for j in listed.json["availableJobs"]], [JobType.STUDIO])
        wire = await self.accept(self.runner, await self.store.get_job(studio[0]["uuid"]))
        tasks = wire["payload"]["tasks"]
        self.assertEqual([t["name"] for t in tasks], ["cut", "add-intro", "add-watermark"])
        self.assertEqual(tasks[0]["options"], {"start": 0.5, "end": 2.5})
        self.assertEqual(tasks[2]["options"]["watermarkSizeRatio"], 0.1)
        for task, data in ((tasks[1], intro), (tasks[2], logo)):
            url = task["options"]["file"]
            self.assertTrue(url.startswith(self.base + R + f"/jobs/{wire['uuid']}/files/videos/"
                                           f"{media_id}/studio/task-files/"), url)
            got = await self.fetch(self.runner, wire["jobToken"], url)
            self.assertEqual(got.body, data)
        source = await self.fetch(self.runner, wire["jobToken"],
                                  wire["payload"]["input"]["videoFileUrl"])
        self.assertEqual(source.body, read(before["360p.mp4"].path))
        stranger = await self.register_other()
        got = await self.fetch(stranger, wire["jobToken"], tasks[1]["options"]["file"])
        self.assertEqual(got.code, 404)  # not the runner holding the job: no such job for it
        await self.succeed(self.runner, wire, await self.transcode(wire))

        # the result is the max-quality file now, and the HLS rendition is made from it
        after = {f.name: f for f in await self.store.media_files(media_id, "output")}
        self.assertEqual(sorted(after), sorted(before))
        probe = await threads.deferToThread(probe_file, after["360p.mp4"].path)
        self.assertLess(abs(probe.duration - 2.0), 0.2)
        ran = await self.run_jobs(media_id, self.runner, self.transcode)
        self.assertEqual([w["type"] for w in ran], [JobType.VOD_HLS])
        media = await until_value(lambda: self.store.get_media(media_id),
                                  lambda m: m.webhook_sent_at is not None)
        self.assertIsNotNone(media.ended_at)
        self.assertEqual(len(self.sink.bodies), 2)  # told again, after the edit
        view = (await self.http("GET", f"{M}/{media_id}",
                                headers={"Authorization": f"Bearer {self.token}"})).json
        self.assertEqual(view["state"], "completed")
        master = (await self.http("GET", view["hlsUrl"])).body.decode()
        self.assertEqual([x for x in master.splitlines() if not x.startswith("#")],
                         ["360p.m3u8"])  # the rendition made again, listed once
        hls = await threads.deferToThread(probe_file, self.base + view["hlsUrl"])
        self.assertLess(abs(hls.duration - 2.0), 0.3)

    async def register_other(self):
        reg = await self.store.create_registration_token()
        a = await self.http("POST", R + "/register", {"registrationToken": reg.token,
                                                      "name": "another-runner"})
        return a.json["runnerToken"]

    async def test_edit_refusals_store_nothing(self):
        media_id = await self.published()
        jobs_before = len(await self.store.media_jobs(media_id))
        logo = read(self.generated("logo.png", "-f", "lavfi", "-i", "color=s=32x32",
                                   "-frames:v", "1"))
        cases = [
            (await self.edit(media_id, json_tasks=[{"name": "cut"}], token="choir-wrong"),
             401, "unauthorized"),
            (await self.edit("nope", json_tasks=[{"name": "cut", "options": {"end": 1}}]),
             404, "unknown_media"),
            (await self.edit(media_id, json_tasks=[]), 400, "bad_studio_edit"),
            (await self.edit(media_id, json_tasks=[{"name": "rotate"}]), 400, "bad_studio_edit"),
            (await self.edit(media_id, json_tasks=[{"name": "cut", "options": {"start": 9}}]),
             400, "bad_studio_edit"),
            (await self.edit(media_id, json_tasks=[{"name": "add-intro",
                                                    "options": {"file": "x"}}]),
             400, "bad_studio_edit"),
            (await self.edit(media_id, [("tasks[0][name]", "add-intro")],
                             [("tasks[0][options][file]", "logo.png", logo)]),
             400, "bad_studio_edit"),  # a picture is not a clip
            (await self.edit(media_id, [("tasks[0][name]", "add-watermark")],
                             [("tasks[0][options][file]", "x.png", b"not a picture")]),
             400, "bad_studio_edit"),
        ]
        for answer, status, code in cases:
            self.assertEqual((answer.code, answer.json["code"]), (status, code), answer.body)
            self.assertEqual(answer.content_type, "application/problem+json")
        # one edit at a time: a second waits for the first to end
        ok = await self.edit(media_id, json_tasks=[{"name": "cut", "options": {"end": 2}}])
        self.assertEqual(ok.code, 201, ok.body)
        busy = await self.edit(media_id, json_tasks=[{"name": "cut", "options": {"end": 1}}])
        self.assertEqual((busy.code, busy.json["code"]), (409, "media_not_editable"))
        self.assertIn("still being transcoded", busy.json["detail"])
        self.assertEqual(len(await self.store.media_jobs(media_id)), jobs_before + 2)
        studio_dir = os.path.join(self.data_dir, "media", media_id, "studio")
        self.assertEqual(os.listdir(studio_dir), os.listdir(studio_dir)[:1])  # the one edit
        self.assertEqual(os.listdir(os.path.join(self.data_dir, "uploads")), [])
        shown = await self.http("GET", f"{M}/{media_id}",
                                headers={"Authorization": f"Bearer {self.token}"})
        self.assertEqual(shown.json["state"], "processing")
