"""A rehearsal published by PeerTube's own runner and by choir-runner, side by side.

    .venv/bin/python bench/real_runner.py [--seconds 60] [--singers 4] [--runs 1]
        [--runners peertube-runner,choir-runner] [--keep DIR] [--json]

One rehearsal is recorded once: a ``twistd -n choir`` process, ``--singers``
simulated singers (0-50 ms away, some jitter) and a director playing ``--seconds`` of a
broadband track, in real time. Then, for each runner in turn, on this machine, in this run:

- a fresh ``twistd -n choir`` (fresh data directory, the default ``--resolutions``
  360,480,720) and the runner, registered and idle (connected to /runners, its first
  request for jobs answered);
- a copy of the recorded session moved (one rename) into the daemon's ``sessions/``: the
  daemon publishes it as it publishes every session (an audio merge of the mix and the
  cover at 720p, then HLS at 720, 480 and 360 from the merged MP4), and tells the runner.

Same recording, same jobs, same daemon options for both: only the runner differs. Each
daemon draws its cover of the recording and serves it to the audio merge at the job's
resolution (PeerTube's runner does not scale that picture, so the daemon does).

Both run at their default concurrency, 2 jobs at once (peertube-runner 0.0.22's config.toml
default, with ffmpeg threads 2 and nice 20; ``choir-runner server --concurrency 2``).
Times come from the daemon's store: "audio merge" is the merge job's creation to its
completion (notification, download, transcode, upload), "HLS" from then to the last HLS
job's completion, "total" the first job's creation to the last completion, "ratio" the
total over the fastest runner's. With ``--runs N`` the runners alternate N times and each
one's best total is shown. The table also shows the MP4 each made (picture size, audio
length).

Needs node >= 20 and ../shared/peertube-runner/peertube-runner.js (tests/support/peertube_runner.py).
"""
import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

import soundfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from twisted.internet import defer, endpoints, task, threads  # noqa: E402

from choir_clients.demo.signals import broadband_track  # noqa: E402
from choir_clients.demo.simulated import SimulatedDirector, SimulatedSinger  # noqa: E402
from choir_protocol.rehearsal.constants import SAMPLE_RATE  # noqa: E402
from choir_protocol.runners.jobs import FINAL_STATES, JobState, JobType  # noqa: E402
from choir_twisted.rehearsal.summary_file import read_summary  # noqa: E402

from tests.support import peertube_runner as H  # noqa: E402
from tests.support.daemon_process import VENV_BIN, TwistdDaemon  # noqa: E402

CHOIR_RUNNER = (os.path.join(VENV_BIN, "choir-runner"),)
if not os.path.exists(CHOIR_RUNNER[0]):
    CHOIR_RUNNER = (sys.executable, "-m", "choir_clients.runner.runner")
SINGERS = [(0.0, 0.0, 2), (0.02, 0.01, 3), (0.05, 0.03, 5), (0.03, 0.02, 4), (0.01, 0.0, 6),
           (0.04, 0.01, 3), (0.02, 0.02, 2), (0.05, 0.0, 7)]
CHOIR_NAME = "Bench Choir"


def wait_for(condition, deadline, what):
    end = time.monotonic() + deadline
    while not (value := condition()):
        if time.monotonic() > end:
            raise SystemExit(f"timed out after {deadline:g} s waiting for {what}")
        time.sleep(0.1)
    return value


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


# -- the recording ------------------------------------------------------------------------------

async def record(reactor, work, seconds, singers):
    """One session recorded by a real daemon -> its session directory."""
    data = os.path.join(work, "recording")
    os.makedirs(data)
    log = os.path.join(work, "recording.log")
    # (it publishes the session too, with no runner to do its jobs: only the session is used)
    daemon = await threads.deferToThread(TwistdDaemon, data, log)
    clients = []
    try:
        for i, (delay, jitter, latency) in enumerate(SINGERS[:singers]):
            singer = SimulatedSinger(reactor, f"singer{i + 1}", "Soprano", delay=delay,
                                     jitter=jitter, device_latency=latency, seed=i)
            await endpoints.connectProtocol(daemon.endpoint("singers"), singer)
            clients.append(singer)
        for _ in range(600):
            if f"({singers} connected)" in read(log):
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        else:
            raise SystemExit(f"the {singers} singers did not join: {log}")
        director = SimulatedDirector(broadband_track(seconds))
        await endpoints.connectProtocol(daemon.endpoint("director"), director)
        await director.done
        if director.refused:
            raise SystemExit("the director was refused")
        [session] = os.listdir(os.path.join(data, "sessions"))
        directory = os.path.join(data, "sessions", session)

        def ready():
            try:
                return read_summary(directory).publishable
            except (OSError, ValueError):
                return False
        for _ in range(1200):
            if ready():
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        else:
            raise SystemExit(f"the recording in {directory} did not complete")
        return directory
    finally:
        for singer in clients:
            if singer.transport is not None:
                singer.transport.loseConnection()
        await defer.DeferredList([s.disconnected for s in clients])
        await threads.deferToThread(daemon.stop)


