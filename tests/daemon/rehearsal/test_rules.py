"""The rules of the rehearsal daemon (PROTOCOL.md), one test per rule.

The daemon (the real Room and protocols) runs in memory on a
``twisted.internet.task.Clock``; the 5, 10 and 30 s rules are checked by moving
the clock, never by waiting. See tests/support/daemon_helpers.py.
"""
import json
import os

import numpy as np
import pytest
from twisted.internet.task import Clock

from choir_protocol.rehearsal.chunks import encode_index
from choir_protocol.rehearsal.connections import END_TO_SINGER, KEEPALIVE_TO_SINGER
from choir_protocol.rehearsal.constants import (CHECK_IN_TIMEOUT, IDLE_TIMEOUT, KEEPALIVE_INTERVAL,
                                                MIX_CHUNK_SIZE, TRACK_CHUNK_SIZE, Signal)
from choir_protocol.rehearsal.header import Header
from choir_protocol.rehearsal.mixer import RAMP_CHUNKS
from choir_twisted.rehearsal.protocols import HEADER_TIMEOUT
from choir_twisted.service import Options, makeService

from ...support.daemon_helpers import (SILENT_TRACK_PAYLOAD, MemoryDaemon, level, mismatch,
                                       voice_signal)

REFUSAL = [(Signal.ABORT, MIX_CHUNK_SIZE)]  # what a refused director receives: one -2 chunk


def sung(singer, count: int) -> np.ndarray:
    """The PCM the daemon decodes from ``singer``'s first ``count`` chunks."""
    return np.concatenate([singer.sent_pcm[i] for i in range(count)])


def chunks_of(director) -> list:
    return [(index, size) for index, size, _ in director.received]


def test_one_director_at_a_time():
    """Rule: one director at a time. A second director gets -2 (one 1028-byte chunk,
    index -2*199) at once and is closed, even if it already sent audio; the first
    director's session runs on undisturbed."""
    daemon = MemoryDaemon()
    singer = daemon.singer("Ann", voice=voice_signal(60, seed=2))
    first = daemon.director()
    first.stream(30)
    daemon.run_until(lambda: len(first.mix) == 30)

    track = b"".join(encode_index(i) + SILENT_TRACK_PAYLOAD for i in range(2))
    second = daemon.director(header_and=track)
    second.react()
    assert bytes(second.transport.value()) == b""  # all taken by react
    assert chunks_of(second) == REFUSAL
    assert second.received[0][2] == bytes(MIX_CHUNK_SIZE - 4)
    assert second.closed and second.refused
    daemon.advance(0.1)
    assert not second.protocol.connected

    first.stream(30)
    first.end()
    daemon.run_until(lambda: daemon.room.session is None)
    assert daemon.room.last_session.director is first.protocol
    assert daemon.room.last_session.ended == "complete"
    assert chunks_of(first) == [(i, MIX_CHUNK_SIZE) for i in range(60)]
    # The singer heard the first director's track once, nothing of the second's.
    assert singer.received == [(i, TRACK_CHUNK_SIZE) for i in range(60)] + [(Signal.END, TRACK_CHUNK_SIZE)]
    assert np.array_equal(first.mix_signal(), sung(singer, 60))


def test_director_without_singers_is_refused_at_once():
    """Rule: a director connecting while no singer is connected gets -2 at once and
    is closed; no session is opened."""
    daemon = MemoryDaemon()
    director = daemon.director()
    director.react()  # no time passes
    assert chunks_of(director) == REFUSAL
    assert director.closed
    assert daemon.room.session is None
    daemon.advance(0.1)
    assert not director.protocol.connected
    assert daemon.room.sessions_done == 0


def test_check_in_timeout_aborts_session_and_next_session_works():
    """Rule: if no singer checks in within 5 s of chunk 0, the director gets -2 and
    is closed, the singers get the end of session, and the next session works."""
    daemon = MemoryDaemon()
    singer = daemon.singer("Ann", voice=voice_signal(40, seed=3), auto_check_in=False)
    director = daemon.director()
    director.stream(20)  # chunk 0 is here: the 5 s start now
    daemon.advance(CHECK_IN_TIMEOUT - 0.1)
    assert singer.heard == list(range(20))
    assert director.received == [] and not director.closed
    daemon.advance(0.2)
    assert chunks_of(director) == REFUSAL
    assert director.closed
    assert singer.received[-1] == (Signal.END, TRACK_CHUNK_SIZE)
    assert daemon.room.session is None
    assert "no singer checked in" in daemon.room.last_session.ended

    singer.auto_check_in = True
    director = daemon.director()
    director.stream(40)
    director.end()
    daemon.run_until(lambda: daemon.room.session is None)
    assert not director.refused
    assert daemon.room.last_session.ended == "complete"
    assert len(director.mix) == 40
    assert np.array_equal(director.mix_signal(), sung(singer, 40))


