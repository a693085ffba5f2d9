"""choir-runner's studio edits (video-studio-transcoding): the pure parts (task validation,
the ffmpeg commands), then the handler's ffmpeg work for real on small generated files, then
one edit and one refused task through the daemon's RunnerService and ``choir-runner``.

Over 400 lines: each studio task from its validation to its ffmpeg output, on files
generated once for all of them.
"""
import atexit
import json
import os
import shutil
import subprocess
import tempfile
import uuid as uuidlib

import pytest
from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.trial import unittest

from choir_clients.runner import ffmpeg_commands as F
from choir_clients.runner import jobs as runner_jobs
from choir_clients.runner import studio_commands as S
from choir_protocol.runners import studio as PS
from choir_protocol.runners.jobs import JobState, JobType

from ...support.choir_runner import RunnerFixture
from ...support.media_files import ffmpeg

VIDEO = F.MediaInfo(640, 360, 10.0, True, fps=29.97, audio_codec="aac")
SILENT = F.MediaInfo(640, 360, 10.0, False, fps=25.0)
CLIP = F.MediaInfo(320, 240, 2.0, True, fps=30.0, audio_codec="aac")
SILENT_CLIP = F.MediaInfo(320, 240, 2.0, False, fps=30.0)
LOGO = F.MediaInfo(200, 100, None, False, image=True)
AUDIO = F.MediaInfo(None, None, 10.0, True, audio_codec="mp3")


def option(args, name):
    return args[args.index(name) + 1]


def graph(args):
    return option(args, "-filter_complex")


# -- validation ------------------------------------------------------------------------------

def test_tasks_as_peertube_sends_them():
    tasks = S.parse_tasks([
        {"name": "cut", "options": {"start": 10, "end": 50}},
        {"name": "cut", "options": {"end": "5.5"}},
        {"name": "cut", "options": {"start": 0}},  # 0 is "from the start", as PeerTube
        {"name": "add-intro", "options": {"file": "http://h/studio/task-files/i.mp4"}},
        {"name": "add-outro", "options": {"file": "http://h/studio/task-files/o.mp4"}},
        {"name": "add-watermark", "options": {"file": "http://h/studio/task-files/w.png",
                                              "watermarkSizeRatio": 0.2,
                                              "horitonzalMarginRatio": 0.03,
                                              "verticalMarginRatio": 0.04}},
        {"name": "add-watermark", "options": {"file": "http://h/w2.png"}}])
    assert tasks[0] == S.Task("cut", start=10.0, end=50.0)
    assert tasks[1] == S.Task("cut", end=5.5)
    assert tasks[2] == S.Task("cut")
    assert tasks[3] == S.Task("add-intro", file="http://h/studio/task-files/i.mp4")
    assert tasks[4].name == "add-outro"
    assert (tasks[5].size_ratio, tasks[5].horizontal_margin, tasks[5].vertical_margin) == \
        (0.2, 0.03, 0.04)
    assert (tasks[6].size_ratio, tasks[6].horizontal_margin) == (0.1, 0.05)  # PeerTube's


def test_the_daemons_own_payload_parses():
    payload = PS.studio_payload("u", "m", (PS.Task("cut", start=1.0, end=2.0),
                                           PS.Task("add-watermark", file="f")), {1: "1-w.png"})
    cut, mark = S.parse_tasks(payload["tasks"])
    assert (cut.start, cut.end) == (1.0, 2.0)
    assert mark.file.endswith("/files/videos/m/studio/task-files/1-w.png")
    assert mark.size_ratio == PS.WATERMARK_SIZE_RATIO


