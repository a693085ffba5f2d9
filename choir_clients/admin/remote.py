"""choir-admin --url: the operator's commands over a daemon's admin HTTP API, on treq.

``RemoteAdmin`` has the ``{group}_{leaf}(opts)`` methods of ``local.Admin`` that work from
another machine: tokens, runners and jobs go through PeerTube's admin routes under
/api/v1/runners (``choir_twisted.runners.admin_api``), media list/show through /api/v1/media; the
operator token travels as ``Authorization: Bearer``. Lists are read whole, page by page.
The output is the local commands' (the same ``table``s, ``ago``s and JSON) except for what
the API does not tell: file paths and webhooks on the daemon's disk are left out, a media
file is named by its URL. A job's payload shows its URLs absolute, as a runner gets them.
Any failure is an ``AdminError``: one line on stderr, exit status 1.
"""
import datetime
import json
import os
import types
from urllib.parse import quote

from treq.client import HTTPClient
from twisted.internet import defer
from twisted.web.client import Agent, HTTPConnectionPool

from choir_protocol.runners.jobs import JobState

from . import hints
from ..cli import plain_reason
from .output import AdminError, Output, ago, human_size, live_token, resolve, table

RUNNERS = "/api/v1/runners"
TOKENS = RUNNERS + "/registration-tokens"
JOBS = RUNNERS + "/jobs"
MEDIA = "/api/v1/media"
PAGE = 100  # the admin API's largest page
CALL_TIMEOUT = 30.0
UPLOAD_TIMEOUT = 3600.0  # an intro clip may be large
# the keys of Job.to_wire(), the local JSON's job fields, in their order
_JOB_KEYS = ("uuid", "type", "state", "payload", "failures", "error", "progress", "priority",
             "startedAt", "createdAt", "updatedAt", "finishedAt")


def _epoch(text):
    """An ISO time of the API -> epoch seconds (None stays None)."""
    if not text:
        return None
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _job_dict(wire) -> dict:
    """An admin API job -> the local ``jobs list --json`` record."""
    d = {k: wire.get(k) for k in _JOB_KEYS}
    runner = wire.get("runner") or {}
    d.update({"parentUuid": (wire.get("parent") or {}).get("uuid"),
              "runnerId": runner.get("id"), "runnerName": runner.get("name"),
              "mediaId": wire.get("mediaId")})
    return d


def _pick(items, value, what, keys):
    """``output.resolve`` over API dicts: exact key, else a unique id prefix."""
    spaces = [types.SimpleNamespace(item=i, **{k: i.get(k) or "" for k in keys}) for i in items]
    return resolve(spaces, value, what, keys).item


