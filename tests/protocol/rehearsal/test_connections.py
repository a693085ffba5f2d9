"""The connection state machines, both sides, fed bytes split anywhere.

Over 400 lines: one test per rule of the state machines of both sides, on shared byte
builders; split by role, each file would repeat them.
"""
import random
import warnings

from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
import pytest

from choir_protocol.errors import ProtocolError
from choir_protocol.rehearsal import connections as conn
from choir_protocol.rehearsal.adpcm import MonoDecoder, MonoEncoder, StereoDecoder, StereoEncoder
from choir_protocol.rehearsal.chunks import decode_index, encode_index, signal_chunk
from choir_protocol.rehearsal.connections import (DirectorClientConnection,
                                                  DirectorServerConnection, DirectorState,
                                                  SingerClientConnection, SingerClientState,
                                                  SingerServerConnection, SingerState)
from choir_protocol.rehearsal.constants import (FRAMES_PER_CHUNK, HEADER_SIZE, MIX_CHUNK_SIZE,
                                                TRACK_CHUNK_SIZE, VOICE_CHUNK_SIZE)
from choir_protocol.rehearsal.events import (Authenticated, CheckedIn, DroppedOut, KeepAlive,
                                             MixChunk, SessionEnded, SessionRefused, SessionStarted,
                                             StrayChunks, TrackAudio, TrackChunk, TrackEnded,
                                             VoiceChunks)
from choir_protocol.rehearsal.header import Header

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

    from onlinechoir.common import audio_codecs as their

SINGER = Header("Anna", "Alto", "test-1")
DIRECTOR = Header("Maestro", "No group", "test-1")
VOICE_PAYLOAD = VOICE_CHUNK_SIZE - 4  # 256
TRACK_PAYLOAD = TRACK_CHUNK_SIZE - 4  # 512
MIX_PAYLOAD = MIX_CHUNK_SIZE - 4  # 1024


# -- helpers ------------------------------------------------------------------------------------

def payload(index: int, size: int) -> bytes:
    """A payload that says which chunk it belongs to."""
    return (index % 251).to_bytes(1, "big") * size


def voice(index: int) -> bytes:
    return encode_index(index) + payload(index, VOICE_PAYLOAD)


def track(index: int) -> bytes:
    return encode_index(index) + payload(index, TRACK_PAYLOAD)


def mix(index: int) -> bytes:
    return encode_index(index) + payload(index, MIX_PAYLOAD)


def sig(signal: int, size: int) -> bytes:
    return signal_chunk(signal, size)


def split_at(data: bytes, cuts) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in zip(points, points[1:])]


def feed(machine, pieces) -> list:
    events = []
    for piece in pieces:
        events += machine.receive_data(piece)
    return events


def atoms(events) -> tuple[list, int]:
    """Events made independent of how the bytes were split.

    VoiceChunks are expanded to one ("voice", index, payload) per chunk; StrayChunks are
    only summed (they are reported at the end of each receive_data call).
    """
    out, stray = [], 0
    for event in events:
        if isinstance(event, VoiceChunks):
            assert event.payloads, "empty VoiceChunks"
            out += [("voice", event.first_index + j, p) for j, p in enumerate(event.payloads)]
        elif isinstance(event, StrayChunks):
            assert event.count > 0
            stray += event.count
        elif isinstance(event, TrackChunk):
            out.append(("TrackChunk", event.index, event.chunk))
        elif isinstance(event, TrackAudio):
            out.append(("TrackAudio", event.index, event.payload))
        elif isinstance(event, MixChunk):
            out.append(("MixChunk", event.index, event.pcm))
        else:
            out.append(event)
    return out, stray


def authenticated_singer() -> SingerServerConnection:
    singer = SingerServerConnection()
    assert singer.receive_data(SINGER.to_bytes()) == [Authenticated(SINGER)]
    return singer


def singing_singer() -> SingerServerConnection:
    singer = authenticated_singer()
    singer.invite()
    assert singer.receive_data(conn.CHECK_IN_FROM_SINGER) == [CheckedIn()]
    return singer


def singer_in(state: str) -> SingerServerConnection:
    singer = authenticated_singer()
    if state == "idle":
        return singer
    singer.invite()
    if state == "invited":
        return singer
    singer.receive_data(conn.CHECK_IN_FROM_SINGER)
    if state == "singing":
        return singer
    assert singer.receive_data(conn.ABORT_FROM_SINGER) == [DroppedOut()]
    assert state == "dropped"
    return singer


def streaming_director() -> DirectorServerConnection:
    director = DirectorServerConnection()
    assert director.receive_data(DIRECTOR.to_bytes()) == [Authenticated(DIRECTOR)]
    return director