@pytest.mark.parametrize("tasks, message", [
    (None, "the job has no tasks"),
    ([], "the job has no tasks"),
    (["cut"], "tasks[0]: an object with name and options is needed"),
    ([{"name": "cut", "options": {"end": 5}}, {"name": "add-subtitles", "options": {}}],
     "tasks[1]: unknown studio task 'add-subtitles' (known: cut, add-intro, "
     "add-outro, add-watermark)"),
    ([{"name": "cut", "options": []}], "tasks[0].options must be an object"),
    ([{"name": "cut", "options": {"start": 5, "end": 5}}], "the cut ends at 5 s, not after"),
    ([{"name": "cut", "options": {"start": -1}}], "start must be at least 0"),
    ([{"name": "cut", "options": {"end": "soon"}}], "end must be a number, not 'soon'"),
    ([{"name": "cut", "options": {"end": True}}], "end must be a number"),
    ([{"name": "cut", "options": {"end": float("nan")}}], "end must be at least 0"),
    ([{"name": "add-intro", "options": {}}], "add-intro needs options.file"),
    ([{"name": "add-watermark", "options": {"file": "u", "watermarkSizeRatio": 0}}],
     "watermarkSizeRatio must be above 0 and at most 1"),
    ([{"name": "add-watermark", "options": {"file": "u", "verticalMarginRatio": 2}}],
     "verticalMarginRatio must be at least 0 and at most 1"),
])
def test_refused_tasks(tasks, message):
    with pytest.raises(S.StudioError) as caught:
        S.parse_tasks(tasks)
    assert message in str(caught.value)
    assert isinstance(caught.value, F.MediaError)  # reported as is, not as a traceback


# -- probes ----------------------------------------------------------------------------------

def test_probe_reads_the_frame_rate_audio_codec_and_pictures():
    info = F.media_info({"format": {"duration": "3", "format_name": "mov,mp4,m4a,3gp,3g2,mj2"},
                         "streams": [{"codec_type": "video", "width": 640, "height": 360,
                                      "avg_frame_rate": "30000/1001", "r_frame_rate": "30/1"},
                                     {"codec_type": "audio", "codec_name": "aac"}]})
    assert (round(info.fps, 2), info.audio_codec, info.image) == (29.97, "aac", False)
    png = F.media_info({"format": {"format_name": "png_pipe"}, "streams": [
        {"codec_type": "video", "width": 64, "height": 32, "avg_frame_rate": "0/0",
         "r_frame_rate": "25/1"}]})
    assert (png.fps, png.image, png.has_audio, png.audio_codec) == (25.0, True, False, None)
    assert F.media_info({"format": {"format_name": "image2"}, "streams": [
        {"codec_type": "video", "width": 8, "height": 8}]}).image


def test_frame_rate_is_rounded_half_up_as_peertube():
    assert [S.fps_of(F.MediaInfo(2, 2, 1.0, False, fps=f)) for f in (29.97, 12.5, 23.976)] \
        == [30, 13, 24]
    assert S.fps_of(F.MediaInfo(2, 2, 1.0, False)) == S.DEFAULT_FPS


# -- commands --------------------------------------------------------------------------------

def test_cut_seeks_the_input_and_reencodes():
    edit = S.cut_args("in.mp4", "out.mp4", VIDEO, 2.5, 7.25)
    args = edit.args
    assert args[:len(F.GLOBAL_ARGS) + 1] == ["ffmpeg", *F.GLOBAL_ARGS]
    assert args.index("-ss") < args.index("-i") < args.index("-t")  # ffmpeg seeks
    assert (option(args, "-ss"), option(args, "-t")) == ("2.500", "4.750")
    for name, value in (("-vcodec", "libx264"), ("-acodec", "aac"), ("-r", "30"),
                        ("-g", "60"), ("-movflags", "faststart"), ("-map_metadata", "-1")):
        assert option(args, name) == value
    assert "-filter_complex" not in args
    assert edit.duration == pytest.approx(4.75)
    assert args[-2:] == ["out.mp4", "-y"]


