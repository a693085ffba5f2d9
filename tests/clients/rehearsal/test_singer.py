"""choir-singer: the sans-IO labelling, the client against our daemon and 1.1.3's server,
the command line, and the real sounddevice path on JACK's dummy backend.

Over 400 lines: choir-singer's paths through one set of fixtures (a daemon, a 1.1.3 server,
JACK); its command line is also tested in test_singer_cli.py.
"""
import io
import json
import os
import re
import signal
import struct
import subprocess
import sys

import numpy as np
from twisted.internet import defer, endpoints, protocol, reactor, threads
from twisted.python import usage
from twisted.trial import unittest

from choir_clients.config import ConfigError, load_config, save_config
from choir_clients.rehearsal import singer
from choir_clients.rehearsal.simulated_devices import EchoDevice
from choir_clients.rehearsal.singer_cards import Card, store_calibration
from choir_clients.rehearsal.singer_options import expand_optional_values
from choir_clients.rehearsal.singer_session import (DeviceUnderrun, Finished, LateChunk,
                                                    PlaybackStarted, SingerSession, StoppedEarly,
                                                    VoiceChunk)
from choir_clients.rehearsal.terminal import LineRenderer, level_bar
from choir_protocol.rehearsal.adpcm import MonoDecoder, MonoEncoder, StereoDecoder, StereoEncoder
from choir_protocol.rehearsal.constants import FRAMES_PER_CHUNK, HEADER_SIZE, VOICE_CHUNK_SIZE
from choir_protocol.rehearsal.header import Header
from choir_protocol.rehearsal.mixer import VoiceState
from choir_twisted.rehearsal.protocols import RoomFactory, SingerProtocol

from ...support.audio_reference import best_lag, broadband_track, heard_and_sung, mono
from ...support.daemon_process import VENV_BIN, InProcessDaemon, free_port, until, wait_for_port
from ...support.jack import PORTAUDIO_CLIENT, loopback, start_jack_dummy
from ...support.paths import ROOT, private_config, temp_dir
from ...support.simulated import SimulatedDirector

CHOIR_SINGER = os.path.join(VENV_BIN, "choir-singer")
B = FRAMES_PER_CHUNK


# -- the sans-IO session ----------------------------------------------------------------------

