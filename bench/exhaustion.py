#!/usr/bin/env python3
"""Does the daemon keep serving its real users while someone tries to exhaust it?

Method. For each attack a fresh daemon (``twistd -n --pidfile= choir``) is started as a
process of its own, on free 127.0.0.1 ports and a temporary data directory (a registration
token made first with ``choir-admin tokens create``). Then, each in a process of its own:

* a legitimate runner, registered with that token, asks ``POST /api/v1/runners/jobs/request``
  every 0.5 s on a new connection from 127.0.0.1, for the whole attack: answers that are
  200 within 5 s, and their latency (connect -> answer read);
* the attacker (plain sockets on epoll, or threads), from another loopback address
  (``--attacker-address``, 127.0.0.2: Linux routes all of 127/8 to ``lo``, and the daemon
  sees it as another machine), starts at t0 and says when its ramp-up is done;
* a legitimate rehearsal, once the attack is ramped up: ``--singers`` echo singers
  (``choir_clients.demo.simulated.SimulatedSinger``: each sings back what it hears, at real-time
  pace) connect from 127.0.0.1, then a director (``SimulatedDirector``) plays a
  ``--track-seconds`` track and collects the mix. A director refused before any mix (-2,
  or the connection closed) tries again every 0.5 s for ``--retry-seconds``.

The attack lasts at least ``--seconds`` from t0 (idle: 41 s, socketio: 16 s after its
ramp-up) and until the rehearsal is over. The
daemon's RSS is sampled every 0.25 s (psutil). Each attack's numbers are measured, not
assumed: see bench/README.md for the columns and the verdict's thresholds.

Attacks (``--only`` takes their names or numbers, comma-separated):

1 squat     a director that sends its 512-byte header and nothing else, reconnecting
            as soon as it is closed;
2 keepalive 1000 singers from one address: a header, then a keep-alive every 10 s,
            never a check-in;
3 desk      300 singers with 218-byte names (from 60 addresses, 5 each), and a desk
            asking ``{"action": "list", "all": true}`` as fast as the answers come
            (32 requests in flight);
4 upload    a 1 GiB multipart body streamed to ``POST /api/v1/media`` with no token;
5 ranges    ``GET`` of a media file (a small WAV uploaded with an API token beforehand)
            with 100 and with 1000 ranges ``bytes=0-,0-,...``, 4 connections in a loop;
6 noread    a director (with 3 echo singers of its own) streaming a track at twice real
            time and never reading the mix (a 4 kB receive buffer);
7 idle      1100 desk connections that send nothing, and 1000 slowloris HTTP requests
            (one header line every 5 s); open connections counted at 5, 15, 30, 40 s;
8 socketio  1000 WebSocket connections to /socket.io/ that never send the namespace
            CONNECT (``40``); open connections counted at 5 and 15 s.

The parts: exhaustion_attacks.py (the attackers), exhaustion_legit.py (the legit runner and
rehearsal), exhaustion_daemon.py (the daemon under test and its helpers).

Over 400 lines, as a bench is one script to run and read alone (the attacks are in
exhaustion_attacks.py, the legitimate users in exhaustion_legit.py).
"""
import argparse
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]  # the project's packages; the sibling modules (-m too)
from exhaustion_attacks import (attack_desk, attack_idle, attack_keepalive,  # noqa: E402
                                attack_noread, attack_ranges, attack_socketio, attack_squat,
                                attack_upload, raise_nofile)
from exhaustion_daemon import (Daemon, choir_admin, disk_usage, log_findings,  # noqa: E402
                               make_wav, read_log, upload_media)
from exhaustion_legit import (POLL_INTERVAL, REQUEST_TIMEOUT, legit_runner,  # noqa: E402
                              legit_session)

CTX = multiprocessing.get_context("spawn")

# the verdict's thresholds (bench/README.md)
RUNNER_MIN_OK = 0.90  # share of the legit runner's requests answered 200 within 5 s
RUNNER_MAX_P95_MS = 1000.0
RSS_MAX_GROWTH_MB = 100.0  # peak RSS during the attack minus RSS before it
IDLE_MAX_OPEN = 0.10  # share of idle attack connections still open at the last count
UPLOAD_EARLY = 0.10  # the refusal must come before this share of the body was sent
UPLOAD_MAX_STORED_MB = 16.0  # growth of the data dir + what the daemon spooled
RANGES_MAX_AMPLIFICATION = 1.5  # bytes of an answer / size of the file


