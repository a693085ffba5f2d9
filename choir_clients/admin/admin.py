"""choir-admin: the operator's tool, working on the daemon's store directly or over HTTP.

It opens ``choir.sqlite3`` in the daemon's data directory (``--data-dir``, default
./choir-data like ``twistd -n choir``); a running daemon notices the job changes through
the store's change feed (job_events), so the daemon need not be stopped.

    choir-admin tokens create | list | revoke TOKEN|PREFIX|ID
    choir-admin runners list | remove ID_OR_NAME
    choir-admin jobs list [--state ...] [--type ...] | show UUID | cancel UUID
    choir-admin media list | show ID | submit FILE [--name] [--webhook] [--resolutions]
    choir-admin media studio [--cut START:END] [--intro F] [--outro F] [--watermark F] ID
    choir-admin api-tokens create [--name] | list | revoke TOKEN|PREFIX
    choir-admin operator-tokens create [--name] | list | revoke ID

With ``--url URL --token TOKEN`` (or ``CHOIR_URL``/``CHOIR_TOKEN``) it manages a daemon on
another machine through its admin HTTP API instead (``admin_remote``), authorised by an
operator token made on the daemon's machine with ``operator-tokens create``. tokens,
runners, jobs and media list/show work so; api-tokens, operator-tokens and media submit
only on the data directory.

The store keeps only each token's hash: a token is printed once, by its ``create``; lists
show its prefix (``ptrrt-1a2b3c4d``), and ``revoke`` takes the token or that prefix. The
commands a ``create`` prints for others to run (``choir-runner register``, ``curl``) name
the daemon's real address (``admin_hints``).

Exit status: 0 on success, 1 on an operational error (one line on stderr), 2 on a usage
error. ``--json`` (before the command) prints JSON for scripts instead of tables.
"""
import json
import os
import sqlite3
import sys
import time

import attrs
from twisted.internet import defer
from twisted.python import usage

from choir_protocol.runners import jobs as J
from choir_protocol.runners.jobs import JobError, JobState, JobType
from choir_protocol.runners.publishing import media_state
from choir_protocol.runners.tokens import token_prefix
from choir_protocol.version import program_version

from . import hints
from ..cli import parse_options

DEFAULT_DATA_DIR = "./choir-data"
PROGRAM = "choir-admin"
URL_DEFAULT = ("[default: choir-admin's --url, else the address the daemon left in "
               "DATA_DIR/http-url, else http://<this host>:8000]")


class AdminError(Exception):
    """An operational error: reported as one line on stderr, exit status 1."""


# -- option parsing --------------------------------------------------------------------------

STATE_NAMES = {
    "pending": JobState.PENDING,
    "processing": JobState.PROCESSING,
    "completed": JobState.COMPLETED,
    "errored": JobState.ERRORED,
    "waiting": JobState.WAITING_FOR_PARENT_JOB,
    "waiting-for-parent": JobState.WAITING_FOR_PARENT_JOB,
    "cancelled": JobState.CANCELLED,
    "parent-errored": JobState.PARENT_ERRORED,
    "parent-cancelled": JobState.PARENT_CANCELLED,
    "completing": JobState.COMPLETING,
}
_STATE_CHOICES = ("pending, processing, completing, completed, errored, waiting, cancelled, "
                  "parent-errored, parent-cancelled")


def parse_states(text):
    out = []
    for word in filter(None, (w.strip().lower() for w in text.split(","))):
        if word.isdigit() and int(word) in JobState._value2member_map_:
            out.append(JobState(int(word)))
        elif word.replace("_", "-") in STATE_NAMES:
            out.append(STATE_NAMES[word.replace("_", "-")])
        else:
            raise usage.UsageError(f"unknown job state {word!r} (choose from {_STATE_CHOICES})")
    return out


def parse_types(text):
    out = []
    for word in filter(None, (w.strip() for w in text.split(","))):
        if word not in JobType.ALL:
            raise usage.UsageError(f"unknown job type {word!r} (choose from "
                                   f"{', '.join(sorted(JobType.ALL))})")
        out.append(word)
    return out


class _Options(usage.Options):
    def opt_version(self):
        """Print the version and exit."""
        print(program_version(PROGRAM))
        raise SystemExit(0)


class _Command(_Options):
    """A leaf command: its positional arguments are named by ``args`` (a tuple)."""

    args = ()

    def parseArgs(self, *args):
        if len(args) != len(self.args):
            if len(args) < len(self.args):
                raise usage.UsageError(
                    f"missing {' '.join(a.upper() for a in self.args[len(args):])}")
            extra = args[len(self.args):]
            if any(a.startswith("-") for a in extra):
                raise usage.UsageError(f"options go before {' '.join(a.upper() for a in self.args)}"
                                       f" (got {' '.join(extra)} after it)")
            raise usage.UsageError(f"unexpected argument(s): {' '.join(extra)}")
        for name, value in zip(self.args, args):
            self[name] = value

    def getSynopsis(self):
        synopsis = super().getSynopsis().split()
        names = [a.upper() for a in self.args]
        if synopsis[-len(names):] != names:  # (unless the synopsis names them already)
            synopsis += names
        return " ".join(synopsis)


