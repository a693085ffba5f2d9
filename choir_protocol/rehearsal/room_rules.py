"""The rules of a rehearsal room, without I/O: seats, sessions, deadlines, the sweep.

Events come in as method calls (a singer joined, checked in, sent audio; a director sent
a track chunk; time passed); most return a sequence of room_actions for the driver to
carry out in order. Time is an argument (``now``, seconds, any origin, as the Mixer
takes it) and ``next_deadline()`` says when the driver must call ``time_passed``.

The rules:

* A singer gets a seat unless the room is full or its address has its share.
* One session at a time. A director's first track chunk opens one, if a singer is
  connected; every singer connected is invited. If none checks in within
  CHECK_IN_TIMEOUT, the session ends and the director is refused.
* A session ends when the mix is done, when every singer left, when its director leaves
  or stalls (IDLE_TIMEOUT without exchange), or when its recording stops.
* The driver's sweep (about once a second) drops the singers that sent nothing for
  IDLE_TIMEOUT or do not read, and keeps the quiet ones alive.

The per-chunk paths allocate nothing per singer: audio goes straight to the mixer
(``singer_audio`` returns nothing) and the track is forwarded once per ``tick`` as one
write per singer.
"""
import collections
import itertools

import numpy as np

from . import desk
from . import room_actions as A
from ..networks import in_networks
from .adpcm import StereoDecoder
from .connections import END_TO_SINGER, KEEPALIVE_TO_SINGER
from .constants import (CHECK_IN_TIMEOUT, CHUNKS_PER_SECOND, DIRECTOR_LEAD_CHUNKS, FRAMES_PER_CHUNK,
                        IDLE_TIMEOUT, KEEPALIVE_INTERVAL, MIX_WINDOW_CHUNKS, SAMPLE_RATE)
from .mixer import Mixer, MixState, Voice, VoiceState
from .room_session import DirectorSeat, Seat, Session
from .session_summary import RECORDING, SessionSummary, SingerSummary

NOTHING = ()
DESK_LIST_MAX_AGE = 0.5  # seconds a desk's list may lag behind the room
# The director may run this far ahead of the mix before we stop reading it.
DIRECTOR_SLACK_CHUNKS = DIRECTOR_LEAD_CHUNKS + 2 * int(CHUNKS_PER_SECOND)


