"""choir-director: sessions against our daemon and online-choir 1.1.3's server, the desk,
remembered gains, Ctrl-C, refusals, playback and the live microphone.

Over 400 lines: choir-director's paths through one set of fixtures; its command line is also
tested in test_director_cli.py.
"""
import io
import json
import math
import os
import re
import subprocess

import numpy as np
import soundfile
from twisted.internet import defer, reactor, threads
from twisted.trial import unittest

from choir_clients.rehearsal import director, director_options, director_status
from choir_clients.rehearsal.desk_client import (DeskError, Singer, find_singer, format_gain,
                                                 parse_db)
from choir_clients.rehearsal.media import load_track
from choir_clients.rehearsal.simulated_devices import FileMicrophone
from choir_protocol.rehearsal.constants import FRAMES_PER_CHUNK, SAMPLE_RATE

from ...support.audio_reference import best_lag, broadband_track, heard_and_sung, mono
from ...support.daemon_process import InProcessDaemon, free_port
from ...support.director_helpers import (DIRECTOR, DirectorProcess, RecordingSpeaker, Server113,
                                         connect, director_args, encode, level_ratio, make_signal,
                                         run_director, until)
from ...support.paths import private_config, temp_dir

SPECS = [(0.0, 0.0, 2), (0.05, 0.02, 4), (0.15, 0.05, 7)]  # delay s, jitter s, device latency


class DaemonTestCase(unittest.TestCase):
    timeout = 60

    def setUp(self):
        self.folder = temp_dir(self)
        self.config = private_config(self)
        self.daemon = InProcessDaemon(os.path.join(self.folder, "data"))
        self.addCleanup(lambda: defer.ensureDeferred(self.daemon.stop()))

    async def singers(self, specs, names=None, groups=None):
        singers = await connect(self, self.daemon.port("singers"), specs, names, groups)
        await until(lambda: len(self.daemon.room.singers) >= len(specs), what="the singers to join")
        return singers

    def path(self, name):
        return os.path.join(self.folder, name)


