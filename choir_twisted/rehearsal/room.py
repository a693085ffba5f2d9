"""A Room drives the room's rules (choir_protocol.rehearsal.room_rules) on the reactor.

It feeds them what the protocols and the clock tell, and carries out what they ask: the
writes, the closes, the recorder's calls, the log lines.

Everything runs on the reactor thread and is paced by one tick (40 ms by default).
Each tick reads every singer of the session once (SingerProtocol.poll), mixes what
became due over all singers at once and sends it to the director, and, every other
tick, forwards the director's chunks to the singers as one write each. Batching
costs up to a tick or two of mix latency and saves most of the per-chunk event-loop
overhead; the protocol tolerates the latency (the director runs seconds ahead).
"""
import datetime
import itertools
import os

from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from choir_protocol.networks import parse_networks
from choir_protocol.rehearsal import room_actions as A
from choir_protocol.rehearsal.constants import MIX_WINDOW_CHUNKS
from choir_protocol.rehearsal.room_rules import RoomRules

from ..limits import RefusalLog

TICK = 0.04
SWEEP_EVERY = 25  # ticks between keep-alive / idle sweeps (1 s)
LOOPBACK = parse_networks("127.0.0.0/8,::1")
# The track goes out to the singers every other tick: they buffer a second of it and
# the director runs seconds ahead, so only the syscalls count. Its end goes at once.
FORWARD_EVERY = 2


def utc_now() -> datetime.datetime:
    """What dates a session (the rules take no clock of their own)."""
    return datetime.datetime.now(datetime.timezone.utc)