def run_echo(latency, chunks=12, *, buffer_chunks=4, arrivals=None, underflow_at=(),
             error_budget=5, max_blocks=400, voice=None):
    """Drive a SingerSession as a duplex device whose microphone hears what it played,
    ``latency`` samples later (0 allowed: here the block is played before it is recorded).
    ``arrivals[i]``: the block before which track chunk i arrives (default: 3 + i // 2,
    so that the buffer fills and the track keeps ahead). Returns (track, voice chunks by
    index, the other events with the block they came in, blocks run)."""
    rng = np.random.default_rng(latency)
    track = rng.uniform(-0.5, 0.5, (chunks * B, 2)).astype(np.float32)
    arrivals = arrivals or [3 + i // 2 for i in range(chunks)]
    session = SingerSession(latency, buffer_chunks=buffer_chunks, error_budget=error_budget,
                            voice=voice)
    line = np.zeros(latency, np.float32)
    voices, others = {}, []
    fed = 0
    for block in range(max_blocks):
        while fed < chunks and arrivals[fed] <= block:
            session.add_track(fed, track[fed * B:(fed + 1) * B])
            fed += 1
            if fed == chunks:
                session.end_track()
        played = session.play(underflow=block in underflow_at)
        heard = np.concatenate([line, played.mean(axis=1)])
        line, microphone = heard[B:], heard[:B]
        session.record(microphone.reshape(B, 1))
        for event in session.take_events():
            if isinstance(event, VoiceChunk):
                assert event.index not in voices
                voices[event.index] = event.samples
            else:
                others.append((block, event))
        if session.over:
            return track, voices, others, block + 1
    raise AssertionError("the session never ended")


class SingerSessionTest(unittest.SynchronousTestCase):
    def assert_sample_exact(self, latency, **kwargs):
        track, voices, others, blocks = run_echo(latency, **kwargs)
        chunks = len(track) // B
        self.assertEqual(sorted(voices), list(range(chunks)))
        sung = np.concatenate([voices[i] for i in range(chunks)])
        np.testing.assert_array_equal(sung, track.mean(axis=1))  # what was heard, to the sample
        return others, blocks

    def test_sample_exact_for_any_latency(self):
        """Voice chunk i is exactly what the microphone heard while chunk i played, for
        latencies below a chunk, of whole chunks, and in between."""
        for latency in (0, 1, 511, 512, 700, 512 * 3 + 5, 44100):
            with self.subTest(latency=latency):
                others, _ = self.assert_sample_exact(latency)
                self.assertEqual([type(e) for _, e in others], [PlaybackStarted, Finished])

    def test_playback_waits_for_the_buffer_then_records_the_tail(self):
        """Silence until buffer_chunks are queued; after the last chunk, silence is played
        until the tail (latency samples) is recorded; then Finished."""
        latency = 512 * 3 + 5
        others, blocks = self.assert_sample_exact(latency, buffer_chunks=6)
        (start_block, started), (end_block, finished) = others
        self.assertEqual(started, PlaybackStarted(position=start_block * B, buffered=6))
        self.assertEqual(start_block, 5)  # chunk 5, the 6th, arrives before block 3 + 5 // 2
        # the last chunk (11) plays in block start + 11; its echo ends latency samples later
        last_end = (start_block + 12) * B + latency
        self.assertEqual(end_block, -(-last_end // B) - 1)
        self.assertEqual(finished, Finished(12))

    def test_a_late_chunk_shifts_playback_but_not_the_labels(self):
        """The track arriving after its play time (gaps in playback) is a LateChunk each
        block; the labels stay sample-exact as each chunk's play position is kept."""
        arrivals = [3] * 4 + [20] * 4 + [40] * 4  # two gaps after the playback started
        others, _ = self.assert_sample_exact(700, arrivals=arrivals, error_budget=100)
        late = [e for _, e in others if isinstance(e, LateChunk)]
        self.assertGreater(len(late), 20)
        self.assertEqual({e.index for e in late}, {4, 8})
        self.assertIsInstance(others[-1][1], Finished)

    def test_over_the_error_budget_drops_out(self):
        """Device under-runs and late chunks count; the 6th error (budget 5) drops out:
        no more voice, silence played."""
        underflows = {10, 12, 14}
        track, voices, others, _ = run_echo(700, chunks=40, arrivals=[3] * 20 + [60] * 20,
                                            underflow_at=underflows, error_budget=5)
        kinds = [type(e) for _, e in others]
        self.assertEqual(kinds, [PlaybackStarted] + [DeviceUnderrun] * 3 + [LateChunk] * 3
                         + [StoppedEarly])
        self.assertEqual([e.errors for _, e in others[1:-1]], [1, 2, 3, 4, 5, 6])
        self.assertIn("6 playback errors", others[-1][1].reason)
        # the 20 chunks played before the track ran dry were all recorded (their echo came
        # back during the gap); nothing after
        self.assertEqual(sorted(voices), list(range(20)))
        for i, samples in voices.items():  # what was sent before dropping out is right
            np.testing.assert_array_equal(samples, track[i * B:(i + 1) * B].mean(axis=1))

    def test_device_errors_before_playback_do_not_count(self):
        others, _ = self.assert_sample_exact(512, buffer_chunks=6, underflow_at={0, 1, 2, 3})
        self.assertEqual([type(e) for _, e in others], [PlaybackStarted, Finished])

    def test_a_recording_for_a_voice_lines_up_with_the_track(self):
        """With a recording as the voice (--input-file), voice chunk i is the recording's
        chunk i, whatever the latency and gaps in the track; silence past its end."""
        recording = np.random.default_rng(5).uniform(-0.5, 0.5, 7 * B + 100).astype(np.float32)
        for latency in (0, 700):
            track, voices, others, _ = run_echo(latency, arrivals=[3] * 6 + [20] * 6,
                                                error_budget=100, voice=recording)
            self.assertEqual(sorted(voices), list(range(12)))
            sung = np.concatenate([voices[i] for i in range(12)])
            np.testing.assert_array_equal(sung[:len(recording)], recording)
            np.testing.assert_array_equal(sung[len(recording):], 0)
            self.assertIsInstance(others[-1][1], Finished)

    def test_track_order_is_checked(self):
        session = SingerSession(0)
        with self.assertRaises(ValueError):
            session.add_track(1, np.zeros((B, 2), np.float32))
        with self.assertRaises(ValueError):
            SingerSession(-1)


class TerminalTest(unittest.SynchronousTestCase):
    def test_tty_rewrites_one_line_and_notes_scroll(self):
        out = io.StringIO()
        line = LineRenderer(out, tty=True)
        line.status("connecting")
        line.status("connecting")  # unchanged: nothing written
        line.note("Connected.")
        line.status("waiting")
        line.close()
        self.assertEqual(out.getvalue(), "\rconnecting\x1b[K\r\x1b[KConnected.\nconnecting"
                                         "\rwaiting\x1b[K\n")

    def test_pipe_gets_a_line_every_interval(self):
        now = [0.0]
        out = io.StringIO()
        line = LineRenderer(out, tty=False, interval=5.0, clock=lambda: now[0])
        for t in range(12):
            now[0] = float(t)
            line.status(f"t={t}")
        line.status("state changed", force=True)
        self.assertEqual(out.getvalue().splitlines(), ["t=0", "t=5", "t=10", "state changed"])

    def test_level_bar(self):
        self.assertEqual(level_bar(-30.0, width=10), "[#####.....]  -30 dBFS")
        self.assertEqual(level_bar(0.0, width=4), "[###!]    0 dBFS")
        self.assertEqual(level_bar(-120.0, width=4), "[....] -inf dBFS")


# -- the command line --------------------------------------------------------------------------

class OptionsTest(unittest.SynchronousTestCase):
    def test_groups_and_subcommand(self):
        options = singer.Options()
        options.parseOptions(["--group", "bariTone", "--gain", "-6", "--port", "9000"])
        self.assertEqual((options["group"], options["gain"], options["port"]), ("Baritone", -6.0, 9000))
        with self.assertRaises(usage.UsageError):
            singer.Options().parseOptions(["--group", "Countertenor"])
        options = singer.Options()
        options.parseOptions(["calibrate", "--input-device", "2"])
        self.assertEqual((options.subCommand, options.subOptions["input-device"]), ("calibrate", "2"))

    def test_server_may_carry_the_port(self):
        """--server HOST:PORT gives the port; --port agreeing with it is fine, differing is a
        usage error; a bad value is one too."""
        for args, expected in ((["--server", "127.0.0.1:21868"], ("127.0.0.1", 21868)),
                               (["--server", "[::1]:9000", "--port", "9000"], ("::1", 9000)),
                               (["--server", "example.org", "--port", "9"], ("example.org", 9)),
                               (["--server", "example.org"], ("example.org", None))):
            options = singer.parse(args)
            self.assertEqual((options["server"], options["port"]), expected)
        for args, message in (
                (["--server", "h:1", "--port", "2"], "--server h:1 says port 1 but --port says 2"),
                (["--server", "127.0.0.1:21868:21868"], "--server: '127.0.0.1:21868:21868' is not "
                                                        "an IPv6 address"),
                (["--server", "h:0"], "the port must be a number from 1 to 65535"),
                (["--port", "x"], "--port must be a number from 1 to 65535, not 'x'")):
            with self.assertRaisesRegex(usage.UsageError, re.escape(message)):
                singer.Options().parseOptions(args)

    def test_server_address_given_remembered_or_default(self):
        """Given beats remembered beats the default; a "host:port" remembered by an older
        choir-singer is read as such (never "host:port:port"); a bad one says to give
        --server."""
        given = singer.parse(["--server", "127.0.0.1:21868"])
        self.assertEqual(singer.server_address(given, {"server": "old", "port": 9}),
                         ("127.0.0.1", 21868))
        plain = singer.parse([])
        for config, expected in (({}, ("localhost", 8868)),
                                 ({"server": "choir.example", "port": 9}, ("choir.example", 9)),
                                 ({"server": "127.0.0.1:21868", "port": 21868},
                                  ("127.0.0.1", 21868))):
            self.assertEqual(singer.server_address(plain, config), expected)
        self.assertEqual(singer.server_address(singer.parse(["-p", "7"]),
                                               {"server": "h:21868"}), ("h", 7))
        with self.assertRaisesRegex(ConfigError, "the remembered server is not usable .*: give "
                                                 "--server"):
            singer.server_address(plain, {"server": "a b"})

    def test_simulate_takes_an_optional_latency(self):
        """--simulate alone is 100 ms; a number after it, or after '=', is the latency;
        what is not a number is the next argument; a value of another option is left alone."""
        for args, ms in ((["--simulate"], 100.0), (["--simulate", "150"], 150.0),
                         (["--simulate=12.5"], 12.5), (["--simulate", "-n", "Ann"], 100.0),
                         (["-n", "--simulate", "--simulate", "40"], 40.0),
                         (["calibrate", "--simulate", "150", "--seconds", "1"], None)):
            options = singer.parse(args)
            if options.subCommand:
                self.assertEqual(options.subOptions["simulate"], 150.0)
            else:
                self.assertEqual(options["simulate"], ms, args)
        self.assertEqual(singer.parse(["-n", "--simulate", "--simulate", "40"])["name"],
                         "--simulate")
        for args, message in ((["--simulate=5"], "from 12 to 1000, not '5'"),
                              (["--simulate=x"], "not 'x'"),
                              (["--simulate", "-i", "2"], "give no --input-device with it"),
                              (["--input-file", "f.wav", "-o", "2"], "give no --output-device"),
                              (["--simulate", "--input-file", "f.wav"], "not both")):
            options = singer.Options()
            with self.assertRaisesRegex(usage.UsageError, re.escape(message)):
                options.parseOptions(expand_optional_values(args))

    def test_calibration_must_match_the_devices(self):
        calibration = {"latency_samples": 777, "input_device": "USB", "output_device": None}
        self.assertEqual(singer.calibrated_latency(calibration, Card("USB", None)), 777)
        with self.assertRaisesRegex(singer.NotCalibrated, "other sound cards"):
            singer.calibrated_latency(calibration, Card(None, None))
        with self.assertRaisesRegex(singer.NotCalibrated, "Run `choir-singer calibrate "
                                                          "--input-device 'X'` first"):
            singer.stored_calibration({}, Card("X", None))

    def test_devices_that_resolve_to_the_calibrated_cards_match(self):
        """Calibrated on the default devices, which resolved to "system": naming "system"
        (or anything resolving to it) is the same card; another card is not."""
        calibration = {"latency_samples": 900, "input_device": None, "output_device": None,
                       "input_card": "system (JACK)", "output_card": "system (JACK)"}

        class Resolved:
            def __init__(self, *names):
                self.card_names = names

        system = Resolved("system (JACK)", "system (JACK)")
        self.assertEqual(singer.calibrated_latency(calibration, Card("system", None), system), 900)
        self.assertEqual(singer.calibrated_latency(calibration, Card("0", "0"), system), 900)
        with self.assertRaisesRegex(singer.NotCalibrated, r"other sound cards \(input the "
                                    r"default device, output the default device: system \(JACK\) "
                                    r"/ system \(JACK\)\); you chose input 'USB'"):
            singer.calibrated_latency(calibration, Card("USB", None),
                                      Resolved("USB (ALSA)", "system (JACK)"))
        # a device that cannot tell what it resolves to is matched as typed
        with self.assertRaises(singer.NotCalibrated):
            singer.calibrated_latency(calibration, Card("system", None), object())

    def test_simulated_cards_are_calibrated_apart(self):
        """A simulated card's calibration is found by its name and never replaces the real
        card's; an uncalibrated one says the exact command to run."""
        config = {"calibration": {"latency_samples": 700, "input_device": None,
                                  "output_device": None}}
        store_calibration(config, Card(simulate_ms=150), None, {"latency_samples": 6615})
        self.assertEqual(config["calibration"]["latency_samples"], 700)
        entry = singer.stored_calibration(config, Card(simulate_ms=150.0))
        self.assertEqual(singer.calibrated_latency(entry, Card(simulate_ms=150)), 6615)
        with self.assertRaisesRegex(singer.NotCalibrated, r"The simulated 12.5 ms card is not "
                                    r"calibrated yet.*Run `choir-singer calibrate --simulate "
                                    r"12.5` first\."):
            singer.stored_calibration(config, Card(simulate_ms=12.5))


def clean_env(config_dir, **extra):
    env = dict(os.environ, CHOIR_CONFIG_DIR=config_dir, PYTHONPATH=ROOT)
    env.update(extra)
    return env


class CommandLineTest(unittest.TestCase):
    timeout = 60

    def setUp(self):
        self.config_dir = temp_dir(self)

    def run_singer(self, *args):
        return threads.deferToThread(subprocess.run, [CHOIR_SINGER, *args], capture_output=True,
                                     text=True, env=clean_env(self.config_dir), timeout=30)

    async def test_refuses_to_sing_uncalibrated(self):
        """Exit 2 and a message saying to calibrate; nothing given is remembered, as the
        singer never got to a server."""
        result = await self.run_singer("--server", "127.0.0.1", "--port", "1", "--name", "Ann",
                                 "--group", "alto")
        self.assertEqual(result.returncode, 2, result.stderr)
        self.assertIn("not calibrated", result.stderr)
        self.assertIn("Run `choir-singer calibrate` first", result.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.config_dir, "singer.json")))
        # a calibration made for other devices does not count either
        save_config_in(self.config_dir, {"calibration": {
            "latency_samples": 900, "input_device": "USB Mic", "output_device": None}})
        result = await self.run_singer("--simulate", "40")
        self.assertEqual(result.returncode, 2, result.stderr)
        self.assertIn("The simulated 40 ms card is not calibrated yet", result.stderr)
        self.assertIn("Run `choir-singer calibrate --simulate 40` first.", result.stderr)

    async def test_usage_errors_and_help(self):
        result = await self.run_singer("--group", "Countertenor")
        self.assertEqual(result.returncode, 2)
        self.assertIn("unknown group 'Countertenor' (choose one of: No group, Soprano, Mezzo, "
                      "Alto, Tenor, Baritone, Bass)", result.stderr)
        result = await self.run_singer("--help")
        self.assertEqual(result.returncode, 0)
        for text in ("--server", "--list-devices", "calibrate", "Soprano, Mezzo", "--gain",
                     "--simulate [LATENCY_MS]", "--input-file FILE", "HOST:PORT"):
            self.assertIn(text, result.stdout)


def save_config_in(config_dir, values):
    old = os.environ.get("CHOIR_CONFIG_DIR")
    os.environ["CHOIR_CONFIG_DIR"] = config_dir
    try:
        save_config("singer", values)
    finally:
        if old is None:
            del os.environ["CHOIR_CONFIG_DIR"]
        else:
            os.environ["CHOIR_CONFIG_DIR"] = old


# -- the whole client, in-process, with a simulated sound card ---------------------------------

def echo_reference(track: np.ndarray, gain_db: float = 0.0) -> np.ndarray:
    """What a daemon gets back from choir-singer on an EchoDevice (gain 1, no noise):
    director ADPCM, decoded to floats, played in stereo, heard as (L + R) / 2, times
    the singer's --gain, rounded to 16 bits, mono ADPCM, decoded."""
    gain = 10 ** (gain_db / 20)
    director, heard = StereoEncoder(), StereoDecoder()
    sung, daemon = MonoEncoder(), MonoDecoder()
    out = []
    for i in range(len(track) // B):
        chunk = track[i * B:(i + 1) * B]
        left, right = heard.decode(director.encode(np.ascontiguousarray(chunk[:, 0]).tobytes(),
                                                   np.ascontiguousarray(chunk[:, 1]).tobytes()))
        scale = np.float32(1 / 32768)
        microphone = (np.frombuffer(left, "<i2") * scale + np.frombuffer(right, "<i2") * scale) \
            * np.float32(0.5)
        pcm = np.clip(np.rint(microphone * (gain * 32768.0)), -32768, 32767).astype("<i2")
        out.append(np.frombuffer(daemon.decode(sung.encode(pcm.tobytes())), "<i2"))
    return np.concatenate(out)


class CountingDevice:
    """Wraps a device and counts the streams opened on it."""

    def __init__(self, device):
        self.device = device
        self.opened = 0
        self.name = device.name

    def open(self, callback, finished=None):
        self.opened += 1
        return self.device.open(callback, finished)


class SingerClientTest(unittest.TestCase):
    timeout = 60

    def setUp(self):
        self.data_dir = temp_dir(self)
        self.config_dir = private_config(self, os.path.join(self.data_dir, "config"))

    def calibrate(self, latency):
        save_config("singer", {"calibration": {"latency_samples": latency, "input_device": None,
                                               "output_device": None, "confidence": 1.0}})

    async def start_singer(self, port, device, *args, **client_options):
        """``sing`` in-process (config, calibration check, client) on ``device``."""
        options = singer.Options()
        options.parseOptions(["--server", "127.0.0.1", "--port", str(port), "--name", "echo",
                              "--group", "Alto", *args])
        out, err = io.StringIO(), io.StringIO()
        box = []
        done = defer.ensureDeferred(singer.sing(
            reactor, options, device_factory=lambda i, o: device, out=out, err=err,
            client_options=client_options, started=box.append))
        self.assertEqual(len(box), 1, err.getvalue())
        client = box[0]
        client.out = out
        self.addCleanup(lambda: done)
        self.addCleanup(client.stop)
        return client, done

    async def session(self, daemon_or_port, seconds=2.0, seed=1):
        track = broadband_track(seconds, seed)
        director = SimulatedDirector(track)
        endpoint = (daemon_or_port.endpoint("director") if isinstance(daemon_or_port, InProcessDaemon)
                    else endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", daemon_or_port))
        await endpoints.connectProtocol(endpoint, director)
        await director.done
        return track, director

    def assert_at_lag_zero(self, track, director, gain_db=0.0):
        self.assertFalse(director.refused)
        self.assertEqual(len(director.mix), len(track) // B)
        mix = director.mix_signal
        self.assertEqual(best_lag(mono(track), mix), 0)
        # sample-exact: the daemon got exactly what the echo device heard, chunk by chunk
        expected = echo_reference(track, gain_db)
        self.assertLessEqual(int(np.abs(mix.astype(np.int32) - expected).max()), 1)

    async def test_echo_singer_lands_at_lag_zero_session_after_session(self):
        """Calibrated by `calibrate` on an EchoDevice of 3 chunks + 5 samples, choir-singer
        sings two sessions on one stream: each mix is the echo reference at lag 0, to the
        sample; whole-chunk compensation would be 5 samples off."""
        latency = 512 * 3 + 5
        options = singer.Options()
        options.parseOptions(["calibrate", "--seconds", "1"])
        out, err = io.StringIO(), io.StringIO()
        code = await singer.calibrate(reactor, options.subOptions, out=out, err=err,
                                      device_factory=lambda i, o: EchoDevice(latency, realtime=False))
        self.assertEqual(code, 0, err.getvalue())
        self.assertIn("Latency: 1541 samples = 3.01 chunks = 34.9 ms", out.getvalue())
        calibration = load_config("singer")["calibration"]
        self.assertEqual((calibration["latency_samples"], calibration["input_device"]), (latency, None))
        self.assertIn("date", calibration)

        daemon = InProcessDaemon(self.data_dir)
        self.addCleanup(lambda: defer.ensureDeferred(daemon.stop()))
        device = CountingDevice(EchoDevice(latency))
        client, _ = await self.start_singer(daemon.port("singers"), device)
        await until(lambda: len(daemon.room.singers) == 1, what="the singer to join")
        # accepted (kept ACCEPT_SECONDS without a refusal): what was given is remembered
        await until(lambda: client.accepted, what="the server to accept the singer")
        config = load_config("singer")
        self.assertEqual((config["server"], config["port"], config["name"], config["group"]),
                         ("127.0.0.1", daemon.port("singers"), "echo", "Alto"))
        for seed in (1, 2):
            track, director = await self.session(daemon, seed=seed)
            self.assert_at_lag_zero(track, director)
        self.assertEqual(device.opened, 1)  # one duplex stream the whole time
        self.assertEqual(client.connections, 1)
        self.assertEqual([(r.sent, r.late, r.underruns, r.dropped) for r in client.reports],
                         [(len(track) // B, 0, 0, None)] * 2)
        # the daemon's own recording of the singer is aligned too
        await daemon.recording_done()
        (voice,) = daemon.room.last_session.mixer.voices.values()
        self.assertEqual((voice.name, voice.group, voice.delivered, voice.late, voice.missing),
                         ("echo", "Alto", len(track) // B, 0, 0))
        text = client.out.getvalue()
        self.assertIn("Session 2 done: 172 chunks sung.", text)
        self.assertIn("singing | 127.0.0.1:", text)

    async def test_calibrate_refuses_an_untrustworthy_measurement(self):
        """No echo at all: exit 1 with the calibration's message, nothing saved."""
        options = singer.Options()
        options.parseOptions(["calibrate", "--seconds", "1"])
        out, err = io.StringIO(), io.StringIO()
        code = await singer.calibrate(
            reactor, options.subOptions, out=out, err=err,
            device_factory=lambda i, o: EchoDevice(600, gain=0.0, noise=0.01, realtime=False))
        self.assertEqual(code, 1)
        self.assertIn("Calibration failed: no echo heard", err.getvalue())
        self.assertNotIn("calibration", load_config("singer"))

    async def test_drops_out_after_playback_underruns(self):
        """A sound card under-running every 8th block: past the budget of 5 errors the
        singer sends -2 (the daemon sees it drop out) and keeps the connection."""
        self.calibrate(700)
        daemon = InProcessDaemon(self.data_dir)
        self.addCleanup(lambda: defer.ensureDeferred(daemon.stop()))
        client, _ = await self.start_singer(daemon.port("singers"), EchoDevice(700, underrun_every=8))
        await until(lambda: len(daemon.room.singers) == 1, what="the singer to join")
        track, director = await self.session(daemon, seconds=3.0)
        (voice,) = daemon.room.last_session.mixer.voices.values()
        self.assertEqual((voice.state, voice.reason), (VoiceState.LEFT, "dropped out (-2)"))
        (report,) = client.reports
        self.assertIn("6 playback errors (more than 5)", report.dropped)
        self.assertEqual(report.underruns, 6)
        self.assertTrue(0 < report.sent < len(track) // B)
        self.assertEqual(voice.delivered, report.sent)
        self.assertTrue(director.refused)  # its only singer left: the session was aborted
        await until(lambda: client._session is None and client.state == "waiting for a session",
                    what="the singer to wait for the next session")
        self.assertEqual((client.connections, len(daemon.room.singers)), (1, 1))  # still connected
        self.assertIn("Dropped out of session 1", client.out.getvalue())

    async def test_at_the_director_port_says_where_to_go_and_exits(self):
        """choir-singer pointed at the director port: the daemon says where singers go
        (signal -4), the singer prints it and exits with status 1, without retrying."""
        self.calibrate(700)
        daemon = InProcessDaemon(self.data_dir)
        self.addCleanup(lambda: defer.ensureDeferred(daemon.stop()))
        client, done = await self.start_singer(daemon.port("director"), EchoDevice(700))
        self.assertEqual(await done, 1)
        self.assertIn(f"The server refused this singer: this is the director port; singers use "
                      f"port {daemon.port('singers')}.", client.out.getvalue())
        self.assertEqual((client.connections, client.retry_delays), (1, []))
        self.assertFalse(daemon.room.directors or daemon.room.session)
        # refused: the server, port, name and group given are not remembered
        self.assertFalse(client.accepted)
        self.assertEqual(sorted(load_config("singer")), ["calibration"])

    async def test_reconnects_with_backoff_after_a_daemon_restart(self):
        """The singer listener goes away (its connections dropped) and comes back on the
        same port: the singer retries with growing waits, reconnects and sings (at -6 dB,
        its --gain, applied before encoding)."""
        self.calibrate(1000)
        daemon = InProcessDaemon(self.data_dir)
        self.addCleanup(lambda: defer.ensureDeferred(daemon.stop()))
        port = daemon.port("singers")
        client, _ = await self.start_singer(port, EchoDevice(1000), "--gain", "-6",
                                            backoff=(0.1, 0.4))
        await until(lambda: len(daemon.room.singers) == 1, what="the singer to join")
        await daemon.ports["singers"].stopListening()
        for member in list(daemon.room.singers):
            member.drop("daemon restarting")
        await until(lambda: len(client.retry_delays) >= 4, what="refused reconnections")
        self.assertEqual(client.retry_delays[:4], [0.1, 0.2, 0.4, 0.4])
        self.assertEqual(client.connections, 1)
        daemon.ports["singers"] = reactor.listenTCP(port, RoomFactory(daemon.room, SingerProtocol),
                                                    interface="127.0.0.1")
        await until(lambda: len(daemon.room.singers) == 1, what="the singer to come back")
        self.assertEqual(client.connections, 2)
        text = client.out.getvalue()
        self.assertIn("connection refused", text)
        self.assertIn("trying again in 0.4 s", text)
        track, director = await self.session(daemon, seconds=1.5)
        self.assert_at_lag_zero(track, director, gain_db=-6.0)
        self.assertEqual(load_config("singer")["gain_db"], -6.0)  # remembered

    async def test_keepalive_and_silent_server(self):
        """Against a server that says nothing: -3 every keep-alive interval, and the
        connection dropped after the idle timeout, then a new one."""
        received = []  # one bytearray per connection
        closed = []

        class Mute(protocol.Protocol):
            def connectionMade(self):
                self.data = bytearray()
                received.append(self.data)

            def dataReceived(self, data):
                self.data += data

            def connectionLost(self, reason):
                closed.append(reactor.seconds())

        factory = protocol.ServerFactory.forProtocol(Mute)
        listener = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(listener.stopListening)
        self.calibrate(600)
        started = reactor.seconds()
        client, _ = await self.start_singer(listener.getHost().port, EchoDevice(600),
                                            keepalive_interval=0.3, idle_timeout=1.5,
                                            backoff=(0.1, 0.1))
        await until(lambda: len(received) >= 2, what="a second connection")
        self.assertGreaterEqual(closed[0] - started, 1.5)
        first = bytes(received[0])
        header = Header.parse(first[:HEADER_SIZE])
        self.assertEqual((header.name, header.group), ("echo", "Alto"))
        self.assertTrue(header.client_version.startswith("choir-singer"))
        chunks = [first[i:i + VOICE_CHUNK_SIZE] for i in range(HEADER_SIZE, len(first), VOICE_CHUNK_SIZE)]
        self.assertGreaterEqual(len(chunks), 3)
        self.assertEqual({struct.unpack(">i", c[:4])[0] for c in chunks}, {-3 * 199})
        self.assertEqual({len(c) for c in chunks}, {VOICE_CHUNK_SIZE})
        self.assertIn("The server said nothing for 1.5 s", client.out.getvalue())

    async def test_against_online_choir_113_server(self):
        """online-choir-server 1.1.3 relays the session: the singer comes back at lag 0."""
        self.calibrate(900)
        ports = {name: free_port() for name in ("slave", "master", "control")}
        log = os.path.join(self.data_dir, "server.log")
        console = open(os.path.join(self.data_dir, "server.console"), "wb")
        self.addCleanup(console.close)
        server = subprocess.Popen(
            [os.path.join(VENV_BIN, "online-choir-server"), "--slave-port", str(ports["slave"]),
             "--master-port", str(ports["master"]), "--control-port", str(ports["control"]),
             "--console", "--log-level", "WARNING", "--log-file", log],
            stdout=console, stderr=subprocess.STDOUT)
        self.addCleanup(server.wait)
        self.addCleanup(server.terminate)
        await threads.deferToThread(wait_for_port, ports["master"], server)
        client, _ = await self.start_singer(ports["slave"], EchoDevice(900))
        # 1.1.3 refuses a director while no singer is registered: wait for its log line
        await until(lambda: os.path.exists(log) and "(echo, Alto, choir-singer" in open(log).read(),
                    what="1.1.3 to register the singer")
        track, director = await self.session(ports["master"], seconds=2.0)
        self.assertFalse(director.refused)
        self.assertEqual(len(director.mix), len(track) // B)
        mix = director.mix_signal
        self.assertEqual(best_lag(mono(track), mix), 0)
        # 1.1.3 mixes in floats and rounds back: 1 LSB
        self.assertLessEqual(int(np.abs(mix.astype(np.int32) - echo_reference(track)).max()), 1)
        await until(lambda: client.reports and client.reports[0].finished, what="the tail")
        self.assertEqual(client.reports[0].sent, len(track) // B)


# -- subprocesses: Ctrl-C, and the real sounddevice path on JACK ------------------------------

class SubprocessSingerTest(unittest.TestCase):
    timeout = 90

    def setUp(self):
        self.data_dir = temp_dir(self)
        self.config_dir = os.path.join(self.data_dir, "config")

    def spawn(self, args, env, name):
        output = open(os.path.join(self.data_dir, name), "wb")  # a file: never a full pipe
        self.addCleanup(output.close)
        process = subprocess.Popen(args, stdout=output, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        self.addCleanup(process.wait)
        self.addCleanup(lambda: process.poll() is None and process.kill())
        return process

    def output(self, name):
        return open(os.path.join(self.data_dir, name), errors="replace").read()

    async def test_ctrl_c_mid_session_drops_out_and_exits_cleanly(self):
        """SIGINT while singing: -2 goes out before the connection closes, exit status 0."""
        save_config_in(self.config_dir, {"calibration": {
            "latency_samples": 800, "input_device": None, "output_device": None}})
        daemon = InProcessDaemon(self.data_dir)
        self.addCleanup(lambda: defer.ensureDeferred(daemon.stop()))
        process = self.spawn([sys.executable, "-m", "tests.support.singer_echo", "800", "--server",
                              "127.0.0.1", "--port", str(daemon.port("singers")), "--name", "sub"],
                             clean_env(self.config_dir), "singer.out")
        await until(lambda: len(daemon.room.singers) == 1, what="the singer to join")
        director = SimulatedDirector(broadband_track(20.0))
        await endpoints.connectProtocol(daemon.endpoint("director"), director)
        voices = lambda: list(daemon.room.session.mixer.voices.values()) if daemon.room.session else []
        await until(lambda: voices() and voices()[0].delivered > 40, what="the singer to sing")
        voice = voices()[0]
        process.send_signal(signal.SIGINT)
        code = await threads.deferToThread(process.wait, 20)
        self.assertEqual(code, 0, self.output("singer.out"))
        self.assertEqual((voice.state, voice.reason), (VoiceState.LEFT, "dropped out (-2)"))
        await director.done
        text = self.output("singer.out")
        self.assertIn("Session 1 starting", text)
        self.assertIn("Leaving session 1: telling the server you dropped out.", text)
        self.assertIn("Bye!", text)
        self.assertNotIn("Traceback", text)

    async def test_jack_calibrate_then_sing_at_lag_zero(self):
        """The real sounddevice path: `choir-singer calibrate` on JACK's dummy backend with
        the PortAudio client looped back, then `choir-singer` sings a session on the same
        device and lands at lag 0 in the mix, to the sample; Ctrl-C exits with 0."""
        jack = start_jack_dummy(self)
        env = clean_env(self.config_dir, **{k: v for k, v in jack.items()
                                             if k.startswith("JACK")})
        listing = await threads.deferToThread(subprocess.run, [CHOIR_SINGER, "--list-devices"],
                                              capture_output=True, text=True, env=env, timeout=30)
        self.assertEqual(listing.returncode, 0, listing.stderr)
        self.assertIn("JACK Audio Connection Kit", listing.stdout)
        calibrate = self.spawn([CHOIR_SINGER, "calibrate", "--seconds", "1.5"], env, "calibrate.out")
        pairs = await threads.deferToThread(loopback, PORTAUDIO_CLIENT, env)
        self.assertEqual(len(pairs), 1)  # out_0 -> in_0: the left channel comes back
        self.assertEqual(await threads.deferToThread(calibrate.wait, 30), 0, self.output("calibrate.out"))
        calibration = load_config_in(self.config_dir)["calibration"]
        latency = calibration["latency_samples"]
        self.assertGreaterEqual(latency, B)
        self.assertIn(f"Latency: {latency} samples", self.output("calibrate.out"))

        daemon = InProcessDaemon(self.data_dir)
        self.addCleanup(lambda: defer.ensureDeferred(daemon.stop()))
        sing = self.spawn([CHOIR_SINGER, "--server", "127.0.0.1", "--port", str(daemon.port("singers")),
                           "--name", "jack", "--group", "Bass"], env, "sing.out")
        await until(lambda: len(daemon.room.singers) == 1, what="the singer to join")
        await threads.deferToThread(loopback, PORTAUDIO_CLIENT, env)  # its stream is open
        track = broadband_track(2.0)
        track[:, 1] = track[:, 0]  # the loopback returns the left channel: make it the mono
        director = SimulatedDirector(track)
        await endpoints.connectProtocol(daemon.endpoint("director"), director)
        await director.done
        self.assertFalse(director.refused, self.output("sing.out"))
        mix = director.mix_signal
        self.assertEqual(len(mix), len(track) // B * B)
        self.assertEqual(best_lag(mono(track), mix), 0)
        self.assertLessEqual(int(np.abs(mix.astype(np.int32) - heard_and_sung(track)).max()), 1,
                             self.output("sing.out"))
        (voice,) = daemon.room.last_session.mixer.voices.values()
        self.assertEqual((voice.name, voice.group, voice.state), ("jack", "Bass", VoiceState.ACTIVE))
        sing.send_signal(signal.SIGINT)
        self.assertEqual(await threads.deferToThread(sing.wait, 20), 0, self.output("sing.out"))


def load_config_in(config_dir):
    with open(os.path.join(config_dir, "singer.json")) as f:
        return json.load(f)