class SessionTest(DaemonTestCase):
    async def test_mp3_at_48k_comes_back_whole_at_lag_zero(self):
        """A 48 kHz mono MP3: resampled by ffmpeg, streamed, and the saved mix (--output) is
        the track as load_track decodes it, at lag 0, sample for sample."""
        await self.singers(SPECS)
        mp3 = encode(make_signal(3.0, 48000), 48000, self.path("song.mp3"), "-c:a", "libmp3lame",
                     "-b:a", "160k")
        output = self.path("mix.flac")
        code, printed, session = await run_director(*director_args(
            self.daemon, "--input", mp3, "--mute", "--output", output))
        self.assertEqual(code, 0, printed)

        track = load_track(mp3)  # MP3's encoder delay included, as it was sent
        chunks = len(track) // FRAMES_PER_CHUNK
        self.assertGreaterEqual(chunks, int(3.0 * SAMPLE_RATE / FRAMES_PER_CHUNK))
        info = soundfile.info(output)
        self.assertEqual((info.format, info.samplerate, info.channels, info.subtype),
                         ("FLAC", SAMPLE_RATE, 1, "PCM_16"))
        mix, _ = soundfile.read(output, dtype="int16")
        self.assertEqual(len(mix), len(track))
        self.assertEqual(best_lag(mono(track), mix), 0)
        # three singers sent the same bytes: the mean is what one perfect singer returns
        self.assertLessEqual(int(np.abs(mix.astype(np.int32) - heard_and_sung(track)).max()), 1)
        self.assertIn(f"received the whole mix ({chunks} chunks)", printed)
        self.assertIn("singers: 3", printed)  # the status line counted them (desk list)
        self.assertRegex(printed, r"mix: +-\d+\.\d dBFS")
        self.assertEqual(self.daemon.room.last_session.ended, "complete")

    async def test_refused_without_singers(self):
        """No singer connected: -2 at once; the program says why and exits with status 1."""
        track_file = encode(make_signal(1.0, SAMPLE_RATE, 2), SAMPLE_RATE, self.path("t.wav"))
        result = await threads.deferToThread(
            subprocess.run, [DIRECTOR, *director_args(self.daemon, "--input", track_file, "--mute",
                                                      "--output", self.path("mix.wav"))],
            capture_output=True, text=True, timeout=30, env=dict(os.environ, CHOIR_CONFIG_DIR=self.config))
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        # our daemon gives its reason (signal -4); 1.1.3's -2 gets REFUSED_HELP's guesses
        self.assertIn("The server refused the session: no singer is connected.", result.stdout)
        self.assertFalse(os.path.exists(self.path("mix.wav")))

    async def test_at_the_singer_port_says_where_to_go(self):
        """Pointed at the singer port, choir-director is told where directors go."""
        singers = self.daemon.port("singers")
        code, printed, _ = await run_director(
            "--server", "127.0.0.1", "--port", str(singers), "--desk-port",
            str(self.daemon.port("desk")), "--input", "b.wav", "--mute", track=broadband_track(0.5))
        self.assertEqual(code, 1)
        self.assertIn(f"Cannot run the session: 127.0.0.1:{singers} is a choir server's singer "
                      f"port, not its director port (try :{self.daemon.port('director')}).", printed)
        self.assertFalse(self.daemon.room.singers)

    async def test_no_desk_is_noted_once_the_choir_is_in(self):
        """The desk cannot be reached: the session runs, and says so when the mix comes
        (not before: at a wrong port, only the wrong port is worth a word)."""
        await self.singers(SPECS[:1])
        code, printed, _ = await run_director(
            "--server", f"127.0.0.1:{self.daemon.port('director')}", "--desk-port", str(free_port()),
            "--input", "b.wav", "--mute", track=broadband_track(0.5))
        self.assertEqual(code, 0, printed)
        self.assertRegex(printed, r"The choir is in: the mix is coming back\.\nNote: cannot reach the "
                                  r"mixing desk at 127\.0\.0\.1:\d+ \(connection refused")

    async def test_no_server(self):
        code, printed, _ = await run_director("--server", "127.0.0.1", "--port", "1", "--desk-port",
                                              "2", "--input", "b.wav", "--mute",
                                              track=broadband_track(0.5))
        self.assertEqual(code, 1)
        self.assertIn("Cannot reach the choir server at 127.0.0.1:1 (connection refused", printed)

    async def test_ctrl_c_ends_cleanly_with_the_mix_of_what_was_sent(self):
        """SIGINT mid-session to a choir-director process: it sends -1 at once, waits for the
        mix of every chunk it sent, saves it, exits 0."""
        await self.singers(SPECS[:2])
        track = broadband_track(20.0)
        track_file = self.path("long.wav")
        soundfile.write(track_file, track, SAMPLE_RATE, "PCM_16")
        output = self.path("mix.wav")
        process = DirectorProcess()
        reactor.spawnProcess(process, DIRECTOR, [DIRECTOR, *director_args(
            self.daemon, "--input", track_file, "--mute", "--output", output)],
            env=dict(os.environ, CHOIR_CONFIG_DIR=self.config))
        self.addCleanup(process.kill)
        await until(lambda: "The choir is in" in process.text or process.ended.called, 20,
                    "the first mix chunk")
        self.assertFalse(process.ended.called, process.text)
        process.transport.signalProcess("INT")
        code = await process.ended
        self.assertEqual(code, 0, process.text)
        self.assertIn("Stopping: no more track is sent", process.text)
        sent = int(re.search(r"Sent (\d+) chunks", process.text).group(1))
        total = len(track) // FRAMES_PER_CHUNK
        self.assertGreaterEqual(sent, 516)  # the 6 s lead had gone out
        self.assertLess(sent, total - 300)  # it did stop mid-track
        mix, _ = soundfile.read(output, dtype="int16")
        self.assertEqual(len(mix), sent * FRAMES_PER_CHUNK)
        part = track[:len(mix)]
        self.assertEqual(best_lag(mono(part), mix), 0)
        self.assertLessEqual(int(np.abs(mix.astype(np.int32) - heard_and_sung(part)).max()), 1)
        session = self.daemon.room.last_session
        self.assertEqual(session.ended, "complete")


    async def test_second_ctrl_c_quits_at_once(self):
        """A second SIGINT while the tail is awaited: exit 130 at once, nothing saved."""
        await self.singers(SPECS[:1])
        track_file = self.path("long.wav")
        soundfile.write(track_file, broadband_track(20.0), SAMPLE_RATE, "PCM_16")
        process = DirectorProcess()
        reactor.spawnProcess(process, DIRECTOR, [DIRECTOR, *director_args(
            self.daemon, "--input", track_file, "--mute", "--output", self.path("mix.wav"))],
            env=dict(os.environ, CHOIR_CONFIG_DIR=self.config))
        self.addCleanup(process.kill)
        await until(lambda: "The choir is in" in process.text or process.ended.called, 20,
                    "the first mix chunk")
        process.transport.signalProcess("INT")
        await until(lambda: "Stopping" in process.text or process.ended.called, 10, "the first stop")
        process.transport.signalProcess("INT")
        self.assertEqual(await process.ended, 130, process.text)
        self.assertTrue(process.text.rstrip().endswith("Quit."), process.text)
        self.assertFalse(os.path.exists(self.path("mix.wav")))


