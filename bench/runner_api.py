#!/usr/bin/env python3
"""How fast does the daemon serve PeerTube's remote-runner API?

Method. The script makes a temporary data directory, seeds it through the daemon's own
``Store`` (a registration token, runners, one media, pending ``vod-web-video-transcoding``
jobs), starts a real daemon (``twistd -n choir --http tcp:P:interface=127.0.0.1``) as a
process of its own, and drives it from load-generator processes over real TCP on
127.0.0.1. The generators are raw ``epoll`` loops on non-blocking sockets writing pre-built
HTTP/1.1 requests on keep-alive connections (one connection per simulated runner, one
request in flight per connection: a closed loop), timing with ``time.monotonic``.

(a) ``jobs/request``: C clients (each a registered runner) POST ``{"runnerToken": ...}``
    as fast as the answers come, for --seconds (after a 1 s warm-up): requests per second,
    p50/p99 latency (request written -> answer complete). Every answer lists 10 jobs.
(b) full cycles: R runners each take the next pre-created pending job and run
    accept -> update (JSON, progress 50) -> success (multipart, a small videoFile):
    cycles per second while every runner is busy, and the cycle's p50/p99 time.
(c) ``available-jobs``: S socket.io clients (raw WebSocket handshake, Engine.IO open,
    ``40/runners,{"runnerToken": ...}``, pongs) are connected; then, each round, a job is
    made pending and every socket's arrival time of ``42/runners,["available-jobs"]`` is
    taken (the generator's ``epoll.poll`` return time: the frame had arrived by then).
    Two ways to make the job pending:
    * daemon: a runner's ``abort`` of a job it accepted (the daemon writes the job and
      notifies itself); t0 = just before the abort request is written;
    * store: another process creates the job with ``Store.create_job`` on the same SQLite
      file, as ``choir-admin`` would; t0 = just before the call; the daemon learns of it from
      the store's change feed.
    Triggers are 2.2 s apart, so the hub's one-a-second debounce never holds one back.

The daemon's CPU (psutil, all threads) and the generators' own CPU are reported for each
phase: a generator near 100 % of a core would be the bottleneck, not the daemon.

Over 400 lines, as a bench is one script to run and read alone: its seeding, load generator,
daemon and table are used nowhere else.
"""
import argparse
import json
import multiprocessing
import os
import platform
import re
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import psutil
from tests.support.ports import free_ports  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

BIN = os.path.dirname(sys.executable)
P = "/api/v1/runners"
VIDEO_BYTES = 16 * 1024
JOBS_PER_MEDIA = 5
ROUND_GAP = 2.2  # (c) seconds between triggers: past the debounce and its echo (README)


# -- seeding through the Store, and jobs made by another process ----------------------------

def _react(fn, *args):
    """Run ``fn(*args)`` (a coroutine function) under a fresh reactor in this process."""
    from twisted.internet import defer, task

    out = []

    async def main(reactor):
        out.append(await fn(*args))

    task.react(lambda reactor: defer.ensureDeferred(main(reactor)))  # exits the process


