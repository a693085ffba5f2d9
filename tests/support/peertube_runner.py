"""PeerTube's own runner (``@peertube/peertube-runner`` 0.0.22) against a real ``twistd choir``.

The runner is ``../shared/peertube-runner/peertube-runner.js`` next to this repository (see
that directory's README), run by ``node`` >= 20. When either is missing the tests that need
it are skipped, saying what is missing; with ``CI=true`` in the environment a missing node or
runner fails them instead: CI must not go green by skipping the compatibility tests.

``RealRunner`` is one runner installation: its own ``XDG_CONFIG_HOME``, ``XDG_CACHE_HOME``
and ``XDG_DATA_HOME`` under a work directory, ``node peertube-runner.js --id ID server`` as
a child process in a process group of its own (its ffmpeg runs in that group too, so one
``killpg`` ends them all), its log in a file. What its code shows, and these helpers
follow:

- ``register`` and ``unregister`` talk to the running ``server`` over a local IPC socket
  named after ``--id`` and exit 0 even when they failed: ``register`` here checks the
  outcome with ``list-registered`` (and the callers with the daemon's runner list).
- An id of the form ``test-<digit>`` wipes the runner's config at start and reports progress
  every 500 ms instead of every 60 s: never used here, the runner runs as in production.
- It never polls: it asks for jobs when its socket.io connection opens, on ``available-jobs``,
  after each job, and 2.5 s after a request that found one.

``RealRunnerCase`` is the base of the tests: a ``TwistdDaemon`` per test, its store opened
from the test process (as ``choir-admin`` does) to wait on job states, ``choir-admin`` for
tokens and listings, uploads over ``POST /api/v1/media``, ffprobe. ``run_media_jobs`` waits
for one media's jobs to end and checks they all completed at the first try. A studio test
(``video-studio-transcoding``) is one more subclass::

    await self.start_daemon("--resolutions", "240")
    await self.until_idle(await self.start_runner("pt-studio"))
    media = await self.upload_video(make_video(path, 4), "to cut")
    await self.run_media_jobs(media["id"])
    # POST {self.base}/api/v1/media/{id}/studio/edit (API token), e.g. a cut; then
    jobs = await self.run_media_jobs(media["id"])   # the studio job and the renditions after it
    outputs = await self.outputs(media["id"])        # probe them: self.probe, packets_seconds

Over 400 lines: all that running PeerTube's own runner takes (node, its config, its
registration, the daemon beside it) in one place, for the three test files that use it.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid as uuidlib

from twisted.internet import reactor, task, threads
from twisted.trial import unittest

from choir_protocol.runners.jobs import FINAL_STATES, JobState

from .daemon_process import TwistdDaemon
from .paths import ROOT

REPO = ROOT
RUNNER_JS = os.path.normpath(os.path.join(REPO, "..", "shared", "peertube-runner",
                                          "peertube-runner.js"))
RUNNER_VERSION = "0.0.22"
MIN_NODE_MAJOR = 20
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def find_node():
    """-> (path, "v20.x.y") of the first node >= 20 on PATH, or (None, why not)."""
    found = []
    for name in ("node", "nodejs"):
        path = shutil.which(name)
        if path is None or path in (f[0] for f in found):
            continue
        try:
            version = subprocess.run([path, "--version"], capture_output=True, text=True,
                                     timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError) as e:
            found.append((path, f"unusable: {e}"))
            continue
        m = re.fullmatch(r"v(\d+)\.\S*", version)
        if m and int(m.group(1)) >= MIN_NODE_MAJOR:
            return path, version
        found.append((path, version or "no version"))
    if not found:
        return None, f"no node on PATH (the real peertube-runner needs node >= {MIN_NODE_MAJOR})"
    return None, (f"node >= {MIN_NODE_MAJOR} needed by the real peertube-runner; found "
                  + ", ".join(f"{p} {v}" for p, v in found))


def missing():
    """What is missing to run the real runner (a sentence), or None."""
    reasons = []
    node, why = find_node()
    if node is None:
        reasons.append(why)
    if not os.path.isfile(RUNNER_JS):
        reasons.append(f"no PeerTube runner at {RUNNER_JS} (peertube-runner {RUNNER_VERSION} "
                       f"bundled, see ../shared/peertube-runner/README.md)")
    for tool in ("ffmpeg", "ffprobe"):
        if shutil.which(tool) is None:
            reasons.append(f"no {tool} on PATH (the runner transcodes with it)")
    return "; ".join(reasons) or None


def require():
    """-> (node, runner.js); else raises SkipTest saying what is missing, or, with CI=true,
    fails: the compatibility tests may not be skipped in CI."""
    reason = missing()
    if reason is not None:
        if in_ci():
            raise AssertionError(f"CI=true and the real peertube-runner cannot run: {reason}")
        raise unittest.SkipTest(reason)
    return find_node()[0], RUNNER_JS


def tail(path, lines=40) -> str:
    try:
        with open(path, errors="replace") as f:
            text = f.read()
    except OSError:
        return f"({path}: none)"
    return f"--- {path} (last {lines} lines) ---\n" + "\n".join(text.splitlines()[-lines:])


def wait_for(condition, deadline, what, alive=None):
    """Blocking: poll ``condition()`` every 50 ms until it is true or ``deadline`` s passed;
    ``alive()`` false (a process died) fails at once."""
    end = time.monotonic() + deadline
    while True:
        value = condition()
        if value:
            return value
        if alive is not None and not alive():
            raise AssertionError(f"gave up waiting for {what}: the process died")
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline:g} s waiting for {what}")
        time.sleep(0.05)


class RealRunner:
    """One installation of the real runner under ``work_dir``; blocking methods."""

    def __init__(self, work_dir, runner_id, node=None, js=None):
        if re.fullmatch(r"test-\d", runner_id):
            raise ValueError(f"--id {runner_id}: the runner wipes its config for test-<digit>")
        if node is None or js is None:
            node, js = require()
        self.node, self.js, self.id = node, js, runner_id
        self.home = os.path.join(work_dir, f"peertube-runner-{runner_id}")
        self.log_path = os.path.join(work_dir, f"peertube-runner-{runner_id}.log")
        # XDG_DATA_HOME holds its IPC socket: a Unix socket's path has at most 107 bytes,
        # and node silently truncates a longer one, so it gets a short directory of its own
        self.data_home = tempfile.mkdtemp(prefix="ptr-", dir="/tmp" if os.path.isdir("/tmp")
                                          else None)
        self.env = {**os.environ,  # (its log and tables are coloured whatever: ANSI stripped)
                    "XDG_CONFIG_HOME": os.path.join(self.home, "config"),
                    "XDG_CACHE_HOME": os.path.join(self.home, "cache"),
                    "XDG_DATA_HOME": self.data_home}
        if len(self.socket_path.encode()) > 107:
            raise ValueError(f"{self.socket_path}: too long for a Unix socket")
        self.process = None
        self.killed = False  # by kill(): its death is no surprise

    # where env-paths("peertube-runner") puts things on Linux (its default suffix: -nodejs)
    @property
    def socket_path(self):
        return os.path.join(self.data_home, "peertube-runner-nodejs", self.id,
                            "peertube-runner.sock")

    @property
    def transcoding_dir(self):
        return os.path.join(self.home, "cache", "peertube-runner-nodejs", self.id, "transcoding")

    @property
    def config_file(self):
        return os.path.join(self.home, "config", "peertube-runner-nodejs", self.id, "config.toml")

    def command(self, *args):
        return [self.node, self.js, "--id", self.id, *args]

    def run(self, *args, timeout=60):
        """One CLI command (register, unregister, list-registered): CompletedProcess."""
        return subprocess.run(self.command(*args), env=self.env, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return ANSI.sub("", f.read())
        except OSError:
            return ""

    def tail(self, lines=40) -> str:
        return tail(self.log_path, lines)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, *job_types, deadline=30.0):
        """``server`` (with ``--enable-job`` for each of ``job_types``, else all of them),
        until its IPC socket listens: ``register`` can talk to it from then on."""
        assert self.process is None, "started twice"
        extra = [a for t in job_types for a in ("--enable-job", t)]
        os.makedirs(self.home, exist_ok=True)
        with open(self.log_path, "ab") as log:  # a file: nobody has to read a pipe
            self.process = subprocess.Popen(self.command("server", *extra), env=self.env,
                                            stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_for(lambda: os.path.exists(self.socket_path)
                     and "for transcoding directory" in self.log(), deadline,
                     f"runner {self.id}'s server to start", self.alive)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.tail()}") from None
        return self

    def list_registered(self):
        """-> [(url, runner name)] as ``list-registered`` prints them."""
        p = self.run("list-registered")
        if p.returncode != 0:
            raise AssertionError(f"list-registered exited {p.returncode}: {p.stderr}")
        rows = []
        for line in ANSI.sub("", p.stdout).splitlines():
            cells = [c.strip() for c in line.strip().strip("│").split("│")]
            if len(cells) >= 2 and cells[0].startswith(("http://", "https://")):
                rows.append((cells[0], cells[1]))
        return rows

    def register(self, url, registration_token, name, description=None):
        """``register``, checked with ``list-registered`` (it exits 0 when it failed)."""
        args = ["register", "--url", url, "--registration-token", registration_token,
                "--runner-name", name]
        if description:
            args += ["--runner-description", description]
        p = self.run(*args)
        registered = self.list_registered()
        if (url.rstrip("/"), name) not in registered:
            raise AssertionError(f"register {name} at {url} failed (exit {p.returncode}): "
                                 f"{p.stdout}{p.stderr}\nregistered: {registered}\n{self.tail()}")
        return p

    def unregister(self, url, name):
        """``unregister``, checked with ``list-registered``."""
        p = self.run("unregister", "--url", url, "--runner-name", name)
        registered = self.list_registered()
        if (url.rstrip("/"), name) in registered:
            raise AssertionError(f"unregister {name} at {url} failed (exit {p.returncode}): "
                                 f"{p.stdout}{p.stderr}\n{self.tail()}")
        return p

    def connected(self, url) -> bool:
        """Its socket.io connection to ``url``'s /runners namespace is open (its log says so,
        as it connects: then it asks for jobs at once)."""
        return f"Connected to {url.rstrip('/')}/runners socket" in self.log()

    def wait_connected(self, url, deadline=30.0):
        try:
            wait_for(lambda: self.connected(url), deadline, f"runner {self.id} to connect to "
                     f"{url}/runners", self.alive)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.tail()}") from None

    def asked_at(self, url):
        """When (seconds since local midnight, as its log's times) it began each round of
        asking ``url`` for jobs."""
        times = []
        for line in self.log().splitlines():
            m = re.match(r"\[(\d\d):(\d\d):(\d\d\.\d+)\] INFO .*: Checking available jobs on "
                         + re.escape(url.rstrip("/")) + "$", line)
            if m:
                times.append(int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3)))
        return times

    def group_pids(self):
        """The pids of its process group (node and the ffmpeg it runs), from /proc."""
        if self.process is None:
            return []
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if os.getpgid(int(entry)) == self.process.pid:
                        pids.append(int(entry))
                except OSError:
                    pass
        return pids

    def ffmpeg_running(self) -> bool:
        for pid in self.group_pids():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if any(os.path.basename(a) == b"ffmpeg" for a in argv[:3]):
                return True
        return False

    def kill(self, deadline=10.0):
        """SIGKILL to the whole process group (node and its ffmpeg); waits until it is gone.
        Safe to call twice, and when it never started."""
        if self.process is None:
            return
        self.killed = True
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.process.wait(deadline)
        except subprocess.TimeoutExpired:
            pass
        wait_for(lambda: not self.group_pids(), deadline, f"runner {self.id}'s processes to end")

    def close(self):
        """kill(), and its socket's directory removed."""
        self.kill()
        shutil.rmtree(self.data_home, True)


# -- the daemon side ----------------------------------------------------------------------------

def admin(data_dir, *args, timeout=60):
    """``choir-admin --data-dir DATA_DIR --json ARGS`` -> its JSON (blocking)."""
    p = subprocess.run([sys.executable, "-m", "choir_clients.admin.admin", "--data-dir", data_dir,
                        "--json", *args], capture_output=True, text=True, timeout=timeout,
                       cwd=REPO)
    if p.returncode != 0:
        raise AssertionError(f"choir-admin {' '.join(args)} exited {p.returncode}: {p.stderr}")
    return json.loads(p.stdout)


def upload(base_url, api_token, path, name=None, content_type="video/mp4"):
    """``POST /api/v1/media`` (multipart: file, name) -> (status, JSON). Blocking."""
    boundary = uuidlib.uuid4().hex
    with open(path, "rb") as f:
        content = f.read()
    parts = []
    if name is not None:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\n'
                     f'{name}\r\n'.encode())
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                 f'filename="{os.path.basename(path)}"\r\nContent-Type: {content_type}\r\n\r\n'
                 .encode() + content + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    request = urllib.request.Request(
        base_url + "/api/v1/media", data=b"".join(parts), method="POST",
        headers={"Authorization": f"Bearer {api_token}",
                 "Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def probe(path):
    """ffprobe's JSON (format and streams) of a file or URL."""
    out = subprocess.run(["ffprobe", "-v", "error", "-of", "json", "-show_format",
                          "-show_streams", path], capture_output=True, check=True, timeout=60)
    return json.loads(out.stdout)


def stream(info, kind):
    """The first stream of ``kind`` ("video", "audio") of a probe, or None."""
    return next((s for s in info["streams"] if s["codec_type"] == kind), None)


def stream_seconds(s) -> float:
    """A stream's duration: its own field, else its DURATION tag (Matroska-style muxers)."""
    if s.get("duration") not in (None, "N/A"):
        return float(s["duration"])
    tag = (s.get("tags") or {}).get("DURATION")
    h, m, sec = tag.split(":")
    return int(h) * 3600 + int(m) * 60 + float(sec)


def packets_seconds(path, kind="audio") -> float:
    """How long the packets of the file's first ``kind`` stream span: first timestamp to
    the end of the last packet. For fragmented MP4: ffprobe's stream ``duration`` there
    comes from what the moov header says and leaves out the last fragments."""
    selector = {"audio": "a:0", "video": "v:0"}[kind]
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", selector,
                          "-show_entries", "packet=pts_time,duration_time", "-of", "csv=p=0",
                          path], capture_output=True, text=True, check=True, timeout=60).stdout
    starts, ends = [], []
    for line in out.splitlines():
        pts, _, duration = line.partition(",")
        if pts in ("", "N/A"):
            continue
        starts.append(float(pts))
        ends.append(float(pts) + (float(duration) if duration not in ("", "N/A") else 0.0))
    if not starts:
        raise AssertionError(f"{path}: no {kind} packets")
    return max(ends) - min(starts)


