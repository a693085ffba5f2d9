"""Mixing-desk messages: 2-byte big-endian length, then gzip-compressed UTF-8 JSON."""
import base64
import gzip
import json
import math
import os
import random
import struct
import tracemalloc
import zlib

from hypothesis import given, settings
from hypothesis import strategies as st
from onlinechoir.common.message_protocol import MessageProtocol
import pytest

from choir_protocol.errors import ProtocolError
from choir_protocol.rehearsal import desk
from choir_protocol.rehearsal.desk import (MAX_DECOMPRESSED, AdjustGain, ListSingers, MessageReader,
                                           decode_payload, encode_message, parse_request)

# -- helpers ----------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=10), children, max_size=6),
    max_leaves=30,
)

list_reply = [
    {"id": ["192.168.1.10", 50123], "name": "Anna", "group": "Alto", "gain": 1.0},
    {"id": ["::1", 40000], "name": "Zoë ☺", "group": "No group", "gain": 0.25},
]
SAMPLE_MESSAGES = [
    {"action": "list"},
    {"action": "adjust_gain", "id": ["10.0.0.2", 8868], "gain": 1.7782794100389228},
    list_reply,
    [],
]


def framed(payload: bytes) -> bytes:
    return struct.pack(">H", len(payload)) + payload


def split_at(data: bytes, cuts) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in zip(points, points[1:])]


