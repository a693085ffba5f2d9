"""A daemon killed mid-session loses at most the last seconds of the recording."""
import json
import os
import shutil
import signal
import tempfile

import numpy as np
import soundfile
from twisted.internet import endpoints, reactor
from twisted.trial import unittest

from choir_protocol.rehearsal.constants import CHUNKS_PER_SECOND, FRAMES_PER_CHUNK

from ...support.audio_reference import best_lag, broadband_track, heard_and_sung, mono
from ...support.daemon_process import TwistdDaemon, until
from ...support.simulated import SimulatedDirector, SimulatedSinger


class KilledDaemonTest(unittest.TestCase):
    timeout = 90

    def setUp(self):
        self.data_dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.data_dir)

    async def test_sigkill_mid_session_then_restart_recovers_the_recording(self):
        log = os.path.join(self.data_dir, "choir.log")
        daemon = TwistdDaemon(self.data_dir, log)
        self.addCleanup(daemon.stop)
        singers = []
        for i in range(2):
            singer = SimulatedSinger(reactor, f"s{i}", delay=0.1 * i, device_latency=3 + i)
            await endpoints.connectProtocol(daemon.endpoint("singers"), singer)
            singers.append(singer)
        for singer in singers:
            await singer.ready
        await until(lambda: "(2 connected)" in open(log).read(), what="both singers to join")
        track = broadband_track(30.0)
        director = SimulatedDirector(track)
        await endpoints.connectProtocol(daemon.endpoint("director"), director)
        await until(lambda: len(director.mix) >= 5 * CHUNKS_PER_SECOND, what="5 s of mix")
        daemon.process.send_signal(signal.SIGKILL)
        daemon.process.wait()
        received = len(director.mix)
        for singer in singers:
            await singer.disconnected

        sessions = os.path.join(self.data_dir, "sessions")
        (session_id,) = os.listdir(sessions)
        summary_path = os.path.join(sessions, session_id, "session.json")
        self.assertEqual(json.load(open(summary_path))["state"], "recording")

        restarted = TwistdDaemon(self.data_dir, log)
        self.addCleanup(restarted.stop)
        await until(lambda: json.load(open(summary_path))["state"] == "interrupted",
                    what="the recovery at start-up")
        summary = json.load(open(summary_path))
        mix, _ = soundfile.read(os.path.join(sessions, session_id, "mix.flac"), dtype="int16")
        kept = len(mix) // FRAMES_PER_CHUNK
        self.assertEqual(summary["mix_chunks"], kept)
        # at most the last ~2 s are lost (the recorder flushes about every second)
        self.assertGreaterEqual(kept, received - 2 * CHUNKS_PER_SECOND)
        np.testing.assert_array_equal(mix, director.mix_signal[:len(mix)])
        tracks = [n for n in summary["files"] if n.startswith("singer-")]
        self.assertEqual(len(tracks), 2)
        self.assertEqual(summary["tracks"], "ready")
        for name in tracks:
            voice, _ = soundfile.read(os.path.join(sessions, session_id, name), dtype="int16")
            # the journals ran ahead of the mix when the daemon died: the tracks keep more
            self.assertGreaterEqual(len(voice), len(mix))
            expected = heard_and_sung(track[:len(voice)])
            sung = np.flatnonzero(voice)[-1] + 1  # after its last chunk, silence
            self.assertGreaterEqual(sung, len(mix))
            self.assertEqual(best_lag(mono(track[:sung]), voice[:sung]), 0)
            np.testing.assert_array_equal(voice[:sung], expected[:sung])
            self.assertFalse(voice[sung:].any())
        self.assertIn("Recovered interrupted session", open(log).read())


class StoppedDaemonTest(unittest.TestCase):
    timeout = 60

    def setUp(self):
        self.data_dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.data_dir)

    async def test_sigterm_mid_session_closes_the_recording_cleanly(self):
        log = os.path.join(self.data_dir, "choir.log")
        daemon = TwistdDaemon(self.data_dir, log)
        self.addCleanup(daemon.stop)
        singer = SimulatedSinger(reactor, "s0", device_latency=3)
        await endpoints.connectProtocol(daemon.endpoint("singers"), singer)
        await until(lambda: "(1 connected)" in open(log).read(), what="the singer to join")
        director = SimulatedDirector(broadband_track(30.0))
        await endpoints.connectProtocol(daemon.endpoint("director"), director)
        await until(lambda: len(director.mix) >= 3 * CHUNKS_PER_SECOND, what="3 s of mix")
        self.assertIn(daemon.stop(), (0, -signal.SIGTERM))
        (session_id,) = os.listdir(os.path.join(self.data_dir, "sessions"))
        directory = os.path.join(self.data_dir, "sessions", session_id)
        summary = json.load(open(os.path.join(directory, "session.json")))
        self.assertEqual(summary["state"], "daemon stopping")
        # no recovery needed: libsndfile reads the files, with their length
        mix = soundfile.read(os.path.join(directory, "mix.flac"), dtype="int16")[0]
        self.assertEqual(len(mix), summary["mix_chunks"] * FRAMES_PER_CHUNK)
        self.assertGreaterEqual(summary["mix_chunks"], len(director.mix))
