"""The media HTTP API (/api/v1/media), on Klein, beside the runner API on the same port.

    POST /api/v1/media              upload (multipart: file, name?, webhook?)    API token
    GET  /api/v1/media              list every media                             API token
    GET  /api/v1/media/{id}         one media: state, jobs, inputs, outputs      API token
    GET  /api/v1/media/{id}/files/{name}   download a file (Range requests work) API token
    GET  /api/v1/media/{id}/signed/{expires}/{sig}/files/{name}   the same      signed link
    POST /api/v1/media/{id}/studio/edit    a studio edit (PeerTube's form: tasks[i][name],
                                           tasks[i][options][start|end|file]; or JSON
                                           {"tasks": [...]} without files)    API token

API tokens (``choir-admin api-tokens create``), or an operator token (``choir-admin
operator-tokens create``), travel as ``Authorization: Bearer``. A media's id opens nothing
by itself: a recording's inputs are each singer's own track. The media's JSON, given to
whoever holds a token (and to the webhook), has signed links instead (``media_links``):
the signature is in the path, so an HLS player follows the playlists' relative links and
stays signed. A link opens the files of one media until it expires (``LINK_TTL``, a week);
a bad or expired one is a 403. Refusals are application/problem+json, as in the runner API;
an upload's token is checked before its body is stored (``upload_gate``).
"""
import os
import re
import tempfile

from klein import Klein
from twisted.internet import threads
from twisted.logger import Logger
from twisted.web import static

from choir_protocol.runners import publishing as P
from choir_protocol.runners import studio as S
from choir_protocol.runners.jobs import JobError
from choir_protocol.runners.signed_links import LinkError

from ..runners.answers import (bad_request, bearer_token, content_type, is_multipart, json_answer,
                               json_body, problems, too_large)
from ..runners.multipart import MultipartError, parse_multipart
from ..runners.results import PARTIAL_UPLOAD_PREFIX
from ..runners.upload_gate import opens_media_api, unauthorized
from .media_errors import not_media_reason
from .media_links import MediaLinks
from .studio import NotEditable, edit_media

log = Logger()

PREFIX = "/api/v1/media"
CONTENT_TYPES = {".m3u8": "application/vnd.apple.mpegurl", ".mp4": "video/mp4",
                 ".flac": "audio/flac", ".vtt": "text/vtt", ".png": "image/png"}
MAX_NAME = 200
MAX_RANGES = 4  # ranges per request served as asked; more and the whole file is sent once


def bad_link(error: LinkError) -> JobError:
    code = "link_expired" if error.reason == "expired" else "bad_link_signature"
    return JobError(code, 403, error.detail)


def unknown_media(media_id) -> JobError:
    return JobError("unknown_media", 404, f"no media {media_id}")


def _servable_ranges(leaf, ranges: bytes) -> bool:
    """Whether twisted's static.File answers this Range header without a 500: it decodes a
    malformed one to log it (a non-ASCII one raises), and fails on several ranges that all
    miss the file. Else the whole file is sent, as a server may (RFC 9110, 14.2)."""
    if not ranges.isascii():
        return False
    try:
        parsed = leaf._parseRangeHeader(ranges)
    except ValueError:
        return True  # malformed: static.File ignores it itself
    return len(parsed) == 1 or any(leaf._rangeToOffsetAndSize(start, end) != (0, 0)
                                   for start, end in parsed)


def _webhook(value):
    if value is None or value == "":
        return None
    if not re.fullmatch(r"https?://[^\s]{1,2000}", value):
        raise bad_request("webhook must be an http:// or https:// URL")
    return value