class DeskTest(DaemonTestCase):
    async def test_gain_changes_mid_session_are_heard(self):
        """Two singers; a third of the way in one is muted (the mix halves: the daemon
        divides by the singers present), two thirds in set to -12 dB ((1 + 1/4) / 2)."""
        await self.singers([(0.0, 0.0, 3), (0.02, 0.01, 5)], names=["Anna", "Ben"],
                           groups=["Alto", "Bass"])
        track = broadband_track(4.5)
        chunks = len(track) // FRAMES_PER_CHUNK
        options = director.parse(director_args(self.daemon, "--input", "backing.wav", "--mute"))
        session = director.DirectorRun(reactor, options, io.StringIO(), track=track)
        running = defer.ensureDeferred(session.run())
        marks = []
        for fraction, command in ((1 / 3, ["mute", "ben"]), (2 / 3, ["gain", "Ben", "-12"])):
            await until(lambda: session.director is not None
                        and session.director.conn.received >= chunks * fraction, 20, "the mix")
            before = session.director.conn.received  # mixed before the change
            code, printed, _ = await run_director(*director_args(self.daemon, "desk", *command))
            self.assertEqual(code, 0, printed)
            marks.append((before, session.director.conn.received))
        self.assertIn("Ben (Bass): -12.0 dB", printed)
        self.assertEqual(await running, 0)
        mix = session.director.mix_signal
        self.assertEqual(len(mix), len(track))
        full = heard_and_sung(track)  # both singers at 0 dB
        margin = 12  # chunks mixed while the command was on its way (a tick is 3.4 chunks)
        assert_near(self, level_ratio(mix, full, 0, marks[0][0]), 1.0, delta=0.01)
        assert_near(self, level_ratio(mix, full, marks[0][1] + margin, marks[1][0]), 0.5, delta=0.01)
        assert_near(self, level_ratio(mix, full, marks[1][1] + margin, chunks), 0.625, delta=0.01)
        # the desk remembered both choices, in order: muted, then -12 dB
        saved = json.load(open(os.path.join(self.config, "director.json")))
        self.assertEqual(saved["gains"]["Bass"]["Ben"]["muted"], False)
        assert_near(self, saved["gains"]["Bass"]["Ben"]["gain"], 10 ** (-12 / 20))

    async def test_remembered_gains_are_applied_in_the_next_session(self):
        """A gain set with `desk` is remembered per name + group; singers who come back (new
        connections, the daemon has forgotten them) get it at the start of the next session,
        from its first chunk. Same name, other group: not touched."""
        first = await self.singers([(0.0, 0.0, 2)] * 3, names=["Anna", "Ben", "Ben"],
                                   groups=["Alto", "Bass", "Tenor"])
        code, printed, _ = await run_director(*director_args(self.daemon, "desk", "gain",
                                                             "127.0.0.1:%d" % _port_of(first[1]), "-12 dB"))
        self.assertEqual(code, 0, printed)
        code, printed, _ = await run_director(*director_args(self.daemon, "desk", "mute", "anna"))
        self.assertEqual(code, 0, printed)
        code, printed, _ = await run_director(*director_args(self.daemon, "desk", "unmute", "Anna"))
        self.assertIn("Anna (Alto): +0.0 dB", printed)
        code, printed, _ = await run_director(*director_args(self.daemon, "desk", "group", "alto", "-6"))
        self.assertIn("Anna (Alto): -6.0 dB", printed)
        for singer in first:
            singer.transport.loseConnection()
            await singer.disconnected
        await until(lambda: not self.daemon.room.singers, what="the singers to leave")

        await self.singers([(0.0, 0.0, 2)] * 3, names=["Anna", "Ben", "Ben"],
                           groups=["Alto", "Bass", "Tenor"])
        code, listing, _ = await run_director(*director_args(self.daemon, "desk", "list"))
        self.assertRegex(listing, r"Ben +Bass +\+0\.0 dB \(remembered: -12\.0 dB\)")
        track = broadband_track(2.0)
        code, printed, session = await run_director(
            *director_args(self.daemon, "--input", "backing.wav", "--mute"), track=track)
        self.assertEqual(code, 0, printed)
        self.assertIn("Remembered levels: ", printed)
        self.assertIn("Ben (Bass) -12.0 dB", printed)
        self.assertIn("Anna (Alto) -6.0 dB", printed)
        self.assertNotIn("Ben (Tenor)", printed)
        mix = session.director.mix_signal
        expected = (10 ** (-6 / 20) + 10 ** (-12 / 20) + 1.0) / 3
        chunks = len(track) // FRAMES_PER_CHUNK
        assert_near(self, level_ratio(mix, heard_and_sung(track), 0, 8), expected, delta=0.01)
        assert_near(self, level_ratio(mix, heard_and_sung(track), 0, chunks), expected, delta=0.01)
        code, listing, _ = await run_director(*director_args(self.daemon, "desk", "list"))
        self.assertRegex(listing, r"Ben +Bass +-12\.0 dB")
        self.assertRegex(listing, r"Ben +Tenor +\+0\.0 dB")

    async def test_desk_errors(self):
        await self.singers([(0.0, 0.0, 2)] * 2, names=["Anna", "Anne"], groups=["Alto", "Alto"])
        code, printed, _ = await run_director(*director_args(self.daemon, "desk", "gain", "Ann", "-3"))
        self.assertEqual(code, 1)
        self.assertIn("several singers match 'Ann'", printed)
        code, printed, _ = await run_director(*director_args(self.daemon, "desk", "mute", "Zoe"))
        self.assertEqual(code, 1)
        self.assertIn("no singer called 'Zoe'", printed)
        code, printed, _ = await run_director(*director_args(self.daemon, "desk", "group", "bass", "0"))
        self.assertEqual(code, 1)
        self.assertIn("groups: Alto", printed)
        code, printed, _ = await run_director("--server", "127.0.0.1", "--desk-port", "1", "desk")
        self.assertEqual(code, 1)
        self.assertIn("cannot reach the mixing desk", printed)


