"""Who may send a big body, decided before a byte of it is stored; and how many at once.

twisted.web reads a request's whole body into ``request.content`` (a temporary file past
100 kB) before any resource sees the request, so a route that checks its token has already
let an anonymous client fill the disk. ``LimitedRequest`` (the request class of
``RunnerAPI.site()``) decides as the body arrives instead:

* Every body has a size limit: ``max_body`` (``--max-upload``) on the upload routes, 1 MiB
  elsewhere; a Content-Length above it is refused in ``gotLength`` and the body dropped
  unread; a chunked body is dropped as it crosses the limit (the route answers 413).
* ``POST /api/v1/media`` and ``POST /api/v1/media/{id}/studio/edit`` carry an API or
  operator token in ``Authorization: Bearer``: it is checked once the headers are in, with
  the connection paused (nothing read meanwhile but what one read already brought, held in
  memory). ``Expect: 100-continue`` is answered only once the token is good, so a client
  that asks first sends no body at all to be refused.
* ``POST /api/v1/runners/jobs/{uuid}/success|update`` carry the runner and job tokens as
  form fields before the files (PeerTube's runner and ours send them first): the start of
  the body is held in memory (``MAX_HELD_BYTES`` at most) until both fields are whole, then
  checked like the route would (a valid runner holding that processing job). A body of at
  most 1 MiB with a known length is left to the route: it is bounded already.
* At most ``MAX_UPLOADS_PER_TOKEN`` big bodies (chunked or over 1 MiB) per token at once;
  one more is a 429 ``too_many_uploads``.

A refused request is answered at once with its problem (the code the route would give)
and ``Connection: close``, our side of the connection is shut, and what the client still
sends is read and dropped, ``LINGER_BYTES`` at most, before the connection is cut: a
client still sending reads the answer rather than a reset, and nothing is stored. The route
checks the tokens again when the body is in (the job may have changed meanwhile).
"""
import collections
import enum
import io
import json
import re
from urllib.parse import unquote

from twisted.internet import defer
from twisted.internet.interfaces import ITCPTransport
from twisted.logger import Logger
from twisted.web import http, server

from choir_protocol.runners.jobs import JobError

from .answers import (MAX_JSON_BYTES, bad_request, bearer_token, content_type, is_multipart,
                      too_large)
from .multipart import MultipartError, leading_fields, multipart_boundary

log = Logger()

DEFAULT_MAX_UPLOAD_BYTES = 8 * 1024 ** 3  # 8 GiB
SMALL_BODY = MAX_JSON_BYTES  # a runner's body this small, of known length, is left to the route
MAX_UPLOADS_PER_TOKEN = 4
MAX_HELD_BYTES = 256 * 1024  # the start of a runner's body, held until its tokens are checked
LINGER_BYTES = 1024 ** 2  # read and dropped after a refusal before the connection is cut

_PHRASES = {429: b"Too Many Requests"}  # not in twisted.web.http.RESPONSES
_RUNNER_UPLOAD = re.compile(rb"/api/v1/runners/jobs/([^/]+)/(?:success|update)")
_MEDIA_UPLOAD = re.compile(rb"/api/v1/media/?|/api/v1/media/[^/]+/studio/edit")


def unauthorized() -> JobError:
    return JobError("unauthorized", 401, "a valid API token is required "
                                         "(Authorization: Bearer TOKEN; choir-admin api-tokens create)")


def too_many_uploads(limit: int) -> JobError:
    return JobError("too_many_uploads", 429, f"this token has {limit} uploads under way "
                                             f"already; send the next when one has ended")


async def opens_media_api(store, token) -> bool:
    """An API token, or an operator's (which opens everything an API token does)."""
    if await store.api_token_valid(token):
        return True
    operator = await store.operator_by_token(token)
    return operator is not None and not operator.revoked


def upload_route(method: bytes, path: bytes):
    """-> ("media", None), ("runner", job uuid) or (None, None) for what is no upload."""
    path = path.split(b"?")[0]
    if method == b"POST":
        m = _RUNNER_UPLOAD.fullmatch(path)
        if m:
            return "runner", unquote(m.group(1).decode("latin-1"))
        if _MEDIA_UPLOAD.fullmatch(path):
            return "media", None
    return None, None