def test_cut_bounds():
    only_end = S.cut_args("i", "o", VIDEO, None, 4).args
    assert ("-ss" not in only_end, option(only_end, "-t")) == (True, "4.000")
    only_start = S.cut_args("i", "o", VIDEO, 4, None)
    assert ("-t" not in only_start.args, only_start.duration) == (True, 6.0)
    assert S.cut_args("i", "o", VIDEO, 4, 60).duration == 6.0  # past the end: to the end
    with pytest.raises(S.StudioError, match="after the video's end"):
        S.cut_args("i", "o", VIDEO, 10, None)


def test_cut_of_audio_only_and_with_a_separate_audio_file():
    args = S.cut_args("a.mp3", "o.mp4", AUDIO, 1, 2).args
    assert "-vcodec" not in args and "0:a:0" in args and "0:v:0" not in args
    args = S.cut_args("v.mp4", "o.mp4", SILENT, 1, 2, "a.m4a", AUDIO).args
    assert args.count("-ss") == 2 and args.count("-t") == 1  # both inputs cut alike
    assert "1:a:0" in args and "0:v:0" in args


def test_intro_scaled_padded_to_the_main_video_before_it():
    edit = S.intro_outro_args("main.mp4", "intro.mp4", "out.mp4", VIDEO, CLIP)
    g = graph(edit.args)
    assert "scale=640:360:flags=spline:force_original_aspect_ratio=decrease" in g
    assert "pad=640:360:(ow-iw)/2:(oh-ih)/2:color=black" in g
    assert "fps=30" in g and "setsar=1" in g
    intro, main = edit.args.index("intro.mp4"), edit.args.index("main.mp4")
    i, m = (edit.args[:k].count("-i") - 1 for k in (intro, main))  # input indexes
    # the intro's (filtered) picture and sound, then the main video's
    assert g.split(";")[-1].startswith(
        f"[s3][{i}:a:0][{m}:v:0][{m}:a:0]concat=a=1:n=2:unsafe=1:v=1")
    assert edit.args.count("-map") == 2
    assert edit.duration == 12.0
    assert (option(edit.args, "-r"), option(edit.args, "-acodec")) == ("30", "aac")


def test_outro_after_it():
    edit = S.intro_outro_args("main.mp4", "outro.mp4", "out.mp4", VIDEO, CLIP, outro=True)
    last = graph(edit.args).split(";")[-1]
    assert last.index("v:0]") < last.index("[s3]")  # the main video first


def test_a_silent_side_gets_silence_as_long_as_itself():
    edit = S.intro_outro_args("m", "c", "o", VIDEO, SILENT_CLIP)
    assert option(edit.args, "-t") == "2.000" and S.SILENCE in edit.args
    assert option(edit.args, "-f") == "lavfi"
    edit = S.intro_outro_args("m", "c", "o", SILENT, CLIP, outro=True)  # the clip's sound kept
    assert option(edit.args, "-t") == "10.000"
    assert "concat=a=1" in graph(edit.args)
    edit = S.intro_outro_args("m", "c", "o", SILENT, SILENT_CLIP)  # no sound at all
    assert S.SILENCE not in edit.args and "-acodec" not in edit.args
    assert "concat=a=0:n=2" in graph(edit.args) and edit.args.count("-map") == 1


def test_intro_refusals():
    with pytest.raises(S.StudioError, match="still picture"):
        S.intro_outro_args("m", "c.png", "o", VIDEO, LOGO)
    with pytest.raises(S.StudioError, match="the file has no video"):
        S.intro_outro_args("m", "c", "o", VIDEO, AUDIO, outro=True)
    with pytest.raises(S.StudioError, match="add-intro: the video has no video stream"):
        S.intro_outro_args("m", "c", "o", AUDIO, CLIP)