# -- the fixed signal chunks, and 1.1.3's versions of them ---------------------------------------

@pytest.mark.parametrize("data, signal, size, theirs", [
    (conn.KEEPALIVE_TO_SINGER, -3, TRACK_CHUNK_SIZE, their.StereoEncoder.silence_frame(-3)),
    (conn.END_TO_SINGER, -1, TRACK_CHUNK_SIZE, their.StereoEncoder.silence_frame(-1)),
    (conn.REFUSED_TO_DIRECTOR, -2, MIX_CHUNK_SIZE, their.AudioEncoder.silence_frame(-2)),
    (conn.CHECK_IN_FROM_SINGER, -1, VOICE_CHUNK_SIZE, their.AdpcmEncoder.silence_frame(-1)),
    (conn.ABORT_FROM_SINGER, -2, VOICE_CHUNK_SIZE, their.AdpcmEncoder.silence_frame(-2)),
    (conn.KEEPALIVE_FROM_SINGER, -3, VOICE_CHUNK_SIZE, their.AdpcmEncoder.silence_frame(-3)),
    (conn.END_FROM_DIRECTOR, -1, TRACK_CHUNK_SIZE, their.StereoEncoder.silence_frame(-1)),
])
def test_signal_chunks_match_1_1_3(data, signal, size, theirs):
    assert len(data) == size
    assert decode_index(data) == signal
    assert data == theirs


# == SingerServerConnection =======================================================================

def test_singer_server_starts_waiting_for_the_header():
    singer = SingerServerConnection()
    assert singer.state is SingerState.HEADER
    assert singer.header is None
    data = SINGER.to_bytes()
    assert singer.receive_data(data[:300]) == []
    assert singer.pending_bytes == 300
    assert singer.state is SingerState.HEADER
    assert singer.receive_data(data[300:]) == [Authenticated(SINGER)]
    assert singer.state is SingerState.IDLE
    assert singer.header == SINGER
    assert singer.pending_bytes == 0


def test_singer_server_header_and_chunks_in_one_read():
    singer = SingerServerConnection()
    events = singer.receive_data(SINGER.to_bytes() + conn.KEEPALIVE_FROM_SINGER + voice(0)[:10])
    assert events == [Authenticated(SINGER), KeepAlive()]
    assert singer.pending_bytes == 10


def test_singer_server_bad_header_raises():
    bad = bytearray(SINGER.to_bytes())
    bad[-1] ^= 0xFF
    with pytest.raises(ProtocolError):
        SingerServerConnection().receive_data(bytes(bad))


def test_singer_server_v2_header_is_accepted():
    raw = b"\x00\x02" + b"Old Bob".ljust(242) + b"Bass".ljust(12) + SINGER.to_bytes()[256:]
    [event] = SingerServerConnection().receive_data(raw)
    assert event.header.name == "Old Bob" and event.header.version == 2


def test_invite_needs_an_idle_singer():
    singer = SingerServerConnection()
    with pytest.raises(RuntimeError):
        singer.invite()  # no header yet
    singer.receive_data(SINGER.to_bytes())
    singer.invite()
    assert singer.state is SingerState.INVITED
    with pytest.raises(RuntimeError):
        singer.invite()


def test_check_in_then_voice():
    singer = authenticated_singer()
    singer.invite()
    assert singer.receive_data(conn.CHECK_IN_FROM_SINGER) == [CheckedIn()]
    assert singer.state is SingerState.SINGING
    [event] = singer.receive_data(voice(0) + voice(1) + voice(2))
    assert isinstance(event, VoiceChunks)
    assert event.first_index == 0
    assert event.payloads == [payload(i, VOICE_PAYLOAD) for i in range(3)]
    [event] = singer.receive_data(voice(3))
    assert (event.first_index, event.payloads) == (3, [payload(3, VOICE_PAYLOAD)])
    assert singer.next_index == 4


def test_check_in_and_voice_in_one_read():
    singer = authenticated_singer()
    singer.invite()
    events = singer.receive_data(conn.CHECK_IN_FROM_SINGER + voice(0) + voice(1))
    assert events[0] == CheckedIn()
    assert atoms(events[1:]) == ([("voice", 0, payload(0, 256)), ("voice", 1, payload(1, 256))], 0)


def test_keepalive_splits_voice_runs_in_order():
    singer = singing_singer()
    events = singer.receive_data(voice(0) + voice(1) + conn.KEEPALIVE_FROM_SINGER + voice(2))
    assert [type(e) for e in events] == [VoiceChunks, KeepAlive, VoiceChunks]
    assert (events[0].first_index, len(events[0].payloads)) == (0, 2)
    assert (events[2].first_index, len(events[2].payloads)) == (2, 1)