class UploadGate:
    """The checks ``LimitedRequest`` makes, and the count of uploads under way per token.

    ``check_runner(job uuid, fields, ip)`` -> the runner's token, or raises the route's
    JobError."""

    def __init__(self, store, check_runner, max_per_token: int = MAX_UPLOADS_PER_TOKEN):
        self.store = store
        self.check_runner = check_runner
        self.max_per_token = max_per_token
        self.active = collections.Counter()  # token -> big bodies under way

    async def media(self, token) -> str:
        if token is None or not await opens_media_api(self.store, token):
            raise unauthorized()
        return token

    async def runner(self, uuid, fields, ip) -> str:
        return await self.check_runner(uuid, fields, ip)

    def take(self, token) -> bool:
        if self.active[token] >= self.max_per_token:
            return False
        self.active[token] += 1
        return True

    def give_back(self, token):
        self.active[token] -= 1
        if self.active[token] <= 0:
            del self.active[token]


class Stage(enum.Enum):
    """Where a request's body is, as it arrives."""

    OPEN = "stored as it comes (checked, or nothing to check)"
    FIELDS = "held until the runner's tokens are whole"
    CHECKING = "held, the connection paused, while the tokens are checked"
    REFUSED = "answered; what still comes is dropped"


OPEN, FIELDS, CHECKING, REFUSED = Stage


