"""End-to-end sessions over loopback TCP: simulated singers, twistd, online-choir 1.1.3."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

import numpy as np
import soundfile
from twisted.internet import defer, endpoints, threads
from twisted.trial import unittest

from choir_protocol.rehearsal.constants import FRAMES_PER_CHUNK, SAMPLE_RATE

from ...support.audio_reference import best_lag, broadband_track, heard_and_sung, mono, snr_db
from ...support.daemon_process import VENV_BIN, InProcessDaemon, TwistdDaemon, until
from ...support.jack import start_jack_dummy
from ...support.paths import ROOT
from ...support.sessions import EIGHT_SINGERS, connect_singers
from ...support.simulated import SimulatedDirector


async def until_joined(room, count):
    """The room has ``count`` singers (their headers have been read)."""
    await until(lambda: len(room.singers) >= count, what=f"{count} singers to join")


class EightSingersTest(unittest.TestCase):
    timeout = 60

    def setUp(self):
        self.data_dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.data_dir)

    async def test_mix_is_the_track_at_lag_zero(self):
        """8 singers, 0-500 ms delays with jitter, compensated device latencies: the mix is
        the track at lag 0, and only ADPCM limits its SNR."""
        daemon = InProcessDaemon(self.data_dir)
        self.addCleanup(lambda: defer.ensureDeferred(daemon.stop()))
        singers = await connect_singers(self, daemon, EIGHT_SINGERS)
        await until_joined(daemon.room, len(singers))
        track = broadband_track(4.0)
        director = SimulatedDirector(track)
        await endpoints.connectProtocol(daemon.endpoint("director"), director)
        await director.done

        chunks = len(track) // FRAMES_PER_CHUNK
        self.assertFalse(director.refused)
        self.assertEqual(len(director.mix), chunks)
        mix = director.mix_signal
        expected = heard_and_sung(track)  # what a perfect daemon returns (both ADPCM stages)
        self.assertEqual(best_lag(mono(track), mix), 0)
        # Every singer sent the same bytes, so the mean of eight is exact up to rounding.
        self.assertLessEqual(int(np.abs(mix.astype(np.int32) - expected).max()), 1)
        adpcm_snr = snr_db(mono(track), expected)  # 31.6 dB for this track
        self.assertGreaterEqual(snr_db(mono(track), mix), adpcm_snr - 0.1)
        self.assertGreater(adpcm_snr, 30.0)

        await daemon.recording_done()
        session = self._only_session()
        summary = json.load(open(os.path.join(session, "session.json")))
        self.assertEqual(summary["state"], "complete")
        self.assertEqual(summary["tracks"], "ready")
        self.assertFalse([f for f in os.listdir(session) if f.endswith(".chunks")])
        self.assertEqual(summary["mix_chunks"], chunks)
        self.assertEqual([s["chunks"] for s in summary["singers"]], [chunks] * 8)
        self.assertEqual([s["late"] + s["missing"] for s in summary["singers"]], [0] * 8)
        recorded_mix, rate = soundfile.read(os.path.join(session, "mix.flac"), dtype="int16")
        self.assertEqual(rate, SAMPLE_RATE)
        np.testing.assert_array_equal(recorded_mix, mix)
        tracks = sorted(f for f in os.listdir(session) if f.startswith("singer-"))
        self.assertEqual(len(tracks), 8)
        for name in tracks:
            voice, _ = soundfile.read(os.path.join(session, name), dtype="int16")
            np.testing.assert_array_equal(voice, expected)  # aligned at chunk 0

    def _only_session(self):
        sessions = os.listdir(os.path.join(self.data_dir, "sessions"))
        self.assertEqual(len(sessions), 1)
        return os.path.join(self.data_dir, "sessions", sessions[0])


class TwistdProcessTest(unittest.TestCase):
    timeout = 60

    def setUp(self):
        self.data_dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.data_dir)

    async def test_twistd_choir_runs_a_session(self):
        """`twistd -n choir` as a real process: a session, its mix and its recording."""
        log_file = os.path.join(self.data_dir, "choir.log")
        daemon = TwistdDaemon(self.data_dir, log_file)
        self.addCleanup(daemon.stop)
        await connect_singers(self, daemon, EIGHT_SINGERS[:3])
        await until(lambda: "(3 connected)" in open(log_file).read(), what="3 singers to join")
        track = broadband_track(2.0)
        director = SimulatedDirector(track)
        await endpoints.connectProtocol(daemon.endpoint("director"), director)
        await director.done
        self.assertFalse(director.refused)
        self.assertEqual(len(director.mix), len(track) // FRAMES_PER_CHUNK)
        self.assertEqual(best_lag(mono(track), director.mix_signal), 0)
        # twistd stops gracefully on SIGTERM, then exits by that signal.
        self.assertIn(daemon.stop(), (0, -signal.SIGTERM))
        sessions = os.listdir(os.path.join(self.data_dir, "sessions"))
        completed = [s for s in sessions if json.load(open(os.path.join(
            self.data_dir, "sessions", s, "session.json")))["state"] == "complete"]
        self.assertEqual(len(completed), 1)
        log = open(log_file).read()
        self.assertIn("ended (complete)", log)
        self.assertIn("singer0", log)
        for role, listener in (("Singer", "singers"), ("Director", "director"), ("Desk", "desk")):
            self.assertIn(f"{role} port starting on {daemon.ports[listener]}", log)  # which is which
        self.assertIn("Server Shut Down", log)


class OnlineChoir113Test(unittest.TestCase):
    """The unmodified online-choir 1.1.3 programs against our daemon."""

    timeout = 90

    def setUp(self):
        self.data_dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.data_dir)
        self.daemon = InProcessDaemon(self.data_dir)
        self.addCleanup(lambda: defer.ensureDeferred(self.daemon.stop()))

    def _track_file(self, track):
        path = os.path.join(self.data_dir, "track.wav")
        soundfile.write(path, track, SAMPLE_RATE, "PCM_16")
        return path

    def _run_113_director(self, track_path, output):
        return threads.deferToThread(subprocess.run, [
            os.path.join(VENV_BIN, "online-choir-director"), "--no-gui", "--mute", "--input", track_path,
            "--output", output, "--server", "127.0.0.1", "--port", str(self.daemon.port("director")),
            "--log-file", os.path.join(self.data_dir, "director.log"), "--console"],
            capture_output=True, text=True, timeout=60)

    async def test_113_director(self):
        """online-choir-director --no-gui --mute gets the whole mix, at lag 0."""
        await connect_singers(self, self.daemon, EIGHT_SINGERS[:4])
        await until_joined(self.daemon.room, 4)
        track = broadband_track(3.0)
        output = os.path.join(self.data_dir, "mix.wav")
        result = await self._run_113_director(self._track_file(track), output)
        self.assertEqual(result.returncode, 0, result.stderr)
        mix, rate = soundfile.read(output, dtype="int16")
        self.assertEqual(len(mix), len(track))
        self.assertEqual(best_lag(mono(track), mix), 0)
        # 1.1.3 stores the mix as float and writes it back to 16 bits: allow 1 LSB.
        self.assertLessEqual(int(np.abs(mix.astype(np.int32) - heard_and_sung(track)).max()), 1)

    async def test_113_singer(self):
        """1.1.3's singer client code, with a real sounddevice stream on JACK's dummy
        backend, checks in and sings a whole session."""
        jack = start_jack_dummy(self)
        log = os.path.join(self.data_dir, "singer.log")
        console = open(os.path.join(self.data_dir, "singer.console"), "wb")  # never a full pipe
        self.addCleanup(console.close)
        singer = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "tests", "support", "online_choir_113_singer.py"),
             str(self.daemon.port("singers")), "5", log],
            stdout=console, stderr=subprocess.STDOUT, env=jack)
        self.addCleanup(singer.wait)
        self.addCleanup(singer.kill)
        await until_joined(self.daemon.room, 1)
        track = broadband_track(3.0)
        result = await self._run_113_director(self._track_file(track),
                                              os.path.join(self.data_dir, "mix.wav"))
        self.assertEqual(result.returncode, 0, result.stderr)
        summary = self.daemon.room.last_session
        voices = list(summary.mixer.voices.values())
        self.assertEqual([(v.name, v.group, v.state.value) for v in voices],
                         [("oc113", "Tenor", "active")])
        self.assertEqual(voices[0].delivered, len(track) // FRAMES_PER_CHUNK)
        self.assertEqual(summary.ended, "complete")
        # the client says so once its audio stream has played the tail out
        await until(lambda: "Beautiful, thanks!" in open(log).read(), what="the singer's verdict")
