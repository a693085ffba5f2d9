"""What the HTTP APIs of the runner port (runners, admin, media) share: reading a request's
body, and answering, refusals as application/problem+json (``JobError.problem()``) through
the one ``problems`` decorator of their routes."""
import functools
import json

from twisted.internet import defer
from twisted.logger import Logger

from choir_protocol.runners.jobs import JobError
from choir_protocol.text import is_text

log = Logger()

MAX_JSON_BYTES = 1024 ** 2  # every body but an upload


def bad_request(detail: str) -> JobError:
    return JobError("bad_request", 400, detail)


def too_large(limit: int) -> JobError:
    return JobError("payload_too_large", 413, f"request body larger than {limit} bytes")


# -- answers ---------------------------------------------------------------------------------

def problem(request, error: JobError) -> bytes:
    request.setResponseCode(error.status)
    request.setHeader(b"content-type", b"application/problem+json")
    return json.dumps(error.problem()).encode()


def json_answer(request, body, code=200) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json; charset=utf-8")
    return json.dumps(body).encode()


def no_content(request):
    request.setResponseCode(204)
    return None


def problems(fn):
    """A route's failures as problems: a JobError as itself, anything else as a 500 (logged).
    The API's ``check_request(request)`` runs first (its body limits, its headers)."""
    @functools.wraps(fn)
    async def wrapper(self, request, *args, **kw):
        try:
            self.check_request(request)
            return await fn(self, request, *args, **kw)
        except JobError as e:
            return None if request.startedWriting else problem(request, e)
        except Exception as e:
            if isinstance(e, defer.CancelledError) and getattr(request, "_disconnected", False):
                return None  # the client hung up and Klein cancelled us: nobody to answer
            log.failure("{api} {path} failed", api=type(self).__name__, path=request.path)
            if request.startedWriting:
                return None
            return problem(request, JobError("internal_error", 500, "internal server error"))
    return wrapper


# -- reading a request -----------------------------------------------------------------------

def content_type(request) -> str:
    return (request.getHeader(b"content-type") or b"").decode("latin-1")


def is_multipart(request) -> bool:
    return content_type(request).split(";")[0].strip().lower() == "multipart/form-data"


def header(request, name: bytes) -> str | None:
    value = request.getHeader(name)
    return value.decode("latin-1") if isinstance(value, bytes) else value


def bearer_token(request) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header, or None."""
    scheme, _, token = (header(request, b"authorization") or "").strip().partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


def client_ip(request):
    return getattr(request.getClientAddress(), "host", None)


def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")


def json_body(request) -> dict:
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


def string_field(body: dict, name: str, required: bool = True, max_len: int = 10000):
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