class LimitedRequest(server.Request):
    """A request that stores no more than ``max_body`` bytes of body, and none of an upload
    whose tokens are not good (see the module doc). ``body_too_large`` tells the route to
    answer 413."""

    max_body = DEFAULT_MAX_UPLOAD_BYTES
    gate = None  # an UploadGate; None: sizes only

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self._parsePOSTFormSubmission = False  # we parse multipart ourselves, streaming
        self.body_too_large = False
        self._received = 0
        self._stage = OPEN
        self._held = bytearray()
        self._length = None
        self._counted = False  # a big body: it takes one of its token's places
        self._continue = False  # "100 Continue" is ours to send, once the token is good
        self._body_done = None  # requestReceived's arguments, if the body ends mid-check
        self._dropped = 0
        self._boundary = self._job_uuid = None  # of a runner's upload

    # -- the channel's calls --

    def gotLength(self, length):
        # The path is not parsed yet (twisted.web reads the body first): the channel has it.
        method = getattr(self.channel, "_command", b"")
        path = getattr(self.channel, "_path", b"") or b""
        kind, uuid = upload_route(method, path)
        if kind is None and not _is_upload_path(path):
            self.max_body = min(self.max_body, MAX_JSON_BYTES)
        multipart = is_multipart(self)
        if kind == "runner" and not multipart:
            self.max_body = min(self.max_body, MAX_JSON_BYTES)  # a JSON update or success
        if length is not None and length > self.max_body:
            self.body_too_large = True
            self.content = io.BytesIO()  # nothing will be written to it
            return
        small = length is not None and length <= SMALL_BODY
        if self.gate is None or kind is None or (kind == "runner" and (small or not multipart)):
            super().gotLength(length)
            return
        self._length, self._counted = length, not small
        self.content = io.BytesIO()  # the real one once the tokens are good
        if kind == "media":
            expect = self.requestHeaders.getRawHeaders(b"expect") or [b""]
            if expect[0].lower() == b"100-continue":
                self.requestHeaders.removeHeader(b"expect")  # the channel must not send it
                self._continue = getattr(self.channel, "_version", b"") == b"HTTP/1.1"
            self._check(self.gate.media(bearer_token(self)))
            return
        try:
            self._boundary = multipart_boundary(content_type(self))
        except MultipartError as e:
            self._refuse(bad_request(f"bad multipart body: {e}"))
            return
        self._job_uuid = uuid
        self._stage = FIELDS

    def handleContentChunk(self, data):
        if self._stage is REFUSED:
            self._dropped += len(data)
            if self._dropped > LINGER_BYTES and self.channel is not None:
                self.channel.transport.abortConnection()
            return
        if self.body_too_large:
            return
        self._received += len(data)
        if self._received > self.max_body:  # a chunked body crossing the limit
            if self._stage is not OPEN:
                self._refuse(too_large(self.max_body))
                return
            self.body_too_large = True
            self.content.close()
            self.content = io.BytesIO()
            return
        if self._stage is OPEN:
            super().handleContentChunk(data)
            return
        self._held += data
        if len(self._held) > MAX_HELD_BYTES:  # (paused while checking: only a runner's form)
            self._refuse(bad_request(f"the runnerToken and jobToken fields must come first, "
                                     f"within {MAX_HELD_BYTES} bytes of the body"))
        elif self._stage is FIELDS:
            self._look_for_tokens()

    def requestReceived(self, command, path, version):
        if self._stage is REFUSED:
            if self.channel is not None:  # all read: a clean close, our answer is out
                self.channel.transport.loseConnection()
            return
        if self._stage is FIELDS:  # the body ended, and never became a form
            self._refuse(bad_request("bad multipart body: unterminated, before any "
                                     "runnerToken and jobToken fields"))
            self.requestReceived(command, path, version)
            return
        if self._stage is CHECKING:
            self._body_done = (command, path, version)
            return
        super().requestReceived(command, path, version)

    # -- the checks --

    def _look_for_tokens(self):
        try:
            fields, complete = leading_fields(bytes(self._held), self._boundary)
        except MultipartError as e:
            self._refuse(bad_request(f"bad multipart body: {e}"))
            return
        if "runnerToken" in fields and "jobToken" in fields:
            self._check(self.gate.runner(self._job_uuid, fields,
                                         getattr(self.getClientAddress(), "host", None)))
        elif complete:
            missing = "runnerToken" if "runnerToken" not in fields else "jobToken"
            self._refuse(bad_request(f"missing field {missing} (the tokens come before "
                                     f"the files)"))

    def _check(self, checking):
        self._stage = CHECKING
        self.channel.transport.pauseProducing()
        d = defer.ensureDeferred(checking)
        d.addCallbacks(self._admit, self._refused)
        d.addErrback(lambda f: log.failure("Upload check of {path}", f, path=self._path()))

    def _refused(self, failure):
        if failure.check(JobError):
            self._refuse(failure.value)
        else:
            log.failure("Upload check of {path} failed", failure, path=self._path())
            self._refuse(JobError("internal_error", 500, "internal server error"))

    def _admit(self, token):
        if self.channel is None or self._stage is not CHECKING:
            return  # the client hung up meanwhile
        if self._counted:
            if not self.gate.take(token):
                self._refuse(too_many_uploads(self.gate.max_per_token))
                return
            self.notifyFinish().addBoth(lambda _: self.gate.give_back(token))
        transport = self.channel.transport
        held, self._held = bytes(self._held), bytearray()
        server.Request.gotLength(self, self._length)
        self._stage = OPEN
        if held:
            server.Request.handleContentChunk(self, held)
        if self._continue:
            transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        transport.resumeProducing()
        if self._body_done is not None:
            self.requestReceived(*self._body_done)

    def _refuse(self, error: JobError):
        """Answers ``error`` now, before the body is in, and closes our side."""
        if self._stage is REFUSED or self.channel is None:
            return
        self._stage = REFUSED
        self._held = bytearray()
        self.requestHeaders.removeHeader(b"expect")  # in gotLength still: no 100 Continue
        channel, transport = self.channel, self.channel.transport
        body = json.dumps(error.problem()).encode()
        phrase = http.RESPONSES.get(error.status) or _PHRASES.get(error.status, b"Error")
        head = [b"HTTP/1.1 %d %s" % (error.status, phrase),
                b"Content-Type: application/problem+json",
                b"Content-Length: %d" % len(body), b"Connection: close",
                b"Access-Control-Allow-Origin: *", b"X-Content-Type-Options: nosniff"]
        if error.status == 401 and error.code == "unauthorized":
            head.append(b'WWW-Authenticate: Bearer realm="choir"')
        transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        channel.persistent = False
        if ITCPTransport.providedBy(transport):
            transport.loseWriteConnection()  # the answer, then FIN: the client stops sending
        else:  # TLS: its own close
            transport.loseConnection()
        transport.resumeProducing()  # read (and drop) what is on its way: no reset
        log.info("Refused an upload to {path} from {peer} before storing it: {status} {code}",
                 path=self._path(), peer=getattr(self.getClientAddress(), "host", "?"),
                 status=error.status, code=error.code)

    def _path(self) -> str:
        path = getattr(self.channel, "_path", None) or getattr(self, "uri", b"") or b""
        return path.split(b"?")[0].decode("latin-1")


def _is_upload_path(path: bytes) -> bool:
    path = path.split(b"?")[0]
    return bool(_RUNNER_UPLOAD.fullmatch(path) or _MEDIA_UPLOAD.fullmatch(path))
