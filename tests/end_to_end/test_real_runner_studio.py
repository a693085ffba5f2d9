"""PeerTube's own runner (0.0.22) does every studio task the daemon makes: a media edited
with ``choir-admin media studio`` (cut, add-intro, add-outro, add-watermark) gets its
max-quality file replaced by the runner's result and its renditions made again, each
output probed with ffprobe. Skipped without node or the runner bundle, failed in CI."""
import os
import subprocess

from choir_protocol.runners.jobs import JobType

from ..support.media_files import make_video
from ..support.peertube_runner import RealRunnerCase, stream, stream_seconds


def red_corner(path, width, height) -> tuple:
    """The colour in the middle of where PeerTube puts a watermark (top right, its height a
    tenth of the video's, 1/20 of the height from the edges), one frame from the middle."""
    size = max(2, height // 10)
    x, y = (width - height // 20 - size // 2) & ~1, (height // 20 + size // 2) & ~1
    raw = subprocess.run(["ffmpeg", "-v", "error", "-ss", "1", "-i", path, "-frames:v", "1",
                          "-vf", f"crop=2:2:{x}:{y}", "-f", "rawvideo", "-pix_fmt", "rgb24",
                          "-"], check=True, capture_output=True).stdout
    return tuple(raw[:3])


class RealRunnerStudioTest(RealRunnerCase):
    timeout = 300

    async def edit(self, media_id, *options):
        made = await self.admin("media", "studio", *options, media_id)
        self.assertEqual([j["type"] for j in made["jobs"]][0], JobType.STUDIO, made)
        jobs = await self.run_media_jobs(media_id)
        studio = [j for j in jobs if j.uuid == made["jobs"][0]["uuid"]]
        self.assertEqual(len(studio), 1)
        redone = [j for j in jobs if j.parent_uuid == studio[0].uuid]
        self.assertEqual(sorted((j.type, j.payload["output"]["resolution"]) for j in redone),
                         [(JobType.VOD_HLS, 240), (JobType.VOD_HLS, 360),
                          (JobType.VOD_WEB_VIDEO, 240)])
        self.assertEqual(set((await self.ran_by([studio[0], *redone])).values()), {"pt-studio"})
        return await self.outputs(media_id)

    async def assert_video(self, path, seconds, height=360, name=None):
        info = await self.probe(path)
        name = name or os.path.basename(path)
        video, audio = stream(info, "video"), stream(info, "audio")
        self.assert_picture(video, height, name)
        self.assertEqual(audio["codec_name"], "aac", name)
        self.assertLess(abs(float(info["format"]["duration"]) - seconds), 0.25,
                        f"{name}: {info['format']['duration']} s, not {seconds}")
        self.assertLess(abs(stream_seconds(audio) - seconds), 0.25, name)
        return video

    async def test_every_studio_task_by_the_real_runner(self):
        await self.start_daemon("--resolutions", "240,360")
        runner = await self.start_runner("pt-studio")
        await self.until_idle(runner)
        source = await self.blocking(make_video, os.path.join(self.tmp, "in.mp4"), 4)
        media = (await self.upload_video(source, "to edit"))["id"]
        await self.run_media_jobs(media, count=4)

        # cut: 0.5 s to 3.5 s kept
        outputs = await self.edit(media, "--cut", "0.5:3.5")
        await self.assert_video(outputs["360p.mp4"], 3.0)
        await self.assert_video(outputs["240p.mp4"], 3.0, 240)
        await self.assert_hls(outputs, (360, 240), 3.0, tolerance=0.3)

        # intro and outro: a second each, a clip of another size (scaled into the picture)
        clip = await self.blocking(make_video, os.path.join(self.tmp, "clip.mp4"), 1,
                                   size="320x240")
        outputs = await self.edit(media, "--intro", clip, "--outro", clip)
        await self.assert_video(outputs["360p.mp4"], 5.0)
        await self.assert_hls(outputs, (360, 240), 5.0, tolerance=0.3)

        # watermark: a red square in the top-right corner, nothing else changed
        logo = os.path.join(self.tmp, "logo.png")
        await self.blocking(subprocess.run, ["ffmpeg", "-v", "error", "-f", "lavfi", "-i",
                                             "color=c=red:s=100x100", "-frames:v", "1", logo],
                            check=True)
        outputs = await self.edit(media, "--watermark", logo)
        video = await self.assert_video(outputs["360p.mp4"], 5.0)
        r, g, b = await self.blocking(red_corner, outputs["360p.mp4"], video["width"], 360)
        self.assertTrue(r > 150 and g < 90 and b < 90, (r, g, b))
        await self.assert_hls(outputs, (360, 240), 5.0, tolerance=0.3)
        shown = await self.admin("media", "show", media)
        self.assertEqual(shown["state"], "completed")
