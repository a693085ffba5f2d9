"""choir-director as a user runs it: the real program against a real daemon, what it prints
and its exit status. Headless (--simulate), no microphone, --server HOST:PORT, and the words
for a wrong port."""
import os
import re
import subprocess

import numpy as np
import soundfile
from twisted.internet import defer, protocol, reactor, threads
from twisted.trial import unittest

from choir_protocol.rehearsal.constants import FRAMES_PER_CHUNK, SAMPLE_RATE

from ...support.audio_reference import best_lag, broadband_track, heard_and_sung, mono
from ...support.daemon_process import InProcessDaemon, TwistdDaemon
from ...support.director_helpers import DIRECTOR, connect, spawn_director, until
from ...support.jack import ports, run_sounddevice, start_jack_dummy
from ...support.paths import private_config, temp_dir

SINGERS = [(0.0, 0.0, 2)]  # one simulated singer: delay s, jitter s, device latency (chunks)


def run(*args, env=None, timeout=40) -> subprocess.CompletedProcess:
    """choir-director to its end (blocking: for daemons in processes of their own)."""
    return subprocess.run([DIRECTOR, *args], capture_output=True, text=True, timeout=timeout,
                          env=env)


class _Folder(unittest.TestCase):
    timeout = 60

    def setUp(self):
        self.folder = temp_dir(self)
        self.env = dict(os.environ, CHOIR_CONFIG_DIR=private_config(self))

    def path(self, name):
        return os.path.join(self.folder, name)

    def track(self, seconds):
        track = broadband_track(seconds)
        soundfile.write(self.path("track.wav"), track, SAMPLE_RATE, "PCM_16")
        return track


class _InProcessDaemon(_Folder):
    def setUp(self):
        super().setUp()
        self.daemon = InProcessDaemon(self.path("data"))
        self.addCleanup(lambda: defer.ensureDeferred(self.daemon.stop()))

    async def singers(self):
        await connect(self, self.daemon.port("singers"), SINGERS)
        await until(lambda: len(self.daemon.room.singers) == len(SINGERS), what="the singer to join")

    def server(self):
        """--server HOST:PORT (the director port in the value), and the desk's port."""
        return ["--server", f"127.0.0.1:{self.daemon.port('director')}",
                "--desk-port", str(self.daemon.port("desk"))]

    async def director(self, *args, env=None):
        """choir-director to its end, the reactor (and the daemon) running meanwhile."""
        return await threads.deferToThread(run, *args, env=env or self.env)


class SimulateTest(_InProcessDaemon):
    async def test_simulated_card_plays_the_choir_and_the_mix_is_saved(self):
        """--simulate -i track.wav -o mix.wav, --server HOST:PORT: no sound card; the mix is
        saved whole, at lag 0, and "played" at real time into the simulated speaker."""
        await self.singers()
        track = self.track(1.5)
        done = await self.director(*self.server(), "--simulate", "-i", self.path("track.wav"),
                              "-o", self.path("mix.wav"))
        chunks = len(track) // FRAMES_PER_CHUNK
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        self.assertIn(f"Connected to 127.0.0.1:{self.daemon.port('director')}.", done.stdout)
        self.assertIn(f"received the whole mix ({chunks} chunks)", done.stdout)
        self.assertIn("Mix saved to " + self.path("mix.wav"), done.stdout)
        self.assertIn("Played 1.5 s of the choir.", done.stdout)
        self.assertEqual(done.stderr, "")
        mix, rate = soundfile.read(self.path("mix.wav"), dtype="int16")
        self.assertEqual((rate, len(mix)), (SAMPLE_RATE, chunks * FRAMES_PER_CHUNK))
        self.assertEqual(best_lag(mono(track), mix), 0)
        self.assertLessEqual(int(np.abs(mix.astype(np.int32) - heard_and_sung(track)).max()), 1)
        self.assertEqual(self.daemon.room.last_session.ended, "complete")

    async def test_simulated_microphone_sends_a_quiet_hiss(self):
        """--simulate --live: the simulated microphone (a hiss, about -50 dBFS) is sent in
        real time until Ctrl-C, and the choir's echo of it is saved."""
        await self.singers()
        process = spawn_director(self, *self.server(), "--simulate", "--live",
                                 "-o", self.path("live.wav"), env=self.env)
        await until(lambda: "The choir is in" in process.text or process.ended.called, 20,
                    "the first mix chunk")
        self.assertFalse(process.ended.called, process.text)
        process.transport.signalProcess("INT")
        self.assertEqual(await process.ended, 0, process.text)
        sent = int(re.search(r"Sent (\d+) chunks \([\d.]+ s\) of your microphone", process.text).group(1))
        mix, _ = soundfile.read(self.path("live.wav"), dtype="int16")
        self.assertEqual(len(mix), sent * FRAMES_PER_CHUNK)
        rms = float(np.sqrt(np.mean(mix.astype(np.float64) ** 2)))
        self.assertTrue(40 < rms < 250, rms)  # the hiss (0.003 of full scale is 98), not silence

    async def test_desk_takes_host_port(self):
        """`desk --server HOST:PORT`: the desk lists the singers."""
        await self.singers()
        done = await self.director("desk", *self.server(), "list")
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        self.assertRegex(done.stdout, r"singer0 +Soprano +\+0\.0 dB +127\.0\.0\.1:\d+")


