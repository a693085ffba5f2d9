"""Helpers for the choir-director tests: signals, the 1.1.3 server, levels."""
import io
import os
import subprocess
import threading
import time

import numpy as np
import soundfile
from twisted.internet import defer, endpoints, protocol, reactor, task, threads

from choir_clients.demo.simulated import SimulatedSinger
from choir_clients.rehearsal import director
from choir_protocol.rehearsal.constants import FRAMES_PER_CHUNK, SAMPLE_RATE

from .daemon_process import VENV_BIN, free_port, wait_for_port


def make_signal(seconds: float, rate: int, channels: int = 1, seed: int = 3) -> np.ndarray:
    """Float (n, channels) in [-1, 1): a chirp, two tones and band-limited noise at ``rate``,
    with a sharp autocorrelation peak (for best_lag) and a steady level."""
    n = int(seconds * rate)
    t = np.arange(n) / rate
    rng = np.random.default_rng(seed)
    out = []
    for c in range(channels):
        chirp = np.sin(2 * np.pi * (200 + 1500 * t / t[-1]) * t + c)
        tone = np.sin(2 * np.pi * (330 + 110 * c) * t)
        noise = np.convolve(rng.standard_normal(n), np.ones(6) / 6, "same")
        out.append(0.15 * chirp + 0.1 * tone + 0.12 * noise)
    return np.stack(out, 1).astype(np.float32)


def encode(samples: np.ndarray, rate: int, path: str, *ffmpeg_args: str) -> str:
    """Write ``samples`` (float) with soundfile (WAV/FLAC/OGG by extension), or through a
    temporary WAV and ffmpeg for the other formats (MP3, M4A)."""
    extension = os.path.splitext(path)[1].lower()
    if extension in (".wav", ".flac", ".ogg"):
        soundfile.write(path, samples, rate, subtype={".ogg": "VORBIS"}.get(extension, "PCM_16"))
        return path
    wav = path + ".source.wav"
    soundfile.write(wav, samples, rate, subtype="PCM_16")
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", wav,
                    *ffmpeg_args, path], check=True, capture_output=True, timeout=60)
    os.unlink(wav)
    return path


def chunk_rms(signal: np.ndarray) -> np.ndarray:
    """RMS of each 512-sample chunk of a mono signal."""
    chunks = signal[:len(signal) // FRAMES_PER_CHUNK * FRAMES_PER_CHUNK].astype(np.float64)
    return np.sqrt(np.mean(chunks.reshape(-1, FRAMES_PER_CHUNK) ** 2, axis=1))


def level_ratio(mix: np.ndarray, reference: np.ndarray, first: int, last: int) -> float:
    """Median over chunks [first, last) of the mix's RMS over the reference's."""
    a, b = chunk_rms(mix)[first:last], chunk_rms(reference)[first:last]
    return float(np.median(a / np.maximum(b, 1e-9)))


DIRECTOR = os.path.join(VENV_BIN, "choir-director")


class DirectorProcess(protocol.ProcessProtocol):
    """A program run with ``reactor.spawnProcess``: what it printed (stdout and stderr, in
    order), and ``ended``, its exit status."""

    def __init__(self):
        self.output = []
        self.ended = defer.Deferred()

    @property
    def text(self):
        return b"".join(self.output).decode("utf-8", "replace")

    def outReceived(self, data):
        self.output.append(data)

    errReceived = outReceived

    def processEnded(self, reason):
        self.ended.callback(reason.value.exitCode)

    def kill(self):
        if not self.ended.called:
            self.transport.signalProcess("KILL")
            return self.ended


def spawn_director(test, *args, env) -> DirectorProcess:
    """The real choir-director, running while the reactor (and an in-process daemon) runs."""
    process = DirectorProcess()
    reactor.spawnProcess(process, DIRECTOR, [DIRECTOR, *args], env=env)
    test.addCleanup(process.kill)
    return process


async def run_director(*args, track=None, device_factory=None):
    """choir-director in-process: (exit status, what it printed, the DirectorRun or None)."""
    out = io.StringIO()
    options = director.parse(list(args))
    if options.subCommand == "desk":
        code = await director.run(reactor, options, out)
        return code, out.getvalue(), None
    session = director.DirectorRun(reactor, options, out, track=track, device_factory=device_factory)
    code = await session.run()
    return code, out.getvalue(), session


def director_args(daemon, *more):
    return ["--server", "127.0.0.1", "--port", str(daemon.port("director")),
            "--desk-port", str(daemon.port("desk")), *more]


async def connect(test, port: int, specs, names=None, groups=None):
    """Simulated singers on 127.0.0.1:port; specs: (delay, jitter, device latency)."""
    singers = []
    for i, (delay, jitter, latency) in enumerate(specs):
        singer = SimulatedSinger(reactor, names[i] if names else f"singer{i}",
                                 groups[i] if groups else "Soprano",
                                 delay=delay, jitter=jitter, device_latency=latency, seed=i)
        await endpoints.connectProtocol(endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port), singer)
        test.addCleanup(lambda s=singer: s.disconnected)
        test.addCleanup(lambda s=singer: s.transport.loseConnection())
        singers.append(singer)
    return singers


