"""Thin Twisted protocols: bytes in and out, logic in choir_protocol and the Room."""
import socket

from twisted.internet import protocol
from twisted.logger import Logger

from choir_protocol import desk
from choir_protocol.connections import DirectorServerConnection, SingerServerConnection
from choir_protocol.errors import ProtocolError
from choir_protocol.events import (Authenticated, CheckedIn, DroppedOut, StrayChunks, TrackChunk,
                                   TrackEnded, VoiceChunks)
from choir_protocol.header import Header
from choir_protocol.constants import HEADER_SIZE

from .links import has_plain_socket, output_for

HEADER_TIMEOUT = 10.0  # seconds for a peer to send its 512-byte header
SINGER_BACKLOG_LIMIT = 512 * 1024  # about 11 s of track held back for a singer not reading
DIRECTOR_BACKLOG_LIMIT = 1024 * 1024  # about 12 s of mix held back for a director not reading
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

    def __init__(self, room):
        self.room = room
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

    def _authenticated(self, header: Header) -> None:
        self.header = header
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def drop(self, reason: str) -> None:
        """Close the connection for ``reason`` (logged once)."""
        self.polling = False
        if self.connected:
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

    def __init__(self, room):
        super().__init__(room)
        self.conn = SingerServerConnection()
        self.gain = 1.0
        self.output = None
        self.last_received = self.last_sent = room.clock.seconds()
        self.joined = False
        self.polling = False
        self._socket = None

    def connectionMade(self):
        super().connectionMade()
        self.output = output_for(self.transport, SINGER_BACKLOG_LIMIT)

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
                    self._authenticated(event.header)
                    if not room.singer_joined(self):
                        self.drop("the room is full")
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

    def __init__(self, room):
        super().__init__(room)
        self.conn = DirectorServerConnection()
        self.last_active = room.clock.seconds()
        self.in_session = False
        self.output = None

    def connectionMade(self):
        super().connectionMade()
        self.output = output_for(self.transport, DIRECTOR_BACKLOG_LIMIT)

    def dataReceived(self, data):
        room = self.room
        self.last_active = room.clock.seconds()
        try:
            for event in self.conn.receive_data(data):
                kind = type(event)
                if kind is TrackChunk:
                    room.track_chunk(self, event.index, event.chunk)
                elif kind is TrackEnded:
                    room.track_ended(self)
                elif kind is Authenticated:
                    self._authenticated(event.header)
                    # repr: a peer's words reach the log with control characters escaped
                    self.log.info("Director {who} ({version}) connected", who=self.describe(),
                                  version=repr(event.header.client_version)
                                  if event.header.client_version else "unknown version")
                    if not room.director_joined(self):
                        self.transport.loseConnection()
                        return
                    self.in_session = True
        except ProtocolError as e:
            self.drop(f"protocol error: {e}")

    def send_mix(self, first_index: int, pcm: bytes) -> None:
        self.output.write(self.conn.send_mix(first_index, pcm))
        if self.output.overflowed:  # memory stays bounded: the session goes on without it
            self.drop("the director is not reading the mix")
            return
        self.last_active = self.room.clock.seconds()

    def ended(self, reason):
        if self.in_session:
            self.room.director_left(self, reason)
        self.log.info("Director {who} disconnected: {reason}", who=self.describe(), reason=reason)


class DeskProtocol(_RehearsalProtocol):
    """The mixing desk: list singers, adjust their gains."""

    role = "desk"

    def __init__(self, room):
        super().__init__(room)
        self._header_buffer = b""
        self._reader = desk.MessageReader()

    def dataReceived(self, data):
        try:
            if self.header is None:
                data = self._header_buffer + data
                if len(data) < HEADER_SIZE:
                    self._header_buffer = data
                    return
                self._authenticated(Header.parse(data[:HEADER_SIZE]))
                self._header_buffer, data = b"", data[HEADER_SIZE:]
                self.log.info("Desk {who} connected", who=self.describe())
            for message in self._reader.feed(data):
                self._handle(desk.parse_request(message), message)
        except ProtocolError as e:
            self.drop(f"protocol error: {e}")

    def _handle(self, request, message) -> None:
        if isinstance(request, desk.ListSingers):
            self.transport.write(desk.encode_message(self.room.desk_list(bool(message.get("all")))))
        elif not self.room.set_gain(request.singer_id, request.gain):
            self.log.warn("Desk {who}: no singer at {id}", who=self.describe(), id=request.singer_id)


class RoomFactory(protocol.Factory):
    def __init__(self, room, protocol_class):
        self.room = room
        self.protocol_class = protocol_class

    def buildProtocol(self, addr):
        return self.protocol_class(self.room)
