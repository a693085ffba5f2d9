"""choir-singer as a terminal program: the real program in a subprocess, with a config folder
of its own ($CHOIR_CONFIG_DIR), against a real daemon, checked by what it prints, its exit
status, what it remembers, and the daemon's recording.

--simulate (calibrated, then singing at lag 0), --input-file (a recording in the mix at lag
0, no calibration), and bad values: one line, an exit status, nothing remembered.
"""
import json
import os
import signal
import subprocess

import numpy as np
import soundfile
from twisted.internet import defer, endpoints, threads
from twisted.trial import unittest

from choir_protocol.rehearsal.adpcm import MonoDecoder, MonoEncoder
from choir_protocol.rehearsal.constants import FRAMES_PER_CHUNK, SAMPLE_RATE

from ...support.audio_reference import best_lag, broadband_track, heard_and_sung, mono, snr_db
from ...support.daemon_process import VENV_BIN, InProcessDaemon, until
from ...support.jack import PORTAUDIO_CLIENT, loopback, start_jack_dummy
from ...support.paths import ROOT, temp_dir
from ...support.simulated import SimulatedDirector

CHOIR_SINGER = os.path.join(VENV_BIN, "choir-singer")
B = FRAMES_PER_CHUNK


class SingerProgramTest(unittest.TestCase):
    timeout = 60

    def setUp(self):
        self.folder = temp_dir(self)
        self.config_dir = os.path.join(self.folder, "config")
        self.config_file = os.path.join(self.config_dir, "singer.json")
        self.env = dict(os.environ, CHOIR_CONFIG_DIR=self.config_dir, PYTHONPATH=ROOT)

    # -- helpers ------------------------------------------------------------------------------

    def run_singer(self, *args, env=None):
        """choir-singer to its end: the CompletedProcess."""
        return threads.deferToThread(subprocess.run, [CHOIR_SINGER, *args], capture_output=True,
                                     text=True, env=env or self.env, timeout=40, cwd=self.folder)

    def spawn(self, name, *args, env=None):
        """choir-singer left running, its output in a file (never a full pipe)."""
        output = open(os.path.join(self.folder, name), "wb")
        self.addCleanup(output.close)
        process = subprocess.Popen([CHOIR_SINGER, *args], stdout=output, stderr=subprocess.STDOUT,
                                   env=env or self.env, cwd=self.folder)
        self.addCleanup(process.wait)
        self.addCleanup(lambda: process.poll() is None and process.kill())
        return process

    def output(self, name):
        with open(os.path.join(self.folder, name), errors="replace") as f:
            return f.read()

    def config(self):
        try:
            with open(self.config_file) as f:
                return json.load(f)
        except FileNotFoundError:
            return {}

    def write_config(self, values):
        os.makedirs(self.config_dir, exist_ok=True)
        with open(self.config_file, "w") as f:
            json.dump(values, f)
        with open(self.config_file, "rb") as f:
            return f.read()

    def assert_one_line_error(self, result, code, text):
        """Exit ``code``; the error is stderr's first line (a usage error adds only the
        pointer to --help), with ``text`` in it; no traceback."""
        self.assertEqual(result.returncode, code, result.stderr)
        lines = result.stderr.splitlines()
        self.assertIn(text, lines[0])
        if code == 2 and lines[0].startswith("choir-singer: error:"):
            self.assertEqual(lines[1:], ["(see 'choir-singer --help')"])
        else:
            self.assertEqual(len(lines), 1, result.stderr)
        self.assertNotIn("Traceback", result.stderr + result.stdout)

    async def start_daemon(self):
        daemon = InProcessDaemon(os.path.join(self.folder, "data"))
        self.addCleanup(lambda: defer.ensureDeferred(daemon.stop()))
        return daemon

    async def session(self, daemon, track):
        director = SimulatedDirector(track)
        await endpoints.connectProtocol(daemon.endpoint("director"), director)
        await director.done
        self.assertFalse(director.refused)
        self.assertEqual(len(director.mix), len(track) // B)
        await daemon.recording_done()
        directory = daemon.room.last_session.recorder.directory
        with open(os.path.join(directory, "session.json")) as f:
            summary = json.load(f)
        mix, rate = soundfile.read(os.path.join(directory, "mix.flac"), dtype="int16")
        self.assertEqual(rate, SAMPLE_RATE)
        np.testing.assert_array_equal(mix, director.mix_signal)  # the recording is the mix
        return mix, summary

    async def stop(self, process, name):
        process.send_signal(signal.SIGINT)
        self.assertEqual(await threads.deferToThread(process.wait, 20), 0, self.output(name))
        self.assertIn("Bye!", self.output(name))
        self.assertNotIn("Traceback", self.output(name))

    # -- --simulate -----------------------------------------------------------------------------

    async def test_simulate_calibrates_then_sings_at_lag_zero(self):
        """`calibrate --simulate 150` measures 150 ms and keeps it for that card (not as the
        real card's); `--simulate 150 --server HOST:PORT` joins, the daemon mixes and records
        it at lag 0; server, name and group are remembered once accepted, --simulate is not."""
        result = await self.run_singer("calibrate", "--simulate", "150", "--seconds", "1")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("Calibrating the simulated 150 ms card", result.stdout)
        self.assertIn("Latency: 6615 samples = 12.92 chunks = 150.0 ms", result.stdout)
        self.assertIn("You can sing now: choir-singer --simulate 150 --server HOST", result.stdout)
        config = self.config()
        self.assertEqual(config["simulated_calibrations"]["simulated 150 ms"]["latency_samples"],
                         6615)
        self.assertNotIn("calibration", config)

        daemon = await self.start_daemon()
        port = daemon.port("singers")
        process = self.spawn("sing.out", "--simulate", "150", "--server", f"127.0.0.1:{port}",
                             "--name", "Sim", "--group", "tenor")
        await until(lambda: len(daemon.room.singers) == 1, what="the singer to join")
        await until(lambda: "server" in self.config(), what="the settings to be remembered")
        config = self.config()
        self.assertEqual((config["server"], config["port"], config["name"], config["group"]),
                         ("127.0.0.1", port, "Sim", "Tenor"))
        self.assertFalse({"simulate", "input_device", "output_device"} & set(config))

        track = broadband_track(2.0)
        mix, summary = await self.session(daemon, track)
        self.assertEqual(best_lag(mono(track), mix, max_lag=8192), 0)
        # what the daemon got is the track as the card heard it: the noise is -60 dBFS
        self.assertGreater(snr_db(heard_and_sung(track), mix), 25.0)
        (voice,) = summary["singers"]
        self.assertEqual((voice["name"], voice["group"], voice["chunks"], voice["late"],
                          voice["missing"]), ("Sim", "Tenor", len(track) // B, 0, 0))
        await until(lambda: "Session 1 done" in self.output("sing.out"), what="the tail")
        await self.stop(process, "sing.out")
        text = self.output("sing.out")
        self.assertIn(f"singing as 'Sim' (Tenor) on 127.0.0.1:{port}; sound card simulated "
                      f"150 ms, latency 6615 samples (150.0 ms)", text)
        self.assertIn("Session 1 done: 172 chunks sung.", text)

    # -- --input-file ---------------------------------------------------------------------------

    async def test_input_file_sings_a_recording_at_lag_zero(self):
        """--input-file FILE needs no calibration: the daemon's mix is the recording (its own
        ADPCM, to the sample) from the first sample of the track, then silence."""
        recording = mono(broadband_track(1.5, seed=7)).astype("<i2")  # not the track
        path = os.path.join(self.folder, "voice.flac")
        soundfile.write(path, recording, SAMPLE_RATE, "PCM_16")
        daemon = await self.start_daemon()
        port = daemon.port("singers")
        process = self.spawn("file.out", "--input-file", path, "--server", "127.0.0.1",
                             "--port", str(port), "--name", "Rec")
        await until(lambda: len(daemon.room.singers) == 1, what="the singer to join")
        track = broadband_track(2.0)
        mix, summary = await self.session(daemon, track)
        sung = np.zeros(len(track) // B * B, "<i2")
        sung[:len(recording)] = recording
        expected = np.frombuffer(MonoDecoder().decode(MonoEncoder().encode(sung.tobytes())), "<i2")
        self.assertLessEqual(int(np.abs(mix.astype(np.int32) - expected).max()), 1)
        self.assertEqual(best_lag(recording, mix), 0)
        self.assertEqual(summary["singers"][0]["chunks"], len(track) // B)
        await self.stop(process, "file.out")
        self.assertIn(f"singing the recording {path} (1.5 s)", self.output("file.out"))
        self.assertNotIn("calibration", self.config())

    async def test_input_file_that_cannot_be_read(self):
        """A missing file, a folder, a file that is no audio: one line, exit 1, nothing saved."""
        text = os.path.join(self.folder, "notes.txt")
        with open(text, "w") as f:
            f.write("not audio\n")
        for path, message in ((os.path.join(self.folder, "missing.wav"), "missing.wav: no such file"),
                              (self.folder, "is a folder, not an audio file"),
                              (text, "notes.txt is not an audio file that can be read")):
            result = await self.run_singer("--input-file", path, "--name", "Nobody")
            self.assert_one_line_error(result, 1, "Cannot sing the recording: ")
            self.assertIn(message, result.stderr)
        self.assertFalse(os.path.exists(self.config_file))

    # -- values that do not work are not remembered ----------------------------------------------

    async def test_bad_values_are_one_line_and_not_remembered(self):
        """A bad --server, a --port that contradicts it, an unknown group: usage errors (exit
        2, one line, the groups listed); a sound card that fails: exit 1, one line. The
        config file is untouched by each."""
        before = self.write_config({"server": "choir.example", "name": "Ann", "calibration": {
            "latency_samples": 900, "input_device": None, "output_device": None}})
        for args, code, message in (
                (["--server", "127.0.0.1:21868:21868"], 2,
                 "choir-singer: error: --server: '127.0.0.1:21868:21868' is not an IPv6 address"),
                (["--server", "127.0.0.1:21868", "--port", "8868"], 2,
                 "--server 127.0.0.1:21868 says port 21868 but --port says 8868"),
                (["--server", "http://choir.example"], 2, "not a URL"),
                (["--group", "Contralto"], 2, "unknown group 'Contralto' (choose one of: No group, "
                                              "Soprano, Mezzo, Alto, Tenor, Baritone, Bass)"),
                (["--simulate", "5"], 2, "--simulate takes the simulated card's latency in "
                                         "milliseconds, from 12 to 1000, not '5'"),
                (["--input-device", "7", "--server", "127.0.0.1", "--name", "Bob"], 1,
                 "Cannot use the sound card: ")):
            result = await self.run_singer(*args)
            self.assert_one_line_error(result, code, message)
            with open(self.config_file, "rb") as f:
                self.assertEqual(f.read(), before, args)

    async def test_refused_at_the_director_port_remembers_nothing(self):
        """Pointed at the director's port, the daemon refuses the singer at once: exit 1 with
        the daemon's words, and the server, port and name given are not remembered."""
        before = self.write_config({"simulated_calibrations": {"simulated 100 ms": {
            "latency_samples": 4410}}})
        daemon = await self.start_daemon()
        result = await self.run_singer("--simulate", "--server",
                                       f"127.0.0.1:{daemon.port('director')}", "--name", "Lost")
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn(f"this is the director port; singers use port {daemon.port('singers')}",
                      result.stdout)
        with open(self.config_file, "rb") as f:
            self.assertEqual(f.read(), before)

    # -- a real card: the same card named differently --------------------------------------------

    async def test_default_card_calibration_accepts_the_card_by_its_name(self):
        """On JACK's dummy card: `calibrate` on the default devices, then `-i system` (what
        the default resolves to) sings with that calibration, and is remembered once the
        daemon accepted it."""
        env = dict(self.env, **{k: v for k, v in start_jack_dummy(self).items()
                                if k.startswith("JACK")})
        calibrate = self.spawn("calibrate.out", "calibrate", "--seconds", "1", env=env)
        await threads.deferToThread(loopback, PORTAUDIO_CLIENT, env)
        self.assertEqual(await threads.deferToThread(calibrate.wait, 30), 0,
                         self.output("calibrate.out"))
        calibration = self.config()["calibration"]
        self.assertEqual((calibration["input_device"], calibration["input_card"]),
                         (None, "system (JACK Audio Connection Kit)"))

        daemon = await self.start_daemon()
        port = daemon.port("singers")
        process = self.spawn("sing.out", "-i", "system", "--server", f"127.0.0.1:{port}", env=env)
        await until(lambda: len(daemon.room.singers) == 1, what="the singer to join")
        await until(lambda: "input_device" in self.config(), what="the card to be remembered")
        self.assertEqual((self.config()["input_device"], self.config()["port"]), ("system", port))
        await self.stop(process, "sing.out")
        self.assertIn(f"latency {calibration['latency_samples']} samples", self.output("sing.out"))