class RoomRules:
    def __init__(self, *, max_singers: int = 1000, max_singers_per_address: int = 0,
                 monitor_level: float = 0.0, window: int = MIX_WINDOW_CHUNKS,
                 recording: bool = False, desk_networks=(), wall_clock):
        self.max_singers = max_singers
        self.max_singers_per_address = max_singers_per_address  # 0: no limit
        self.monitor_level = monitor_level
        self.window = window
        self.recording = recording  # sessions are recorded
        self.desk_networks = desk_networks  # always served the desk
        # () -> an aware datetime, the driver's: it dates the sessions; no rule depends on it
        self._wall_clock = wall_clock
        self.singers: dict = {}  # singer -> Seat, in joining order
        self._singers_at: collections.Counter = collections.Counter()  # host -> singers
        self.directors: dict = {}  # director -> DirectorSeat: connected, in a session or not
        self.session: Session | None = None
        self.last_session: Session | None = None
        self.sessions_done = 0
        self._desk_replies: dict = {}  # everyone? -> (when, encoded list)
        self._serial = itertools.count(1)

    # -- singers ------------------------------------------------------------------------

    def singer_joined(self, singer, address: tuple, name: str, group: str) -> tuple:
        if len(self.singers) >= self.max_singers:
            n = self.max_singers
            reason = f"the room is full ({n} singer{'' if n == 1 else 's'} at most)"
            return A.RefuseSinger(singer, reason),
        host = address[0]
        if self.max_singers_per_address and self._singers_at[host] >= self.max_singers_per_address:
            # one machine must not fill the room (e.g. scripted singers that never sing)
            return A.RefuseSinger(singer, f"{self.max_singers_per_address} singers already from "
                                          "this address"),
        self._singers_at[host] += 1
        self.singers[singer] = Seat(address, name, group)
        self._desk_replies.clear()
        return NOTHING

    def singer_left(self, singer, reason: str) -> bool:
        """False if it had no seat."""
        seat = self.singers.pop(singer, None)
        if seat is None:
            return False
        self._desk_replies.clear()
        host = seat.address[0]
        self._singers_at[host] -= 1
        if not self._singers_at[host]:
            del self._singers_at[host]
        session = self.session
        if session is not None and singer in session.members:
            session.mixer.leave(session.members.pop(singer), reason)
        return True

    def _voice_of(self, singer) -> Voice | None:
        return self.session.members.get(singer) if self.session is not None else None

    def singer_checked_in(self, singer) -> tuple:
        voice = self._voice_of(singer)
        if voice is None:
            return NOTHING
        session = self.session
        self._desk_replies.clear()
        in_mix = session.mixer.check_in(voice)
        checked_in = A.SingerCheckedIn(singer, session, voice, in_mix)
        if not in_mix:
            return checked_in,
        session.check_in_deadline = None
        return (checked_in, A.RecordSinger(session, voice)) if session.recording else (checked_in,)

    def singer_audio(self, singer, first_index: int, payloads: list, raw: bytes) -> None:
        """Consecutive chunks from ``singer`` (ProtocolError if they break the rules)."""
        session = self.session
        if session is None:
            return
        voice = session.members.get(singer)
        if voice is not None:
            session.mixer.add_audio(voice, first_index, payloads)
            if voice.row >= 0:
                session.voice_batch.append((voice.row, raw))

    def singer_dropped_out(self, singer) -> tuple:
        voice = self._voice_of(singer)
        if voice is None:
            return NOTHING
        self._desk_replies.clear()
        self.session.mixer.leave(voice, "dropped out (-2)")
        return A.SingerDroppedOut(singer, voice),

    def singer_stray(self, singer, count: int) -> None:
        if self.session is not None:
            self.session.stray_chunks += count

    # -- the desk -----------------------------------------------------------------------

    def set_gain(self, address: tuple, gain: float) -> bool:
        """False if no singer is at ``address``."""
        self._desk_replies.clear()
        for singer, seat in self.singers.items():
            if seat.address == address:
                seat.gain = gain
                voice = self._voice_of(singer)
                if voice is not None:
                    self.session.mixer.set_gain(voice, gain)
                return True
        return False

    def desk_reply(self, everyone: bool, now: float) -> tuple:
        """(the encoded reply to a desk's "list", (shown, listed) if one message could not
        hold them all, else None). Built at most once per DESK_LIST_MAX_AGE whatever the
        number of desks; a change shows at once."""
        cached = self._desk_replies.get(everyone)
        if cached is not None and now - cached[0] < DESK_LIST_MAX_AGE:
            return cached[1], None
        entries = self.desk_list(everyone)
        reply, shown = desk.encode_list_reply(entries)
        self._desk_replies[everyone] = (now, reply)
        return reply, ((shown, len(entries)) if shown < len(entries) else None)

    def desk_list(self, everyone: bool = False) -> list:
        session = self.session or self.last_session
        listed = []
        for singer, seat in self.singers.items():
            voice = session.members.get(singer) if session is not None else None
            if everyone or (voice is not None and voice.state is VoiceState.ACTIVE):
                listed.append({"id": list(seat.address), "name": seat.name, "group": seat.group,
                               "gain": seat.gain})
        return listed

    def desk_allowed(self, host: str) -> bool:
        """Until rooms have keys, the desk (singers' addresses, anyone's gain) is served to
        the address of a connected director or of the last session's, and to
        ``desk_networks``."""
        last = self.last_session
        return (any(seat.address[0] == host for seat in self.directors.values())
                or (last is not None and last.director_seat.address[0] == host)
                or in_networks(host, self.desk_networks))

    # -- the director -------------------------------------------------------------------

    def director_joined(self, director, address: tuple, label: str) -> tuple:
        """The seat is taken by the first track chunk, not by the header: a client that
        sends a header and nothing more holds nothing."""
        reason = self._why_no_session()
        if reason:
            return A.RefuseDirector(director, reason),
        self.directors[director] = DirectorSeat(address, label)
        return NOTHING

    def _why_no_session(self) -> str:
        if self.session is not None:
            return "another director's session is running"
        if not self.singers:
            return "no singer is connected"
        return ""

    def track_chunk(self, director, index: int, chunk: bytes, now: float) -> tuple:
        session = self.session
        actions = NOTHING
        if index == 0 and (session is None or session.director is not director):
            seat = self.directors.get(director)
            if seat is None:  # refused at its header
                return NOTHING
            reason = self._why_no_session()
            if reason:
                return A.RefuseDirector(director, reason),
            actions = self._open_session(director, seat, now)
            session = self.session
        elif session is None or session.director is not director:
            return NOTHING
        monitor = None
        if session.monitor_decoder is not None:
            left, right = session.monitor_decoder.decode(memoryview(chunk)[4:])
            monitor = ((np.frombuffer(left, "<i2").astype(np.int32) + np.frombuffer(right, "<i2"))
                       >> 1).astype("<i2").tobytes()
        mixer = session.mixer
        mixer.add_track(index, monitor)
        session.pending_track.append(chunk)
        if mixer.track_chunks - mixer.next_mix > DIRECTOR_SLACK_CHUNKS:
            actions += A.PauseDirector(director),  # resumed by the tick once the mix catches up
        return actions

    def _open_session(self, director, seat: DirectorSeat, now: float) -> tuple:
        started = self._wall_clock()
        session = self.session = Session(
            f"{started:%Y%m%d-%H%M%S}-{next(self._serial)}", director, seat,
            Mixer(window=self.window, monitor_level=self.monitor_level), started,
            monitor_decoder=StereoDecoder() if self.monitor_level else None,
            check_in_deadline=now + CHECK_IN_TIMEOUT, recording=self.recording)
        invited = tuple(self.singers)  # all idle: no other session is running
        for singer in invited:
            singer_seat = self.singers[singer]
            session.members[singer] = session.mixer.invite(singer_seat.address, singer_seat.name,
                                                            singer_seat.group, singer_seat.gain)
        actions = (A.SessionOpened(session, len(self.singers)), A.InviteSingers(invited))
        if session.recording:
            actions += A.StartRecording(session, self.summary(session)),
        return actions

    def track_ended(self, director) -> tuple:
        session = self.session
        if session is None or session.director is not director:
            return NOTHING
        session.mixer.end_track()
        session.pending_track.append(END_TO_SINGER)
        actions = [A.EndOfTrack(session)]
        self._forward(session, actions)  # singers need it at once to send their last chunks
        return tuple(actions)

    def director_left(self, director, reason: str) -> tuple:
        self.directors.pop(director, None)
        session = self.session
        if session is not None and session.director is director:
            return tuple(self._finish(f"director left: {reason}"))
        return NOTHING

    # -- time ---------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When ``time_passed`` must be called next, or None."""
        return self.session.check_in_deadline if self.session is not None else None

    def time_passed(self, now: float) -> tuple:
        session = self.session
        if session is None or session.check_in_deadline is None or now < session.check_in_deadline:
            return NOTHING
        session.check_in_deadline = None
        if session.mixer.checked_in:
            return NOTHING
        return tuple(self._finish(f"no singer checked in within {CHECK_IN_TIMEOUT:g} s",
                                  refuse=True))

    def tick(self, now: float, forward: bool) -> list:
        """The driver's tick, once it has read every member: the mix due at ``now``, and,
        if ``forward``, the track received since the last forward, to every member."""
        session = self.session
        if session is None:
            return []
        actions = []
        self._record_voices(session, actions)
        mixer = session.mixer
        block = mixer.mix(now)  # first: the mix's delay is what the director hears
        if block is not None:
            actions.append(A.SendMix(session.director, block,
                                     mixer.track_chunks - mixer.next_mix <= DIRECTOR_SLACK_CHUNKS))
            if session.recording:
                actions.append(A.RecordMix(session, block))
        if mixer.state is MixState.DONE:
            actions += self._finish("complete")
        elif mixer.state is MixState.ABORTED:
            actions += self._finish("every singer left", refuse=True)
        elif forward:
            self._forward(session, actions)
        return actions

    def sweep(self, now: float, links, director_last_active: float | None = None,
              recording_failed: str | None = None) -> list:
        """The driver's look at its links, about once a second. ``links``: (singer,
        last_received, last_sent, overflowed) of each singer seated, whose clocks its
        connection keeps; ``director_last_active``: the session director's last exchange;
        ``recording_failed``: why the session's recording stopped, if it did."""
        actions, quiet = [], []
        for singer, last_received, last_sent, overflowed in links:
            if now - last_received > IDLE_TIMEOUT:
                actions.append(A.DropSinger(singer, f"nothing received for {IDLE_TIMEOUT:g} s"))
            elif overflowed:
                actions.append(A.DropSinger(singer, "not reading what we send"))
            elif now - last_sent > KEEPALIVE_INTERVAL:
                quiet.append(singer)
        if quiet:
            actions.append(A.SendToSingers(tuple(quiet), KEEPALIVE_TO_SINGER))
        session = self.session
        if session is None:
            return actions
        if director_last_active is not None and now - director_last_active > IDLE_TIMEOUT:
            # e.g. checked-in singers who send nothing
            actions += self._finish(f"stalled: nothing exchanged with the director for "
                                    f"{IDLE_TIMEOUT:g} s", refuse=True)
        elif recording_failed is not None:
            # what was written is kept; a session nobody records must not go on unnoticed
            actions += self._finish("incomplete", refuse=True,
                                    told=f"the recording stopped ({recording_failed}): the "
                                         f"session is ended, what was recorded is kept")
        elif session.recording:
            actions.append(A.UpdateRecording(session, self.summary(session)))
        return actions

    def stop(self) -> list:
        """The daemon stops: the session ends, every singer is dropped."""
        actions = self._finish("daemon stopping") if self.session is not None else []
        return actions + [A.DropSinger(singer, "daemon stopping") for singer in self.singers]

    # -- end of a session ---------------------------------------------------------------

    @staticmethod
    def _record_voices(session: Session, actions: list) -> None:
        if session.voice_batch:
            if session.recording:
                actions.append(A.RecordVoices(session, session.voice_batch))
            session.voice_batch = []

    @staticmethod
    def _forward(session: Session, actions: list) -> None:
        if session.pending_track:
            data = b"".join(session.pending_track)
            session.pending_track.clear()
            actions.append(A.SendToSingers(tuple(session.members), data))

    def _finish(self, reason: str, refuse: bool = False, told: str = "") -> list:
        """End the session for ``reason``; ``refuse``: the director is told so (``told``, or
        ``reason``)."""
        session = self.session
        self._desk_replies.clear()
        self.session = None
        self.last_session = session
        session.ended = reason
        session.check_in_deadline = None
        actions = [A.ResumeDirector(session.director)]
        if refuse:
            actions.append(A.RefuseDirector(session.director, told or reason, flood=False))
        if session.mixer.end_index is None:  # the singers still expect the end of the track
            session.pending_track.append(END_TO_SINGER)
        self._forward(session, actions)
        actions.append(A.EndSessionFor(tuple(session.members)))
        self._record_voices(session, actions)
        if session.recording:
            actions.append(A.StopRecording(session, self.summary(session)))
        self.sessions_done += 1
        actions.append(A.SessionClosed(session))
        return actions

    def summary(self, session: Session) -> SessionSummary:
        mixer = session.mixer
        return SessionSummary(
            id=session.id, started=session.started.isoformat(),
            ended=self._wall_clock().isoformat() if session.ended else None,
            state=session.ended or RECORDING, director=session.director_seat.label,
            sample_rate=SAMPLE_RATE, chunk_frames=FRAMES_PER_CHUNK,
            track_chunks=mixer.track_chunks, mix_chunks=mixer.next_mix,
            monitor_level=mixer.monitor_level, stray_chunks=session.stray_chunks,
            singers=tuple(SingerSummary(
                name=v.name, group=v.group, state=v.state.value, row=v.row, gain=v.gain,
                chunks=v.delivered, late=v.late, missing=v.missing, left_at=v.left_at,
                reason=v.reason, address=tuple(v.key)) for v in mixer.voices.values()))
