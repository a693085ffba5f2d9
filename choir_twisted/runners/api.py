"""PeerTube's remote-runner HTTP API (/api/v1/runners), on Klein.

Every route is a POST; tokens travel in the body; refusals are application/problem+json
(``JobError.problem()``); the job logic is ``choir_protocol.runners.jobs``, the storage ``Store``.

Choices
-------
* Payload URLs are stored as paths and made absolute as they are served (``jobs/request``,
  ``accept``): PeerTube's runner passes each through ``new URL()``. The base is
  ``--public-url``, else the request's ``Host`` and scheme (``choir_protocol.runners.urls``).
* Input files (``.../files/videos/{videoId}/...``, ``input_files``) are served only to the
  runner holding the job (runner token + job token, ``check_job_token``) while it is
  processing; ``videoId`` must be the job's ``media_id`` (or its uuid for a job without
  media).
* Success files are stored as ``results`` says, listed with ``payload[inputLanguage]``
  under ``private_payload["result"]``, and, when the job has a media, as its ``output``
  media files in the very transaction that makes the job COMPLETED.
* Multipart bodies are parsed by ``multipart.parse_multipart`` (the ``multipart`` package's
  streaming parser, with our limits) from the request's body file, in a thread, in two
  passes: the fields first (the tokens checked again before a file is written), then the
  wanted files are copied out. Twisted's own in-memory multipart parsing is switched off by
  the request class of ``site()``.
* Bodies, as they arrive (``upload_gate.LimitedRequest``, the request class of ``site()``):
  result uploads (``success``, ``update``) and media uploads up to ``max_upload_bytes``,
  every other body 1 MiB (413 ``payload_too_large``); an upload's tokens are checked before
  its body is stored (the runner's from the form fields that come before its files, the
  media API's from ``Authorization``), and at most ``MAX_UPLOADS_PER_TOKEN`` big bodies per
  token are received at once (429). Under a plain ``Site`` the limit is still enforced by
  the route (413), but Twisted will have spooled the whole body first.
* A transition that loses a race (``StaleJob``: the job changed under us) is answered as
  the job not being processing (400 ``runner_job_not_in_processing_state``).
"""
import os

import attrs
from klein import Klein
from twisted.internet import threads
from twisted.web import resource, server

from choir_protocol.runners import jobs as J
from choir_protocol.runners.jobs import JobError, JobState
from choir_protocol.runners.urls import absolute_payload, request_base

from ..store.store import StaleJob
from .answers import (MAX_JSON_BYTES, bad_request, client_ip, content_type, header,  # noqa: F401
                      is_multipart, json_answer, json_body, no_content, problems, string_field,
                      too_large)
from .input_files import file_not_found, input_path, send_file
from .multipart import MultipartError, parse_multipart  # noqa: F401 (the tests')
from .results import REQUIRED_FILES, result_files, unlink, write_result_files
from .root import Root
from .upload_gate import DEFAULT_MAX_UPLOAD_BYTES, LimitedRequest, UploadGate

PREFIX = "/api/v1/runners"
MAX_AVAILABLE_JOBS = 10


