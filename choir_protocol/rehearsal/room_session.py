"""The state the room's rules keep: who is seated, and the session."""
import datetime

import attrs

from .adpcm import StereoDecoder
from .mixer import Mixer


@attrs.define(eq=False)
class Seat:
    """A connected singer, as its header named it."""

    address: tuple  # (host, port): its id on the desk and its voice's key in the mixer
    name: str = ""
    group: str = ""
    gain: float = 1.0  # set on the desk; kept from one session to the next


@attrs.define(eq=False)
class DirectorSeat:
    address: tuple
    label: str  # how the log and the summary name it


@attrs.define(eq=False)
class Session:
    id: str
    director: object
    director_seat: DirectorSeat
    mixer: Mixer
    started: datetime.datetime
    members: dict = attrs.Factory(dict)  # singer -> Voice, invited at the start
    recording: bool = False
    recorder: object = None  # the driver's, for its own use: the rules never touch it
    pending_track: list = attrs.Factory(list)  # chunks to forward at the next tick
    check_in_deadline: float | None = None  # until a singer checks in
    ended: str = ""  # why it ended, once it has
    stray_chunks: int = 0
    monitor_decoder: StereoDecoder | None = None
    voice_batch: list = attrs.Factory(list)  # (row, raw chunks) for the recording