@pytest.mark.parametrize("state_setup", ["idle", "invited", "singing", "dropped"])
def test_keepalive_in_every_state(state_setup):
    singer = singer_in(state_setup)
    before = singer.state
    assert singer.receive_data(conn.KEEPALIVE_FROM_SINGER) == [KeepAlive()]
    assert singer.state is before


@pytest.mark.parametrize("bad_next", [0, 2, 100])
def test_out_of_order_voice_raises(bad_next):
    singer = singing_singer()
    singer.receive_data(voice(0))
    with pytest.raises(ProtocolError):
        singer.receive_data(voice(bad_next))


def test_repeated_voice_chunk_raises():
    singer = singing_singer()
    with pytest.raises(ProtocolError):
        singer.receive_data(voice(0) + voice(1) + voice(1))


def test_voice_must_start_at_zero():
    singer = singing_singer()
    with pytest.raises(ProtocolError):
        singer.receive_data(voice(1))


def test_double_check_in_raises():
    singer = singing_singer()
    with pytest.raises(ProtocolError):
        singer.receive_data(conn.CHECK_IN_FROM_SINGER)


def test_double_check_in_in_one_read_raises():
    singer = authenticated_singer()
    singer.invite()
    with pytest.raises(ProtocolError):
        singer.receive_data(conn.CHECK_IN_FROM_SINGER + voice(0) + conn.CHECK_IN_FROM_SINGER)


@pytest.mark.parametrize("state", ["invited", "singing"])
@pytest.mark.parametrize("signal", [-4, -5, -1000])
def test_unknown_signal_raises(state, signal):
    singer = singer_in(state)
    with pytest.raises(ProtocolError):
        singer.receive_data(sig(signal, VOICE_CHUNK_SIZE))


def test_garbage_index_raises():
    singer = singing_singer()
    with pytest.raises(ProtocolError):
        singer.receive_data(b"\x00\x00\x00\x01" + bytes(VOICE_PAYLOAD))


def test_drop_out():
    singer = singing_singer()
    events = singer.receive_data(voice(0) + conn.ABORT_FROM_SINGER)
    assert atoms(events) == ([("voice", 0, payload(0, 256)), DroppedOut()], 0)
    assert singer.state is SingerState.DROPPED


def test_drop_out_before_check_in():
    singer = singer_in("invited")
    assert singer.receive_data(conn.ABORT_FROM_SINGER) == [DroppedOut()]
    assert singer.state is SingerState.DROPPED


def test_audio_and_signals_in_idle_are_stray():
    singer = authenticated_singer()
    data = voice(5) + voice(6) + conn.CHECK_IN_FROM_SINGER + conn.ABORT_FROM_SINGER + voice(0)
    assert singer.receive_data(data) == [StrayChunks(5)]
    assert singer.state is SingerState.IDLE


def test_audio_and_signals_after_drop_out_are_stray():
    singer = singer_in("dropped")
    data = voice(3) + voice(9) + conn.ABORT_FROM_SINGER + conn.CHECK_IN_FROM_SINGER
    assert singer.receive_data(data) == [StrayChunks(4)]
    assert singer.state is SingerState.DROPPED


def test_audio_before_check_in_is_stray():
    singer = singer_in("invited")
    assert singer.receive_data(voice(0)) == [StrayChunks(1)]
    assert singer.state is SingerState.INVITED


def test_stray_count_with_keepalives_in_between():
    singer = authenticated_singer()
    events = singer.receive_data(voice(1) + conn.KEEPALIVE_FROM_SINGER + voice(2))
    assert events == [KeepAlive(), StrayChunks(2)]


@pytest.mark.parametrize("state", ["invited", "singing", "dropped"])
def test_end_session_goes_back_to_idle(state):
    singer = singer_in(state)
    singer.end_session()
    assert singer.state is SingerState.IDLE
    assert singer.receive_data(voice(7) + conn.CHECK_IN_FROM_SINGER) == [StrayChunks(2)]


def test_end_session_before_the_header_keeps_waiting():
    singer = SingerServerConnection()
    singer.end_session()
    assert singer.state is SingerState.HEADER
    assert singer.receive_data(SINGER.to_bytes()) == [Authenticated(SINGER)]


def test_second_session_restarts_at_index_zero():
    singer = singing_singer()
    singer.receive_data(voice(0) + voice(1) + voice(2))
    singer.end_session()
    assert singer.receive_data(voice(3)) == [StrayChunks(1)]  # the tail of the first session
    singer.invite()
    assert singer.next_index == 0
    events = singer.receive_data(conn.CHECK_IN_FROM_SINGER + voice(0))
    assert atoms(events) == ([CheckedIn(), ("voice", 0, payload(0, 256))], 0)