def progress(*parts) -> None:
    print("[exhaustion]", *parts, file=sys.stderr, flush=True)


# -- one attack --------------------------------------------------------------------------------

class Attack:
    def __init__(self, number, name, title, target, params, after_ramp=0.0,
                 rss_limit=RSS_MAX_GROWTH_MB):
        self.number, self.name, self.title, self.target = number, name, title, target
        self.params, self.rss_limit = params, rss_limit
        self.after_ramp = after_ramp  # the attack lasts at least this long after its ramp-up


def attacks(args) -> list:
    return [
        Attack(1, "squat", "seat squatting (header-only director, reconnecting)", attack_squat, {}),
        Attack(2, "keepalive", "1000 keep-alive singers from one address", attack_keepalive,
               {"count": 1000}),
        Attack(3, "desk", "desk flood: 300 long-named singers + list requests", attack_desk,
               {"count": 300, "window": 32}),
        Attack(4, "upload", "1 GiB upload to /api/v1/media without a token", attack_upload,
               {"bytes": 1 << 30}),
        Attack(5, "ranges", "range amplification (100 / 1000 ranges)", attack_ranges,
               {"ranges": [100, 1000], "workers": 4}),
        Attack(6, "noread", "director that never reads the mix", attack_noread, {"pace": 2.0},
               rss_limit=50.0),
        Attack(7, "idle", "1100 idle desk + 1000 slowloris HTTP connections", attack_idle,
               {"desks": 1100, "http": 1000, "line_every": 5.0, "checkpoints": [5, 15, 30, 40]},
               after_ramp=41.0),
        Attack(8, "socketio", "1000 socket.io connections without CONNECT", attack_socketio,
               {"count": 1000, "checkpoints": [5, 15]}, after_ramp=16.0),
    ]


def next_address(addr: str) -> str:
    """The idle attack's HTTP connections come from the address after the attacker's, so
    that a cap on one address's connections does not hide the HTTP time-outs behind the
    desk's."""
    parts = addr.split(".")
    parts[-1] = str(int(parts[-1]) % 254 + 1)
    return ".".join(parts)


def _spawn(target, *args):
    parent, child = CTX.Pipe()
    process = CTX.Process(target=target, args=(*args, child), daemon=True)
    process.start()
    child.close()
    return process, parent


def _tell(conn, message) -> None:
    """Send to a child that may have ended already (its report stays readable in the pipe)."""
    try:
        conn.send(message)
    except (BrokenPipeError, EOFError, OSError):
        pass


def _take(conn, what: str):
    try:
        return conn.recv()
    except (EOFError, OSError):
        return {"error": f"the {what} process ended without a result"}


def _recv(conn, timeout: float, what: str, strict=True):
    """The next message; on a time-out an exception (``strict``) or an error dict."""
    if not conn.poll(timeout):
        if strict:
            raise TimeoutError(f"no answer from the {what} within {timeout:g} s")
        return {"error": f"no answer from the {what} within {timeout:g} s"}
    return _take(conn, what)


