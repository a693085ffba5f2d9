#!/usr/bin/env python3
"""How many singers does a rehearsal daemon hold in real time, and at what cost?

Method. For each N in --singers, a fresh daemon (ours, run by twistd, or the
online-choir 1.1.3 server) is started as a process of its own on free 127.0.0.1
ports. A load generator, in a second process, plays N singers and one director
over real TCP from one epoll loop with one clock (time.monotonic):

* every connection first sends the 512-byte header; the generator waits until
  the daemon's log shows all N singers accepted;
* the director streams D seconds of stereo ADPCM (516-byte chunks) at real-time
  pace (86.13 chunks/s), never more than 516 chunks ahead of the mix it has
  received (1.1.3's flow control), then the end-of-track chunk (-1), and reads
  1028-byte mix chunks until it has one per chunk sent;
* each singer checks in (-1) when chunk 0 arrives, starts playing once it holds
  86 chunks (1 s), then plays one chunk every 11.6 ms: a chunk not received
  when due is an under-run. As it plays chunk i it sends its voice chunk i
  (260 bytes of ADPCM of a pre-encoded sung-like signal), never before it has
  received chunk i. Sends are batched per generator tick (--tick).

Measured over the session (director connect to last mix chunk): daemon CPU
(utime + stime of the whole process) / N / D; the delay each mix chunk adds,
(director got mix chunk i) - (last singer sent chunk i); daemon RSS at the end;
and the generator's own CPU, so that a saturated generator can be told apart
from a saturated daemon. See bench/README.md for the columns.

Over 400 lines, as a bench is one script to run and read alone: the load generator, the
daemon's start and the table are used nowhere else.
"""
import argparse
import concurrent.futures
import glob
import json
import math
import multiprocessing
import os
import re
import resource
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np
import psutil

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from choir_protocol.rehearsal.adpcm import MonoEncoder, StereoEncoder  # noqa: E402
from choir_protocol.rehearsal.chunks import encode_index, signal_chunk  # noqa: E402
from choir_protocol.rehearsal.constants import CHUNKS_PER_SECOND as RATE  # noqa: E402
from choir_protocol.rehearsal.constants import (DIRECTOR_LEAD_CHUNKS, FRAMES_PER_CHUNK,
                                                INDEX_MULTIPLIER, MIX_CHUNK_SIZE, SAMPLE_RATE,
                                                TRACK_CHUNK_SIZE, VOCAL_GROUPS, VOICE_CHUNK_SIZE,
                                                Signal)
from choir_protocol.rehearsal.header import Header  # noqa: E402
from tests.support.ports import free_ports  # noqa: E402

BIN = os.path.dirname(sys.executable)
PLAYBACK_BUFFER = int(RATE)  # a singer starts playing with 1 s of track in hand
LATE_MARGIN = 1.0  # seconds a session may run past D + the singers' buffer
CONNECT_BATCH = 20  # singers connected per 20 ms: an idle daemon's accept queue (50) never fills
KEEPALIVE_AFTER = 10.0  # seconds without sending after which a singer sends a keep-alive
CHECK_IN = signal_chunk(Signal.END, VOICE_CHUNK_SIZE)
KEEPALIVE = signal_chunk(Signal.KEEPALIVE, VOICE_CHUNK_SIZE)
END_OF_TRACK = signal_chunk(Signal.END, TRACK_CHUNK_SIZE)
_index = struct.Struct(">i").unpack_from
# Log lines that mark an accepted singer, and lines worth reporting, per server.
JOINED = {"choir": " joined (", "1.1.3": ") connected"}
NOTABLE = {"choir": re.compile(r"#(warn|error|critical)\]|Traceback"),
           "1.1.3": re.compile(r":(WARNING|ERROR|CRITICAL):|Traceback")}


# -- audio ----------------------------------------------------------------------------------