def _seed(data_dir, runners, jobs, base_url, conn):
    async def go():
        import attrs

        from choir_protocol.runners import jobs as J
        from choir_protocol.runners.tokens import hash_token
        from choir_twisted.store.records import RunnerRecord
        from choir_twisted.store.store import Store
        store = await Store.open(data_dir=data_dir)
        reg = await store.create_registration_token()
        now = time.time()
        made = [RunnerRecord(f"bench-{i:05d}", f"bench-runner-{i}", None, "1.0",
                             f"ptrt-bench{i:05d}{os.urandom(8).hex()}", reg.token_hash,
                             "127.0.0.1", None, now) for i in range(runners)]

        def insert(cur):  # register_runner's INSERT, in one transaction for speed
            cur.executemany("INSERT INTO runners (id, name, description, version, "
                            "token_hash, registration_token_hash, ip, last_contact, "
                            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            [attrs.astuple(attrs.evolve(r, token=hash_token(r.token)))
                             for r in made])
        await store._interact(insert)
        source = os.path.join(data_dir, "source.mp4")
        with open(source, "wb") as f:
            f.write(os.urandom(VIDEO_BYTES))
        specs = []
        for i in range(jobs):  # a media per JOBS_PER_MEDIA jobs (a rendition ladder)
            if i % JOBS_PER_MEDIA == 0:
                media = await store.create_media("upload", f"bench video {i}", path=source)
            uuid = f"00000000-0000-4000-8000-{i:012d}"
            specs.append({"uuid": uuid, "type": J.JobType.VOD_WEB_VIDEO, "media_id": media.id,
                          "payload": J.web_video_payload(base_url, uuid, media.id, 720, 30)})
        for i in range(0, len(specs), 500):
            await store.create_jobs(specs[i:i + 500])
        store.close()
        conn.send({"tokens": [r.token for r in made], "jobs": [s["uuid"] for s in specs]})
    _react(go)


def _store_maker(data_dir, base_url, conn):
    """Another process with a Store on the daemon's file: makes a pending job on request."""
    async def go():
        from twisted.internet import threads

        from choir_protocol.runners import jobs as J
        from choir_twisted.store.store import Store
        store = await Store.open(data_dir=data_dir)
        while True:
            cmd = await threads.deferToThread(conn.recv)
            if cmd is None:
                break
            uuid = os.urandom(16).hex()
            t0 = time.monotonic()
            await store.create_job(J.JobType.VOD_WEB_VIDEO,
                                   J.web_video_payload(base_url, uuid, None, 720, 30), uuid=uuid)
            conn.send((t0, time.monotonic()))
        store.close()
    _react(go)


# -- a minimal HTTP/1.1 client on epoll --------------------------------------------------------

def post_bytes(port, path, body: bytes, content_type=b"application/json") -> bytes:
    return (b"POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: %s\r\n"
            b"Content-Length: %d\r\n\r\n" % (path.encode(), port, content_type, len(body))) + body


def json_post(port, path, obj) -> bytes:
    return post_bytes(port, path, json.dumps(obj).encode())


def multipart_post(port, path, fields, files) -> bytes:
    boundary = b"----choirbench" + os.urandom(8).hex().encode()
    parts = []
    for name, value in fields:
        parts.append(b'--%s\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n'
                     % (boundary, name.encode(), value.encode()))
    for name, filename, data in files:
        parts.append(b'--%s\r\nContent-Disposition: form-data; name="%s"; filename="%s"\r\n'
                     b'Content-Type: video/mp4\r\n\r\n%s\r\n'
                     % (boundary, name.encode(), filename.encode(), data))
    parts.append(b"--%s--\r\n" % boundary)
    return post_bytes(port, path, b"".join(parts),
                      b"multipart/form-data; boundary=" + boundary)


class Response:
    __slots__ = ("status", "body")

    def __init__(self, status, body):
        self.status, self.body = status, body


