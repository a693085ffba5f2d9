"""What every fuzz target shares: the outcome of a case, a watcher of the daemon's log, a
hand-pumped reactor, and the two ways of running a target (a test that stops at the first
bug and shrinks it; a tally for bench/fuzz.py that counts them all).

A target is a hypothesis strategy of cases and a context manager that yields ``run(case)
-> Outcome``. A case is fine when it raised nothing but what the protocol allows (events,
``ProtocolError``, an HTTP 4xx), logged no failure and was answered with no 5xx.
"""
import contextlib
import gc
import re
import time
import traceback

import attrs
import hypothesis
from hypothesis import HealthCheck, Phase, given, settings
from twisted.internet import reactor
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from choir_protocol.errors import ProtocolError

HANG_SECONDS = 10.0  # no answer within this much wall time: the daemon is stuck


@attrs.define
class Outcome:
    tracebacks: list = attrs.Factory(list)  # texts: raised, logged as failures, hangs
    statuses: list = attrs.Factory(list)  # HTTP status codes answered

    @property
    def server_errors(self) -> list:
        """5xx, but 501: HTTP's answer to a method it does not know (``get``, ``TRACE``)."""
        return [s for s in self.statuses if s >= 500 and s != 501]

    @property
    def ok(self) -> bool:
        return not self.tracebacks and not self.server_errors

    def describe(self) -> str:
        return "\n".join([f"statuses {self.statuses}", *self.tracebacks])


@attrs.frozen
class Target:
    name: str
    cases: object  # a hypothesis strategy
    open: object  # () -> context manager yielding run(case) -> Outcome


def pure(name, cases, run):
    """A target of a sans-IO parser: ``run(case)`` may raise only ProtocolError."""
    def guarded(case):
        outcome = Outcome()
        try:
            run(case)
        except ProtocolError:
            pass
        except Exception:
            outcome.tracebacks.append(traceback.format_exc())
        return outcome
    return Target(name, cases, lambda: contextlib.nullcontext(guarded))


# -- the daemon's log ------------------------------------------------------------------------

class LogWatch:
    """Records what the daemon logs as a failure: any event with a traceback (log.failure,
    an unhandled error in a Deferred, Site's 'Unhandled Error') or at error/critical level."""

    def __init__(self):
        self.problems = []

    def __call__(self, event):
        failure = event.get("log_failure")
        if failure is None and event.get("log_level") not in (LogLevel.error, LogLevel.critical):
            return
        try:
            text = formatEvent(event)
        except Exception:  # a bad format string is a bug too, but say what was logged
            text = repr(event.get("log_format"))
        if failure is not None:
            text += "\n" + failure.getTraceback()
        self.problems.append(text)

    def take(self, collect=False) -> list:
        """What was logged since the last take; ``collect``: first let the garbage collector
        find Deferreds that died holding an error (they log as they are freed)."""
        if collect:
            gc.collect()
        problems, self.problems = self.problems, []
        return problems

    def __enter__(self):
        globalLogPublisher.addObserver(self)
        return self

    def __exit__(self, *exc):
        globalLogPublisher.removeObserver(self)


# -- the reactor, pumped by hand ----------------------------------------------------------------

@contextlib.contextmanager
def running_thread_pools():
    """The reactor's thread pool (``deferToThread``) runs while it is pumped by hand: it
    only starts by itself when ``reactor.run()`` does."""
    pool = reactor.getThreadPool()
    started_here = not pool.started
    if started_here:
        pool.start()
    try:
        yield
    finally:
        if started_here:  # a stopped pool cannot start again: the next one is a new one
            reactor._stopThreadPool()


def threads_idle(pools) -> bool:
    """No work queued or running in ``pools`` (ThreadPools) and none of their results waiting
    for the reactor. A worker hands its result over before it counts as idle."""
    for pool in pools:
        stats = pool._team.statistics()
        if stats.busyWorkerCount or stats.backloggedWorkCount:
            return False
    return not reactor.threadCallQueue


class Hang(Exception):
    pass


def pump(done, seconds=HANG_SECONDS, what="the daemon"):
    """Turns the reactor until ``done()``; Hang after ``seconds`` of wall time. Each turn
    waits at most 10 ms, and returns at once when a thread hands a result over."""
    deadline = time.monotonic() + seconds
    while not done():
        if time.monotonic() > deadline:
            raise Hang(f"{what} did not settle within {seconds:g} s")
        reactor.iterate(0.01)


def settle(pools, seconds=HANG_SECONDS):
    """Turns the reactor until nothing is in flight in ``pools`` and it has run what was
    ready (timers due now, results handed over)."""
    def quiet():
        reactor.iterate(0)
        return threads_idle(pools)
    pump(quiet, seconds)
    reactor.iterate(0)


# -- running a target ---------------------------------------------------------------------------

SUPPRESS = list(HealthCheck)


def check(target: Target, max_examples: int) -> None:
    """For the test suite: the first case that is not ok fails the test, shrunk, with its
    outcome. Derandomized and without a database, so CI sees the same cases every run."""
    with target.open() as run:
        @settings(max_examples=max_examples, deadline=None, derandomize=True, database=None,
                  suppress_health_check=SUPPRESS)
        @given(target.cases)
        def case(c):
            outcome = run(c)
            assert outcome.ok, outcome.describe()
        case()


def signature(outcome: Outcome) -> str:
    """What tells one bug from another: the last line of each traceback (the exception and
    its message, numbers blurred), or the 5xx statuses."""
    lines = [t.strip().splitlines()[-1] if t.strip() else "" for t in outcome.tracebacks]
    return re.sub(r"\d+", "N", " / ".join(lines) or f"statuses {outcome.server_errors}")[:300]


@attrs.define
class Tally:
    target: str
    cases: int = 0
    tracebacks: int = 0
    server_errors: int = 0
    seconds: float = 0.0
    examples: dict = attrs.Factory(dict)  # signature -> (case, outcome, how many)

    def add(self, case, outcome: Outcome, keep=10) -> None:
        self.cases += 1
        self.tracebacks += len(outcome.tracebacks)
        self.server_errors += len(outcome.server_errors)
        if outcome.ok:
            return
        key = signature(outcome)
        if key in self.examples:
            first, seen, count = self.examples[key]
            self.examples[key] = (first, seen, count + 1)
        elif len(self.examples) < keep:
            self.examples[key] = (case, outcome, 1)


BATCH = 10_000  # cases per hypothesis run: its record of the cases tried grows with them


def tally(target: Target, cases: int, seed: int = 0) -> Tally:
    """For bench/fuzz.py: ``cases`` generated cases (generation only: nothing is shrunk, so a
    bug is counted each time it is met), every outcome counted. The cases are drawn in
    batches, each from a seed of its own (the same ones for the same ``seed``)."""
    result = Tally(target.name)
    start = time.monotonic()
    with target.open() as run:
        for batch, first in enumerate(range(0, cases, BATCH)):
            @hypothesis.seed(seed * 1_000_003 + batch)
            @settings(max_examples=min(BATCH, cases - first), deadline=None, database=None,
                      phases=[Phase.generate], suppress_health_check=SUPPRESS)
            @given(target.cases)
            def case(c):
                result.add(c, run(c))
            case()
    result.seconds = time.monotonic() - start
    return result
