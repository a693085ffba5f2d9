"""choir-runner's HTTP calls: PeerTube's remote-runner API (/api/v1/runners), on treq.

Every call is a POST with the tokens in the body. A refusal raises ServerProblem carrying
the problem+json ``code`` (the runner acts on some codes); a server that cannot be reached
raises Unreachable. Files stream both ways: a download goes to disk as it arrives (and is
refused beyond ``max_download`` bytes), an upload is read from disk by treq's multipart
producer, so memory stays small whatever the file size.
"""
import json
from urllib.parse import urljoin, urlsplit, urlunsplit

import treq
from treq.client import HTTPClient
from twisted.internet import defer, task
from twisted.internet.protocol import Protocol
from twisted.web import client

from ..cli import plain_reason

API = "/api/v1/runners"
CALL_TIMEOUT = 60.0  # seconds for a JSON call; file transfers have none (they may be long)
DEFAULT_MAX_DOWNLOAD = 16 * 1024 ** 3
MAX_REDIRECTS = 5
REDIRECTS = {301, 302, 303, 307, 308}


class ServerProblem(Exception):
    """The server refused a call (an HTTP error status, with problem+json when it has it).

    ``from_api``: the answer was JSON, as a runner API's (PeerTube's, ours) always is; an
    HTML 404 or a JSON call answered with something else comes from no runner API at all
    (a wrong path or port in the URL)."""

    def __init__(self, status: int, code: str | None, detail: str, from_api: bool = True):
        super().__init__(f"{detail} ({status}{', ' + code if code else ''})")
        self.status, self.code, self.detail = status, code, detail
        self.from_api = from_api


class Unreachable(Exception):
    """No HTTP answer at all (refused, unknown host, timeout, connection lost)."""


class TooLarge(Exception):
    pass


def file_url(server_url: str, url: str) -> str:
    """A payload's file URL: absolute in PeerTube's payloads, a path in ours (resolved
    against the server's URL); the query string is dropped, as PeerTube's runner does."""
    parts = urlsplit(urljoin(server_url.rstrip("/") + "/", url))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


async def _problem(response) -> ServerProblem:
    body = await response.content()
    try:
        problem = json.loads(body)
    except ValueError:
        problem = None
    if isinstance(problem, dict):
        detail = problem.get("detail") or problem.get("title") or problem.get("error")
        return ServerProblem(response.code, problem.get("code"), str(detail or response.phrase))
    text = body.decode("utf-8", "replace").strip()[:200]
    return ServerProblem(response.code, None, text or response.phrase.decode("latin-1"),
                         from_api=False)


class RunnerHTTP:
    """The calls of one runner to one server (``runner_token`` None before registering)."""

    def __init__(self, reactor, url: str, runner_token: str | None = None,
                 max_download: int = DEFAULT_MAX_DOWNLOAD):
        self.reactor = reactor
        self.url = url.rstrip("/")
        self.runner_token = runner_token
        self.max_download = max_download
        self.pool = client.HTTPConnectionPool(reactor, persistent=True)
        self.http = HTTPClient(client.Agent(reactor, pool=self.pool))

    async def close(self):
        # a connection whose answer was just read goes back to the pool a moment after the
        # caller saw the answer: let it land, then close them all
        await task.deferLater(self.reactor, 0, lambda: None)
        await self.pool.closeCachedConnections()

    async def _post(self, url, **kw):
        """POST, following redirects with the same body (PeerTube's files may redirect to
        object storage); -> the response of a 2xx, else raises."""
        for _ in range(MAX_REDIRECTS + 1):
            try:
                response = await self.http.post(url, allow_redirects=False, **kw)
            except defer.CancelledError:
                raise Unreachable(f"{self.url}: no answer") from None
            except Exception as e:
                if isinstance(e, (ServerProblem, Unreachable)):
                    raise
                raise Unreachable(f"{self.url}: {plain_reason(e)}") from None
            location = response.headers.getRawHeaders(b"location", [None])[0]
            if response.code in REDIRECTS and location:
                await response.content()
                url = urljoin(url, location.decode("latin-1"))
                continue
            if 200 <= response.code < 300:
                return response
            raise await _problem(response)
        raise Unreachable(f"{self.url}: more than {MAX_REDIRECTS} redirects")

    async def _call(self, path: str, body: dict, **fields):
        """A JSON call; -> the decoded answer (None for 204)."""
        response = await self._post(self.url + API + path, json={**body, **fields},
                                    timeout=CALL_TIMEOUT)
        data = await response.content()
        try:
            return json.loads(data) if data else None
        except ValueError:
            raise ServerProblem(response.code, None, "the answer is not JSON",
                                from_api=False) from None

    def _tokens(self, job_token=None) -> dict:
        return {"runnerToken": self.runner_token,
                **({"jobToken": job_token} if job_token else {})}

    # -- registration --

    async def register(self, registration_token, name, description=None, version=None):
        body = {"registrationToken": registration_token, "name": name}
        if description:
            body["description"] = description
        if version:
            body["version"] = version
        return await self._call("/register", body)

    async def unregister(self):
        await self._call("/unregister", self._tokens())

    # -- jobs --

    async def request_jobs(self, job_types=None) -> list:
        body = self._tokens()
        if job_types:
            body["jobTypes"] = list(job_types)
        return (await self._call("/jobs/request", body))["availableJobs"]

    async def accept(self, uuid) -> dict:
        return (await self._call(f"/jobs/{uuid}/accept", self._tokens()))["job"]

    async def update(self, uuid, job_token, progress=None):
        extra = {} if progress is None else {"progress": int(progress)}
        await self._call(f"/jobs/{uuid}/update", self._tokens(job_token), **extra)

    async def error(self, uuid, job_token, message):
        await self._call(f"/jobs/{uuid}/error", self._tokens(job_token), message=message)

    async def abort(self, uuid, job_token, reason):
        await self._call(f"/jobs/{uuid}/abort", self._tokens(job_token), reason=reason)

    async def success(self, uuid, job_token, files: dict, fields: dict | None = None):
        """``files``: {field name: path}, e.g. {"payload[videoFile]": "/tmp/out.mp4"}."""
        opened = {}
        try:
            for field, path in files.items():
                opened[field] = open(path, "rb")
            await self._post(
                self.url + API + f"/jobs/{uuid}/success",
                data={**self._tokens(job_token), **(fields or {})},
                files={field: (f.name.rsplit("/", 1)[-1], "application/octet-stream", f)
                       for field, f in opened.items()})
        finally:
            for f in opened.values():
                f.close()

    async def download(self, url: str, job_token: str, path: str) -> int:
        """The input file at ``url`` into ``path``; -> its size in bytes."""
        response = await self._post(file_url(self.url, url), json=self._tokens(job_token),
                                    unbuffered=True)
        if response.length is not client.UNKNOWN_LENGTH and response.length > self.max_download:
            response.original.deliverBody(_Discard())
            raise TooLarge(f"input file of {response.length} bytes is over the limit of "
                           f"{self.max_download} bytes")
        size = 0
        with open(path, "wb") as out:
            def write(data):
                nonlocal size
                size += len(data)
                if size > self.max_download:
                    raise TooLarge(f"input file over the limit of {self.max_download} bytes")
                out.write(data)
            await treq.collect(response, write)
        return size


class _Discard(Protocol):
    """Drops a refused body's connection rather than reading gigabytes of it."""

    def connectionMade(self):
        self.transport.stopProducing()