class Room:
    """The rehearsal room of one daemon.

    ``on_session_recorded``: None, or a callable the room calls with a session's
    directory once its recording is final, that is once session.json is written with its
    tracks ready, pending (left for the next start's recovery) or failed. Called on the
    reactor thread, at the first tick after the recorder's thread is done (a session
    whose recording could not even start is not reported); not for recordings that
    finish after the room has stopped (the recovery scan at the next start finds those).
    """

    log = Logger()

    def __init__(self, clock, *, data_dir: str | None, max_singers: int = 1000,
                 max_singers_per_address: int = 0, monitor_level: float = 0.0,
                 tick: float = TICK, window: int = MIX_WINDOW_CHUNKS, recorder_factory=None,
                 desk_networks=LOOPBACK):
        self.clock = clock
        self.data_dir = data_dir
        self.rules = RoomRules(max_singers=max_singers,
                               max_singers_per_address=max_singers_per_address,
                               monitor_level=monitor_level, window=window,
                               recording=data_dir is not None, desk_networks=desk_networks,
                               wall_clock=utc_now)
        self.refusals = RefusalLog(clock)  # refusals a client may repeat: not a line each
        self.on_session_recorded = None
        self._to_resume: list = []
        self._ticks = itertools.count()
        self._loop = LoopingCall(self.tick)
        self._loop.clock = clock
        self._tick_interval = tick
        self._recorder_factory = recorder_factory
        self._recorders: list = []  # (directory, recorder) whose files may still be written
        self._deadline = None  # the rules' next deadline, and its DelayedCall
        self._deadline_call = None
        self._handlers = {  # action -> how it is carried out
            A.SendToSingers: self._send_to_singers,
            A.InviteSingers: self._invite_singers,
            A.EndSessionFor: self._end_session_for,
            A.RefuseSinger: self._refuse_singer,
            A.DropSinger: self._drop_singer,
            A.SendMix: self._send_mix,
            A.PauseDirector: self._pause_director,
            A.ResumeDirector: self._resume_director,
            A.RefuseDirector: self._refuse_director,
            A.StartRecording: self._start_recording,
            A.RecordSinger: self._record,
            A.RecordVoices: self._record,
            A.RecordMix: self._record,
            A.UpdateRecording: self._record,
            A.StopRecording: self._record,
            A.SessionOpened: self._session_opened,
            A.SingerCheckedIn: self._singer_checked_in,
            A.SingerDroppedOut: self._singer_dropped_out,
            A.EndOfTrack: self._end_of_track,
            A.SessionClosed: self._session_closed,
        }

    # the rules' state, as the rest of the daemon and the tests see it
    singers = property(lambda self: self.rules.singers)  # SingerProtocol -> Seat, in order
    directors = property(lambda self: self.rules.directors)
    session = property(lambda self: self.rules.session)
    last_session = property(lambda self: self.rules.last_session)
    sessions_done = property(lambda self: self.rules.sessions_done)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self):
        self._loop.start(self._tick_interval, now=False)

    def stop(self) -> list:
        """Stop the room; returns the recorders still writing (or converting tracks)."""
        if self._loop.running:
            self._loop.stop()
        self._carry_out(self.rules.stop())
        self.refusals.stop()
        return [r for _, r in self._recorders if not r.wait(0)]

    # -- what the protocols tell ------------------------------------------------------------

    def singer_joined(self, singer) -> bool:
        """An authenticated singer; False if it has no seat (it is refused and closed)."""
        refused = self.rules.singer_joined(singer, singer.peer, singer.header.name,
                                           singer.header.group)
        if refused:
            self._carry_out(refused)
            return False
        self.log.info("Singer {who} joined ({n} connected)", who=singer.describe(),
                      n=len(self.singers))
        return True

    def singer_left(self, singer, reason: str) -> None:
        if self.rules.singer_left(singer, reason):
            self.log.info("Singer {who} left: {reason} ({n} connected)", who=singer.describe(),
                          reason=reason, n=len(self.singers))

    def singer_read(self, singer) -> None:
        """A singer not polled (no plain socket) was read: hold it until the next tick."""
        singer.transport.pauseProducing()
        self._to_resume.append(singer)

    def singer_checked_in(self, singer) -> None:
        self._carry_out(self.rules.singer_checked_in(singer))

    def singer_audio(self, singer, first_index: int, payloads: list, raw: bytes) -> None:
        self.rules.singer_audio(singer, first_index, payloads, raw)

    def singer_dropped_out(self, singer) -> None:
        self._carry_out(self.rules.singer_dropped_out(singer))

    def singer_stray(self, singer, count: int) -> None:
        self.rules.singer_stray(singer, count)

    def set_gain(self, peer: tuple, gain: float) -> bool:
        return self.rules.set_gain(peer, gain)

    def desk_reply(self, everyone: bool = False) -> bytes:
        reply, cut = self.rules.desk_reply(everyone, self.clock.seconds())
        if cut is not None:
            self.log.warn("The desk's list shows {shown} of {n} singers: one message holds no "
                          "more", shown=cut[0], n=cut[1])
        return reply

    def desk_allowed(self, host: str) -> bool:
        return self.rules.desk_allowed(host)

    def director_joined(self, director) -> bool:
        """An authenticated director; False (and -2 sent) if it cannot start a session now."""
        refused = self.rules.director_joined(director, director.peer, director.describe())
        if refused:
            self._carry_out(refused)
            return False
        return True

    def track_chunk(self, director, index: int, chunk: bytes) -> None:
        actions = self.rules.track_chunk(director, index, chunk, self.clock.seconds())
        if actions:
            self._carry_out(actions)

    def track_ended(self, director) -> None:
        self._carry_out(self.rules.track_ended(director))

    def director_left(self, director, reason: str) -> None:
        self._carry_out(self.rules.director_left(director, reason))

    # -- what the clock tells ---------------------------------------------------------------

    def tick(self) -> None:
        now = self.clock.seconds()
        tick = next(self._ticks)
        session = self.rules.session
        if session is not None:
            for singer in list(session.members):
                singer.poll()
            self._carry_out(self.rules.tick(now, forward=tick % FORWARD_EVERY == 0))
        resume, self._to_resume = self._to_resume, []
        for singer in resume:
            if singer.connected:
                singer.transport.resumeProducing()
        if tick % SWEEP_EVERY == 0:
            session = self.rules.session
            recorder = session.recorder if session is not None else None
            links = [(s, s.last_received, s.last_sent, s.output.overflowed) for s in self.singers]
            self._carry_out(self.rules.sweep(
                now, links, session.director.last_active if session is not None else None,
                recorder.failed if recorder is not None else None))
        if self._recorders:
            self._report_recorded()

    def _deadline_reached(self) -> None:
        self._deadline_call = None
        # the DelayedCall may land a rounding error short of the deadline: it has come
        self._carry_out(self.rules.time_passed(max(self.clock.seconds(), self._deadline)))

    def _report_recorded(self) -> None:
        done = [(d, r) for d, r in self._recorders if r.wait(0)]
        if not done:
            return
        self._recorders = [entry for entry in self._recorders if entry not in done]
        for directory, recorder in done:
            if self.on_session_recorded is not None and recorder.summary.recorded:
                try:
                    self.on_session_recorded(directory)
                except Exception:
                    self.log.failure("on_session_recorded({dir}) failed", dir=directory)

    # -- carrying out the rules' actions ----------------------------------------------------

    def _carry_out(self, actions) -> None:
        handlers = self._handlers
        for action in actions:
            handlers[type(action)](action)
        deadline = self.rules.next_deadline()
        if deadline != self._deadline:
            if self._deadline_call is not None:
                self._deadline_call.cancel()
                self._deadline_call = None
            self._deadline = deadline
            if deadline is not None:
                self._deadline_call = self.clock.callLater(
                    max(0.0, deadline - self.clock.seconds()), self._deadline_reached)

    @staticmethod
    def _send_to_singers(action) -> None:
        data = action.data
        for singer in action.singers:
            singer.send(data)

    @staticmethod
    def _invite_singers(action) -> None:
        for singer in action.singers:
            singer.invite()

    @staticmethod
    def _end_session_for(action) -> None:
        for singer in action.singers:
            singer.session_over()

    @staticmethod
    def _refuse_singer(action) -> None:
        action.singer.refuse(action.reason)

    @staticmethod
    def _drop_singer(action) -> None:
        action.singer.drop(action.reason)

    @staticmethod
    def _send_mix(action) -> None:
        director = action.director
        if director.connected:
            director.send_mix(action.block.first_index, action.block.mix.tobytes())
            if action.resume:
                director.transport.resumeProducing()

    @staticmethod
    def _pause_director(action) -> None:
        action.director.transport.pauseProducing()

    @staticmethod
    def _resume_director(action) -> None:
        if action.director.connected:
            action.director.transport.resumeProducing()

    @staticmethod
    def _refuse_director(action) -> None:
        action.director.refuse(action.reason, flood=action.flood)

    def _start_recording(self, action) -> None:
        directory = os.path.join(self.data_dir, "sessions", action.session.id)
        factory = self._recorder_factory
        if factory is None:
            from .recorder import SessionRecorder as factory
        action.session.recorder = factory(directory, action.summary)
        self._recorders.append((directory, action.session.recorder))

    @staticmethod
    def _record(action) -> None:
        recorder = action.session.recorder
        if recorder is None:
            return
        kind = type(action)
        if kind is A.RecordVoices:
            recorder.add_voices(action.batch)
        elif kind is A.RecordMix:
            recorder.add_mix(action.block.first_index, action.block.mix)
        elif kind is A.RecordSinger:
            recorder.add_singer(action.voice.row, action.voice.name, action.voice.group)
        elif kind is A.UpdateRecording:
            recorder.update(action.summary)
        else:
            recorder.close(action.summary)

    def _session_opened(self, action) -> None:
        session = action.session
        self.log.info("Session {id} opened by {who} with {n} singers connected", id=session.id,
                      who=session.director_seat.label, n=action.singers_connected)

    def _singer_checked_in(self, action) -> None:
        if action.in_mix:
            self.log.info("Singer {who} checked in", who=action.singer.describe())
        else:
            self.log.warn("Singer {who} checked in too late: not in this mix",
                          who=action.singer.describe())

    def _singer_dropped_out(self, action) -> None:
        self.log.warn("Singer {who} dropped out of the session at chunk {i}",
                      who=action.singer.describe(), i=action.voice.next_index)

    def _end_of_track(self, action) -> None:
        self.log.info("Session {id}: end of track after {n} chunks", id=action.session.id,
                      n=action.session.mixer.track_chunks)

    def _session_closed(self, action) -> None:
        session = action.session
        mixer = session.mixer
        self.log.info("Session {id} ended ({reason}): {mixed} mix chunks, {n} singers mixed",
                      id=session.id, reason=session.ended, mixed=mixer.next_mix,
                      n=mixer.checked_in)
        for voice in mixer.voices.values():
            # repr: a singer's words reach the log with control characters escaped
            self.log.info("  {name} ({group}): {state}, {chunks} chunks, {late} late, {missing} missing",
                          name=repr(voice.name) if voice.name else str(voice.key),
                          group=repr(voice.group), state=voice.state.value,
                          chunks=voice.delivered, late=voice.late, missing=voice.missing)