def sung_signal(chunks: int, f0: float, seed: int) -> np.ndarray:
    """A voice-like int16 signal: harmonics with vibrato and phrasing, plus breath noise."""
    t = np.arange(chunks * FRAMES_PER_CHUNK) / SAMPLE_RATE
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.01 * np.sin(2 * np.pi * 5.5 * t))) / SAMPLE_RATE
    tone = sum(a * np.sin(k * phase) for k, a in ((1, 1.0), (2, 0.5), (3, 0.3), (4, 0.15)))
    phrasing = 0.6 + 0.4 * np.sin(2 * np.pi * 0.25 * t)
    noise = np.random.default_rng(seed).normal(0, 0.01, t.size)
    return (np.clip(0.25 * tone / 1.95 * phrasing + noise, -1, 1) * 32767).astype("<i2")


def encoded_streams(total: int) -> tuple[bytes, bytes]:
    """(director's track, a singer's voice): ``total`` wire chunks each, indices included.

    At most 30 s of signal is synthesised and looped; the ADPCM state runs on, as on the wire.
    """
    period = min(total, int(30 * RATE))
    left, right, voice = (sung_signal(period, f, seed).reshape(period, -1)
                          for f, seed in ((110.0, 1), (165.0, 2), (220.0, 3)))
    stereo, mono = StereoEncoder(), MonoEncoder()
    track, sung = [], []
    for i in range(total):
        j = i % period
        track.append(encode_index(i) + stereo.encode(left[j].tobytes(), right[j].tobytes()))
        sung.append(encode_index(i) + mono.encode(voice[j].tobytes()))
    return b"".join(track), b"".join(sung)


# -- the load generator (runs in a process of its own) --------------------------------------