def parse_response(buf: bytearray):
    """-> (Response, bytes consumed) or None if ``buf`` does not hold a whole answer yet."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buf[:end]).decode("latin-1").split("\r\n")
    status = int(head[0].split(" ", 2)[1])
    length, chunked = None, False
    for line in head[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    pos = end + 4
    if status in (204, 304) or (length is None and not chunked):
        return Response(status, b""), pos
    if length is not None:
        if len(buf) < pos + length:
            return None
        return Response(status, bytes(buf[pos:pos + length])), pos + length
    body = bytearray()
    while True:  # chunked
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
        start = eol + 2
        if size == 0:
            trailer_end = buf.find(b"\r\n\r\n", eol)
            if buf[start:start + 2] == b"\r\n":
                return Response(status, bytes(body)), start + 2
            if trailer_end < 0:
                return None
            return Response(status, bytes(body)), trailer_end + 4
        if len(buf) < start + size + 2:
            return None
        body += buf[start:start + size]
        pos = start + size + 2


class HTTPLoop:
    """Keep-alive connections, one request in flight each, on one epoll.

    ``client.next(response_or_None)`` returns the next request's bytes (None: stop)."""

    def __init__(self, port, clients):
        self.epoll = select.epoll()
        self.conns = {}
        for client in clients:
            sock = socket.create_connection(("127.0.0.1", port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
            self.conns[sock.fileno()] = [sock, client, bytearray(), b"", 0.0]
            self.epoll.register(sock.fileno(), select.EPOLLIN)

    def _send(self, c, data):
        c[4] = time.monotonic()
        n = c[0].send(data)
        if n < len(data):
            c[3] = data[n:]
            self.epoll.modify(c[0].fileno(), select.EPOLLIN | select.EPOLLOUT)

    def start(self):
        self.active = 0
        for c in list(self.conns.values()):
            data = c[1].next(None, 0.0)
            if data is not None:
                self._send(c, data)
                self.active += 1

    def close(self):
        """Waits for the answers still on their way (not counted), then closes."""
        for c in self.conns.values():
            c[1] = _Drain()
        self.run(time.monotonic() + 10)
        for c in self.conns.values():
            c[0].close()

    def run(self, until):
        while self.active and time.monotonic() < until:
            for fd, ev in self.epoll.poll(0.5):
                c = self.conns[fd]
                if ev & select.EPOLLOUT and c[3]:
                    n = c[0].send(c[3])
                    c[3] = c[3][n:]
                    if not c[3]:
                        self.epoll.modify(fd, select.EPOLLIN)
                if ev & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
                    data = c[0].recv(262144)
                    if not data:
                        raise RuntimeError("the daemon closed a connection")
                    c[2] += data
                    while True:
                        parsed = parse_response(c[2])
                        if parsed is None:
                            break
                        response, used = parsed
                        del c[2][:used]
                        now = time.monotonic()
                        nxt = c[1].next(response, now - c[4])
                        if nxt is None:
                            self.active -= 1
                        else:
                            self._send(c, nxt)


class _Drain:
    def next(self, response, latency):
        return None


def _cpu():
    t = os.times()
    return t.user + t.system


class RequestClient:
    """(a): the same jobs/request over and over; latencies after ``since``."""

    def __init__(self, port, token, since):
        self.data = json_post(port, P + "/jobs/request", {"runnerToken": token})
        self.since, self.latencies, self.errors, self.jobs_seen = since, [], 0, 0

    def next(self, response, latency):
        if response is not None:
            if response.status != 200:
                self.errors += 1
                if self.errors < 3:
                    print("request:", response.status, response.body[:200], file=sys.stderr)
            elif time.monotonic() >= self.since:
                self.latencies.append(latency)
                if len(self.latencies) == 1:
                    self.jobs_seen = len(json.loads(response.body)["availableJobs"])
        return self.data


class CycleClient:
    """(b): accept -> update -> success of the next job from the shared list, repeatedly."""

    def __init__(self, port, token, jobs, record):
        self.port, self.token, self.jobs, self.record = port, token, jobs, record
        self.step, self.uuid, self.job_token, self.t0, self.errors = None, None, None, 0.0, 0

    def _problem(self, what, response):
        self.errors += 1
        if self.errors < 3:
            print(f"{what}: {response.status} {response.body[:200]!r}", file=sys.stderr)

    def _accept(self):
        if not self.jobs:
            return None
        self.uuid = self.jobs.pop()
        self.step, self.t0 = "accept", time.monotonic()
        return json_post(self.port, f"{P}/jobs/{self.uuid}/accept", {"runnerToken": self.token})

    def next(self, response, latency):
        if response is None:
            return self._accept()
        if self.step == "accept":
            if response.status != 200:
                self._problem("accept", response)
                return self._accept()
            self.job_token = json.loads(response.body)["job"]["jobToken"]
            self.step = "update"
            return json_post(self.port, f"{P}/jobs/{self.uuid}/update",
                             {"runnerToken": self.token, "jobToken": self.job_token,
                              "progress": 50})
        if self.step == "update":
            if response.status != 204:
                self._problem("update", response)
            self.step = "success"
            return multipart_post(self.port, f"{P}/jobs/{self.uuid}/success",
                                  [("runnerToken", self.token), ("jobToken", self.job_token)],
                                  [("payload[videoFile]", "video.mp4", VIDEO)])
        if response.status != 204:
            self._problem("success", response)
        else:
            self.record.append((time.monotonic(), time.monotonic() - self.t0))
        return self._accept()


VIDEO = os.urandom(VIDEO_BYTES)


def _percentile(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def run_requests(port, tokens, warmup, seconds, conn):
    """A generator process for (a)."""
    start = time.monotonic()
    clients = [RequestClient(port, t, start + warmup) for t in tokens]
    loop = HTTPLoop(port, clients)
    conn.send("ready")
    conn.recv()
    start = time.monotonic()
    for c in clients:
        c.since = start + warmup
    measure_from = start + warmup
    loop.start()
    loop.run(measure_from)
    cpu0, t0 = _cpu(), time.monotonic()
    loop.run(t0 + seconds)
    cpu1, t1 = _cpu(), time.monotonic()
    loop.close()
    conn.send({"latencies": [x for c in clients for x in c.latencies],
               "errors": sum(c.errors for c in clients),
               "jobs_seen": max(c.jobs_seen for c in clients),
               "elapsed": t1 - t0, "cpu": cpu1 - cpu0})


def run_cycles(port, tokens, jobs, conn):
    """A generator process for (b)."""
    record = []
    clients = [CycleClient(port, t, jobs, record) for t in tokens]
    loop = HTTPLoop(port, clients)
    conn.send("ready")
    conn.recv()
    cpu0, t0 = _cpu(), time.monotonic()
    loop.start()
    loop.run(t0 + 600)
    cpu1, t1 = _cpu(), time.monotonic()
    loop.close()
    conn.send({"record": record, "errors": sum(c.errors for c in clients), "t0": t0,
               "elapsed": t1 - t0, "cpu": cpu1 - cpu0})


# -- socket.io clients: raw WebSocket on epoll --------------------------------------------------

AVAILABLE = b'42/runners,["available-jobs"]'


def ws_frame(text: bytes) -> bytes:
    """A masked client text frame (mask key 0: the payload goes as is)."""
    n = len(text)
    if n < 126:
        head = bytes((0x81, 0x80 | n))
    else:
        head = bytes((0x81, 0x80 | 126)) + n.to_bytes(2, "big")
    return head + b"\0\0\0\0" + text


def ws_frames(buf: bytearray):
    """Pops whole server frames from ``buf`` -> [(opcode, payload)]."""
    out = []
    while len(buf) >= 2:
        opcode, n, pos = buf[0] & 0x0F, buf[1] & 0x7F, 2
        if n == 126:
            if len(buf) < 4:
                break
            n, pos = int.from_bytes(buf[2:4], "big"), 4
        elif n == 127:
            if len(buf) < 10:
                break
            n, pos = int.from_bytes(buf[2:10], "big"), 10
        if len(buf) < pos + n:
            break
        out.append((opcode, bytes(buf[pos:pos + n])))
        del buf[:pos + n]
    return out


def run_sockets(port, tokens, conn):
    """A generator process for (c): connects ``tokens`` sockets, then records the arrival
    time of every available-jobs frame, until told to report."""
    epoll = select.epoll()
    socks, state, bufs, arrivals = {}, {}, {}, {}
    handshake = (b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                 b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                 b"\r\n" % port)
    connected = refused = 0
    pending = list(tokens)
    in_flight = 0
    epoll.register(conn.fileno(), select.EPOLLIN)
    cpu0 = _cpu()
    ready_sent = False
    while True:
        while pending and in_flight < 64:  # a burst would overflow the listen backlog
            token = pending.pop()
            sock = socket.create_connection(("127.0.0.1", port))
            sock.setblocking(False)
            fd = sock.fileno()
            socks[fd], state[fd], bufs[fd], arrivals[fd] = sock, ("http", token), bytearray(), []
            sock.send(handshake)
            epoll.register(fd, select.EPOLLIN)
            in_flight += 1
        if not pending and not in_flight and not ready_sent:
            conn.send({"connected": connected, "refused": refused, "cpu": _cpu() - cpu0})
            ready_sent = True
        events = epoll.poll(1.0)
        now = time.monotonic()
        for fd, ev in events:
            if fd == conn.fileno():
                cmd = conn.recv()
                if cmd == "report":
                    conn.send({"arrivals": list(arrivals.values()), "cpu": _cpu() - cpu0})
                    for s in socks.values():
                        s.close()
                    return
                continue
            sock = socks[fd]
            data = sock.recv(65536)
            if not data:
                epoll.unregister(fd)
                if state[fd] != "open":
                    in_flight -= 1
                state[fd] = "closed"
                continue
            buf = bufs[fd]
            buf += data
            st = state[fd]
            if isinstance(st, tuple) and st[0] == "http":
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    continue
                if not buf.startswith(b"HTTP/1.1 101"):
                    raise RuntimeError(f"websocket refused: {bytes(buf[:200])!r}")
                del buf[:end + 4]
                state[fd] = st = ("engineio", st[1])
            for opcode, payload in ws_frames(buf):
                if opcode == 8:
                    continue
                if opcode == 9:  # a WebSocket ping
                    sock.send(bytes((0x8A, 0x80 | len(payload))) + b"\0\0\0\0" + payload)
                    continue
                if payload == AVAILABLE:
                    arrivals[fd].append(now)
                elif payload == b"2":
                    sock.send(ws_frame(b"3"))
                elif st[0] == "engineio" and payload.startswith(b"0{"):
                    sock.send(ws_frame(b'40/runners,' + json.dumps(
                        {"runnerToken": st[1]}).encode()))
                    state[fd] = st = ("namespace", st[1])
                elif st[0] == "namespace" and payload.startswith(b"40/runners,"):
                    state[fd] = st = ("open",)
                    connected += 1
                    in_flight -= 1
                elif st[0] == "namespace" and payload.startswith(b"44/runners,"):
                    refused += 1
                    in_flight -= 1
                    state[fd] = st = ("refused",)


# -- the daemon --------------------------------------------------------------------------------


def start_daemon(workdir, data_dir, port):
    singers, director, desk = free_ports(3)
    log = os.path.join(workdir, "choir.log")
    command = [os.path.join(BIN, "twistd"), "-n", "--pidfile=", "-l", log, "choir",
               f"--http=tcp:{port}:interface=127.0.0.1", "-d", data_dir, "--no-record",
               f"--singers=tcp:{singers}:interface=127.0.0.1",
               f"--director=tcp:{director}:interface=127.0.0.1",
               f"--desk=tcp:{desk}:interface=127.0.0.1",
               "--max-connections-per-address=0"]  # every client comes from 127.0.0.1
    with open(os.path.join(workdir, "stderr.log"), "wb") as err:
        process = subprocess.Popen(command, cwd=workdir, stdin=subprocess.DEVNULL,
                                   stdout=err, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"daemon did not start; see {log}")
            time.sleep(0.05)
    return process, log


def stop_daemon(process):
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def http_call(port, path, obj):
    """One blocking JSON POST -> (status, parsed body or None)."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(json_post(port, path, obj))
        buf = bytearray()
        while True:
            parsed = parse_response(buf)
            if parsed is not None:
                r = parsed[0]
                return r.status, (json.loads(r.body) if r.body else None)
            data = sock.recv(65536)
            if not data:
                raise RuntimeError("connection closed")
            buf += data


class Daemon:
    def __init__(self, process):
        self.ps = psutil.Process(process.pid)

    def cpu(self):
        t = self.ps.cpu_times()
        return t.user + t.system


# -- the phases --------------------------------------------------------------------------------

CTX = multiprocessing.get_context("spawn")


def _spawn(target, *args):
    parent, child = CTX.Pipe()
    p = CTX.Process(target=target, args=(*args, child), daemon=True)
    p.start()
    return p, parent


def _split(items, k):
    return [items[i::k] for i in range(k)]


def phase_requests(port, daemon, tokens, clients, seconds, generators):
    gens = [_spawn(run_requests, port, part, 1.0, seconds)
            for part in _split(tokens[:clients], min(generators, clients))]
    for _, c in gens:
        c.recv()
    cpu0 = daemon.cpu()
    for _, c in gens:
        c.send("go")
    results = [c.recv() for _, c in gens]
    for p, _ in gens:
        p.join()
    elapsed = max(r["elapsed"] for r in results)
    lat = [x for r in results for x in r["latencies"]]
    daemon_cpu = daemon.cpu() - cpu0  # includes the 1 s warm-up
    return {"clients": clients, "requests": len(lat), "rps": len(lat) / elapsed,
            "p50_ms": _percentile(lat, 50) * 1000, "p99_ms": _percentile(lat, 99) * 1000,
            "errors": sum(r["errors"] for r in results),
            "jobs_per_answer": max(r["jobs_seen"] for r in results),
            "daemon_cpu_pct": 100 * daemon_cpu / (elapsed + 1.0),
            "generator_cpu_pct": 100 * sum(r["cpu"] for r in results) / elapsed,
            "generators": len(gens)}


def phase_cycles(port, daemon, tokens, jobs, runners, generators):
    parts = _split(tokens[:runners], min(generators, runners))
    job_parts = _split(list(reversed(jobs)), len(parts))
    gens = [_spawn(run_cycles, port, part, list(reversed(js)))
            for part, js in zip(parts, job_parts)]
    for _, c in gens:
        c.recv()
    cpu0, t0 = daemon.cpu(), time.monotonic()
    for _, c in gens:
        c.send("go")
    results = [c.recv() for _, c in gens]
    elapsed_all = time.monotonic() - t0
    daemon_cpu = daemon.cpu() - cpu0
    for p, _ in gens:
        p.join()
    # the steady window: until the first generator ran out of jobs
    end = min(max(t for t, _ in r["record"]) for r in results if r["record"])
    start = min(r["t0"] for r in results)
    done = [d for r in results for t, d in r["record"] if t <= end]
    window = end - start
    return {"runners": runners, "cycles": sum(len(r["record"]) for r in results),
            "cycles_per_s": len(done) / window, "p50_ms": _percentile(done, 50) * 1000,
            "p99_ms": _percentile(done, 99) * 1000, "errors": sum(r["errors"] for r in results),
            "daemon_cpu_pct": 100 * daemon_cpu / elapsed_all,
            "generator_cpu_pct": 100 * sum(r["cpu"] for r in results) / elapsed_all,
            "generators": len(gens)}


def phase_sockets(port, daemon, data_dir, base_url, tokens, trigger_token, trigger_jobs,
                  rounds, procs, gap):
    gens = [_spawn(run_sockets, port, part) for part in _split(tokens, procs)]
    t_connect = time.monotonic()
    ready = [c.recv() for _, c in gens]
    connect_s = time.monotonic() - t_connect
    connected = sum(r["connected"] for r in ready)
    maker, maker_conn = _spawn(_store_maker, data_dir, base_url)
    time.sleep(gap)
    cpu0 = daemon.cpu()
    t_daemon, t_store = [], []
    for r in range(rounds):
        # daemon: accept a job (no notification), then abort it -> pending -> available-jobs
        uuid = trigger_jobs[r]
        status, body = http_call(port, f"{P}/jobs/{uuid}/accept", {"runnerToken": trigger_token})
        if status != 200:
            raise RuntimeError(f"trigger accept: {status} {body}")
        time.sleep(gap)
        t0 = time.monotonic()
        status, _ = http_call(port, f"{P}/jobs/{uuid}/abort",
                              {"runnerToken": trigger_token, "jobToken": body["job"]["jobToken"],
                               "reason": "bench"})
        if status != 204:
            raise RuntimeError(f"trigger abort: {status}")
        t_daemon.append(t0)
        time.sleep(gap)
        # store: another process creates a pending job
        maker_conn.send("make")
        t0, _ = maker_conn.recv()
        t_store.append(t0)
        time.sleep(gap)
    maker_conn.send(None)
    maker.join(10)
    results = []
    for _, c in gens:
        c.send("report")
        results.append(c.recv())
    for p, _ in gens:
        p.join()
    daemon_cpu = daemon.cpu() - cpu0
    arrivals = [a for r in results for a in r["arrivals"]]

    def delays(starts):
        out, missing, firsts = [], 0, []
        for t0 in starts:
            this = []
            for times in arrivals:
                later = [t for t in times if t >= t0]
                if later and later[0] - t0 < gap:
                    this.append(later[0] - t0)
                else:
                    missing += 1
            out += this
            if this:
                firsts.append(min(this))
        return out, missing, firsts

    rows = []
    for how, starts in (("daemon (runner abort)", t_daemon), ("store (another process)", t_store)):
        d, missing, firsts = delays(starts)
        rows.append({"made_by": how, "sockets": connected, "rounds": len(starts),
                     "first_ms": _percentile(firsts, 50) * 1000,
                     "p50_ms": _percentile(d, 50) * 1000, "p99_ms": _percentile(d, 99) * 1000,
                     "max_ms": max(d) * 1000 if d else float("nan"), "missed": missing})
    return {"connected": connected, "refused": sum(r["refused"] for r in ready),
            "connect_s": connect_s, "rows": rows,
            "generator_cpu_s": sum(r["cpu"] for r in results),
            "daemon_cpu_s": daemon_cpu}


# -- main ------------------------------------------------------------------------------------

def machine():
    model = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, {platform.system()} {platform.release()}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", default="1,32", help="(a) concurrent clients, comma-separated")
    ap.add_argument("--seconds", type=float, default=10.0, help="(a) measured seconds per row")
    ap.add_argument("--cycle-runners", type=int, default=32, help="(b) concurrent runners")
    ap.add_argument("--cycle-jobs", type=int, default=1000, help="(b) pending jobs to run")
    ap.add_argument("--sockets", type=int, default=1000, help="(c) socket.io clients")
    ap.add_argument("--rounds", type=int, default=10, help="(c) rounds of each kind")
    ap.add_argument("--generators", type=int, default=1, help="generator processes for (a), (b)")
    ap.add_argument("--socket-procs", type=int, default=1, help="generator processes for (c)")
    ap.add_argument("--only", default="abc", help="phases to run (letters of a, b, c)")
    ap.add_argument("--workdir", help="keep the data dir and daemon log here")
    ap.add_argument("--json", action="store_true", help="print every measured field as JSON")
    args = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.sockets + 512
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, want)), hard))

    clients = [int(c) for c in args.clients.split(",") if c]
    workdir = args.workdir or tempfile.mkdtemp(prefix="choir-bench-")
    os.makedirs(workdir, exist_ok=True)
    data_dir = os.path.join(workdir, "data")
    os.makedirs(data_dir, exist_ok=True)
    port, = free_ports(1)
    base_url = f"http://127.0.0.1:{port}"
    n_runners = max(args.sockets + 1, max(clients), args.cycle_runners)
    n_jobs = args.cycle_jobs + args.rounds + 20

    out = {"machine": machine(), "requests": [], "cycles": None, "sockets": None}
    if not args.json:
        print(out["machine"])
    p, c = _spawn(_seed, data_dir, n_runners, n_jobs, base_url)
    seeded = c.recv()
    p.join()
    tokens, jobs = seeded["tokens"], seeded["jobs"]
    process, log = start_daemon(workdir, data_dir, port)
    try:
        daemon = Daemon(process)
        if "a" in args.only:
            for n in clients:
                out["requests"].append(phase_requests(port, daemon, tokens, n, args.seconds,
                                                      args.generators))
        if "b" in args.only:
            out["cycles"] = phase_cycles(port, daemon, tokens, jobs[:args.cycle_jobs],
                                         args.cycle_runners, args.generators)
        if "c" in args.only:
            out["sockets"] = phase_sockets(port, daemon, data_dir, base_url,
                                           tokens[:args.sockets], tokens[args.sockets],
                                           jobs[args.cycle_jobs:], args.rounds,
                                           args.socket_procs, ROUND_GAP)
        out["daemon_rss_mb"] = daemon.ps.memory_info().rss / 2 ** 20
    finally:
        stop_daemon(process)
        with open(log, errors="replace") as f:
            notable = [line for line in f if re.search(r"#(error|critical)\]", line)]
        out["daemon_log_errors"] = len(notable)
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)

    if args.json:
        print(json.dumps(out, indent=1))
        return
    if out["requests"]:
        print("\n(a) POST jobs/request (10 jobs per answer)")
        print("| clients | req/s | p50 ms | p99 ms | errors | daemon CPU % | generator CPU % |")
        print("|---|---|---|---|---|---|---|")
        for r in out["requests"]:
            print(f"| {r['clients']} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                  f"{r['errors']} | {r['daemon_cpu_pct']:.0f} | {r['generator_cpu_pct']:.0f} |")
    if out["cycles"]:
        r = out["cycles"]
        print("\n(b) full cycles accept -> update -> success (16 kB videoFile)")
        print("| runners | cycles | cycles/s | cycle p50 ms | cycle p99 ms | errors | daemon CPU % | generator CPU % |")
        print("|---|---|---|---|---|---|---|---|")
        print(f"| {r['runners']} | {r['cycles']} | {r['cycles_per_s']:.0f} | {r['p50_ms']:.1f} | "
              f"{r['p99_ms']:.1f} | {r['errors']} | {r['daemon_cpu_pct']:.0f} | "
              f"{r['generator_cpu_pct']:.0f} |")
    if out["sockets"]:
        s = out["sockets"]
        print(f"\n(c) available-jobs to {s['connected']} socket.io clients "
              f"(connected in {s['connect_s']:.1f} s, {s['refused']} refused)")
        print("| job made pending by | rounds | first socket ms | p50 ms | p99 ms | max ms | missed |")
        print("|---|---|---|---|---|---|---|")
        for r in s["rows"]:
            print(f"| {r['made_by']} | {r['rounds']} | {r['first_ms']:.1f} | {r['p50_ms']:.1f} | "
                  f"{r['p99_ms']:.1f} | {r['max_ms']:.1f} | {r['missed']} |")
        print(f"generator CPU {s['generator_cpu_s']:.1f} s, daemon CPU {s['daemon_cpu_s']:.1f} s "
              f"over the rounds")
    print(f"\ndaemon RSS {out.get('daemon_rss_mb', 0):.0f} MB; daemon log errors: "
          f"{out['daemon_log_errors']}")


if __name__ == "__main__":
    main()
