"""The exhaustion bench's daemon under test (``Daemon``: ``twistd -n choir`` on free 127.0.0.1
ports) and the helpers around it: ports, its log, disk usage, choir-admin, a media upload."""
import collections
import glob
import json
import os
import re
import signal
import subprocess
import sys
import time
import wave

import psutil
from tests.support.ports import free_ports

BIN = os.path.dirname(sys.executable)
ROLES = ("singers", "director", "desk", "http")


def is_listening(port: int) -> bool:
    """From the kernel's tables: a test connection would show up in the daemon's log."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                for line in f.readlines()[1:]:
                    fields = line.split()
                    if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        return True
        except FileNotFoundError:
            pass
    return False


class Daemon:
    def __init__(self, workdir: str, data_dir: str, extra: list):
        self.workdir, self.data_dir = workdir, data_dir
        self.ports = dict(zip(ROLES, free_ports(len(ROLES))))
        self.log = os.path.join(workdir, "choir.log")
        self.tmp = os.path.join(workdir, "tmp")  # TMPDIR: where twisted.web spools bodies
        os.makedirs(self.tmp, exist_ok=True)
        self.command = [os.path.join(BIN, "twistd"), "-n", "--pidfile=", "-l", self.log, "choir",
                        "-d", data_dir,
                        *(f"--{role}=tcp:{port}:interface=127.0.0.1"
                          for role, port in self.ports.items()), *extra]
        with open(os.path.join(workdir, "stdout.log"), "wb") as out:
            self.process = subprocess.Popen(self.command, cwd=workdir, stdin=subprocess.DEVNULL,
                                            stdout=out, stderr=subprocess.STDOUT,
                                            env=dict(os.environ, TMPDIR=self.tmp))
        deadline = time.monotonic() + 30
        while not all(is_listening(p) for p in self.ports.values()):
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = self.output_tail()
                self.stop()
                raise RuntimeError(f"daemon did not start (exit {self.process.poll()}): {tail}")
            time.sleep(0.05)
        self.ps = psutil.Process(self.process.pid)

    def output_tail(self) -> str:
        try:
            with open(os.path.join(self.workdir, "stdout.log"), errors="replace") as f:
                return f.read()[-600:].strip()
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.process.poll() is None

    def rss_mb(self):
        try:
            return self.ps.memory_info().rss / 2**20
        except psutil.Error:
            return None

    def cpu_s(self):
        try:
            t = self.ps.cpu_times()
            return t.user + t.system
        except psutil.Error:
            return None

    def spooled_bytes(self) -> int:
        """Sizes of the regular files the daemon holds open for bodies: deleted (anonymous
        temp files), under TMPDIR, or under the data dir apart from its SQLite files."""
        total = 0
        fd_dir = f"/proc/{self.process.pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            return 0
        for fd in fds:
            try:
                target = os.readlink(os.path.join(fd_dir, fd))
                if not target.startswith("/"):
                    continue
                if not (target.endswith("(deleted)") or target.startswith(self.tmp)
                        or target.startswith(self.data_dir)):
                    continue
                if re.search(r"\.sqlite3(-wal|-shm|-journal)?$", target):
                    continue
                st = os.stat(os.path.join(fd_dir, fd))
                if (st.st_mode & 0o170000) == 0o100000:
                    total += st.st_size
            except OSError:
                continue
        return total

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def disk_usage(path: str) -> int:
    """Like du: allocated bytes of every file under ``path``."""
    total = 0
    for directory, _, names in os.walk(path):
        for name in names:
            try:
                total += os.lstat(os.path.join(directory, name)).st_blocks * 512
            except OSError:
                pass
    return total


def read_log(log_path: str) -> list:
    """The daemon's log lines, oldest first, rotated files included (twistd rotates at 1 MB)."""
    rotated = sorted((p for p in glob.glob(glob.escape(log_path) + ".*")
                      if p.rsplit(".", 1)[1].isdigit()), key=lambda p: -int(p.rsplit(".", 1)[1]))
    lines = []
    for path in rotated + [log_path]:
        try:
            with open(path, errors="replace") as f:
                lines += f.readlines()
        except OSError:
            pass
    return lines


OPENED = re.compile(r"Session (\S+) opened by director (?:'.*' )?[\d.]+:(\d+)")
ENDED = re.compile(r"Session (\S+) ended \((.*)\): (\d+) mix chunks, (\d+) singers mixed")
TROUBLE = re.compile(r"Traceback|Unhandled|#critical\]|#error\]")


def log_findings(lines: list, director_ports: list) -> dict:
    """Of the daemon's log: how the legit director's session ended, and what went wrong."""
    sessions, ended = {}, {}
    for line in lines:
        if (m := OPENED.search(line)) and int(m[2]) in director_ports:
            sessions[m[1]] = int(m[2])
        elif m := ENDED.search(line):
            ended[m[1]] = (m[2], int(m[3]), int(m[4]))
    legit = [ended[s] for s in sessions if s in ended]
    trouble = collections.Counter()
    for line in lines:
        if TROUBLE.search(line):
            text = re.sub(r"^\S+ \[[^]]*\] ", "", line.strip())
            trouble[re.sub(r"\d+", "#", text)[:160]] += 1
    warnings = collections.Counter()
    for line in lines:
        if "#warn]" in line:
            text = re.sub(r"^\S+ \[[^]]*\] ", "", line.strip())
            text = re.sub(r"'[^']*'", "'…'", text)
            warnings[re.sub(r"\d+", "#", text)[:120]] += 1
    return {"legit_sessions": [{"ended": r, "mix_chunks": c, "singers_mixed": n}
                               for r, c, n in legit],
            "trouble": dict(trouble.most_common(8)), "warnings": dict(warnings.most_common(6)),
            "log_lines": len(lines)}


def choir_admin(data_dir: str, *args) -> dict:
    out = subprocess.run([os.path.join(BIN, "choir-admin"), "--data-dir", data_dir, "--json", *args],
                         capture_output=True, text=True, timeout=60)
    if out.returncode:
        raise RuntimeError(f"choir-admin {' '.join(args)}: {out.stderr.strip()}")
    return json.loads(out.stdout)


def make_wav(path: str, seconds: float) -> int:
    import numpy as np
    rate = 44100
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return os.path.getsize(path)


def upload_media(port: int, token: str, path: str) -> dict:
    """POST the file to /api/v1/media with ``token``; -> the media's JSON."""
    import http.client
    boundary = "exhaustionsetup"
    with open(path, "rb") as f:
        data = f.read()
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="tone.wav"\r\n'
            f"Content-Type: audio/wav\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        c.request("POST", "/api/v1/media", body,
                  {"Authorization": f"Bearer {token}",
                   "Content-Type": f"multipart/form-data; boundary={boundary}"})
        r = c.getresponse()
        answer = r.read()
    finally:
        c.close()
    if r.status != 201:
        raise RuntimeError(f"upload: {r.status} {answer[:300]!r}")
    return json.loads(answer)
