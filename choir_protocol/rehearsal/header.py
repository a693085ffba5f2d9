"""The 512-byte authentication header that opens every connection.

Version 4 is version 3's layout, followed by a room block (``room_header``).
"""
import struct

import attrs

from ..errors import ProtocolError
from .constants import HEADER_SIZE, VOCAL_GROUPS
from .room_header import ROOM_HEADER_VERSION

PROTOCOL_VERSION = 3
AUTH_KEY = bytes.fromhex(
    "b723d29bdf8bd0b410dfdffe5ea6c78357f1fef8e7e1eeac2f90556e83e15c2284e0afa03a0690beca27e5809c17fe67"
    "635a099e866c75112e3ffc66a1bf9c1aef0c3bb6720eea536b0e9c5b819258c2556f82540dc3baac4037098fca7e8a7d"
    "dd0d68a3056d7fbd83c48663f05c3915731d8df8f4f881e47855b669e777d9e4e8f62210cd0ec7f92484493b35b44b98"
    "ae2f6436ce883f86945cf1f9f841a6d5701cce3ee9d903bf7533448faf5456365a63852ab9ecb8bbdc1f69896d62c593"
    "2da7682099adfc865e9f94d2d3e544a60fccb01003e82d74ed33c2c08508031a69dc5d76ac4747eacc48fec9554d2655"
    "0c6a2b2191615b49c88cc948d44dfa77"
)
assert len(AUTH_KEY) == 256

_NAME = slice(2, 220)
_CLIENT_VERSION = slice(220, 244)
_V2_NAME = slice(2, 244)
_GROUP = slice(244, 256)


def _decode_field(raw: bytes) -> str:
    # 1.1.3 cuts names at a byte count, which can split a UTF-8 sequence.
    return raw.decode("utf-8", errors="replace").strip()


def _encode_field(value: str, length: int) -> bytes:
    raw = value.encode("utf-8")[:length]
    # Never send a split character: drop a trailing partial sequence.
    raw = raw.decode("utf-8", errors="ignore").encode("utf-8")
    return raw.ljust(length, b" ")


@attrs.frozen
class Header:
    name: str = ""
    group: str = VOCAL_GROUPS[0]
    client_version: str = ""
    version: int = PROTOCOL_VERSION

    @classmethod
    def parse(cls, data: bytes) -> "Header":
        if len(data) != HEADER_SIZE:
            raise ProtocolError(f"header must be {HEADER_SIZE} bytes, got {len(data)}")
        if data[HEADER_SIZE - len(AUTH_KEY):] != AUTH_KEY:
            raise ProtocolError("header does not carry the online-choir key")
        (version,) = struct.unpack_from(">H", data)
        if version == 1:
            return cls(version=1, client_version="unknown (v1)")
        if version == 2:
            return cls(
                name=_decode_field(data[_V2_NAME]),
                group=_decode_field(data[_GROUP]) or VOCAL_GROUPS[0],
                client_version="unknown (v2)",
                version=2,
            )
        if version in (3, ROOM_HEADER_VERSION):
            return cls(
                name=_decode_field(data[_NAME]),
                group=_decode_field(data[_GROUP]) or VOCAL_GROUPS[0],
                client_version=_decode_field(data[_CLIENT_VERSION]),
                version=version,
            )
        raise ProtocolError(f"unknown header version {version}")

    def to_bytes(self) -> bytes:
        """Version 3 (1.1.3's), or 4 when a room block is to follow."""
        if self.version not in (PROTOCOL_VERSION, ROOM_HEADER_VERSION):
            raise ValueError("only version 3 and 4 headers are sent")
        return (
            struct.pack(">H", self.version)
            + _encode_field(self.name, 218)
            + _encode_field(self.client_version, 24)
            + _encode_field(self.group, 12)
            + AUTH_KEY
        )
