"""PeerTube's admin API for runners (/api/v1/runners), on Klein, beside the runner API.

    GET    /api/v1/runners                                  runners
    DELETE /api/v1/runners/{id}                             remove one; its jobs to pending
    GET    /api/v1/runners/registration-tokens              registration tokens
    POST   /api/v1/runners/registration-tokens/generate     a new one (204)
    DELETE /api/v1/runners/registration-tokens/{id}         it and its runners (204)
    POST   /api/v1/runners/registration-tokens/{id}/revoke  (ours) no new runner with it
    GET    /api/v1/runners/jobs                             jobs: search, stateOneOf, typeOneOf
    POST   /api/v1/runners/jobs/{uuid}/cancel               cancel it and its waiting children
    DELETE /api/v1/runners/jobs/{uuid}                      cancel if it can be, then delete

Every call wants ``Authorization: Bearer <operator token>`` (``choir-admin operator-tokens
create``): none is a 401, an unknown or revoked one a 403. Lists take PeerTube's ``start``,
``count`` (default 15, at most 100) and ``sort`` (``createdAt``, ``-createdAt``, ...; the
default ``-createdAt``) and answer ``{"total", "data"}``; refusals (bad parameters too) are
application/problem+json as in the runner API.

Shapes are PeerTube's, with a few fields of ours that choir-admin needs and a PeerTube
client ignores: a runner's ``version``, a registration token's ``revoked`` and
``registrationTokenPrefix``, a job's ``mediaId``. The store keeps only a registration
token's hash, so a list gives ``registrationToken: null`` (PeerTube's gives the token):
PeerTube answers ``generate`` with an empty 204; ours also gives the new token, that once,
in an ``X-Registration-Token`` header, and its id in ``X-Registration-Token-Id``. Our runner and token ids are uuids,
not PeerTube's integers. Runner API routes (all POSTs) and these share their paths:
``is_admin_route`` tells the root resource which requests come here.
"""
import functools

from klein import Klein
from twisted.logger import Logger

from choir_protocol.runners import jobs as J
from choir_protocol.runners.jobs import JobError, JobState, JobType
from choir_protocol.runners.urls import absolute_payload

from ..store.operator import JOB_SORTS, REGISTRATION_TOKEN_SORTS, RUNNER_SORTS
from ..store.store import StaleJob
from .answers import (MAX_JSON_BYTES, bad_request, bearer_token, json_answer, no_content, problems,
                      too_large)

log = Logger()

PREFIX = "/api/v1/runners"
DEFAULT_COUNT = 15
MAX_COUNT = 100
DEFAULT_SORT = "-createdAt"
CANCEL_ATTEMPTS = 3  # a job that keeps changing under a cancel (its runner updating)


def is_admin_route(method: bytes, segments) -> bool:
    """Whether a request (its method and path segments) is for the admin API: every GET or
    DELETE under /api/v1/runners, and the admin's POSTs (generate, revoke, cancel); the
    other POSTs are the runners'."""
    if list(segments[:3]) != [b"api", b"v1", b"runners"]:
        return False
    rest = list(segments[3:])
    if rest and rest[-1] == b"":
        rest.pop()
    if method in (b"GET", b"HEAD", b"DELETE"):
        return True
    if method != b"POST":
        return False
    return rest == [b"registration-tokens", b"generate"] or (
        len(rest) == 3 and rest[1] != b""
        and (rest[0], rest[2]) in ((b"registration-tokens", b"revoke"), (b"jobs", b"cancel")))


def unauthorized() -> JobError:
    return JobError("unauthorized", 401, "an operator token is required (Authorization: "
                                         "Bearer TOKEN; choir-admin operator-tokens create)")


def forbidden() -> JobError:
    return JobError("invalid_operator_token", 403, "unknown or revoked operator token")


def _admin(fn):
    """A route of the admin API: the operator token checked, refusals as problems."""
    @functools.wraps(fn)
    async def authorized(self, request, *args, **kw):
        await self._authorize(request)
        return await fn(self, request, *args, **kw)
    return problems(authorized)


# -- query parameters --------------------------------------------------------------------

def _values(request, name: str) -> list:
    raw = (request.args or {}).get(name.encode(), []) + \
        (request.args or {}).get(name.encode() + b"[]", [])
    try:
        return [v.decode("utf-8") for v in raw]
    except UnicodeDecodeError:
        raise bad_request(f"parameter {name} is not UTF-8")


def _one(request, name: str) -> str | None:
    values = _values(request, name)
    if len(values) > 1:
        raise bad_request(f"parameter {name} is given {len(values)} times")
    return values[0] if values else None


