"""The runner side of the daemon: store, runner API, socket.io notifications, watchdogs.

Two loops keep the runners' view right: a watchdog returns processing jobs whose
runner stopped updating to pending (PeerTube: 2 minutes for VOD, 30 s for live),
and a watcher of the store's change feed tells connected runners about jobs that
became pending anywhere, including in another process (choir-admin), within a
second: the real runner never polls, it only asks when notified.
"""
import os
import time

from twisted.application import service
from twisted.internet import defer, endpoints, task
from twisted.logger import Logger
from twisted.python.failure import Failure

from choir_protocol.runners import jobs as J

from ..limits import HTTP, LimitedFactory, bound_site
from ..publishing.media_api import MediaAPI
from ..publishing.media_links import MediaLinks
from ..publishing.publisher import Publisher
from ..store.store import StaleJob, Store
from .admin_api import AdminAPI
from .api import DEFAULT_MAX_UPLOAD_BYTES, RunnerAPI
from .notifications import NotificationHub
from .results import PARTIAL_UPLOAD_PREFIX

WATCHDOG_SECONDS = 10.0
FEED_SECONDS = 0.5  # the change feed is read at least this often
FEED_CHECK_SECONDS = 0.01  # and as soon as the store's data version shows a commit


def remove_partial_uploads(data_dir) -> int:
    """Uploads a killed daemon left half-written (``.upload-*`` under media/ and uploads/).
    Safe before we listen: the data directory's lock keeps any other daemon out."""
    removed = 0
    for top in ("media", "uploads"):
        for directory, _, names in os.walk(os.path.join(data_dir, top)):
            for name in names:
                if name.startswith(PARTIAL_UPLOAD_PREFIX):
                    try:
                        os.unlink(os.path.join(directory, name))
                        removed += 1
                    except FileNotFoundError:
                        pass
    return removed