@st.composite
def singer_sessions(draw):
    """The bytes a singer sends after chunk 0, and the split-independent events they give."""
    count = draw(st.integers(0, 12))
    data = [conn.CHECK_IN_FROM_SINGER]
    expected = [CheckedIn()]
    for i in range(count):
        for _ in range(draw(st.integers(0, 2)) if draw(st.booleans()) else 0):
            data.append(conn.KEEPALIVE_FROM_SINGER)
            expected.append(KeepAlive())
        data.append(voice(i))
        expected.append(("voice", i, payload(i, VOICE_PAYLOAD)))
    stray = 0
    if draw(st.booleans()):
        data.append(conn.ABORT_FROM_SINGER)
        expected.append(DroppedOut())
        for j in range(draw(st.integers(0, 4))):
            data.append(voice(count + j) if j % 2 == 0 else conn.CHECK_IN_FROM_SINGER)
            stray += 1
        if draw(st.booleans()):
            data.append(conn.KEEPALIVE_FROM_SINGER)
            expected.append(KeepAlive())
    return b"".join(data), expected, stray


@settings(max_examples=200, deadline=None)
@given(session=singer_sessions(), header_cuts=st.lists(st.integers(0, 600), max_size=5),
       cuts=st.lists(st.integers(0, 6000), max_size=25))
def test_singer_server_any_split(session, header_cuts, cuts):
    data, expected, stray = session
    singer = SingerServerConnection()
    assert feed(singer, split_at(SINGER.to_bytes(), header_cuts)) == [Authenticated(SINGER)]
    singer.invite()  # chunk 0 goes out; the singer's answer comes in pieces
    events = []
    for piece in split_at(data, cuts):
        events += singer.receive_data(piece)
        assert singer.pending_bytes < VOICE_CHUNK_SIZE
    assert atoms(events) == (expected, stray)
    assert singer.state is (SingerState.DROPPED if DroppedOut() in expected else SingerState.SINGING)
    assert singer.pending_bytes == 0


# == DirectorServerConnection =====================================================================

def test_director_server_header():
    director = DirectorServerConnection()
    assert director.state is DirectorState.HEADER
    data = DIRECTOR.to_bytes()
    assert director.receive_data(data[:511]) == []
    assert director.receive_data(data[511:] + track(0))[0] == Authenticated(DIRECTOR)
    assert director.state is DirectorState.STREAMING


def test_director_server_track_chunks_in_order():
    director = streaming_director()
    events = director.receive_data(track(0) + track(1) + conn.END_FROM_DIRECTOR)
    assert [type(e) for e in events] == [TrackChunk, TrackChunk, TrackEnded]
    assert [(e.index, e.chunk) for e in events[:2]] == [(0, track(0)), (1, track(1))]
    assert len(events[0].chunk) == TRACK_CHUNK_SIZE  # forwarded whole, index included
    assert director.state is DirectorState.ENDED


def test_director_server_empty_track():
    director = streaming_director()
    assert director.receive_data(conn.END_FROM_DIRECTOR) == [TrackEnded()]


@pytest.mark.parametrize("after_end", [track(3), conn.END_FROM_DIRECTOR, sig(-3, TRACK_CHUNK_SIZE), track(0)])
def test_director_server_anything_after_end_raises(after_end):
    director = streaming_director()
    director.receive_data(track(0) + track(1) + track(2) + conn.END_FROM_DIRECTOR)
    with pytest.raises(ProtocolError):
        director.receive_data(after_end)


def test_director_server_anything_after_end_in_the_same_read_raises():
    director = streaming_director()
    with pytest.raises(ProtocolError):
        director.receive_data(track(0) + conn.END_FROM_DIRECTOR + track(1))


@pytest.mark.parametrize("stream", [
    [track(1)],
    [track(0), track(0)],
    [track(0), track(2)],
    [track(0), track(1), track(5)],
    [sig(-2, TRACK_CHUNK_SIZE)],
    [track(0), sig(-3, TRACK_CHUNK_SIZE)],
    [sig(-5, TRACK_CHUNK_SIZE)],
])
def test_director_server_out_of_order_raises(stream):
    director = streaming_director()
    with pytest.raises(ProtocolError):
        director.receive_data(b"".join(stream))