def run_attack(attack: Attack, args) -> dict:
    workdir = tempfile.mkdtemp(prefix=f"exhaustion-{attack.name}-", dir=args.workdir)
    data_dir = os.path.join(workdir, "data")
    os.makedirs(data_dir)
    result = {"number": attack.number, "attack": attack.name, "title": attack.title,
              "workdir": workdir if args.workdir else None}
    children = []
    daemon = None
    try:
        registration = choir_admin(data_dir, "tokens", "create")["token"]
        api_token = choir_admin(data_dir, "api-tokens", "create", "--name", "bench")["token"] \
            if attack.name == "ranges" else None
        extra = list(args.daemon_arg)
        if not args.record:
            extra.append("--no-record")
        daemon = Daemon(workdir, data_dir, extra)
        result["daemon_args"] = extra
        params = dict(attack.params, addr=args.attacker_address, ports=daemon.ports,
                      http_addr=next_address(args.attacker_address))
        if attack.name == "ranges":
            wav = os.path.join(workdir, "tone.wav")
            make_wav(wav, 3.0)
            media = upload_media(daemon.ports["http"], api_token, wav)
            inputs = sorted(media.get("inputs") or [], key=lambda f: -(f.get("size") or 0))
            if not inputs:
                raise RuntimeError(f"the uploaded media lists no input file: {media}")
            params.update(path=inputs[0]["url"], file_size=inputs[0]["size"])
        progress(f"{attack.number} {attack.name}: daemon pid {daemon.process.pid} on "
                 + ", ".join(f"{r} {p}" for r, p in daemon.ports.items()))
        runner, runner_conn = _spawn(legit_runner, daemon.ports["http"], registration)
        children.append(runner)
        session, session_conn = _spawn(legit_session, daemon.ports, args.singers,
                                       args.track_seconds, args.retry_seconds)
        children.append(session)
        ready = _recv(runner_conn, 30, "legit runner")
        if not ready.get("ok"):
            raise RuntimeError(f"legit runner could not register: {ready.get('error')}")
        _recv(session_conn, 60, "legit session")
        time.sleep(0.5)  # the daemon settles after the runner's registration
        window = args.seconds
        params["max_seconds"] = (max(window, attack.after_ramp + 30) + args.track_seconds * 2
                                 + args.retry_seconds + 30)
        rss_before, cpu_before = daemon.rss_mb(), daemon.cpu_s()
        du_before, spool_peak, du_peak = disk_usage(data_dir), 0, 0
        attacker, attacker_conn = _spawn(attack.target, params)
        children.append(attacker)
        t0 = time.monotonic()
        _tell(runner_conn, "go")
        progress(f"{attack.number} {attack.name}: attacking ({attack.title})")
        rss_peak, ramp, session_result, attack_result = rss_before or 0, None, None, None
        session_started, ramp_at = False, None
        hard_end = t0 + params["max_seconds"] + 15
        last_du = 0.0
        while time.monotonic() < hard_end:
            now = time.monotonic()
            rss = daemon.rss_mb()
            if rss is not None:
                rss_peak = max(rss_peak, rss)
            if attack.name == "upload" and now - last_du >= 0.5:
                last_du = now
                spool_peak = max(spool_peak, daemon.spooled_bytes())
                du_peak = max(du_peak, disk_usage(data_dir) - du_before)
            if ramp is None and attacker_conn.poll():
                message = _take(attacker_conn, "attacker")
                if isinstance(message, dict) and message.get("event") == "ramped":
                    ramp = message
                else:  # the attacker ended on its own
                    attack_result = message
                    ramp = {"t": None, "ended": True}
                ramp_at = now
            if ramp is not None and not session_started:
                _tell(session_conn, "go")
                session_started = True
                progress(f"{attack.number} {attack.name}: ramped up after {ramp.get('t')} s "
                         f"{ {k: v for k, v in ramp.items() if k not in ('event', 't')} or ''}; "
                         "legit rehearsal starts")
            if ramp is None and now - t0 > 60:
                raise TimeoutError("the attacker did not ramp up within 60 s")
            if session_started and session_result is None and session_conn.poll():
                session_result = _take(session_conn, "legit session")
                progress(f"{attack.number} {attack.name}: rehearsal over: "
                         f"{session_result.get('mix_chunks')}/{session_result.get('expected')} mix chunks")
            if (session_result is not None and now - t0 >= window
                    and now - ramp_at >= attack.after_ramp):
                break
            if not daemon.alive():
                progress(f"{attack.number} {attack.name}: the DAEMON EXITED "
                         f"({daemon.process.poll()})")
                break
            time.sleep(0.25)
        result["attack_seconds"] = round(time.monotonic() - t0, 1)
        rss_after, cpu_after = daemon.rss_mb(), daemon.cpu_s()
        if attack_result is None:
            _tell(attacker_conn, "stop")
            attack_result = _recv(attacker_conn, 30, "attacker", strict=False)
        _tell(runner_conn, "stop")
        runner_result = _recv(runner_conn, REQUEST_TIMEOUT + 10, "legit runner", strict=False)
        if session_result is None:
            session_result = (_recv(session_conn, args.track_seconds * 2 + 20, "legit session",
                                    strict=False) if session_started
                              else {"error": "the legit rehearsal never started"})
        result.update(
            ramp=ramp, attacker=attack_result, runner=runner_result, session=session_result,
            rss_before_mb=round(rss_before, 1) if rss_before else None,
            rss_after_mb=round(rss_after, 1) if rss_after else None,
            rss_peak_mb=round(rss_peak, 1),
            daemon_cpu_s=round(cpu_after - cpu_before, 1) if cpu_after is not None else None,
            daemon_cpu_pct=round(100 * (cpu_after - cpu_before) / max(result["attack_seconds"], 0.1))
            if cpu_after is not None else None,
            daemon_alive=daemon.alive(), daemon_exit=daemon.process.poll())
        if attack.name == "upload":
            result.update(data_dir_growth_mb=round(du_peak / 2**20, 1),
                          spooled_peak_mb=round(spool_peak / 2**20, 1))
    except Exception as e:
        result["error"] = f"{type(e).__name__}: {e}"
        progress(f"{attack.number} {attack.name}: ERROR {result['error']}")
        if daemon is not None:
            result.setdefault("daemon_alive", daemon.alive())
    finally:
        for child in children:
            if child.is_alive():
                child.terminate()
        for child in children:
            child.join(5)
            if child.is_alive():
                child.kill()
                child.join(2)
        if daemon is not None:
            alive_before_stop = daemon.alive()
            daemon.stop()
            ports = (result.get("session") or {}).get("director_ports") or []
            result["log"] = log_findings(read_log(daemon.log), ports)
            if not alive_before_stop:
                result["daemon_output"] = daemon.output_tail()
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    result["verdict"] = verdict(result, attack)
    progress(f"{attack.number} {attack.name}: {result['verdict']}")
    return result


