"""A Room ties the mixer, the broadcast to singers, the recorder and the director.

Everything runs on the reactor thread and is paced by one tick (40 ms by default).
Each tick reads every singer of the session once (SingerProtocol.poll), mixes what
became due over all singers at once and sends it to the director, and, every other
tick, forwards the director's chunks to the singers as one write each. Batching
costs up to a tick or two of mix latency and saves most of the per-chunk event-loop
overhead; the protocol tolerates the latency (the director runs seconds ahead).
"""
import collections
import datetime
import itertools
import os

import attrs
import numpy as np
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from choir_protocol.rehearsal import desk
from choir_protocol.rehearsal.adpcm import StereoDecoder
from choir_protocol.rehearsal.connections import END_TO_SINGER, KEEPALIVE_TO_SINGER, SingerState
from choir_protocol.rehearsal.constants import (CHECK_IN_TIMEOUT, CHUNKS_PER_SECOND,
                                                DIRECTOR_LEAD_CHUNKS, FRAMES_PER_CHUNK,
                                                IDLE_TIMEOUT, KEEPALIVE_INTERVAL, MIX_WINDOW_CHUNKS,
                                                SAMPLE_RATE)
from choir_protocol.rehearsal.mixer import Mixer, MixState, VoiceState
from choir_protocol.runners.urls import in_networks, parse_networks

from ..limits import RefusalLog

TICK = 0.04
SWEEP_EVERY = 25  # ticks between keep-alive / idle sweeps (1 s)
DESK_LIST_MAX_AGE = 0.5  # seconds a desk's list may lag behind the room
LOOPBACK = parse_networks("127.0.0.0/8,::1")
# The track goes out to the singers every other tick: they buffer a second of it and
# the director runs seconds ahead, so only the syscalls count. Its end goes at once.
FORWARD_EVERY = 2
# The director may run this far ahead of the mix before we stop reading it.
DIRECTOR_SLACK_CHUNKS = DIRECTOR_LEAD_CHUNKS + 2 * int(CHUNKS_PER_SECOND)


@attrs.define(eq=False)
class Session:
    id: str
    director: object
    mixer: Mixer
    members: dict  # SingerProtocol -> Voice
    started: datetime.datetime
    recorder: object = None
    pending_track: list = attrs.Factory(list)  # chunks to forward at the next tick
    checkin_timer: object = None
    ended: str = ""  # why it ended, once it has
    stray_chunks: int = 0
    monitor_decoder: object = None
    voice_batch: list = attrs.Factory(list)  # (row, raw chunks) for the recorder


