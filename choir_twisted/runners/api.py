"""PeerTube's remote-runner HTTP API (/api/v1/runners), on Klein.

Every route is a POST; tokens travel in the body; refusals are application/problem+json
(``JobError.problem()``); the job logic is ``choir_protocol.runners.jobs``, the storage ``Store``.

Choices
-------
* Payload URLs are stored as paths and made absolute as they are served (``jobs/request``,
  ``accept``): PeerTube's runner passes each through ``new URL()``. The base is
  ``--public-url``, else the request's ``Host`` and scheme (``choir_protocol.runners.urls``).
* Input files (``.../files/videos/{videoId}/...``) come from the job's private payload::

      {"inputs": {"max-quality": path, "max-quality-audio": path, "preview": path,
                  "task-files": {filename: path}}}

  A relative path is taken relative to ``files_dir``; ``{"job": uuid, "file": role}``
  names another job's stored output (a child transcodes its parent's max-quality file).
  When ``max-quality`` is absent the
  job's media ``path`` (the recorded/uploaded source) is served instead. ``videoId`` must be
  the job's ``media_id`` (or its uuid for a job without media). A file is served only to the
  runner holding the job (runner token + job token, ``check_job_token``) while it is
  processing; it is streamed from disk with a ``FileSender`` (16 kB at a time, pull
  producer), never read into memory. A missing file is a 404 ``file_not_found`` problem.
* Success files are written to ``files_dir/media/<media_id or job uuid>/`` under the names
  of ``publishing.output_name`` (``720p.mp4``, ``hls/720p.m3u8`` + ``hls/720p-fragmented.mp4``;
  the extension from the uploaded file name), recorded as ``output`` media files when the
  job has a media, and listed with ``payload[inputLanguage]`` under
  ``private_payload["result"]``. An HLS playlist is rewritten to name the stored video file.
* Multipart bodies are parsed by our own streaming parser (``multipart.parse_multipart``)
  from the request's body file, in a thread, in two passes: the fields first (the tokens
  checked again before a file is written), then the wanted files are copied out. Twisted's own
  in-memory multipart parsing is switched off by the request class of ``site()``.
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
import functools
import json
import mimetypes
import os
import tempfile

import attrs
from klein import Klein
from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.protocols.basic import FileSender
from twisted.web import resource, server

from choir_protocol.runners import jobs as J
from choir_protocol.runners.jobs import JobError, JobState, JobType
from choir_protocol.runners.publishing import output_name, rename_segments
from choir_protocol.runners.urls import absolute_payload, request_base
from choir_protocol.text import is_text

from ..store.store import StaleJob
from .multipart import MultipartError, multipart_boundary, parse_multipart  # noqa: F401 (API)
from .upload_gate import (DEFAULT_MAX_UPLOAD_BYTES, MAX_JSON_BYTES, LimitedRequest,  # noqa: F401
                          UploadGate, bad_request, bearer_token, too_large)

log = Logger()

PREFIX = "/api/v1/runners"
MAX_PLAYLIST_BYTES = 4 * 1024 ** 2
MAX_AVAILABLE_JOBS = 10
PARTIAL_UPLOAD_PREFIX = ".upload-"  # a body being received; removed at start if left

# what a runner may name its result: anything else is stored under the default (a runner
# must not choose .html and have it served as a page)
ALLOWED_EXTENSIONS = {"videoFile": {".mp4", ".m4a", ".webm", ".mkv", ".mov"},
                      "resolutionPlaylistFile": {".m3u8"}, "vttFile": {".vtt"}}
# success file fields -> (short role, default extension)
SUCCESS_FILES = {
    "payload[videoFile]": ("videoFile", ".mp4"),
    "payload[resolutionPlaylistFile]": ("resolutionPlaylistFile", ".m3u8"),
    "payload[vttFile]": ("vttFile", ".vtt"),
}
REQUIRED_FILES = {
    JobType.VOD_AUDIO_MERGE: ("payload[videoFile]",),
    JobType.VOD_WEB_VIDEO: ("payload[videoFile]",),
    JobType.VOD_HLS: ("payload[videoFile]", "payload[resolutionPlaylistFile]"),
    JobType.STUDIO: ("payload[videoFile]",),
    JobType.TRANSCRIPTION: ("payload[vttFile]",),
    JobType.LIVE_RTMP_HLS: (),
}


def file_not_found(what: str) -> JobError:
    return JobError("file_not_found", 404, f"no {what} file for this job")


# -- helpers ---------------------------------------------------------------------------------

def _problem(request, error: JobError) -> bytes:
    request.setResponseCode(error.status)
    request.setHeader(b"content-type", b"application/problem+json")
    return json.dumps(error.problem()).encode()


def _json(request, body, code=200) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json; charset=utf-8")
    return json.dumps(body).encode()


def _no_content(request):
    request.setResponseCode(204)
    return None


def _problems(fn):
    """Turns JobError (and any other failure) into a problem+json answer."""
    @functools.wraps(fn)
    async def wrapper(self, request, *args, **kw):
        try:
            self._check_size(request)
            return await fn(self, request, *args, **kw)
        except JobError as e:
            if request.startedWriting:
                return None
            return _problem(request, e)
        except Exception as e:
            if isinstance(e, defer.CancelledError) and getattr(request, "_disconnected", False):
                return None  # the client hung up and Klein cancelled us: nobody to answer
            log.failure("Runner API {path} failed", path=request.path)
            if request.startedWriting:
                return None
            return _problem(request, JobError("internal_error", 500, "internal server error"))
    return wrapper


def _content_type(request) -> str:
    return (request.getHeader(b"content-type") or b"").decode("latin-1")


def _is_multipart(request) -> bool:
    return _content_type(request).split(";")[0].strip().lower() == "multipart/form-data"


def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")


def _json_body(request) -> dict:
    request.content.seek(0)
    raw = request.content.read(MAX_JSON_BYTES + 1)
    if len(raw) > MAX_JSON_BYTES:
        raise JobError("payload_too_large", 413, "JSON body too large")
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as e:
        raise bad_request(f"the body is not valid JSON: {e}")
    except RecursionError:
        raise bad_request("the body is not valid JSON: nested too deeply")
    if not isinstance(body, dict):
        raise bad_request("the JSON body must be an object")
    return body


def _string(body: dict, name: str, required: bool = True, max_len: int = 10000):
    value = body.get(name)
    if value is None:
        if required:
            raise bad_request(f"missing field {name}")
        return None
    if not isinstance(value, str) or (required and not value):
        raise bad_request(f"field {name} must be a non-empty string")
    if len(value) > max_len:
        raise bad_request(f"field {name} is longer than {max_len} characters")
    if not is_text(value):
        raise bad_request(f"field {name} is not text (a lone surrogate: \\ud800)")
    return value



def _header(request, name: bytes) -> str | None:
    value = request.getHeader(name)
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _ip(request):
    addr = request.getClientAddress()
    return getattr(addr, "host", None)


def _safe_ext(filename, role: str, default: str) -> str:
    ext = os.path.splitext(os.path.basename(filename or ""))[1].lower()
    return ext if ext in ALLOWED_EXTENSIONS.get(role, ()) else default


@attrs.define
class _Written:
    field: str
    role: str
    path: str
    name: str  # relative to the media's directory
    size: int = 0


def _point_playlist_at_video(sinks, wanted):
    """An HLS runner's playlist names its own file; ours has the name we stored it under."""
    playlist = sinks.get("payload[resolutionPlaylistFile]")
    video = wanted.get("payload[videoFile]")
    if playlist is None or video is None or "payload[videoFile]" not in sinks:
        return
    with open(playlist.name, encoding="utf-8", errors="replace") as f:
        text = f.read(MAX_PLAYLIST_BYTES + 1)
    if len(text) > MAX_PLAYLIST_BYTES:
        raise JobError("payload_too_large", 413, "resolution playlist too large")
    with open(playlist.name, "w", encoding="utf-8") as f:
        f.write(rename_segments(text, os.path.basename(video.path)))