# -- verdict and table -------------------------------------------------------------------------

def verdict(r: dict, attack: Attack) -> str:
    if "error" in r:
        return f"ERROR: {r['error']}"
    problems = []
    if not r.get("daemon_alive"):
        problems.append(f"daemon died (exit {r.get('daemon_exit')})")
    run = r.get("runner") or {}
    if run.get("error"):
        problems.append(f"runner: {run['error']}")
    elif run.get("requests"):
        if run["ok"] / run["requests"] < RUNNER_MIN_OK:
            problems.append(f"runner {run['ok']}/{run['requests']} OK")
        elif not run["p95_ms"] <= RUNNER_MAX_P95_MS:
            problems.append(f"runner p95 {run['p95_ms']:.0f} ms")
    else:
        problems.append("runner made no request")
    s = r.get("session") or {}
    if s.get("error"):
        problems.append(f"rehearsal: {s['error']}")
    elif s.get("mix_chunks") != s.get("expected"):
        problems.append(f"mix {s.get('mix_chunks')}/{s.get('expected')}")
    else:
        mixed = singers_mixed(r)
        if mixed is not None and mixed < s.get("singers_requested", 0):
            problems.append(f"{mixed} singers mixed")
    if r.get("rss_before_mb") and r["rss_peak_mb"] - r["rss_before_mb"] > attack.rss_limit:
        problems.append(f"RSS +{r['rss_peak_mb'] - r['rss_before_mb']:.0f} MB")
    a = r.get("attacker") or {}
    if a.get("error") and len(a) == 1:
        problems.append(f"attacker: {a['error']}")
    elif attack.name == "upload":
        at = a.get("answered_after_bytes")
        if a.get("status") is None or at is None or at > UPLOAD_EARLY * a.get("body_bytes", 1):
            problems.append("no early refusal")
        stored = (r.get("data_dir_growth_mb") or 0) + (r.get("spooled_peak_mb") or 0)
        if stored > UPLOAD_MAX_STORED_MB:
            problems.append(f"{stored:.0f} MB stored/spooled")
    elif attack.name == "ranges":
        amp = max((a.get(f"ranges_{k}", {}).get("amplification") or 0) for k in attack.params["ranges"])
        if amp > RANGES_MAX_AMPLIFICATION:
            problems.append(f"amplification x{amp:g}")
    elif attack.name in ("idle", "socketio"):
        attempted = a.get("attempted") or {}
        last = (a.get("open_at") or {})
        if last:
            counts = last[max(last, key=float)]
            if isinstance(counts, dict):
                for kind, n in counts.items():
                    if n > IDLE_MAX_OPEN * attempted.get(kind, 1):
                        problems.append(f"{n} {kind} still open")
            elif counts > IDLE_MAX_OPEN * attempted:
                problems.append(f"{counts} still open")
        else:
            problems.append("no count taken")
    return "survived" if not problems else "FAILED: " + "; ".join(problems)


def singers_mixed(r: dict):
    legit = (r.get("log") or {}).get("legit_sessions") or []
    return max((x["singers_mixed"] for x in legit), default=None)