class _Group(_Options):
    synopsis = ""

    def getSynopsis(self):
        return " ".join(super().getSynopsis().split())

    def postOptions(self):
        if self.subCommand is None:
            names = ", ".join(c[0] for c in self.subCommands)
            raise usage.UsageError(f"choose a command: {names}")


class TokenCreate(_Command):
    synopsis = "[--url URL] [--runner-name NAME]"
    longdesc = ("Create a registration token and print it with the command lines that the "
                "runner operator runs on the runner machine to register it (choir-runner's "
                "and PeerTube's peertube-runner's).")
    optParameters = [
        ["url", "u", None, "URL the runners reach this daemon at " + URL_DEFAULT],
        ["runner-name", "n", None,
         "Runner name to put in the printed register command [default: runner-<token end>]"],
    ]


class TokenList(_Command):
    longdesc = "List the registration tokens (live ones; --all adds the revoked ones)."
    optFlags = [["all", "a", "Include revoked tokens."]]


class TokenRevoke(_Command):
    longdesc = ("Revoke a registration token (the token, its prefix as 'list' shows it, or "
                "its id): no new runner can register with it. Runners already registered "
                "with it keep working (remove them with 'runners remove').")
    args = ("token",)


class TokensOptions(_Group):
    longdesc = ("Registration tokens let a runner register itself (choir-runner register "
                "--registration-token ..., or PeerTube's peertube-runner register).")
    subCommands = [
        ["create", None, TokenCreate, "Create a token and print the runner's register command."],
        ["list", None, TokenList, "List registration tokens."],
        ["revoke", None, TokenRevoke, "Revoke a token so no new runner can register with it."],
    ]


class RunnerList(_Command):
    longdesc = "List registered runners: version, address, last contact, jobs processing."


class RunnerRemove(_Command):
    longdesc = ("Unregister a runner (by id, id prefix or name): its token stops working and "
                "the jobs it was processing go back to pending for another runner.")
    args = ("id_or_name",)


class RunnersOptions(_Group):
    longdesc = "Runners registered with this daemon."
    subCommands = [
        ["list", None, RunnerList, "List registered runners."],
        ["remove", None, RunnerRemove, "Unregister a runner; its jobs go back to pending."],
    ]


class JobList(_Command):
    synopsis = "[--state STATES] [--type TYPES] [--limit N]"
    longdesc = ("List jobs, oldest first. STATES: comma-separated, from " + _STATE_CHOICES
                + ". TYPES: comma-separated, from " + ", ".join(sorted(JobType.ALL)) + ".")
    optParameters = [
        ["state", "s", None, "Only jobs in these states (comma-separated).", parse_states],
        ["type", "t", None, "Only jobs of these types (comma-separated).", parse_types],
        ["limit", "l", None, "Show at most N jobs.", int],
    ]


class JobShow(_Command):
    longdesc = "Show every field of a job (UUID or a unique prefix), its payload and children."
    args = ("uuid",)


class JobCancel(_Command):
    longdesc = ("Cancel a pending, processing or waiting job (UUID or a unique prefix); the "
                "children waiting for it become 'Parent job cancelled'. A running daemon "
                "notices it and the runner's next update of the job is refused.")
    args = ("uuid",)


class JobsOptions(_Group):
    longdesc = "Transcoding jobs for the PeerTube runners."
    subCommands = [
        ["list", None, JobList, "List jobs (filter with --state, --type)."],
        ["show", None, JobShow, "Show a job with its payload."],
        ["cancel", None, JobCancel, "Cancel a job and its waiting children."],
    ]


class MediaList(_Command):
    longdesc = "List media (recordings and uploads) with their input and output files."


class MediaShow(_Command):
    longdesc = "Show a media (ID or a unique prefix): inputs, outputs (sizes, paths) and jobs."
    args = ("id",)


def parse_resolutions(text):
    try:
        values = frozenset(int(r) for r in text.split(",") if r.strip())
    except ValueError:
        values = frozenset({0})
    if not values or not values <= set(J.ALL_RESOLUTIONS):
        raise usage.UsageError("--resolutions: comma-separated, from "
                               + ", ".join(map(str, J.ALL_RESOLUTIONS)))
    return values


class MediaSubmit(_Command):
    synopsis = "[--name NAME] [--webhook URL] [--resolutions LIST] FILE"
    longdesc = ("Submit a video or audio file for publishing: it is probed (what is not media "
                "is refused), copied into the data directory, and transcoding jobs are made "
                "for it: web video and HLS at each resolution up to its own (audio gets a "
                "cover and an audio merge). A running daemon tells its runners at once.")
    args = ("file",)
    optParameters = [
        ["name", "n", None, "Title of the media [default: the file name]."],
        ["webhook", "w", None, "URL to POST the media's JSON to when all its jobs ended."],
        ["resolutions", "r", "360,480,720", "Resolutions to make (the smaller side).",
         parse_resolutions],
    ]

    def postOptions(self):
        if self["webhook"] and not self["webhook"].startswith(("http://", "https://")):
            raise usage.UsageError("--webhook must be an http:// or https:// URL")
        if isinstance(self["resolutions"], str):
            self["resolutions"] = parse_resolutions(self["resolutions"])


