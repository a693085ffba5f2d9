"""choir-admin's output, the same for the store's commands and those over HTTP (remote):
tables, times ago, sizes, JSON (``--json``), the one-line operational errors, and the
look-ups by id, prefix or name."""
import json

from choir_protocol.runners import jobs as J
from choir_protocol.runners.tokens import token_prefix

from . import hints


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
        self.emit({"id": media_id, "jobs": jobs},
                  f"Media {media_id}: an edit of {len(jobs)} jobs (the studio job, then the "
                  f"renditions again)\n" + table(["UUID", "TYPE", "RESOLUTION", "STATE"], [
                      [j["uuid"], j["type"], j["resolution"], j["state"]] for j in jobs]))