def local_seconds() -> float:
    """Seconds since local midnight now, the clock of the runner's log lines."""
    t = time.time()
    lt = time.localtime(t)
    return lt.tm_hour * 3600 + lt.tm_min * 60 + lt.tm_sec + (t % 1)


def ffmpeg_version() -> str:
    out = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout
    first = out.splitlines()[0] if out else "ffmpeg version unknown"
    return first.split(" Copyright")[0].replace("ffmpeg version ", "ffmpeg ")


def expected_width(height, aspect=16 / 9):
    """The width of a 16:9 rendition ``height`` pixels high: even, as PeerTube rounds it."""
    width = round(height * aspect)
    return width + (width % 2)


class RealRunnerCase(unittest.TestCase):
    """A test with a real daemon and real runners, everything under a temp directory."""

    timeout = 180

    def setUp(self):
        self.node, self.js = require()
        self.tmp = tempfile.mkdtemp(prefix="real-runner-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.data_dir = os.path.join(self.tmp, "data")
        os.makedirs(self.data_dir)
        self.daemon = self.store = None
        self.runners = []

    def blocking(self, fn, *args, **kw):
        """Runs a blocking helper in a thread: the reactor (simulated singers, the store)
        goes on meanwhile."""
        return threads.deferToThread(fn, *args, **kw)

    # the daemon

    async def start_daemon(self, *options, env=None):
        """``twistd -n choir`` on free ports with ``options``; its store opened here."""
        from choir_twisted.store.store import Store
        self.daemon = await self.blocking(TwistdDaemon, self.data_dir,
                                          os.path.join(self.tmp, "choir.log"), *options,
                                          env=env)
        self.addCleanup(self._stop_daemon, self.daemon)
        self.base = f"http://127.0.0.1:{self.daemon.ports['http']}"
        self.store = await Store.open(data_dir=self.data_dir)  # another process's view
        self.addCleanup(self.store.close)
        return self.daemon

    def _stop_daemon(self, daemon):
        if daemon.process.poll() is None:
            return threads.deferToThread(daemon.stop)

    def daemon_log(self) -> str:
        with open(self.daemon.log_file, errors="replace") as f:
            return f.read()

    def requests_logged(self, path_part="/api/v1/runners/jobs/request") -> int:
        """How many requests for ``path_part`` the daemon's HTTP log shows (twistd logs
        each request's line as it is answered)."""
        return sum(1 for line in self.daemon_log().splitlines()
                   if f'"POST {path_part}' in line)

    def admin(self, *args):
        return self.blocking(admin, self.data_dir, *args)

    async def runner_names(self):
        return sorted(r["name"] for r in await self.admin("runners", "list"))

    # runners

    async def start_runner(self, name, *job_types, register=True):
        """A real runner ``name`` (its --id too): server started, registered with a fresh
        registration token, checked in the daemon's runner list, connected to /runners.
        It is SIGKILLed with its ffmpeg at the end of the test, whatever happens."""
        runner = RealRunner(self.tmp, name, self.node, self.js)
        self.runners.append(runner)
        self.addCleanup(self.blocking, runner.close)
        await self.blocking(runner.start, *job_types)
        if register:
            token = (await self.admin("tokens", "create", "--url", self.base))["token"]
            await self.blocking(runner.register, self.base, token, name)
            self.assertIn(name, await self.runner_names())
            await self.blocking(runner.wait_connected, self.base)
        return runner

    async def until_idle(self, runner, requests_before=0, deadline=30.0):
        """The runner connected and has asked for jobs since ``requests_before`` (the daemon
        answered it): with nothing pending, it now waits for a notification."""
        await self.blocking(runner.wait_connected, self.base)
        await self.until(lambda: self.requests_logged() > requests_before, deadline,
                         f"runner {runner.id}'s first request for jobs")

    # waiting

    async def until(self, condition, deadline, what):
        """Poll ``condition()`` (sync or async) every 100 ms until true, ``deadline`` s at
        most; a runner of this test dying meanwhile fails at once (with its log)."""
        end = time.monotonic() + deadline
        while True:
            value = condition()
            if hasattr(value, "__await__"):
                value = await value
            if value:
                return value
            for runner in self.runners:
                if runner.process is not None and runner.process.poll() is not None \
                        and not runner.killed:
                    self.fail(f"runner {runner.id} exited ({runner.process.returncode}) "
                              f"while waiting for {what}\n{runner.tail()}")
            if time.monotonic() > end:
                self.fail(f"timed out after {deadline:g} s waiting for {what}\n"
                          + "\n".join(r.tail() for r in self.runners)
                          + "\n" + tail(self.daemon.log_file, 20))
            await task.deferLater(reactor, 0.1, lambda: None)

    async def run_media_jobs(self, media_id, deadline=90.0, count=None):
        """Waits until every job of the media has ended and the daemon has finished the
        media (master playlist, ``ended_at``); checks each job completed at the first try
        (a runner's error is retried: a job that failed once and then passed would hide
        an incompatibility). ``count``: how many jobs the media must have. -> its jobs."""
        async def ended():
            media = await self.store.get_media(media_id)
            jobs = await self.store.media_jobs(media_id)
            if media.ended_at is not None and jobs and all(j.state in FINAL_STATES
                                                           for j in jobs):
                return jobs
            return None
        jobs = await self.until(ended, deadline, f"the jobs of media {media_id} to end")
        names = {r.id: r.name for r in await self.store.list_runners()}
        summary = [(j.type, (j.payload.get("output") or {}).get("resolution"), j.state.label,
                    j.failures, j.error, names.get(j.runner_id)) for j in jobs]
        logs = "\n".join(r.tail() for r in self.runners)
        for j in jobs:
            self.assertEqual((j.state, j.failures, j.error), (JobState.COMPLETED, 0, None),
                             f"{summary}\n{logs}")
        if count is not None:
            self.assertEqual(len(jobs), count, summary)
        return jobs

    async def outputs(self, media_id):
        """{name: path} of the media's output files, as ``choir-admin media show`` lists
        them (each checked to exist)."""
        shown = await self.admin("media", "show", media_id)
        files = {f["name"]: f["path"] for f in shown["files"] if f["role"] == "output"}
        for name, path in files.items():
            self.assertTrue(os.path.isfile(path), f"{name}: {path} missing")
        return files

    def probe(self, path):
        return self.blocking(probe, path)

    # checks

    def assert_picture(self, video, height, name):
        self.assertEqual(video["codec_name"], "h264", name)
        self.assertEqual(video["height"], height, name)
        self.assertLessEqual(abs(video["width"] - expected_width(height)), 2, name)

    async def assert_hls(self, outputs, resolutions, seconds, tolerance=0.2):
        """Each rendition's playlist points at its fragmented MP4 (as its EXT-X-MAP and its
        byte ranges), which probes as H.264 + AAC at its resolution and lasts ``seconds``;
        the master playlist lists them, highest first."""
        for resolution in resolutions:
            playlist, fmp4 = f"hls/{resolution}p.m3u8", f"hls/{resolution}p-fragmented.mp4"
            self.assertIn(playlist, outputs)
            self.assertIn(fmp4, outputs)
            with open(outputs[playlist]) as f:
                text = f.read()
            self.assertTrue(text.startswith("#EXTM3U"), text)
            self.assertIn(f'#EXT-X-MAP:URI="{resolution}p-fragmented.mp4"', text)
            segments = [line for line in text.splitlines() if line and not line.startswith("#")]
            self.assertTrue(segments, text)
            self.assertEqual(set(segments), {f"{resolution}p-fragmented.mp4"}, text)
            self.assertIn("#EXT-X-ENDLIST", text)
            info = await self.probe(outputs[fmp4])
            self.assert_picture(stream(info, "video"), resolution, fmp4)
            audio = stream(info, "audio")
            self.assertIsNotNone(audio, f"{fmp4}: no audio stream")
            self.assertEqual(audio["codec_name"], "aac", fmp4)
            heard = await self.blocking(packets_seconds, outputs[fmp4], "audio")
            self.assertLess(abs(heard - seconds), tolerance,
                            f"{fmp4}: audio {heard} s, not {seconds} s")
        with open(outputs["hls/master.m3u8"]) as f:
            master = [line for line in f.read().splitlines() if line and not line.startswith("#")]
        self.assertEqual(master, [f"{r}p.m3u8" for r in sorted(resolutions, reverse=True)])

    async def assert_published(self, media_id, jobs):
        """``choir-admin media show``: completed, ended, the same jobs all completed."""
        shown = await self.admin("media", "show", media_id)
        self.assertEqual(shown["state"], "completed", shown)
        self.assertIsNotNone(shown["endedAt"], shown)
        self.assertEqual(sorted((j["uuid"], j["state"]) for j in shown["jobs"]),
                         sorted((j.uuid, "Completed") for j in jobs))
        return shown

    async def ran_by(self, jobs):
        """{job uuid: runner name}."""
        names = {r.id: r.name for r in await self.store.list_runners()}
        return {j.uuid: names.get(j.runner_id) for j in jobs}

    async def upload_video(self, path, name):
        api = (await self.admin("api-tokens", "create"))["token"]
        status, media = await self.blocking(upload, self.base, api, path, name)
        self.assertEqual(status, 201, media)
        return media
