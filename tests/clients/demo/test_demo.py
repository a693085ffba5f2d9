"""choir-demo (the README's "run the main job") and its network simulator."""
import itertools
import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import soundfile
from twisted.internet import defer, endpoints, protocol, reactor
from twisted.trial import unittest

from choir_clients.demo.netsim import DelayProxy
from choir_clients.demo.signals import best_lag, broadband_track, snr_db
from choir_clients.demo.voices import expected_stem, voice_for

DEMO = os.path.join(os.path.dirname(sys.executable), "choir-demo")


def test_demo_runs_a_rehearsal_and_everyone_lands_in_time(tmp_path):
    data = tmp_path / "data"
    result = subprocess.run(
        [DEMO, "--singers", "3", "--seconds", "2", "--delays", "0,0.25,0.5",
         "--latencies", "20,55.5,101", "-d", str(data), "-o", str(tmp_path / "mix.wav"),
         "--details"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "The rehearsal: 3 of 3 singers mixed, all in time; 2.0 s of music." in out, out
    for name, group, note in (("singer1", "Soprano", "E5"), ("singer2", "Mezzo", "C5"),
                              ("singer3", "Alto", "A4")):
        assert re.search(rf"^  {name}  {group} +sings {note} +in time ", out, re.M), out
    assert "The mix the director heard lines up with every mixed singer's voice" in out
    # the engineer's figures: the sound cards' latencies (882, 2448, 4454 samples) were
    # calibrated exactly, and each stem lines up with its voice
    rows = [line.split() for line in out.splitlines() if re.match(r"singer\d ", line)]
    assert [(row[5], row[6], row[10]) for row in rows] == [
        ("882", "882", "0"), ("2448", "2448", "0"), ("4454", "4454", "0")], out
    assert "Mix: 172 of 172 chunks, offset 0 samples" in out
    (session,) = (data / "sessions").iterdir()
    assert sorted(p.name for p in session.iterdir()) == [
        "cover.png", "mix.flac", "session.json", "singer-001-singer1-Soprano.flac",
        "singer-002-singer2-Mezzo.flac", "singer-003-singer3-Alto.flac"]
    # where to listen: the paths printed are the daemon's files
    for path in ["mix.flac", "singer-001-singer1-Soprano.flac", "singer-003-singer3-Alto.flac"]:
        assert f"  {session / path}\n" in out, out
    assert f"what the director heard  {tmp_path / 'mix.wav'}" in out
    assert (tmp_path / "mix.wav").stat().st_size > 172 * 512 * 2
    # then published by an in-process runner, under a name that carries the session id
    summary = json.loads((session / "session.json").read_text())
    assert f"(session {summary['id']})\" as a video and an HLS stream" in out, out
    assert "  completed in " in out, out
    (media,) = (data / "media").iterdir()
    assert sorted(p.name for p in media.iterdir()) == ["720p.mp4", "hls", "preview-720p.png"]
    assert sorted(p.name for p in (media / "hls").iterdir()) == sorted(
        ["master.m3u8"] + [f"{r}p{suffix}" for r in (360, 480, 720)
                           for suffix in (".m3u8", "-fragmented.mp4")])
    assert f"the video (MP4)   {media / '720p.mp4'}" in out
    assert f"HLS, in a player  {media / 'hls' / 'master.m3u8'}" in out


def test_each_singer_sings_a_voice_of_its_own_in_time(tmp_path):
    """The stems differ (they are separate voices, not the track eight times), and each
    lines up with the voice its singer sang, to the sample."""
    result = subprocess.run([DEMO, "--singers", "6", "--seconds", "2", "-d", str(tmp_path),
                             "--no-publish"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    (session,) = (tmp_path / "sessions").iterdir()
    stems = [soundfile.read(path, dtype="int16")[0].astype(float)
             for path in sorted(session.glob("singer-*.flac"))]
    assert len(stems) == 6
    for a, b in itertools.combinations(range(6), 2):
        assert abs(np.corrcoef(stems[a], stems[b])[0, 1]) < 0.7, (a, b)
    track = broadband_track(2.0)  # the demo's generated track
    groups = ("Soprano", "Mezzo", "Alto", "Tenor", "Baritone", "Bass")
    for group, stem in zip(groups, stems):
        expected = expected_stem(voice_for(group, 0), track)
        assert best_lag(expected, stem) == 0, group
        assert snr_db(expected, stem) > 20, group
        assert best_lag(expected, np.roll(stem, 3)) == 3  # the measure would see a slip
    mix, _ = soundfile.read(session / "mix.flac", dtype="int16")
    assert snr_db(np.mean([expected_stem(voice_for(g, 0), track) for g in groups], 0), mix) > 20


def test_demo_without_publishing(tmp_path):
    result = subprocess.run([DEMO, "--singers", "1", "--seconds", "1", "-d", str(tmp_path),
                             "--no-publish"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "The rehearsal: 1 of 1 singer mixed, all in time; 1.0 s of music." in result.stdout
    assert "Publishing" not in result.stdout
    assert not (tmp_path / "media").exists()


def test_demo_explains_bad_options():
    result = subprocess.run([DEMO, "--latencies", "5"], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 2
    assert "latencies must be between 12 and 1000 ms" in result.stderr


class _Echo(protocol.Protocol):
    def dataReceived(self, data):
        self.transport.write(data)


class _Probe(protocol.Protocol):
    def __init__(self):
        self.received = b""
        self.arrivals = []
        self.got = defer.Deferred()

    def dataReceived(self, data):
        self.received += data
        self.arrivals.append((time.monotonic(), data))
        if len(self.received) >= 3 and not self.got.called:
            self.got.callback(None)


class DelayProxyTest(unittest.TestCase):
    async def test_delays_both_ways_and_keeps_the_order(self):
        echo = reactor.listenTCP(0, protocol.Factory.forProtocol(_Echo), interface="127.0.0.1")
        self.addCleanup(echo.stopListening)
        target = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", echo.getHost().port)
        proxy = reactor.listenTCP(0, DelayProxy(reactor, target, delay=0.1, jitter=0.05, seed=1),
                                  interface="127.0.0.1")
        self.addCleanup(proxy.stopListening)
        probe = _Probe()
        await endpoints.connectProtocol(
            endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", proxy.getHost().port), probe)
        sent = time.monotonic()
        for byte in (b"a", b"b", b"c"):
            probe.transport.write(byte)
        await probe.got
        self.assertEqual(probe.received, b"abc")  # jitter never reorders
        self.assertGreaterEqual(probe.arrivals[0][0] - sent, 0.2)  # 0.1 s each way at least
        self.assertLess(probe.arrivals[-1][0] - sent, 0.2 + 0.1 + 0.2)  # and at most the jitter more
        probe.transport.loseConnection()