class RunnerService(service.Service):
    log = Logger()

    def __init__(self, reactor, endpoint: str, data_dir: str, clock=time.time, *,
                 watchdog_interval=WATCHDOG_SECONDS, vod_stalled_after=J.VOD_STALLED_AFTER,
                 live_stalled_after=J.LIVE_STALLED_AFTER, publishing=None,
                 max_upload_bytes=DEFAULT_MAX_UPLOAD_BYTES, trusted_proxies=(), limits=None):
        self.reactor = reactor
        self.limits = limits  # limits.ConnectionLimits shared with the rehearsal ports, or None
        self.trusted_proxies = tuple(trusted_proxies)
        self.publishing = dict(publishing or {})  # Publisher's keyword arguments
        self.max_upload_bytes = max_upload_bytes
        self.watchdog_interval = watchdog_interval
        self.stalled_after = {"vod_timeout": vod_stalled_after,
                              "live_timeout": live_stalled_after}
        self.endpoint = endpoint
        self.data_dir = data_dir
        self.clock = clock
        self.store = self.hub = self.api = self.port = self.publisher = None
        self._seq = 0
        self._loops = []

    def startService(self):
        """Listens at once, so that a port in use (or a socket-activation index with no
        socket) stops twistd at start, as the rehearsal ports do; the store's schema is
        made first on its one connection, so requests simply queue behind it. The returned
        Deferred fires when the housekeeping loops run."""
        super().startService()
        os.makedirs(self.data_dir, exist_ok=True)
        removed = remove_partial_uploads(self.data_dir)
        if removed:
            self.log.info("Removed {n} partial uploads left by a stopped daemon", n=removed)
        self.store = Store.sqlite(data_dir=self.data_dir, clock=self.clock)
        schema = self.store.create_schema()
        self.hub = NotificationHub(self.reactor, self._authenticate)
        self.api = RunnerAPI(self.store, self.hub, self.data_dir, self.reactor,  # .seconds()
                             max_upload_bytes=self.max_upload_bytes,
                             public_url=self.publishing.get("public_url"),
                             trusted_proxies=self.trusted_proxies)
        self.publishing.setdefault("sessions_dir", os.path.join(self.data_dir, "sessions"))
        links = MediaLinks.in_data_dir(self.data_dir, self.reactor.seconds)
        self.publisher = Publisher(self.store, self.hub, self.data_dir, self.reactor,
                                   links=links, **self.publishing)
        self.media_api = MediaAPI(self.store, self.publisher, self.data_dir,
                                  self.api.max_upload_bytes, links)
        self.admin_api = AdminAPI(self.store, self.hub, self.reactor, self.api.base_url)
        factory = bound_site(self.api.site(self.media_api.resource(), self.admin_api.resource(),
                                           reactor=self.reactor))  # its timeouts on our clock
        if self.limits is not None:
            factory = LimitedFactory(factory, self.limits, HTTP)
        listening = endpoints.serverFromString(self.reactor, self.endpoint).listen(factory)
        outcome = []
        listening.addBoth(outcome.append)
        if not outcome:  # an endpoint that listens later (none of ours)
            raise RuntimeError(f"--http {self.endpoint}: the endpoint did not listen at once")
        if isinstance(outcome[0], Failure):
            self.store.close()
            outcome[0].raiseException()
        self.port = outcome[0]
        self.log.info("Runner API listening on {endpoint}", endpoint=self.endpoint)
        return schema.addCallback(lambda _: defer.ensureDeferred(self._run()))

    async def _run(self):
        self._seq = await self.store.last_event()
        for seconds, work in ((self.watchdog_interval, self._watchdog),
                              (FEED_CHECK_SECONDS, self._watch_feed)):
            loop = task.LoopingCall(self._guarded, work)
            loop.clock = self.reactor
            loop.start(seconds, now=False)
            self._loops.append(loop)
        # what was recorded, ended, or failed to be told, while the daemon was down; what
        # is recorded from now on, the room tells (``session_recorded``)
        self._guarded(self.publisher.scan_sessions)
        self._guarded(self.publisher.catch_up)

    def session_recorded(self, directory):
        """The room's ``on_session_recorded``: the session published (``Publisher``). One
        that ends before the service has started is found by its start-up scan."""
        if self.publisher is not None:
            self.publisher.session_recorded(directory)

    @defer.inlineCallbacks
    def stopService(self):
        super().stopService()
        for loop in self._loops:
            if loop.running:
                loop.stop()
        if self.port is not None:
            yield self.port.stopListening()
        if self.publisher is not None:
            self.publisher.stop()
        if self.hub is not None:
            self.hub.stop()
        if self.store is not None:
            self.store.close()

    @defer.inlineCallbacks
    def _authenticate(self, token):
        try:
            runner = yield self.store.runner_by_token(token)
        except J.JobError:
            return None
        return runner

    @defer.inlineCallbacks
    def _guarded(self, work):
        try:
            yield defer.ensureDeferred(work())
        except Exception:
            self.log.failure("Runner housekeeping failed")

    @defer.inlineCallbacks
    def _watchdog(self):
        # runners removed elsewhere (choir-admin on the data directory) hear no more jobs
        dropped = self.hub.keep_only({r.id for r in (yield self.store.list_runners())})
        if dropped:
            self.log.info("Hung up on {n} removed runner(s)", n=dropped)
        now = self.clock()
        for job in (yield self.store.stalled_jobs(now, **self.stalled_after)):
            transition = J.stalled(job, now, **self.stalled_after)
            if transition is None:
                continue
            try:
                yield self.store.save(transition, previous=job)
            except StaleJob:
                continue  # its runner spoke up meanwhile
            self.log.warn("Job {uuid} stalled (no update from its runner): back to pending",
                          uuid=job.uuid)
            self.hub.notify_available_jobs()

    _feed_version = None  # the store's data version when the feed was last read
    _feed_read_at = float("-inf")

    @defer.inlineCallbacks
    def _watch_feed(self):
        # Checking the data version costs microseconds (a pragma on the reactor thread's
        # read connection): a job made pending by another process reaches the runners
        # within FEED_CHECK_SECONDS, not FEED_SECONDS.
        now = self.reactor.seconds()
        version = self.store.data_version()
        if (version is not None and version == self._feed_version
                and now - self._feed_read_at < FEED_SECONDS):
            return
        self._feed_version, self._feed_read_at = version, now
        self._seq, changes = yield self.store.changed_since(self._seq, with_origin=True)
        # what this daemon made pending it announced as it did; others' changes, here
        if any(state is J.JobState.PENDING and foreign for _, state, foreign in changes):
            self.hub.notify_available_jobs()
        if changes:
            yield defer.ensureDeferred(self.publisher.jobs_changed(
                [(uuid, state) for uuid, state, _ in changes]))
