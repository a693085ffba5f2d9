"""The core's words for a client at the wrong port, and signal -4 that carries them."""
from hypothesis import given
from hypothesis import strategies as st

from choir_protocol.rehearsal.chunks import encode_index, refusal_chunk, refusal_reason
from choir_protocol.rehearsal.connections import DirectorClientConnection, SingerClientConnection
from choir_protocol.rehearsal.constants import MIX_CHUNK_SIZE, TRACK_CHUNK_SIZE, Signal
from choir_protocol.rehearsal.events import Refused
from choir_protocol.rehearsal.header import Header
from choir_protocol.rehearsal.roles import claimed_role, wrong_port_reason


def test_our_clients_name_their_role():
    assert claimed_role(Header(client_version="choir-singer 0.3")) == "singer"
    assert claimed_role(Header(client_version="choir-director 0.1")) == "director"


def test_other_clients_name_none():
    for version in ("", "1.1.3", "unknown (v2)", "choir-test", "choir-singers", " "):
        assert claimed_role(Header(client_version=version)) is None


def test_a_singer_at_the_director_port_is_told_where_to_go():
    singer = Header("Ann", "Alto", "choir-singer 0.3")
    assert wrong_port_reason(singer, "director", 8868) == \
        "this is the director port; singers use port 8868"
    assert wrong_port_reason(singer, "director", None) == \
        "this is the director port; singers use the singer port"
    assert wrong_port_reason(singer, "singer", 8878) is None


def test_a_director_at_the_singer_port_is_told_where_to_go():
    director = Header(client_version="choir-director 0.1")
    assert wrong_port_reason(director, "singer", 8878) == \
        "this is the singer port; directors use port 8878"
    assert wrong_port_reason(director, "director", 8868) is None


def test_the_desk_port_refuses_nobody_by_role():
    # our desk client names itself choir-director: it belongs on the desk port
    assert wrong_port_reason(Header(client_version="choir-director"), "desk", None) is None


def test_1_1_3_clients_are_never_refused_by_role():
    assert wrong_port_reason(Header("Ann", "Alto", "1.1.3"), "director", 8868) is None


@given(st.text(max_size=600), st.sampled_from([TRACK_CHUNK_SIZE, MIX_CHUNK_SIZE]))
def test_refusal_chunk_has_the_size_and_a_prefix_of_the_reason(reason, size):
    chunk = refusal_chunk(reason, size)
    assert len(chunk) == size
    assert chunk[:4] == encode_index(Signal.REFUSED)
    told = refusal_reason(chunk)
    assert reason.rstrip("\0").startswith(told)  # cut on a character boundary, never split


def test_singer_client_reads_a_refusal_in_or_out_of_a_session():
    conn = SingerClientConnection()
    events = conn.receive_data(refusal_chunk("this is the director port; singers use port 8868",
                                             TRACK_CHUNK_SIZE))
    assert events == [Refused("this is the director port; singers use port 8868")]


def test_director_client_reads_a_refusal():
    conn = DirectorClientConnection()
    events = conn.receive_data(refusal_chunk("this is the singer port; directors use port 8878",
                                             MIX_CHUNK_SIZE))
    assert events == [Refused("this is the singer port; directors use port 8878")]
    assert conn.refused and conn.done