@settings(max_examples=150, deadline=None)
@given(count=st.integers(0, 10), end=st.booleans(), cuts=st.lists(st.integers(0, 7000), max_size=25))
def test_director_server_any_split(count, end, cuts):
    data = DIRECTOR.to_bytes() + b"".join(track(i) for i in range(count))
    if end:
        data += conn.END_FROM_DIRECTOR
    director = DirectorServerConnection()
    events = []
    for piece in split_at(data, cuts):
        events += director.receive_data(piece)
        assert director.pending_bytes < HEADER_SIZE + TRACK_CHUNK_SIZE
    expected = [Authenticated(DIRECTOR)] + [("TrackChunk", i, track(i)) for i in range(count)]
    if end:
        expected.append(TrackEnded())
    assert atoms(events) == (expected, 0)
    assert director.state is (DirectorState.ENDED if end else DirectorState.STREAMING)
    assert director.next_index == count


def test_send_mix_framing():
    director = streaming_director()
    pcm = bytes(range(256)) * 4 * 3  # three chunks of 1024 bytes
    data = director.send_mix(0, pcm)
    assert len(data) == 3 * MIX_CHUNK_SIZE
    for j in range(3):
        chunk = data[j * MIX_CHUNK_SIZE:(j + 1) * MIX_CHUNK_SIZE]
        assert decode_index(chunk) == j
        assert chunk[4:] == pcm[j * MIX_PAYLOAD:(j + 1) * MIX_PAYLOAD]
    assert director.mix_sent == 3
    more = director.send_mix(3, payload(3, MIX_PAYLOAD) + payload(4, MIX_PAYLOAD))
    assert more == mix(3) + mix(4)
    assert director.mix_sent == 5


@pytest.mark.parametrize("first", [0, 2, -1])
def test_send_mix_out_of_order_raises(first):
    director = streaming_director()
    director.send_mix(0, bytes(MIX_PAYLOAD))  # next is 1
    with pytest.raises(RuntimeError):
        director.send_mix(first, bytes(MIX_PAYLOAD))
    assert director.mix_sent == 1


def test_send_mix_must_start_at_zero():
    with pytest.raises(RuntimeError):
        streaming_director().send_mix(1, bytes(MIX_PAYLOAD))


def test_send_mix_is_read_by_1_1_3():
    director = streaming_director()
    rng = np.random.default_rng(0)
    blocks = [rng.integers(-32768, 32768, n * FRAMES_PER_CHUNK, dtype=np.int16) for n in (1, 3, 2)]
    data, first = b"", 0
    for block in blocks:
        data += director.send_mix(first, block.astype("<i2").tobytes())
        first += len(block) // FRAMES_PER_CHUNK
    decoder = their.AudioDecoder()
    out = np.empty(FRAMES_PER_CHUNK)
    received = []
    for start in range(0, len(data), MIX_CHUNK_SIZE):
        decoder(data[start:start + MIX_CHUNK_SIZE], out)  # checks size and index order
        received.append(np.rint(out * 32768).astype(np.int16))
    assert decoder.next_index == 6
    assert np.array_equal(np.concatenate(received), np.concatenate(blocks))


# == SingerClientConnection =======================================================================

def test_singer_client_initiate_sends_the_header():
    assert SingerClientConnection.initiate(SINGER) == SINGER.to_bytes()


def test_singer_client_session():
    singer = SingerClientConnection()
    assert singer.state is SingerClientState.IDLE
    events = singer.receive_data(track(0) + track(1))
    assert events[:1] == [SessionStarted()]
    assert atoms(events[1:]) == ([("TrackAudio", 0, payload(0, TRACK_PAYLOAD)),
                                  ("TrackAudio", 1, payload(1, TRACK_PAYLOAD))], 0)
    assert singer.state is SingerClientState.SESSION
    assert singer.receive_data(conn.END_TO_SINGER) == [SessionEnded()]
    assert singer.state is SingerClientState.TRACK_ENDED
    singer.session_done()
    assert singer.state is SingerClientState.IDLE


def test_singer_client_reads_no_header_from_the_server():
    singer = SingerClientConnection()
    assert singer.receive_data(track(0)[:200]) == []
    assert singer.pending_bytes == 200
    assert singer.receive_data(track(0)[200:])[0] == SessionStarted()


@pytest.mark.parametrize("bad", [track(2), track(1) + track(1), track(0) + track(3), sig(-2, TRACK_CHUNK_SIZE),
                                 sig(-5, TRACK_CHUNK_SIZE)])
def test_singer_client_out_of_order_in_session_raises(bad):
    singer = SingerClientConnection()
    singer.receive_data(track(0))
    with pytest.raises(ProtocolError):
        singer.receive_data(bad)


