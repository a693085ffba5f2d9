"""A real rehearsal published as video, all real processes: ``twistd -n choir`` records a
session of simulated singers, publishes it (audio merge + HLS), a ``choir-runner server``
transcodes it, and the MP4 and the HLS rendition served over HTTP are probed and listened
to: the mix, at lag 0."""
import json
import os
import subprocess
import sys

from ffmpeg import probe as ffprobe
import numpy as np
import soundfile
from twisted.internet import endpoints, reactor, task, threads
from twisted.trial import unittest
from twisted.web import client

from choir_clients.demo.simulated import SimulatedDirector
from choir_protocol.rehearsal.constants import SAMPLE_RATE

from ..support.audio_reference import best_lag, broadband_track
from ..support.daemon_process import TwistdDaemon
from ..support.paths import temp_dir
from ..support.programs import RUNNER_COMMAND
from ..support.sessions import EIGHT_SINGERS, connect_singers


def decode_audio(path_or_url):
    """Any media's audio as 44.1 kHz mono float32 (ffmpeg)."""
    out = subprocess.run(["ffmpeg", "-v", "error", "-i", path_or_url, "-vn", "-ac", "1", "-ar",
                          str(SAMPLE_RATE), "-f", "f32le", "-"], capture_output=True, check=True)
    return np.frombuffer(out.stdout, np.float32)


def correlation(a, b):
    n = min(len(a), len(b))
    a, b = a[:n] - a[:n].mean(), b[:n] - b[:n].mean()
    return float(np.dot(a, b) / np.sqrt(np.dot(a, a) * np.dot(b, b)))


class RehearsalToVideoTest(unittest.TestCase):
    timeout = 240

    def setUp(self):
        self.tmp = temp_dir(self)
        self.data_dir = os.path.join(self.tmp, "data")
        self.env = {**os.environ, "CHOIR_CONFIG_DIR": os.path.join(self.tmp, "config")}

    def admin(self, *args):
        p = subprocess.run([sys.executable, "-m", "choir_clients.admin.admin", "--data-dir",
                            self.data_dir, "--json", *args], capture_output=True, text=True,
                           timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        return json.loads(p.stdout)

    async def get(self, url):
        response = await client.Agent(reactor).request(b"GET", url.encode())
        return response.code, await client.readBody(response)

    async def test_a_recorded_session_becomes_a_playable_mp4_and_hls(self):
        os.makedirs(self.data_dir)
        daemon = TwistdDaemon(self.data_dir, os.path.join(self.tmp, "choir.log"),
                              "--resolutions", "240,480", "--choir-name", "Test Choir")
        self.addCleanup(daemon.stop)
        base = f"http://127.0.0.1:{daemon.ports['http']}"

        # the rehearsal: three singers 0-50 ms away, a 4 s track
        await connect_singers(self, daemon, EIGHT_SINGERS[:3])
        track = broadband_track(4.0)
        director = SimulatedDirector(track)
        await endpoints.connectProtocol(daemon.endpoint("director"), director)
        await director.done
        self.assertFalse(director.refused)

        # a runner registers and serves
        token = self.admin("tokens", "create", "--url", base)["token"]
        register = await threads.deferToThread(
            subprocess.run, [*RUNNER_COMMAND, "register", "--url", base, "--registration-token",
                             token, "--runner-name", "e2e"], env=self.env, capture_output=True,
            text=True, timeout=60)
        self.assertEqual(register.returncode, 0, register.stderr)
        log = open(os.path.join(self.tmp, "runner.log"), "wb")
        self.addCleanup(log.close)
        runner = subprocess.Popen([*RUNNER_COMMAND, "server", "--concurrency", "2"], env=self.env,
                                  stdout=log, stderr=subprocess.STDOUT)
        self.addCleanup(lambda: runner.poll() is None and (runner.terminate(), runner.wait(30)))

        # the session is published and every job ends
        api = self.admin("api-tokens", "create")["token"]
        media = {}

        async def ended():
            listing = await client.Agent(reactor).request(
                b"GET", f"{base}/api/v1/media".encode(),
                client.Headers({b"authorization": [f"Bearer {api}".encode()]}))
            data = json.loads(await client.readBody(listing))["data"]
            if data and data[0]["state"] not in ("processing", "none"):
                media.update(data[0])
                return True
            return False
        for _ in range(1800):  # 3 minutes at most
            if await ended():
                break
            await task.deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(media.get("state"), "completed", media)
        self.assertTrue(media["name"].startswith("Test Choir, "))
        self.assertEqual(sorted((j["type"], j["resolution"]) for j in media["jobs"]), [
            ("vod-audio-merge-transcoding", 480), ("vod-hls-transcoding", 240),
            ("vod-hls-transcoding", 480)])

        # the MP4: H.264 854x480 at 25 fps with AAC, as long as the mix, and it is the mix
        session = os.listdir(os.path.join(self.data_dir, "sessions"))[0]
        mix, rate = soundfile.read(os.path.join(self.data_dir, "sessions", session, "mix.flac"),
                                   dtype="float32")
        self.assertEqual(rate, SAMPLE_RATE)
        mp4 = os.path.join(self.tmp, "rehearsal.mp4")
        code, body = await self.get(base + next(f["url"] for f in media["outputs"]
                                                if f["name"] == "480p.mp4"))
        self.assertEqual(code, 200)
        with open(mp4, "wb") as f:
            f.write(body)
        info = await threads.deferToThread(ffprobe, mp4)
        video = next(s for s in info["streams"] if s["codec_type"] == "video")
        audio = next(s for s in info["streams"] if s["codec_type"] == "audio")
        self.assertEqual((video["codec_name"], video["width"], video["height"]),
                         ("h264", 854, 480))
        self.assertEqual(video["avg_frame_rate"], "25/1")
        self.assertEqual(audio["codec_name"], "aac")
        self.assertLess(abs(float(info["format"]["duration"]) - len(mix) / SAMPLE_RATE), 0.2)
        heard = await threads.deferToThread(decode_audio, mp4)
        self.assertEqual(best_lag(mix, heard[:len(mix)]), 0)
        self.assertGreater(correlation(mix, heard), 0.95)

        # the HLS rendition, as a player gets it: master playlist -> 480p -> fragmented MP4
        hls = await threads.deferToThread(decode_audio, base + media["hlsUrl"])
        # ffmpeg's fragmented-MP4 HLS has no edit list: AAC's 1024 priming samples play
        # (23 ms; PeerTube's HLS is the same). The MP4 above is sample-exact.
        lag = best_lag(mix, hls[:len(mix)])
        self.assertIn(lag, (0, 1024))
        self.assertGreater(correlation(mix, hls[lag:]), 0.95)
        code, master = await self.get(base + media["hlsUrl"])
        self.assertEqual([line for line in master.decode().splitlines()
                          if not line.startswith("#")], ["480p.m3u8", "240p.m3u8"])
        runner.terminate()
        self.assertEqual(await threads.deferToThread(runner.wait, 30), 0)