class RunnerAPI:
    app = Klein()

    def __init__(self, store, hub, files_dir, clock, max_upload_bytes=DEFAULT_MAX_UPLOAD_BYTES,
                 public_url=None, trusted_proxies=()):
        self.store = store
        self.hub = hub
        self.files_dir = os.path.abspath(files_dir)
        self.clock = clock
        self.max_upload_bytes = max_upload_bytes
        self.public_url = public_url
        self.trusted_proxies = tuple(trusted_proxies)
        self.uploads = UploadGate(store, self._upload_runner)

    # -- the resource tree --

    def resource(self, media=None, admin=None) -> resource.Resource:
        """The Klein app at /, with /socket.io/ -> the notification hub, given a ``media``
        resource, /api/v1/media -> it, and given an ``admin`` one (``AdminAPI.resource()``),
        the admin requests under /api/v1/runners (``admin_api.is_admin_route``) -> it."""
        return Root(self.app.resource(), self.hub.resource(), media, admin)

    def request_factory(self):
        return type("LimitedRequest", (LimitedRequest,),
                    {"max_body": self.max_upload_bytes, "gate": self.uploads})

    def site(self, media=None, admin=None, **kw) -> server.Site:
        return server.Site(self.resource(media, admin), requestFactory=self.request_factory(),
                           **kw)

    # -- plumbing --

    def now(self) -> float:
        return self.clock.seconds()

    def check_request(self, request):
        """``problems``' check: the body's size."""
        if getattr(request, "body_too_large", False):
            raise too_large(getattr(request, "max_body", self.max_upload_bytes))
        content = request.content
        if content is not None:
            content.seek(0, os.SEEK_END)
            size = content.tell()
            content.seek(0)
            if size > self.max_upload_bytes:
                raise too_large(self.max_upload_bytes)

    async def _multipart(self, request) -> tuple:
        """-> (fields, {file field: filename}) of a multipart body, parsed in a thread."""
        try:
            return await threads.deferToThread(
                parse_multipart, request.content, content_type(request))
        except MultipartError as e:
            raise bad_request(f"bad multipart body: {e}")

    async def _fields(self, request) -> dict:
        """The body's fields: JSON, or the non-file fields of a multipart body."""
        if is_multipart(request):
            return (await self._multipart(request))[0]
        return json_body(request)

    def base_url(self, request) -> str:
        """The URL this request reached us at (``choir_protocol.runners.urls.request_base``)."""
        here = request.getHost()
        host = getattr(here, "host", "localhost")
        host = f"[{host}]" if ":" in host else host
        return request_base(
            public_url=self.public_url, secure=request.isSecure(),
            host=header(request, b"host"), peer=client_ip(request),
            forwarded_proto=header(request, b"x-forwarded-proto"),
            forwarded_host=header(request, b"x-forwarded-host"),
            trusted_proxies=self.trusted_proxies,
            default_host=f"{host}:{getattr(here, 'port', 80)}")

    def _wire_payload(self, request, payload: dict) -> dict:
        return absolute_payload(payload, self.base_url(request))

    async def _runner(self, request, body):
        return await self.store.runner_by_token(string_field(body, "runnerToken"),
                                                ip=client_ip(request), now=self.now())

    async def _processing_job(self, request, body, uuid):
        """The job ``uuid`` if it is processing for this runner under this job token."""
        runner = await self._runner(request, body)
        job_token = string_field(body, "jobToken")
        job = await self.store.get_job(uuid)
        return runner, J.check_job_token(job, job_token, runner.id, uuid)

    async def _upload_runner(self, uuid, fields, ip) -> str:
        """The gate's check of a result upload's leading fields: the route's own refusals."""
        runner = await self.store.runner_by_token(string_field(fields, "runnerToken"), ip=ip,
                                                  now=self.now())
        J.check_job_token(await self.store.get_job(uuid), string_field(fields, "jobToken"),
                          runner.id, uuid)
        return runner.token

    async def _save(self, transition, previous=None, outputs=()):
        try:
            await self.store.save(transition, now=self.now(), previous=previous,
                                  outputs=outputs)
        except StaleJob:
            current = await self.store.get_job(transition.job.uuid)
            if current is None:
                raise J.unknown_job(transition.job.uuid)
            raise J.not_processing(current)
        if transition.notify_available:
            self.hub.notify_available_jobs()
        return transition

    # -- runners --

    @app.route(PREFIX + "/register", methods=["POST"])
    @problems
    async def register(self, request):
        body = json_body(request)
        token = string_field(body, "registrationToken")
        name = string_field(body, "name", max_len=200)
        runner = await self.store.register_runner(
            token, name, string_field(body, "description", False),
            string_field(body, "version", False), ip=client_ip(request), now=self.now())
        return json_answer(request, {"id": runner.id, "runnerToken": runner.token})

    @app.route(PREFIX + "/unregister", methods=["POST"])
    @problems
    async def unregister(self, request):
        runner = await self._runner(request, json_body(request))
        processing = [j for j in await self.store.list_jobs(states=[JobState.PROCESSING])
                      if j.runner_id == runner.id]
        await self.store.unregister_runner(runner.id, now=self.now())
        self.hub.keep_only({r.id for r in await self.store.list_runners()})
        if processing:
            self.hub.notify_available_jobs()
        return no_content(request)

    # -- jobs --

    @app.route(PREFIX + "/jobs/request", methods=["POST"])
    @problems
    async def request_jobs(self, request):
        body = json_body(request)
        await self._runner(request, body)
        job_types = body.get("jobTypes")
        if job_types is not None:
            if not isinstance(job_types, list) or not all(isinstance(t, str) for t in job_types):
                raise bad_request("field jobTypes must be a list of strings")
        jobs = await self.store.pending_jobs(job_types or None, limit=MAX_AVAILABLE_JOBS)
        return json_answer(request, {"availableJobs": [
            {"uuid": j.uuid, "type": j.type, "payload": self._wire_payload(request, j.payload)}
            for j in jobs]})

    @app.route(PREFIX + "/jobs/<string:uuid>/accept", methods=["POST"])
    @problems
    async def accept(self, request, uuid):
        runner = await self._runner(request, json_body(request))
        job = await self.store.accept(uuid, runner.id, now=self.now())
        wire = job.to_wire(with_token=True)
        wire["payload"] = self._wire_payload(request, wire["payload"])
        return json_answer(request, {"job": wire})

    @app.route(PREFIX + "/jobs/<string:uuid>/abort", methods=["POST"])
    @problems
    async def abort(self, request, uuid):
        body = json_body(request)
        reason = string_field(body, "reason")
        _, job = await self._processing_job(request, body, uuid)
        await self._save(J.abort(job, self.now(), reason), job)
        return no_content(request)

    @app.route(PREFIX + "/jobs/<string:uuid>/update", methods=["POST"])
    @problems
    async def update(self, request, uuid):
        body = await self._fields(request)
        progress = body.get("progress")
        if progress is not None:
            if isinstance(progress, str):
                try:
                    progress = int(progress.strip())
                except ValueError:
                    raise bad_request("field progress must be an integer")
            elif isinstance(progress, float) and progress.is_integer():
                progress = int(progress)
            if isinstance(progress, bool) or not isinstance(progress, int):
                raise bad_request("field progress must be an integer")
        _, job = await self._processing_job(request, body, uuid)
        await self._save(J.update(job, self.now(), progress), job)
        return no_content(request)

    @app.route(PREFIX + "/jobs/<string:uuid>/error", methods=["POST"])
    @problems
    async def error(self, request, uuid):
        body = json_body(request)
        message = string_field(body, "message", max_len=100000)
        _, job = await self._processing_job(request, body, uuid)
        children = await self.store.children(uuid)
        await self._save(J.error(job, message, self.now(), children), job)
        return no_content(request)

    @app.route(PREFIX + "/jobs/<string:uuid>/success", methods=["POST"])
    @problems
    async def success(self, request, uuid):
        if not is_multipart(request):
            body = json_body(request)  # a job without files (live) may send JSON
            files = {}
        else:
            body, files = await self._multipart(request)
        _, job = await self._processing_job(request, body, uuid)
        missing = [f for f in REQUIRED_FILES.get(job.type, ()) if f not in files]
        if missing:
            raise bad_request(f"missing file {', '.join(missing)} for a {job.type} job")
        written = []
        if files:
            try:
                written = await threads.deferToThread(
                    write_result_files, request.content, content_type(request),
                    result_files(self.files_dir, job, files))
            except MultipartError as e:
                raise bad_request(f"bad multipart body: {e}")
        try:
            result = {"files": {w.role: w.path for w in written}}
            language = body.get("payload[inputLanguage]")
            if language is not None:
                result["inputLanguage"] = language
            tr = J.success(job, self.now(), await self.store.children(uuid))
            tr = attrs.evolve(tr, job=attrs.evolve(
                tr.job, private_payload={**job.private_payload, "result": result}))
            # the files listed with the COMPLETED state, in its transaction: the change
            # feed (and so the webhook) never sees the job done without them
            outputs = [(w.name, w.path, w.size) for w in written] if job.media_id else ()
            await self._save(tr, job, outputs)
        except BaseException:
            for w in written:
                unlink(w.path)
            raise
        return no_content(request)

    # -- input files --

    _FILES = PREFIX + "/jobs/<string:job_uuid>/files/videos/<string:video_id>"

    @app.route(_FILES + "/max-quality", methods=["POST"])
    @problems
    async def max_quality(self, request, job_uuid, video_id):
        return await self._serve_input(request, job_uuid, video_id, "max-quality")

    @app.route(_FILES + "/max-quality/audio", methods=["POST"])
    @problems
    async def max_quality_audio(self, request, job_uuid, video_id):
        return await self._serve_input(request, job_uuid, video_id, "max-quality-audio")

    @app.route(_FILES + "/previews/max-quality", methods=["POST"])
    @problems
    async def preview(self, request, job_uuid, video_id):
        return await self._serve_input(request, job_uuid, video_id, "preview")

    @app.route(_FILES + "/studio/task-files/<string:filename>", methods=["POST"])
    @problems
    async def studio_task_file(self, request, job_uuid, video_id, filename):
        return await self._serve_input(request, job_uuid, video_id, "task-files", filename)

    async def _serve_input(self, request, job_uuid, video_id, key, filename=None):
        body = json_body(request)
        _, job = await self._processing_job(request, body, job_uuid)
        if video_id != str(job.media_id or job.uuid):
            raise JobError("unknown_video", 404, f"video {video_id} is not the job's video")
        what = key if filename is None else f"task file {filename}"
        path = await input_path(self.store, self.files_dir, job, key, filename)
        if path is None:
            raise file_not_found(what)
        return await send_file(request, path, what)