def describe_attacker(r: dict) -> str:
    a = r.get("attacker") or {}
    name = r["attack"]
    if not a:
        return "-"
    if a.get("error") and len(a) == 1:
        return f"attacker: {a['error']}"
    if name == "squat":
        return (f"{a['connects']} connects ({a['rate_per_s']}/s): {a['refused']} refused, "
                f"{a['closed_unanswered']} closed unanswered, {a['connect_failed']} failed; "
                f"connected > 0.5 s for {a['held_s']} s in all (longest {a['longest_hold_s']} s)")
    if name == "keepalive":
        return (f"{a['connected'].get('singer', 0)}/{a['attempted']} TCP connects, "
                f"{a['open'].get('singer', 0)} open at end, {a['keepalives_sent']} keep-alives")
    if name == "desk":
        answered = (f"{a['replies']} answered ({a['replies_per_s']}/s, up to "
                    f"{a['reply_bytes_max'] / 1024:.0f} kB, first: {a['listed']} listed)"
                    if a["replies"] else "none answered")
        return (f"{a['open'].get('singer', 0)}/{a['attempted']} singers open; "
                f"{a['requests']} lists asked, {answered}; "
                f"{a['desk_connections']} desk connection(s)")
    if name == "upload":
        answered = (f"answer {a['status']} after {a['answered_after_bytes'] / 2**20:.1f} MB "
                    f"({a['answered_after_s']} s)" if a.get("answered_after_bytes") is not None
                    else "no answer")
        closed = (f", closed after {a['closed_after_bytes'] / 2**20:.1f} MB"
                  if a.get("closed_after_bytes") is not None else "")
        rate = f" ({a['mb_per_s']} MB/s)" if a["seconds"] >= 0.1 else ""
        return (f"sent {a['sent'] / 2**20:.0f} MB in {a['seconds']} s{rate}; "
                f"{answered}{closed}; data dir +{r.get('data_dir_growth_mb')} MB, "
                f"spooled {r.get('spooled_peak_mb')} MB")
    if name == "ranges":
        parts = []
        for key in sorted(k for k in a if k.startswith("ranges_")):
            v = a[key]
            parts.append(f"{key[7:]} ranges: {v['requests']} GETs {v['status']}, max reply "
                         f"{v['max_reply_mb']} MB (x{v['amplification']})")
        return f"{a['file_bytes'] / 1024:.0f} kB file; " + "; ".join(parts)
    if name == "noread":
        dropped = (f"dropped after {a['director_dropped_after_s']} s"
                   if a.get("director_dropped_after_s") is not None else "never dropped")
        return (f"{a['track_chunks_sent']} track chunks ({a['track_mb']} MB, {a['pace']}x real "
                f"time), mix never read: {dropped}")
    if name == "idle":
        opened = "; ".join(f"{k} s: desk {v.get('desk')}, http {v.get('http')}"
                           for k, v in (a.get("open_at") or {}).items())
        return (f"TCP connects: {a['connected'].get('desk', 0)}/{a['attempted']['desk']} desk, "
                f"{a['connected'].get('http', 0)}/{a['attempted']['http']} http (2nd address); "
                f"open at {opened or '-'}")
    if name == "socketio":
        opened = ", ".join(f"{k} s: {v}" for k, v in (a.get("open_at") or {}).items())
        return (f"{a['connected'].get('ws', 0)}/{a['attempted']} TCP connects, "
                f"{a.get('engineio_open', 0)} got the Engine.IO open; open at {opened or '-'}")
    return json.dumps(a)[:200]


def describe_runner(r: dict) -> str:
    run = r.get("runner") or {}
    if not run:
        return "-"
    if run.get("error"):
        return run["error"]
    text = f"{run['ok']}/{run['requests']} OK"
    if run["ok"]:
        text += f", p95 {run['p95_ms']:.0f} ms (max {run['max_ms']:.0f})"
    if run.get("errors"):
        text += " " + ", ".join(f"{k} x{v}" for k, v in run["errors"].items())
    return text


def describe_session(r: dict) -> str:
    s = r.get("session") or {}
    if not s:
        return "-"
    if s.get("error"):
        return s["error"]
    mixed = singers_mixed(r)
    text = (f"{s['mix_chunks']}/{s['expected']} mix chunks, "
            f"{'?' if mixed is None else mixed}/{s['singers_requested']} singers mixed")
    extra = []
    if s["singers_connected"] < s["singers_requested"]:
        extra.append(f"only {s['singers_connected']} singers stayed connected")
    if s.get("refused"):
        extra.append(f"refused {s['refused']}x")
    if s.get("started_after_s") is not None:
        extra.append(f"started after {s['started_after_s']} s")
    if s.get("timed_out"):
        extra.append("timed out")
    if s.get("singer_errors"):
        extra.append(f"singers not connected: {s['singer_errors']}")
    return text + (f" ({', '.join(extra)})" if extra else "")