class LoadGenerator:
    """N singers and a director on one epoll loop. Singer ``n`` in the lists is the director."""

    def __init__(self, n: int, ports: dict, seconds: float, tick: float):
        self.n, self.ports, self.tick = n, ports, tick
        self.total = round(seconds * RATE)
        track, voice = encoded_streams(self.total)
        self.track, self.voice = memoryview(track), memoryview(voice)
        self.epoll = select.epoll()
        self.socks: list = []
        self.fd_index: dict = {}
        self.tails = [b""] * (n + 1)  # bytes of an incomplete chunk, per connection
        self.pending = [b""] * (n + 1)  # bytes the kernel did not take yet
        self.backlogged: set = set()
        self.checked_in = [False] * n
        self.alive = np.zeros(n, bool)  # connected and not closed
        self.received = np.zeros(n, np.int64)  # track chunks received (highest index + 1)
        self.ended = np.zeros(n, bool)  # end of session (-1) received
        self.p0 = np.full(n, np.inf)  # when playback started
        self.played = np.zeros(n, np.int64)  # chunks that came due for playback
        self.sent = np.zeros(n, np.int64)  # voice chunks sent
        self.last_tx = np.zeros(n)  # when the singer last sent anything
        self.underruns = np.zeros(n, np.int64)
        self.last_send = np.full(self.total, np.nan)  # when the last singer sent chunk i
        self.mix_time = np.full(self.total, np.nan)  # when the director got mix chunk i
        self.all_sent = 0
        self.mix_count = 0
        self.director = None
        self.d0 = self.dsent = 0
        self.end_sent = self.aborted = False
        self.dropped = self.keepalives = self.odd_signals = 0
        self.next_tick = time.monotonic()
        self.max_lag = 0.0

    # connections

    def _open(self, port: int, header: bytes) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(header)
        sock.setblocking(False)
        i = self.fd_index[sock.fileno()] = len(self.socks)
        if i < self.n:
            self.alive[i], self.last_tx[i] = True, time.monotonic()
        self.socks.append(sock)
        self.epoll.register(sock.fileno(), select.EPOLLIN)
        return sock

    def connect_singers(self) -> None:
        """Connect in small batches: a burst of connects overflows the listen backlog."""
        groups = VOCAL_GROUPS[1:]
        for i in range(self.n):
            self._open(self.ports["singers"], Header(f"bench-{i}", groups[i % len(groups)],
                                                     "choir-bench").to_bytes())
            if i % CONNECT_BATCH == CONNECT_BATCH - 1:
                self._loop(lambda: False, 0.02)

    def start_director(self) -> None:
        self.director = self._open(self.ports["director"], Header("bench-director").to_bytes())
        self.d0 = time.monotonic()
        self._director_tick(self.d0)

    def _send(self, i: int, data) -> None:
        if self.pending[i]:
            data = self.pending[i] + data
        try:
            k = self.socks[i].send(data)
        except BlockingIOError:
            k = 0
        except OSError:
            k = len(data)  # the reading side notices the closed connection
        self.pending[i] = bytes(data[k:]) if k < len(data) else b""
        (self.backlogged.add if self.pending[i] else self.backlogged.discard)(i)

    def _close(self, i: int) -> None:
        if self.socks[i].fileno() == -1:
            return
        self.epoll.unregister(self.socks[i].fileno())
        self.socks[i].close()
        if i < self.n:
            self.alive[i] = False
            self.dropped += not self.ended[i]

    # receiving

    def _recv(self, i: int, size: int):
        """Whole chunks received on connection i as (bytes, end offset), or None if closed."""
        try:
            data = self.socks[i].recv(1 << 16)
        except BlockingIOError:
            return b"", 0
        except OSError:
            data = b""
        if not data:
            self._close(i)
            return None
        if self.tails[i]:
            data = self.tails[i] + data
        end = len(data) - len(data) % size
        self.tails[i] = data[end:]
        return data, end

    def _singer_readable(self, s: int) -> None:
        got = self._recv(s, TRACK_CHUNK_SIZE)
        if not got or not got[1]:
            return
        data, end = got
        last = _index(data, end - TRACK_CHUNK_SIZE)[0]
        if last >= 0 and self.checked_in[s]:  # the common case: audio only
            self.received[s] = last // INDEX_MULTIPLIER + 1
            return
        for offset in range(0, end, TRACK_CHUNK_SIZE):
            index = _index(data, offset)[0] // INDEX_MULTIPLIER
            if index >= 0:
                if not self.checked_in[s]:
                    self.checked_in[s] = True
                    self._send(s, CHECK_IN)
                self.received[s] = index + 1
            elif index == Signal.END:
                self.ended[s] = True
            elif index == Signal.KEEPALIVE:
                self.keepalives += 1
            else:
                self.odd_signals += 1

    def _director_readable(self, now: float) -> None:
        got = self._recv(self.n, MIX_CHUNK_SIZE)
        if got is None:
            self.aborted = self.mix_count < self.total
            return
        data, end = got
        for offset in range(0, end, MIX_CHUNK_SIZE):
            index = _index(data, offset)[0] // INDEX_MULTIPLIER
            if 0 <= index < self.total and math.isnan(self.mix_time[index]):
                self.mix_time[index] = now
                self.mix_count += 1
            elif index == Signal.ABORT:
                self.aborted = True

    # pacing

    def _director_tick(self, now: float) -> None:
        if self.director is None or self.end_sent:
            return
        due = min(int((now - self.d0) * RATE) + 1, self.mix_count + DIRECTOR_LEAD_CHUNKS, self.total)
        if due > self.dsent or self.pending[self.n]:
            self._send(self.n, self.track[self.dsent * TRACK_CHUNK_SIZE:due * TRACK_CHUNK_SIZE])
            self.dsent = due
        if self.dsent == self.total:
            self._send(self.n, END_OF_TRACK)
            self.end_sent = True

    def _singers_tick(self, now: float) -> None:
        """Play what came due, count under-runs, send the voice chunks just played."""
        alive = self.alive
        starting = np.isinf(self.p0) & alive & ((self.received >= PLAYBACK_BUFFER) | self.ended)
        self.p0[starting] = now
        playing = np.isfinite(self.p0)
        due = np.zeros(self.n, np.int64)
        due[playing] = np.minimum(((now - self.p0[playing]) * RATE).astype(np.int64) + 1, self.total)
        self.underruns += np.clip(due - np.maximum(self.played, self.received), 0, None) * alive
        np.maximum(self.played, due, out=self.played)
        target = np.minimum(due, self.received)
        todo = np.flatnonzero((target > self.sent) & alive)
        for s in list(self.backlogged.difference(todo.tolist(), (self.n,))):
            self._send(s, b"")
        voice, size = self.voice, VOICE_CHUNK_SIZE
        for s, a, b in zip(todo.tolist(), self.sent[todo].tolist(), target[todo].tolist()):
            self._send(s, voice[a * size:b * size])
        self.sent[todo] = target[todo]
        self.last_tx[todo] = now
        for s in np.flatnonzero(alive & (now - self.last_tx > KEEPALIVE_AFTER)).tolist():
            self._send(s, KEEPALIVE)
            self.last_tx[s] = now
        if alive.any():
            slowest = int(self.sent[alive].min())
            if slowest > self.all_sent:
                self.last_send[self.all_sent:slowest] = now
                self.all_sent = slowest

    def _loop(self, until, seconds: float) -> bool:
        """Serve all connections until ``until()`` or ``seconds`` pass; True if ``until()``."""
        deadline = time.monotonic() + seconds
        poll, fd_index, director = self.epoll.poll, self.fd_index, self.n
        singer_every = max(1, round(self.tick / 0.01))
        ticks = 0
        while not until():
            now = time.monotonic()
            if now >= deadline:
                return False
            if now >= self.next_tick:
                self.max_lag = max(self.max_lag, now - self.next_tick)
                self.next_tick = max(self.next_tick + 0.01, now)
                self._director_tick(now)
                ticks += 1
                if ticks % singer_every == 0:
                    self._singers_tick(now)
            events = poll(max(0.0, self.next_tick - time.monotonic()))
            now = time.monotonic()
            for fd, _ in events:
                i = fd_index[fd]
                if i == director:
                    self._director_readable(now)
                else:
                    self._singer_readable(i)
        return True

    def wait_joined(self, log_path: str, marker: str, timeout: float) -> int:
        """Serve the singers until the daemon's log shows N joins; returns the joins seen."""
        def joined():
            return sum(line.count(marker) for line in read_log(log_path))
        deadline = time.monotonic() + timeout
        while (seen := joined()) < self.n and time.monotonic() < deadline:
            self._loop(lambda: False, 0.2)
        return seen

    def run_session(self, daemon: psutil.Process, seconds: float) -> dict:
        cpu0, gen0, t0 = sum(daemon.cpu_times()[:2]), _own_cpu(), time.monotonic()
        side0 = _side_threads_cpu(daemon)
        self.max_lag = 0.0
        self.start_director()
        done = self._loop(lambda: self.mix_count >= self.total or self.aborted,
                          2 * seconds + PLAYBACK_BUFFER / RATE + 10)
        wall = time.monotonic() - t0
        cpu, gen = sum(daemon.cpu_times()[:2]) - cpu0, _own_cpu() - gen0
        side, threads = _side_threads_cpu(daemon) - side0, daemon.num_threads()
        rss = daemon.memory_info().rss
        self._close(self.n)  # the director leaves first, as the 1.1.3 director does
        self._loop(lambda: bool(self.ended[self.alive].all()), 1.0)  # let the end (-1) arrive
        delays = self.mix_time - self.last_send
        delays = delays[~np.isnan(delays)] * 1000
        return {
            "singers": self.n, "seconds": seconds, "track_chunks": self.total,
            "mix_chunks": self.mix_count, "complete": done and self.mix_count == self.total,
            "aborted": bool(self.aborted), "session_s": round(wall, 2),
            "underruns": int(self.underruns.sum()),
            "singers_with_underruns": int((self.underruns > 0).sum()),
            "dropped": int(self.dropped), "no_end_signal": int((self.alive & ~self.ended).sum()),
            "keepalives": self.keepalives, "odd_signals": self.odd_signals,
            "daemon_cpu_s": round(cpu, 3),
            "cpu_ms_per_singer_s": round(cpu / self.n / seconds * 1000, 3),
            "delay_p50_ms": round(float(np.percentile(delays, 50)), 1) if delays.size else None,
            "delay_p99_ms": round(float(np.percentile(delays, 99)), 1) if delays.size else None,
            "daemon_threads": threads, "daemon_side_threads_cpu_s": round(side, 3),
            "rss_mb": round(rss / 2**20, 1),
            "generator_cpu_pct": round(100 * gen / wall, 1),
            "generator_max_lag_ms": round(self.max_lag * 1000, 1),
        }

    def close(self) -> None:
        for sock in self.socks:
            sock.close()
        self.epoll.close()