def peak_memory_of(function, *args) -> int:
    """Peak bytes Python allocated while running ``function`` (raising or not)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        try:
            function(*args)
        except ProtocolError:
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# -- encode / decode ------------------------------------------------------------------------

@pytest.mark.parametrize("message", SAMPLE_MESSAGES)
def test_framing(message):
    data = encode_message(message)
    (length,) = struct.unpack(">H", data[:2])
    assert length == len(data) - 2
    assert data[2:4] == b"\x1f\x8b"  # gzip magic
    assert json.loads(gzip.decompress(data[2:]).decode("utf-8")) == message


@settings(max_examples=200)
@given(json_values)
def test_round_trip(message):
    data = encode_message(message)
    assert decode_payload(data[2:]) == message
    assert MessageReader().feed(data) == [message]


def test_unicode_survives():
    message = {"name": "Jürgen 中文 🎶"}
    assert MessageReader().feed(encode_message(message)) == [message]


def test_too_long_message_is_refused():
    incompressible = base64.b64encode(os.urandom(100_000)).decode()  # gzips to about 100 kB
    with pytest.raises(ValueError):
        encode_message({"junk": incompressible})


# -- compatibility with 1.1.3 ---------------------------------------------------------------

@pytest.mark.parametrize("message", SAMPLE_MESSAGES)
def test_1_1_3_reads_ours(message):
    data = encode_message(message)
    length = MessageProtocol.get_length(data[:2])
    assert length == len(data) - 2
    assert MessageProtocol.from_bytes(data[2:2 + length]).msg == message


@pytest.mark.parametrize("message", SAMPLE_MESSAGES)
def test_we_read_1_1_3(message):
    assert MessageReader().feed(MessageProtocol(message).to_bytes()) == [message]


@settings(max_examples=100)
@given(json_values)
def test_1_1_3_compatible_both_ways(message):
    ours = encode_message(message)
    assert MessageProtocol.from_bytes(ours[2:]).msg == message
    assert MessageReader().feed(MessageProtocol(message).to_bytes()) == [message]


def test_1_1_3_desk_requests_parse():
    reader = MessageReader()
    data = (MessageProtocol({"action": "list"}).to_bytes()
            + MessageProtocol({"action": "adjust_gain", "id": ["1.2.3.4", 5555], "gain": 0}).to_bytes())
    requests = [parse_request(m) for m in reader.feed(data)]
    assert requests == [ListSingers(), AdjustGain(("1.2.3.4", 5555), 0.0)]


# -- MessageReader ----------------------------------------------------------------------------

@settings(max_examples=200)
@given(messages=st.lists(json_values, max_size=6), cuts=st.lists(st.integers(0, 5000), max_size=20))
def test_reader_any_split(messages, cuts):
    data = b"".join(encode_message(m) for m in messages)
    reader = MessageReader()
    got = []
    for piece in split_at(data, cuts):
        got += reader.feed(piece)
    assert got == messages


def test_reader_byte_by_byte():
    data = b"".join(encode_message(m) for m in SAMPLE_MESSAGES)
    reader = MessageReader()
    got = []
    for i in range(len(data)):
        got += reader.feed(data[i:i + 1])
    assert got == SAMPLE_MESSAGES


def test_reader_waits_for_the_whole_message():
    data = encode_message({"action": "list"})
    reader = MessageReader()
    assert reader.feed(data[:1]) == []
    assert reader.feed(data[1:-1]) == []
    assert reader.feed(data[-1:]) == [{"action": "list"}]


def test_reader_garbage_raises():
    with pytest.raises(ProtocolError):
        MessageReader().feed(framed(b"this is not gzip at all"))


def test_reader_empty_payload_raises():
    with pytest.raises(ProtocolError):
        MessageReader().feed(b"\x00\x00")


# -- hostile payloads -------------------------------------------------------------------------

@pytest.mark.parametrize("payload", [
    b"",
    b"not gzip",
    b"\x1f\x8b",
    b"\x1f\x8b\x08\x00" + bytes(20),
    zlib.compress(b'{"action": "list"}'),  # zlib, not gzip
])
def test_garbage_gzip_raises(payload):
    with pytest.raises(ProtocolError):
        decode_payload(payload)


def test_corrupt_crc_raises():
    payload = bytearray(gzip.compress(b'{"action": "list"}'))
    payload[-8] ^= 0xFF  # the CRC32 in the trailer
    with pytest.raises(ProtocolError):
        decode_payload(bytes(payload))


@pytest.mark.parametrize("cut", [1, 4, 8])
def test_truncated_gzip_raises(cut):
    """A stream missing (part of) its CRC/length trailer was never checked: refuse it."""
    payload = gzip.compress(b'{"action": "list"}')[:-cut]
    with pytest.raises(ProtocolError):
        decode_payload(payload)


def test_data_after_the_gzip_stream_raises():
    payload = gzip.compress(b'{"action": "list"}') + gzip.compress(b"1")
    with pytest.raises(ProtocolError):
        decode_payload(payload)


@pytest.mark.parametrize("body", [
    b"not json",
    b'{"action": "list"',
    b"",
    b"\xff\xfe\x00{}",  # not UTF-8
    b'{"a": 1} {"b": 2}',
])
def test_garbage_json_raises(body):
    with pytest.raises(ProtocolError):
        decode_payload(gzip.compress(body))
    with pytest.raises(ProtocolError):
        MessageReader().feed(framed(gzip.compress(body)))


@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"a":' * 50_000, b"[" * 100_000 + b"]" * 100_000])
def test_deeply_nested_json_raises_protocol_error(body):
    """json.loads raises RecursionError on deep nesting; it must not escape as such."""
    with pytest.raises(ProtocolError):
        decode_payload(gzip.compress(body))


def test_gzip_bomb_raises_without_inflating_it():
    bomb = gzip.compress(bytes(50 << 20), compresslevel=9)  # 50 MB of zeros
    assert len(bomb) <= desk.MAX_MESSAGE  # it fits in one desk message
    with pytest.raises(ProtocolError):
        decode_payload(bomb)
    with pytest.raises(ProtocolError):
        MessageReader().feed(framed(bomb))
    peak = peak_memory_of(decode_payload, bomb)
    assert peak < 3 * MAX_DECOMPRESSED  # nowhere near 50 MB


def test_bomb_of_valid_json_raises():
    """Past the limit, even JSON that would parse is refused (and not half-parsed)."""
    body = b"[1" + b" " * MAX_DECOMPRESSED + b"]"
    with pytest.raises(ProtocolError):
        decode_payload(gzip.compress(body))
    truncated_but_valid = b"1" + b"0" * (MAX_DECOMPRESSED + 100)
    with pytest.raises(ProtocolError):
        decode_payload(gzip.compress(truncated_but_valid))


def test_message_of_exactly_the_limit_is_accepted():
    text = "a" * (MAX_DECOMPRESSED - 2)
    body = json.dumps(text).encode()
    assert len(body) == MAX_DECOMPRESSED
    assert decode_payload(gzip.compress(body)) == text


def test_one_byte_past_the_limit_is_refused():
    body = json.dumps("a" * (MAX_DECOMPRESSED - 1)).encode()
    assert len(body) == MAX_DECOMPRESSED + 1
    with pytest.raises(ProtocolError):
        decode_payload(gzip.compress(body))


# -- parse_request ----------------------------------------------------------------------------

def test_parse_list():
    assert parse_request({"action": "list"}) == ListSingers()
    assert parse_request({"action": "list", "all": True}) == ListSingers()


@pytest.mark.parametrize("gain", [0, 0.0, 1, 1.5, 3.1622776601683795, 100])
def test_parse_adjust_gain(gain):
    request = parse_request({"action": "adjust_gain", "id": ["192.168.0.3", 51000], "gain": gain})
    assert request == AdjustGain(("192.168.0.3", 51000), float(gain))
    assert isinstance(request.gain, float)
    assert isinstance(request.singer_id, tuple)


def test_parsed_id_matches_a_peer_tuple():
    """The id comes back as the (host, port) tuple the server lists, so it can be looked up."""
    message = MessageReader().feed(encode_message({"action": "adjust_gain", "id": ["::1", 1234], "gain": 2}))[0]
    assert parse_request(message).singer_id == ("::1", 1234)


@pytest.mark.parametrize("singer_id", [
    None, "192.168.0.3:51000", 51000, {"host": "a", "port": 1}, ["a", None], ["a", 1.5], [["a"], 1],
])
def test_parse_rejects_bad_ids(singer_id):
    with pytest.raises(ProtocolError):
        parse_request({"action": "adjust_gain", "id": singer_id, "gain": 1.0})


def test_parse_rejects_missing_id():
    with pytest.raises(ProtocolError):
        parse_request({"action": "adjust_gain", "gain": 1.0})


@pytest.mark.parametrize("gain", [True, False, -1, -0.001, 100.5, 1e300, math.inf, -math.inf, math.nan,
                                  "1.0", None, [1.0], {"v": 1}])
def test_parse_rejects_bad_gains(gain):
    with pytest.raises(ProtocolError):
        parse_request({"action": "adjust_gain", "id": ["h", 1], "gain": gain})


def test_parse_rejects_missing_gain():
    with pytest.raises(ProtocolError):
        parse_request({"action": "adjust_gain", "id": ["h", 1]})


@pytest.mark.parametrize("action", [None, "", "LIST", "set_gain", "quit", 1, ["list"]])
def test_parse_rejects_unknown_actions(action):
    with pytest.raises(ProtocolError):
        parse_request({"action": action})


def test_parse_rejects_no_action():
    with pytest.raises(ProtocolError):
        parse_request({})


@pytest.mark.parametrize("message", [None, "list", 3, 2.5, True, [], ["list"], [{"action": "list"}]])
def test_parse_rejects_non_objects(message):
    with pytest.raises(ProtocolError):
        parse_request(message)


@settings(max_examples=200)
@given(json_values)
def test_parse_request_never_fails_otherwise(message):
    """Any JSON value gives a request or a ProtocolError, nothing else."""
    try:
        request = parse_request(message)
    except ProtocolError:
        return
    assert isinstance(request, (ListSingers, AdjustGain))


# -- the list reply and the request budget ---------------------------------------------------

@settings(max_examples=30, deadline=None)
@given(st.integers(0, 900), st.integers(0, 2**32))
def test_list_reply_holds_every_singer_that_fits(count, seed):
    rng = random.Random(seed)
    entries = [{"id": [f"10.0.{i // 250}.{i % 250}", 40000 + i],
                "name": "".join(chr(rng.randrange(0x4E00, 0x9FFF)) for _ in range(70)),
                "group": "Alto", "gain": 1.0} for i in range(count)]
    reply, shown = desk.encode_list_reply(entries)
    assert len(reply) - 2 <= desk.MAX_MESSAGE
    assert decode_payload(reply[2:]) == entries[:shown]
    if shown < count:  # one more would not have fitted
        with pytest.raises(desk.MessageTooLong):
            encode_message(entries[:shown + 1])


def test_request_budget_allows_a_burst_then_the_rate():
    budget = desk.RequestBudget(rate=4, burst=10)
    assert all(budget.allow(0.0) for _ in range(10))
    assert not budget.allow(0.0)
    assert budget.allow(0.25) and not budget.allow(0.25)  # one token per 1/4 s
    assert sum(budget.allow(0.25 + t / 64) for t in range(1, 65)) == 4  # 4 in the next second
    assert sum(budget.allow(100.0) for _ in range(20)) == 10  # never more than the burst
