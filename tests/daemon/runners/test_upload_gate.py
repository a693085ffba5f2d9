"""Uploads are authenticated before their body is stored (choir_twisted.runners.upload_gate).

Real TCP on 127.0.0.1 against a RunnerService. The site's request class is wrapped to
record how many bytes of body each request stored (``request.content``, where twisted.web
spools a body, a temporary file past 100 kB): a refused upload stores none of its body."""
import io
import os
import socket

import pytest
from twisted.internet import threads
from twisted.web import client
from twisted.web.http_headers import Headers

from choir_protocol.runners import jobs as J
from choir_protocol.runners.jobs import JobType
from choir_twisted.runners.multipart import MultipartError, leading_fields
from choir_twisted.runners.upload_gate import MAX_UPLOADS_PER_TOKEN

from ...support.daemon_process import until
from ...support.http import Answer
from ...support.publishing import PublishingCase, bearer

R = "/api/v1/runners"
M = "/api/v1/media"
MB = 1024 ** 2
BIG = 50 * MB


class CountedZeros(io.RawIOBase):
    """A body of ``size`` bytes made as it is read (a multipart ``head`` first, then zeros);
    ``sent`` says how much the client has read of it so far."""

    def __init__(self, size, head=b""):
        self.size, self.head, self.sent = size, head, 0

    def readable(self):
        return True

    def seekable(self):
        return True  # for FileBodyProducer to find the length

    def seek(self, offset, whence=os.SEEK_SET):
        self.sent = self.size + offset if whence == os.SEEK_END else offset
        return self.sent

    def tell(self):
        return self.sent

    def read(self, n=-1):
        n = self.size - self.sent if n < 0 else min(n, self.size - self.sent)
        start = self.head[self.sent:self.sent + n]
        data = start + b"\0" * (n - len(start))
        self.sent += n
        return data


class ChunkedZeros:
    """The same body with no length known: the client sends it chunked."""

    def __init__(self, size, head=b""):
        self.body = CountedZeros(size, head)

    @property
    def sent(self):
        return self.body.sent

    def read(self, n=-1):
        return self.body.read(n)

    def close(self):
        pass


def stored_bytes(content) -> int:
    if content is None or content.closed:
        return 0
    here = content.tell()
    size = content.seek(0, os.SEEK_END)
    content.seek(here)
    return size


def form_head(boundary, fields, file_field="payload[videoFile]"):
    out = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
                   .encode() for k, v in fields)
    return out + (f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; '
                  f'filename="x.mp4"\r\nContent-Type: video/mp4\r\n\r\n').encode()