def assert_near(test, value, expected, delta=1e-9):
    """(trial's assertAlmostEqual ignores ``delta``)"""
    test.assertLessEqual(abs(value - expected), delta, f"{value} is not {expected} ± {delta}")


def _port_of(singer):
    return singer.transport.getHost().port


class OnlineChoir113ServerTest(unittest.TestCase):
    timeout = 60

    async def test_director_and_desk_against_113_server(self):
        """online-choir 1.1.3's server, simulated singers: the whole mix at lag 0; the desk
        (1.1.3 lists checked-in singers only) lists them, and muting one halves the mix."""
        folder = temp_dir(self)
        private_config(self)
        server = Server113(folder)
        self.addCleanup(server.stop)
        await server.ready()
        await connect(self, server.singers, [(0.0, 0.0, 3), (0.03, 0.01, 5)], names=["Anna", "Ben"],
                      groups=["Alto", "Bass"])
        await until(lambda: server.registered() >= 2, 20, "1.1.3 to register the singers")

        track = broadband_track(4.0)
        chunks = len(track) // FRAMES_PER_CHUNK
        args = ["--server", "127.0.0.1", "--port", str(server.director), "--desk-port", str(server.desk)]
        out = io.StringIO()
        session = director.DirectorRun(reactor, director.parse(args + ["--input", "b.wav", "--mute"]), out,
                                   track=track)
        running = defer.ensureDeferred(session.run())
        await until(lambda: session.director is not None and session.director.conn.received >= chunks / 3,
                    20, "a third of the mix")
        code, listing, _ = await run_director(*args, "desk", "list")
        self.assertEqual(code, 0, listing)
        self.assertRegex(listing, r"Anna +Alto +\+0\.0 dB +127\.0\.0\.1:\d+")
        self.assertRegex(listing, r"Ben +Bass +\+0\.0 dB +127\.0\.0\.1:\d+")
        before = session.director.conn.received  # mixed before the change
        code, printed, _ = await run_director(*args, "desk", "mute", "Ben")
        self.assertEqual(code, 0, printed)
        self.assertIn("Ben (Bass): muted", printed)  # as 1.1.3's list reports it afterwards
        after = session.director.conn.received
        self.assertEqual(await running, 0, out.getvalue())

        mix = session.director.mix_signal
        self.assertEqual(len(mix), len(track))
        self.assertEqual(best_lag(mono(track), mix), 0)
        full = heard_and_sung(track)
        self.assertLessEqual(int(np.abs(mix[:before * FRAMES_PER_CHUNK].astype(np.int32)
                                        - full[:before * FRAMES_PER_CHUNK]).max()), 2)
        # 1.1.3 divides by the singers of the start: a muted one halves the mix
        assert_near(self, level_ratio(mix, full, after + 12, chunks), 0.5, delta=0.01)
        self.assertIn("singers: 2", out.getvalue())


    async def test_at_the_113_desk_port(self):
        """1.1.3's control port says nothing to a director's bytes: once the director gives
        up waiting, it asks the port as a desk would, and names it."""
        folder = temp_dir(self)
        private_config(self)
        server = Server113(folder)
        self.addCleanup(server.stop)
        await server.ready()
        out = io.StringIO()
        session = director.DirectorRun(reactor, director.parse([
            "--server", f"127.0.0.1:{server.desk}", "--input", "b.wav", "--mute"]), out,
            track=broadband_track(1.0), idle_timeout=1.0)
        self.assertEqual(await session.run(), 1, out.getvalue())
        self.assertIn(f"Cannot run the session: 127.0.0.1:{server.desk} is a choir server's "
                      "mixing-desk port, not its director port", out.getvalue())