def test_singer_client_zero_again_in_session_raises():
    singer = SingerClientConnection()
    singer.receive_data(track(0) + track(1))
    with pytest.raises(ProtocolError):
        singer.receive_data(track(0))


@pytest.mark.parametrize("state", ["idle", "session", "ended"])
def test_singer_client_keepalive(state):
    singer = SingerClientConnection()
    if state != "idle":
        singer.receive_data(track(0))
    if state == "ended":
        singer.receive_data(conn.END_TO_SINGER)
    before = singer.state
    assert singer.receive_data(conn.KEEPALIVE_TO_SINGER) == [KeepAlive()]
    assert singer.state is before


def test_singer_client_ignores_the_middle_of_a_session_it_missed():
    singer = SingerClientConnection()
    events = singer.receive_data(track(57) + track(58) + conn.KEEPALIVE_TO_SINGER + track(59)
                                 + conn.END_TO_SINGER + sig(-2, TRACK_CHUNK_SIZE))
    assert events == [KeepAlive()]
    assert singer.state is SingerClientState.IDLE
    assert singer.receive_data(track(0))[0] == SessionStarted()


def test_singer_client_ignores_chunks_after_the_end():
    singer = SingerClientConnection()
    singer.receive_data(track(0) + conn.END_TO_SINGER)
    assert singer.receive_data(track(1) + conn.END_TO_SINGER) == []
    assert singer.state is SingerClientState.TRACK_ENDED


def test_singer_client_next_session():
    singer = SingerClientConnection()
    singer.receive_data(track(0) + track(1) + conn.END_TO_SINGER)
    singer.session_done()
    events = singer.receive_data(track(0) + track(1))
    assert events[0] == SessionStarted()
    assert [e.index for e in events[1:]] == [0, 1]


def test_singer_client_signals():
    singer = SingerClientConnection()
    assert singer.check_in() == sig(-1, VOICE_CHUNK_SIZE)
    assert singer.drop_out() == sig(-2, VOICE_CHUNK_SIZE)
    assert singer.keepalive() == sig(-3, VOICE_CHUNK_SIZE)


def test_send_voice_in_order():
    singer = SingerClientConnection()
    singer.receive_data(track(0))
    assert singer.send_voice(0, payload(0, VOICE_PAYLOAD)) == voice(0)
    assert singer.send_voice(1, payload(1, VOICE_PAYLOAD)) == voice(1)
    with pytest.raises(RuntimeError):
        singer.send_voice(3, payload(3, VOICE_PAYLOAD))
    with pytest.raises(RuntimeError):
        singer.send_voice(1, payload(1, VOICE_PAYLOAD))
    assert singer.send_voice(2, payload(2, VOICE_PAYLOAD)) == voice(2)


def test_send_voice_restarts_with_a_new_session():
    singer = SingerClientConnection()
    singer.receive_data(track(0))
    singer.send_voice(0, payload(0, VOICE_PAYLOAD))
    singer.receive_data(conn.END_TO_SINGER)
    singer.session_done()
    singer.receive_data(track(0))
    assert singer.send_voice(0, payload(0, VOICE_PAYLOAD)) == voice(0)


@settings(max_examples=150, deadline=None)
@given(missed=st.integers(0, 3), count=st.integers(1, 10), keepalive_every=st.integers(1, 5),
       end=st.booleans(), cuts=st.lists(st.integers(0, 9000), max_size=25))
def test_singer_client_any_split(missed, count, keepalive_every, end, cuts):
    chunks = [track(100 + i) for i in range(missed)]  # the tail of a session we were not in
    if missed:
        chunks.append(conn.END_TO_SINGER)
    expected = []
    for i in range(count):
        if i % keepalive_every == keepalive_every - 1:
            chunks.append(conn.KEEPALIVE_TO_SINGER)
            expected.append(KeepAlive())
        if i == 0:
            expected.append(SessionStarted())
        chunks.append(track(i))
        expected.append(("TrackAudio", i, payload(i, TRACK_PAYLOAD)))
    if end:
        chunks.append(conn.END_TO_SINGER)
        expected.append(SessionEnded())
    singer = SingerClientConnection()
    events = []
    for piece in split_at(b"".join(chunks), cuts):
        events += singer.receive_data(piece)
        assert singer.pending_bytes < TRACK_CHUNK_SIZE
    assert atoms(events) == (expected, 0)
    assert singer.state is (SingerClientState.TRACK_ENDED if end else SingerClientState.SESSION)


# == DirectorClientConnection =====================================================================

def test_director_client_initiate_sends_the_header():
    assert DirectorClientConnection.initiate(DIRECTOR) == DIRECTOR.to_bytes()


