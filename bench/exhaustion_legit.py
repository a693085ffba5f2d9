"""The exhaustion bench's legitimate users, each run in a process of its own: a runner polling
for jobs (``legit_runner``) and a rehearsal of echo singers and a director (``legit_session``)."""
import collections
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from choir_protocol.rehearsal.constants import VOCAL_GROUPS  # noqa: E402

GROUPS = VOCAL_GROUPS[1:]

REQUEST_TIMEOUT = 5.0  # the legit runner's per-request time-out
POLL_INTERVAL = 0.5  # between the legit runner's requests


def percentile(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


# -- the legit runner (a process of its own) --------------------------------------------------

def legit_runner(port, registration_token, conn):
    import http.client

    def call(path, obj):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT,
                                       source_address=("127.0.0.1", 0))
        try:
            c.request("POST", path, json.dumps(obj), {"Content-Type": "application/json"})
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    runner_token, error = None, None
    for _ in range(5):
        try:
            status, body = call("/api/v1/runners/register",
                                {"registrationToken": registration_token, "name": "legit-runner"})
            if status == 200:
                runner_token = json.loads(body)["runnerToken"]
                break
            error = f"register: {status} {body[:200]!r}"
        except Exception as e:
            error = f"register: {type(e).__name__}: {e}"
        time.sleep(0.5)
    conn.send({"event": "ready", "ok": runner_token is not None, "error": error})
    if runner_token is None or conn.recv() != "go":
        return
    results, errors = [], collections.Counter()
    t0 = next_at = time.monotonic()
    while not conn.poll():
        start = time.monotonic()
        try:
            status, body = call("/api/v1/runners/jobs/request", {"runnerToken": runner_token})
            ok = status == 200
            if not ok:
                errors[f"HTTP {status}"] += 1
        except Exception as e:
            ok = False
            errors[type(e).__name__] += 1
        latency = time.monotonic() - start
        results.append((round(start - t0, 3), ok, latency))
        next_at = max(next_at + POLL_INTERVAL, time.monotonic())
        while time.monotonic() < next_at and not conn.poll():
            time.sleep(min(0.05, max(0.0, next_at - time.monotonic())))
    conn.recv()
    ok_lat = [lat * 1000 for _, ok, lat in results if ok]
    conn.send({"requests": len(results), "ok": len(ok_lat), "errors": dict(errors),
               "p50_ms": round(percentile(ok_lat, 50), 1), "p95_ms": round(percentile(ok_lat, 95), 1),
               "max_ms": round(max(ok_lat), 1) if ok_lat else None,
               "worst_ms": round(max(lat for _, _, lat in results) * 1000, 1) if results else None})


# -- the legit rehearsal (a process of its own, with its own reactor) --------------------------

def legit_session(ports, n_singers, track_seconds, retry_seconds, conn):
    from twisted.internet import defer, endpoints, task, threads

    from choir_clients.demo.signals import broadband_track, mono, snr_db
    from choir_clients.demo.simulated import SimulatedDirector, SimulatedSinger

    async def sleep(reactor, seconds):
        await task.deferLater(reactor, seconds, lambda: None)

    async def connect(reactor, role, proto):
        endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", ports[role], timeout=5)
        return await endpoints.connectProtocol(endpoint, proto)

    async def session(reactor):
        track = broadband_track(track_seconds)
        conn.send({"event": "ready"})
        if await threads.deferToThread(conn.recv) != "go":
            return None
        t_go = reactor.seconds()
        singers, singer_errors = [], collections.Counter()
        for i in range(n_singers):
            singer = SimulatedSinger(reactor, f"legit-{i + 1}", GROUPS[i % len(GROUPS)], seed=i)
            try:
                await connect(reactor, "singers", singer)
                singers.append(singer)
            except Exception as e:
                singer_errors[type(e).__name__] += 1
        await sleep(reactor, 1.0)  # the daemon has them joined by then
        out = {"singers_requested": n_singers,
               "singers_connected": sum(not s.disconnected.called for s in singers),
               "singer_errors": dict(singer_errors), "attempts": 0, "refused": 0,
               "director_ports": [], "mix_chunks": 0, "expected": len(track) // 512,
               "director_errors": {}}
        retry_until = reactor.seconds() + retry_seconds
        errors = collections.Counter()
        director = None
        while True:
            director = SimulatedDirector(track)
            out["attempts"] += 1
            try:
                await connect(reactor, "director", director)
                out["director_ports"].append(director.transport.getHost().port)
            except Exception as e:
                errors[type(e).__name__] += 1
                director = None
            if director is not None:
                # a session must start (first mix) within 10 s of the connection, or the
                # retry window; once started it has 2 x the track + 10 s to finish
                first_by = max(retry_until, reactor.seconds() + 10)
                while not director.done.called and not director.first_mix.called \
                        and reactor.seconds() < first_by:
                    await sleep(reactor, 0.05)
                if director.first_mix.called:
                    out["started_after_s"] = round(reactor.seconds() - t_go, 1)
                    done_by = reactor.seconds() + 2 * track_seconds + 10
                    while not director.done.called and reactor.seconds() < done_by:
                        await sleep(reactor, 0.05)
                    out["timed_out"] = not director.done.called
                    break
                if not director.done.called:  # accepted, but no mix ever came
                    out["timed_out"] = True
                    break
                out["refused"] += 1
            if reactor.seconds() >= retry_until:
                break
            await sleep(reactor, 0.5)
        if director is not None:
            out["mix_chunks"] = len(director.mix)
            out["refused_at_end"] = bool(director.refused)
            if director.transport is not None and not director.done.called:
                director.transport.abortConnection()
            if director.mix and len(director.mix) == out["expected"]:
                try:
                    out["snr_db"] = round(snr_db(mono(track), director.mix_signal), 1)
                except Exception:
                    pass
        out["director_errors"] = dict(errors)
        out["singers_alive_at_end"] = sum(not s.disconnected.called for s in singers)
        out["singer_chunks_sent"] = [s.sent_chunks for s in singers]
        out["seconds"] = round(reactor.seconds() - t_go, 1)
        for s in singers:
            if s.transport is not None and not s.disconnected.called:
                s.transport.loseConnection()
        await sleep(reactor, 0.2)
        return out

    async def main(reactor):
        try:
            result = await session(reactor)
        except Exception as e:
            result = {"error": f"{type(e).__name__}: {e}"}
        if result is not None:
            conn.send(result)

    task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