class PlaybackTest(DaemonTestCase):
    async def test_plays_the_mix_with_the_monitor(self):
        """Not muted: the mix is played after 2 s of buffer, plus the backing track at
        --monitor-level, without a gap, and the program waits for the end of playback."""
        await self.singers(SPECS[:1])
        track = broadband_track(2.5)
        speaker = RecordingSpeaker()
        code, printed, session = await run_director(
            *director_args(self.daemon, "--input", "b.wav", "--monitor-level", "0.5"), track=track,
            device_factory=lambda **devices: speaker)
        self.assertEqual(code, 0, printed)
        self.assertTrue(speaker.stream.ended.is_set())  # it returned after playback ended
        played = np.concatenate(speaker.played)
        self.assertFalse(np.isnan(played).any())
        np.testing.assert_array_equal(played[:, 0], played[:, 1])
        sound = np.flatnonzero(np.abs(played[:, 0]) > 0)
        start = sound[0] // FRAMES_PER_CHUNK * FRAMES_PER_CHUNK
        heard = played[start:start + len(track), 0]
        expected = (session.director.mix_signal.astype(np.float32) / 32768
                    + 0.5 * track.astype(np.float32).mean(axis=1) / 32768)
        np.testing.assert_allclose(heard, np.clip(expected, -1, 1), atol=1e-6)
        self.assertEqual(session.player.underruns, 0)
        self.assertEqual(session.player.played, len(track) // FRAMES_PER_CHUNK)
        # playback began only when 2 s were buffered (or the whole mix was in)
        self.assertGreaterEqual(start // FRAMES_PER_CHUNK, 100)

    async def test_live_microphone(self):
        """--live: the microphone (here a file played into it) is streamed as it comes;
        Ctrl-C (interrupt) ends it and the mix of what was sent comes back at lag 0."""
        await self.singers(SPECS[:2])
        voice = mono(broadband_track(4.0)).astype("<i2")  # a microphone is mono
        path = self.path("voice.wav")
        soundfile.write(path, voice, SAMPLE_RATE, "PCM_16")
        options = director.parse(director_args(self.daemon, "--live", "--output", self.path("live.wav")))
        self.assertTrue(options["mute"])  # --live implies --mute
        out = io.StringIO()
        session = director.DirectorRun(reactor, options, out,
                                   device_factory=lambda **devices: FileMicrophone(path))
        running = defer.ensureDeferred(session.run())
        await until(lambda: session.director is not None and session.director.conn.received >= 150,
                    20, "150 chunks of mix")
        session.interrupt()
        self.assertEqual(await running, 0, out.getvalue())
        mix, _ = soundfile.read(self.path("live.wav"), dtype="int16")
        sent = session.director.conn.sent
        self.assertEqual(len(mix), sent * FRAMES_PER_CHUNK)
        self.assertLess(sent, 300)  # live: never far ahead of the mix
        part = np.repeat(voice[:len(mix), None], 2, axis=1)  # sent on both channels
        self.assertEqual(best_lag(mono(part), mix), 0)
        self.assertLessEqual(int(np.abs(mix.astype(np.int32) - heard_and_sung(part)).max()), 1)


class SoundCardTest(DaemonTestCase):
    async def test_plays_through_a_sound_card(self):
        """choir-director (not muted) plays the choir through SoundDevice (PortAudio) on
        JACK's dummy sound card: recorded off its output ports, what it played is the
        saved mix plus the backing track at --monitor-level, to the last bit."""
        from ...support.jack import ports, start_jack_dummy
        env = dict(start_jack_dummy(self), CHOIR_CONFIG_DIR=self.config)
        await self.singers(SPECS[:2])
        track = broadband_track(1.5)
        track_file, output, recording = self.path("t.wav"), self.path("mix.wav"), self.path("rec.wav")
        soundfile.write(track_file, track, SAMPLE_RATE, "PCM_16")
        process = DirectorProcess()
        reactor.spawnProcess(process, DIRECTOR, [DIRECTOR, *director_args(
            self.daemon, "--input", track_file, "--monitor-level", "0.25", "--output", output)], env=env)
        self.addCleanup(process.kill)
        await until(lambda: "PortAudio:out_0" in ports(env) or process.ended.called, 20,
                    "the director's output ports")
        # its stream is open: record what it plays (it waits for 2 s of mix, or all of it)
        recorder = threads.deferToThread(subprocess.run, [
            "jack_rec", "-f", recording, "-d", "7", "-b", "16", "PortAudio:out_0", "PortAudio:out_1"],
            capture_output=True, env=env, timeout=30)
        self.assertEqual(await process.ended, 0, process.text)
        self.assertIn("Played 1.5 s of the choir.", process.text)
        await recorder
        played, rate = soundfile.read(recording, dtype="int16")
        self.assertEqual(rate, SAMPLE_RATE)
        np.testing.assert_array_equal(played[:, 0], played[:, 1])
        mix, _ = soundfile.read(output, dtype="int16")
        expected = mix / 32768 + 0.25 * track.astype(np.float64).mean(axis=1) / 32768
        heard = played[:, 0] / 32768
        start = int(np.argmax(np.correlate(heard, expected[:8192], "valid")))
        self.assertEqual(start % FRAMES_PER_CHUNK, 0)  # JACK periods are 512 frames too
        self.assertLessEqual(np.abs(heard[start:start + len(expected)] - expected).max(), 1 / 32768)
        self.assertFalse(np.abs(heard[:start]).any())  # silence while buffering


class UnitTest(unittest.TestCase):
    def test_db(self):
        self.assertEqual(parse_db("-6"), -6.0)
        self.assertEqual(parse_db("+3 dB"), 3.0)
        self.assertEqual(parse_db("-12dB"), -12.0)
        self.assertEqual(parse_db("-inf"), -math.inf)
        self.assertEqual(parse_db("off"), -math.inf)
        for bad in ("loud", "+41", "nan"):
            with self.assertRaises(DeskError):
                parse_db(bad)
        self.assertEqual(format_gain(0), "muted")
        self.assertEqual(format_gain(1.0), "+0.0 dB")
        self.assertEqual(format_gain(0.5), "-6.0 dB")

    def test_find_singer(self):
        singers = [Singer(("10.0.0.1", 5000), "Anna", "Alto", 1.0),
                   Singer(("10.0.0.2", 5000), "anna", "Soprano", 1.0),
                   Singer(("10.0.0.3", 5001), "Bernard", "Bass", 1.0),
                   Singer(("monitor",), "Monitor", "No group", 1.0)]
        self.assertEqual(find_singer(singers, "bern").name, "Bernard")
        self.assertEqual(find_singer(singers, "10.0.0.2:5000").group, "Soprano")
        with self.assertRaisesRegex(DeskError, "several singers match 'ANNA'"):
            find_singer(singers, "ANNA")
        with self.assertRaises(DeskError):
            find_singer(singers, "Monitor")  # 1.1.3's backing-track source is not a singer

    def test_status_line(self):
        tty = io.StringIO()
        line = director_status.DirectorStatus(tty, total_chunks=862, tty=True)
        line.received, line.singers, line.level = 431, 8, -18.04
        line.update()
        line.received = 862
        line.update()
        text = tty.getvalue()
        self.assertEqual(text.count("\r"), 2)
        self.assertNotIn("\n", text)
        self.assertIn("[############------------] 0:05 / 0:10  singers: 8  mix: -18.0 dBFS", text)
        piped = io.StringIO()
        line = director_status.DirectorStatus(piped, total_chunks=None, tty=False, interval=60)
        line.update()
        line.update()  # within the interval: not printed again
        self.assertEqual(piped.getvalue(), "live 0:00  singers: ?  mix:    - dBFS\n")

    def test_options(self):
        options = director.parse(["--input", "x.mp3"])
        self.assertEqual((options["server"], options["port"], options["desk-port"]),
                         ("127.0.0.1", 8878, 8858))
        options = director.parse(["--port", "9000", "desk", "gain", "Anna", "-12"])
        self.assertEqual((options.subOptions["desk-port"], options.subOptions.command,
                          options.subOptions.arguments), (8980, "gain", ["Anna", "-12"]))
        for bad in ([], ["--input", "x", "--live"], ["--input", "x", "--output", "x.mp3"],
                    ["--input", "x", "--monitor-level", "2"], ["desk", "gain", "Anna"],
                    ["desk", "shout"]):
            with self.assertRaises(director_options.usage.UsageError, msg=bad):
                director.parse(bad)
        for bad in (["--server", "h:9000", "--port", "9001", "--input", "x"],
                    ["--simulate", "--output-device", "1", "--input", "x"],
                    ["desk", "--server", "h:x"], ["--server", "", "--input", "x"]):
            with self.assertRaises(director_options.usage.UsageError, msg=bad):
                director.parse(bad)

    def test_server_with_a_port(self):
        """The port in --server is the director port; the desk port follows it."""
        options = director.parse(["--server", "choir.example.org:9000", "--input", "x"])
        self.assertEqual((options["server"], options["port"], options["desk-port"]),
                         ("choir.example.org", 9000, 8980))
        options = director.parse(["--server", "[::1]:9000", "--port", "9000", "--input", "x"])
        self.assertEqual((options["server"], options["port"]), ("::1", 9000))  # (the same twice)
        options = director.parse(["--server", "h:9000", "desk", "list"])  # inherited by the desk
        self.assertEqual((options.subOptions["server"], options.subOptions["port"],
                          options.subOptions["desk-port"]), ("h", 9000, 8980))
        options = director.parse(["desk", "--server", "other:7000", "--desk-port", "7001", "list"])
        self.assertEqual((options.subOptions["server"], options.subOptions["port"],
                          options.subOptions["desk-port"]), ("other", 7000, 7001))


class _FakeStatus:
    input_overflow = output_underflow = False


class _FakeSounddevice:
    """sounddevice on a machine whose only card has speakers and no microphone: records
    which stream class is opened, with what."""

    class PortAudioError(Exception):
        pass

    class CallbackStop(Exception):
        pass

    CallbackAbort = CallbackStop

    def __init__(self):
        self.opened = []

    def query_devices(self, device=None, kind=None):
        if kind == "input":
            raise self.PortAudioError("Error querying device -1")
        return {"name": "speakers", "index": 0}

    def check_input_settings(self, **settings):
        raise self.PortAudioError("no input")

    def check_output_settings(self, **settings):
        pass

    def _open(self, kind, **settings):
        self.opened.append((kind, settings))
        return kind

    def Stream(self, **settings):
        return self._open("Stream", **settings)

    def OutputStream(self, **settings):
        return self._open("OutputStream", **settings)

    def InputStream(self, **settings):
        return self._open("InputStream", **settings)


class SoundDeviceDirectionsTest(unittest.TestCase):
    """SoundDevice opens only the directions it is asked for: playing needs no microphone."""

    def setUp(self):
        from choir_clients.rehearsal import devices
        self.sd = _FakeSounddevice()
        self.patch(devices, "_sounddevice", lambda: self.sd)
        self.patch(devices, "list_devices", lambda: "  0  speakers")  # (in error messages)
        self.devices = devices

    def test_playback_opens_an_output_stream(self):
        calls = []
        device = self.devices.SoundDevice(output_device="2", need_input=False)
        self.assertEqual(device.name, "speakers")
        device.open(lambda indata, outdata, status: (calls.append(indata.copy()), outdata.fill(0.5)))
        [(kind, settings)] = self.sd.opened
        self.assertEqual((kind, settings["channels"], settings["device"], settings["blocksize"]),
                         ("OutputStream", 2, 2, FRAMES_PER_CHUNK))
        outdata = np.zeros((FRAMES_PER_CHUNK, 2), np.float32)
        settings["callback"](outdata, FRAMES_PER_CHUNK, None, _FakeStatus())
        self.assertEqual(calls[0].shape, (FRAMES_PER_CHUNK, 1))
        self.assertFalse(calls[0].any())  # the missing microphone is silence
        self.assertTrue((outdata == 0.5).all())  # what the callback played

    def test_a_duplex_device_needs_the_microphone(self):
        with self.assertRaisesRegex(self.devices.DeviceError, "no default input device"):
            self.devices.SoundDevice()

    def test_recording_opens_an_input_stream(self):
        self.sd.check_input_settings = lambda **settings: None
        self.sd.query_devices = lambda device=None, kind=None: {"name": "mic", "index": 1}
        heard = []
        self.devices.SoundDevice(need_output=False).open(
            lambda indata, outdata, status: (heard.append(indata[0, 0]), outdata.fill(1.0)))
        [(kind, settings)] = self.sd.opened
        self.assertEqual((kind, settings["channels"]), ("InputStream", 1))
        settings["callback"](np.full((FRAMES_PER_CHUNK, 1), 0.25, np.float32), FRAMES_PER_CHUNK,
                             None, _FakeStatus())
        self.assertEqual(heard, [0.25])
