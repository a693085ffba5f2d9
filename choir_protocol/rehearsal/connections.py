"""One state machine per role and side, in the style of h11 and wsproto.

``receive_data(bytes)`` returns events and raises ProtocolError on anything the
protocol does not allow; the methods that send return the bytes to write. The
caller owns the socket, the clock and the session logic.
"""
import enum

import attrs

from ..errors import ProtocolError
from .chunks import ChunkReader, encode_index, refusal_reason, signal_chunk
from .constants import HEADER_SIZE, MIX_CHUNK_SIZE, TRACK_CHUNK_SIZE, VOICE_CHUNK_SIZE, Signal
from .events import (Authenticated, CheckedIn, DroppedOut, KeepAlive, MixChunk, Refused,
                     SessionEnded, SessionRefused, SessionStarted, StrayChunks, TrackAudio,
                     TrackChunk, TrackEnded, VoiceChunks)
from .header import Header
from .room_header import ROOM_BLOCK_SIZE, ROOM_HEADER_VERSION, RoomAccess, parse_room_block

KEEPALIVE_TO_SINGER = signal_chunk(Signal.KEEPALIVE, TRACK_CHUNK_SIZE)
END_TO_SINGER = signal_chunk(Signal.END, TRACK_CHUNK_SIZE)
REFUSED_TO_DIRECTOR = signal_chunk(Signal.ABORT, MIX_CHUNK_SIZE)
CHECK_IN_FROM_SINGER = signal_chunk(Signal.END, VOICE_CHUNK_SIZE)
ABORT_FROM_SINGER = signal_chunk(Signal.ABORT, VOICE_CHUNK_SIZE)
KEEPALIVE_FROM_SINGER = signal_chunk(Signal.KEEPALIVE, VOICE_CHUNK_SIZE)
END_FROM_DIRECTOR = signal_chunk(Signal.END, TRACK_CHUNK_SIZE)