class Room:
    log = Logger()

    def __init__(self, clock, *, data_dir: str | None, max_singers: int = 1000,
                 max_singers_per_address: int = 0, monitor_level: float = 0.0,
                 tick: float = TICK, window: int = MIX_WINDOW_CHUNKS, recorder_factory=None,
                 desk_networks=LOOPBACK):
        self.clock = clock
        self.data_dir = data_dir
        self.max_singers = max_singers
        self.max_singers_per_address = max_singers_per_address  # 0: no limit
        self._singers_at: collections.Counter = collections.Counter()  # host -> singers
        self.directors: dict = {}  # DirectorProtocol -> None: connected, with or without a session
        self._desk_replies: dict = {}  # everyone? -> (when, encoded list)
        self.refusals = RefusalLog(clock)  # refusals a client may repeat: not a line each
        self.desk_networks = desk_networks  # always served the desk
        self.monitor_level = monitor_level
        self.window = window
        self.singers: dict = {}  # SingerProtocol -> None, in joining order
        self.session: Session | None = None
        self.last_session: Session | None = None
        self._to_resume: list = []
        self._ticks = itertools.count()
        self._loop = LoopingCall(self.tick)
        self._loop.clock = clock
        self._tick_interval = tick
        self._session_serial = itertools.count(1)
        self._recorder_factory = recorder_factory
        self._recorders: list = []  # of sessions whose files may still be being written
        self.sessions_done = 0

    # -- lifecycle ------------------------------------------------------------------------

    def start(self):
        self._loop.start(self._tick_interval, now=False)

    def stop(self) -> list:
        """Stop the room; returns the recorders still writing (or converting tracks)."""
        if self._loop.running:
            self._loop.stop()
        if self.session is not None:
            self._finish("daemon stopping")
        for singer in list(self.singers):
            singer.drop("daemon stopping")
        self.refusals.stop()
        return [r for r in self._recorders if not r.wait(0)]

    # -- singers ------------------------------------------------------------------------

    def singer_joined(self, singer) -> str:
        """An authenticated singer joins; or why it cannot (the caller closes it)."""
        if len(self.singers) >= self.max_singers:
            n = self.max_singers
            return f"the room is full ({n} singer{'' if n == 1 else 's'} at most)"
        host = singer.peer[0]
        if self.max_singers_per_address and self._singers_at[host] >= self.max_singers_per_address:
            # one machine must not fill the room (e.g. scripted singers that never sing)
            return f"{self.max_singers_per_address} singers already from this address"
        self._singers_at[host] += 1
        self.singers[singer] = None
        self._desk_replies.clear()
        self.log.info("Singer {who} joined ({n} connected)", who=singer.describe(), n=len(self.singers))
        return ""

    def singer_left(self, singer, reason: str) -> None:
        if singer not in self.singers:
            return
        del self.singers[singer]
        self._desk_replies.clear()
        self._singers_at[singer.peer[0]] -= 1
        if not self._singers_at[singer.peer[0]]:
            del self._singers_at[singer.peer[0]]
        session = self.session
        if session is not None and singer in session.members:
            session.mixer.leave(session.members.pop(singer), reason)
        self.log.info("Singer {who} left: {reason} ({n} connected)", who=singer.describe(),
                      reason=reason, n=len(self.singers))

    def singer_read(self, singer) -> None:
        """A singer not polled (no plain socket) was read: hold it until the next tick."""
        singer.transport.pauseProducing()
        self._to_resume.append(singer)

    def voice_of(self, singer):
        return self.session.members.get(singer) if self.session is not None else None

    def singer_checked_in(self, singer) -> None:
        voice = self.voice_of(singer)
        if voice is None:
            return
        self._desk_replies.clear()
        if self.session.mixer.check_in(voice):
            self.log.info("Singer {who} checked in", who=singer.describe())
            if self.session.recorder is not None:
                self.session.recorder.add_singer(voice.row, voice.name, voice.group)
        else:
            self.log.warn("Singer {who} checked in too late: not in this mix", who=singer.describe())

    def singer_audio(self, singer, first_index: int, payloads: list, raw: bytes) -> None:
        voice = self.voice_of(singer)
        if voice is not None:
            self.session.mixer.add_audio(voice, first_index, payloads)
            if voice.row >= 0:
                self.session.voice_batch.append((voice.row, raw))

    def singer_dropped_out(self, singer) -> None:
        voice = self.voice_of(singer)
        if voice is not None:
            self._desk_replies.clear()
            self.session.mixer.leave(voice, "dropped out (-2)")
            self.log.warn("Singer {who} dropped out of the session at chunk {i}", who=singer.describe(),
                          i=voice.next_index)

    def singer_stray(self, singer, count: int) -> None:
        if self.session is not None:
            self.session.stray_chunks += count

    def set_gain(self, peer: tuple, gain: float) -> bool:
        self._desk_replies.clear()
        for singer in self.singers:
            if singer.peer == peer:
                singer.gain = gain
                voice = self.voice_of(singer)
                if voice is not None:
                    self.session.mixer.set_gain(voice, gain)
                return True
        return False

    def desk_reply(self, everyone: bool = False) -> bytes:
        """The encoded reply to a desk's "list": built at most once per DESK_LIST_MAX_AGE
        whatever the number of desks (a change of gain shows at once)."""
        now = self.clock.seconds()
        cached = self._desk_replies.get(everyone)
        if cached is not None and now - cached[0] < DESK_LIST_MAX_AGE:
            return cached[1]
        entries = self.desk_list(everyone)
        reply, shown = desk.encode_list_reply(entries)
        if shown < len(entries):
            self.log.warn("The desk's list shows {shown} of {n} singers: one message holds no "
                          "more", shown=shown, n=len(entries))
        self._desk_replies[everyone] = (now, reply)
        return reply

    def desk_list(self, everyone: bool = False) -> list:
        session = self.session or self.last_session
        listed = []
        for singer in self.singers:
            voice = session.members.get(singer) if session is not None else None
            if everyone or (voice is not None and voice.state is VoiceState.ACTIVE):
                listed.append({"id": list(singer.peer), "name": singer.header.name,
                               "group": singer.header.group, "gain": singer.gain})
        return listed

    # -- director -----------------------------------------------------------------------

    def director_joined(self, director) -> bool:
        """An authenticated director; False (and -2 sent) if it cannot start a session now.

        The seat is taken by the first track chunk, not by the header: a client that sends
        a header and nothing more holds nothing (and its protocol closes it soon)."""
        reason = self._why_no_session()
        if reason:
            director.refuse(reason)
            return False
        self.directors[director] = None
        return True

    def _why_no_session(self) -> str:
        if self.session is not None:
            return "another director's session is running"
        if not self.singers:
            return "no singer is connected"
        return ""

    def desk_allowed(self, host: str) -> bool:
        """Until rooms have keys, the desk (singers' addresses, anyone's gain) is served to
        the address of a connected director or of the last session's, and to
        ``desk_networks`` (by default this machine)."""
        last = self.last_session
        return (any(d.peer[0] == host for d in self.directors)
                or (last is not None and last.director.peer[0] == host)
                or in_networks(host, self.desk_networks))

    def _open_session(self, director) -> None:
        now = datetime.datetime.now(datetime.timezone.utc)
        session_id = f"{now:%Y%m%d-%H%M%S}-{next(self._session_serial)}"
        mixer = Mixer(window=self.window, monitor_level=self.monitor_level)
        session = self.session = Session(session_id, director, mixer, {}, now)
        if self.monitor_level:
            session.monitor_decoder = StereoDecoder()
        self.log.info("Session {id} opened by {who} with {n} singers connected", id=session_id,
                      who=director.describe(), n=len(self.singers))

    def track_chunk(self, director, index: int, chunk: bytes) -> None:
        session = self.session
        if index == 0 and (session is None or session.director is not director):
            reason = self._why_no_session()
            if reason:
                director.refuse(reason)
                return
            self._open_session(director)
            session = self.session
            self._invite_all(session)
        elif session is None or session.director is not director:
            return
        monitor = None
        if session.monitor_decoder is not None:
            left, right = session.monitor_decoder.decode(memoryview(chunk)[4:])
            monitor = ((np.frombuffer(left, "<i2").astype(np.int32) + np.frombuffer(right, "<i2")) >> 1
                       ).astype("<i2").tobytes()
        session.mixer.add_track(index, monitor)
        session.pending_track.append(chunk)
        if session.mixer.track_chunks - session.mixer.next_mix > DIRECTOR_SLACK_CHUNKS:
            director.transport.pauseProducing()  # resumed by the tick once the mix catches up

    def track_ended(self, director) -> None:
        session = self.session
        if session is None or session.director is not director:
            return
        session.mixer.end_track()
        session.pending_track.append(END_TO_SINGER)
        self.log.info("Session {id}: end of track after {n} chunks", id=session.id,
                      n=session.mixer.track_chunks)
        self._forward(session)  # singers need it at once to send their last chunks

    def director_left(self, director, reason: str) -> None:
        self.directors.pop(director, None)
        session = self.session
        if session is not None and session.director is director:
            self._finish(f"director left: {reason}")

    def _invite_all(self, session: Session) -> None:
        for singer in self.singers:
            if singer.conn.state is not SingerState.IDLE:
                continue
            singer.conn.invite()
            singer.start_polling()
            session.members[singer] = session.mixer.invite(singer.peer, singer.header.name,
                                                            singer.header.group, singer.gain)
        session.checkin_timer = self.clock.callLater(CHECK_IN_TIMEOUT, self._check_in_timeout, session)
        if session.recorder is None and self.data_dir is not None:
            self._start_recording(session)

    def _check_in_timeout(self, session: Session) -> None:
        session.checkin_timer = None
        if self.session is session and session.mixer.checked_in == 0:
            self._finish(f"no singer checked in within {CHECK_IN_TIMEOUT:g} s", refuse=True)

    # -- the tick -----------------------------------------------------------------------

    def tick(self) -> None:
        now = self.clock.seconds()
        tick = next(self._ticks)
        session = self.session
        if session is not None:
            for singer in list(session.members):
                singer.poll()
            self._record_voices(session)
            self._mix(session, now)  # first: the mix's delay is what the director hears
            if tick % FORWARD_EVERY == 0 and self.session is session:
                self._forward(session)
        resume, self._to_resume = self._to_resume, []
        for singer in resume:
            if singer.connected:
                singer.transport.resumeProducing()
        if tick % SWEEP_EVERY == 0:
            self._sweep(now)

    @staticmethod
    def _record_voices(session: Session) -> None:
        if session.voice_batch:
            if session.recorder is not None:
                session.recorder.add_voices(session.voice_batch)
            session.voice_batch = []

    def _forward(self, session: Session) -> None:
        if not session.pending_track:
            return
        data = b"".join(session.pending_track)
        session.pending_track.clear()
        for singer in session.members:
            singer.send(data)

    def _mix(self, session: Session, now: float) -> None:
        mixer = session.mixer
        block = mixer.mix(now)
        if block is not None:
            director = session.director
            if director.connected:
                director.send_mix(block.first_index, block.mix.tobytes())
                if mixer.track_chunks - mixer.next_mix <= DIRECTOR_SLACK_CHUNKS:
                    director.transport.resumeProducing()
            if session.recorder is not None:
                session.recorder.add_mix(block.first_index, block.mix)
        if mixer.state is MixState.DONE:
            self._finish("complete")
        elif mixer.state is MixState.ABORTED:
            self._finish("every singer left", refuse=True)

    def _sweep(self, now: float) -> None:
        for singer in list(self.singers):
            if now - singer.last_received > IDLE_TIMEOUT:
                singer.drop(f"nothing received for {IDLE_TIMEOUT:g} s")
            elif singer.output.overflowed:
                singer.drop("not reading what we send")
            elif now - singer.last_sent > KEEPALIVE_INTERVAL:
                singer.send(KEEPALIVE_TO_SINGER)
        session = self.session
        if session is not None:
            director = session.director
            if now - director.last_active > IDLE_TIMEOUT:  # e.g. checked-in singers send nothing
                self._finish(f"stalled: nothing exchanged with the director for {IDLE_TIMEOUT:g} s",
                             refuse=True)
            elif session.recorder is not None and session.recorder.failed is not None:
                # what was written is kept; a session nobody records must not go on unnoticed
                self._finish("incomplete", refuse=True,
                             told=f"the recording stopped ({session.recorder.failed}): the "
                                  f"session is ended, what was recorded is kept")
            elif session.recorder is not None:
                session.recorder.update(self._summary(session))

    # -- end of a session ---------------------------------------------------------------

    def _finish(self, reason: str, refuse: bool = False, told: str = "") -> None:
        """End the session for ``reason``; ``refuse``: with -2 (or ``told``, or ``reason``,
        to our director client)."""
        session = self.session
        self._desk_replies.clear()
        self.session = None
        self.last_session = session
        session.ended = reason
        if session.checkin_timer is not None and session.checkin_timer.active():
            session.checkin_timer.cancel()
        director = session.director
        if director.connected:
            director.transport.resumeProducing()
            if refuse:
                director.refuse(told or reason, flood=False)
        if session.mixer.end_index is None:  # the singers still expect the end of the track
            session.pending_track.append(END_TO_SINGER)
        self._forward(session)
        for singer in session.members:
            singer.conn.end_session()
            singer.stop_polling()
        self._record_voices(session)
        summary = self._summary(session)
        if session.recorder is not None:
            session.recorder.close(summary)
        self.sessions_done += 1
        mixer = session.mixer
        self.log.info("Session {id} ended ({reason}): {mixed} mix chunks, {n} singers mixed",
                      id=session.id, reason=reason, mixed=mixer.next_mix, n=mixer.checked_in)
        for voice in mixer.voices.values():
            # repr: a singer's words reach the log with control characters escaped
            self.log.info("  {name} ({group}): {state}, {chunks} chunks, {late} late, {missing} missing",
                          name=repr(voice.name) if voice.name else str(voice.key),
                          group=repr(voice.group), state=voice.state.value,
                          chunks=voice.delivered, late=voice.late, missing=voice.missing)

    def _start_recording(self, session: Session) -> None:
        directory = os.path.join(self.data_dir, "sessions", session.id)
        factory = self._recorder_factory
        if factory is None:
            from .recorder import SessionRecorder as factory
        session.recorder = factory(directory, self._summary(session))
        self._recorders = [r for r in self._recorders if not r.wait(0)] + [session.recorder]

    def _summary(self, session: Session) -> dict:
        mixer = session.mixer
        return {
            "id": session.id,
            "started": session.started.isoformat(),
            "ended": datetime.datetime.now(datetime.timezone.utc).isoformat() if session.ended else None,
            "state": session.ended or "recording",
            "director": session.director.describe(),
            "sample_rate": SAMPLE_RATE,
            "chunk_frames": FRAMES_PER_CHUNK,
            "track_chunks": mixer.track_chunks,
            "mix_chunks": mixer.next_mix,
            "monitor_level": mixer.monitor_level,
            "stray_chunks": session.stray_chunks,
            "singers": [dict(voice.summary(), address=list(voice.key))
                        for voice in mixer.voices.values()],
        }
