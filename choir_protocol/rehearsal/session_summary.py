"""The summary of one session, as ``sessions/<id>/session.json`` holds it.

Written by the recorder (as the session goes and at its end) and by recovery; read by
recovery and the publisher. Version 1 is the layout of the first daemons, which wrote
no ``version`` key: a file without one is read as version 1. Every field has a default,
so a summary cut short (an early crash, an older daemon) still reads. Pure: the file is
read and written in choir_twisted.rehearsal.summary_file.
"""
import attrs

VERSION = 1
RECORDING = "recording"  # ``state`` until the session ends; then why it ended
# ``tracks``: "recording", then "converting", then one of these
TRACKS_FINAL = ("ready", "pending", "failed")
TRACKS_PUBLISHABLE = ("ready", "failed")  # "pending": recovery converts them first
# keys written only once they mean something
_OMITTED_WHEN_NONE = ("recording_lost_bytes", "recording_failed", "files")


@attrs.frozen
class SingerSummary:
    name: str = ""
    group: str = ""
    state: str = ""  # a VoiceState's value: invited, active, refused, left
    row: int = -1  # its column in the mix's voices, -1 if it never checked in
    gain: float = 1.0
    chunks: int = 0  # delivered
    late: int = 0
    missing: int = 0
    left_at: int | None = None
    reason: str = ""
    address: tuple = ()  # (host, port)

    def to_json(self) -> dict:
        return dict(attrs.asdict(self, recurse=False), address=list(self.address))

    @classmethod
    def from_json(cls, data: dict) -> "SingerSummary":
        return cls(**_known(cls, data, address=tuple(data.get("address") or ())))


@attrs.frozen
class SessionSummary:
    id: str = ""
    started: str | None = None  # ISO 8601, UTC
    ended: str | None = None
    state: str = RECORDING
    director: str = ""
    sample_rate: int = 0
    chunk_frames: int = 0
    track_chunks: int = 0
    mix_chunks: int = 0
    monitor_level: float = 0.0
    stray_chunks: int = 0
    singers: tuple = ()  # of SingerSummary
    tracks: str = RECORDING
    recording_lost_bytes: int | None = None
    recording_failed: str | None = None  # why the recorder stopped writing
    files: tuple | None = None  # names in the session's directory, once the tracks are final
    version: int = VERSION

    @property
    def ended_session(self) -> bool:
        return self.state not in (None, RECORDING)

    @property
    def recorded(self) -> bool:
        """The session is over and its tracks are final (ready, pending or failed)."""
        return self.ended_session and self.tracks in TRACKS_FINAL

    @property
    def publishable(self) -> bool:
        return self.ended_session and self.tracks in TRACKS_PUBLISHABLE

    def to_json(self) -> dict:
        data = attrs.asdict(self, recurse=False)
        data["singers"] = [singer.to_json() for singer in self.singers]
        if self.files is not None:
            data["files"] = list(self.files)
        for key in _OMITTED_WHEN_NONE:
            if data[key] is None:
                del data[key]
        return {"version": data.pop("version"), **data}

    @classmethod
    def from_json(cls, data: dict) -> "SessionSummary":
        """``data`` as json.load gives it; ValueError if it is no summary we can read."""
        if not isinstance(data, dict):
            raise ValueError("session.json holds no object")
        version = data.get("version", 1)
        if version != VERSION:
            raise ValueError(f"session.json version {version!r}: this daemon reads {VERSION}")
        files = data.get("files")
        try:
            return cls(**_known(cls, data, version=version,
                                singers=tuple(SingerSummary.from_json(s)
                                              for s in data.get("singers") or ()),
                                files=None if files is None else tuple(files)))
        except (TypeError, AttributeError) as e:
            raise ValueError(f"session.json: {e}") from None


def _known(cls, data: dict, **converted) -> dict:
    """The keys of ``data`` that ``cls`` has (others, e.g. from a newer minor layout, are
    dropped), with ``converted`` in place of theirs."""
    names = {field.name for field in attrs.fields(cls)}
    return {**{k: v for k, v in data.items() if k in names}, **converted}