class Opening:
    """What opens every connection to a server: the 512-byte header and, for version 4,
    its room block. ``feed`` returns None until both are read, then the bytes after them;
    a bad header fails at once, before its room block is awaited."""

    def __init__(self):
        self._buffer = b""
        self._parsed: Header | None = None  # read, its room block still to come
        self.header: Header | None = None
        self.room: RoomAccess | None = None  # the room a version-4 header named

    @property
    def pending_bytes(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> bytes | None:
        data = self._buffer + data
        if self._parsed is None:
            if len(data) < HEADER_SIZE:
                self._buffer = data
                return None
            self._parsed = Header.parse(data[:HEADER_SIZE])
            data = data[HEADER_SIZE:]
        if self._parsed.version == ROOM_HEADER_VERSION:
            if len(data) < ROOM_BLOCK_SIZE:
                self._buffer = data
                return None
            self.room = parse_room_block(data[:ROOM_BLOCK_SIZE])
            data = data[ROOM_BLOCK_SIZE:]
        self._buffer = b""
        self.header = self._parsed
        return data


class _HeaderThenChunks:
    """The common framing: the opening (``Opening``), then fixed-size chunks."""

    def __init__(self, chunk_size: int):
        self._opening = Opening()
        self._reader = ChunkReader(chunk_size)
        self.header: Header | None = None

    @property
    def room(self) -> RoomAccess | None:
        return self._opening.room

    @property
    def pending_bytes(self) -> int:
        return self._opening.pending_bytes + self._reader.pending

    def _feed(self, data: bytes) -> tuple[Header | None, list]:
        """Returns (header if it just completed, [(index, chunk), ...])."""
        if self.header is not None:
            return None, self._reader.feed(data)
        data = self._opening.feed(data)
        if data is None:
            return None, []
        header = self.header = self._opening.header
        return header, self._reader.feed(data)


def initiate(header: Header, room: RoomAccess | None = None) -> bytes:
    """What a client sends first: the header as given (1.1.3's version 3), or, to name a
    room, the same header as version 4 followed by the room block."""
    if room is None:
        return header.to_bytes()
    return attrs.evolve(header, version=ROOM_HEADER_VERSION).to_bytes() + room.to_bytes()


# -- server side ------------------------------------------------------------------------

class SingerState(enum.Enum):
    HEADER = "awaiting header"
    IDLE = "idle"  # connected, no session offered
    INVITED = "invited"  # chunk 0 forwarded, check-in awaited
    SINGING = "singing"
    DROPPED = "dropped out"  # sent -2; ignored until the session ends


class SingerServerConnection(_HeaderThenChunks):
    """The server's side of a singer connection."""

    def __init__(self):
        super().__init__(VOICE_CHUNK_SIZE)
        self.state = SingerState.HEADER
        self.next_index = 0

    def invite(self) -> None:
        """Chunk 0 of a session is being forwarded to this singer."""
        if self.state is not SingerState.IDLE:
            raise RuntimeError(f"cannot invite a singer that is {self.state.value}")
        self.state = SingerState.INVITED
        self.next_index = 0

    def end_session(self) -> None:
        """The session is over for this singer: whatever it sends now is stray."""
        if self.state is not SingerState.HEADER:
            self.state = SingerState.IDLE

    def receive_data(self, data: bytes) -> list:
        header, chunks = self._feed(data)
        events = []
        if header is not None:
            self.state = SingerState.IDLE
            events.append(Authenticated(header, self.room))
        run_start = None  # consecutive audio is returned as one VoiceChunks
        payloads, run = [], []
        stray = 0
        for index, chunk in chunks:
            if index >= 0 and self.state is SingerState.SINGING:
                if index != self.next_index:
                    raise ProtocolError(f"singer sent chunk {index}, expected {self.next_index}")
                if run_start is None:
                    run_start = index
                payloads.append(chunk[4:])
                run.append(chunk)
                self.next_index += 1
                continue
            if payloads:
                events.append(VoiceChunks(run_start, payloads, b"".join(run)))
                run_start, payloads, run = None, [], []
            if index == Signal.KEEPALIVE:
                events.append(KeepAlive())
            elif index >= 0 or self.state in (SingerState.IDLE, SingerState.DROPPED):
                stray += 1  # audio or signals left over from a session that is over
            elif index == Signal.END:  # check-in
                if self.state is SingerState.INVITED:
                    self.state = SingerState.SINGING
                    events.append(CheckedIn())
                else:
                    raise ProtocolError("singer checked in twice")
            elif index == Signal.ABORT:
                self.state = SingerState.DROPPED
                events.append(DroppedOut())
            else:
                raise ProtocolError(f"singer sent unknown signal {index}")
        if payloads:
            events.append(VoiceChunks(run_start, payloads, b"".join(run)))
        if stray:
            events.append(StrayChunks(stray))
        return events


class DirectorState(enum.Enum):
    HEADER = "awaiting header"
    STREAMING = "streaming"
    ENDED = "track ended"


class DirectorServerConnection(_HeaderThenChunks):
    """The server's side of a director connection."""

    def __init__(self):
        super().__init__(TRACK_CHUNK_SIZE)
        self.state = DirectorState.HEADER
        self.next_index = 0
        self.mix_sent = 0

    def receive_data(self, data: bytes) -> list:
        header, chunks = self._feed(data)
        events = []
        if header is not None:
            self.state = DirectorState.STREAMING
            events.append(Authenticated(header, self.room))
        for index, chunk in chunks:
            if self.state is DirectorState.ENDED:
                raise ProtocolError(f"director sent chunk {index} after the end of the track")
            if index == Signal.END:
                self.state = DirectorState.ENDED
                events.append(TrackEnded())
            elif index != self.next_index:
                raise ProtocolError(f"director sent chunk {index}, expected {self.next_index}")
            else:
                self.next_index += 1
                events.append(TrackChunk(index, chunk))
        return events

    def send_mix(self, first_index: int, pcm: bytes) -> bytes:
        """Frame consecutive 1024-byte mix chunks starting at ``first_index``."""
        if first_index != self.mix_sent:
            raise RuntimeError(f"mix chunk {first_index} out of order (next is {self.mix_sent})")
        size = MIX_CHUNK_SIZE - 4
        count = len(pcm) // size
        self.mix_sent += count
        return b"".join([encode_index(first_index + j) + pcm[j * size:(j + 1) * size]
                         for j in range(count)])


# -- client side ------------------------------------------------------------------------

class SingerClientState(enum.Enum):
    IDLE = "idle"  # connected, waiting for a session
    SESSION = "in session"  # chunk 0 received, track coming
    TRACK_ENDED = "track ended"  # end of session received; the tail is still being sent


class SingerClientConnection(_HeaderThenChunks):
    """The singer client's side. The server sends no header, only 516-byte chunks."""

    def __init__(self):
        super().__init__(TRACK_CHUNK_SIZE)
        self.header = Header()  # nothing to read before the chunks
        self.state = SingerClientState.IDLE
        self.next_index = 0
        self.sent_index = 0

    @staticmethod
    def initiate(header: Header, room: RoomAccess | None = None) -> bytes:
        return initiate(header, room)

    def receive_data(self, data: bytes) -> list:
        events = []
        for index, chunk in self._reader.feed(data):
            if index == Signal.KEEPALIVE:
                events.append(KeepAlive())
            elif index == Signal.REFUSED:
                events.append(Refused(refusal_reason(chunk)))
            elif index == 0 and self.state is not SingerClientState.SESSION:
                self.state = SingerClientState.SESSION
                self.next_index = 1
                self.sent_index = 0
                events += [SessionStarted(), TrackAudio(0, chunk[4:])]
            elif self.state is SingerClientState.SESSION and index == self.next_index:
                self.next_index += 1
                events.append(TrackAudio(index, chunk[4:]))
            elif self.state is SingerClientState.SESSION and index == Signal.END:
                self.state = SingerClientState.TRACK_ENDED
                events.append(SessionEnded())
            elif self.state is SingerClientState.SESSION:
                raise ProtocolError(f"server sent chunk {index}, expected {self.next_index}")
            # else: the middle of a session we were not invited to; ignore it
        return events

    def check_in(self) -> bytes:
        return CHECK_IN_FROM_SINGER

    def send_voice(self, index: int, payload: bytes) -> bytes:
        if index != self.sent_index:
            raise RuntimeError(f"voice chunk {index} out of order (next is {self.sent_index})")
        self.sent_index += 1
        return encode_index(index) + payload

    def session_done(self) -> None:
        self.state = SingerClientState.IDLE

    @staticmethod
    def drop_out() -> bytes:
        return ABORT_FROM_SINGER

    @staticmethod
    def keepalive() -> bytes:
        return KEEPALIVE_FROM_SINGER


class DirectorClientConnection(_HeaderThenChunks):
    """The director client's side."""

    def __init__(self):
        super().__init__(MIX_CHUNK_SIZE)
        self.header = Header()
        self.sent = 0
        self.received = 0
        self.track_ended = False
        self.refused = False

    @staticmethod
    def initiate(header: Header, room: RoomAccess | None = None) -> bytes:
        return initiate(header, room)

    def send_track(self, index: int, payload: bytes) -> bytes:
        if index != self.sent or self.track_ended:
            raise RuntimeError(f"track chunk {index} out of order (next is {self.sent})")
        self.sent += 1
        return encode_index(index) + payload

    def end_track(self) -> bytes:
        self.track_ended = True
        return END_FROM_DIRECTOR

    @property
    def done(self) -> bool:
        """All the mix came back (or the session was refused): time to close."""
        return self.refused or (self.track_ended and self.received >= self.sent)

    def receive_data(self, data: bytes) -> list:
        events = []
        for index, chunk in self._reader.feed(data):
            if index == Signal.ABORT:
                self.refused = True
                events.append(SessionRefused())
            elif index == Signal.REFUSED:
                self.refused = True
                events.append(Refused(refusal_reason(chunk)))
            elif index == self.received:
                self.received += 1
                events.append(MixChunk(index, chunk[4:]))
            else:
                raise ProtocolError(f"server sent mix chunk {index}, expected {self.received}")
        return events
