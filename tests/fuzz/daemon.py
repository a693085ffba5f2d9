"""The runner side of the daemon in-process, for the HTTP and socket.io fuzz targets.

A real RunnerService (store on SQLite, runner, media and admin APIs, socket.io hub,
housekeeping loops) on the real reactor, pumped by hand. A client connection is the Site's
own protocol (``HTTPChannel``, which parses the bytes) over a StringTransport that behaves
as twisted's TCP transport (``TCPTransport``); a WebSocket upgrade hands that transport to
autobahn as a real listener would. The store holds a runner with a processing job of every
type, a media with files, and every kind of token, so cases can name real objects (``Ref``)
and get past the first check of a route.
"""
import contextlib
import io
import itertools
import os
import re
import shutil
import tempfile
import traceback
import wave

import attrs
from twisted.internet import defer, reactor
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from choir_protocol.runners.jobs import JobType
from choir_twisted.runners.service import RunnerService

from .harness import Hang, LogWatch, Outcome, pump, running_thread_pools, settle

PEER = IPv4Address("TCP", "198.51.100.7", 40000)
STATUS = re.compile(rb"(?:^|\r\n)HTTP/1\.[01] (\d{3})")
RESEED_EVERY = 25  # cases: what the cases consume (tokens deleted, jobs ended) is made again
# past every timer of a channel (idle and head timeouts, the abort after them), run on its
# own clock when its connection ends
IDLE_SECONDS = 13 * 3600


def tiny_wav(seconds=0.05) -> bytes:
    """A valid media file, small enough for ffprobe to accept in milliseconds."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(bytes(int(8000 * seconds) * 2))
    return out.getvalue()


WAV = tiny_wav()
PLAYLIST = b"#EXTM3U\n#EXT-X-VERSION:7\n#EXTINF:2.0,\nsegment.mp4\n#EXT-X-ENDLIST\n"


@attrs.frozen
class Ref:
    """A value of the daemon's store, looked up when the case runs (``Daemon.value``)."""
    name: str


@attrs.frozen
class Cat:
    """Text and refs, concatenated when the case runs."""
    parts: tuple


def render(value, daemon) -> bytes:
    if isinstance(value, Ref):
        return daemon.value(value.name).encode()
    if isinstance(value, Cat):
        return b"".join(render(p, daemon) for p in value.parts)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    return bytes(value)


def resolve(value, daemon):
    """A JSON value with its Refs replaced by what they name."""
    if isinstance(value, Ref):
        return daemon.value(value.name)
    if isinstance(value, Cat):
        return render(value, daemon).decode("utf-8", "surrogatepass")
    if isinstance(value, dict):
        return {resolve(k, daemon): resolve(v, daemon) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, daemon) for v in value]
    return value


@implementer(ITCPTransport)
class TCPTransport(StringTransport):
    """A StringTransport that behaves as twisted's TCP transport where StringTransport is
    stricter: pausing or resuming a closing connection, or unregistering no producer, does
    nothing (StringTransport raises), and a write side may be shut on its own."""

    write_closed = False
    no_delay = keep_alive = False

    def pauseProducing(self):
        if not self.disconnecting:
            super().pauseProducing()

    def resumeProducing(self):
        if not self.disconnecting:
            super().resumeProducing()

    def unregisterProducer(self):
        self.producer = None  # also when there is none (the connection was lost)

    def loseWriteConnection(self):
        self.write_closed = True

    def getTcpNoDelay(self):
        return self.no_delay

    def setTcpNoDelay(self, enabled):
        self.no_delay = bool(enabled)

    def getTcpKeepAlive(self):
        return self.keep_alive

    def setTcpKeepAlive(self, enabled):
        self.keep_alive = bool(enabled)


def innermost(protocol):
    """The protocol inside any wrappers (a connection limiter, twisted.web's generic one)."""
    while True:
        inner = getattr(protocol, "wrappedProtocol", None) or getattr(protocol, "_channel", None)
        if inner is None:
            return protocol
        protocol = inner


class Connection:
    """One client's TCP connection to the daemon's HTTP port."""

    def __init__(self, daemon):
        self.clock = Clock()  # the channel's timeouts, advanced when the case ends
        self.transport = TCPTransport(peerAddress=PEER)
        self.transport.protocol = daemon.service.port.factory.buildProtocol(PEER)
        self.http = innermost(self.transport.protocol)  # the HTTPChannel
        self.http.callLater = self.clock.callLater
        self.transport.protocol.makeConnection(self.transport)
        self.lost = False

    @property
    def upgraded(self) -> bool:
        """A WebSocket took the connection over."""
        return innermost(self.transport.protocol) is not self.http

    @property
    def closing(self) -> bool:
        return self.lost or self.transport.disconnecting

    @property
    def answered(self) -> bool:
        """No request of this connection is being worked on, or the daemon has said its
        last word (shut its write side: it only reads and drops what still comes)."""
        return (self.closing or self.transport.write_closed or self.upgraded
                or not self.http._handlingRequest)

    def send(self, data: bytes) -> None:
        if not self.closing:  # a closing transport reads no more
            self.transport.protocol.dataReceived(data)

    def statuses(self) -> list:
        return [int(code) for code in STATUS.findall(self.transport.value())]

    def lose(self, clean=True) -> None:
        """The TCP connection ends: as a real transport says it, to whichever protocol has it
        (and to the HTTP channel too after an upgrade: its request never finished)."""
        if self.lost:
            return
        self.lost = True
        reason = Failure(ConnectionDone() if clean else ConnectionLost())
        upgraded = self.upgraded
        producer, self.transport.producer = self.transport.producer, None
        if producer is not None:  # as twisted's TCP transport: its producer first
            producer.stopProducing()
        self.transport.protocol.connectionLost(reason)
        if upgraded:
            self.http.connectionLost(reason)
        self.clock.advance(IDLE_SECONDS)