# -- the runners ---------------------------------------------------------------------------------

class PeerTubeRunner:
    label = "peertube-runner 0.0.22"

    def __init__(self, work, node, js):
        self.runner = H.RealRunner(work, "bench", node, js)

    def start(self, url, token, daemon_log):
        self.runner.start()
        self.runner.register(url, token, "bench-peertube-runner")
        self.runner.wait_connected(url)

    def stop(self):
        self.runner.close()

    def log_path(self):
        return self.runner.log_path


class ChoirRunner:
    label = "choir-runner"

    def __init__(self, work):
        self.work = work
        self.env = {**os.environ, "CHOIR_CONFIG_DIR": os.path.join(work, "choir-runner-config")}
        self.log = os.path.join(work, "choir-runner.log")
        self.process = None

    def start(self, url, token, daemon_log):
        p = subprocess.run([*CHOIR_RUNNER, "register", "--url", url, "--registration-token",
                            token, "--runner-name", "bench-choir-runner"], env=self.env,
                           capture_output=True, text=True, timeout=60)
        if p.returncode:
            raise SystemExit(f"choir-runner register failed: {p.stderr}")
        work_dir = os.path.join(self.work, "choir-runner-work")
        os.makedirs(work_dir)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([*CHOIR_RUNNER, "server", "--concurrency", "2",
                                             "--work-dir", work_dir], env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(lambda: "connected, listening for jobs" in read(self.log)
                 or self.process.poll() is not None, 30, "choir-runner to connect")
        if self.process.poll() is not None:
            raise SystemExit(f"choir-runner exited: {self.log}")

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()

    def log_path(self):
        return self.log


def requests_logged(daemon_log):
    return read(daemon_log).count('"POST /api/v1/runners/jobs/request')


def jobs_of(db):
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        rows = conn.execute("SELECT type, state, payload, failures, error, created_at, "
                            "started_at, finished_at FROM jobs").fetchall()
        ended = conn.execute("SELECT ended_at FROM media").fetchall()
    finally:
        conn.close()
    jobs = [{"type": t, "state": JobState(s), "resolution": json.loads(p)["output"]["resolution"],
             "failures": f, "error": e, "created": c, "started": st, "finished": fi}
            for t, s, p, f, e, c, st, fi in rows]
    return jobs, bool(ended) and all(e is not None for (e,) in ended)


def publish_with(make_runner, session_dir, work):
    """One runner publishing the recording on a fresh daemon -> measures."""
    os.makedirs(work)
    data = os.path.join(work, "data")
    os.makedirs(data)
    daemon_log = os.path.join(work, "choir.log")
    daemon = TwistdDaemon(data, daemon_log, "--choir-name", CHOIR_NAME)
    runner = make_runner(work)
    try:
        url = f"http://127.0.0.1:{daemon.ports['http']}"
        token = H.admin(data, "tokens", "create", "--url", url)["token"]
        runner.start(url, token, daemon_log)
        wait_for(lambda: requests_logged(daemon_log) > 0, 30, f"{runner.label}'s first request")

        # the recording arrives whole (one rename), as a finished session does
        staging = os.path.join(work, "staging")
        os.makedirs(staging)
        copy = shutil.copytree(session_dir, os.path.join(staging, os.path.basename(session_dir)))
        if os.path.exists(os.path.join(copy, "cover.png")):  # the daemon draws it again
            os.unlink(os.path.join(copy, "cover.png"))
        os.rename(copy, os.path.join(data, "sessions", os.path.basename(session_dir)))
        db = os.path.join(data, "choir.sqlite3")

        def ended():
            jobs, done = jobs_of(db)
            return jobs if jobs and done and all(j["state"] in FINAL_STATES for j in jobs) \
                else None
        jobs = wait_for(ended, 1800, f"{runner.label} to publish the recording")
        bad = [j for j in jobs if j["state"] is not JobState.COMPLETED or j["failures"]]
        if bad:
            raise SystemExit(f"{runner.label}: jobs not completed at the first try: {bad}\n"
                             + H.tail(runner.log_path()))
        [media_id] = os.listdir(os.path.join(data, "media"))
        outputs = {f["name"]: f["path"] for f in H.admin(data, "media", "show", media_id)["files"]
                   if f["role"] == "output"}
    finally:
        runner.stop()
        daemon.stop()
    merge = next(j for j in jobs if j["type"] == JobType.VOD_AUDIO_MERGE)
    hls = [j for j in jobs if j["type"] == JobType.VOD_HLS]
    mp4 = outputs[f"{merge['resolution']}p.mp4"]
    info = H.probe(mp4)
    video, audio = H.stream(info, "video"), H.stream(info, "audio")
    return {"runner": runner.label,
            "audio_merge": merge["finished"] - merge["created"],
            "hls": max(j["finished"] for j in hls) - merge["finished"],
            "total": max(j["finished"] for j in jobs) - min(j["created"] for j in jobs),
            "jobs": len(jobs), "resolutions": sorted(j["resolution"] for j in hls),
            "mp4": f"{video['width']}x{video['height']}",
            "mp4_audio": H.stream_seconds(audio), "mp4_video": H.stream_seconds(video),
            "mp4_bytes": os.path.getsize(mp4)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="rehearsal length")
    parser.add_argument("--singers", type=int, default=4, choices=range(1, len(SINGERS) + 1))
    parser.add_argument("--runs", type=int, default=1, help="alternate the runners N times; "
                                                            "best total of each")
    parser.add_argument("--runners", default="peertube-runner,choir-runner")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (logs, media)")
    parser.add_argument("--json", action="store_true", help="print every measure as JSON")
    a = parser.parse_args()
    names = [n.strip() for n in a.runners.split(",") if n.strip()]
    if not names or set(names) - {"peertube-runner", "choir-runner"}:
        parser.error("--runners: peertube-runner and/or choir-runner")
    node = js = None
    if "peertube-runner" in names:
        reason = H.missing()
        if reason:
            raise SystemExit(f"cannot run peertube-runner: {reason}")
        node, js = H.require()
    work = a.keep or tempfile.mkdtemp(prefix="bench-real-runner-")
    os.makedirs(work, exist_ok=True)
    makers = {"peertube-runner": lambda w: PeerTubeRunner(w, node, js),
              "choir-runner": ChoirRunner}
    try:
        from twisted.internet import reactor
        started = time.monotonic()
        print(f"Recording a {a.seconds:g} s rehearsal with {a.singers} simulated singers...",
              file=sys.stderr)
        session = []  # the recording's directory, or its Failure
        d = defer.ensureDeferred(record(reactor, work, a.seconds, a.singers))
        d.addBoth(session.append)
        d.addBoth(lambda _: reactor.stop())
        reactor.run()  # the rest is blocking: runners and daemons are processes
        if not session:
            raise SystemExit("the recording did not finish")
        if not isinstance(session[0], str):
            session[0].raiseException()
        session_dir = session[0]
        mix_seconds = soundfile.info(os.path.join(session_dir, "mix.flac")).frames / SAMPLE_RATE
        print(f"  recorded {mix_seconds:.2f} s in {time.monotonic() - started:.0f} s: "
              f"{session_dir}", file=sys.stderr)
        results = []
        for run in range(a.runs):
            for name in names:
                print(f"Publishing with {name} (run {run + 1}/{a.runs})...", file=sys.stderr)
                r = publish_with(makers[name], session_dir,
                                 os.path.join(work, f"run{run + 1}-{name}"))
                print(f"  {r['total']:.1f} s", file=sys.stderr)
                results.append(r)
    finally:
        if not a.keep:
            shutil.rmtree(work, True)
    best = {}
    for r in results:
        if r["runner"] not in best or r["total"] < best[r["runner"]]["total"]:
            best[r["runner"]] = r
    fastest = min(r["total"] for r in best.values())
    node_version = H.find_node()[1] if node else "-"
    if a.json:
        print(json.dumps({"seconds": mix_seconds, "singers": a.singers, "cpus": os.cpu_count(),
                          "ffmpeg": H.ffmpeg_version(), "node": node_version,
                          "runs": results}, indent=2))
        return
    print(f"{mix_seconds:.1f} s rehearsal ({a.singers} singers), published at 360,480,720 "
          f"(audio merge 720p + 3 HLS), "
          f"{os.cpu_count()} CPUs, concurrency 2, best of {a.runs}")
    print(f"{H.ffmpeg_version()}; node {node_version}")
    headers = ["runner", "audio merge s", "HLS s", "total s", "ratio", "MP4 picture",
               "MP4 audio s"]
    rows = [[r["runner"], f"{r['audio_merge']:.1f}", f"{r['hls']:.1f}", f"{r['total']:.1f}",
             f"{r['total'] / fastest:.2f}", r["mp4"], f"{r['mp4_audio']:.2f}"]
            for r in best.values()]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) if i == 0 else h.rjust(w)
                    for i, (h, w) in enumerate(zip(headers, widths))))
    for row in rows:
        print("  ".join(v.ljust(w) if i == 0 else v.rjust(w)
                        for i, (v, w) in enumerate(zip(row, widths))))


if __name__ == "__main__":
    main()
