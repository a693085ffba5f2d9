"""choir-admin --url: the operator's commands over a daemon's admin HTTP API, on treq.

``RemoteAdmin`` has the ``{group}_{leaf}(opts)`` methods of ``local.Admin`` that work from
another machine: tokens, runners and jobs go through PeerTube's admin routes under
/api/v1/runners (``choir_twisted.runners.admin_api``), media list/show through /api/v1/media; the
operator token travels as ``Authorization: Bearer``. Lists are read whole, page by page.
Its answers become the records the local commands make (``Job``, ``RunnerRecord``,
``records``), printed by the same ``Output.emit_*``, except for what the API does not tell
(``records.UNTOLD``): file paths and webhooks on the daemon's disk are left out, a media
file is named by its URL. A job's payload shows its URLs absolute, as a runner gets them.
Any failure is an ``AdminError``: one line on stderr, exit status 1.
"""
from collections import Counter
import datetime
import json
import os
import types
from urllib.parse import quote

from treq.client import HTTPClient
from twisted.internet import defer
from twisted.web.client import Agent, HTTPConnectionPool

from choir_protocol.runners.jobs import Job, JobState
from choir_twisted.store.records import RunnerRecord

from . import hints
from ..cli import plain_reason
from .output import AdminError, Output, live_token, resolve
from .records import UNTOLD, JobBrief, MediaFile, MediaRow, MediaView

RUNNERS = "/api/v1/runners"
TOKENS = RUNNERS + "/registration-tokens"
JOBS = RUNNERS + "/jobs"
MEDIA = "/api/v1/media"
PAGE = 100  # the admin API's largest page
CALL_TIMEOUT = 30.0
UPLOAD_TIMEOUT = 3600.0  # an intro clip may be large


def _epoch(text):
    """An ISO time of the API -> epoch seconds (None stays None)."""
    if not text:
        return None
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _state(wire) -> JobState:
    return JobState(wire["state"]["id"])


def _brief(wire) -> JobBrief:
    """A media's job (``describe_media``) -> a line of its table."""
    return JobBrief(wire["uuid"], wire["type"], _state(wire), wire.get("resolution"),
                    wire.get("progress"))


def _job(wire) -> Job:
    """An admin API job (PeerTube's RunnerJobAdmin) -> the ``Job`` (its runner's id only
    when the runner is still registered)."""
    return Job(wire["uuid"], wire["type"], _state(wire), wire.get("payload"),
               _epoch(wire["createdAt"]), _epoch(wire.get("updatedAt")), wire["priority"],
               wire.get("privatePayload") or {}, wire["failures"], wire.get("error"),
               wire.get("progress"), (wire.get("parent") or {}).get("uuid"),
               (wire.get("runner") or {}).get("id"), started_at=_epoch(wire.get("startedAt")),
               finished_at=_epoch(wire.get("finishedAt")), media_id=wire.get("mediaId"))


def _runner_names(wires) -> dict:
    """The names of the API jobs' runners by id."""
    return {r["id"]: r["name"] for r in (w.get("runner") for w in wires) if r}


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
        return Counter((j.get("runner") or {}).get("id") for j in await self._all(
            JOBS, [("stateOneOf", str(int(JobState.PROCESSING))), ("sort", "createdAt")]))

    async def runners_list(self, opts):
        runners = await self._all(RUNNERS, [("sort", "createdAt")])
        # (the API tells neither the runner's token nor the one it registered with)
        self.emit_runners([RunnerRecord(r["id"], r["name"], r.get("description"),
                                        r.get("version"), None, None, r.get("ip"),
                                        _epoch(r.get("lastContact")), _epoch(r["createdAt"]))
                           for r in runners], await self._processing_by_runner())

    async def runners_remove(self, opts):
        runner = _pick(await self._all(RUNNERS, [("sort", "createdAt")]), opts["id_or_name"],
                       "runner", keys=("id", "name"))
        processing = (await self._processing_by_runner())[runner["id"]]
        if await self._call("DELETE", f"{RUNNERS}/{quote(runner['id'], safe='')}",
                            missing_ok=True) is None:
            raise AdminError(f"runner {runner['name']!r} was removed meanwhile")
        self.emit_removed_runner(runner["id"], runner["name"], processing)

    # -- jobs ------------------------------------------------------------------------------

    async def _find_job(self, value):
        """The job whose uuid is ``value``, else the one it is a prefix of (4+ characters)."""
        found = await self._all(JOBS, [("search", value), ("sort", "createdAt")]) if value else []
        exact = [j for j in found if j["uuid"] == value]
        if exact:
            return exact[0]
        return _pick(found if len(value) >= 4 else [], value, "job", keys=("uuid",))

    async def _children(self, uuid):
        return [_job(j) for j in await self._all(JOBS, [("sort", "createdAt")])
                if (j.get("parent") or {}).get("uuid") == uuid]

    async def jobs_list(self, opts):
        params = [("sort", "createdAt")]
        params += [("stateOneOf", str(int(s))) for s in opts["state"] or ()]
        params += [("typeOneOf", t) for t in opts["type"] or ()]
        jobs = await self._all(JOBS, params, limit=opts["limit"])
        self.emit_jobs([_job(j) for j in jobs], _runner_names(jobs))

    async def jobs_show(self, opts):
        job = await self._find_job(opts["uuid"])
        self.emit_job(_job(job), _runner_names([job]), await self._children(job["uuid"]))

    async def jobs_cancel(self, opts):
        job = await self._find_job(opts["uuid"])
        waiting = [c.uuid for c in await self._children(job["uuid"])
                   if c.state is JobState.WAITING_FOR_PARENT_JOB]  # parent-cancelled
        if await self._call("POST", f"{JOBS}/{quote(job['uuid'], safe='')}/cancel",
                            missing_ok=True) is None:
            raise AdminError(f"unknown job {opts['uuid']!r}")
        self.emit_cancelled(job["uuid"], _state(job), waiting)

    # -- media -----------------------------------------------------------------------------

    async def _media_list(self):
        body = await self._get(MEDIA)
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise AdminError(f"{self.url}{MEDIA}: not a list answer: is this a choir daemon?")
        return body["data"]

    def _media_row(self, m) -> MediaRow:
        """An API media (``describe_media``) -> its row; its files named by their URLs."""
        files = tuple(
            MediaFile(role, f["name"], f.get("size"),
                      url=self.url + f["url"] if f.get("url", "").startswith("/")
                      else f.get("url"))
            for role, key in (("input", "inputs"), ("output", "outputs"))
            for f in m.get(key) or [])
        return MediaRow(m["id"], m["kind"], m["name"], UNTOLD, _epoch(m["createdAt"]), files)

    async def media_list(self, opts):
        self.emit_media_list([self._media_row(m) for m in await self._media_list()])

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
        made = [_brief(j) for j in view.get("jobs") or []]
        self.emit_edit(m["id"], [j for j in made if j.state in (
            JobState.PENDING, JobState.WAITING_FOR_PARENT_JOB)])

    async def _media(self, value):
        found = await self._call("GET", f"{MEDIA}/{quote(value, safe='')}",
                                 missing_ok=True) if value else None
        if found is not None:
            return found[1]
        return _pick(await self._media_list(), value, "media", keys=("id",))

    async def media_show(self, opts):
        m = await self._media(opts["id"])
        self.emit_media(MediaView(self._media_row(m), m.get("probe"), m["state"],
                                  _epoch(m.get("endedAt")),
                                  tuple(_brief(j) for j in m.get("jobs") or []),
                                  hls_url=m.get("hlsUrl")))