def _side_threads_cpu(daemon: psutil.Process) -> float:
    """CPU of the daemon's threads other than the main one (recorder, BLAS, thread pools).

    Threads that ended during the session are missed; their CPU still counts in the total."""
    return sum(t.user_time + t.system_time for t in daemon.threads() if t.id != daemon.pid)


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def generate(n: int, ports: dict, seconds: float, tick: float, pid: int, log_path: str,
             server: str) -> dict:
    """The load generator process: connect, wait for the joins, run one session."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, n + 256)), hard))
    generator = LoadGenerator(n, ports, seconds, tick)
    try:
        t0 = time.monotonic()
        generator.connect_singers()
        t1 = time.monotonic()
        joined = generator.wait_joined(log_path, JOINED[server], 10 + n / 50)
        t2 = time.monotonic()
        result = generator.run_session(psutil.Process(pid), seconds)
        result.update(joined=joined, connect_s=round(t1 - t0, 1), join_wait_s=round(t2 - t1, 1))
        return result
    finally:
        generator.close()


# -- the daemon under test ------------------------------------------------------------------


def start_daemon(server: str, n: int, ports: dict, workdir: str, record: bool, baseline=None):
    """Start the daemon; returns (process, path of its log). ``baseline``: a checkout of an
    earlier commit whose code our daemon runs instead of this one's (its directory first on
    PYTHONPATH: its twisted/plugins and packages are found before the installed ones)."""
    env = None
    if server == "choir":
        log = os.path.join(workdir, "choir.log")
        twistd = [os.path.join(BIN, "twistd")]
        if baseline:
            twistd = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
            env = dict(os.environ, PYTHONPATH=os.path.abspath(baseline))
        command = [*twistd, "-n", "--pidfile=", "-l", log, "choir",
                   *(f"--{role}=tcp:{port}:interface=127.0.0.1" for role, port in ports.items()),
                   "-d", os.path.join(workdir, "data"), f"--max-singers={max(1000, n)}",
                   "--max-singers-per-address=0", "--max-connections-per-address=0",
                   "--no-runners"]  # every simulated singer comes from 127.0.0.1
        command += [] if record else ["--no-record"]
    else:  # logs at DEBUG to ./server.log whatever --log-level says (that is for the console)
        log = os.path.join(workdir, "server.log")
        command = [os.path.join(BIN, "online-choir-server"), "--slave-port", str(ports["singers"]),
                   "--master-port", str(ports["director"]), "--control-port", str(ports["desk"]),
                   "--console", "--log-level", "WARNING"]
    with open(os.path.join(workdir, "stderr.log"), "wb") as err:
        process = subprocess.Popen(command, cwd=workdir, stdin=subprocess.PIPE,
                                   stdout=err, stderr=subprocess.STDOUT, env=env)
    return process, log


def is_listening(port: int) -> bool:
    """Read the kernel's socket tables: a test connection would show up in the daemon's log."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    return True
    return False


