"""choir-admin's command line: the groups (tokens, runners, jobs, media, api-tokens,
operator-tokens), their commands and the checks of their arguments."""
import os

from twisted.python import usage

from choir_protocol.runners import jobs as J
from choir_protocol.runners.jobs import JobState, JobType

from ..version import program_version

DEFAULT_DATA_DIR = "./choir-data"
PROGRAM = "choir-admin"
URL_DEFAULT = ("[default: choir-admin's --url, else the address the daemon left in "
               "DATA_DIR/http-url, else http://<this host>:8000]")


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


class _TokenList(_Command):
    optFlags = [["all", "a", "Include revoked tokens."]]


class _NamedTokenCreate(_Command):  # API and operator tokens: named for what they are for
    synopsis = "[--name NAME] [--url URL]"


def _token_commands(what, create, list_, revoke):
    """A token group's subCommands: ``what`` is "API token", "operator token", ..."""
    return [["create", None, create, f"Create an {what}."],
            ["list", None, list_, f"List {what}s."],
            ["revoke", None, revoke, f"Revoke an {what}."]]


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


class TokenList(_TokenList):
    longdesc = "List the registration tokens (live ones; --all adds the revoked ones)."


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


class ApiTokenCreate(_NamedTokenCreate):
    longdesc = "Create an API token for the media HTTP API (uploads and listing)."
    optParameters = [["name", "n", "api", "What the token is for (shown by 'list')."],
                     ["url", "u", None, "URL to name in the printed curl " + URL_DEFAULT]]


class ApiTokenList(_TokenList):
    longdesc = "List API tokens (live ones; --all adds the revoked ones)."


class ApiTokenRevoke(_Command):
    longdesc = ("Revoke an API token (the token, or its prefix as 'list' shows it): the HTTP "
                "API refuses it from then on.")
    args = ("token",)


class ApiTokensOptions(_Group):
    longdesc = ("API tokens authorise uploads to the media HTTP API "
                "(Authorization: Bearer TOKEN).")
    subCommands = _token_commands("API token", ApiTokenCreate, ApiTokenList, ApiTokenRevoke)


class OperatorTokenCreate(_NamedTokenCreate):
    longdesc = ("Create an operator token for the admin HTTP API (choir-admin --url ... "
                "--token ...). It is printed once, alone on the last line; the store keeps "
                "only its hash.")
    optParameters = [["name", "n", "operator", "Whose or what the token is (shown by 'list')."],
                     ["url", "u", None, "URL to name in the printed command " + URL_DEFAULT]]


class OperatorTokenList(_TokenList):
    longdesc = "List operator tokens (live ones; --all adds the revoked ones)."


class OperatorTokenRevoke(_Command):
    longdesc = "Revoke an operator token (by id or id prefix): the admin API refuses it."
    args = ("id",)


class OperatorTokensOptions(_Group):
    longdesc = ("Operator tokens authorise the admin HTTP API (Authorization: Bearer TOKEN), "
                "which choir-admin --url uses to manage this daemon from another machine.")
    subCommands = _token_commands("operator token", OperatorTokenCreate, OperatorTokenList,
                                  OperatorTokenRevoke)


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
