"""choir-runner server: the Runner, following runner.json while it runs, until stopped.

``choir-runner register`` (another process) writes runner.json; the server notices within
``CHECK_EVERY`` seconds and serves the new registration without a restart, and stops
serving one that ``unregister`` took out. It looks at the file's inode, time and size (a
stat: cheap, and portable where inotify is not; the file is replaced whole by
``config.save_config``, so each save is a new inode) and reads it only when they change.

When no registration is left (an admin removed the runner from its last server, or the
last one was unregistered), serving nothing would look like working: the server says why
in one line and exits 1. SIGTERM or Ctrl-C give the running jobs back and exit 0.
"""
import os

from twisted.internet import defer, task
from twisted.logger import Logger

from . import jobs as runner_jobs
from ..config import ConfigError, config_path
from .runner import CONFIG, VERSION, Runner, RunnerError, _log_to, forget, load_registrations

CHECK_EVERY = 1.0  # seconds between two looks at runner.json

log = Logger()


class RegistrationWatch:
    """Calls ``changed(registrations)`` each time the file at ``path`` changes."""

    def __init__(self, reactor, path, load, changed, every=CHECK_EVERY):
        self.path, self.load, self.changed = path, load, changed
        self.loop = task.LoopingCall(self._check)
        self.loop.clock = reactor
        self.every = every
        self._seen = None

    def _stamp(self):
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def start(self):
        self._seen = self._stamp()
        self.loop.start(self.every, now=False)

    def stop(self):
        if self.loop.running:
            self.loop.stop()

    def _check(self):
        stamp = self._stamp()
        if stamp == self._seen:
            return
        self._seen = stamp
        try:
            registrations = self.load() if stamp is not None else []
        except ConfigError as e:  # a hand edit half done: keep serving what we serve
            log.warn("{e}: going on with the registrations in use", e=e)
            return
        self.changed(registrations)


async def serve(reactor, opts, err) -> None:
    registrations = load_registrations()
    if not registrations:
        raise RunnerError("not registered with any server: run 'choir-runner register' first")
    if opts["work-dir"]:
        os.makedirs(opts["work-dir"], exist_ok=True)
    for tool in ("ffmpeg", "ffprobe"):
        try:
            runner_jobs.executable(tool)
        except runner_jobs.JobFailed as e:
            raise RunnerError(str(e)) from None
    _log_to(err)
    ended = defer.Deferred()  # -> None (a signal), or the RunnerError to exit with
    stopping = []

    async def stop(reason=None, problem=None):
        if stopping:
            return
        stopping.append(True)
        watch.stop()
        log.info(reason)
        await runner.stop()
        ended.callback(problem)

    def nothing_left(why):
        defer.ensureDeferred(stop("Stopping: no registration left", RunnerError(why)))

    runner = Runner(reactor, registrations, opts["concurrency"], opts["job-types"],
                    opts["work-dir"], on_forget=lambda r: forget(r["url"], r.get("name")),
                    on_empty=nothing_left)
    watch = RegistrationWatch(reactor, config_path(CONFIG), load_registrations, runner.follow)
    # SIGTERM/SIGINT stop the reactor; "before shutdown" waits for the aborts to be sent
    trigger = reactor.addSystemEventTrigger(
        "before", "shutdown",
        lambda: defer.ensureDeferred(stop("Stopping: giving the running jobs back")))
    log.info("{version}: {n} server(s), concurrency {c}, job types {types}",
             version=VERSION, n=len(registrations), c=opts["concurrency"],
             types=",".join(opts["job-types"]))
    runner.start()
    watch.start()
    problem = await ended
    if problem is not None:
        reactor.removeSystemEventTrigger(trigger)
        raise problem