def _int(request, name: str, default: int, high: int | None = None) -> int:
    text = _one(request, name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise bad_request(f"parameter {name} must be an integer, not {text[:40]!r}")
    if value < 0 or (high is not None and value > high):
        raise bad_request(f"parameter {name} must be between 0 and {high}" if high is not None
                          else f"parameter {name} must not be negative")
    return value


def _flag(request, name: str) -> bool:
    text = (_one(request, name) or "false").lower()
    if text not in ("true", "false", "1", "0"):
        raise bad_request(f"parameter {name} must be true or false")
    return text in ("true", "1")


def _page(request, sorts: dict) -> dict:
    """start, count and sort (column, descending) of a list request."""
    sort = _one(request, "sort") or DEFAULT_SORT
    key = sort[1:] if sort.startswith("-") else sort
    if key not in sorts:
        raise bad_request(f"parameter sort must be one of "
                          f"{', '.join(s for k in sorts for s in (k, '-' + k))}")
    return {"start": _int(request, "start", 0),
            "count": _int(request, "count", DEFAULT_COUNT, MAX_COUNT),
            "sort": sorts[key], "descending": sort.startswith("-")}


def _states(request) -> list:
    out = []
    for text in _values(request, "stateOneOf"):
        try:
            out.append(JobState(int(text)))
        except ValueError:
            raise bad_request(f"stateOneOf: {text[:40]!r} is not a job state (1 to 9)")
    return out


def _types(request) -> list:
    types = _values(request, "typeOneOf")
    for t in types:
        if t not in JobType.ALL:
            raise bad_request(f"typeOneOf: {t[:60]!r} is not a job type")
    return types


# -- shapes --------------------------------------------------------------------------------

def runner_wire(r) -> dict:
    # PeerTube's updatedAt moves with lastContact (it saves the runner to refresh it)
    updated = max(r.created_at, r.last_contact or r.created_at)
    return {"id": r.id, "name": r.name, "description": r.description, "ip": r.ip,
            "lastContact": J.iso(r.last_contact), "createdAt": J.iso(r.created_at),
            "updatedAt": J.iso(updated), "version": r.version}


def registration_token_wire(t, runners: int) -> dict:
    # the store keeps only the token's hash: registrationToken is null, the prefix tells
    # tokens apart (the token itself was in its generate answer)
    return {"id": t.id, "registrationToken": t.token, "registrationTokenPrefix": t.prefix,
            "createdAt": J.iso(t.created_at), "updatedAt": J.iso(t.created_at),
            "registeredRunnersCount": runners, "revoked": t.revoked}


def job_wire(job, base: str, runners: dict, parents: dict) -> dict:
    """PeerTube's RunnerJobAdmin, payload URLs made absolute against ``base``."""
    wire = job.to_wire()
    wire["payload"] = absolute_payload(job.payload, base)
    parent = parents.get(job.parent_uuid)
    runner = runners.get(job.runner_id)
    wire.update({
        "privatePayload": job.private_payload,
        "parent": None if parent is None else {
            "uuid": parent.uuid, "type": parent.type,
            "state": {"id": int(parent.state), "label": parent.state.label}},
        "runner": None if runner is None else {
            "id": runner.id, "name": runner.name, "description": runner.description},
        "mediaId": job.media_id,
    })
    return wire


# -- the API -------------------------------------------------------------------------------

class AdminAPI:
    app = Klein()

    def __init__(self, store, hub, clock, base_url):
        """``base_url(request)``: the absolute URL the request reached us at
        (``RunnerAPI.base_url``); ``clock.seconds()`` is now."""
        self.store = store
        self.hub = hub
        self.clock = clock
        self.base_url = base_url

    def resource(self):
        return self.app.resource()

    def now(self) -> float:
        return self.clock.seconds()

    def check_request(self, request):  # for ``problems``: our bodies are small
        if getattr(request, "body_too_large", False):
            raise too_large(getattr(request, "max_body", MAX_JSON_BYTES))

    async def _authorize(self, request):
        token = bearer_token(request)
        if token is None:
            request.setHeader(b"www-authenticate", b'Bearer realm="choir"')
            raise unauthorized()
        record = await self.store.operator_by_token(token, now=self.now())
        if record is None or record.revoked:
            raise forbidden()
        return record

    # -- runners --

    @app.route(PREFIX, methods=["GET"])
    @app.route(PREFIX + "/", methods=["GET"], endpoint="list_runners/")  # express's routing
    @_admin
    async def list_runners(self, request):
        page = await self.store.runners_page(**_page(request, RUNNER_SORTS))
        return json_answer(request, {"total": page.total, "data": [runner_wire(r) for r in page.items]})

    async def _hang_up_removed(self):
        """A removed runner's socket.io connection goes too: it must hear of no more jobs."""
        self.hub.keep_only({r.id for r in await self.store.list_runners()})

    @app.route(PREFIX + "/<string:runner_id>", methods=["DELETE"])
    @_admin
    async def delete_runner(self, request, runner_id):
        requeued = await self.store.remove_runner(runner_id, now=self.now())
        if requeued is None:
            raise JobError("unknown_runner", 404, f"unknown runner {runner_id}")
        log.info("Operator removed runner {id}; {n} job(s) back to pending", id=runner_id,
                 n=requeued)
        await self._hang_up_removed()
        if requeued:
            self.hub.notify_available_jobs()
        return no_content(request)

    # -- registration tokens --

    @app.route(PREFIX + "/registration-tokens", methods=["GET"])
    @app.route(PREFIX + "/registration-tokens" + "/", methods=["GET"], endpoint="list_registration_tokens/")  # express's routing
    @_admin
    async def list_registration_tokens(self, request):
        page = await self.store.registration_tokens_page(
            **_page(request, REGISTRATION_TOKEN_SORTS),
            include_revoked=_flag(request, "includeRevoked"))
        return json_answer(request, {"total": page.total, "data": [
            registration_token_wire(t, n) for t, n in page.items]})

    @app.route(PREFIX + "/registration-tokens/generate", methods=["POST"])
    @_admin
    async def generate_registration_token(self, request):
        token = await self.store.create_registration_token(now=self.now())
        request.setHeader(b"x-registration-token-id", token.id.encode())
        request.setHeader(b"x-registration-token", token.token.encode())  # shown once
        request.setHeader(b"cache-control", b"no-store")
        return no_content(request)

    @app.route(PREFIX + "/registration-tokens/<string:token_id>", methods=["DELETE"])
    @_admin
    async def delete_registration_token(self, request, token_id):
        outcome = await self.store.delete_registration_token(token_id, now=self.now())
        if outcome is None:
            raise _unknown_registration_token(token_id)
        runners, requeued = outcome
        log.info("Operator deleted registration token {id} and its {r} runner(s)",
                 id=token_id, r=runners)
        await self._hang_up_removed()
        if requeued:
            self.hub.notify_available_jobs()
        return no_content(request)

    @app.route(PREFIX + "/registration-tokens/<string:token_id>/revoke", methods=["POST"])
    @_admin
    async def revoke_registration_token(self, request, token_id):
        revoked = await self.store.revoke_registration_token_id(token_id)
        if revoked is None:
            raise _unknown_registration_token(token_id)
        if not revoked:
            raise JobError("registration_token_revoked", 409,
                           f"registration token {token_id} is already revoked")
        return no_content(request)

    # -- jobs --

    @app.route(PREFIX + "/jobs", methods=["GET"])
    @app.route(PREFIX + "/jobs" + "/", methods=["GET"], endpoint="list_jobs/")  # express's routing
    @_admin
    async def list_jobs(self, request):
        search = _one(request, "search")
        page = await self.store.jobs_page(**_page(request, JOB_SORTS), search=search,
                                          states=_states(request), types=_types(request))
        runners = await self.store.runners_by_id(j.runner_id for j in page.items)
        parents = await self.store.jobs_by_uuid(j.parent_uuid for j in page.items)
        base = self.base_url(request)
        return json_answer(request, {"total": page.total, "data": [
            job_wire(j, base, runners, parents) for j in page.items]})

    async def _job(self, uuid):
        job = await self.store.get_job(uuid)
        if job is None:
            raise J.unknown_job(uuid)
        return job

    async def _cancel(self, job):
        """Cancels ``job`` (JobError when it cannot be), retrying when it changed under us."""
        for attempt in range(CANCEL_ATTEMPTS):
            tr = J.cancel(job, self.now(), await self.store.children(job.uuid))
            try:
                await self.store.save(tr, now=self.now(), previous=job)
                return tr
            except StaleJob:
                job = await self._job(job.uuid)
        raise JobError("runner_job_busy", 409, f"job {job.uuid} kept changing: try again")

    @app.route(PREFIX + "/jobs/<string:uuid>/cancel", methods=["POST"])
    @_admin
    async def cancel_job(self, request, uuid):
        tr = await self._cancel(await self._job(uuid))
        log.info("Operator cancelled job {uuid} (was {state})", uuid=uuid,
                 state=tr.previous_state.label)
        return no_content(request)

    @app.route(PREFIX + "/jobs/<string:uuid>", methods=["DELETE"])
    @_admin
    async def delete_job(self, request, uuid):
        job = await self._job(uuid)
        if job.state in J.CANCELLABLE_STATES:  # as PeerTube; the change feed hears of it
            await self._cancel(job)
        await self.store.delete_job(uuid)  # its children go with it (ON DELETE CASCADE)
        log.info("Operator deleted job {uuid}", uuid=uuid)
        return no_content(request)

    # -- anything else under the prefix: a problem, not Klein's HTML page --

    @app.route(PREFIX + "/<path:rest>", methods=["GET", "DELETE", "POST"])
    @_admin
    async def not_found(self, request, rest):
        raise JobError("not_found", 404, f"no admin route {request.method.decode()} "
                                         f"{PREFIX}/{rest}")


def _unknown_registration_token(token_id) -> JobError:
    return JobError("unknown_registration_token", 404, f"unknown registration token {token_id}")