async def until(condition, deadline=30.0, what="condition"):
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await task.deferLater(reactor, 0.02, lambda: None)


class Server113:
    """online-choir 1.1.3's server as a subprocess on free ports (it listens on all
    interfaces); its DEBUG log goes to a file, which tells when singers are registered."""

    def __init__(self, folder: str):
        self.singers, self.director, self.desk = free_port(), free_port(), free_port()
        self.log = os.path.join(folder, "server113.log")
        self.console = open(os.path.join(folder, "server113.console"), "wb")
        self.process = subprocess.Popen(
            [os.path.join(VENV_BIN, "online-choir-server"), "--slave-port", str(self.singers),
             "--master-port", str(self.director), "--control-port", str(self.desk),
             "--console", "--log-level", "WARNING", "--log-file", self.log],
            stdout=self.console, stderr=subprocess.STDOUT, cwd=folder)

    async def ready(self):
        for port in (self.singers, self.director, self.desk):
            await threads.deferToThread(wait_for_port, port, self.process)

    def registered(self) -> int:
        """How many singers the server has registered (its log says so)."""
        try:
            with open(self.log, encoding="utf-8", errors="replace") as f:
                return sum(1 for line in f if line.rstrip().endswith(" connected")
                           and "Client (" in line)
        except FileNotFoundError:
            return 0

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.console.close()


class RecordingSpeaker:
    """A sound device (the devices' open/start/stop/close contract) that plays in real time
    into memory: ``played`` keeps each output block. No microphone (silence)."""

    name = "recording speaker"

    def __init__(self):
        self.played = []
        self.stream = None

    def open(self, callback, finished=None):
        self.stream = _SpeakerStream(self, callback, finished)
        return self.stream


class _SpeakerStream:
    def __init__(self, device, callback, finished):
        self.device, self.callback, self.finished = device, callback, finished
        self._stop = threading.Event()
        self._thread = None
        self.ended = threading.Event()

    def start(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        from choir_clients.rehearsal.devices import CallbackStop

        indata = np.zeros((FRAMES_PER_CHUNK, 1), np.float32)
        outdata = np.zeros((FRAMES_PER_CHUNK, 2), np.float32)
        start, block = time.monotonic(), 0
        try:
            while not self._stop.is_set():
                delay = start + block * FRAMES_PER_CHUNK / SAMPLE_RATE - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    break
                block += 1
                outdata.fill(np.nan)  # the callback must fill it all
                try:
                    self.callback(indata, outdata, None)
                except CallbackStop:
                    self.device.played.append(outdata.copy())
                    break
                self.device.played.append(outdata.copy())
        finally:
            self.ended.set()
            if self.finished is not None:
                self.finished()

    def stop(self):
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def close(self):
        self.stop()