def parse_cut(text):
    """``START:END`` in seconds, either side may be empty -> PeerTube's cut options."""
    start, sep, end = text.partition(":")
    if not sep:
        raise usage.UsageError(f"--cut {text}: START:END in seconds (12.5:60, :60 or 12.5:)")
    options = {}
    for key, value in (("start", start), ("end", end)):
        if value.strip():
            try:
                options[key] = float(value)
            except ValueError:
                raise usage.UsageError(f"--cut {text}: {value!r} is not a number of seconds")
    if not options:
        raise usage.UsageError("--cut: give a start, an end or both")
    return options


class MediaStudio(_Command):
    synopsis = "[--cut START:END] [--intro FILE] [--outro FILE] [--watermark FILE] ID"
    longdesc = ("Edit a published media as PeerTube's studio does: the tasks apply in the "
                "order given (cut: keep START..END seconds; intro/outro: a clip before/after; "
                "watermark: a picture in the top-right corner). A runner makes the edited "
                "max-quality file, which replaces the old one, then every rendition again. "
                "The media's jobs must all have ended. Over HTTP: POST "
                "/api/v1/media/ID/studio/edit.")
    args = ("id",)

    def __init__(self):
        super().__init__()
        self["tasks"] = []  # in command-line order: usage.Options calls opt_* in order

    def opt_cut(self, value):
        """START:END in seconds (either may be empty: :60 keeps the first minute)."""
        self["tasks"].append({"name": "cut", "options": parse_cut(value)})

    def _file_task(self, name, path):
        if not os.path.isfile(path):
            raise usage.UsageError(f"no such file {path!r}")
        self["tasks"].append({"name": name, "options": {"file": os.path.abspath(path)}})

    def opt_intro(self, path):
        """A clip to put before the media."""
        self._file_task("add-intro", path)

    def opt_outro(self, path):
        """A clip to put after the media."""
        self._file_task("add-outro", path)

    def opt_watermark(self, path):
        """A picture (PNG, JPEG) to show in the top-right corner."""
        self._file_task("add-watermark", path)

    def postOptions(self):
        if not self["tasks"]:
            raise usage.UsageError("nothing to do: give --cut, --intro, --outro or --watermark")


class MediaOptions(_Group):
    longdesc = ("Media: recordings and uploads, with the files the runners produced. Over "
                "HTTP: POST /api/v1/media with an API token (see 'api-tokens').")
    subCommands = [
        ["list", None, MediaList, "List media."],
        ["show", None, MediaShow, "Show a media's files and jobs."],
        ["submit", None, MediaSubmit, "Submit a file to transcode and publish."],
        ["studio", None, MediaStudio, "Cut a media, add an intro, an outro or a watermark."],
    ]


class ApiTokenCreate(_Command):
    synopsis = "[--name NAME] [--url URL]"
    longdesc = "Create an API token for the media HTTP API (uploads and listing)."
    optParameters = [["name", "n", "api", "What the token is for (shown by 'list')."],
                     ["url", "u", None, "URL to name in the printed curl " + URL_DEFAULT]]


class ApiTokenList(_Command):
    longdesc = "List API tokens (live ones; --all adds the revoked ones)."
    optFlags = [["all", "a", "Include revoked tokens."]]


class ApiTokenRevoke(_Command):
    longdesc = ("Revoke an API token (the token, or its prefix as 'list' shows it): the HTTP "
                "API refuses it from then on.")
    args = ("token",)


class ApiTokensOptions(_Group):
    longdesc = ("API tokens authorise uploads to the media HTTP API "
                "(Authorization: Bearer TOKEN).")
    subCommands = [
        ["create", None, ApiTokenCreate, "Create an API token."],
        ["list", None, ApiTokenList, "List API tokens."],
        ["revoke", None, ApiTokenRevoke, "Revoke an API token."],
    ]


class OperatorTokenCreate(_Command):
    synopsis = "[--name NAME] [--url URL]"
    longdesc = ("Create an operator token for the admin HTTP API (choir-admin --url ... "
                "--token ...). It is printed once, alone on the last line; the store keeps "
                "only its hash.")
    optParameters = [["name", "n", "operator", "Whose or what the token is (shown by 'list')."],
                     ["url", "u", None, "URL to name in the printed command " + URL_DEFAULT]]


class OperatorTokenList(_Command):
    longdesc = "List operator tokens (live ones; --all adds the revoked ones)."
    optFlags = [["all", "a", "Include revoked tokens."]]


class OperatorTokenRevoke(_Command):
    longdesc = "Revoke an operator token (by id or id prefix): the admin API refuses it."
    args = ("id",)