# -- the API ---------------------------------------------------------------------------------

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
        return _Root(self.app.resource(), self.hub.resource(), media, admin)

    def request_factory(self):
        return type("LimitedRequest", (LimitedRequest,),
                    {"max_body": self.max_upload_bytes, "gate": self.uploads})

    def site(self, media=None, admin=None, **kw) -> server.Site:
        return server.Site(self.resource(media, admin), requestFactory=self.request_factory(),
                           **kw)

    # -- plumbing --

    def now(self) -> float:
        return self.clock.seconds()

    def _check_size(self, request):
        if getattr(request, "body_too_large", False):
            raise too_large(getattr(request, "max_body", self.max_upload_bytes))
        content = request.content
        if content is not None:
            content.seek(0, os.SEEK_END)
            size = content.tell()
            content.seek(0)
            if size > self.max_upload_bytes:
                raise too_large(self.max_upload_bytes)

    async def _fields(self, request) -> dict:
        """The body's fields: JSON, or the non-file fields of a multipart body."""
        if _is_multipart(request):
            try:
                fields, _ = await threads.deferToThread(
                    parse_multipart, request.content, _content_type(request))
            except MultipartError as e:
                raise bad_request(f"bad multipart body: {e}")
            return fields
        return _json_body(request)

    def base_url(self, request) -> str:
        """The URL this request reached us at (``choir_protocol.runners.urls.request_base``)."""
        here = request.getHost()
        host = getattr(here, "host", "localhost")
        host = f"[{host}]" if ":" in host else host
        return request_base(
            public_url=self.public_url, secure=request.isSecure(),
            host=_header(request, b"host"), peer=_ip(request),
            forwarded_proto=_header(request, b"x-forwarded-proto"),
            forwarded_host=_header(request, b"x-forwarded-host"),
            trusted_proxies=self.trusted_proxies,
            default_host=f"{host}:{getattr(here, 'port', 80)}")

    def _wire_payload(self, request, payload: dict) -> dict:
        return absolute_payload(payload, self.base_url(request))

    async def _runner(self, request, body):
        return await self.store.runner_by_token(_string(body, "runnerToken"), ip=_ip(request),
                                                now=self.now())

    async def _processing_job(self, request, body, uuid):
        """The job ``uuid`` if it is processing for this runner under this job token."""
        runner = await self._runner(request, body)
        job_token = _string(body, "jobToken")
        job = await self.store.get_job(uuid)
        return runner, J.check_job_token(job, job_token, runner.id, uuid)

    async def _upload_runner(self, uuid, fields, ip) -> str:
        """The gate's check of a result upload's leading fields: the route's own refusals."""
        runner = await self.store.runner_by_token(_string(fields, "runnerToken"), ip=ip,
                                                  now=self.now())
        J.check_job_token(await self.store.get_job(uuid), _string(fields, "jobToken"),
                          runner.id, uuid)
        return runner.token

    async def _save(self, transition, previous=None):
        try:
            await self.store.save(transition, now=self.now(), previous=previous)
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
    @_problems
    async def register(self, request):
        body = _json_body(request)
        token = _string(body, "registrationToken")
        name = _string(body, "name", max_len=200)
        runner = await self.store.register_runner(
            token, name, _string(body, "description", False), _string(body, "version", False),
            ip=_ip(request), now=self.now())
        return _json(request, {"id": runner.id, "runnerToken": runner.token})

    @app.route(PREFIX + "/unregister", methods=["POST"])
    @_problems
    async def unregister(self, request):
        runner = await self._runner(request, _json_body(request))
        processing = [j for j in await self.store.list_jobs(states=[JobState.PROCESSING])
                      if j.runner_id == runner.id]
        await self.store.unregister_runner(runner.id, now=self.now())
        self.hub.keep_only({r.id for r in await self.store.list_runners()})
        if processing:
            self.hub.notify_available_jobs()
        return _no_content(request)

    # -- jobs --

    @app.route(PREFIX + "/jobs/request", methods=["POST"])
    @_problems
    async def request_jobs(self, request):
        body = _json_body(request)
        await self._runner(request, body)
        job_types = body.get("jobTypes")
        if job_types is not None:
            if not isinstance(job_types, list) or not all(isinstance(t, str) for t in job_types):
                raise bad_request("field jobTypes must be a list of strings")
        jobs = await self.store.pending_jobs(job_types or None, limit=MAX_AVAILABLE_JOBS)
        return _json(request, {"availableJobs": [
            {"uuid": j.uuid, "type": j.type, "payload": self._wire_payload(request, j.payload)}
            for j in jobs]})

    @app.route(PREFIX + "/jobs/<string:uuid>/accept", methods=["POST"])
    @_problems
    async def accept(self, request, uuid):
        runner = await self._runner(request, _json_body(request))
        job = await self.store.accept(uuid, runner.id, now=self.now())
        wire = job.to_wire(with_token=True)
        wire["payload"] = self._wire_payload(request, wire["payload"])
        return _json(request, {"job": wire})

    @app.route(PREFIX + "/jobs/<string:uuid>/abort", methods=["POST"])
    @_problems
    async def abort(self, request, uuid):
        body = _json_body(request)
        reason = _string(body, "reason")
        _, job = await self._processing_job(request, body, uuid)
        await self._save(J.abort(job, self.now(), reason), job)
        return _no_content(request)

    @app.route(PREFIX + "/jobs/<string:uuid>/update", methods=["POST"])
    @_problems
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
        return _no_content(request)

    @app.route(PREFIX + "/jobs/<string:uuid>/error", methods=["POST"])
    @_problems
    async def error(self, request, uuid):
        body = _json_body(request)
        message = _string(body, "message", max_len=100000)
        _, job = await self._processing_job(request, body, uuid)
        children = await self.store.children(uuid)
        await self._save(J.error(job, message, self.now(), children), job)
        return _no_content(request)

    @app.route(PREFIX + "/jobs/<string:uuid>/success", methods=["POST"])
    @_problems
    async def success(self, request, uuid):
        if not _is_multipart(request):
            body = _json_body(request)  # a job without files (live) may send JSON
            files = {}
        else:
            try:
                body, files = await threads.deferToThread(
                    parse_multipart, request.content, _content_type(request))
            except MultipartError as e:
                raise bad_request(f"bad multipart body: {e}")
        _, job = await self._processing_job(request, body, uuid)
        missing = [f for f in REQUIRED_FILES.get(job.type, ()) if f not in files]
        if missing:
            raise bad_request(f"missing file {', '.join(missing)} for a {job.type} job")
        written = await self._write_files(request, job, files) if files else []
        try:
            result = {"files": {w.role: w.path for w in written}}
            language = body.get("payload[inputLanguage]")
            if language is not None:
                result["inputLanguage"] = language
            tr = J.success(job, self.now(), await self.store.children(uuid))
            tr = attrs.evolve(tr, job=attrs.evolve(
                tr.job, private_payload={**job.private_payload, "result": result}))
            await self._save(tr, job)
        except BaseException:
            for w in written:
                _unlink(w.path)
            raise
        if job.media_id is not None:
            existing = await self.store.media_files(job.media_id, "output")
            for w in written:
                for f in existing:
                    if f.name == w.name:  # a rendition made again replaces the old record
                        await self.store.delete_media_file(f.id)
                await self.store.add_media_file(job.media_id, "output", w.name, w.path, w.size,
                                                now=self.now())
        return _no_content(request)

    async def _write_files(self, request, job, files) -> list:
        directory = os.path.join(self.files_dir, "media", str(job.media_id or job.uuid))
        wanted = {}
        for field, filename in files.items():
            if field in SUCCESS_FILES:
                role, default_ext = SUCCESS_FILES[field]
                ext = _safe_ext(filename, role, default_ext)
                name = output_name(job.type, job.payload, role, ext, job.private_payload)
                wanted[field] = _Written(field, role, os.path.join(directory, name), name)

        def copy():
            for w in wanted.values():
                os.makedirs(os.path.dirname(w.path), exist_ok=True)
            sinks = {}

            def open_file(name, filename):
                w = wanted.get(name)
                if w is None or name in sinks:
                    return None
                sinks[name] = tempfile.NamedTemporaryFile(dir=os.path.dirname(w.path),
                                                          prefix=PARTIAL_UPLOAD_PREFIX, delete=False)
                return sinks[name]
            try:
                request.content.seek(0)
                parse_multipart(request.content, _content_type(request), open_file)
                for sink in sinks.values():
                    sink.close()
                _point_playlist_at_video(sinks, wanted)
                for name, sink in sinks.items():
                    wanted[name].size = os.path.getsize(sink.name)
                    os.replace(sink.name, wanted[name].path)
            except BaseException:
                for sink in sinks.values():
                    sink.close()
                    _unlink(sink.name)
                raise
            return list(wanted.values())
        try:
            return await threads.deferToThread(copy)
        except MultipartError as e:
            raise bad_request(f"bad multipart body: {e}")

    # -- input files --

    _FILES = PREFIX + "/jobs/<string:job_uuid>/files/videos/<string:video_id>"

    @app.route(_FILES + "/max-quality", methods=["POST"])
    @_problems
    async def max_quality(self, request, job_uuid, video_id):
        return await self._serve_input(request, job_uuid, video_id, "max-quality")

    @app.route(_FILES + "/max-quality/audio", methods=["POST"])
    @_problems
    async def max_quality_audio(self, request, job_uuid, video_id):
        return await self._serve_input(request, job_uuid, video_id, "max-quality-audio")

    @app.route(_FILES + "/previews/max-quality", methods=["POST"])
    @_problems
    async def preview(self, request, job_uuid, video_id):
        return await self._serve_input(request, job_uuid, video_id, "preview")

    @app.route(_FILES + "/studio/task-files/<string:filename>", methods=["POST"])
    @_problems
    async def studio_task_file(self, request, job_uuid, video_id, filename):
        return await self._serve_input(request, job_uuid, video_id, "task-files", filename)

    async def _input_path(self, job, key, filename=None):
        inputs = job.private_payload.get("inputs") or {}
        if key == "task-files":
            path = (inputs.get("task-files") or {}).get(filename)
        else:
            path = inputs.get(key)
        if isinstance(path, dict):  # another job's output: {"job": uuid, "file": role}
            source = await self.store.get_job(str(path.get("job")))
            result = (source.private_payload.get("result") or {}) if source else {}
            path = (result.get("files") or {}).get(path.get("file"))
        if path is None and key == "max-quality" and job.media_id is not None:
            media = await self.store.get_media(job.media_id)
            path = media.path if media is not None else None
        if not isinstance(path, str) or not path:
            return None
        return path if os.path.isabs(path) else os.path.join(self.files_dir, path)

    async def _serve_input(self, request, job_uuid, video_id, key, filename=None):
        body = _json_body(request)
        _, job = await self._processing_job(request, body, job_uuid)
        if video_id != str(job.media_id or job.uuid):
            raise JobError("unknown_video", 404, f"video {video_id} is not the job's video")
        what = key if filename is None else f"task file {filename}"
        path = await self._input_path(job, key, filename)
        if path is None:
            raise file_not_found(what)
        try:
            f = open(path, "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise file_not_found(what)
        sender, channel = _FileSender(), request.channel
        try:
            size = os.fstat(f.fileno()).st_size
            ctype = mimetypes.guess_type(path)[0] or "application/octet-stream"
            request.setResponseCode(200)
            request.setHeader(b"content-type", ctype.encode())
            request.setHeader(b"content-length", str(size).encode())
            await sender.beginFileTransfer(f, request)
        except Exception as e:
            # The runner went away: mid-file, or before the first byte (its connection
            # stopped the sender, or Klein cancelled us). Anything else before the first
            # byte is ours to answer.
            if not (request.startedWriting or sender.stopped
                    or isinstance(e, defer.CancelledError)):
                raise
            # nothing more to say to it; and the channel must stop pulling the sender (the
            # file is closed below), also when the request has lost its channel already
            if request.producer is not None:
                channel.unregisterProducer()
                request.producer = None
        finally:
            f.close()
        return None


class _FileSender(FileSender):
    """A FileSender that remembers being stopped (by a connection going away): its Deferred
    fails with a bare Exception, before it forgets it."""

    stopped = False

    def stopProducing(self):
        self.stopped = True
        super().stopProducing()


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class _Root(resource.Resource):
    """/socket.io/ goes to the hub, /api/v1/media to the media API, the admin's requests
    under /api/v1/runners to the admin API; every other path to the runner API's Klein app.
    Klein apps see the path whole."""

    def __init__(self, app_resource, socketio_resource, media_resource=None,
                 admin_resource=None):
        super().__init__()
        self._app = app_resource
        self._socketio = socketio_resource
        self._media = media_resource
        self._admin = admin_resource

    def getChildWithDefault(self, name, request):
        if name == b"socket.io":
            return self._socketio
        request.postpath.insert(0, request.prepath.pop())
        unroutable = _unroutable(request)
        if unroutable is not None:
            return _Refusal(bad_request(unroutable))
        if self._media is not None and request.postpath[:3] == [b"api", b"v1", b"media"]:
            return self._media
        if self._admin is not None:
            from .admin_api import is_admin_route  # here: admin_api imports this module
            if is_admin_route(request.method, request.postpath):
                return self._admin
        return self._app

    def render(self, request):
        unroutable = _unroutable(request)
        if unroutable is not None:
            return _problem(request, bad_request(unroutable))
        return self._app.render(request)


def _unroutable(request) -> str | None:
    """Why Klein cannot route ``request``, or None. Klein logs a traceback for a path or a
    Host that is not UTF-8, and werkzeug raises (a 500) for a host name IDNA cannot encode
    (a label over 63 characters, an empty one): a client's junk, answered as a 400 here."""
    host = request.getRequestHostname()
    port = getattr(request.getHost(), "port", 0)
    if port and (request.isSecure(), port) not in ((True, 443), (False, 80)):
        host += b":%d" % port  # as Klein gives it to werkzeug
    try:
        b"/".join(request.prepath + request.postpath).decode("utf-8")
    except UnicodeDecodeError:
        return "the path is not UTF-8"
    try:
        host.decode("utf-8").lower().encode("idna")
    except UnicodeError:
        return "the Host header is not a host name"
    return None


class _Refusal(resource.Resource):
    isLeaf = True

    def __init__(self, error: JobError):
        super().__init__()
        self.error = error

    def render(self, request):
        return _problem(request, self.error)