def test_watermark_top_right_sized_on_the_height():
    task = S.Task("add-watermark", file="u", size_ratio=0.1, horizontal_margin=0.02,
                  vertical_margin=0.03)
    edit = S.watermark_args("main.mp4", "logo.png", "out.mp4", VIDEO, LOGO, task)
    g = graph(edit.args)
    assert "scale=72:36" in g  # 360 * 0.1 = 36 high, 2:1 as the logo
    assert "overlay=eof_action=repeat:x=main_w-overlay_w-(main_h*0.02):y=main_h*0.03" in g
    assert option(edit.args, "-acodec") == "copy"  # AAC: copied, as PeerTube
    assert option(edit.args, "-vcodec") == "libx264" and edit.duration == 10.0
    assert S.watermark_size(F.MediaInfo(1920, 1080, 1, False), F.MediaInfo(500, 333, 1, False),
                            0.1) == (162, 108)


def test_watermark_audio_encoded_unless_aac_and_refusals():
    mp3 = F.MediaInfo(640, 360, 10.0, True, fps=25.0, audio_codec="mp3")
    assert option(S.watermark_args("m", "l", "o", mp3, LOGO).args, "-acodec") == "aac"
    assert "-acodec" not in S.watermark_args("m", "l", "o", SILENT, LOGO).args
    with pytest.raises(S.StudioError, match="not a picture"):
        S.watermark_args("m", "l", "o", VIDEO, AUDIO)
    with pytest.raises(S.StudioError, match="no video stream"):
        S.watermark_args("m", "l", "o", AUDIO, LOGO)


def test_edit_args_dispatches():
    cut = S.edit_args(S.Task("cut", end=3.0), "m", "o", VIDEO)
    assert option(cut.args, "-t") == "3.000"
    outro = S.edit_args(S.Task("add-outro", file="u"), "m", "o", VIDEO, "c", CLIP)
    assert "concat" in graph(outro.args)
    with pytest.raises(S.StudioError, match="unknown studio task 'x'"):
        S.edit_args(S.Task("x"), "m", "o", VIDEO)


def test_a_result_waits_for_the_update_in_flight():
    """A studio task refused at once fails the job while the start's update is on its way:
    the server would refuse whichever of the two loses the race."""
    clock, answers = Clock(), []

    def send(progress):
        answers.append(defer.Deferred())
        return answers[-1]
    reporter = runner_jobs.ProgressReporter(clock, send, lambda problem: None)
    reporter.start()
    finished = defer.ensureDeferred(reporter.finish())
    assert not finished.called
    reporter.set(50)  # stopped: queued no more
    answers[0].callback(None)
    assert finished.called and len(answers) == 1
    clock.advance(120)
    assert len(answers) == 1
    assert defer.ensureDeferred(reporter.finish()).called  # nothing in flight: at once


def test_each_task_reports_its_share_of_the_progress(monkeypatch):
    reports = []

    async def fake_run(reactor, args, on_stdout):
        for data in (b"out_time_us=N/A\n", b"out_time_us=5000000\n", b"progress=end\n"):
            on_stdout(data)
    monkeypatch.setattr(runner_jobs, "run", fake_run)
    work = runner_jobs.Work(None, None, reports.append, "/nonexistent")
    defer.ensureDeferred(work.ffmpeg(["ffmpeg"], 10.0, share=(2, 4)))
    assert reports == [50, 62, 75]  # the third of four steps: 50..75 %
    reports.clear()
    defer.ensureDeferred(work.ffmpeg(["ffmpeg"], None))  # unknown duration, one step
    assert reports == [None, None, 100]


# -- the handler's ffmpeg work, for real -----------------------------------------------------

_MEDIA = {}


def _media_dir() -> str:
    if "" not in _MEDIA:
        _MEDIA[""] = tempfile.mkdtemp(prefix="choir-studio-test-")
        atexit.register(shutil.rmtree, _MEDIA[""], True)
    return _MEDIA[""]


def probe(path) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of",
                          "json", path], capture_output=True, check=True).stdout
    found = json.loads(out)
    kinds = {s["codec_type"]: s for s in found["streams"]}
    return {"duration": float(found["format"]["duration"]), "video": kinds.get("video"),
            "audio": kinds.get("audio")}