def test_director_client_send_track_in_order():
    director = DirectorClientConnection()
    assert director.send_track(0, payload(0, TRACK_PAYLOAD)) == track(0)
    assert director.send_track(1, payload(1, TRACK_PAYLOAD)) == track(1)
    with pytest.raises(RuntimeError):
        director.send_track(1, payload(1, TRACK_PAYLOAD))
    with pytest.raises(RuntimeError):
        director.send_track(5, payload(5, TRACK_PAYLOAD))
    assert director.end_track() == sig(-1, TRACK_CHUNK_SIZE)
    with pytest.raises(RuntimeError):
        director.send_track(2, payload(2, TRACK_PAYLOAD))


def test_director_client_done_when_all_the_mix_came_back():
    director = DirectorClientConnection()
    for i in range(3):
        director.send_track(i, payload(i, TRACK_PAYLOAD))
    assert not director.done
    events = director.receive_data(mix(0) + mix(1) + mix(2))
    assert atoms(events) == ([("MixChunk", i, payload(i, MIX_PAYLOAD)) for i in range(3)], 0)
    assert not director.done  # the end of the track has not been sent
    director.end_track()
    assert director.done


def test_director_client_not_done_while_mix_is_missing():
    director = DirectorClientConnection()
    for i in range(3):
        director.send_track(i, payload(i, TRACK_PAYLOAD))
    director.end_track()
    director.receive_data(mix(0) + mix(1) + mix(2)[:1000])
    assert not director.done
    director.receive_data(mix(2)[1000:])
    assert director.done


def test_director_client_refused():
    director = DirectorClientConnection()
    director.send_track(0, payload(0, TRACK_PAYLOAD))
    assert director.receive_data(conn.REFUSED_TO_DIRECTOR) == [SessionRefused()]
    assert director.refused and director.done


def test_director_client_aborted_mid_session():
    director = DirectorClientConnection()
    for i in range(4):
        director.send_track(i, payload(i, TRACK_PAYLOAD))
    events = director.receive_data(mix(0) + conn.REFUSED_TO_DIRECTOR)
    assert [type(e) for e in events] == [MixChunk, SessionRefused]
    assert director.done


@pytest.mark.parametrize("bad", [mix(1), mix(0) + mix(0), mix(0) + mix(2), sig(-1, MIX_CHUNK_SIZE),
                                 sig(-3, MIX_CHUNK_SIZE)])
def test_director_client_out_of_order_mix_raises(bad):
    director = DirectorClientConnection()
    with pytest.raises(ProtocolError):
        director.receive_data(bad)


@settings(max_examples=100, deadline=None)
@given(count=st.integers(0, 8), cuts=st.lists(st.integers(0, 9000), max_size=25))
def test_director_client_any_split(count, cuts):
    director = DirectorClientConnection()
    for i in range(count):
        director.send_track(i, payload(i, TRACK_PAYLOAD))
    director.end_track()
    events = []
    for piece in split_at(b"".join(mix(i) for i in range(count)), cuts):
        assert not director.done
        events += director.receive_data(piece)
        assert director.pending_bytes < MIX_CHUNK_SIZE
    assert atoms(events) == ([("MixChunk", i, payload(i, MIX_PAYLOAD)) for i in range(count)], 0)
    assert director.done


# == a whole session in memory, client bytes into server machines and back ==========================

class Pipe:
    """Bytes from one machine to another, delivered in random pieces."""

    def __init__(self, machine, rng: random.Random):
        self.machine, self.rng = machine, rng

    def send(self, data: bytes) -> list:
        events, i = [], 0
        while i < len(data):
            step = self.rng.randint(1, 700)
            events += self.machine.receive_data(data[i:i + step])
            i += step
        return events


