"""Publishing for the tests: a recorded session's files, a webhook sink, and
``PublishingCase``: a RunnerService on 127.0.0.1 with a runner played by hand over HTTP."""
import json
import os

import numpy as np
import soundfile
from twisted.internet import defer, reactor, task
from twisted.trial import unittest
from twisted.web import resource, server

from choir_twisted.runners.service import RunnerService

from .http import loopback_agent, multipart, request
from .media_files import ffmpeg
from .paths import temp_dir

R = "/api/v1/runners"
M = "/api/v1/media"


def bearer(token) -> dict:
    return {"Authorization": f"Bearer {token}"}


def make_session(sessions_dir, session_id="20261121-140300-1", seconds=3.0):
    """A recorded session's folder (a mix, one singer's track, session.json); -> its path."""
    directory = os.path.join(sessions_dir, session_id)
    os.makedirs(directory)
    t = np.arange(int(44100 * seconds)) / 44100
    soundfile.write(os.path.join(directory, "mix.flac"),
                    (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 44100)
    soundfile.write(os.path.join(directory, "singer-001-ann-alto.flac"),
                    np.zeros(len(t), np.float32), 44100)
    summary = {"id": session_id, "started": "2026-11-21T14:03:00+00:00",
               "ended": "2026-11-21T14:03:03+00:00", "state": "ended", "tracks": "ready",
               "mix_chunks": int(seconds * 44100 / 512),
               "singers": [{"name": "ann", "group": "alto"}],
               "files": ["mix.flac", "singer-001-ann-alto.flac"]}
    with open(os.path.join(directory, "session.json"), "w") as f:
        json.dump(summary, f)
    return directory


async def until_value(get, good, deadline=30.0):
    """Poll ``await get()`` every 50 ms until ``good`` of it; -> that value."""
    value = None

    async def check():
        nonlocal value
        value = await get()
        return good(value)
    start = reactor.seconds()
    while not await check():
        if reactor.seconds() - start > deadline:
            raise AssertionError(f"timed out; last value {value!r}")
        await task.deferLater(reactor, 0.05, lambda: None)
    return value


async def until_media(store):
    """The first media the store lists, once there is one."""
    media = await until_value(store.list_media, bool)
    return media[0]


class WebhookSink(resource.Resource):
    """Keeps the JSON bodies POSTed to it and answers ``code``."""

    isLeaf = True

    def __init__(self, code=200):
        super().__init__()
        self.code = code
        self.bodies = []

    def render_POST(self, request):
        self.bodies.append(json.loads(request.content.read()))
        request.setResponseCode(self.code)
        return b"ok"


class PublishingCase(unittest.TestCase):
    """A RunnerService on 127.0.0.1 with a webhook sink, and a runner played by hand."""

    timeout = 120

    async def start(self, webhook_code=200, max_upload_bytes=50 * 1024 ** 2, **publishing):
        self.data_dir = temp_dir(self)
        self.sessions = os.path.join(self.data_dir, "sessions")
        os.makedirs(self.sessions)
        self.sink = WebhookSink(webhook_code)
        sink_port = reactor.listenTCP(0, server.Site(self.sink), interface="127.0.0.1")
        self.addCleanup(sink_port.stopListening)
        publishing.setdefault("webhook", f"http://127.0.0.1:{sink_port.getHost().port}/hook")
        publishing.setdefault("retry_delays", (0.05, 0.05))
        self.service = RunnerService(reactor, "tcp:0:interface=127.0.0.1", self.data_dir,
                                     publishing=publishing, max_upload_bytes=max_upload_bytes)

    async def run_service(self):
        await defer.ensureDeferred(self.service.startService())
        self.addCleanup(self.service.stopService)
        self.store = self.service.store
        self.base = f"http://127.0.0.1:{self.service.port.getHost().port}"
        self.agent = loopback_agent()

    async def http(self, method, path, body=None, *, raw=None, content_type="application/json",
                   headers=None):
        if raw is None and body is not None:
            raw = json.dumps(body).encode()
        url = path if path.startswith(("http://", "https://")) else self.base + path
        return await request(self.agent, method, url, raw, content_type, headers)

    async def register(self):
        reg = await self.store.create_registration_token()
        a = await self.http("POST", R + "/register", {"registrationToken": reg.token,
                                                      "name": "test-runner"})
        return a.json["runnerToken"]

    async def accept(self, token, job):
        a = await self.http("POST", f"{R}/jobs/{job.uuid}/accept", {"runnerToken": token})
        self.assertEqual(a.code, 200, a.body)
        return a.json["job"]

    async def fetch(self, token, job_token, url):
        return await self.http("POST", url, {"runnerToken": token, "jobToken": job_token})

    async def succeed(self, token, wire, files):
        body, ctype = multipart([("runnerToken", token), ("jobToken", wire["jobToken"])], files)
        a = await self.http("POST", f"{R}/jobs/{wire['uuid']}/success", raw=body,
                            content_type=ctype)
        self.assertEqual(a.code, 204, a.body)

    async def api_token(self):
        return (await self.store.create_api_token("tests")).token

    async def serving(self, **start):
        """The service started (``start``: as for start()); -> an API token."""
        await self.start(**start)
        await self.run_service()
        return await self.api_token()

    async def upload(self, data, filename, token, **fields):
        body, ctype = multipart(list(fields.items()), [("file", filename, data)])
        return await self.http("POST", M, raw=body, content_type=ctype, headers=bearer(token))

    def leftovers(self):
        return [os.path.join(d, f) for d, _, fs in os.walk(self.data_dir) for f in fs
                if os.sep + "media" + os.sep in d or os.sep + "uploads" in d]

    def generated(self, name, *ffmpeg_args) -> str:
        """A file made by ffmpeg (its arguments before the output) in a temporary place."""
        work = temp_dir(self)
        path = os.path.join(work, name)
        ffmpeg(*ffmpeg_args, path)
        return path