def wait_listening(process, ports: dict, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not all(is_listening(port) for port in ports.values()):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"daemon did not start (exit code {process.poll()})")
        time.sleep(0.05)


def stop_daemon(process, server: str) -> None:
    """SIGTERM for twistd; 1.1.3 wants SIGINT and may hang on it: SIGKILL after 5 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM if server == "choir" else signal.SIGINT)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def read_log(log_path: str) -> list[str]:
    """The daemon's log lines, oldest first, rotated files included (twistd rotates at 1 MB)."""
    rotated = sorted((p for p in glob.glob(glob.escape(log_path) + ".*") if p.rsplit(".", 1)[1].isdigit()),
                     key=lambda p: -int(p.rsplit(".", 1)[1]))
    lines = []
    for path in rotated + [log_path]:
        with open(path, errors="replace") as f:
            lines += f.readlines()
    return lines


VOICE_SUMMARY = re.compile(r"\]   .*: ([\w ]+), (\d+) chunks, (\d+) late, (\d+) missing$")


def log_notes(log_path: str, server: str) -> list[str]:
    """Warnings and errors of the daemon's log, counted by kind (numbers and addresses blurred),
    and for ours the end-of-session line and a sum of its per-singer lines."""
    kinds: dict = {}
    voices = {}  # state -> [singers, late chunks, missing chunks]
    for line in read_log(log_path):
        if server == "choir" and (match := VOICE_SUMMARY.search(line.rstrip())):
            counts = voices.setdefault(match[1], [0, 0, 0])
            for k, value in enumerate((1, int(match[3]), int(match[4]))):
                counts[k] += value
        elif NOTABLE[server].search(line):
            text = re.sub(r"^\S+ \[[^]]*\] |^[\d-]+ [\d:,]+:", "", line.strip())
            text = re.sub(r"\d+", "#", text)
            kinds[text] = kinds.get(text, 0) + 1
        elif server == "choir" and " ended (" in line:
            kinds[re.sub(r"^\S+ \[[^]]*\] ", "", line.strip())] = 1
    notes = [f"{count} x {text}" if count > 1 else text for text, count in kinds.items()]
    return notes + [f"singers {state}: {n}, {late} chunks late, {missing} missing"
                    for state, (n, late, missing) in voices.items()]


