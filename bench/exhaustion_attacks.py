"""The exhaustion bench's attackers: the socket plumbing (``Control``, ``connect_from``, ``Swarm``)
and one ``attack_*(params, conn)`` per attack, each run in a process of its own; it says
'ramped' on ``conn`` once its connections are made, and sends its report when told to stop.

Over 400 lines: eight attacks on one socket plumbing, each a function of its own; they are
used only by bench/exhaustion.py.
"""
import collections
import os
import random
import resource
import select
import socket
import string
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from choir_protocol.rehearsal import desk  # noqa: E402
from choir_protocol.rehearsal.chunks import encode_index, signal_chunk  # noqa: E402
from choir_protocol.rehearsal.constants import CHUNKS_PER_SECOND as RATE  # noqa: E402
from choir_protocol.rehearsal.constants import (TRACK_CHUNK_SIZE, VOCAL_GROUPS, VOICE_CHUNK_SIZE,
                                                Signal)
from choir_protocol.rehearsal.header import Header  # noqa: E402

GROUPS = VOCAL_GROUPS[1:]


def raise_nofile(want: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = soft if hard == resource.RLIM_INFINITY and soft >= want else min(hard, max(soft, want))
    if target != soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


# -- attacker plumbing (runs in the attacker's process) ---------------------------------------

class Control:
    """The attacker's side of its pipe: 'ramped' goes up, 'stop' comes down."""

    def __init__(self, conn, max_seconds: float):
        self.conn = conn
        self.t0 = time.monotonic()
        self.deadline = self.t0 + max_seconds
        self.ramp_t = None
        self._stop = False
        self.checkpoints: dict = {}

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def ramped(self, **info) -> None:
        if self.ramp_t is None:
            self.ramp_t = time.monotonic()
            self.conn.send({"event": "ramped", "t": round(self.ramp_t - self.t0, 2), **info})

    def stopped(self) -> bool:
        if not self._stop:
            if time.monotonic() > self.deadline:
                self._stop = True
            else:
                try:
                    if self.conn.poll():
                        self.conn.recv()  # "stop"
                        self._stop = True
                except (EOFError, OSError):  # the bench went away
                    self._stop = True
        return self._stop

    def checkpoint(self, offsets, count) -> None:
        """Record ``count()`` at each offset (s after the ramp) once it is reached."""
        if self.ramp_t is None:
            return
        since = time.monotonic() - self.ramp_t
        for offset in offsets:
            if offset not in self.checkpoints and since >= offset:
                self.checkpoints[offset] = count()


def connect_from(addr: str, port: int, timeout: float = 3.0, rcvbuf: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind((addr, 0))
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        sock.close()
        raise
    return sock


class Conn:
    __slots__ = ("sock", "kind", "on_data", "opened", "closed", "rx", "state", "buf", "out", "reads")

    def __init__(self, sock, kind, on_data, reads=True):
        self.sock, self.kind, self.on_data, self.reads = sock, kind, on_data, reads
        self.opened, self.closed, self.rx = time.monotonic(), None, 0
        self.state, self.buf, self.out = None, bytearray(), b""


class Swarm:
    """Many client sockets on one epoll: each connected (blocking, from a source address),
    sent its opening, then read; whatever comes goes to ``on_data`` (or is dropped). A
    connection the daemon closes is counted, by kind."""

    def __init__(self):
        self.epoll = select.epoll()
        self.conns: dict = {}
        self.connected = collections.Counter()
        self.failed = collections.Counter()
        self.closed_by_daemon = collections.Counter()
        self.errors = collections.Counter()
        self.rx = 0

    def add(self, addr, port, opening=b"", kind="conn", on_data=None, rcvbuf=0, events=None):
        try:
            sock = connect_from(addr, port, rcvbuf=rcvbuf)
            if opening:
                sock.sendall(opening)
        except OSError as e:
            self.failed[kind] += 1
            self.errors[f"{kind} connect: {type(e).__name__}"] += 1
            try:
                sock.close()
            except UnboundLocalError:
                pass
            return None
        sock.setblocking(False)
        events = select.EPOLLIN if events is None else events
        conn = Conn(sock, kind, on_data, reads=bool(events & select.EPOLLIN))
        self.conns[sock.fileno()] = conn
        self.epoll.register(sock.fileno(), events)
        self.connected[kind] += 1
        return conn

    def open(self, kind=None) -> int:
        return sum(1 for c in self.conns.values() if kind is None or c.kind == kind)

    def lost(self, conn) -> None:
        fd = conn.sock.fileno()
        if fd in self.conns:
            self.epoll.unregister(fd)
            del self.conns[fd]
            self.closed_by_daemon[conn.kind] += 1
        conn.closed = time.monotonic()
        conn.sock.close()

    def send(self, conn, data: bytes) -> bool:
        """Non-blocking; what the kernel does not take now waits in ``conn.out``."""
        if conn.closed is not None:
            return False
        data = conn.out + data if conn.out else data
        try:
            n = conn.sock.send(data)
        except BlockingIOError:
            n = 0
        except OSError:
            self.lost(conn)
            return False
        conn.out = data[n:]
        return True

    def poll(self, timeout: float) -> None:
        for fd, ev in self.epoll.poll(timeout):
            conn = self.conns.get(fd)
            if conn is None:
                continue
            if not conn.reads:  # watched for hang-ups only: never read
                if ev & (select.EPOLLHUP | select.EPOLLERR | select.EPOLLRDHUP):
                    self.lost(conn)
                continue
            if ev & select.EPOLLIN or not (ev & select.EPOLLOUT):
                try:
                    data = conn.sock.recv(262144)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    self.lost(conn)
                    continue
                conn.rx += len(data)
                self.rx += len(data)
                if conn.on_data is not None:
                    conn.on_data(conn, data)
            if ev & select.EPOLLOUT and conn.out and conn.closed is None:
                self.send(conn, b"")

    def wait(self, seconds: float, ctl=None) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not (ctl and ctl.stopped()):
            self.poll(min(0.1, max(0.0, end - time.monotonic())))

    def close(self) -> None:
        for conn in list(self.conns.values()):
            conn.sock.close()
        self.conns.clear()
        self.epoll.close()

    def summary(self) -> dict:
        return {"connected": dict(self.connected), "failed": dict(self.failed),
                "closed_by_daemon": dict(self.closed_by_daemon),
                "open": dict(collections.Counter(c.kind for c in self.conns.values())),
                "errors": dict(self.errors), "rx_mb": round(self.rx / 2**20, 2)}


def _connect_many(swarm, ctl, count, make, batch=20):
    """``make(i)`` -> (addr, port, opening, kind[, on_data]) for ``count`` connections, in
    batches (a burst of connects overflows a listen backlog of 50: 1 s SYN retries)."""
    for i in range(count):
        if ctl.stopped():
            return
        swarm.add(*make(i))
        if i % batch == batch - 1:
            swarm.poll(0.01)


KEEPALIVE_VOICE = signal_chunk(Signal.KEEPALIVE, VOICE_CHUNK_SIZE)
CHECK_IN = signal_chunk(Signal.END, VOICE_CHUNK_SIZE)
_index = struct.Struct(">i").unpack_from


def _keepalives(swarm, kind, state, every=10.0) -> int:
    """Every ``every`` s, a keep-alive from each connection of ``kind``; returns how many."""
    now = time.monotonic()
    if now < state.setdefault("next", now + every):
        return 0
    state["next"] = now + every
    sent = 0
    for conn in list(swarm.conns.values()):
        if conn.kind == kind and swarm.send(conn, KEEPALIVE_VOICE):
            sent += 1
    return sent


# -- the attacks ------------------------------------------------------------------------------

def attack_squat(p, conn):
    """A director that sends its header, holds the connection until it is closed, and
    reconnects at once (10 ms after a refusal)."""
    ctl = Control(conn, p["max_seconds"])
    header = Header("squatter", client_version="bench").to_bytes()
    connects = failed = refusals = unanswered = 0
    held, longest = 0.0, 0.0
    while not ctl.stopped():
        t = time.monotonic()
        try:
            sock = connect_from(p["addr"], p["ports"]["director"], 2.0)
        except OSError:
            failed += 1
            time.sleep(0.05)
            continue
        connects += 1
        ctl.ramped()
        refused = answered = False
        try:
            sock.sendall(header)
            sock.settimeout(0.2)
            while not ctl.stopped():
                try:
                    data = sock.recv(65536)
                except socket.timeout:
                    continue
                except OSError:
                    break
                if not data:
                    break
                answered = True
                if len(data) >= 4 and _index(data, 0)[0] < 0:
                    refused = True  # -2 (or our -4): go again at once
                    break
        except OSError:
            pass
        finally:
            sock.close()
        duration = time.monotonic() - t
        longest = max(longest, duration)
        if duration > 0.5:  # held the director's port for a while, refused in the end or not
            held += duration
        if refused:
            refusals += 1
        elif not answered and not ctl.stopped():
            unanswered += 1  # closed by the daemon without a word
        if duration < 0.5:
            time.sleep(0.01)
    elapsed = ctl.elapsed()
    conn.send({"connects": connects, "connect_failed": failed, "refused": refusals,
               "closed_unanswered": unanswered,
               "held_s": round(held, 1), "longest_hold_s": round(longest, 1),
               "elapsed_s": round(elapsed, 1), "rate_per_s": round(connects / max(elapsed, 1e-9), 1)})


def attack_keepalive(p, conn):
    """``count`` singers from one address: header, a keep-alive every 10 s, never a check-in."""
    raise_nofile(p["count"] + 256)
    ctl = Control(conn, p["max_seconds"])
    swarm, state, keepalives = Swarm(), {}, 0
    port = p["ports"]["singers"]
    _connect_many(swarm, ctl, p["count"], lambda i: (
        p["addr"], port, Header(f"idle-{i}", GROUPS[i % len(GROUPS)], "bench").to_bytes(), "singer"))
    swarm.wait(0.5, ctl)
    open_at_ramp = swarm.open()
    ctl.ramped(open=open_at_ramp)
    while not ctl.stopped():
        swarm.poll(0.2)
        keepalives += _keepalives(swarm, "singer", state)
    out = swarm.summary()
    out.update(attempted=p["count"], open_at_ramp=open_at_ramp, keepalives_sent=keepalives)
    swarm.close()
    conn.send(out)


def _long_name(i: int) -> str:
    rng = random.Random(i)
    return "".join(rng.choices(string.ascii_letters + string.digits, k=218))


def attack_desk(p, conn):
    """``count`` long-named singers from 60 addresses, then one desk (reconnected if
    dropped) asking for the whole list with ``window`` requests in flight."""
    raise_nofile(p["count"] + 256)
    ctl = Control(conn, p["max_seconds"])
    swarm, state = Swarm(), {}
    ports = p["ports"]
    _connect_many(swarm, ctl, p["count"], lambda i: (
        f"127.0.1.{1 + i % 60}", ports["singers"],
        Header(_long_name(i), GROUPS[i % len(GROUPS)], "bench").to_bytes(), "singer"))
    request = desk.encode_message({"action": "list", "all": True})
    window = p["window"]
    stats = {"requests": 0, "replies": 0, "reply_bytes_max": 0, "listed": None,
             "desk_connections": 0, "first_reply": None, "errors": None}
    desk_conn = [None]
    in_flight = [0]

    def on_reply(c, data):
        c.buf += data
        while len(c.buf) >= 2:
            (length,) = struct.unpack_from(">H", c.buf)
            if len(c.buf) < 2 + length:
                break
            payload = bytes(c.buf[2:2 + length])
            del c.buf[:2 + length]
            stats["replies"] += 1
            in_flight[0] = max(0, in_flight[0] - 1)
            stats["reply_bytes_max"] = max(stats["reply_bytes_max"], length + 2)
            if stats["listed"] is None:
                try:
                    listed = desk.decode_payload(payload)
                    stats["listed"] = len(listed) if isinstance(listed, list) else str(listed)[:120]
                except Exception as e:  # a refusal or something new: keep its text
                    stats["listed"] = f"undecodable: {e}"
                stats["first_reply"] = round(ctl.elapsed(), 2)

    def open_desk():
        c = swarm.add(p["addr"], ports["desk"], Header("flood").to_bytes(), "desk", on_reply)
        stats["desk_connections"] += 1
        in_flight[0] = 0
        desk_conn[0] = c

    open_desk()
    ramp_deadline = time.monotonic() + 5
    while not ctl.stopped():
        c = desk_conn[0]
        if c is None or c.closed is not None:
            swarm.poll(0.1)
            open_desk()
            continue
        if c.out:
            swarm.send(c, b"")
        elif in_flight[0] < window:
            n = window - in_flight[0]
            swarm.send(c, request * n)
            stats["requests"] += n
            in_flight[0] += n
        swarm.poll(0.05 if c.out or in_flight[0] >= window else 0.0)
        _keepalives(swarm, "singer", state)
        if stats["replies"] or time.monotonic() > ramp_deadline:
            ctl.ramped(singers=swarm.open("singer"))
    elapsed = ctl.elapsed() - (stats["first_reply"] or 0)
    out = swarm.summary()
    out.update(stats, attempted=p["count"],
               replies_per_s=round(stats["replies"] / max(elapsed, 1e-9), 1))
    swarm.close()
    conn.send(out)


def attack_upload(p, conn):
    """A 1 GiB multipart upload with no Authorization, as fast as the daemon reads it."""
    ctl = Control(conn, p["max_seconds"])
    total = p["bytes"]
    boundary = b"exhaustion" + os.urandom(6).hex().encode()
    preamble = (b'--%s\r\nContent-Disposition: form-data; name="file"; filename="big.mp4"\r\n'
                b"Content-Type: video/mp4\r\n\r\n" % boundary)
    epilogue = b"\r\n--%s--\r\n" % boundary
    head = (b"POST /api/v1/media HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
            b"Content-Type: multipart/form-data; boundary=%s\r\nContent-Length: %d\r\n\r\n"
            % (p["ports"]["http"], boundary, total))
    out = {"body_bytes": total, "sent": 0, "status": None, "answered_after_bytes": None,
           "answered_after_s": None, "closed_after_bytes": None, "error": None}
    try:
        sock = connect_from(p["addr"], p["ports"]["http"])
    except OSError as e:
        out["error"] = f"connect: {e}"
        conn.send(out)
        return
    ctl.ramped()
    zeros = memoryview(bytes(1 << 20))
    reply = bytearray()
    t0 = time.monotonic()
    try:
        sock.sendall(head + preamble)
        sent = len(preamble)
        sock.setblocking(False)
        tail_sent = False
        answered_wait = None
        while not ctl.stopped():
            want_write = not tail_sent
            readable, writable, _ = select.select([sock], [sock] if want_write else [], [], 0.2)
            if readable:
                try:
                    data = sock.recv(65536)
                except (BlockingIOError, InterruptedError):
                    data = None
                except OSError:
                    data = b""
                if data == b"":
                    out["closed_after_bytes"] = sent
                    break
                if data:
                    if not reply:
                        out["answered_after_bytes"] = sent
                        out["answered_after_s"] = round(time.monotonic() - t0, 2)
                    reply += data
                    if out["status"] is None and b"\r\n" in reply:
                        line = bytes(reply.split(b"\r\n", 1)[0])
                        try:
                            out["status"] = int(line.split()[1])
                        except (IndexError, ValueError):
                            out["status"] = line[:40].decode("latin-1")
            if writable:
                left = total - len(epilogue) - sent
                try:
                    if left > 0:
                        sent += sock.send(zeros[:min(len(zeros), left)])
                    else:
                        sock.sendall(epilogue)
                        sent += len(epilogue)
                        tail_sent = True
                        answered_wait = time.monotonic() + 10
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError as e:
                    out["closed_after_bytes"] = sent
                    out["error"] = type(e).__name__
                    break
            if tail_sent and (out["status"] is not None or time.monotonic() > answered_wait):
                break
            out["sent"] = sent
        out["sent"] = sent
    finally:
        sock.close()
    out["seconds"] = round(time.monotonic() - t0, 2)
    out["mb_per_s"] = round(out["sent"] / 2**20 / max(out["seconds"], 1e-9), 1)
    conn.send(out)


def attack_ranges(p, conn):
    """``workers`` threads, each GETting the file with 100 or 1000 ranges in a loop."""
    ctl = Control(conn, p["max_seconds"])
    stop = threading.Event()
    lock = threading.Lock()
    stats = {k: {"requests": 0, "bytes": 0, "max_bytes": 0, "status": collections.Counter(),
                 "errors": collections.Counter()} for k in p["ranges"]}

    def worker(k):
        request = (b"GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nRange: bytes=%s\r\n"
                   b"Connection: close\r\n\r\n" % (p["path"].encode(), p["ports"]["http"],
                                                  b",".join([b"0-"] * k)))
        buf = bytearray(1 << 20)
        while not stop.is_set():
            got, status = 0, None
            try:
                sock = connect_from(p["addr"], p["ports"]["http"], 10.0)
                try:
                    sock.sendall(request)
                    head = b""
                    while not stop.is_set():
                        n = sock.recv_into(buf)
                        if not n:
                            break
                        if status is None:
                            head += bytes(buf[:min(n, 64)])
                            if b"\r\n" in head:
                                words = head.split(b"\r\n", 1)[0].split(b" ")
                                status = words[1].decode("latin-1") if len(words) > 1 else "?"
                        got += n
                finally:
                    sock.close()
                error = None
            except OSError as e:
                error = type(e).__name__
            with lock:
                s = stats[k]
                s["requests"] += 1
                s["bytes"] += got
                s["max_bytes"] = max(s["max_bytes"], got)
                s["status"][status or "none"] += 1
                if error:
                    s["errors"][error] += 1
            if error:
                time.sleep(0.05)

    threads = [threading.Thread(target=worker, args=(p["ranges"][i % len(p["ranges"])],),
                                daemon=True) for i in range(p["workers"])]
    for t in threads:
        t.start()
    ctl.ramped()
    while not ctl.stopped():
        time.sleep(0.1)
    stop.set()
    for t in threads:
        t.join(15)
    size = p["file_size"]
    out = {"file_bytes": size, "workers": p["workers"]}
    for k, s in stats.items():
        out[f"ranges_{k}"] = {"requests": s["requests"], "mb": round(s["bytes"] / 2**20, 1),
                              "max_reply_mb": round(s["max_bytes"] / 2**20, 2),
                              "amplification": round(s["max_bytes"] / size, 2) if size else None,
                              "status": dict(s["status"]), "errors": dict(s["errors"])}
    conn.send(out)


def attack_noread(p, conn):
    """Three echo singers, then a director streaming at ``pace`` x real time that never reads
    (only hang-ups are watched). The singers leave at the end of their session."""
    ctl = Control(conn, p["max_seconds"])
    swarm = Swarm()
    ports = p["ports"]
    state = {"session": False, "voice": 0, "ended": 0}
    silence = bytes(VOICE_CHUNK_SIZE - 4)

    def singer_data(c, data):
        c.buf += data
        end = len(c.buf) - len(c.buf) % TRACK_CHUNK_SIZE
        out = []
        for offset in range(0, end, TRACK_CHUNK_SIZE):
            index = _index(c.buf, offset)[0] // 199
            if index >= 0:
                if c.state is None:
                    c.state = "in"
                    state["session"] = True
                    out.append(CHECK_IN)
                if c.state == "in":
                    out.append(encode_index(index) + silence)
                    state["voice"] += 1
            elif index == Signal.END and c.state == "in":
                c.state = "done"
                state["ended"] += 1
        del c.buf[:end]
        if out:
            swarm.send(c, b"".join(out))
        if c.state == "done":
            swarm.lost(c)  # we leave: not a close by the daemon
            swarm.closed_by_daemon[c.kind] -= 1

    for i in range(3):
        swarm.add(p["addr"], ports["singers"],
                  Header(f"noread-singer-{i}", GROUPS[i], "bench").to_bytes(), "singer", singer_data)
    swarm.wait(0.5, ctl)
    events = select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR  # never EPOLLIN: never read
    director = swarm.add(p["addr"], ports["director"], Header("noread").to_bytes(), "director",
                         rcvbuf=4096, events=events)
    out = {"director_dropped_after_s": None, "track_chunks_sent": 0}
    if director is None:
        out.update(swarm.summary(), error="director could not connect")
        swarm.close()
        conn.send(out)
        return
    silent_track = bytes(TRACK_CHUNK_SIZE - 4)
    t0, sent = time.monotonic(), 0
    ramp_deadline = t0 + 5
    while not ctl.stopped():
        now = time.monotonic()
        if director.closed is None:
            if director.out:  # the daemon stopped reading us: wait for the kernel
                swarm.send(director, b"")
            else:
                due = min(int((now - t0) * RATE * p["pace"]) + 1, sent + 500)
                if due > sent:
                    swarm.send(director, b"".join(encode_index(i) + silent_track
                                                  for i in range(sent, due)))
                    sent = due
        elif out["director_dropped_after_s"] is None:
            out["director_dropped_after_s"] = round(now - t0, 1)
        swarm.poll(0.01)
        if state["session"] or now > ramp_deadline:
            ctl.ramped(session_started=state["session"])
    sent -= len(director.out) // TRACK_CHUNK_SIZE  # what the kernel never took
    out.update(swarm.summary(), track_chunks_sent=sent,
               track_mb=round(sent * TRACK_CHUNK_SIZE / 2**20, 1), voice_chunks=state["voice"],
               pace=p["pace"], director_open_at_end=director.closed is None)
    swarm.close()
    conn.send(out)


def attack_idle(p, conn):
    """Idle desk connections (nothing sent) and slowloris HTTP requests."""
    raise_nofile(p["desks"] + p["http"] + 256)
    ctl = Control(conn, p["max_seconds"])
    swarm = Swarm()
    ports = p["ports"]
    opening = b"GET /api/v1/media/slowloris HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % ports["http"]
    plan = ([(p["addr"], "desk", ports["desk"], b"")] * p["desks"]
            + [(p["http_addr"], "http", ports["http"], opening)] * p["http"])
    _connect_many(swarm, ctl, len(plan), lambda i: (plan[i][0], plan[i][2], plan[i][3], plan[i][1]))
    ctl.ramped(desk=swarm.open("desk"), http=swarm.open("http"))
    lines, next_line = 0, time.monotonic() + p["line_every"]
    while not ctl.stopped():
        swarm.poll(0.2)
        if time.monotonic() >= next_line:
            next_line += p["line_every"]
            lines += 1
            for c in list(swarm.conns.values()):
                if c.kind == "http":
                    swarm.send(c, b"X-Slow-%d: x\r\n" % lines)
        ctl.checkpoint(p["checkpoints"], lambda: {"desk": swarm.open("desk"), "http": swarm.open("http")})
    out = swarm.summary()
    out.update(attempted={"desk": p["desks"], "http": p["http"]}, header_lines_sent=lines,
               open_at={str(k): v for k, v in sorted(ctl.checkpoints.items())},
               seconds_after_ramp=round(time.monotonic() - ctl.ramp_t, 1) if ctl.ramp_t else None)
    swarm.close()
    conn.send(out)


def attack_socketio(p, conn):
    """WebSocket handshakes to /socket.io/ that never send the namespace CONNECT."""
    raise_nofile(p["count"] + 256)
    ctl = Control(conn, p["max_seconds"])
    swarm = Swarm()
    port = p["ports"]["http"]
    handshake = (b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                 b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                 b"\r\n" % port)
    stats = collections.Counter()

    def on_data(c, data):
        if c.state in ("open", "refused"):
            return
        c.buf += data
        if c.state is None:
            end = c.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if c.buf.startswith(b"HTTP/1.1 101"):
                c.state = "upgraded"
                stats["upgraded"] += 1
                del c.buf[:end + 4]
            else:
                c.state = "refused"
                stats["refused"] += 1
                return
        if c.state == "upgraded" and len(c.buf) >= 3 and c.buf[2:3] == b"0":
            c.state = "open"
            stats["engineio_open"] += 1
            c.buf = bytearray()

    _connect_many(swarm, ctl, p["count"], lambda i: (p["addr"], port, handshake, "ws", on_data))
    deadline = time.monotonic() + 10
    while (not ctl.stopped() and time.monotonic() < deadline
           and stats["engineio_open"] + stats["refused"] < swarm.open()):
        swarm.poll(0.1)
    ctl.ramped(open=swarm.open())
    while not ctl.stopped():
        swarm.poll(0.2)
        ctl.checkpoint(p["checkpoints"], lambda: swarm.open())
    out = swarm.summary()
    out.update(stats, attempted=p["count"],
               open_at={str(k): v for k, v in sorted(ctl.checkpoints.items())},
               seconds_after_ramp=round(time.monotonic() - ctl.ramp_t, 1) if ctl.ramp_t else None)
    swarm.close()
    conn.send(out)

