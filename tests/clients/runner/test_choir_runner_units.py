"""choir-runner's pure parts: probe reading, sizes, ffmpeg command lines, -progress
parsing, URLs, the progress reporter's timing (on a fake clock), option parsing."""
import io

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial import unittest

from choir_clients.runner import ffmpeg_commands as F
from choir_clients.runner import runner as R
from choir_clients.runner.api import ServerProblem, file_url
from choir_clients.runner.jobs import ProgressReporter

HD = F.MediaInfo(1920, 1080, 60.0, True)


class SizeTest(unittest.TestCase):
    def test_the_smaller_side_is_the_resolution(self):
        self.assertEqual(F.scaled_size(1920, 1080, 360), (640, 360))
        self.assertEqual(F.scaled_size(1080, 1920, 360), (360, 640))  # portrait
        self.assertEqual(F.scaled_size(1000, 1000, 720), (720, 720))
        self.assertEqual(F.scaled_size(1920, 1080, 480), (854, 480))  # 853.3 -> even
        self.assertEqual(F.scaled_size(1440, 1080, 240), (320, 240))
        self.assertEqual(F.scaled_size(720, 1280, 1080), (1080, 1920))  # asked: upscale

    def test_dimensions_are_even(self):
        for width, height in ((1917, 1083), (333, 999), (1001, 563)):
            for resolution in (144, 240, 360, 481):
                self.assertEqual([n % 2 for n in F.scaled_size(width, height, resolution)],
                                 [0, 0])

    def test_nonsense_is_refused(self):
        self.assertRaises(F.MediaError, F.scaled_size, 0, 1080, 360)
        self.assertRaises(F.MediaError, F.scaled_size, 1920, 1080, 0)


class ProbeTest(unittest.TestCase):
    def test_video_with_audio(self):
        info = F.media_info({"format": {"duration": "12.5"}, "streams": [
            {"codec_type": "video", "width": 1280, "height": 720},
            {"codec_type": "audio"}]})
        self.assertEqual(info, F.MediaInfo(1280, 720, 12.5, True))
        self.assertTrue(info.has_video)

    def test_rotated_phone_video_is_portrait(self):
        info = F.media_info({"format": {"duration": "3"}, "streams": [
            {"codec_type": "video", "width": 1920, "height": 1080,
             "side_data_list": [{"rotation": -90}]}]})
        self.assertEqual((info.width, info.height), (1080, 1920))

    def test_cover_art_is_not_video_and_duration_falls_back_to_streams(self):
        info = F.media_info({"format": {"duration": "N/A"}, "streams": [
            {"codec_type": "audio", "duration": "4.2"},
            {"codec_type": "video", "width": 600, "height": 600,
             "disposition": {"attached_pic": 1}}]})
        self.assertEqual(info, F.MediaInfo(None, None, 4.2, True))
        self.assertFalse(info.has_video)

    def test_garbage(self):
        self.assertRaises(F.MediaError, F.parse_probe, b"not json")


def option(args, name):
    return args[args.index(name) + 1]


