"""Chunk framing: 4-byte big-endian index times 199, then a fixed-size payload."""
import random
import struct

from hypothesis import given, settings
from hypothesis import strategies as st
import pytest

from choir_protocol.errors import ProtocolError
from choir_protocol.rehearsal.chunks import (MAX_INDEX, ChunkReader, decode_index, encode_index,
                                             signal_chunk)
from choir_protocol.rehearsal.constants import (INDEX_BYTES, INDEX_MULTIPLIER, MIX_CHUNK_SIZE,
                                                TRACK_CHUNK_SIZE, VOICE_CHUNK_SIZE, Signal)

SIZES = [VOICE_CHUNK_SIZE, TRACK_CHUNK_SIZE, MIX_CHUNK_SIZE]
MIN_INDEX = -(2**31) // INDEX_MULTIPLIER + 1  # the most negative index whose product fits


# -- helpers ----------------------------------------------------------------------------

def chunk(index: int, size: int, fill: int = 0) -> bytes:
    return encode_index(index) + bytes([fill]) * (size - INDEX_BYTES)


def split_at(data: bytes, cuts) -> list[bytes]:
    """``data`` cut at the given offsets (any order, duplicates allowed)."""
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in zip(points, points[1:])]


def feed_all(reader: ChunkReader, pieces) -> list:
    out = []
    for piece in pieces:
        out += reader.feed(piece)
        assert 0 <= reader.pending < reader.size  # at most one partial chunk held back
    return out


@st.composite
def chunk_streams(draw, size=None):
    """(size, [(index, chunk), ...]) with arbitrary valid indices and payloads."""
    if size is None:
        size = draw(st.sampled_from(SIZES))
    count = draw(st.integers(0, 12))
    chunks = []
    for _ in range(count):
        index = draw(st.one_of(st.integers(-3, 1000), st.integers(MIN_INDEX, MAX_INDEX)))
        payload = draw(st.binary(min_size=size - INDEX_BYTES, max_size=size - INDEX_BYTES))
        chunks.append((index, encode_index(index) + payload))
    return size, chunks


# -- the index ----------------------------------------------------------------------------

@pytest.mark.parametrize("index, raw", [
    (0, b"\x00\x00\x00\x00"),
    (1, struct.pack(">i", 199)),
    (-1, b"\xff\xff\xff\x39"),  # -199
    (-2, struct.pack(">i", -398)),
    (-3, struct.pack(">i", -597)),
    (1000, struct.pack(">i", 199_000)),
])
def test_encode_index_is_big_endian_times_199(index, raw):
    assert encode_index(index) == raw
    assert decode_index(raw) == index


@given(st.integers(MIN_INDEX, MAX_INDEX))
def test_index_round_trip(index):
    raw = encode_index(index)
    assert len(raw) == INDEX_BYTES
    assert struct.unpack(">i", raw)[0] == index * INDEX_MULTIPLIER
    assert decode_index(raw) == index


@given(st.integers(-(2**31), 2**31 - 1))
def test_decode_any_int32(raw_value):
    raw = struct.pack(">i", raw_value)
    if raw_value % INDEX_MULTIPLIER:
        with pytest.raises(ProtocolError):
            decode_index(raw)
    else:
        assert decode_index(raw) == raw_value // INDEX_MULTIPLIER


@pytest.mark.parametrize("raw_value", [1, 198, 200, -1, -198, -200, 199 * 7 + 3, 2**31 - 1, -(2**31)])
def test_non_multiples_of_199_are_invalid(raw_value):
    with pytest.raises(ProtocolError):
        decode_index(struct.pack(">i", raw_value))


def test_decode_index_at_an_offset():
    data = b"xy" + encode_index(42) + b"z"
    assert decode_index(data, 2) == 42


def test_max_index_is_the_largest_that_fits():
    assert decode_index(encode_index(MAX_INDEX)) == MAX_INDEX
    with pytest.raises(struct.error):
        encode_index(MAX_INDEX + 1)


# -- signal chunks ------------------------------------------------------------------------

@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("signal", list(Signal))
def test_signal_chunk_has_the_full_size_and_a_zero_payload(signal, size):
    data = signal_chunk(signal, size)
    assert len(data) == size
    assert decode_index(data) == signal
    assert data[INDEX_BYTES:] == bytes(size - INDEX_BYTES)


def test_signal_values():
    assert (Signal.END, Signal.ABORT, Signal.KEEPALIVE) == (-1, -2, -3)
    assert signal_chunk(Signal.END, VOICE_CHUNK_SIZE)[:4] == struct.pack(">i", -199)


# -- ChunkReader ----------------------------------------------------------------------------

def test_reader_one_chunk_per_feed():
    reader = ChunkReader(VOICE_CHUNK_SIZE)
    data = chunk(5, VOICE_CHUNK_SIZE, 7)
    assert reader.feed(data) == [(5, data)]
    assert reader.pending == 0


