"""choir-runner: a PeerTube-protocol remote runner, in Python, processing jobs with ffmpeg.

    choir-runner register --url URL --registration-token TOKEN --runner-name NAME
                          [--runner-description TEXT]
    choir-runner unregister --url URL --runner-name NAME
    choir-runner list-registered
    choir-runner server [--concurrency N] [--job-types TYPES] [--work-dir DIR]

Like PeerTube's ``peertube-runner``, it may be registered with several servers (the choir
daemon, PeerTube instances); the registrations live in ``runner.json`` of the choir
configuration directory ($CHOIR_CONFIG_DIR, see config.py; ``runner_register`` keeps them
and runs register, unregister and list-registered). ``server`` listens to each
server's socket.io notifications and asks for jobs on connect, on ``available-jobs``,
after each finished job and 2.5 s after a round that found one (it never polls); at most
``--concurrency`` jobs run at once over all servers. SIGTERM or Ctrl-C kills the running
ffmpegs and gives their jobs back (jobs/{uuid}/abort), then exits 0. A server that no
longer knows the runner token (``unknown_runner_token``: an admin removed the runner) is
forgotten, as peertube-runner does; ``server`` follows runner.json while it runs
(``runner_serve``): a new ``register`` is served at once, and when no registration is left
it says so and exits 1.

Exit status: 0, 1 on an operational error (one line on stderr), 2 on a usage error.

Just over 400 lines: the program's commands and the server loop that they start;
registration and the file watch are in register.py and serve.py.
"""
import sys
from urllib.parse import urlsplit

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure

from . import jobs as runner_jobs
from ..cli import parse_options
from ..config import ConfigError
from .api import RunnerHTTP, ServerProblem, Unreachable
from .notifications import NotificationClient
# the registrations in runner.json, and the commands that change them
from .register import (CONFIG, VERSION, RunnerError, forget, list_registered,  # noqa: F401
                       load_registrations, register, save_registrations, unregister)

PROGRAM = "choir-runner"
AGAIN_AFTER = 2.5  # seconds: ask again after a round that found a job
ABORT_REASON = "The runner is shutting down"


# -- options ---------------------------------------------------------------------------------

def _url(text):
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise usage.UsageError(f"--url must be an http:// or https:// URL, not {text!r}")
    try:
        parts.port
    except ValueError:
        raise usage.UsageError(f"bad port in --url {text!r}") from None
    return text.strip().rstrip("/")


def _job_types(text):
    types = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in types if t not in runner_jobs.SUPPORTED]
    if unknown or not types:
        raise usage.UsageError(f"unsupported job type(s) {', '.join(unknown) or '(none)'}: "
                               f"choose from {', '.join(runner_jobs.SUPPORTED)}")
    return types