class RemoteAdmin(Output):
    """The commands over HTTP, printed as the local ones (``local.Admin``)."""

    def __init__(self, url, token, out, as_json, now, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        super().__init__(out, as_json, now)
        self.url = url.rstrip("/")
        self.token = token
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.http = HTTPClient(Agent(reactor, pool=self.pool))

    async def close(self):
        await self.pool.closeCachedConnections()

    # -- HTTP ------------------------------------------------------------------------------

    async def _call(self, method, path, params=(), missing_ok=False, **body):
        """-> (response, JSON body or None); None for a 404 when ``missing_ok``. ``body``:
        treq's ``data``/``files`` (a multipart form)."""
        headers = {b"authorization": [f"Bearer {self.token}".encode("latin-1", "replace")],
                   b"accept": [b"application/json"]}
        try:
            response = await self.http.request(method, self.url + path, params=list(params),
                                               headers=headers,
                                               timeout=body.pop("timeout", CALL_TIMEOUT), **body)
            raw = await response.content()
        except defer.CancelledError:
            raise AdminError(f"{self.url}: no answer within {CALL_TIMEOUT:.0f} s")
        except Exception as e:  # refused, unknown host, connection lost
            raise AdminError(f"{self.url}: {plain_reason(e)}")
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        if response.code == 404 and missing_ok:
            return None
        if 200 <= response.code < 300:
            if raw and body is None:
                raise AdminError(f"{self.url}{path}: not JSON: is this a choir daemon?")
            return response, body
        detail = body.get("detail") if isinstance(body, dict) else None
        if response.code in (401, 403):
            raise AdminError(f"{self.url} refused the operator token"
                             + (f": {detail}" if detail else f" ({response.code})"))
        if detail:
            raise AdminError(str(detail))
        raise AdminError(f"{self.url}{path}: HTTP {response.code} "
                         f"{response.phrase.decode('latin-1', 'replace')}")

    async def _get(self, path, params=()):
        return (await self._call("GET", path, params))[1]

    async def _all(self, path, params=(), limit=None) -> list:
        """Every item of a paginated list (at most ``limit``)."""
        items = []
        while limit is None or len(items) < limit:
            count = PAGE if limit is None else min(PAGE, limit - len(items))
            page = await self._get(path, [*params, ("start", str(len(items))),
                                          ("count", str(count))])
            if not isinstance(page, dict) or not isinstance(page.get("data"), list):
                raise AdminError(f"{self.url}{path}: not a list answer: is this a choir daemon?")
            items += page["data"]
            if not page["data"] or len(items) >= page.get("total", 0):
                break
        return items if limit is None else items[:limit]

    # -- tokens ----------------------------------------------------------------------------

    async def _tokens(self, include_revoked):
        return await self._all(TOKENS, [("sort", "createdAt"),
                                        ("includeRevoked", "true" if include_revoked else "false")])

    async def tokens_create(self, opts):
        response, _ = await self._call("POST", TOKENS + "/generate")
        # the daemon keeps only the token's hash: its generate answer is the only place the
        # token is told (PeerTube's own lists it again; ours gives its prefix)
        token_id, token = (
            (response.headers.getRawHeaders(name) or [b""])[0].decode("latin-1")
            for name in (b"x-registration-token-id", b"x-registration-token"))
        made = [t for t in await self._tokens(False) if t["id"] == token_id]
        if not made or not token:
            raise AdminError(f"{self.url} made a registration token but did not give it")
        self.emit_new_token(token, token_id, made[0]["createdAt"],
                            hints.daemon_url(opts["url"], remote=self.url), opts["runner-name"])

    async def tokens_list(self, opts):
        self.emit_tokens([(t["id"], t.get("registrationTokenPrefix"), _epoch(t["createdAt"]),
                           t.get("revoked", False), t["registeredRunnersCount"])
                          for t in await self._tokens(opts["all"])])

    async def tokens_revoke(self, opts):
        live = [types.SimpleNamespace(id=t["id"], prefix=t.get("registrationTokenPrefix"))
                for t in await self._tokens(False)]
        tok = live_token(live, opts["token"], "registration token")
        answer = await self._call("POST", f"{TOKENS}/{quote(tok.id, safe='')}/revoke",
                                  missing_ok=True)
        if answer is None:
            raise AdminError(f"registration token {tok.prefix} was deleted meanwhile")
        self.emit_revoked_token(tok.id, tok.prefix)

    # -- runners ---------------------------------------------------------------------------

    async def _processing_by_runner(self):
        counts = {}
        for job in await self._all(JOBS, [("stateOneOf", "2"), ("sort", "createdAt")]):
            runner_id = (job.get("runner") or {}).get("id")
            counts[runner_id] = counts.get(runner_id, 0) + 1
        return counts

    async def runners_list(self, opts):
        runners = await self._all(RUNNERS, [("sort", "createdAt")])
        counts = await self._processing_by_runner()
        self.emit([{"id": r["id"], "name": r["name"], "description": r.get("description"),
                    "version": r.get("version"), "ip": r.get("ip"),
                    "lastContact": r.get("lastContact"), "createdAt": r["createdAt"],
                    "jobsProcessing": counts.get(r["id"], 0)} for r in runners],
                  table(["ID", "NAME", "VERSION", "IP", "LAST CONTACT", "PROCESSING"],
                        [[r["id"][:8], r["name"], r.get("version"), r.get("ip"),
                          ago(_epoch(r.get("lastContact")), self.now), counts.get(r["id"], 0)]
                         for r in runners])
                  if runners else "No registered runners.")

    async def runners_remove(self, opts):
        runner = _pick(await self._all(RUNNERS, [("sort", "createdAt")]), opts["id_or_name"],
                       "runner", keys=("id", "name"))
        processing = (await self._processing_by_runner()).get(runner["id"], 0)
        if await self._call("DELETE", f"{RUNNERS}/{quote(runner['id'], safe='')}",
                            missing_ok=True) is None:
            raise AdminError(f"runner {runner['name']!r} was removed meanwhile")
        self.emit({"removed": runner["id"], "name": runner["name"], "jobsRequeued": processing},
                  f"Removed runner {runner['name']} ({runner['id']}); {processing} job(s) it "
                  f"was processing went back to pending.")

    # -- jobs ------------------------------------------------------------------------------

    async def _job(self, value):
        """The job whose uuid is ``value``, else the one it is a prefix of (4+ characters)."""
        found = await self._all(JOBS, [("search", value), ("sort", "createdAt")]) if value else []
        exact = [j for j in found if j["uuid"] == value]
        if exact:
            return exact[0]
        return _pick(found if len(value) >= 4 else [], value, "job", keys=("uuid",))

    async def _children(self, uuid):
        return [j for j in await self._all(JOBS, [("sort", "createdAt")])
                if (j.get("parent") or {}).get("uuid") == uuid]

    async def jobs_list(self, opts):
        params = [("sort", "createdAt")]
        params += [("stateOneOf", str(int(s))) for s in opts["state"] or ()]
        params += [("typeOneOf", t) for t in opts["type"] or ()]
        jobs = await self._all(JOBS, params, limit=opts["limit"])
        self.emit([_job_dict(j) for j in jobs],
                  table(["UUID", "TYPE", "STATE", "PROGRESS", "FAILURES", "PRIORITY", "RUNNER",
                         "AGE"],
                        [[j["uuid"][:8], j["type"], j["state"]["label"],
                          None if j.get("progress") is None else f"{j['progress']}%",
                          j["failures"], j["priority"], (j.get("runner") or {}).get("name"),
                          ago(_epoch(j["createdAt"]), self.now)] for j in jobs])
                  if jobs else "No jobs match.")

    async def jobs_show(self, opts):
        job = await self._job(opts["uuid"])
        children = await self._children(job["uuid"])
        d = _job_dict(job)
        d["privatePayload"] = job.get("privatePayload") or {}
        d["children"] = [{"uuid": c["uuid"], "type": c["type"], "state": c["state"]["label"]}
                         for c in children]
        state = job["state"]
        lines = [f"{k + ':':<14}{v}" for k, v in (
            ("UUID", job["uuid"]), ("Type", job["type"]),
            ("State", f"{state['label']} ({state['id']})"),
            ("Progress", "-" if job.get("progress") is None else f"{job['progress']}%"),
            ("Failures", job["failures"]), ("Error", job.get("error") or "-"),
            ("Priority", job["priority"]), ("Runner", d["runnerName"] or "-"),
            ("Parent", d["parentUuid"] or "-"), ("Media", d["mediaId"] or "-"),
            ("Created", f"{job['createdAt']} ({ago(_epoch(job['createdAt']), self.now)})"),
            ("Updated", f"{job['updatedAt']} ({ago(_epoch(job['updatedAt']), self.now)})"),
            ("Started", job.get("startedAt") or "-"),
            ("Finished", job.get("finishedAt") or "-"))]
        lines.append("Payload:")
        lines += ["  " + ln for ln in json.dumps(job["payload"], indent=2).splitlines()]
        if d["privatePayload"]:
            lines.append("Private payload:")
            lines += ["  " + ln for ln in json.dumps(d["privatePayload"], indent=2).splitlines()]
        if children:
            lines.append("Children:")
            lines += ["  " + ln for ln in table(["UUID", "TYPE", "STATE"], [
                [c["uuid"], c["type"], c["state"]["label"]] for c in children]).splitlines()]
        self.emit(d, "\n".join(lines))

    async def jobs_cancel(self, opts):
        job = await self._job(opts["uuid"])
        waiting = [c["uuid"] for c in await self._children(job["uuid"])
                   if c["state"]["id"] == JobState.WAITING_FOR_PARENT_JOB]  # parent-cancelled
        if await self._call("POST", f"{JOBS}/{quote(job['uuid'], safe='')}/cancel",
                            missing_ok=True) is None:
            raise AdminError(f"unknown job {opts['uuid']!r}")
        previous = job["state"]["label"]
        self.emit({"cancelled": job["uuid"], "previousState": previous,
                   "parentCancelled": waiting},
                  f"Cancelled job {job['uuid']} (was {previous.lower()})"
                  + (f"; {len(waiting)} waiting child job(s) parent-cancelled."
                     if waiting else "."))

    # -- media -----------------------------------------------------------------------------

    async def _media_list(self):
        body = await self._get(MEDIA)
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise AdminError(f"{self.url}{MEDIA}: not a list answer: is this a choir daemon?")
        return body["data"]

    async def media_list(self, opts):
        rows, data = [], []
        for m in await self._media_list():
            ins, outs = m.get("inputs") or [], m.get("outputs") or []
            size = sum(f.get("size") or 0 for f in ins + outs)
            rows.append([m["id"][:8], m["kind"], m["name"], len(ins), len(outs),
                         human_size(size), ago(_epoch(m["createdAt"]), self.now)])
            data.append({"id": m["id"], "kind": m["kind"], "name": m["name"],
                         "createdAt": m["createdAt"], "inputs": len(ins),
                         "outputs": len(outs), "size": size})
        self.emit(data, table(["ID", "KIND", "NAME", "INPUTS", "OUTPUTS", "SIZE", "AGE"], rows)
                  if rows else "No media.")

    async def media_studio(self, opts):
        """PeerTube's studio form: tasks[i][name], tasks[i][options][...], file parts."""
        m = await self._media(opts["id"])
        fields, files = [], []
        for i, task in enumerate(opts["tasks"]):
            fields.append((f"tasks[{i}][name]", task["name"]))
            for key, value in task["options"].items():
                if key == "file":
                    files.append((f"tasks[{i}][options][file]",
                                  (os.path.basename(value), open(value, "rb"))))
                else:
                    fields.append((f"tasks[{i}][options][{key}]", str(value)))
        # without files, JSON (treq sends a form without files url-encoded)
        body = dict(data=fields, files=files) if files else dict(json={"tasks": opts["tasks"]})
        try:
            _, view = await self._call("POST", f"{MEDIA}/{quote(m['id'], safe='')}/studio/edit",
                                       timeout=UPLOAD_TIMEOUT, **body)
        finally:
            for _, (_, f) in files:
                f.close()
        jobs = view.get("jobs") or []
        self.emit_edit(m["id"], [{"uuid": j["uuid"], "type": j["type"],
                                  "state": j["state"]["label"], "resolution": j.get("resolution")}
                                 for j in jobs if j["state"]["id"] in (1, 5)])

    async def _media(self, value):
        found = await self._call("GET", f"{MEDIA}/{quote(value, safe='')}",
                                 missing_ok=True) if value else None
        if found is not None:
            return found[1]
        return _pick(await self._media_list(), value, "media", keys=("id",))

    async def media_show(self, opts):
        m = await self._media(opts["id"])
        files = [{"role": role, "name": f["name"], "size": f.get("size"),
                  "url": self.url + f["url"] if f.get("url", "").startswith("/") else f.get("url")}
                 for role, key in (("input", "inputs"), ("output", "outputs"))
                 for f in m.get(key) or []]
        jobs = m.get("jobs") or []
        d = {"id": m["id"], "kind": m["kind"], "name": m["name"], "probe": m.get("probe"),
             "state": m["state"], "endedAt": m.get("endedAt"), "createdAt": m["createdAt"],
             "hlsUrl": m.get("hlsUrl"), "files": files,
             "jobs": [{"uuid": j["uuid"], "type": j["type"], "state": j["state"]["label"]}
                      for j in jobs]}
        lines = [f"{k + ':':<10}{v}" for k, v in (
            ("ID", m["id"]), ("Kind", m["kind"]), ("Name", m["name"]),
            ("State", m["state"] + (f", ended {m['endedAt']}" if m.get("endedAt") else "")),
            ("Created", f"{m['createdAt']} ({ago(_epoch(m['createdAt']), self.now)})"))]
        if m.get("probe"):
            lines.append("Probe:")
            lines += ["  " + ln for ln in json.dumps(m["probe"], indent=2).splitlines()]
        for role, title in (("input", "Inputs"), ("output", "Outputs")):
            fs = [f for f in files if f["role"] == role]
            lines.append(f"{title}:" + ("" if fs else " none"))
            if fs:
                lines += ["  " + ln for ln in table(["NAME", "SIZE", "URL"], [
                    [f["name"], human_size(f["size"]), f["url"]] for f in fs]).splitlines()]
        lines.append("Jobs:" + ("" if jobs else " none"))
        if jobs:
            lines += ["  " + ln for ln in table(["UUID", "TYPE", "RESOLUTION", "STATE"], [
                [j["uuid"], j["type"], j.get("resolution"),
                 j["state"]["label"] + (f" {j['progress']}%" if j.get("progress") is not None
                                        else "")]
                for j in jobs]).splitlines()]
        self.emit(d, "\n".join(lines))
