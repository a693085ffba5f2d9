"""The room's rules without a reactor: events in, actions out, time as an argument."""
import datetime

from hypothesis import given, settings
from hypothesis import strategies as st
import pytest

from choir_protocol.networks import parse_networks
from choir_protocol.rehearsal import room_actions as A
from choir_protocol.rehearsal.chunks import encode_index
from choir_protocol.rehearsal.connections import END_TO_SINGER, KEEPALIVE_TO_SINGER
from choir_protocol.rehearsal.constants import CHECK_IN_TIMEOUT, IDLE_TIMEOUT, KEEPALIVE_INTERVAL
from choir_protocol.rehearsal.mixer import VoiceState
from choir_protocol.rehearsal.room_rules import RoomRules

VOICE_PAYLOAD = bytes(256)
WHEN = datetime.datetime(2026, 12, 3, 14, 30, 12, tzinfo=datetime.timezone.utc)


class Peer:
    """A handle, as the driver's protocols are to the rules."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"<{self.name}>"


def track(index):
    return encode_index(index) + bytes(512)


def kinds(actions):
    return [type(a) for a in actions]


def of(kind, actions):
    return [a for a in actions if isinstance(a, kind)]


def rules(**options):
    return RoomRules(wall_clock=lambda: WHEN, **options)


def seated(room, *names, host="10.0.0.1"):
    peers = []
    for port, name in enumerate(names, 40001):
        peer = Peer(name)
        assert room.singer_joined(peer, (host, port), name, "Alto") == ()
        peers.append(peer)
    return peers


def open_session(room, director=None, now=0.0):
    director = director or Peer("director")
    assert room.director_joined(director, ("10.0.0.9", 5000), "director 10.0.0.9:5000") == ()
    return director, room.track_chunk(director, 0, track(0), now)


# -- seats ------------------------------------------------------------------------------

def test_a_full_room_and_a_full_address_refuse_with_their_reason():
    room = rules(max_singers=2, max_singers_per_address=1)
    (ann,) = seated(room, "ann")
    bob = Peer("bob")
    (refusal,) = room.singer_joined(bob, ("10.0.0.1", 40009), "bob", "Bass")
    assert refusal == refusal and refusal.singer is bob
    assert refusal.reason == "1 singers already from this address"
    assert room.singer_joined(bob, ("10.0.0.2", 40009), "bob", "Bass") == ()
    (refusal,) = room.singer_joined(Peer("cy"), ("10.0.0.3", 1), "cy", "")
    assert refusal.reason == "the room is full (2 singers at most)"
    assert room.singer_left(ann, "gone") and not room.singer_left(ann, "again")
    assert room.singer_joined(Peer("cy"), ("10.0.0.1", 2), "cy", "") == ()


def test_a_director_is_refused_without_singers_and_while_another_session_runs():
    room = rules()
    first = Peer("first")
    (refusal,) = room.director_joined(first, ("h", 1), "first")
    assert isinstance(refusal, A.RefuseDirector) and refusal.reason == "no singer is connected"
    seated(room, "ann")
    open_session(room, first)
    (refusal,) = room.director_joined(Peer("second"), ("h", 2), "second")
    assert refusal.reason == "another director's session is running"


# -- a session ----------------------------------------------------------------------------

def test_chunk_0_opens_a_session_inviting_every_singer_and_starts_the_recording():
    room = rules(recording=True)
    ann, bob = seated(room, "ann", "bob")
    director, actions = open_session(room)
    assert kinds(actions) == [A.SessionOpened, A.InviteSingers, A.StartRecording]
    assert actions[1].singers == (ann, bob)
    session = room.session
    assert session.id == "20261203-143012-1" and session.director is director
    summary = actions[2].summary
    assert (summary.state, summary.tracks, summary.director) == ("recording", "recording",
                                                                "director 10.0.0.9:5000")
    assert [s.name for s in summary.singers] == ["ann", "bob"]
    assert room.next_deadline() == CHECK_IN_TIMEOUT


def test_no_check_in_by_the_deadline_ends_the_session_and_refuses_the_director():
    room = rules()
    (ann,) = seated(room, "ann")
    director, _ = open_session(room, now=100.0)
    deadline = room.next_deadline()
    assert deadline == 100.0 + CHECK_IN_TIMEOUT
    assert room.time_passed(deadline - 0.01) == () and room.session is not None
    actions = room.time_passed(deadline)
    assert room.session is None and room.next_deadline() is None
    assert room.last_session.ended == f"no singer checked in within {CHECK_IN_TIMEOUT:g} s"
    (refusal,) = of(A.RefuseDirector, actions)
    assert refusal.director is director and not refusal.flood
    (forward,) = of(A.SendToSingers, actions)
    assert forward.singers == (ann,) and forward.data == track(0) + END_TO_SINGER
    assert kinds(actions)[-2:] == [A.EndSessionFor, A.SessionClosed]
    assert room.sessions_done == 1


def test_a_check_in_lifts_the_deadline_and_is_recorded():
    room = rules(recording=True)
    (ann,) = seated(room, "ann")
    open_session(room)
    checked_in, record = room.singer_checked_in(ann)
    assert checked_in.in_mix and record.voice is checked_in.voice
    assert room.next_deadline() is None
    assert room.time_passed(1e9) == ()


def test_a_whole_session_mixes_every_chunk_then_ends_complete():
    room = rules(recording=True)
    ann, bob = seated(room, "ann", "bob")
    director, _ = open_session(room)
    room.singer_checked_in(ann)
    room.singer_checked_in(bob)
    for index in range(1, 20):
        assert room.track_chunk(director, index, track(index), 0.0) == ()
    (end_of_track, forward) = room.track_ended(director)
    assert forward.data == b"".join(track(i) for i in range(20)) + END_TO_SINGER
    for singer in (ann, bob):
        room.singer_audio(singer, 0, [VOICE_PAYLOAD] * 20, b"raw")
    actions = room.tick(1.0, forward=True)
    assert kinds(actions)[:3] == [A.RecordVoices, A.SendMix, A.RecordMix]
    assert actions[1].block.first_index == 0 and actions[1].block.count == 16
    actions = room.tick(1.04, forward=True)
    assert actions[0].block.first_index == 16 and actions[0].block.count == 4
    assert room.session is None and room.last_session.ended == "complete"
    (stop,) = of(A.StopRecording, actions)
    assert stop.summary.state == "complete" and stop.summary.mix_chunks == 20
    assert stop.summary.ended == WHEN.isoformat()
    assert [s.chunks for s in stop.summary.singers] == [20, 20]
    assert not of(A.RefuseDirector, actions)


def test_every_singer_leaving_ends_the_session_and_tells_the_director():
    room = rules()
    (ann,) = seated(room, "ann")
    director, _ = open_session(room)
    room.singer_checked_in(ann)
    room.singer_audio(ann, 0, [VOICE_PAYLOAD], b"")
    room.tick(0.0, forward=False)
    assert room.singer_left(ann, "gone")
    assert room.session.members == {}
    actions = room.tick(0.04, forward=False)
    assert room.last_session.ended == "every singer left"
    assert of(A.RefuseDirector, actions)[0].reason == "every singer left"


def test_a_director_far_ahead_of_the_mix_is_paused_then_resumed():
    room = rules()
    (ann,) = seated(room, "ann")
    director, _ = open_session(room)
    room.singer_checked_in(ann)
    paused = []
    for index in range(1, 800):
        paused += of(A.PauseDirector, room.track_chunk(director, index, track(index), 0.0))
    assert paused and paused[0].director is director
    room.singer_audio(ann, 0, [VOICE_PAYLOAD] * 799, b"")
    resumes = [a.resume for t in range(200) for a in of(A.SendMix, room.tick(t * 0.04, False))]
    assert resumes[0] is False and resumes[-1] is True


def test_the_director_leaving_ends_its_session_only():
    room = rules()
    seated(room, "ann")
    director, _ = open_session(room)
    other = Peer("other")
    assert room.director_left(other, "bye") == ()
    actions = room.director_left(director, "connection lost")
    assert room.last_session.ended == "director left: connection lost"
    assert not of(A.RefuseDirector, actions) and director not in room.directors


# -- the sweep ----------------------------------------------------------------------------

def test_the_sweep_drops_the_silent_and_the_deaf_and_keeps_the_quiet_alive():
    room = rules()
    silent, deaf, quiet, busy = seated(room, "silent", "deaf", "quiet", "busy")
    now = 100.0
    actions = room.sweep(now, [(silent, now - IDLE_TIMEOUT - 1, now, False),
                               (deaf, now, now, True),
                               (quiet, now, now - KEEPALIVE_INTERVAL - 1, False),
                               (busy, now, now, False)])
    assert [(type(a), getattr(a, "singer", None)) for a in actions[:2]] == [
        (A.DropSinger, silent), (A.DropSinger, deaf)]
    assert actions[2].singers == (quiet,) and actions[2].data == KEEPALIVE_TO_SINGER
    assert len(actions) == 3


def test_a_stalled_director_or_a_failed_recording_ends_the_session():
    room = rules(recording=True)
    (ann,) = seated(room, "ann")
    open_session(room)
    (update,) = room.sweep(10.0, [], director_last_active=9.0)
    assert isinstance(update, A.UpdateRecording) and update.summary.state == "recording"
    room.sweep(40.0, [], director_last_active=9.0)
    assert room.last_session.ended.startswith("stalled: nothing exchanged with the director")
    director, _ = open_session(room, Peer("second"))
    actions = room.sweep(41.0, [], director_last_active=41.0, recording_failed="No space")
    assert room.last_session.ended == "incomplete"
    assert of(A.RefuseDirector, actions)[0].reason.startswith("the recording stopped (No space)")


# -- the desk -----------------------------------------------------------------------------

def test_the_desk_lists_the_active_singers_or_everyone_and_sets_gains():
    room = rules(desk_networks=parse_networks("127.0.0.0/8"))
    ann, bob = seated(room, "ann", "bob")
    open_session(room)
    room.singer_checked_in(ann)
    assert [e["name"] for e in room.desk_list()] == ["ann"]
    assert [e["name"] for e in room.desk_list(everyone=True)] == ["ann", "bob"]
    assert room.set_gain(("10.0.0.1", 40001), 0.5) and not room.set_gain(("x", 1), 0.5)
    assert room.desk_list()[0]["gain"] == 0.5
    assert room.session.members[ann].gain == 0.5
    reply, cut = room.desk_reply(False, 0.0)
    assert cut is None and room.desk_reply(False, 0.1) == (reply, None)  # cached
    assert room.desk_allowed("10.0.0.9") and room.desk_allowed("127.0.0.1")
    assert not room.desk_allowed("10.0.0.1")


def test_a_refused_director_cannot_open_a_session_with_its_first_chunk():
    room = rules()
    stranger = Peer("stranger")
    seated(room, "ann")
    assert room.track_chunk(stranger, 0, track(0), 0.0) == ()
    assert room.session is None


def test_stop_ends_the_session_and_drops_every_singer():
    room = rules()
    ann, bob = seated(room, "ann", "bob")
    open_session(room)
    actions = room.stop()
    assert room.last_session.ended == "daemon stopping"
    assert [a.singer for a in of(A.DropSinger, actions)] == [ann, bob]


# -- any sequence of events ---------------------------------------------------------------

EVENTS = st.lists(st.tuples(
    st.sampled_from(["join", "leave", "check_in", "sing", "drop_out", "director", "chunk",
                     "end", "director_left", "time", "tick", "sweep"]),
    st.integers(0, 4), st.floats(0.0, 8.0)), max_size=80)


@settings(max_examples=200, deadline=None)
@given(EVENTS)
def test_no_sequence_of_events_leaves_the_rules_inconsistent(events):
    room = rules(recording=True, window=8)
    singers = [Peer(f"s{i}") for i in range(5)]
    directors = [Peer(f"d{i}") for i in range(2)]
    sent = {}  # director -> next track index
    sung = {}  # singer -> next voice index, once checked in this session
    now = 0.0
    opened = closed = 0

    def note(actions):
        nonlocal opened, closed, sung
        for action in actions:
            if isinstance(action, A.SessionOpened):
                opened += 1
                sung = {}
            elif isinstance(action, A.SessionClosed):
                closed += 1
                assert action.session.ended

    for kind, i, dt in events:
        singer, director = singers[i], directors[i % 2]
        if kind == "join":
            note(room.singer_joined(singer, ("10.0.0.1", i), f"s{i}", ""))
        elif kind == "leave":
            room.singer_left(singer, "gone")
            sung.pop(singer, None)
        elif kind == "check_in" and room.session is not None and singer not in sung \
                and singer in room.session.members \
                and room.session.members[singer].state is VoiceState.INVITED:
            note(room.singer_checked_in(singer))
            sung[singer] = 0
        elif kind == "sing" and singer in sung and room.session is not None:
            upto = room.session.mixer.track_chunks
            if sung[singer] < upto:
                room.singer_audio(singer, sung[singer], [VOICE_PAYLOAD] * (upto - sung[singer]), b"")
                sung[singer] = upto
        elif kind == "drop_out" and singer in sung:
            note(room.singer_dropped_out(singer))
            del sung[singer]
        elif kind == "director" and director not in room.directors:
            note(room.director_joined(director, ("10.0.0.9", i), "d"))
            sent.setdefault(director, 0)
        elif kind == "chunk" and director in room.directors and sent.get(director, 0) >= 0:
            note(room.track_chunk(director, sent[director], track(sent[director]), now))
            sent[director] += 1
        elif kind == "end" and director in room.directors:
            note(room.track_ended(director))
            sent[director] = -1  # its connection would take no more chunks
        elif kind == "director_left":
            note(room.director_left(director, "gone"))
            sent.pop(director, None)
        elif kind == "time":
            now += dt
            deadline = room.next_deadline()
            note(room.time_passed(now))
            if deadline is not None and now >= deadline:
                assert room.next_deadline() is None  # a deadline passed is dealt with
        elif kind == "tick":
            now += 0.04
            note(room.tick(now, forward=i % 2 == 0))
        elif kind == "sweep":
            note(room.sweep(now, [(s, now, now, False) for s in room.singers], now))

        session = room.session
        if session is not None:
            assert set(session.members) <= set(room.singers)  # nobody who left
            assert session.director in room.directors
            assert session.check_in_deadline is None or session.mixer.checked_in == 0
        assert opened - closed == (session is not None)
        assert room.sessions_done == closed
    note(room.stop())
    assert room.session is None and opened == closed == room.sessions_done


@pytest.mark.parametrize("count", [1, 3])
def test_deadlines_are_honoured_whatever_the_steps_of_time(count):
    room = rules()
    seated(room, "ann")
    open_session(room, now=2.0)
    steps = [CHECK_IN_TIMEOUT / count] * count
    now = 2.0
    for step in steps:
        now += step
        room.time_passed(now)
    assert room.session is None
