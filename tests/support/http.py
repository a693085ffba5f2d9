"""HTTP as the tests speak it to the daemon on 127.0.0.1: a request and its answer, and the
multipart bodies a runner or a website sends."""
import io
import json
import secrets

from twisted.internet import reactor
from twisted.web import client
from twisted.web.http_headers import Headers


class Answer:
    """A response read whole: its code, length, headers and body."""

    def __init__(self, response, body):
        self.code = response.code
        self.length = response.length
        self.headers = response.headers
        self.body = body

    @property
    def json(self):
        return json.loads(self.body)

    @property
    def content_type(self):
        return (self.headers.getRawHeaders(b"content-type") or [b""])[0].decode()


def loopback_agent() -> client.Agent:
    """An agent whose connections close after each request (nothing left open at the end)."""
    return client.Agent(reactor, pool=client.HTTPConnectionPool(reactor, persistent=False))


async def request(agent, method, url, raw=None, content_type="application/json",
                  headers=None) -> Answer:
    """``method`` ``url`` with the body ``raw`` (bytes or None); ``headers``: {name: value}."""
    h = Headers({b"content-type": [content_type.encode()]})
    for name, value in (headers or {}).items():
        h.setRawHeaders(name.encode(), [value.encode()])
    producer = client.FileBodyProducer(io.BytesIO(raw)) if raw is not None else None
    response = await agent.request(method.encode(), url.encode(), h, producer)
    return Answer(response, await client.readBody(response))


async def http_post(agent, port, path, raw, content_type) -> Answer:
    """POST ``raw`` to ``path`` on 127.0.0.1:``port``."""
    return await request(agent, "POST", f"http://127.0.0.1:{port}{path}", raw, content_type)


def multipart(fields=(), files=()):
    """-> (body, content type). fields: [(name, value)]; files: [(name, filename, bytes)]."""
    boundary = "----choir" + secrets.token_hex(8)
    out = io.BytesIO()
    for name, value in fields:
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                  .encode() + str(value).encode() + b"\r\n")
    for name, filename, data in files:
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                  f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
                  .encode() + data + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"