def wait_for_tracks(daemon: psutil.Process, workdir: str, n: int, seconds: float) -> dict:
    """After a session our daemon turns each singer's journal into a FLAC track, at a low
    priority: measure how long that takes and what it costs, apart from the live figures."""
    cpu0, t0 = sum(daemon.cpu_times()[:2]), time.monotonic()
    pattern = os.path.join(workdir, "data", "sessions", "*", "session.json")
    while time.monotonic() - t0 < 600:
        states = []
        for path in glob.glob(pattern):
            try:
                with open(path) as f:
                    states.append(json.load(f).get("tracks"))
            except (OSError, ValueError):
                states.append(None)  # being rewritten
        if states and all(state == "ready" for state in states):
            cpu = sum(daemon.cpu_times()[:2]) - cpu0
            return {"tracks_ready_s": round(time.monotonic() - t0, 1),
                    "tracks_cpu_ms_per_singer_s": round(cpu / n / seconds * 1000, 3)}
        time.sleep(0.2)
    return {"tracks_ready_s": None}


# -- one run, the table ---------------------------------------------------------------------

def bench(server: str, n: int, args, baseline=None) -> dict:
    workdir = tempfile.mkdtemp(prefix=f"{server}-{n}-", dir=args.workdir)
    ports = dict(zip(("singers", "director", "desk"), free_ports(3)))
    process, log = start_daemon(server, n, ports, workdir, not args.no_record, baseline)
    try:
        wait_listening(process, ports)
        tick = args.tick / 1000 if args.tick else (0.01 if n <= 500 else 0.02 if n <= 1000 else 0.04)
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
            result = pool.submit(generate, n, ports, args.seconds, tick, process.pid, log,
                                 server).result()
        result["generator_tick_ms"] = tick * 1000
        if server == "choir" and not args.no_record:
            result.update(wait_for_tracks(psutil.Process(process.pid), workdir, n, args.seconds))
        time.sleep(1 + n / 1000)  # let the daemon see the singers leave before it is stopped
    except Exception as e:  # a daemon that fails to start or a generator that dies: one failed row
        result = {"singers": n, "error": f"{type(e).__name__}: {e}", "complete": False, "underruns": None}
    try:  # what the daemon logged up to now; what it logs on being stopped is not of interest
        result["log_notes"] = log_notes(log, server)
    except FileNotFoundError:
        result["log_notes"] = ["no log file"]
    finally:
        stop_daemon(process, server)
    result["server"] = (server + (f"@{os.path.basename(os.path.abspath(baseline))}" if baseline else "")
                        + (" --no-record" if server == "choir" and args.no_record else ""))
    limit = args.seconds + PLAYBACK_BUFFER / RATE + LATE_MARGIN
    result["real_time"] = bool(result["complete"] and result["underruns"] == 0
                               and not result.get("dropped") and result.get("session_s", math.inf) <= limit)
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return result


