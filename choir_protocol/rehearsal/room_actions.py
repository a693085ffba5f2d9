"""What the room's rules (room_rules.RoomRules) ask their driver to do.

Immutable; carried out in the order they come. Peers (``singer``, ``director``) are the
driver's own handles, which the rules only hold and compare. Some actions only tell
what happened (for the log): the rules have done it already.
"""
import attrs

from .mixer import MixBlock, Voice
from .room_session import Session
from .session_summary import SessionSummary

# -- to peers -----------------------------------------------------------------------------

@attrs.frozen(eq=False)
class SendToSingers:
    """Write ``data`` to each of ``singers`` (the track, its end, or a keep-alive)."""

    singers: tuple
    data: bytes


@attrs.frozen(eq=False)
class InviteSingers:
    """A session is offered to these idle singers: their connections expect chunk 0 now,
    and they are read once per tick until ``EndSessionFor``."""

    singers: tuple


@attrs.frozen(eq=False)
class EndSessionFor:
    """The session is over for these singers: what they send now is stray."""

    singers: tuple


@attrs.frozen(eq=False)
class RefuseSinger:
    """No seat for this singer (``reason``); tell it if it can hear it, and close."""

    singer: object
    reason: str


@attrs.frozen(eq=False)
class DropSinger:
    singer: object
    reason: str


@attrs.frozen(eq=False)
class SendMix:
    """``block`` of mix goes to the director, if it is still connected; ``resume``: the
    director is back within its slack, read it again."""

    director: object
    block: MixBlock
    resume: bool


@attrs.frozen(eq=False)
class PauseDirector:
    """The director runs too far ahead of the mix: stop reading it (``SendMix`` resumes)."""

    director: object


@attrs.frozen(eq=False)
class ResumeDirector:
    director: object


@attrs.frozen(eq=False)
class RefuseDirector:
    """End or refuse this director's session for ``reason`` and close it. ``flood``: a
    refusal a client may repeat in a loop (logged as a count, not a line each)."""

    director: object
    reason: str
    flood: bool = True


# -- to the recording ---------------------------------------------------------------------

@attrs.frozen(eq=False)
class StartRecording:
    session: Session
    summary: SessionSummary


@attrs.frozen(eq=False)
class RecordSinger:
    """A singer checked in: its track is recorded from now on, at ``voice.row``."""

    session: Session
    voice: Voice


@attrs.frozen(eq=False)
class RecordVoices:
    """(row, chunks as they came on the wire) received since the last tick."""

    session: Session
    batch: list


@attrs.frozen(eq=False)
class RecordMix:
    session: Session
    block: MixBlock


@attrs.frozen(eq=False)
class UpdateRecording:
    session: Session
    summary: SessionSummary


@attrs.frozen(eq=False)
class StopRecording:
    session: Session
    summary: SessionSummary


# -- what happened ------------------------------------------------------------------------

@attrs.frozen(eq=False)
class SessionOpened:
    session: Session
    singers_connected: int


@attrs.frozen(eq=False)
class SingerCheckedIn:
    """``in_mix``: False if it came after the mix started (it is refused, not mixed)."""

    singer: object
    session: Session
    voice: Voice
    in_mix: bool


@attrs.frozen(eq=False)
class SingerDroppedOut:
    singer: object
    voice: Voice


@attrs.frozen(eq=False)
class EndOfTrack:
    session: Session


@attrs.frozen(eq=False)
class SessionClosed:
    """The session is over (``session.ended`` says why); every action it needed came before."""

    session: Session