class Daemon:
    """A started RunnerService in a temporary data directory, and the objects cases name."""

    def __init__(self, gc_every=1):
        self.gc_every = gc_every  # cases between garbage collections (unhandled Deferreds)
        self._cases = 0
        self._serial = itertools.count()
        self.refs = {}
        self.slot = 0  # which processing job a case's job refs name

    def __enter__(self):
        self._stack = contextlib.ExitStack()
        self._stack.__enter__()
        self._stack.enter_context(running_thread_pools())
        self._stack.callback(self._cancel_timers, set(reactor.getDelayedCalls()))
        self.watch = self._stack.enter_context(LogWatch())
        self.tmp = tempfile.mkdtemp(prefix="choir-fuzz-")
        self._stack.callback(shutil.rmtree, self.tmp, True)
        self.service = RunnerService(reactor, "tcp:0:interface=127.0.0.1",
                                     os.path.join(self.tmp, "data"))
        started = self.service.startService()
        self.service.store.pool.start()  # it starts itself only when reactor.run() does
        self._wait(started)
        self._stack.callback(lambda: self._wait(self.service.stopService()))
        # the socket.io ping and debounce clock, advanced by the cases
        self.hub_clock = self.service.hub.clock = Clock()
        self.reseed()
        problems = self.watch.take(collect=True)
        assert not problems, problems
        return self

    def __exit__(self, *exc):
        return self._stack.__exit__(*exc)

    @staticmethod
    def _cancel_timers(before):
        """What the stopped daemon left on the reactor (a webhook's retry, a debounce) must
        not fire in the next target's cases: a real reactor stops with its daemon."""
        for call in reactor.getDelayedCalls():
            if call not in before and call.active():
                call.cancel()

    def _wait(self, d):
        result = []
        defer.maybeDeferred(lambda: d).addBoth(result.append)
        pump(lambda: result, what="the daemon's start or stop")
        if isinstance(result[0], Failure):
            result[0].raiseException()
        return result[0]

    @property
    def pools(self):
        return [self.service.store.pool.threadpool, reactor.getThreadPool()]

    def settle(self):
        settle(self.pools)

    # -- the store's objects ---------------------------------------------------------------

    def value(self, name: str) -> str:
        values = self.refs[name]
        return values[self.slot % len(values)]

    def reseed(self):
        self._wait(defer.ensureDeferred(self._seed()))

    async def _seed(self):
        store, n = self.service.store, next(self._serial)
        for media_id in self.refs.get("media_id", []):
            # the last seed's media goes (its jobs stay): GET /api/v1/media describes every
            # media, so a store that keeps them all makes each case slower than the last
            await store.delete_media(media_id)
        reg = await store.create_registration_token()
        runner = await store.register_runner(reg.token, f"fuzz-runner-{n}")
        api = await store.create_api_token(f"fuzz-{n}")
        _, operator = await store.create_operator_token(f"fuzz-{n}")
        source = os.path.join(self.tmp, f"source-{n}.wav")
        with open(source, "wb") as f:
            f.write(WAV)
        types = sorted(JobType.ALL) + [JobType.VOD_HLS]  # the last one stays pending
        inputs = {"max-quality": source, "preview": source, "max-quality-audio": source,
                  "task-files": {"intro.wav": source}}
        media, transitions = await store.publish_media(
            "upload", f"fuzz {n}", source, [source],
            [{"type": t, "payload": {"output": {"resolution": 360, "fps": 25}},
              "private_payload": {"inputs": inputs}} for t in types])
        jobs = [await store.accept(tr.job.uuid, runner.id) for tr in transitions[:-1]]
        for name in ("720p.mp4", "hls/master.m3u8", "hls/360p.m3u8"):
            await store.add_media_file(media.id, "output", name, source, len(WAV))
        links = getattr(self.service.media_api, "links", None)
        _, expires, sig = (links.segment(media.id) if links else "signed/0/x").split("/")
        self.refs = {
            "link_expires": [expires], "link_sig": [sig],
            "registration_token": [reg.token], "registration_token_id": [reg.id],
            "runner_token": [runner.token], "runner_id": [runner.id],
            "api_token": [api.token], "operator_token": [operator],
            "job": [j.uuid for j in jobs], "job_token": [j.job_token for j in jobs],
            "pending_job": [transitions[-1].job.uuid], "media_id": [media.id],
            "file_name": ["720p.mp4", "hls/master.m3u8", "hls/360p.m3u8", "source.wav"],
            "task_file": ["intro.wav"], "job_type": types,
        }

    # -- running a case --------------------------------------------------------------------

    def case(self, slot: int, drive) -> Outcome:
        """Runs ``drive(connection, outcome)``, then ends the connection, lets the daemon
        settle and gathers what it logged."""
        self._cases += 1
        if self._cases % RESEED_EVERY == 0:
            self.reseed()
        self.slot = slot
        outcome = Outcome()
        connection = Connection(self)
        try:
            drive(connection, outcome)
        except Hang as e:
            outcome.tracebacks.append(f"hang: {e}")
        except Exception as e:  # from dataReceived: a real transport logs it and drops us
            outcome.tracebacks.append("raised to the transport: " + "".join(
                traceback.format_exception(e)))
        try:
            connection.lose(clean=slot % 2 == 0)
            self.settle()
        except Hang as e:
            outcome.tracebacks.append(f"hang after the connection ended: {e}")
        except Exception as e:
            outcome.tracebacks.append("raised by connectionLost: " + "".join(
                traceback.format_exception(e)))
        outcome.statuses = connection.statuses()
        outcome.tracebacks += self.watch.take(collect=self._cases % self.gc_every == 0)
        return outcome