def test_keepalive_sent_to_idle_singer_after_10_s():
    """Rule: a singer that was sent nothing for 10 s gets a keep-alive: a 516-byte
    chunk with index -3*199 and a zero payload; the next one 10 s after that."""
    daemon = MemoryDaemon()
    singer = daemon.singer("Ann")
    daemon.advance(KEEPALIVE_INTERVAL - 0.1)
    assert singer.raw == b""
    daemon.advance(1.2)
    assert bytes(singer.raw) == KEEPALIVE_TO_SINGER
    assert KEEPALIVE_TO_SINGER == encode_index(-3) + bytes(TRACK_CHUNK_SIZE - 4)
    daemon.advance(20.0 - daemon.now)  # less than 10 s after the first keep-alive
    assert singer.received == [(Signal.KEEPALIVE, TRACK_CHUNK_SIZE)]
    daemon.advance(22.2 - daemon.now)
    assert singer.received == [(Signal.KEEPALIVE, TRACK_CHUNK_SIZE)] * 2
    assert not singer.closed


def test_silent_singer_dropped_after_30_s():
    """Rule: a singer the daemon received nothing from for 30 s is dropped; one that
    sends keep-alives (-3) stays."""
    daemon = MemoryDaemon()
    silent = daemon.singer("Silent")
    chatty = daemon.singer("Chatty")
    for _ in range(3):
        daemon.advance(9.5)
        chatty.keepalive()
    daemon.advance(IDLE_TIMEOUT - 0.5 - daemon.now)
    assert not silent.closed
    assert len(daemon.room.singers) == 2
    daemon.advance(1.6)
    assert silent.closed and silent.transport.disconnected  # aborted by the daemon
    assert list(daemon.room.singers) == [chatty.protocol]
    assert not chatty.closed


def test_a_stalled_session_ends_with_minus_2_after_30_s():
    """Rule: a singer that checked in but never sends audio (e.g. its sound card failed)
    stalls the mix; after 30 s with nothing exchanged with the director the session ends:
    -2 to the director, a clean close, and the next session works."""
    daemon = MemoryDaemon()
    mute = daemon.singer("Mute", auto_sing=False)  # checks in, then only keep-alives
    daemon.advance(0.1)
    director = daemon.director()
    director.stream(20)
    for _ in range(3):
        daemon.advance(9.5)
        mute.keepalive()
    daemon.advance(IDLE_TIMEOUT - 0.5 - daemon.now)
    assert daemon.room.session is not None and not director.refused
    daemon.advance(1.6)
    assert director.refused and director.closed
    assert director.mix == []
    assert daemon.room.last_session.ended.startswith("stalled")
    assert not mute.closed  # the singer stays for the next session

    mute.auto_sing, mute.voice = True, voice_signal(30, seed=1)
    second = daemon.director()
    second.stream(30)
    second.end()
    daemon.run_until(lambda: daemon.room.session is None)
    assert daemon.room.last_session.ended == "complete" and len(second.mix) == 30


def test_end_of_session_reaches_singers():
    """Rule: the end of the session (-1, a 516-byte chunk) reaches every singer,
    right after the last track chunk, and the director gets every mix chunk."""
    daemon = MemoryDaemon()
    singers = [daemon.singer(name, voice=voice_signal(50, seed)) for seed, name in enumerate(("Ann", "Bob"))]
    director = daemon.director()
    director.stream(50)
    director.end()
    daemon.run_until(lambda: daemon.room.session is None)
    assert daemon.room.last_session.ended == "complete"
    assert len(director.mix) == 50
    for singer in singers:
        assert singer.received == [(i, TRACK_CHUNK_SIZE) for i in range(50)] + [(Signal.END, TRACK_CHUNK_SIZE)]
        assert singer.raw.endswith(END_TO_SINGER)
        assert singer.sessions_ended == 1


def test_late_check_in_is_refused(tmp_path):
    """Rule: a check-in that comes after the first mix chunk went out is refused: the
    singer is not in the mix and session.json gives its voice the state 'refused'."""
    daemon = MemoryDaemon(data_dir=str(tmp_path), window=10)
    early = daemon.singer("Early", voice=voice_signal(60, seed=4))
    late = daemon.singer("Late", voice=voice_signal(60, seed=5, amplitude=20000), auto_check_in=False)
    director = daemon.director()
    director.stream(60)
    director.end()
    daemon.run_until(lambda: len(director.mix) > 0)  # forced by the window
    late.check_in()
    late.sing_upto(len(late.heard))
    daemon.run_until(lambda: daemon.room.session is None)

    assert len(director.mix) == 60
    assert np.array_equal(director.mix_signal(), sung(early, 60))  # nothing of Late
    session = daemon.room.last_session
    assert session.recorder.wait(10)
    with open(os.path.join(session.recorder.directory, "session.json")) as f:
        summary = json.load(f)
    assert {s["name"]: s["state"] for s in summary["singers"]} == {"Early": "active", "Late": "refused"}