def _positive(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise usage.UsageError(f"--concurrency must be a whole number above 0, not {text!r}")
    return value


class _Leaf(usage.Options):
    required = ()

    def opt_version(self):
        """Print the version and exit."""
        print(VERSION)
        raise SystemExit(0)

    def postOptions(self):
        missing = [f"--{name}" for name in self.required if not self[name]]
        if missing:
            raise usage.UsageError(f"missing {', '.join(missing)}")

    def parseArgs(self, *args):
        if args:
            raise usage.UsageError(f"unexpected argument(s): {' '.join(args)}")


class RegisterOptions(_Leaf):
    longdesc = "Register this runner with a server, using a registration token of its admin."
    optParameters = [
        ["url", None, None, "The server's URL, e.g. http://choir.example:8000", _url],
        ["registration-token", None, None, "A registration token (choir-admin tokens create)."],
        ["runner-name", None, None, "This runner's name on that server (unique there)."],
        ["runner-description", None, None, "A description shown to the server's admins."],
    ]
    required = ("url", "registration-token", "runner-name")


class UnregisterOptions(_Leaf):
    longdesc = "Unregister this runner from a server and forget the registration."
    optParameters = [
        ["url", None, None, "The server's URL, as registered.", _url],
        ["runner-name", None, None, "The runner name registered there."],
    ]
    required = ("url", "runner-name")


class ListOptions(_Leaf):
    longdesc = "List the servers this runner is registered with."


class ServerOptions(_Leaf):
    longdesc = "Process jobs from every registered server until SIGTERM or Ctrl-C."
    optParameters = [
        ["concurrency", "c", 2, "Jobs processed at once (over all servers).", _positive],
        ["job-types", None, ",".join(runner_jobs.SUPPORTED),
         "Comma-separated job types to accept.", _job_types],
        ["work-dir", None, None, "Directory for the jobs' temporary files [default: the "
                                 "system's temporary directory]"],
    ]

    def postOptions(self):
        if isinstance(self["job-types"], str):
            self["job-types"] = _job_types(self["job-types"])


class Options(usage.Options):
    synopsis = "Usage: choir-runner COMMAND [options]"
    subCommands = [
        ["register", None, RegisterOptions, "Register with a server."],
        ["unregister", None, UnregisterOptions, "Unregister from a server."],
        ["list-registered", None, ListOptions, "List the servers registered with."],
        ["server", None, ServerOptions, "Process jobs."],
    ]

    longdesc = ("A PeerTube-protocol remote runner: it registers with choir daemons (or "
                "PeerTube instances), is notified of transcoding jobs over socket.io, and "
                "runs them with ffmpeg. Run 'choir-runner COMMAND --help' for a command's "
                "options.")

    def opt_version(self):
        """Print the version and exit."""
        print(VERSION)
        raise SystemExit(0)

    def postOptions(self):
        if self.subCommand is None:
            raise usage.UsageError("choose a command: register, unregister, list-registered, "
                                   "server")


# -- the server --------------------------------------------------------------------------------

class Instance:
    """One registered server: its API, its notifications, its job requests."""

    log = Logger()

    def __init__(self, runner, registration: dict):
        self.runner, self.registration = runner, registration
        self.url = registration["url"]
        self.api = RunnerHTTP(runner.reactor, self.url, registration["runnerToken"],
                              **runner.http_options)
        self.socket = NotificationClient(runner.reactor, self.url, registration["runnerToken"],
                                         self.wake, self.wake, lambda message: self.wake())
        self.gone = False
        self._round = self._later = None
        self._again = False

    def wake(self):
        """Ask for jobs now (or right after the round under way)."""
        if self.runner.stopping or self.gone:
            return
        if self._round is not None:
            self._again = True
            return
        if self._later is not None and self._later.active():
            self._later.cancel()
        self._round = defer.ensureDeferred(self._request())
        self._round.addBoth(self._round_done)

    def _round_done(self, found):
        self._round = None
        if self._again:
            self._again = False
            self.wake()
        elif found is True and not self.runner.stopping:
            self._later = self.runner.reactor.callLater(AGAIN_AFTER, self.wake)

    async def _request(self) -> bool:
        if self.runner.free() <= 0:
            return False
        try:
            available = await self.api.request_jobs(self.runner.job_types)
        except (ServerProblem, Unreachable) as e:
            self._problem(e, "cannot ask for jobs")
            return False
        found = False
        for job in available:
            if self.runner.free() <= 0 or self.runner.stopping or self.gone:
                break
            if job.get("type") not in self.runner.job_types or not runner_jobs.can_do(job):
                continue
            try:
                accepted = await self.api.accept(job["uuid"])
            except (ServerProblem, Unreachable) as e:
                if isinstance(e, ServerProblem) and e.status in (404, 409) and \
                        e.code != "unknown_runner_token":
                    continue  # another runner was faster: try the next one
                self._problem(e, f"cannot accept job {job['uuid']}")
                return found
            if self.runner.stopping:  # accepted as we were stopping: give it back
                await self.runner.abort(self, accepted)
                break
            self.runner.start_job(self, accepted)
            found = True
        return found

    def _problem(self, e, what):
        if isinstance(e, ServerProblem) and e.code == "unknown_runner_token":
            self.log.warn("{url} does not know runner {name!r} any more (its admin removed "
                          "it): forgetting this registration", url=self.url,
                          name=self.registration.get("name"))
            self.gone = True
            self.runner.forget_instance(self)
        else:
            self.log.warn("{url}: {what}: {e}", url=self.url, what=what, e=e)

    async def stop(self):
        if self._later is not None and self._later.active():
            self._later.cancel()
        await self.socket.stop()
        await self.api.close()


class Runner:
    """Runs jobs from every registered server; at most ``concurrency`` at once."""

    log = Logger()

    def __init__(self, reactor, registrations, concurrency=2, job_types=runner_jobs.SUPPORTED,
                 work_dir=None, on_forget=None, progress_every=runner_jobs.PROGRESS_EVERY,
                 http_options=None, on_job_done=None, on_empty=None):
        self.reactor = reactor
        self.concurrency, self.job_types, self.work_dir = concurrency, list(job_types), work_dir
        self.on_forget, self.progress_every = on_forget, progress_every
        self.on_job_done = on_job_done  # (uuid, outcome), before asking for more
        self.on_empty = on_empty  # (why), when the last registration is gone
        self.http_options = http_options or {}
        self.instances = [Instance(self, r) for r in registrations]
        self.running = {}  # uuid -> (instance, job, Deferred)
        self.outcomes = []  # (uuid, "completed" | "failed" | "lost" | "aborted")
        self.stopping = False
        self._forgotten = []  # instances stopping because their server forgot us
        self._gone = set()  # their keys: never served again, even if runner.json keeps them

    def start(self):
        for instance in self.instances:
            instance.socket.start()

    @staticmethod
    def _key(registration):
        return registration["url"], registration["runnerToken"]

    def follow(self, registrations):
        """Serve these registrations (runner.json changed): the new ones from now on, and
        no more the ones gone from it."""
        if self.stopping:
            return
        wanted = {self._key(r): r for r in registrations if self._key(r) not in self._gone}
        for instance in list(self.instances):
            if self._key(instance.registration) not in wanted:
                self.log.info("{url}: the registration is gone from the configuration: "
                              "leaving this server", url=instance.url)
                self._drop(instance)
        served = {self._key(i.registration) for i in self.instances}
        for key, registration in wanted.items():
            if key not in served:
                self.log.info("{url}: new registration as {name!r}: connecting",
                              url=registration["url"], name=registration.get("name"))
                instance = Instance(self, registration)
                self.instances.append(instance)
                instance.socket.start()
        self._maybe_empty(f"no registration left in the configuration (choir-runner "
                          f"unregister?)")

    def _drop(self, instance):
        self._gone.add(self._key(instance.registration))
        if instance in self.instances:
            self.instances.remove(instance)
        instance.gone = True
        self._forgotten.append(defer.ensureDeferred(instance.stop()))

    def _maybe_empty(self, why):
        if not self.instances and not self.stopping and self.on_empty is not None:
            self.on_empty(why)

    def free(self) -> int:
        return self.concurrency - len(self.running)

    def start_job(self, instance, job):
        uuid = job["uuid"]
        self.log.info("{url}: accepted job {uuid} ({type})", url=instance.url, uuid=uuid,
                      type=job["type"])
        d = defer.ensureDeferred(runner_jobs.process(self.reactor, instance.api, job,
                                                     self.work_dir, self.progress_every))
        self.running[uuid] = (instance, job, d)
        d.addBoth(self._job_done, uuid)

    def _job_done(self, result, uuid):
        instance, job, _ = self.running.pop(uuid)
        if isinstance(result, Failure):
            if result.check(defer.CancelledError):
                return None  # stop() aborts it
            self.log.failure("Job {uuid} crashed", result, uuid=uuid)
            result = "crashed"
        self.outcomes.append((uuid, result))
        self.log.info("{url}: job {uuid} {result}", url=instance.url, uuid=uuid, result=result)
        if self.on_job_done is not None:
            self.on_job_done(uuid, result)
        for other in self.instances:  # there may be more pending, here or elsewhere
            other.wake()
        return None

    def forget_instance(self, instance):
        self._drop(instance)
        if self.on_forget is not None:
            self.on_forget(instance.registration)
        self._maybe_empty(f"no registration left: {instance.url} removed this runner. "
                          f"Register it again (choir-runner register --url {instance.url} "
                          f"...), then start choir-runner server")

    async def abort(self, instance, job, reason=ABORT_REASON):
        try:
            await instance.api.abort(job["uuid"], job["jobToken"], reason)
            self.outcomes.append((job["uuid"], "aborted"))
            self.log.info("{url}: job {uuid} given back (aborted)", url=instance.url,
                          uuid=job["uuid"])
        except (ServerProblem, Unreachable) as e:
            self.log.warn("{url}: cannot abort job {uuid}: {e}", url=instance.url,
                          uuid=job["uuid"], e=e)

    async def stop(self, reason=ABORT_REASON):
        """Kill the running ffmpegs, give their jobs back, close every connection."""
        self.stopping = True
        running = list(self.running.values())
        for _, _, d in running:
            d.cancel()
        # their ffmpegs are dead once these fire (_job_done swallows the cancellation)
        await defer.gatherResults([d for _, _, d in running])
        await defer.gatherResults(
            [defer.ensureDeferred(self.abort(instance, job, reason)) for instance, job, _ in running]
            + [defer.ensureDeferred(i.stop()) for i in self.instances] + self._forgotten)


# -- main ------------------------------------------------------------------------------------

async def run(reactor, argv, out=None, err=None) -> int:
    """Runs one command; -> the exit status."""
    out, err = out or sys.stdout, err or sys.stderr
    try:
        options = parse_options(Options(), argv, PROGRAM, err)
    except SystemExit as e:
        return e.code or 0
    command, opts = options.subCommand, options.subOptions
    try:
        if command == "register":
            await register(reactor, opts, out)
        elif command == "unregister":
            await unregister(reactor, opts, out)
        elif command == "list-registered":
            list_registered(out)
        else:
            from .serve import serve  # (it imports this module)
            await serve(reactor, opts, err)
    except (RunnerError, ConfigError) as e:
        err.write(f"{PROGRAM}: {e}\n")
        return 1
    return 0


def _log_to(stream):
    from twisted.logger import globalLogBeginner, textFileLogObserver
    globalLogBeginner.beginLoggingTo([textFileLogObserver(stream)],
                                     redirectStandardIO=False)


def main(argv=None):
    from twisted.internet.task import react
    argv = sys.argv[1:] if argv is None else argv

    async def go(reactor):
        code = await run(reactor, argv)
        if code:
            raise SystemExit(code)
    react(lambda reactor: defer.ensureDeferred(go(reactor)))


if __name__ == "__main__":
    main()