def media(name) -> str:
    """Small generated inputs, made once per test run."""
    if name in _MEDIA:
        return _MEDIA[name]
    path = os.path.join(_media_dir(), name)
    x264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    if name == "main.mp4":  # 3 s, 320x240 at 25 fps, AAC
        ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-f", "lavfi", "-i",
               "sine=frequency=440:sample_rate=48000", "-t", "3", *x264, "-c:a", "aac", path)
    elif name == "black.mp4":  # 2 s of black, no audio: to find the watermark on
        ffmpeg("-f", "lavfi", "-i", "color=c=black:size=320x240:rate=25", "-t", "2", *x264,
               path)
    elif name == "cover.png":
        ffmpeg("-f", "lavfi", "-i", "testsrc2=size=640x360", "-frames:v", "1", path)
    elif name == "still.mp4":  # a recording: a cover image + 2.5 s of audio, as audio merge
        ffmpeg("-loop", "1", "-i", media("cover.png"), "-f", "lavfi", "-i",
               "sine=frequency=330:sample_rate=48000", "-t", "2.5", "-r", "25", *x264,
               "-tune", "stillimage", "-c:a", "aac", "-shortest", path)
    elif name == "intro.mp4":  # 1 s, square, 30 fps, mono 44.1 kHz: all unlike the main
        ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x160:rate=30", "-f", "lavfi", "-i",
               "sine=frequency=880:sample_rate=44100", "-t", "1", *x264, "-c:a", "aac",
               "-ac", "1", path)
    elif name == "silent-outro.mp4":  # 1.5 s, no audio
        ffmpeg("-f", "lavfi", "-i", "smptebars=size=400x200:rate=24", "-t", "1.5", *x264, path)
    elif name == "tone.m4a":  # 3 s: a separated audio file
        ffmpeg("-f", "lavfi", "-i", "sine=frequency=550:sample_rate=48000", "-t", "3",
               "-c:a", "aac", path)
    elif name == "logo.png":  # 64x32, red
        ffmpeg("-f", "lavfi", "-i", "color=c=red:size=64x32,format=rgba", "-frames:v", "1",
               path)
    else:
        raise KeyError(name)
    _MEDIA[name] = path
    return path


