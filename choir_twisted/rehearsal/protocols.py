"""Thin Twisted protocols: bytes in and out, logic in choir_protocol and the Room."""
import socket

from twisted.internet import protocol
from twisted.logger import Logger

from choir_protocol.errors import ProtocolError
from choir_protocol.rehearsal import desk
from choir_protocol.rehearsal.chunks import refusal_chunk
from choir_protocol.rehearsal.connections import (REFUSED_TO_DIRECTOR, DirectorServerConnection,
                                                  Opening, SingerServerConnection)
from choir_protocol.rehearsal.constants import MIX_CHUNK_SIZE
from choir_protocol.rehearsal.events import (Authenticated, CheckedIn, DroppedOut, StrayChunks,
                                             TrackChunk, TrackEnded, VoiceChunks)
from choir_protocol.rehearsal.header import Header
from choir_protocol.rehearsal.roles import CHUNK_SIZE_READ_BY, claimed_role, wrong_port_reason
from choir_protocol.rehearsal.room_header import DEFAULT_ROOM, RoomAccess

from .links import has_plain_socket, output_for

HEADER_TIMEOUT = 10.0  # seconds for a peer to send its 512-byte header
FIRST_TRACK_TIMEOUT = 10.0  # seconds after its header for a director to send track chunk 0
DESK_IDLE_TIMEOUT = 120.0  # seconds a desk may stay connected without a request
# (requests a second, burst): each list is built and gzipped on the reactor thread
DESK_LIST_BUDGET = (5.0, 10.0)
DESK_GAIN_BUDGET = (250.0, 500.0)  # a whole group's gains change at once
SINGER_BACKLOG_LIMIT = 512 * 1024  # about 11 s of track held back for a singer not reading
DIRECTOR_BACKLOG_LIMIT = 1024 * 1024  # about 12 s of mix held back for a director not reading
# The kernel's own send buffer grows to megabytes (a minute of mix) before we see a director
# that does not read; 128 KiB is still 1.5 s of mix, ample for any round trip.
DIRECTOR_SEND_BUFFER = 128 * 1024
RECV_BYTES = 65536
IPTOS_LOWDELAY = 0x10


def tune_socket(transport) -> None:
    """TCP_NODELAY and low-delay TOS, as the 1.1.3 programs set them."""
    try:
        transport.setTcpNoDelay(True)
        transport.getHandle().setsockopt(socket.IPPROTO_IP, socket.IP_TOS, IPTOS_LOWDELAY)
    except (AttributeError, OSError):
        pass  # not a TCP socket (e.g. UNIX or in-memory transports in tests)


def peer_of(transport) -> tuple:
    peer = transport.getPeer()
    host = getattr(peer, "host", None)
    return (host, peer.port) if host is not None else (str(peer), 0)


class _RehearsalProtocol(protocol.Protocol):
    """Header timeout, logging and clean closing common to the three roles."""

    log = Logger()
    role = "peer"

    def __init__(self, room, other_port: int | None = None):
        self.room = room
        self.other_port = other_port  # the other role's port, for a client that came to ours
        self.header: Header | None = None
        self.peer = ("?", 0)
        self.connected = False
        self._header_timer = None

    def describe(self) -> str:
        name = f"{self.header.name!r} " if self.header is not None and self.header.name else ""
        return f"{self.role} {name}{self.peer[0]}:{self.peer[1]}"

    def connectionMade(self):
        self.connected = True
        self.peer = peer_of(self.transport)
        tune_socket(self.transport)
        self._header_timer = self.room.clock.callLater(HEADER_TIMEOUT, self._header_timeout)

    def _header_timeout(self):
        self._header_timer = None
        self.drop(f"no complete header within {HEADER_TIMEOUT:g} s")

    def _authenticated(self, header: Header, room: RoomAccess | None = None) -> bool:
        """Takes the header; False if it names the other role, or a room this daemon does
        not have (the client is told and closed)."""
        self.header = header
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        reason = wrong_port_reason(header, self.role, self.other_port)
        if reason is not None:
            role = claimed_role(header)  # told in the size its client reads
        elif room is not None and room.room != DEFAULT_ROOM:  # (one room, open, for now)
            reason, role = f"there is no room {room.room!r} here", self.role
        else:
            return True
        self.refuse_opening(reason, role)
        return False

    def refuse_opening(self, reason: str, client_role: str) -> None:
        """Signal -4 with ``reason`` in the chunk size ``client_role``'s client reads."""
        self.room.refusals.refused(f"{self.peer[0]} ({self.role} port)", reason)
        self._close_reason = reason
        self.close_after(refusal_chunk(reason, CHUNK_SIZE_READ_BY[client_role]))

    def close_after(self, data: bytes) -> None:
        """Send ``data`` (a refusal), then close once it is out."""
        output = getattr(self, "output", None)
        if output is not None:
            output.write(data)
            output.release()
        else:
            self.transport.write(data)
        self.transport.loseConnection()

    def drop(self, reason: str, flood: bool = False) -> None:
        """Close the connection for ``reason``, logged once; ``flood``: logged as a refusal,
        one line per address and then a count every 10 s (a client may repeat it in a loop)."""
        self.polling = False
        if self.connected:
            if flood:
                self.room.refusals.refused(f"{self.peer[0]} ({self.role} port)", reason)
            else:
                self.log.warn("Closing {who}: {reason}", who=self.describe(), reason=reason)
            self._close_reason = reason
            self.transport.abortConnection()

    def connectionLost(self, reason):
        self.connected = False
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        self.ended(getattr(self, "_close_reason", None) or reason.getErrorMessage())

    def ended(self, reason: str) -> None:
        pass