class UploadGateTest(PublishingCase):
    timeout = 60

    async def serve(self):
        token = await self.serving()
        site = self.service.port.factory
        site = getattr(site, "wrappedFactory", site)  # under the connection limits, if any
        stored = self.stored = {}  # request -> the most body bytes it ever held in content
        requests = self.requests = []

        class Recording(site.requestFactory):
            def __init__(self, *args, **kw):
                super().__init__(*args, **kw)
                requests.append(self)

            def handleContentChunk(self, data):
                super().handleContentChunk(data)
                stored[self] = max(stored.get(self, 0), stored_bytes(self.content))
        site.requestFactory = Recording
        self.gate = self.service.api.uploads
        self.addCleanup(self.settled)
        return token

    async def settled(self):
        """Every connection the test opened is closed on the daemon's side too."""
        await until(lambda: all(r._disconnected or r.finished for r in self.requests),
                    what="the daemon's side of each connection closed")

    async def stream(self, path, body, content_type, headers=None):
        h = Headers({b"content-type": [content_type.encode()]})
        for k, v in (headers or {}).items():
            h.setRawHeaders(k.encode(), [v.encode()])
        response = await self.agent.request(b"POST", (self.base + path).encode(), h,
                                            client.FileBodyProducer(body))
        return Answer(response, await client.readBody(response))

    def assertRefusedUnstored(self, answer, body, status, code):
        self.assertEqual((answer.code, answer.json["code"]), (status, code), answer.body)
        self.assertEqual(answer.content_type, "application/problem+json")
        self.assertLess(max(self.stored.values(), default=0), MB)  # old code: all 50 MB
        self.assertLess(body.sent, BIG // 2)  # answered early, not after the whole body
        self.assertEqual(self.leftovers(), [])

    # -- the media API: Authorization --

    async def test_a_media_upload_without_a_good_token_stores_nothing(self):
        await self.serve()
        for headers in ({}, bearer("choir-wrong"), {"Authorization": "Basic eDp4"}):
            body = CountedZeros(BIG, form_head("b0", [("name", "x")], "file"))
            a = await self.stream(M, body, "multipart/form-data; boundary=b0", headers)
            self.assertRefusedUnstored(a, body, 401, "unauthorized")
            self.assertEqual(a.headers.getRawHeaders(b"www-authenticate"),
                             [b'Bearer realm="choir"'])
        body = ChunkedZeros(BIG, form_head("b0", [], "file"))
        a = await self.stream(M, body, "multipart/form-data; boundary=b0")
        self.assertRefusedUnstored(a, body, 401, "unauthorized")
        runner = await self.register()  # a runner's token opens no media API
        body = CountedZeros(BIG, form_head("b0", [], "file"))
        a = await self.stream(M, body, "multipart/form-data; boundary=b0", bearer(runner))
        self.assertRefusedUnstored(a, body, 401, "unauthorized")
        self.assertEqual(await self.store.list_media(), [])

    async def test_expect_100_continue_is_answered_only_for_a_good_token(self):
        token = await self.serve()
        port = self.service.port.getHost().port

        def first_answer(auth):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(f"POST {M} HTTP/1.1\r\nHost: x\r\nContent-Length: {BIG}\r\n"
                          f"Content-Type: multipart/form-data; boundary=b0\r\n{auth}"
                          f"Expect: 100-continue\r\n\r\n".encode())
                return s.recv(65536)
        refused = await threads.deferToThread(first_answer, "")
        self.assertTrue(refused.startswith(b"HTTP/1.1 401 Unauthorized\r\n"), refused)
        self.assertNotIn(b"100 Continue", refused)
        self.assertIn(b'"code": "unauthorized"', refused)
        welcome = await threads.deferToThread(first_answer, f"Authorization: Bearer {token}\r\n")
        self.assertEqual(welcome, b"HTTP/1.1 100 Continue\r\n\r\n")
        await until(lambda: not self.gate.active, what="the upload's place given back")

    async def test_a_good_token_still_uploads(self):
        token = await self.serve()
        song = self.generated("song.wav", "-f", "lavfi", "-i", "sine=d=15")
        with open(song, "rb") as f:
            data = f.read()
        self.assertGreater(len(data), MB)  # big enough to be gated and counted
        a = await self.upload(data, "song.wav", token)
        self.assertEqual(a.code, 201, a.body)
        with open((await self.store.get_media(a.json["id"])).path, "rb") as f:
            self.assertEqual(f.read(), data)
        self.assertEqual(dict(self.gate.active), {})

    # -- the runner API: the tokens in the leading form fields --

    async def processing_job(self):
        runner = await self.register()
        created = await self.store.create_job(JobType.VOD_WEB_VIDEO,
                                              J.web_video_payload("", "j1", "m1", 240, 25),
                                              uuid="j1")
        return runner, await self.accept(runner, created.job)

    async def test_a_result_upload_with_bad_tokens_stores_nothing(self):
        await self.serve()
        runner, wire = await self.processing_job()
        other = await self.register_another()
        path = f"{R}/jobs/{wire['uuid']}/success"
        cases = [([("runnerToken", "ptrt-nope"), ("jobToken", wire["jobToken"])],
                  404, "unknown_runner_token"),
                 ([("runnerToken", runner), ("jobToken", "ptrjt-nope")], 404, None),
                 ([("runnerToken", other), ("jobToken", wire["jobToken"])], 404, None),
                 ([("runnerToken", runner)], 400, "bad_request")]  # files before jobToken
        for fields, status, code in cases:
            if code is None:  # the route's own answer to a small body with these tokens
                code = (await self.http("POST", path, dict(fields))).json["code"]
            for body in (CountedZeros(BIG, form_head("b1", fields)),
                         ChunkedZeros(BIG, form_head("b1", fields))):
                a = await self.stream(path, body, "multipart/form-data; boundary=b1")
                self.assertRefusedUnstored(a, body, status, code)
        job = await self.store.get_job(wire["uuid"])
        self.assertEqual(job.state, J.JobState.PROCESSING)

    async def test_a_result_upload_with_good_tokens_is_stored(self):
        await self.serve()
        runner, wire = await self.processing_job()
        video = os.urandom(3 * MB)
        boundary = "b2"
        body = (form_head(boundary, [("runnerToken", runner), ("jobToken", wire["jobToken"])])
                + video + f"\r\n--{boundary}--\r\n".encode())
        a = await self.stream(f"{R}/jobs/{wire['uuid']}/success", io.BytesIO(body),
                              f"multipart/form-data; boundary={boundary}")
        self.assertEqual(a.code, 204, a.body)
        path = (await self.store.get_job("j1")).private_payload["result"]["files"]["videoFile"]
        with open(path, "rb") as f:
            self.assertEqual(f.read(), video)
        self.assertEqual(max(self.stored.values()), len(body))  # stored whole once admitted
        self.assertEqual(dict(self.gate.active), {})

    async def register_another(self):
        reg = await self.store.create_registration_token()
        a = await self.http("POST", R + "/register", {"registrationToken": reg.token,
                                                      "name": "another-runner"})
        return a.json["runnerToken"]

    # -- at most MAX_UPLOADS_PER_TOKEN at once --

    async def test_uploads_at_once_per_token_are_capped(self):
        token = await self.serve()
        other = await self.api_token()
        port = self.service.port.getHost().port

        def begin(auth_token):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            self.addCleanup(s.close)
            s.sendall(f"POST {M} HTTP/1.1\r\nHost: x\r\nContent-Length: {10 * MB}\r\n"
                      f"Content-Type: multipart/form-data; boundary=b0\r\n"
                      f"Authorization: Bearer {auth_token}\r\n\r\n".encode() + b"\0" * 1000)
            return s
        held = [begin(token) for _ in range(MAX_UPLOADS_PER_TOKEN)]
        others = []
        await until(lambda: self.gate.active[token] == MAX_UPLOADS_PER_TOKEN,
                    what="the uploads admitted")
        one_more = begin(token)
        answer = await threads.deferToThread(one_more.recv, 65536)
        self.assertTrue(answer.startswith(b"HTTP/1.1 429 Too Many Requests\r\n"), answer)
        self.assertIn(b'"code": "too_many_uploads"', answer)
        self.assertEqual(self.gate.active[token], MAX_UPLOADS_PER_TOKEN)
        others += [one_more, begin(other)]  # another token has its own places
        await until(lambda: self.gate.active[other] == 1, what="the other token's upload")
        held.pop().close()  # a client that hangs up gives its place back
        await until(lambda: self.gate.active[token] == MAX_UPLOADS_PER_TOKEN - 1,
                    what="the place given back")
        held.append(begin(token))
        await until(lambda: self.gate.active[token] == MAX_UPLOADS_PER_TOKEN,
                    what="the upload admitted in the free place")
        self.assertLess(max(self.stored.values()), 2000)
        for s in held + others:
            s.close()
        await until(lambda: not self.gate.active, what="every place given back")


# -- the leading fields of a body still arriving ------------------------------------------

BODY = (b'--B\r\nContent-Disposition: form-data; name="runnerToken"\r\n\r\nptrt-1\r\n'
        b'--B\r\nContent-Disposition: form-data; name="jobToken"\r\n\r\nptrjt-2\r\n'
        b'--B\r\nContent-Disposition: form-data; name="payload[videoFile]"; filename="v.mp4"'
        b'\r\n\r\nVIDEO\r\n--B--\r\n')


def test_leading_fields_as_the_body_arrives():
    seen = [leading_fields(BODY[:n], b"B") for n in range(len(BODY) + 1)]
    assert seen[0] == ({}, False)
    whole = {"runnerToken": "ptrt-1", "jobToken": "ptrjt-2"}
    assert seen[-1] == (whole, True)
    first_file = BODY.index(b"filename") + 40
    assert all(s == (whole, True) for s in seen[first_file:])
    for fields, complete in seen:  # a field is given only whole, never cut short
        assert all(whole[k] == v for k, v in fields.items())
        assert not complete or fields == whole
    tokens_only = BODY[:BODY.index(b"--B\r\nContent-Disposition: form-data; name=\"payload")]
    assert leading_fields(tokens_only + b"--B--\r\n", b"B") == (whole, True)  # no files


def test_leading_fields_refuse_what_is_no_form():
    with pytest.raises(MultipartError, match="boundary"):
        leading_fields(b"x" * 20000, b"B")
    with pytest.raises(MultipartError, match="longer than"):
        leading_fields(b'--B\r\nContent-Disposition: form-data; name="a"\r\n\r\n' + b"v" * 70000,
                       b"B")
    with pytest.raises(MultipartError, match="without a name"):
        leading_fields(b"--B\r\nContent-Type: text/plain\r\n\r\nx\r\n--B--", b"B")
