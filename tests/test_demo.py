"""choir-demo (the README's "run the main job") and its network simulator."""
import os
import subprocess
import sys
import time

from twisted.internet import defer, endpoints, protocol, reactor
from twisted.trial import unittest

from choir_clients.netsim import DelayProxy


def test_demo_runs_a_rehearsal_and_everyone_lands_at_lag_zero(tmp_path):
    data = tmp_path / "data"
    result = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "choir-demo"), "--singers", "3",
         "--seconds", "2", "--delays", "0,0.25,0.5", "--latencies", "20,55.5,101",
         "-d", str(data), "-o", str(tmp_path / "mix.wav")],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("singer") and "smp." in line]
    assert len(lines) == 3
    for line in lines:
        assert line.endswith(" 0 samples"), line
    # the sound cards' latencies (882, 2448, 4454 samples) were calibrated exactly
    assert [line.split()[6] for line in lines] == ["882", "2448", "4454"]
    assert "Mix: 172 of 172 chunks, offset 0 samples" in result.stdout
    (session,) = (data / "sessions").iterdir()
    assert sorted(p.name for p in session.iterdir()) == [
        "cover.png", "mix.flac", "session.json", "singer-001-singer1-Soprano.flac",
        "singer-002-singer2-Mezzo.flac", "singer-003-singer3-Alto.flac"]
    assert (tmp_path / "mix.wav").stat().st_size > 172 * 512 * 2
    # then published by an in-process runner: the MP4 and the HLS renditions
    assert "  completed in " in result.stdout, result.stdout
    (media,) = (data / "media").iterdir()
    assert sorted(p.name for p in media.iterdir()) == ["720p.mp4", "hls", "preview-720p.png"]
    assert sorted(p.name for p in (media / "hls").iterdir()) == sorted(
        ["master.m3u8"] + [f"{r}p{suffix}" for r in (360, 480, 720)
                           for suffix in (".m3u8", "-fragmented.mp4")])
    assert f"720p.mp4           {media / '720p.mp4'}" in result.stdout


def test_demo_without_publishing(tmp_path):
    result = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "choir-demo"), "--singers", "1",
         "--seconds", "1", "-d", str(tmp_path), "--no-publish"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Publishing" not in result.stdout
    assert not (tmp_path / "media").exists()


def test_demo_explains_bad_options():
    result = subprocess.run([os.path.join(os.path.dirname(sys.executable), "choir-demo"),
                             "--latencies", "5"], capture_output=True, text=True, timeout=30)
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
