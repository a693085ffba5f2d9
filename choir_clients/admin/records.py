"""What choir-admin prints, as plain records: ``local`` fills them from the store's records,
``remote`` from the admin API's JSON, and ``output`` prints them, so that a command prints
the same table, lines and JSON either way. A job with every field is the protocol's own
``choir_protocol.runners.jobs.Job``, a runner the store's ``RunnerRecord``.

Times are epoch seconds. ``UNTOLD`` marks what a source does not tell (the admin API leaves
out the paths and webhooks on the daemon's disk; the store has no URLs): the JSON leaves the
key out and the text its line.
"""
import attrs

from choir_protocol.runners.jobs import JobState


class _Untold:
    def __repr__(self):
        return "UNTOLD"


UNTOLD = _Untold()


def told(pairs) -> dict:
    """The JSON object of ``(key, value)`` pairs, without the untold ones."""
    return {key: value for key, value in pairs if value is not UNTOLD}


@attrs.frozen
class JobBrief:
    """A job as a line of a media's table: its jobs, or those an edit or a submit made."""

    uuid: str
    type: str
    state: JobState
    resolution: int | None = None
    progress: int | None = None


@attrs.frozen
class MediaFile:
    role: str
    name: str
    size: int | None
    path: str | _Untold = UNTOLD  # on the daemon's disk: the store's
    url: str | None | _Untold = UNTOLD  # a link to it: the admin API's
    id: str | _Untold = UNTOLD
    created_at: float | _Untold = UNTOLD


@attrs.frozen
class MediaRow:
    """A media as ``media list`` shows it."""

    id: str
    kind: str
    name: str
    path: str | None | _Untold
    created_at: float
    files: tuple[MediaFile, ...]


@attrs.frozen
class MediaView:
    """A media as ``media show`` shows it: its row and what the list leaves out."""

    media: MediaRow
    probe: dict | None
    state: str  # ``choir_protocol.runners.publishing.media_state``
    ended_at: float | None
    jobs: tuple[JobBrief, ...]
    webhook: str | None | _Untold = UNTOLD
    webhook_sent_at: float | None | _Untold = UNTOLD
    webhook_error: str | None | _Untold = UNTOLD
    hls_url: str | None | _Untold = UNTOLD