class NoMicrophoneTest(_InProcessDaemon):
    async def test_plays_on_a_card_without_a_microphone(self):
        """A sound card with speakers and no microphone (JACK's dummy card without capture
        ports): choir-director plays the choir through an output-only stream."""
        env = dict(start_jack_dummy(self, capture_ports=0), **self.env)
        nothing_to_record = run_sounddevice(env, "devices")["error"]  # a duplex device fails
        self.assertIn("there is no default input device", nothing_to_record)
        await self.singers()
        self.track(1.0)
        process = spawn_director(self, *self.server(), "-i", self.path("track.wav"), env=env)
        await until(lambda: "PortAudio:out_0" in ports(env) or process.ended.called, 20,
                    "the director's output ports")
        self.assertNotIn("PortAudio:in_0", ports(env))  # no input opened
        self.assertEqual(await process.ended, 0, process.text)
        self.assertIn("Played 1.0 s of the choir.", process.text)


class ServerOptionTest(unittest.TestCase):
    def assertUsageError(self, done, message, command="choir-director"):
        """Exit status 2, the one line that says what is wrong (and where the help is)."""
        self.assertEqual(done.returncode, 2, done.stdout + done.stderr)
        self.assertEqual(done.stderr, f"choir-director: error: {message}\n(see '{command} --help')\n")
        self.assertEqual(done.stdout, "")

    def test_bad_server_values(self):
        for value, message in [
                ("127.0.0.1:x", "--server: '127.0.0.1:x': the port must be a number from 1 to 65535"),
                ("choir.example.org:0", "--server: 'choir.example.org:0': the port must be a number "
                                        "from 1 to 65535"),
                ("http://choir.example.org", "--server: 'http://choir.example.org': give a host and "
                                             "port (example.org:8868), not a URL"),
                ("a b", "--server: 'a b' is not a host name or an IP address")]:
            with self.subTest(value=value):
                self.assertUsageError(run("--server", value, "-i", "track.wav"), message)
                self.assertUsageError(run("desk", "--server", value, "list"), message,
                                      "choir-director desk")

    def test_a_port_given_twice_must_agree(self):
        self.assertUsageError(
            run("--server", "127.0.0.1:9000", "--port", "9001", "-i", "track.wav"),
            "--server 127.0.0.1:9000 says port 9000 but --port says 9001: give the port once")


class WrongPortTest(_Folder):
    """Pointed at a port that is not a director port, it says what is there."""

    def test_the_other_ports_of_a_choir_server(self):
        daemon = TwistdDaemon(self.path("data"), self.path("daemon.log"))
        self.addCleanup(daemon.stop)
        self.track(1.0)
        director, desk = daemon.ports["director"], daemon.ports["desk"]
        for role, words in [  # (regular expressions)
                ("singers", re.escape(f"is a choir server's singer port, not its director port "
                                      f"(try :{director})")),
                ("desk", re.escape(f"is a choir server's mixing-desk port, not its director port "
                                   f"(the director port is usually 20 above it: try :{desk + 20})")),
                ("http", r"is a web server \(it answered 'HTTP/1\.[01] \d{3} [^']*'\), not a choir "
                         r"server's director port \(8878 by default\)")]:
            with self.subTest(role=role):
                address = f"127.0.0.1:{daemon.ports[role]}"
                done = run("--server", address, "-i", self.path("track.wav"), "--mute", env=self.env)
                self.assertEqual(done.returncode, 1, done.stdout + done.stderr)
                self.assertRegex(done.stdout, rf"\nCannot run the session: {re.escape(address)} {words}\.\n$")
                self.assertNotIn("Note:", done.stdout)  # (no desk 20 below: not worth a word here)
                self.assertEqual(done.stderr, "")

    async def test_other_services(self):
        self.track(1.0)
        for greeting, answer, words in [
                (None, None, "closed the connection without a word: it is not a choir server's director "
                       "port, or that server has stopped"),
                (b"SSH-2.0-OpenSSH_9.6\r\n", None, "answered 'SSH-2.0-OpenSSH_9.6': it is not a choir "
                                            "server's director port"),
                (None, b"HTTP/1.1 400 Bad Request\r\n\r\n", "is a web server (it answered 'HTTP/1.1 400 "
                                                      "Bad Request'), not a choir server's director "
                                                      "port (8878 by default)")]:
            with self.subTest(greeting=greeting, answer=answer):
                listening = reactor.listenTCP(0, _Service.factory(greeting, answer),
                                              interface="127.0.0.1")
                self.addCleanup(listening.stopListening)
                address = f"127.0.0.1:{listening.getHost().port}"
                done = await threads.deferToThread(run, "--server", address, "-i",
                                                   self.path("track.wav"), "--mute", env=self.env)
                self.assertEqual(done.returncode, 1, done.stdout + done.stderr)
                self.assertTrue(done.stdout.endswith(f"Cannot run the session: {address} {words}.\n"),
                                done.stdout)


class _Service(protocol.Protocol):
    """A TCP service that is not a choir server: it says ``greeting`` on connection (a
    banner), ``answer`` to the first bytes it gets (an HTTP error), and closes; with
    neither, it closes at once."""

    def __init__(self, greeting, answer):
        self.greeting, self.answer = greeting, answer

    @classmethod
    def factory(cls, greeting, answer):
        return protocol.Factory.forProtocol(lambda: cls(greeting, answer))

    def connectionMade(self):
        if self.greeting is not None:
            self.transport.write(self.greeting)
        if self.answer is None:
            self.transport.loseConnection()

    def dataReceived(self, data):
        if self.answer is not None:
            self.transport.write(self.answer)
            self.transport.loseConnection()
            self.answer = None