class SingerProtocol(_RehearsalProtocol):
    role = "singer"

    def __init__(self, room, other_port=None):
        super().__init__(room, other_port)
        self.conn = SingerServerConnection()
        self.output = None
        self.last_received = self.last_sent = room.clock.seconds()
        self.joined = False
        self.polling = False
        self._socket = None

    def connectionMade(self):
        super().connectionMade()
        self.output = output_for(self.transport, SINGER_BACKLOG_LIMIT)

    def invite(self) -> None:
        """A session is offered: chunk 0 is on its way."""
        self.conn.invite()
        self.start_polling()

    def session_over(self) -> None:
        self.conn.end_session()
        self.stop_polling()

    # In a session the room reads each singer once per tick. A plain TCP socket is
    # then read directly (``poll``), out of the reactor's sight; other transports
    # are paused after each read and resumed by the tick.

    def start_polling(self) -> None:
        if not self.polling and self.connected and has_plain_socket(self.transport):
            self._socket = self.transport.getHandle()
            self.polling = True
            self.transport.pauseProducing()

    def stop_polling(self) -> None:
        """Back to the reactor, which also meets end of stream and errors."""
        if self.polling:
            self.polling = False
            if self.connected:
                self.transport.resumeProducing()

    def poll(self) -> None:
        while self.polling:
            try:
                data = self._socket.recv(RECV_BYTES)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self.stop_polling()
                return
            self.dataReceived(data)
            if len(data) < RECV_BYTES:
                return

    def send(self, data: bytes) -> None:
        self.output.write(data)
        self.last_sent = self.room.clock.seconds()

    def refuse(self, reason: str) -> None:
        """A full room (or address): our singer client is told why (-4) and stops; a
        1.1.3 singer, which knows no refusal, is closed on as by the 1.1.3 server."""
        if claimed_role(self.header) != "singer":
            self.drop(reason, flood=True)
            return
        self.room.refusals.refused(f"{self.peer[0]} ({self.role} port)", reason)
        self._close_reason = reason
        self.close_after(refusal_chunk(reason, CHUNK_SIZE_READ_BY["singer"]))

    def dataReceived(self, data):
        room = self.room
        self.last_received = room.clock.seconds()
        try:
            events = self.conn.receive_data(data)
            for event in events:
                kind = type(event)
                if kind is VoiceChunks:
                    room.singer_audio(self, event.first_index, event.payloads, event.raw)
                elif kind is CheckedIn:
                    room.singer_checked_in(self)
                elif kind is DroppedOut:
                    room.singer_dropped_out(self)
                elif kind is StrayChunks:
                    room.singer_stray(self, event.count)
                elif kind is Authenticated:
                    if not self._authenticated(event.header, event.room):
                        return
                    if not room.singer_joined(self):  # refused: no seat
                        return
                    self.joined = True
        except ProtocolError as e:
            self.drop(f"protocol error: {e}")
            return
        if self.joined and not self.polling:
            room.singer_read(self)

    def ended(self, reason):
        if self.joined:
            self.room.singer_left(self, reason)


