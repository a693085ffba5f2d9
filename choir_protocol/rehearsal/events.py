"""Immutable events produced by the connection state machines."""
import attrs

from .header import Header
from .room_header import RoomAccess


@attrs.frozen
class Authenticated:
    header: Header
    room: RoomAccess | None = None  # the room a version-4 header named; None: the default


@attrs.frozen
class KeepAlive:
    pass


# singer -> server

@attrs.frozen
class CheckedIn:
    pass


@attrs.frozen(eq=False)
class VoiceChunks:
    """Consecutive mono ADPCM payloads, the first one with index ``first_index``."""

    first_index: int
    payloads: list
    raw: bytes = b""  # the same chunks as they came on the wire, indices included


@attrs.frozen
class DroppedOut:
    pass


@attrs.frozen
class StrayChunks:
    """Audio that belongs to no session of this singer (e.g. the tail of a finished one)."""

    count: int


# director -> server

@attrs.frozen(eq=False)
class TrackChunk:
    index: int
    chunk: bytes  # the whole 516-byte chunk, index included, as it is forwarded


@attrs.frozen
class TrackEnded:
    pass


# server -> singer

@attrs.frozen
class SessionStarted:
    pass


@attrs.frozen(eq=False)
class TrackAudio:
    index: int
    payload: bytes  # stereo ADPCM, 512 bytes


@attrs.frozen
class SessionEnded:
    pass


# server -> director

@attrs.frozen(eq=False)
class MixChunk:
    index: int
    pcm: bytes  # 512 samples, 16-bit little-endian


@attrs.frozen
class SessionRefused:
    """-2 from the server: refused (another director, no singer) or aborted."""


# server -> singer or director

@attrs.frozen
class Refused:
    """-4 from our server: this connection is refused, for ``reason`` (e.g. the wrong port)."""

    reason: str
