"""choir-admin's output, the same for the store's commands and those over HTTP (remote):
tables, times ago, sizes, JSON (``--json``), the one-line operational errors, and the
look-ups by id, prefix or name. ``Output.emit_*`` print a command's result from the plain
records of ``records``, which each side fills from its source."""
import json

from choir_protocol.runners import jobs as J
from choir_protocol.runners.tokens import token_prefix

from . import hints
from .records import UNTOLD, told


class AdminError(Exception):
    """An operational error: reported as one line on stderr, exit status 1."""


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


def resolve(items, value, what, keys=("id",)):
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


def live_token(tokens, value, what):
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


class Output:
    """Prints a command's result: ``data`` as JSON with ``--json``, else ``text``."""

    def __init__(self, out, as_json, now):
        self.out, self.as_json, self.now = out, as_json, now

    def emit(self, data, text):
        if self.as_json:
            self.out.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
        else:
            self.out.write(text.rstrip("\n") + "\n")

    def emit_new_token(self, token, token_id, created_at, where, runner_name):
        commands = hints.register_commands(where.url, token,
                                           runner_name or f"runner-{token[-6:]}")
        self.emit({"token": token, "id": token_id, "createdAt": created_at, "url": where.url,
                   "urlGuessed": where.guessed, "registerCommand": commands["choir-runner"],
                   "registerCommands": commands},
                  f"Registration token: {token}\n(shown only now: the daemon keeps only its "
                  f"hash; 'tokens list' shows it as {token_prefix(token)})\n\n"
                  + hints.registration_text(commands, where))

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

    def emit_edit(self, media_id, jobs):
        """The jobs (``JobBrief``) an edit of the media made."""
        self.emit({"id": media_id, "jobs": _made_jobs(jobs)},
                  f"Media {media_id}: an edit of {len(jobs)} jobs (the studio job, then the "
                  f"renditions again)\n" + _jobs_table(jobs))

    def emit_submitted(self, media_id, name, probe, jobs):
        """A media just submitted and the jobs (``JobBrief``) made for it."""
        self.emit({"id": media_id, "name": name, "probe": probe, "jobs": _made_jobs(jobs)},
                  f"Media {media_id} ({name}): {len(jobs)} jobs\n" + _jobs_table(jobs))

    # runners
    def emit_runners(self, runners, processing):
        """[``RunnerRecord``], and how many jobs each is processing (a Counter by id)."""
        self.emit([{"id": r.id, "name": r.name, "description": r.description,
                    "version": r.version, "ip": r.ip, "lastContact": J.iso(r.last_contact),
                    "createdAt": J.iso(r.created_at), "jobsProcessing": processing[r.id]}
                   for r in runners],
                  table(["ID", "NAME", "VERSION", "IP", "LAST CONTACT", "PROCESSING"],
                        [[r.id[:8], r.name, r.version, r.ip, ago(r.last_contact, self.now),
                          processing[r.id]] for r in runners])
                  if runners else "No registered runners.")

    def emit_removed_runner(self, runner_id, name, requeued):
        self.emit({"removed": runner_id, "name": name, "jobsRequeued": requeued},
                  f"Removed runner {name} ({runner_id}); {requeued} job(s) it was "
                  f"processing went back to pending.")

    # jobs
    def emit_jobs(self, jobs, runner_names):
        """[``Job``], and the names of the runners by id."""
        self.emit([_job_json(j, runner_names) for j in jobs],
                  table(["UUID", "TYPE", "STATE", "PROGRESS", "FAILURES", "PRIORITY", "RUNNER",
                         "AGE"],
                        [[j.uuid[:8], j.type, j.state.label, _percent(j.progress), j.failures,
                          j.priority,
                          runner_names.get(j.runner_id, j.runner_id and j.runner_id[:8]),
                          ago(j.created_at, self.now)] for j in jobs])
                  if jobs else "No jobs match.")

    def emit_job(self, job, runner_names, children):
        """A ``Job`` and its children (``Job``s), and the names of the runners by id."""
        d = _job_json(job, runner_names)
        d["privatePayload"] = job.private_payload
        d["children"] = [_brief_json(c) for c in children]
        runner = runner_names.get(job.runner_id, job.runner_id)
        lines = [f"{k + ':':<14}{v}" for k, v in (
            ("UUID", job.uuid), ("Type", job.type),
            ("State", f"{job.state.label} ({int(job.state)})"),
            ("Progress", _percent(job.progress) or "-"),
            ("Failures", job.failures), ("Error", job.error or "-"),
            ("Priority", job.priority), ("Runner", runner or "-"),
            ("Parent", job.parent_uuid or "-"), ("Media", job.media_id or "-"),
            ("Created", self._when(job.created_at)), ("Updated", self._when(job.updated_at)),
            ("Started", J.iso(job.started_at) or "-"),
            ("Finished", J.iso(job.finished_at) or "-"))]
        lines += _indented_json("Payload", job.payload, always=True)
        lines += _indented_json("Private payload", job.private_payload)
        if children:
            lines.append("Children:")
            lines += _indented(table(["UUID", "TYPE", "STATE"], [
                [c.uuid, c.type, c.state.label] for c in children]))
        self.emit(d, "\n".join(lines))

    def emit_cancelled(self, uuid, previous_state, parent_cancelled):
        """A job cancelled, and the uuids of its waiting children parent-cancelled with it."""
        self.emit({"cancelled": uuid, "previousState": previous_state.label,
                   "parentCancelled": parent_cancelled},
                  f"Cancelled job {uuid} (was {previous_state.label.lower()})"
                  + (f"; {len(parent_cancelled)} waiting child job(s) parent-cancelled."
                     if parent_cancelled else "."))

    # media
    def emit_media_list(self, media):
        """[``MediaRow``]"""
        data, rows = [], []
        for m in media:
            ins = sum(1 for f in m.files if f.role == "input")
            outs = sum(1 for f in m.files if f.role == "output")
            size = sum(f.size or 0 for f in m.files)
            data.append(told([("id", m.id), ("kind", m.kind), ("name", m.name),
                              ("path", m.path), ("createdAt", J.iso(m.created_at)),
                              ("inputs", ins), ("outputs", outs), ("size", size)]))
            rows.append([m.id[:8], m.kind, m.name, ins, outs, human_size(size),
                         ago(m.created_at, self.now)])
        self.emit(data, table(["ID", "KIND", "NAME", "INPUTS", "OUTPUTS", "SIZE", "AGE"], rows)
                  if rows else "No media.")

    def emit_media(self, view):
        """A ``MediaView``."""
        m = view.media
        d = told([("id", m.id), ("kind", m.kind), ("name", m.name), ("path", m.path),
                  ("probe", view.probe), ("state", view.state),
                  ("endedAt", J.iso(view.ended_at)), ("webhook", view.webhook),
                  ("webhookSentAt", _iso(view.webhook_sent_at)),
                  ("webhookError", view.webhook_error), ("createdAt", J.iso(m.created_at)),
                  ("hlsUrl", view.hls_url),
                  ("files", [told([("id", f.id), ("role", f.role), ("name", f.name),
                                   ("path", f.path), ("size", f.size),
                                   ("createdAt", _iso(f.created_at)), ("url", f.url)])
                             for f in m.files]),
                  ("jobs", [_brief_json(j) for j in view.jobs])])
        lines = [f"{k + ':':<10}{v}" for k, v in told((
            ("ID", m.id), ("Kind", m.kind), ("Name", m.name),
            ("Path", UNTOLD if m.path is UNTOLD else m.path or "-"),
            ("State", view.state + (f", ended {J.iso(view.ended_at)}" if view.ended_at else "")),
            ("Webhook", _webhook(view)),
            ("Created", self._when(m.created_at)))).items()]
        lines += _indented_json("Probe", view.probe)
        for role, title in (("input", "Inputs"), ("output", "Outputs")):
            fs = [f for f in m.files if f.role == role]
            lines.append(f"{title}:" + ("" if fs else " none"))
            if fs:
                where = "PATH" if fs[0].path is not UNTOLD else "URL"
                lines += _indented(table(["NAME", "SIZE", where], [
                    [f.name, human_size(f.size), f.url if f.path is UNTOLD else f.path]
                    for f in fs]))
        lines.append("Jobs:" + ("" if view.jobs else " none"))
        if view.jobs:
            lines += _indented(_jobs_table(view.jobs))
        self.emit(d, "\n".join(lines))

    def _when(self, t):
        return f"{J.iso(t)} ({ago(t, self.now)})"


