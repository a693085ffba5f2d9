"""Which room a connection is for, and its key: header version 4 (our extension).

A 1.1.3 header (version 3, 512 bytes) names no room; its clients join the default room
as before. Our clients name a room by sending the same 512 bytes with version 4, then a
256-byte room block:

    offset  size  field
         0     4  magic b"CHRM"
         4     2  block version, big-endian (1)
         6    62  room name, ASCII, NUL-padded: [a-z0-9][a-z0-9_-]* (1 to 62 characters)
        68   128  key, ASCII, NUL-padded: [A-Za-z0-9_-]* (0 to 128 characters)
       196    60  zero (reserved)

Negotiation: a 1.1.3 server closes on any header version but 1-3, so a client that names a
room learns at once that the server has none. A server of ours that does not read a
block version refuses with signal -4 naming the versions it reads. Both are told in one
line by our clients.
"""
import re
import struct

import attrs

from ..errors import ProtocolError

ROOM_HEADER_VERSION = 4  # the header's version field when a room block follows
ROOM_BLOCK_SIZE = 256
MAGIC = b"CHRM"
BLOCK_VERSION = 1
DEFAULT_ROOM = "default"  # where a client that names no room goes

_ROOM = slice(6, 68)
_KEY = slice(68, 196)
_RESERVED = slice(196, 256)
ROOM_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,61}")
KEY = re.compile(r"[A-Za-z0-9_-]{0,128}")


def check_room_name(name: str) -> str:
    """``name`` if it can name a room; ValueError saying what a room name is."""
    if not ROOM_NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a room name: 1 to 62 of a-z, 0-9, '_' and '-', "
                         "starting with a letter or a digit")
    return name


@attrs.frozen
class RoomAccess:
    """A room and the key a client offers for it ("" for none)."""

    room: str
    key: str = ""

    def __attrs_post_init__(self):
        check_room_name(self.room)
        if not KEY.fullmatch(self.key):
            raise ValueError("a key is 0 to 128 of A-Z, a-z, 0-9, '_' and '-'")

    def to_bytes(self) -> bytes:
        return (MAGIC + struct.pack(">H", BLOCK_VERSION) + self.room.encode().ljust(62, b"\0")
                + self.key.encode().ljust(128, b"\0") + bytes(60))


def _field(raw: bytes, what: str) -> str:
    text = raw.rstrip(b"\0")
    if b"\0" in text or any(byte >= 0x80 for byte in text):
        raise ProtocolError(f"room block: the {what} is garbled")
    return text.decode("ascii")


def parse_room_block(data: bytes) -> RoomAccess:
    """The RoomAccess of a 256-byte room block; ProtocolError saying what is wrong."""
    if len(data) != ROOM_BLOCK_SIZE:
        raise ProtocolError(f"room block must be {ROOM_BLOCK_SIZE} bytes, got {len(data)}")
    if data[:4] != MAGIC:
        raise ProtocolError("header version 4 without a room block")
    (version,) = struct.unpack_from(">H", data, 4)
    if version != BLOCK_VERSION:
        raise ProtocolError(f"room block version {version}: this server reads version "
                            f"{BLOCK_VERSION}")
    if any(data[_RESERVED]):
        raise ProtocolError("room block: reserved bytes are not zero")
    room, key = _field(data[_ROOM], "room name"), _field(data[_KEY], "key")
    try:
        return RoomAccess(room, key)
    except ValueError as e:
        raise ProtocolError(f"room block: {e}") from None