class OperatorTokensOptions(_Group):
    longdesc = ("Operator tokens authorise the admin HTTP API (Authorization: Bearer TOKEN), "
                "which choir-admin --url uses to manage this daemon from another machine.")
    subCommands = [
        ["create", None, OperatorTokenCreate, "Create an operator token."],
        ["list", None, OperatorTokenList, "List operator tokens."],
        ["revoke", None, OperatorTokenRevoke, "Revoke an operator token."],
    ]


class Options(_Group):
    synopsis = "Usage: choir-admin [--data-dir DIR | --url URL --token TOKEN] [--json]"
    longdesc = ("Administer a choir daemon through its store (choir.sqlite3 in the data "
                "directory), or with --url and --token through its admin HTTP API from "
                "another machine. A running daemon picks the changes up by itself. Run "
                "'choir-admin COMMAND --help' for a command's options.")
    optParameters = [
        ["data-dir", "d", DEFAULT_DATA_DIR,
         "The daemon's data directory (the --data-dir of twistd choir)."],
        ["url", None, None,
         "Manage the daemon at this URL over HTTP (e.g. http://choir.example:8000) "
         "[default: $CHOIR_URL]."],
        ["token", None, None,
         "Operator token for --url ('operator-tokens create' on the daemon's machine) "
         "[default: $CHOIR_TOKEN]."],
    ]
    optFlags = [["json", "j", "Print JSON (for scripts) instead of tables."]]
    subCommands = [
        ["tokens", None, TokensOptions, "Registration tokens: create, list, revoke."],
        ["runners", None, RunnersOptions, "Registered runners: list, remove."],
        ["jobs", None, JobsOptions, "Jobs: list, show, cancel."],
        ["media", None, MediaOptions, "Media: list, show, submit."],
        ["api-tokens", None, ApiTokensOptions, "API tokens for HTTP uploads: create, list, "
                                               "revoke."],
        ["operator-tokens", None, OperatorTokensOptions, "Operator tokens for the admin HTTP "
                                                         "API: create, list, revoke."],
    ]

    def postOptions(self):
        super().postOptions()
        explicit_token = self["token"] is not None
        self["url"] = self["url"] or os.environ.get("CHOIR_URL") or None
        self["token"] = self["token"] or os.environ.get("CHOIR_TOKEN") or None
        if self["url"] is None:
            if explicit_token:
                raise usage.UsageError("--token goes with --url (the daemon to manage)")
            return
        if not self["url"].startswith(("http://", "https://")):
            raise usage.UsageError("--url must be an http:// or https:// URL")
        if not self["token"]:
            raise usage.UsageError("--url needs an operator token: --token TOKEN (or "
                                   "CHOIR_TOKEN); make one with 'choir-admin operator-tokens "
                                   "create' on the daemon's machine")

    def getUsage(self, width=None):
        return super().getUsage(width) + (
            "\nExit status: 0 success, 1 operational error (unknown token/runner/job, job not "
            "cancellable, no store), 2 usage error.\n")


# -- output ----------------------------------------------------------------------------------

def ago(t, now):
    if t is None:
        return "never"
    s = max(0.0, now - t)
    if s < 10:
        return "just now"
    if s < 60:
        return f"{int(s)} s ago"
    if s < 3600:
        return f"{int(s // 60)} min ago"
    if s < 86400:
        return f"{int(s // 3600)} h ago"
    return f"{int(s // 86400)} d ago"