def _iso(t):
    return t if t is UNTOLD else J.iso(t)


def _percent(progress):
    return None if progress is None else f"{progress}%"


def _indented(text):
    return ["  " + line for line in text.splitlines()]


def _indented_json(title, value, always=False):
    """``title:`` and ``value`` as indented JSON below it (nothing when empty, unless
    ``always``)."""
    if not (value or always):
        return []
    return [f"{title}:"] + _indented(json.dumps(value, indent=2))


def _job_json(job, runner_names) -> dict:
    """PeerTube's job (``Job.to_wire``), then ours."""
    return {**job.to_wire(), "parentUuid": job.parent_uuid, "runnerId": job.runner_id,
            "runnerName": runner_names.get(job.runner_id), "mediaId": job.media_id}


def _brief_json(job) -> dict:
    return {"uuid": job.uuid, "type": job.type, "state": job.state.label}


def _made_jobs(jobs) -> list:
    return [{**_brief_json(j), "resolution": j.resolution} for j in jobs]


def _jobs_table(jobs) -> str:
    return table(["UUID", "TYPE", "RESOLUTION", "STATE"], [
        [j.uuid, j.type, j.resolution, j.state.label + (
            "" if j.progress is None else f" {j.progress}%")] for j in jobs])


def _webhook(view):
    """The media's webhook and whether it was delivered (UNTOLD when the source does not
    tell)."""
    if view.webhook is UNTOLD:
        return UNTOLD
    hook = view.webhook or "the daemon’s --webhook"
    if view.webhook_sent_at is not None:
        return f"{hook} (delivered {J.iso(view.webhook_sent_at)})"
    if view.webhook_error is not None:
        return f"{hook} (failed: {view.webhook_error})"
    return view.webhook or "-"