class CommandTest(unittest.TestCase):
    def test_web_video(self):
        args = F.web_video_args("in.mkv", "out.mp4", HD, 360, 25)
        self.assertEqual(args[:len(F.GLOBAL_ARGS) + 1], ["ffmpeg", *F.GLOBAL_ARGS])
        self.assertIn("scale=640:360", option(args, "-filter_complex"))
        self.assertIn("fps=25", option(args, "-filter_complex"))
        for name, value in (("-vcodec", "libx264"), ("-acodec", "aac"), ("-f", "mp4"),
                            ("-movflags", "faststart"), ("-pix_fmt", "yuv420p"), ("-r", "25"),
                            ("-g", "50")):
            self.assertEqual(option(args, name), value)
        self.assertEqual(args[-2:], ["out.mp4", "-y"])
        self.assertEqual(args.count("-map"), 2)

    def test_web_video_without_audio_and_with_a_separate_audio_file(self):
        silent = F.MediaInfo(1280, 720, 5.0, False)
        self.assertEqual(F.web_video_args("v", "o.mp4", silent, 720, 30).count("-map"), 1)
        args = F.web_video_args("v", "o.mp4", silent, 720, 30, audio_path="a.m4a",
                                audio_info=F.MediaInfo(None, None, 5.0, True))
        self.assertEqual(args.count("-i"), 2)
        self.assertIn("1:a", args)

    def test_no_video_stream(self):
        self.assertRaises(F.MediaError, F.web_video_args, "a.flac", "o.mp4",
                          F.MediaInfo(None, None, 5.0, True), 720, 30)

    def test_hls_single_fragmented_mp4(self):
        args = F.hls_args("in.mp4", "/t/x-720.m3u8", "/t/x-720-fragmented.mp4", HD, 720, 30)
        for name, value in (("-f", "hls"), ("-hls_segment_type", "fmp4"),
                            ("-hls_flags", "single_file"), ("-hls_playlist_type", "vod"),
                            ("-hls_segment_filename", "/t/x-720-fragmented.mp4"),
                            ("-hls_list_size", "0")):
            self.assertEqual(option(args, name), value)
        self.assertEqual(args[-2], "/t/x-720.m3u8")
        self.assertIn("0:a", args)
        video_only = F.hls_args("in.mp4", "/t/p.m3u8", "/t/f.mp4", HD, 720, 30,
                                separated_audio=True)
        self.assertNotIn("0:a", video_only)
        audio_only = F.hls_args("in.mp4", "/t/p.m3u8", "/t/f.mp4", HD, 0, 30,
                                separated_audio=True)
        self.assertNotIn("-filter_complex", audio_only)
        self.assertIn("0:a", audio_only)

    def test_hls_playlist_names_the_video_by_basename(self):
        text = '#EXT-X-MAP:URI="/tmp/j/x-fragmented.mp4",BYTERANGE="1@0"\nx-fragmented.mp4\n'
        self.assertEqual(F.fix_hls_playlist(text, "/tmp/j/x-fragmented.mp4"),
                         '#EXT-X-MAP:URI="x-fragmented.mp4",BYTERANGE="1@0"\nx-fragmented.mp4\n')
        self.assertEqual(F.hls_names(480, "s"), ("s-480.m3u8", "s-480-fragmented.mp4"))

    def test_audio_merge_decodes_the_cover_once(self):
        merge = F.audio_merge_args("a.flac", "c.png", "o.mp4",
                                   F.MediaInfo(1920, 1080, None, False),
                                   F.MediaInfo(None, None, 61.25, True), 720, 25)
        args = merge.video
        graph = option(args, "-filter_complex")
        self.assertIn("scale=1280:720", graph)
        self.assertLess(graph.index("scale"), graph.index("loop=loop=-1:size=1"))
        self.assertNotIn("-loop", args)  # no image-input loop: that would decode every frame
        for name, value in (("-tune", "stillimage"), ("-preset", "veryfast"), ("-t", "61.250"),
                            ("-r", "25")):
            self.assertEqual(option(args, name), value)
        self.assertNotIn("a.flac", args)  # the audio is encoded apart, at the same time
        self.assertIn("a.flac", merge.audio)
        self.assertEqual(option(merge.audio, "-t"), "61.250")
        self.assertEqual((option(merge.mux, "-c"), option(merge.mux, "-movflags")),
                         ("copy", "faststart"))
        self.assertIn("o.mp4", merge.mux)

    def test_audio_merge_refuses_wrong_inputs(self):
        image, audio = F.MediaInfo(800, 600, None, False), F.MediaInfo(None, None, 3.0, True)
        self.assertRaises(F.MediaError, F.audio_merge_args, "a", "c", "o", audio, audio, 720, 25)
        self.assertRaises(F.MediaError, F.audio_merge_args, "a", "c", "o", image, image, 720, 25)


class ProgressParserTest(unittest.TestCase):
    def test_progress_from_out_time_in_pieces(self):
        parser = F.ProgressParser(20.0)
        parser.feed(b"frame=1\nout_time_us=N/A\nprogress=continue\nout_time_")
        self.assertEqual(parser.percent, 0)
        parser.feed(b"us=5000000\nout_time_ms=5000000\nprogress=conti")
        self.assertEqual(parser.percent, 25)
        parser.feed(b"nue\nout_time_us=19999000\n")
        self.assertEqual(parser.percent, 99)  # 100 only once ffmpeg says it ended
        parser.feed(b"out_time_us=25000000\n")
        self.assertEqual(parser.percent, 99)
        parser.feed(b"progress=end\n")
        self.assertEqual(parser.percent, 100)

    def test_unknown_duration(self):
        parser = F.ProgressParser(None)
        parser.feed(b"out_time_us=5000000\n")
        self.assertIsNone(parser.percent)
        self.assertEqual(parser.out_time, 5.0)