def human_size(n):
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def table(headers, rows):
    rows = [["-" if v is None else str(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    for r in rows:
        lines.append("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
    return "\n".join(lines)


def _resolve(items, value, what, keys=("id",)):
    """The one item whose key equals ``value``, else whose id starts with it."""
    for key in keys:
        exact = [i for i in items if getattr(i, key) == value]
        if exact:
            return exact[0]
    prefix = [i for i in items if getattr(i, keys[0]).startswith(value)] if value else []
    if len(prefix) == 1:
        return prefix[0]
    if len(prefix) > 1:
        raise AdminError(f"{what} {value!r} is ambiguous ({len(prefix)} match); "
                         f"give more characters")
    raise AdminError(f"unknown {what} {value!r}")


def _live_token(tokens, value, what):
    """The live token that ``value`` names: the token or its prefix (the store keeps only
    a token's hash; lists show its prefix), else its id or a start of it."""
    matches = [t for t in tokens if t.prefix in (value, token_prefix(value))]
    if not matches and value:
        matches = [t for t in tokens if (getattr(t, "id", None) or "").startswith(value)]
    if len(matches) > 1:
        raise AdminError(f"{what} {value!r} is ambiguous ({len(matches)} match); "
                         f"give more characters")
    if not matches:
        raise AdminError(f"unknown or already revoked {what} {value!r}")
    return matches[0]


# -- commands --------------------------------------------------------------------------------

class Admin:
    def __init__(self, store, out, as_json, now, data_dir="."):
        self.store, self.out, self.as_json, self.now = store, out, as_json, now
        self.data_dir = os.path.abspath(data_dir)

    def emit(self, data, text):
        if self.as_json:
            self.out.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
        else:
            self.out.write(text.rstrip("\n") + "\n")

    # tokens
    async def tokens_create(self, opts):
        where = hints.daemon_url(opts["url"], data_dir=self.data_dir)
        tok = await self.store.create_registration_token()
        self.emit_new_token(tok.token, tok.id, J.iso(tok.created_at), where,
                            opts["runner-name"])

    def emit_new_token(self, token, token_id, created_at, where, runner_name):
        commands = hints.register_commands(where.url, token,
                                           runner_name or f"runner-{token[-6:]}")
        self.emit({"token": token, "id": token_id, "createdAt": created_at, "url": where.url,
                   "urlGuessed": where.guessed, "registerCommand": commands["choir-runner"],
                   "registerCommands": commands},
                  f"Registration token: {token}\n(shown only now: the daemon keeps only its "
                  f"hash; 'tokens list' shows it as {token_prefix(token)})\n\n"
                  + hints.registration_text(commands, where))

    async def tokens_list(self, opts):
        tokens = await self.store.list_registration_tokens(include_revoked=opts["all"])
        used = {}
        for r in await self.store.list_runners():
            used[r.registration_token_hash] = used.get(r.registration_token_hash, 0) + 1
        self.emit_tokens([(t.id, t.prefix, t.created_at, t.revoked, used.get(t.token_hash, 0))
                          for t in tokens])

    def emit_tokens(self, tokens):
        """[(id, prefix, created at, revoked, runners registered with it)]"""
        self.emit([{"id": i, "prefix": p, "createdAt": J.iso(c), "revoked": r, "runners": n}
                   for i, p, c, r, n in tokens],
                  table(["ID", "PREFIX", "CREATED", "REVOKED", "RUNNERS"],
                        [[i[:8], p, ago(c, self.now), "yes" if r else "no", n]
                         for i, p, c, r, n in tokens])
                  if tokens else "No registration tokens (create one with 'tokens create').")

    def emit_revoked_token(self, token_id, prefix):
        self.emit({"revoked": token_id, "prefix": prefix},
                  f"Revoked registration token {prefix} ({token_id}).")

    async def tokens_revoke(self, opts):
        tok = _live_token(await self.store.list_registration_tokens(), opts["token"],
                          "registration token")
        if not await self.store.revoke_registration_token_id(tok.id):
            raise AdminError(f"registration token {tok.prefix} was revoked meanwhile")
        self.emit_revoked_token(tok.id, tok.prefix)

    # runners
    async def _processing_by_runner(self):
        counts = {}
        for job in await self.store.list_jobs(states=[JobState.PROCESSING]):
            counts[job.runner_id] = counts.get(job.runner_id, 0) + 1
        return counts

    async def runners_list(self, opts):
        runners = await self.store.list_runners()
        counts = await self._processing_by_runner()
        self.emit([{"id": r.id, "name": r.name, "description": r.description,
                    "version": r.version, "ip": r.ip, "lastContact": J.iso(r.last_contact),
                    "createdAt": J.iso(r.created_at), "jobsProcessing": counts.get(r.id, 0)}
                   for r in runners],
                  table(["ID", "NAME", "VERSION", "IP", "LAST CONTACT", "PROCESSING"],
                        [[r.id[:8], r.name, r.version, r.ip, ago(r.last_contact, self.now),
                          counts.get(r.id, 0)] for r in runners])
                  if runners else "No registered runners.")

    async def runners_remove(self, opts):
        runner = _resolve(await self.store.list_runners(), opts["id_or_name"], "runner",
                          keys=("id", "name"))
        processing = (await self._processing_by_runner()).get(runner.id, 0)
        if not await self.store.unregister_runner(runner.id):
            raise AdminError(f"runner {runner.name!r} was removed meanwhile")
        self.emit({"removed": runner.id, "name": runner.name, "jobsRequeued": processing},
                  f"Removed runner {runner.name} ({runner.id}); {processing} job(s) it was "
                  f"processing went back to pending.")

    # jobs
    async def _job(self, value):
        job = await self.store.get_job(value)
        if job is None:
            job = _resolve(await self.store.list_jobs() if len(value) >= 4 else [], value,
                           "job", keys=("uuid",))
        return job

    async def _runner_names(self):
        return {r.id: r.name for r in await self.store.list_runners()}

    def _job_dict(self, job, names):
        d = job.to_wire()
        d.update({"parentUuid": job.parent_uuid, "runnerId": job.runner_id,
                  "runnerName": names.get(job.runner_id), "mediaId": job.media_id})
        return d

    async def jobs_list(self, opts):
        jobs = await self.store.list_jobs(states=opts["state"], types=opts["type"],
                                          limit=opts["limit"])
        names = await self._runner_names()
        self.emit([self._job_dict(j, names) for j in jobs],
                  table(["UUID", "TYPE", "STATE", "PROGRESS", "FAILURES", "PRIORITY", "RUNNER",
                         "AGE"],
                        [[j.uuid[:8], j.type, j.state.label,
                          None if j.progress is None else f"{j.progress}%", j.failures,
                          j.priority, names.get(j.runner_id, j.runner_id and j.runner_id[:8]),
                          ago(j.created_at, self.now)] for j in jobs])
                  if jobs else "No jobs match.")

    async def jobs_show(self, opts):
        job = await self._job(opts["uuid"])
        names = await self._runner_names()
        children = await self.store.children(job.uuid)
        d = self._job_dict(job, names)
        d["privatePayload"] = job.private_payload
        d["children"] = [{"uuid": c.uuid, "type": c.type, "state": c.state.label}
                         for c in children]
        runner = names.get(job.runner_id, job.runner_id)
        lines = [f"{k + ':':<14}{v}" for k, v in (
            ("UUID", job.uuid), ("Type", job.type),
            ("State", f"{job.state.label} ({int(job.state)})"),
            ("Progress", "-" if job.progress is None else f"{job.progress}%"),
            ("Failures", job.failures), ("Error", job.error or "-"),
            ("Priority", job.priority), ("Runner", runner or "-"),
            ("Parent", job.parent_uuid or "-"), ("Media", job.media_id or "-"),
            ("Created", f"{J.iso(job.created_at)} ({ago(job.created_at, self.now)})"),
            ("Updated", f"{J.iso(job.updated_at)} ({ago(job.updated_at, self.now)})"),
            ("Started", J.iso(job.started_at) or "-"),
            ("Finished", J.iso(job.finished_at) or "-"))]
        lines.append("Payload:")
        lines += ["  " + ln for ln in json.dumps(job.payload, indent=2).splitlines()]
        if job.private_payload:
            lines.append("Private payload:")
            lines += ["  " + ln for ln in json.dumps(job.private_payload, indent=2).splitlines()]
        if children:
            lines.append("Children:")
            lines += ["  " + ln for ln in table(["UUID", "TYPE", "STATE"], [
                [c.uuid, c.type, c.state.label] for c in children]).splitlines()]
        self.emit(d, "\n".join(lines))

    async def jobs_cancel(self, opts):
        from choir_twisted.store.store import StaleJob
        job = await self._job(opts["uuid"])
        children = await self.store.children(job.uuid)
        try:
            tr = J.cancel(job, self.store.clock(), children)
            await self.store.save(tr)
        except JobError as e:
            raise AdminError(e.detail)
        except StaleJob:
            raise AdminError(f"job {job.uuid} changed while cancelling it; look again "
                             f"with 'jobs show {job.uuid}'")
        self.emit({"cancelled": job.uuid, "previousState": tr.previous_state.label,
                   "parentCancelled": [c.uuid for c in tr.children]},
                  f"Cancelled job {job.uuid} (was {tr.previous_state.label.lower()})"
                  + (f"; {len(tr.children)} waiting child job(s) parent-cancelled."
                     if tr.children else "."))

    # media
    async def media_list(self, opts):
        rows, data = [], []
        for m in await self.store.list_media():
            files = await self.store.media_files(m.id)
            ins = [f for f in files if f.role == "input"]
            outs = [f for f in files if f.role == "output"]
            size = sum(f.size or 0 for f in files)
            rows.append([m.id[:8], m.kind, m.name, len(ins), len(outs), human_size(size),
                         ago(m.created_at, self.now)])
            data.append({"id": m.id, "kind": m.kind, "name": m.name, "path": m.path,
                         "createdAt": J.iso(m.created_at), "inputs": len(ins),
                         "outputs": len(outs), "size": size})
        self.emit(data, table(["ID", "KIND", "NAME", "INPUTS", "OUTPUTS", "SIZE", "AGE"], rows)
                  if rows else "No media.")

    async def media_show(self, opts):
        m = await self.store.get_media(opts["id"])
        if m is None:
            m = _resolve(await self.store.list_media(), opts["id"], "media")
        files = await self.store.media_files(m.id)
        jobs = await self.store.media_jobs(m.id)
        state = media_state(jobs)
        if m.webhook_sent_at is not None:
            hook = f"{m.webhook or 'the daemon’s --webhook'} (delivered {J.iso(m.webhook_sent_at)})"
        elif m.webhook_error is not None:
            hook = f"{m.webhook or 'the daemon’s --webhook'} (failed: {m.webhook_error})"
        else:
            hook = m.webhook or "-"
        d = {"id": m.id, "kind": m.kind, "name": m.name, "path": m.path, "probe": m.probe,
             "state": state, "endedAt": J.iso(m.ended_at), "webhook": m.webhook,
             "webhookSentAt": J.iso(m.webhook_sent_at), "webhookError": m.webhook_error,
             "createdAt": J.iso(m.created_at),
             "files": [{"id": f.id, "role": f.role, "name": f.name, "path": f.path,
                        "size": f.size, "createdAt": J.iso(f.created_at)} for f in files],
             "jobs": [{"uuid": j.uuid, "type": j.type, "state": j.state.label} for j in jobs]}
        lines = [f"{k + ':':<10}{v}" for k, v in (
            ("ID", m.id), ("Kind", m.kind), ("Name", m.name), ("Path", m.path or "-"),
            ("State", state + (f", ended {J.iso(m.ended_at)}" if m.ended_at else "")),
            ("Webhook", hook),
            ("Created", f"{J.iso(m.created_at)} ({ago(m.created_at, self.now)})"))]
        if m.probe:
            lines.append("Probe:")
            lines += ["  " + ln for ln in json.dumps(m.probe, indent=2).splitlines()]
        for role, title in (("input", "Inputs"), ("output", "Outputs")):
            fs = [f for f in files if f.role == role]
            lines.append(f"{title}:" + ("" if fs else " none"))
            if fs:
                lines += ["  " + ln for ln in table(["NAME", "SIZE", "PATH"], [
                    [f.name, human_size(f.size), f.path] for f in fs]).splitlines()]
        lines.append("Jobs:" + ("" if jobs else " none"))
        if jobs:
            lines += ["  " + ln for ln in table(["UUID", "TYPE", "RESOLUTION", "STATE"], [
                [j.uuid, j.type, (j.payload.get("output") or {}).get("resolution"),
                 j.state.label + (f" {j.progress}%" if j.progress is not None else "")]
                for j in jobs]).splitlines()]
        self.emit(d, "\n".join(lines))


    async def media_submit(self, opts):
        from choir_protocol.runners.publishing import NotMedia
        from choir_twisted.publishing.media_errors import not_media_reason
        from choir_twisted.publishing.publisher import submit_media
        path = opts["file"]
        if not os.path.isfile(path):
            raise AdminError(f"no such file {path!r}")
        name = opts["name"] or os.path.splitext(os.path.basename(path))[0]
        settings = attrs.evolve(J.DEFAULT_SETTINGS, resolutions=opts["resolutions"])
        try:
            media, jobs = await submit_media(self.store, self.data_dir, os.path.abspath(path),
                                             name, opts["webhook"], settings=settings)
        except NotMedia as e:  # ffprobe's words name the file again: once is enough
            reason = not_media_reason(e, path, what=path)
            raise AdminError(reason if reason.startswith(path) else f"{path}: {reason}")
        rows = [[j.uuid, j.type, (j.payload.get("output") or {}).get("resolution"),
                 j.state.label] for j in jobs]
        self.emit({"id": media.id, "name": media.name, "probe": media.probe,
                   "jobs": [{"uuid": j.uuid, "type": j.type, "state": j.state.label,
                             "resolution": r[2]} for j, r in zip(jobs, rows)]},
                  f"Media {media.id} ({media.name}): {len(jobs)} jobs\n"
                  + table(["UUID", "TYPE", "RESOLUTION", "STATE"], rows))

    async def media_studio(self, opts):
        from choir_protocol.runners.studio import StudioError
        from choir_twisted.publishing.studio import NotEditable, edit_media
        m = await self.store.get_media(opts["id"])
        if m is None:
            m = _resolve(await self.store.list_media(), opts["id"], "media")
        uploads = {t["options"]["file"]: (t["options"]["file"], t["options"]["file"])
                   for t in opts["tasks"] if "file" in t["options"]}
        try:
            jobs = await edit_media(self.store, self.data_dir, m, opts["tasks"], uploads)
        except (StudioError, NotEditable) as e:
            raise AdminError(f"media {m.id}: {e}")
        self.emit_edit(m.id, [{"uuid": j.uuid, "type": j.type, "state": j.state.label,
                               "resolution": (j.payload.get("output") or {}).get("resolution")}
                              for j in jobs])

    def emit_edit(self, media_id, jobs):
        self.emit({"id": media_id, "jobs": jobs},
                  f"Media {media_id}: an edit of {len(jobs)} jobs (the studio job, then the "
                  f"renditions again)\n" + table(["UUID", "TYPE", "RESOLUTION", "STATE"], [
                      [j["uuid"], j["type"], j["resolution"], j["state"]] for j in jobs]))

    # API tokens
    async def api_tokens_create(self, opts):
        where = hints.daemon_url(opts["url"], data_dir=self.data_dir)
        tok = await self.store.create_api_token(opts["name"])
        command = hints.upload_command(where.url, tok.token)
        self.emit({"token": tok.token, "name": tok.name, "createdAt": J.iso(tok.created_at),
                   "url": where.url, "urlGuessed": where.guessed, "uploadCommand": command},
                  f"API token: {tok.token}\n(shown only now: the daemon keeps only its "
                  f"hash)\n\n" + hints.upload_text(command, where))

    async def api_tokens_list(self, opts):
        tokens = await self.store.list_api_tokens(include_revoked=opts["all"])
        self.emit([{"prefix": t.prefix, "name": t.name, "createdAt": J.iso(t.created_at),
                    "revoked": t.revoked} for t in tokens],
                  table(["PREFIX", "NAME", "CREATED", "REVOKED"],
                        [[t.prefix, t.name, ago(t.created_at, self.now),
                          "yes" if t.revoked else "no"] for t in tokens])
                  if tokens else "No API tokens (create one with 'api-tokens create').")

    async def api_tokens_revoke(self, opts):
        tok = _live_token(await self.store.list_api_tokens(), opts["token"], "API token")
        if not await self.store.revoke_api_token_hash(tok.token_hash):
            raise AdminError(f"API token {tok.prefix} was revoked meanwhile")
        self.emit({"revoked": tok.prefix, "name": tok.name},
                  f"Revoked API token {tok.prefix} ({tok.name}).")

    # operator tokens
    async def operator_tokens_create(self, opts):
        where = hints.daemon_url(opts["url"], data_dir=self.data_dir)
        tok, secret = await self.store.create_operator_token(opts["name"])
        self.emit({"id": tok.id, "name": tok.name, "token": secret,
                   "createdAt": J.iso(tok.created_at), "url": where.url,
                   "urlGuessed": where.guessed},
                  f"Operator token {tok.id} ({tok.name}): shown only now, the daemon keeps "
                  f"only its hash.\n" + hints.operator_text(where) + f"\n{secret}\n")

    async def operator_tokens_list(self, opts):
        tokens = await self.store.list_operator_tokens(include_revoked=opts["all"])
        self.emit([{"id": t.id, "name": t.name, "createdAt": J.iso(t.created_at),
                    "lastUsedAt": J.iso(t.last_used_at), "revoked": t.revoked} for t in tokens],
                  table(["ID", "NAME", "CREATED", "LAST USED", "REVOKED"],
                        [[t.id[:8], t.name, ago(t.created_at, self.now),
                          ago(t.last_used_at, self.now), "yes" if t.revoked else "no"]
                         for t in tokens])
                  if tokens else "No operator tokens (create one with 'operator-tokens "
                                 "create').")

    async def operator_tokens_revoke(self, opts):
        tok = _resolve(await self.store.list_operator_tokens(include_revoked=True), opts["id"],
                       "operator token")
        if not await self.store.revoke_operator_token(tok.id):
            raise AdminError(f"operator token {tok.id} is already revoked")
        self.emit({"revoked": tok.id, "name": tok.name},
                  f"Revoked operator token {tok.id} ({tok.name}).")


# which commands may create the database (in an existing data directory)
WRITE_CREATES = {("tokens", "create"), ("api-tokens", "create"), ("media", "submit"),
                 ("operator-tokens", "create")}


async def open_store(data_dir, may_create):
    from choir_twisted.store.store import DB_NAME, Store
    path = os.path.join(data_dir, DB_NAME)
    if not os.path.isdir(data_dir):
        raise AdminError(f"no data directory {os.path.abspath(data_dir)!r}: start the daemon "
                         f"(twistd -n choir --data-dir ...) or pass --data-dir")
    if not may_create and not os.path.isfile(path):
        raise AdminError(f"no store {os.path.abspath(path)!r}: the daemon has not run with "
                         f"this data directory (pass --data-dir?)")
    return await Store.open(path)


async def run(argv, out=None, err=None, now=None):
    """Runs one command; -> the exit status. ``out``/``err`` default to sys.stdout/stderr."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        config = parse_options(Options(), argv, PROGRAM, err)
    except SystemExit as e:  # a usage error (2), or --help (0)
        return e.code or 0
    group, leaf = config.subCommand, config.subOptions.subCommand
    if config["url"] is not None:
        return await _run_remote(config, out, err, time.time() if now is None else now)
    store = None
    try:
        store = await open_store(config["data-dir"], (group, leaf) in WRITE_CREATES)
        admin = Admin(store, out, config["json"], time.time() if now is None else now,
                      config["data-dir"])
        await getattr(admin, f"{group.replace('-', '_')}_{leaf}")(config.subOptions.subOptions)
    except AdminError as e:
        err.write(f"choir-admin: {e}\n")
        return 1
    except sqlite3.Error as e:  # locked too long, not a database, ...
        err.write(f"choir-admin: store {os.path.join(config['data-dir'], 'choir.sqlite3')}: "
                  f"{e}\n")
        return 1
    finally:
        if store is not None:
            store.close()
    return 0


async def _run_remote(config, out, err, now):
    """A command over the daemon's admin HTTP API (``admin_remote``)."""
    from .remote import RemoteAdmin
    group, leaf = config.subCommand, config.subOptions.subCommand
    remote = RemoteAdmin(config["url"], config["token"], out, config["json"], now)
    try:
        command = getattr(remote, f"{group.replace('-', '_')}_{leaf}", None)
        if command is None:
            raise AdminError(f"'{group} {leaf}' works only on the data directory: run it on "
                             f"the daemon's machine, without --url")
        await command(config.subOptions.subOptions)
    except AdminError as e:
        err.write(f"choir-admin: {e}\n")
        return 1
    finally:
        await remote.close()
    return 0


def main(argv=None):
    from twisted.internet.task import react
    argv = sys.argv[1:] if argv is None else argv

    async def go(reactor):
        code = await run(argv)
        if code:
            raise SystemExit(code)
    react(lambda reactor: defer.ensureDeferred(go(reactor)))


if __name__ == "__main__":
    main()
