"""choir_protocol.rehearsal.peer_kind: what a wrong port's first bytes say it is, and the words for it."""
from hypothesis import given
from hypothesis import strategies as st
import pytest

from choir_protocol.rehearsal import desk
from choir_protocol.rehearsal.chunks import encode_index, refusal_chunk, signal_chunk
from choir_protocol.rehearsal.constants import MIX_CHUNK_SIZE, Signal
from choir_protocol.rehearsal.header import Header
from choir_protocol.rehearsal.peer_kind import (DESK_PORT, DIRECTOR_PORT, HTTP, NOTHING,
                                                SINGER_PORT, TEXT, TLS, UNKNOWN, Peer, enough,
                                                recognise, wrong_port_message)
from choir_protocol.rehearsal.roles import wrong_port_reason

DIRECTOR_HEADER = Header(client_version="choir-director 0.1.0")


def test_our_singer_port_refusal_names_the_director_port():
    """The daemon's own words (roles.wrong_port_reason) in the chunk it sends a director."""
    reason = wrong_port_reason(DIRECTOR_HEADER, "singer", 8878)
    peer = recognise(refusal_chunk(reason, MIX_CHUNK_SIZE))
    assert peer == Peer(SINGER_PORT, reason, 8878)
    assert wrong_port_message("choir.example.org:8868", 8868, peer) == (
        "choir.example.org:8868 is a choir server's singer port, not its director port (try :8878)")


def test_singer_port_that_does_not_know_the_director_port():
    reason = wrong_port_reason(DIRECTOR_HEADER, "singer", None)
    peer = recognise(refusal_chunk(reason, MIX_CHUNK_SIZE))
    assert (peer.kind, peer.director_port) == (SINGER_PORT, None)
    assert wrong_port_message("h:1", 1, peer) == "h:1 is a choir server's singer port, not its director port"


def test_a_singer_keep_alive_is_a_singer_port():
    assert recognise(signal_chunk(Signal.KEEPALIVE, 516)).kind == SINGER_PORT


@pytest.mark.parametrize("first", [
    encode_index(0) + bytes(1024),  # mix chunk 0
    encode_index(0)[:4],  # (its start)
    signal_chunk(Signal.ABORT, MIX_CHUNK_SIZE),  # 1.1.3's refusal
    refusal_chunk("no singer is connected", MIX_CHUNK_SIZE),  # ours
])
def test_a_director_port_is_not_a_wrong_port(first):
    peer = recognise(first)
    assert peer.kind == DIRECTOR_PORT
    assert wrong_port_message("h:8878", 8878, peer) is None


@pytest.mark.parametrize("message", [
    {"error": "the mixing desk is served only to the director's address"},  # ours, refusing
    [{"id": ["10.0.0.1", 5000], "name": "Anna", "group": "Alto", "gain": 1.0}],  # a list
    [],
])
def test_desk_messages(message):
    data = desk.encode_message(message)
    peer = recognise(data)
    assert peer.kind == DESK_PORT
    assert peer.detail == (message["error"] if isinstance(message, dict) else "")
    assert enough(data) and not enough(data[:-1])
    assert wrong_port_message("127.0.0.1:8858", 8858, peer) == (
        "127.0.0.1:8858 is a choir server's mixing-desk port, not its director port (the "
        "director port is usually 20 above it: try :8878)")


def test_http():
    data = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
    peer = recognise(data)
    assert peer == Peer(HTTP, "HTTP/1.1 400 Bad Request")
    assert enough(data) and not enough(b"HTTP/1.1 400 Bad")
    assert wrong_port_message("127.0.0.1:8000", 8000, peer) == (
        "127.0.0.1:8000 is a web server (it answered 'HTTP/1.1 400 Bad Request'), not a choir "
        "server's director port (8878 by default)")


def test_tls_alert():
    peer = recognise(b"\x15\x03\x01\x00\x02\x02\x46")  # alert, TLS 1.0 record, protocol_version
    assert peer.kind == TLS
    assert "TLS" in wrong_port_message("h:443", 443, peer)


@pytest.mark.parametrize("banner, shown", [
    (b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n", "SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13"),
    (b"220 mail.example.org ESMTP Postfix\r\n", "220 mail.example.org ESMTP Postfix"),
    (b"-ERR unknown command\r\n", "-ERR unknown command"),
    (b"x" * 100 + b"\n", "x" * 60),  # quoted words are cut
])
def test_text_banners(banner, shown):
    peer = recognise(banner)
    assert peer == Peer(TEXT, shown)
    assert wrong_port_message("h:22", 22, peer) == (
        f"h:22 answered {shown!r}: it is not a choir server's director port")


def test_nothing_and_noise():
    assert recognise(b"").kind == NOTHING
    assert "closed the connection without a word" in wrong_port_message("h:1", 1, Peer(NOTHING))
    peer = recognise(bytes([0x80, 0x01, 0x02, 0x03, 0xfe]))
    assert peer.kind == UNKNOWN
    assert wrong_port_message("h:1", 1, peer) == (
        "h:1 sent bytes no choir server sends: it is not a choir server's director port")


def test_enough_waits_for_a_whole_refusal():
    chunk = refusal_chunk(wrong_port_reason(DIRECTOR_HEADER, "singer", 8878), MIX_CHUNK_SIZE)
    assert not enough(chunk[:500])
    assert enough(chunk)
    assert enough(bytes(4096))  # never listened to past 4 KiB


@given(st.binary(max_size=3000))
def test_any_bytes_are_recognised_as_something(data):
    peer = recognise(data)
    enough(data)
    message = wrong_port_message("h:1", 1, peer)
    assert message is None or (message.startswith("h:1 ") and "\n" not in message)