def pixel(path, x, y, at=1.0):
    """The (r, g, b) at (x, y) of the frame at ``at`` s."""
    info = probe(path)["video"]
    width = info["width"]
    out = subprocess.run(["ffmpeg", "-v", "error", "-ss", str(at), "-i", path, "-frames:v",
                          "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         capture_output=True, check=True).stdout
    i = (y * width + x) * 3
    return tuple(out[i:i + 3])


def url(name):
    return f"http://server/api/v1/runners/jobs/u/files/videos/m/studio/task-files/{name}"


class Near:
    def assertNear(self, found, expected, delta):
        self.assertLessEqual(abs(found - expected), delta, f"{found} is not {expected} ± {delta}")


class StudioHandlerTest(Near, unittest.TestCase):
    """runner_jobs.studio with a fetch that copies the generated files (no server)."""

    timeout = 60

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="choir-studio-job-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.progress, self.fetched = [], []

    async def edit(self, tasks, main="main.mp4", audio=None):
        async def fetch(address, path):
            self.fetched.append(address)
            shutil.copyfile(media(address.rsplit("/", 1)[-1]), path)
            return os.path.getsize(path)
        work = runner_jobs.Work(reactor, fetch, self.progress.append, self.dir)
        payload = {"input": {"videoFileUrl": f"http://server/x/{main}",
                             "separatedAudioFileUrl": [f"http://server/x/{audio}"] if audio
                             else []}, "tasks": tasks}
        files = await runner_jobs.studio(work, payload)
        self.assertEqual(list(files), ["payload[videoFile]"])
        # one video on disk at the end: the inputs and steps before were removed
        self.assertEqual(os.listdir(self.dir), [os.path.basename(files["payload[videoFile]"])])
        return probe(files["payload[videoFile]"]), files["payload[videoFile]"]

    async def test_cut(self):
        out, _ = await self.edit([{"name": "cut", "options": {"start": 0.5, "end": 2.0}}])
        self.assertNear(out["duration"], 1.5, delta=0.1)
        self.assertEqual((out["video"]["width"], out["video"]["height"]), (320, 240))
        self.assertEqual(out["video"]["r_frame_rate"], "25/1")
        self.assertEqual(out["audio"]["codec_name"], "aac")
        self.assertEqual(self.progress[-1], 100)

    async def test_intro_and_silent_outro_keep_the_main_size(self):
        out, _ = await self.edit([
            {"name": "add-intro", "options": {"file": url("intro.mp4")}},
            {"name": "add-outro", "options": {"file": url("silent-outro.mp4")}}])
        self.assertNear(out["duration"], 3 + 1 + 1.5, delta=0.1)
        self.assertEqual((out["video"]["width"], out["video"]["height"]), (320, 240))
        self.assertEqual(out["video"]["r_frame_rate"], "25/1")
        self.assertNear(float(out["audio"]["duration"]), 5.5, delta=0.1)
        self.assertEqual(self.fetched[1:], [url("intro.mp4"), url("silent-outro.mp4")])
        # two tasks: the first one's progress is reported as the first half
        self.assertTrue(any(0 < p <= 50 for p in self.progress if p is not None))
        self.assertEqual(self.progress[-1], 100)
        self.assertEqual(self.progress, sorted(self.progress))

    async def test_watermark_in_the_top_right_corner(self):
        out, path = await self.edit([
            {"name": "add-watermark", "options": {"file": url("logo.png"),
                                                  "watermarkSizeRatio": 0.1,
                                                  "horitonzalMarginRatio": 0.05,
                                                  "verticalMarginRatio": 0.05}}],
            main="black.mp4")
        self.assertNear(out["duration"], 2.0, delta=0.1)
        self.assertEqual((out["video"]["width"], out["video"]["height"]), (320, 240))
        self.assertIsNone(out["audio"])
        # 24 high, 48 wide, 12 from the top, 12 from the right: x 260..307, y 12..35
        r, g, b = pixel(path, 284, 24)
        self.assertTrue(r > 150 and g < 80 and b < 80, (r, g, b))
        for x, y in ((284, 4), (314, 24), (250, 24), (284, 44), (40, 24), (160, 200)):
            self.assertLess(max(pixel(path, x, y)), 40, (x, y))

    async def test_every_task_on_a_still_picture_recording(self):
        out, _ = await self.edit([
            {"name": "cut", "options": {"start": 0.5}},
            {"name": "add-intro", "options": {"file": url("intro.mp4")}},
            {"name": "add-outro", "options": {"file": url("silent-outro.mp4")}},
            {"name": "add-watermark", "options": {"file": url("logo.png"),
                                                  "watermarkSizeRatio": 0.1,
                                                  "horitonzalMarginRatio": 0.02,
                                                  "verticalMarginRatio": 0.02}}],
            main="still.mp4")
        length = probe(media("still.mp4"))["duration"]  # 2.5 s (and a frame)
        self.assertNear(out["duration"], length - 0.5 + 1 + 1.5, delta=0.1)
        self.assertEqual((out["video"]["width"], out["video"]["height"]), (640, 360))
        self.assertEqual(out["audio"]["codec_name"], "aac")
        self.assertEqual(self.progress[-1], 100)

    async def test_a_silent_main_video_keeps_the_intros_sound(self):
        out, _ = await self.edit([{"name": "add-intro", "options": {"file": url("intro.mp4")}}],
                                 main="black.mp4")
        self.assertNear(out["duration"], 3.0, delta=0.1)
        self.assertNear(float(out["audio"]["duration"]), 3.0, delta=0.1)

    async def test_a_separated_audio_file_joins_the_first_task(self):
        out, _ = await self.edit([{"name": "cut", "options": {"end": 1.5}},
                                  {"name": "add-outro", "options": {"file": url("intro.mp4")}}],
                                 main="black.mp4", audio="tone.m4a")
        self.assertNear(out["duration"], 2.5, delta=0.1)
        self.assertNear(float(out["audio"]["duration"]), 2.5, delta=0.1)

    async def test_refusals_before_any_download(self):
        with self.assertRaises(S.StudioError):
            await self.edit([{"name": "cut", "options": {"end": 1}},
                             {"name": "add-subtitles", "options": {}}])
        self.assertEqual(self.fetched, [])
        with self.assertRaises(S.StudioError) as caught:
            await self.edit([{"name": "add-intro", "options": {"file": url("logo.png")}}])
        self.assertIn("still picture", str(caught.exception))


# -- through the daemon ----------------------------------------------------------------------

class StudioJobTest(Near, RunnerFixture, unittest.TestCase):
    timeout = 90

    async def studio_job(self, tasks, task_files, raw_tasks=None):
        """A studio job made directly in the store, as the daemon's edit would, on main.mp4;
        ``task_files``: {task index: (name, path)}, served at .../studio/task-files/<name>."""
        media_row = await self.store.create_media("upload", "song")
        uuid = str(uuidlib.uuid4())
        payload = PS.studio_payload(uuid, media_row.id, tasks,
                                    {i: name for i, (name, _) in task_files.items()})
        if raw_tasks is not None:
            payload["tasks"] = raw_tasks
        await self.store.create_job(
            JobType.STUDIO, payload, media_id=media_row.id, uuid=uuid,
            private_payload={"inputs": {"max-quality": media("main.mp4"),
                                        "task-files": dict(task_files.values())},
                             "output": {"resolution": 240}})
        self.service.hub.notify_available_jobs()
        return uuid, media_row.id

    async def test_edit_served_and_uploaded(self):
        await self.start_daemon()
        await self.register()
        runner = self.start_runner()
        tasks = (PS.Task("add-intro", file="i"), PS.Task("cut", start=0.5, end=2.5),
                 PS.Task("add-watermark", file="w"))
        uuid, media_id = await self.studio_job(tasks, {
            0: ("0-add-intro.mp4", media("intro.mp4")),
            2: ("2-add-watermark.png", media("logo.png"))})
        outcome, job = await self.finished(runner, uuid)
        self.assertEqual((outcome, job.state, job.failures), ("completed", JobState.COMPLETED, 0))
        path = job.private_payload["result"]["files"]["videoFile"]
        out = probe(path)
        # intro (1 s) + main (3 s), then 0.5..2.5 s of that kept
        self.assertNear(out["duration"], 2.0, delta=0.1)
        self.assertEqual((out["video"]["width"], out["video"]["height"]), (320, 240))
        self.assertEqual(out["audio"]["codec_name"], "aac")
        self.assertEqual(list((await self.outputs(media_id)).values()), [path])
        self.assertEqual(os.listdir(runner.work_dir), [])

    async def test_a_job_with_an_unknown_task_is_left_for_another_runner(self):
        """As PeerTube's runner does: a studio job it cannot do is not accepted at all (no
        failure counted), and the jobs after it are taken."""
        await self.start_daemon()
        await self.register()
        bad, _ = await self.studio_job((), {}, raw_tasks=[
            {"name": "cut", "options": {"end": 1}},
            {"name": "add-subtitles", "options": {"file": "x"}}])
        good, _ = await self.studio_job((PS.Task("cut", end=1.0),), {})
        runner = self.start_runner(stop_after_one=True)
        outcome, job = await self.finished(runner, good)
        self.assertEqual(outcome, "completed")
        self.assertEqual([u for u, _ in runner.outcomes], [good])
        job = await self.store.get_job(bad)
        self.assertEqual((job.state, job.failures, job.runner_id), (JobState.PENDING, 0, None))