class URLTest(unittest.TestCase):
    def test_paths_resolve_against_the_server_and_queries_drop(self):
        self.assertEqual(file_url("http://h:8000", "/api/v1/runners/jobs/u/files/videos/1/max-quality"),
                         "http://h:8000/api/v1/runners/jobs/u/files/videos/1/max-quality")
        self.assertEqual(file_url("http://h:8000/", "https://pt.example/api/x?videoFileToken=t"),
                         "https://pt.example/api/x")


class ReporterTest(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.sent, self.lost = [], []
        self.answers = []

        def send(progress):
            self.sent.append((self.clock.seconds(), progress))
            d = defer.Deferred()
            self.answers.append(d)
            return d
        self.reporter = ProgressReporter(self.clock, send, self.lost.append, every=3.0,
                                         heartbeat=60.0)

    def answer(self, result=None):
        d = self.answers.pop(0)
        d.errback(result) if isinstance(result, Exception) else d.callback(None)

    def test_throttled_with_a_heartbeat(self):
        self.reporter.start()
        self.assertEqual(self.sent, [(0, None)])  # at once: the job has started
        self.answer()
        self.clock.advance(1)
        self.reporter.set(10)  # 1 s after the last call: wait
        self.assertEqual(len(self.sent), 1)
        self.clock.advance(2.5)
        self.reporter.set(12)
        self.assertEqual(self.sent[-1], (3.5, 12))
        self.answer()
        self.reporter.set(12)  # no change: nothing
        self.clock.advance(56)
        self.assertEqual(len(self.sent), 2)
        self.clock.advance(0.5)  # 60 s after the start: the heartbeat repeats the progress
        self.assertEqual(self.sent[-1], (60, 12))
        self.answer()
        self.reporter.stop()
        self.clock.advance(120)
        self.assertEqual(len(self.sent), 3)

    def test_one_call_at_a_time(self):
        self.reporter.start()
        self.clock.advance(5)
        self.reporter.set(50)  # the first call is still unanswered: queued
        self.assertEqual(len(self.sent), 1)
        self.answer()
        self.assertEqual(self.sent[-1], (5, 50))
        self.answer()
        self.reporter.stop()

    def test_the_server_took_the_job_back(self):
        self.reporter.start()
        self.answer(ServerProblem(400, "runner_job_not_in_processing_state", "not processing"))
        self.assertEqual([p.code for p in self.lost], ["runner_job_not_in_processing_state"])
        self.reporter.stop()


class OptionsTest(unittest.TestCase):
    def parse(self, *argv):
        err = io.StringIO()
        try:
            return R.parse_options(R.Options(), list(argv), "choir-runner", err), err.getvalue()
        except SystemExit as e:
            return e.code, err.getvalue()

    def test_server_defaults(self):
        options, _ = self.parse("server")
        self.assertEqual(options.subOptions["concurrency"], 2)
        self.assertEqual(options.subOptions["job-types"], list(R.runner_jobs.SUPPORTED))

    def test_server_choices(self):
        options, _ = self.parse("server", "--concurrency", "3", "--job-types",
                                "vod-hls-transcoding, vod-audio-merge-transcoding")
        self.assertEqual(options.subOptions["job-types"],
                         ["vod-hls-transcoding", "vod-audio-merge-transcoding"])
        self.assertEqual(self.parse("server", "--concurrency", "0")[0], 2)
        code, err = self.parse("server", "--job-types", "live-rtmp-hls-transcoding")
        self.assertEqual(code, 2)
        self.assertIn("unsupported job type(s) live-rtmp-hls-transcoding", err)

    def test_register_needs_its_options(self):
        code, err = self.parse("register", "--url", "http://h:8000", "--runner-name", "r")
        self.assertEqual(code, 2)
        self.assertIn("missing --registration-token", err)
        self.assertEqual(self.parse("register", "--url", "h:8000", "--runner-name", "r",
                                    "--registration-token", "t")[0], 2)
        options, _ = self.parse("register", "--url", "http://h:8000/", "--runner-name", "r",
                                "--registration-token", "t")
        self.assertEqual(options.subOptions["url"], "http://h:8000")
