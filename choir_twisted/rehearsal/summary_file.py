"""``sessions/<id>/session.json``: the one reader and the one writer of a SessionSummary.

Blocking file I/O: call it from a thread (the recorder's, recovery's, or deferToThread).
"""
import json
import os

from choir_protocol.rehearsal.session_summary import SessionSummary

NAME = "session.json"


def summary_path(directory: str) -> str:
    return os.path.join(directory, NAME)


def read_summary(directory: str) -> SessionSummary:
    """Raises OSError (no file) or ValueError (not a summary this daemon reads)."""
    with open(summary_path(directory)) as f:
        return SessionSummary.from_json(json.load(f))


def write_summary(directory: str, summary: SessionSummary) -> None:
    """Atomically: a reader sees the old summary or the new one, never half of one."""
    path = summary_path(directory)
    try:
        with open(path + ".tmp", "w") as f:
            json.dump(summary.to_json(), f, indent=2)
    except OSError:
        try:  # the last good session.json stays; no half-written .tmp beside it
            os.unlink(path + ".tmp")
        except OSError:
            pass
        raise
    os.replace(path + ".tmp", path)


def write_summary_anyhow(directory: str, summary: SessionSummary) -> None:
    """The last word on a session, even on a full disk: if no new file can be made for the
    atomic replace, session.json is overwritten in place (its blocks exist), compact so
    that it fits in them. Raises OSError if even that fails."""
    try:
        write_summary(directory, summary)
        return
    except OSError:
        pass
    with open(summary_path(directory), "r+") as f:
        json.dump(summary.to_json(), f, separators=(",", ":"))
        f.truncate()