COLUMNS = [("server", "server"), ("singers", "singers"), ("real time", "real_time"),
           ("under-runs", "underruns"), ("dropped", "dropped"), ("mix chunks", "mix_chunks"),
           ("session s", "session_s"), ("CPU ms/singer/s", "cpu_ms_per_singer_s"),
           ("delay p50 ms", "delay_p50_ms"), ("delay p99 ms", "delay_p99_ms"),
           ("RSS MB", "rss_mb"), ("generator CPU %", "generator_cpu_pct")]


def table_row(result: dict) -> str:
    def cell(key):
        value = result.get(key)
        if key == "real_time":
            return "yes" if value else "NO"
        if key == "mix_chunks" and "track_chunks" in result:
            return f"{value}/{result['track_chunks']}"
        return "-" if value is None else str(value)
    return "| " + " | ".join(cell(key) for _, key in COLUMNS) + " |"


def machine() -> dict:
    with open("/proc/cpuinfo") as f:
        model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "?")
    return {"nproc": os.cpu_count(), "cpu": model, "python": sys.version.split()[0]}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--singers", default="50,100,135,200,500,1000,1500,2000",
                        help="comma-separated singer counts (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=20, help="audio per session (default: 20)")
    parser.add_argument("--server", choices=("choir", "1.1.3"), default="choir")
    parser.add_argument("--no-record", action="store_true", help="pass --no-record to our daemon")
    parser.add_argument("--tick", type=float, default=0, help="ms between the generator's singer "
                        "sends (default: 10 up to 500 singers, 20 up to 1000, 40 beyond)")
    parser.add_argument("--keep-going", action="store_true",
                        help="do not stop after two real-time failures in a row")
    parser.add_argument("--workdir", help="keep each run's daemon log and recordings in a "
                        "directory made under this one (default: a temporary one, removed)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--baseline", metavar="CHECKOUT", help="also run, for each N, our daemon "
                        "from this checkout of an earlier commit (git worktree add DIR COMMIT): "
                        "before and after side by side")
    args = parser.parse_args()
    args.singers = [int(n) for n in args.singers.split(",") if n.strip()]
    return args


def main() -> None:
    args = parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # the daemon inherits it
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, max(args.singers) + 256)), hard))
    info = machine()
    if not args.json:
        print(f"machine: {info['nproc']} CPUs, {info['cpu']}, Python {info['python']}; "
              f"{args.seconds:g} s sessions")
        print("| " + " | ".join(title for title, _ in COLUMNS) + " |")
        print("|" + "---|" * len(COLUMNS), flush=True)
    results, failures = [], 0
    for n in args.singers:
        for baseline in ([args.baseline] if args.baseline else []) + [None]:
            result = bench(args.server, n, args, baseline)
            results.append(result)
            if not args.json:
                print(table_row(result), flush=True)
        failures = 0 if result["real_time"] else failures + 1
        if failures >= 2 and not args.keep_going:
            break
    if args.json:
        print(json.dumps({"machine": info, "runs": results}, indent=2))
        return
    print()
    for result in results:
        extra = {k: result[k] for k in ("error", "joined", "singers_with_underruns", "no_end_signal",
                                        "keepalives", "odd_signals", "aborted",
                                        "tracks_ready_s", "tracks_cpu_ms_per_singer_s",
                                        "generator_max_lag_ms", "generator_tick_ms", "connect_s",
                                        "join_wait_s", "daemon_threads", "daemon_side_threads_cpu_s")
                 if result.get(k) not in (None, 0, False)}
        print(f"{result['server']} {result['singers']} singers: "
              + ", ".join(f"{k}={v}" for k, v in extra.items()))
        for note in result["log_notes"][:8]:
            print(f"    log: {note}")


if __name__ == "__main__":
    main()