class DirectorProtocol(_RehearsalProtocol):
    role = "director"

    def __init__(self, room, other_port=None):
        super().__init__(room, other_port)
        self.conn = DirectorServerConnection()
        self.last_active = room.clock.seconds()
        self.joined = False
        self.output = None
        self._first_track_timer = None

    def connectionMade(self):
        super().connectionMade()
        try:
            self.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF,
                                                  DIRECTOR_SEND_BUFFER)
        except (AttributeError, OSError):
            pass  # not a socket (tests' in-memory transports)
        self.output = output_for(self.transport, DIRECTOR_BACKLOG_LIMIT)

    def dataReceived(self, data):
        room = self.room
        self.last_active = room.clock.seconds()
        try:
            for event in self.conn.receive_data(data):
                kind = type(event)
                if kind is TrackChunk:
                    if event.index == 0:
                        self._cancel_first_track_timer()
                    room.track_chunk(self, event.index, event.chunk)
                elif kind is TrackEnded:
                    room.track_ended(self)
                elif kind is Authenticated:
                    if not self._authenticated(event.header, event.room):
                        return
                    # repr: a peer's words reach the log with control characters escaped
                    self.log.info("Director {who} ({version}) connected", who=self.describe(),
                                  version=repr(event.header.client_version)
                                  if event.header.client_version else "unknown version")
                    if not room.director_joined(self):
                        return
                    self.joined = True
                    self._first_track_timer = room.clock.callLater(FIRST_TRACK_TIMEOUT,
                                                                   self._no_track)
                if not self.connected:
                    return
        except ProtocolError as e:
            self.drop(f"protocol error: {e}")

    def _no_track(self):
        self._first_track_timer = None
        self.refuse(f"no track within {FIRST_TRACK_TIMEOUT:g} s of its header")

    def _cancel_first_track_timer(self):
        if self._first_track_timer is not None:
            self._first_track_timer.cancel()
            self._first_track_timer = None

    def refuse(self, reason: str, flood: bool = True) -> None:
        """End this director's session or refuse it: -2 (1.1.3's word for both), or -4 with
        the reason to our own director client, which shows it. Then close. ``flood``: a
        refusal a client may repeat in a loop, logged as in ``drop``."""
        if self.connected:
            if flood:
                self.room.refusals.refused(f"{self.peer[0]} (director port)", reason)
            else:
                self.log.warn("Director {who}: {reason}", who=self.describe(), reason=reason)
            self._close_reason = f"refused: {reason}"
            ours = self.header is not None and claimed_role(self.header) == "director"
            self.close_after(refusal_chunk(reason, MIX_CHUNK_SIZE) if ours else REFUSED_TO_DIRECTOR)
            self.connected = False  # nothing more is read from it

    def send_mix(self, first_index: int, pcm: bytes) -> None:
        self.output.write(self.conn.send_mix(first_index, pcm))
        if self.output.overflowed:  # memory stays bounded: the session goes on without it
            self.drop("the director is not reading the mix")
            return
        self.last_active = self.room.clock.seconds()

    def ended(self, reason):
        self._cancel_first_track_timer()
        if self.joined:
            self.room.director_left(self, reason)
        self.log.info("Director {who} disconnected: {reason}", who=self.describe(), reason=reason)


class DeskProtocol(_RehearsalProtocol):
    """The mixing desk: list singers, adjust their gains."""

    role = "desk"

    def __init__(self, room, other_port=None):
        super().__init__(room, other_port)
        self._opening = Opening()
        self._reader = desk.MessageReader()
        self._idle_timer = None
        self._lists = desk.RequestBudget(*DESK_LIST_BUDGET)
        self._gains = desk.RequestBudget(*DESK_GAIN_BUDGET)

    def dataReceived(self, data):
        try:
            if self.header is None:
                data = self._opening.feed(data)
                if data is None:
                    return
                if not self._authenticated(self._opening.header, self._opening.room):
                    return
                if not self.room.desk_allowed(self.peer[0]):
                    self.refuse("the mixing desk is served only to the director's address")
                    return
                self.log.info("Desk {who} connected", who=self.describe())
                self._idle_timer = self.room.clock.callLater(DESK_IDLE_TIMEOUT, self._idle)
            for message in self._reader.feed(data):
                self._idle_timer.reset(DESK_IDLE_TIMEOUT)
                self._handle(desk.parse_request(message), message)
                if not self.connected:
                    return
        except ProtocolError as e:
            self.drop(f"protocol error: {e}")

    def refuse_opening(self, reason: str, client_role: str) -> None:
        self.refuse(reason)  # a desk client reads desk messages, whoever it is

    def refuse(self, reason: str) -> None:
        """Ours, not 1.1.3's: {"error": reason} where a list would be, then close."""
        self.room.refusals.refused(f"{self.peer[0]} (desk port)", reason)
        self._close_reason = reason
        self.close_after(desk.encode_message({"error": reason}))
        self.connected = False

    def _idle(self):
        self._idle_timer = None
        self.drop(f"no request for {DESK_IDLE_TIMEOUT:g} s")

    def _handle(self, request, message) -> None:
        now = self.room.clock.seconds()
        if isinstance(request, desk.ListSingers):
            if not self._lists.allow(now):
                self.drop(f"more than {DESK_LIST_BUDGET[0]:g} list requests a second", flood=True)
                return
            self.transport.write(self.room.desk_reply(bool(message.get("all"))))
        elif not self._gains.allow(now):
            self.drop(f"more than {DESK_GAIN_BUDGET[0]:g} gain changes a second", flood=True)
        elif not self.room.set_gain(request.singer_id, request.gain):
            self.log.warn("Desk {who}: no singer at {id}", who=self.describe(), id=request.singer_id)

    def ended(self, reason):
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None


class RoomFactory(protocol.Factory):
    def __init__(self, room, protocol_class, other_port: int | None = None):
        self.room = room
        self.protocol_class = protocol_class
        self.other_port = other_port

    def buildProtocol(self, addr):
        return self.protocol_class(self.room, self.other_port)

    def logPrefix(self):
        """Names the port in Twisted's "... starting on PORT" line."""
        return f"{self.protocol_class.role.capitalize()} port"

    def __repr__(self):  # Twisted's "Starting factory ..." line
        return f"<{type(self).__name__} for the {self.protocol_class.role} port>"