class MediaAPI:
    app = Klein()

    def __init__(self, store, publisher, files_dir, max_upload_bytes, links=None):
        self.store = store
        self.publisher = publisher
        self.files_dir = files_dir
        self.max_upload_bytes = max_upload_bytes
        # without the data directory's secret, links last as long as this process
        self.links = links or MediaLinks(os.urandom(32))

    def resource(self):
        return self.app.resource()

    def check_request(self, request):
        """``problems``' check, and the headers of every answer."""
        request.setHeader(b"access-control-allow-origin", b"*")
        request.setHeader(b"x-content-type-options", b"nosniff")  # a file is never a page
        if getattr(request, "body_too_large", False):
            raise too_large(getattr(request, "max_body", self.max_upload_bytes))

    async def _authorize(self, request):
        token = bearer_token(request)
        if token is None or not await self._valid(token):
            request.setHeader(b"www-authenticate", b'Bearer realm="choir"')
            raise unauthorized()

    async def _valid(self, token) -> bool:
        return await opens_media_api(self.store, token)

    async def _describe(self, media):
        """The media's JSON, its file URLs signed: only an authorized caller gets it."""
        return P.describe_media(media, await self.store.media_jobs(media.id),
                                await self.store.media_files(media.id),
                                file_link=self.links.segment(media.id))

    @app.route(PREFIX, methods=["POST"])
    @problems
    async def upload(self, request):
        await self._authorize(request)  # again: upload_gate checked it before the body
        if not is_multipart(request):
            raise bad_request("upload with multipart/form-data: a 'file' part, "
                              "optional 'name' and 'webhook' fields")
        uploads = os.path.join(self.files_dir, "uploads")
        os.makedirs(uploads, exist_ok=True)
        sink = {}

        def open_file(name, filename):
            if name != "file" or "file" in sink:
                return None
            ext = os.path.splitext(os.path.basename(filename or ""))[1][:11]
            sink["file"] = tempfile.NamedTemporaryFile(dir=uploads, prefix=PARTIAL_UPLOAD_PREFIX,
                                                       suffix=ext, delete=False)
            sink["filename"] = filename
            return sink["file"]

        def receive():
            request.content.seek(0)
            try:
                return parse_multipart(request.content, content_type(request), open_file)
            finally:
                if "file" in sink:
                    sink["file"].close()
        try:
            try:
                fields, _ = await threads.deferToThread(receive)
            except MultipartError as e:
                raise bad_request(f"bad multipart body: {e}")
            if "file" not in sink:
                raise bad_request("no 'file' part in the upload")
            default = os.path.splitext(os.path.basename(sink["filename"] or ""))[0] or "upload"
            name = (fields.get("name") or default).strip()[:MAX_NAME] or default
            try:
                media, jobs = await self.publisher.submit(
                    sink["file"].name, name, _webhook(fields.get("webhook")), move=True)
            except P.NotMedia as e:  # ffprobe's words name our temporary file: not shown
                reason = not_media_reason(e, sink["file"].name, what="the upload")
                raise JobError("not_media", 400, reason)
        finally:
            if "file" in sink and os.path.exists(sink["file"].name):
                os.unlink(sink["file"].name)
        return json_answer(request, await self._describe(media), 201)

    @app.route(PREFIX, methods=["GET"])
    @problems
    async def list_media(self, request):
        await self._authorize(request)
        media = await self.store.list_media()
        return json_answer(request, {"total": len(media),
                               "data": [await self._describe(m) for m in media]})

    @app.route(PREFIX + "/<string:media_id>", methods=["GET"])
    @problems
    async def show(self, request, media_id):
        await self._authorize(request)  # its JSON has signed links to every file
        media = await self.store.get_media(media_id)
        if media is None:
            raise unknown_media(media_id)
        return json_answer(request, await self._describe(media))

    @app.route(PREFIX + "/<string:media_id>/files/<path:name>", methods=["GET", "HEAD"])
    @problems
    async def download(self, request, media_id, name):
        await self._authorize(request)
        return await self._serve(request, media_id, name)

    @app.route(PREFIX + "/<string:media_id>/signed/<string:expires>/<string:sig>/files/"
                        "<path:name>", methods=["GET", "HEAD"])
    @problems
    async def signed_download(self, request, media_id, expires, sig, name):
        try:
            self.links.check(media_id, expires, sig)
        except LinkError as e:
            raise bad_link(e)
        return await self._serve(request, media_id, name)

    async def _serve(self, request, media_id, name):
        files = [f for f in await self.store.media_files(media_id) if f.name == name]
        if not files or not os.path.isfile(files[-1].path):
            if await self.store.get_media(media_id) is None:
                raise unknown_media(media_id)
            raise JobError("file_not_found", 404, f"media {media_id} has no file {name}")
        leaf = static.File(files[-1].path, defaultType="application/octet-stream")
        ranges = request.getHeader(b"range")
        if ranges is not None and (ranges.count(b",") >= MAX_RANGES
                                   or not _servable_ranges(leaf, ranges)):
            # 100 x "bytes=0-" in 400 bytes asked for 100 copies: players ask for one range
            request.requestHeaders.removeHeader(b"range")
        leaf.contentTypes = {**leaf.contentTypes, **CONTENT_TYPES}
        leaf.isLeaf = True
        return leaf  # static.File streams it, with HEAD and Range

    @app.route(PREFIX + "/<string:media_id>/studio/edit", methods=["POST"])
    @problems
    async def studio_edit(self, request, media_id):
        await self._authorize(request)
        media = await self.store.get_media(media_id)
        if media is None:
            raise unknown_media(media_id)
        uploads = {}
        try:
            if is_multipart(request):
                fields = await self._receive_task_files(request, uploads)
                raw = S.tasks_from_form(fields, uploads)
            else:
                raw = json_body(request).get("tasks")
            await edit_media(self.store, self.files_dir, media, raw, uploads, move=True)
        except S.StudioError as e:
            raise JobError("bad_studio_edit", 400,
                           not_media_reason(e, *(path for path, _ in uploads.values()),
                                            what="the uploaded file"))
        except NotEditable as e:
            raise JobError("media_not_editable", 409, str(e))
        finally:
            for path, _ in uploads.values():
                if os.path.exists(path):
                    os.unlink(path)
        self.publisher.hub.notify_available_jobs()
        return json_answer(request, await self._describe(media), 201)

    async def _receive_task_files(self, request, uploads) -> dict:
        """The form's fields; its file parts into ``uploads`` {field: (temp path, filename)}."""
        spool = os.path.join(self.files_dir, "uploads")
        os.makedirs(spool, exist_ok=True)
        sinks = {}

        def open_file(name, filename):
            if name in sinks or len(sinks) >= S.MAX_TASKS:
                return None
            sinks[name] = tempfile.NamedTemporaryFile(dir=spool, prefix=PARTIAL_UPLOAD_PREFIX,
                                                      delete=False)
            uploads[name] = (sinks[name].name, filename)
            return sinks[name]

        def receive():
            request.content.seek(0)
            try:
                return parse_multipart(request.content, content_type(request), open_file)[0]
            finally:
                for sink in sinks.values():
                    sink.close()
        try:
            return await threads.deferToThread(receive)
        except MultipartError as e:
            raise bad_request(f"bad multipart body: {e}")
