"""Header version 4: the room block, and the server connections reading it split anywhere."""
import struct

from hypothesis import given
from hypothesis import strategies as st
import pytest

from choir_protocol.errors import ProtocolError
from choir_protocol.rehearsal.connections import (DirectorServerConnection, SingerServerConnection,
                                                  initiate)
from choir_protocol.rehearsal.constants import HEADER_SIZE
from choir_protocol.rehearsal.events import Authenticated
from choir_protocol.rehearsal.header import Header
from choir_protocol.rehearsal.room_header import (ROOM_BLOCK_SIZE, RoomAccess, check_room_name,
                                                  parse_room_block)

ROOM_NAMES = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,61}", fullmatch=True)
KEYS = st.from_regex(r"[A-Za-z0-9_-]{0,128}", fullmatch=True)
SINGER = Header("Anna", "Alto", "choir-singer 0.1.0")


def test_the_block_byte_for_byte():
    block = RoomAccess("altos", "k3y_-9").to_bytes()
    assert len(block) == ROOM_BLOCK_SIZE
    assert block[:4] == b"CHRM" and struct.unpack(">H", block[4:6]) == (1,)
    assert block[6:68] == b"altos".ljust(62, b"\0")
    assert block[68:196] == b"k3y_-9".ljust(128, b"\0")
    assert block[196:] == bytes(60)


@given(ROOM_NAMES, KEYS)
def test_any_room_and_key_go_through(room, key):
    assert parse_room_block(RoomAccess(room, key).to_bytes()) == RoomAccess(room, key)


def test_no_room_is_1_1_3s_header_unchanged():
    assert initiate(SINGER) == SINGER.to_bytes()
    assert struct.unpack(">H", SINGER.to_bytes()[:2]) == (3,)


@pytest.mark.parametrize("fault, says", [
    (lambda b: b"XXXX" + b[4:], "without a room block"),
    (lambda b: b[:4] + struct.pack(">H", 2) + b[6:], "room block version 2: this server reads "
                                                      "version 1"),
    (lambda b: b[:255] + b"\x01", "reserved bytes are not zero"),
    (lambda b: b[:6] + b"Altos".ljust(62, b"\0") + b[68:], "not a room name"),
    (lambda b: b[:6] + b"a\0b".ljust(62, b"\0") + b[68:], "room name is garbled"),
    (lambda b: b[:6] + "é".encode().ljust(62, b"\0") + b[68:], "room name is garbled"),
    (lambda b: b[:6] + bytes(62) + b[68:], "not a room name"),
    (lambda b: b[:68] + b"no spaces".ljust(128, b"\0") + b[196:], "a key is 0 to 128 of"),
    (lambda b: b[:68] + b"\xff".ljust(128, b"\0") + b[196:], "key is garbled"),
])
def test_a_bad_block_is_refused_saying_why(fault, says):
    with pytest.raises(ProtocolError, match=says):
        parse_room_block(fault(RoomAccess("altos", "key").to_bytes()))


@given(st.binary(min_size=ROOM_BLOCK_SIZE, max_size=ROOM_BLOCK_SIZE))
def test_any_256_bytes_are_a_room_or_a_one_line_refusal(data):
    try:
        access = parse_room_block(data)
    except ProtocolError as e:
        assert "\n" not in str(e)
    else:
        assert parse_room_block(access.to_bytes()) == access


def test_names_and_keys_are_checked_when_made():
    with pytest.raises(ValueError, match="not a room name"):
        RoomAccess("Choir One")
    with pytest.raises(ValueError, match="a key is"):
        RoomAccess("one", "x" * 129)
    assert check_room_name("choir-1") == "choir-1"


@given(st.lists(st.integers(1, 200), max_size=20), ROOM_NAMES, KEYS)
@pytest.mark.parametrize("connection", [SingerServerConnection, DirectorServerConnection])
def test_the_server_reads_a_room_header_split_anywhere(connection, cuts, room, key):
    data = initiate(SINGER, RoomAccess(room, key)) + bytes(4)  # and the start of a chunk
    server, events, at = connection(), [], 0
    for cut in cuts + [len(data)]:
        events += server.receive_data(data[at:at + cut])
        at += cut
        if at >= len(data):
            break
    assert events == [Authenticated(Header("Anna", "Alto", "choir-singer 0.1.0", version=4),
                                    RoomAccess(room, key))]
    assert server.pending_bytes == 4


def test_a_1_1_3_header_names_no_room():
    server = SingerServerConnection()
    assert server.receive_data(SINGER.to_bytes()) == [Authenticated(SINGER, None)]


def test_a_bad_room_block_fails_the_connection_before_any_chunk():
    server = SingerServerConnection()
    header = initiate(SINGER, RoomAccess("altos"))[:HEADER_SIZE]
    assert server.receive_data(header) == []  # the block is awaited, nothing is told yet
    with pytest.raises(ProtocolError, match="without a room block"):
        server.receive_data(bytes(ROOM_BLOCK_SIZE))