def describe_rss(r: dict) -> str:
    if r.get("rss_before_mb") is None:
        return "-"
    after = "dead" if r.get("rss_after_mb") is None else f"{r['rss_after_mb']:.0f}"
    return f"{r['rss_before_mb']:.0f} → {after} (peak {r['rss_peak_mb']:.0f})"


COLUMNS = ("attack", "attacker did", "legit runner", "legit session", "RSS MB",
           "daemon CPU %", "verdict")


def table(results: list) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in results:
        cells = [f"{r['number']} {r['attack']}", describe_attacker(r), describe_runner(r),
                 describe_session(r), describe_rss(r),
                 "-" if r.get("daemon_cpu_pct") is None else str(r["daemon_cpu_pct"]), r["verdict"]]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)


def notes(results: list) -> str:
    out = []
    for r in results:
        bits = []
        if r.get("daemon_cpu_s") is not None:
            bits.append(f"daemon CPU {r['daemon_cpu_s']} s over {r.get('attack_seconds')} s")
        s = r.get("session") or {}
        if s.get("snr_db") is not None:
            bits.append(f"mix SNR {s['snr_db']} dB")
        log = r.get("log") or {}
        if log.get("legit_sessions"):
            bits.append("legit session ended: " + "; ".join(
                f"{x['ended']} ({x['mix_chunks']} chunks, {x['singers_mixed']} singers)"
                for x in log["legit_sessions"]))
        if log:
            bits.append(f"{log['log_lines']} log lines")
        out.append(f"{r['number']} {r['attack']}: " + "; ".join(bits))
        for text, n in (log.get("trouble") or {}).items():
            out.append(f"    log ERROR x{n}: {text}")
        for text, n in (log.get("warnings") or {}).items():
            out.append(f"    log warn x{n}: {text}")
        if r.get("daemon_output"):
            out.append(f"    daemon output: {r['daemon_output']}")
    return "\n".join(out)


def machine() -> str:
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f
                          if line.startswith("model name")), "?")
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({model}), Python {sys.version.split()[0]}"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="attacks to run, by name or number, "
                        "comma-separated (squat, keepalive, desk, upload, ranges, noread, idle, "
                        "socketio) [default: all]")
    parser.add_argument("--seconds", type=float, default=20.0,
                        help="least length of each attack (idle: 41 s after its ramp-up, "
                        "socketio: 16 s after it, at least)")
    parser.add_argument("--track-seconds", type=float, default=10.0,
                        help="the legit director's track")
    parser.add_argument("--singers", type=int, default=3, help="legit echo singers")
    parser.add_argument("--retry-seconds", type=float, default=15.0,
                        help="how long a refused legit director keeps trying")
    parser.add_argument("--attacker-address", default="127.0.0.2",
                        help="source address of the attacker's connections")
    parser.add_argument("--daemon-arg", action="append", default=[],
                        help="one more argument for 'twistd choir' (repeat; use --daemon-arg=--x=y)")
    parser.add_argument("--record", action="store_true",
                        help="let the daemon record (default: --no-record)")
    parser.add_argument("--workdir", help="keep each attack's data dir and daemon log under DIR")
    parser.add_argument("--json", action="store_true", help="print every measured field as JSON")
    return parser.parse_args()


def main():
    args = parse_args()
    if args.workdir:
        os.makedirs(args.workdir, exist_ok=True)
    raise_nofile(8192)  # the daemon inherits it
    chosen = [a for a in attacks(args)
              if not args.only or {a.name, str(a.number)} & {x.strip() for x in args.only.split(",")}]
    if not chosen:
        raise SystemExit(f"--only {args.only}: no such attack")
    progress(machine())
    results = []
    t0 = time.monotonic()
    for attack in chosen:
        results.append(run_attack(attack, args))
    progress(f"all done in {time.monotonic() - t0:.0f} s")
    if args.json:
        print(json.dumps({"machine": machine(), "results": results}, indent=1, default=str))
        return
    print(f"machine: {machine()}; attacks of at least {args.seconds:g} s; legit: a runner polling "
          f"every {POLL_INTERVAL} s, {args.singers} echo singers + a {args.track_seconds:g} s track")
    print(table(results))
    print()
    print(notes(results))


if __name__ == "__main__":
    main()