def test_reader_returns_the_whole_chunk_index_included():
    reader = ChunkReader(TRACK_CHUNK_SIZE)
    data = chunk(3, TRACK_CHUNK_SIZE, 9) + chunk(4, TRACK_CHUNK_SIZE, 8)
    [(i0, c0), (i1, c1)] = reader.feed(data)
    assert (i0, i1) == (3, 4)
    assert c0 == data[:TRACK_CHUNK_SIZE] and c1 == data[TRACK_CHUNK_SIZE:]
    assert isinstance(c0, bytes) and len(c0) == len(c1) == TRACK_CHUNK_SIZE


def test_reader_holds_back_a_partial_chunk():
    reader = ChunkReader(VOICE_CHUNK_SIZE)
    data = chunk(0, VOICE_CHUNK_SIZE, 1) + chunk(1, VOICE_CHUNK_SIZE, 2)
    assert reader.feed(data[:100]) == []
    assert reader.pending == 100
    assert reader.feed(data[100:300]) == [(0, data[:260])]
    assert reader.pending == 40
    assert reader.feed(data[300:]) == [(1, data[260:])]
    assert reader.pending == 0


def test_reader_byte_by_byte():
    reader = ChunkReader(VOICE_CHUNK_SIZE)
    data = b"".join(chunk(i, VOICE_CHUNK_SIZE, i) for i in range(3))
    got = feed_all(reader, [data[i:i + 1] for i in range(len(data))])
    assert [index for index, _ in got] == [0, 1, 2]
    assert b"".join(c for _, c in got) == data


def test_reader_empty_feed():
    reader = ChunkReader(MIX_CHUNK_SIZE)
    assert reader.feed(b"") == []
    reader.feed(b"abc")
    assert reader.feed(b"") == []
    assert reader.pending == 3


@settings(max_examples=300)
@given(stream=chunk_streams(), cuts=st.lists(st.integers(0, 20_000), max_size=30))
def test_reader_any_split_yields_the_chunks_in_order(stream, cuts):
    size, chunks = stream
    data = b"".join(c for _, c in chunks)
    reader = ChunkReader(size)
    assert feed_all(reader, split_at(data, cuts)) == chunks
    assert reader.pending == 0


@settings(max_examples=100)
@given(stream=chunk_streams(size=VOICE_CHUNK_SIZE), tail=st.integers(1, VOICE_CHUNK_SIZE - 1),
       cuts=st.lists(st.integers(0, 5000), max_size=10))
def test_reader_keeps_an_incomplete_tail(stream, tail, cuts):
    size, chunks = stream
    data = b"".join(c for _, c in chunks) + chunk(9, size)[:tail]
    reader = ChunkReader(size)
    assert feed_all(reader, split_at(data, cuts)) == chunks
    assert reader.pending == tail


def test_reader_many_chunks_in_one_feed_memory_is_bounded():
    reader = ChunkReader(VOICE_CHUNK_SIZE)
    data = b"".join(chunk(i, VOICE_CHUNK_SIZE) for i in range(1000)) + b"\x00" * 17
    got = reader.feed(data)
    assert [i for i, _ in got] == list(range(1000))
    assert reader.pending == 17


def test_reader_garbage_index_raises():
    reader = ChunkReader(VOICE_CHUNK_SIZE)
    bad = struct.pack(">i", 12345) + bytes(VOICE_CHUNK_SIZE - 4)
    with pytest.raises(ProtocolError):
        reader.feed(bad)


def test_reader_garbage_after_good_chunks_raises():
    reader = ChunkReader(TRACK_CHUNK_SIZE)
    data = chunk(0, TRACK_CHUNK_SIZE) + chunk(1, TRACK_CHUNK_SIZE) + b"\x01\x02\x03\x04" + bytes(512)
    with pytest.raises(ProtocolError):
        reader.feed(data)


def test_reader_garbage_split_across_feeds_raises():
    reader = ChunkReader(MIX_CHUNK_SIZE)
    bad = b"\x00\x00\x00\x07" + bytes(MIX_CHUNK_SIZE - 4)
    assert reader.feed(bad[:2]) == []
    with pytest.raises(ProtocolError):
        reader.feed(bad[2:])


@settings(max_examples=100)
@given(raw=st.integers(-(2**31), 2**31 - 1).filter(lambda v: v % INDEX_MULTIPLIER),
       seed=st.integers(0, 2**32))
def test_reader_any_garbage_index_raises(raw, seed):
    reader = ChunkReader(VOICE_CHUNK_SIZE)
    payload = random.Random(seed).randbytes(VOICE_CHUNK_SIZE - 4)
    with pytest.raises(ProtocolError):
        reader.feed(struct.pack(">i", raw) + payload)