def test_full_session_in_memory():
    rng = random.Random(1234)
    n_chunks = 40
    t = np.arange(n_chunks * FRAMES_PER_CHUNK) / 44_100
    left = np.rint(20000 * np.sin(2 * np.pi * 440 * t)).astype("<i2")
    right = np.rint(12000 * np.sin(2 * np.pi * 660 * t)).astype("<i2")

    director_client, director_server = DirectorClientConnection(), DirectorServerConnection()
    singer_client, singer_server = SingerClientConnection(), SingerServerConnection()
    to_director_server = Pipe(director_server, rng)
    to_director_client = Pipe(director_client, rng)
    to_singer_server = Pipe(singer_server, rng)
    to_singer_client = Pipe(singer_client, rng)

    # Both connect.
    assert to_singer_server.send(singer_client.initiate(SINGER)) == [Authenticated(SINGER)]
    assert to_director_server.send(director_client.initiate(DIRECTOR)) == [Authenticated(DIRECTOR)]
    assert to_singer_server.send(singer_client.keepalive()) == [KeepAlive()]

    # The director streams its track; the server forwards it; the singer decodes and sings.
    track_encoder = StereoEncoder()
    up = b"".join(director_client.send_track(i, track_encoder.encode(
        left[i * FRAMES_PER_CHUNK:(i + 1) * FRAMES_PER_CHUNK].tobytes(),
        right[i * FRAMES_PER_CHUNK:(i + 1) * FRAMES_PER_CHUNK].tobytes())) for i in range(n_chunks))
    up += director_client.end_track()

    server_events = to_director_server.send(up)
    singer_decoder, voice_encoder = StereoDecoder(), MonoEncoder()
    server_voice_decoder = MonoDecoder()
    client_events, voice_indices, mixed = [], [], []
    session_ended = False
    for event in server_events:
        if isinstance(event, TrackChunk):
            if event.index == 0:
                singer_server.invite()
            down = to_singer_client.send(event.chunk)
            if event.index == 5:
                down += to_singer_client.send(conn.KEEPALIVE_TO_SINGER)
            client_events += down
            for e in down:
                if isinstance(e, SessionStarted):
                    assert to_singer_server.send(singer_client.check_in()) == [CheckedIn()]
                elif isinstance(e, TrackAudio):
                    heard_left, _ = singer_decoder.decode(e.payload)
                    uplink = singer_client.send_voice(e.index, voice_encoder.encode(heard_left))
                    for v in to_singer_server.send(uplink):
                        assert isinstance(v, VoiceChunks)
                        for j, p in enumerate(v.payloads):
                            voice_indices.append(v.first_index + j)
                            mixed.append(director_server.send_mix(v.first_index + j,
                                                                  server_voice_decoder.decode(p)))
        else:
            assert event == TrackEnded()
            assert to_singer_client.send(conn.END_TO_SINGER) == [SessionEnded()]
            singer_server.end_session()
            session_ended = True
    singer_client.session_done()

    assert session_ended
    assert voice_indices == list(range(n_chunks))
    assert [type(e) for e in client_events].count(KeepAlive) == 1
    assert [e.index for e in client_events if isinstance(e, TrackAudio)] == list(range(n_chunks))
    assert singer_server.state is SingerState.IDLE
    assert singer_client.state is SingerClientState.IDLE
    assert director_server.state is DirectorState.ENDED

    # The mix comes back to the director, which is then done.
    mix_events = to_director_client.send(b"".join(mixed))
    assert [e.index for e in mix_events] == list(range(n_chunks))
    assert director_client.done
    got = np.frombuffer(b"".join(e.pcm for e in mix_events), "<i2")

    # What came back is the left channel through two ADPCM generations, state carried.
    heard = audioop.adpcm2lin(audioop.lin2adpcm(left.tobytes(), 2, None)[0], 2, None)[0]
    expected = audioop.adpcm2lin(audioop.lin2adpcm(heard, 2, None)[0], 2, None)[0]
    assert got.tobytes() == expected
    assert np.sqrt(np.mean((got.astype(float) - left) ** 2)) < 0.05 * 20000

    # Stray tail after the end, then a second session starts cleanly.
    assert to_singer_server.send(singer_client.send_voice(n_chunks, bytes(VOICE_PAYLOAD))) == [StrayChunks(1)]
    singer_server.invite()
    assert to_singer_client.send(track(0))[0] == SessionStarted()
    assert to_singer_server.send(singer_client.check_in() + singer_client.send_voice(0, bytes(256)))[0] == CheckedIn()


def test_refused_director_in_memory():
    director_client, director_server = DirectorClientConnection(), DirectorServerConnection()
    director_server.receive_data(director_client.initiate(DIRECTOR))
    events = director_server.receive_data(director_client.send_track(0, bytes(TRACK_PAYLOAD)))
    assert [e.index for e in events] == [0]
    assert director_client.receive_data(conn.REFUSED_TO_DIRECTOR) == [SessionRefused()]
    assert director_client.done


def test_singer_drop_out_in_memory():
    singer_client, singer_server = SingerClientConnection(), SingerServerConnection()
    singer_server.receive_data(singer_client.initiate(SINGER))
    singer_server.invite()
    singer_client.receive_data(track(0))
    events = singer_server.receive_data(singer_client.check_in() + singer_client.send_voice(0, bytes(256))
                                        + singer_client.drop_out()
                                        + singer_client.send_voice(1, bytes(256)))
    assert atoms(events) == ([CheckedIn(), ("voice", 0, bytes(256)), DroppedOut()], 1)
    assert singer_server.state is SingerState.DROPPED