def test_singer_abort_takes_it_out_of_the_mix():
    """Rule: a singer's -2 takes it out of the mix from then on; the others go on and
    the session completes."""
    daemon = MemoryDaemon()
    stays = daemon.singer("Stays", voice=voice_signal(100, seed=6))
    leaves = daemon.singer("Leaves", voice=voice_signal(100, seed=7))
    director = daemon.director()
    director.stream(40)
    daemon.run_until(lambda: len(director.mix) == 40)
    leaves.abort()
    director.stream(60)
    director.end()
    daemon.run_until(lambda: daemon.room.session is None)

    assert daemon.room.last_session.ended == "complete"
    assert len(director.mix) == 100
    voices = {v.name: v for v in daemon.room.last_session.mixer.voices.values()}
    assert voices["Leaves"].state.value == "left" and "-2" in voices["Leaves"].reason
    assert voices["Stays"].state.value == "active" and voices["Stays"].missing == 0
    both = sung(stays, 40).astype(np.int32) + sung(leaves, 40)
    assert mismatch(director.mix_signal(0, 40), both) < 1e-3
    after = 40 + RAMP_CHUNKS + 1  # once the level has settled
    assert mismatch(director.mix_signal(after), sung(stays, 100)[after * 512:]) < 1e-3


@pytest.mark.parametrize("role", ["singers", "director", "desk"])
def test_partial_header_closed_after_header_timeout(role):
    """Rule: a peer that sends part of its 512-byte header and nothing more is closed
    when the header timeout (10 s) runs out, on each of the three listeners."""
    daemon = MemoryDaemon()
    peer = daemon.raw_peer(role)
    peer.send(Header("Slow", "Alto", "choir-test").to_bytes()[:300])
    daemon.advance(HEADER_TIMEOUT - 0.1)
    assert not peer.closed
    daemon.advance(0.2)
    assert peer.closed and peer.transport.disconnected  # aborted by the daemon
    assert not peer.protocol.connected
    assert not daemon.room.singers and daemon.room.session is None


def test_max_singers():
    """Rule (--max-singers): a singer past the maximum is closed after its header; the
    session of the others works. Built through Options and makeService."""
    options = Options()
    options.parseOptions(["--max-singers", "2", "--no-record", "--no-runners",
                          "--singers", "tcp:0", "--director", "tcp:0", "--desk", "tcp:0"])
    clock = Clock()
    daemon = MemoryDaemon.from_service(makeService(options, clock=clock), clock)
    singers = [daemon.singer(name, voice=voice_signal(50, seed))
               for seed, name in enumerate(("Ann", "Bob"))]
    extra = daemon.singer("Extra", voice=voice_signal(50, 9))
    daemon.advance(0.1)
    assert extra.closed and extra.transport.disconnected
    assert not any(s.closed for s in singers)
    assert list(daemon.room.singers) == [s.protocol for s in singers]

    director = daemon.director()
    director.stream(50)
    director.end()
    daemon.run_until(lambda: daemon.room.session is None)
    assert daemon.room.last_session.ended == "complete"
    assert daemon.room.last_session.mixer.checked_in == 2
    assert len(director.mix) == 50
    assert extra.received == []


def test_desk_lists_checked_in_singers_and_adjust_gain_changes_the_mix():
    """Rule: the mixing desk's {"action": "list"} lists the checked-in singers as 1.1.3
    does ({"id": [host, port], "name", "group", "gain"}); adjust_gain changes the mix."""
    daemon = MemoryDaemon()
    voice = voice_signal(120, seed=10)
    ann = daemon.singer("Ann", "Soprano", voice=voice)
    bob = daemon.singer("Bob", "Bass", voice=voice)
    director = daemon.director()
    director.stream(60)
    daemon.run_until(lambda: len(director.mix) == 60)
    daemon.singer("Joiner", "Tenor")  # connected, but not in this session: not listed
    desk = daemon.desk()
    desk.request({"action": "list"})
    daemon.run_until(lambda: desk.replies)
    assert sorted(desk.replies[0], key=lambda entry: entry["name"]) == [
        {"id": ann.address, "name": "Ann", "group": "Soprano", "gain": 1.0},
        {"id": bob.address, "name": "Bob", "group": "Bass", "gain": 1.0},
    ]

    desk.request({"action": "adjust_gain", "id": ann.address, "gain": 0.0})
    desk.request({"action": "list"})
    daemon.run_until(lambda: len(desk.replies) == 2)
    assert {e["name"]: e["gain"] for e in desk.replies[1]} == {"Ann": 0.0, "Bob": 1.0}
    director.stream(60)
    director.end()
    daemon.run_until(lambda: daemon.room.session is None)
    assert len(director.mix) == 120
    before = level(director.mix_signal(0, 60))
    after = level(director.mix_signal(60))
    assert before > 1000
    assert after == pytest.approx(before / 2, rel=0.02)
