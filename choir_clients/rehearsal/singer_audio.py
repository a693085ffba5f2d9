"""choir-singer's audio thread: the device calls back once per 512-frame block, and the
current ``SingerSession`` plays and records that block.

The reactor's commands (a session starts, a track chunk, the end of the track, a drop-out)
reach the thread through a queue; what the session did goes back with
``reactor.callFromThread``. So only this thread ever touches a running SingerSession.
"""
import queue
import traceback

from .singer_session import VoiceChunk
from .terminal import SILENCE_DB, dbfs


class AudioThread:
    """``report(session, events, peak_db, played, buffered)`` runs on the reactor after each
    block (``session`` None when idle); ``note(text)`` says that the thread failed."""

    def __init__(self, reactor, *, gain: float, sings_recording: bool, report, note):
        self.reactor = reactor
        self.gain = gain
        self.sings_recording = sings_recording  # the meter then shows what is sent
        self.report = report
        self.note = note
        self._inbox = queue.SimpleQueue()  # reactor -> audio thread
        self._session = None  # owned by the audio thread
        self._failed = False

    # -- the reactor's commands -----------------------------------------------------------

    def start(self, session) -> None:
        self._inbox.put(("start", session))

    def track(self, session, index: int, stereo) -> None:
        self._inbox.put(("track", session, index, stereo))

    def end(self, session) -> None:
        self._inbox.put(("end", session))

    def drop(self, session, reason: str) -> None:
        self._inbox.put(("drop", session, reason))

    # -- the device's thread --------------------------------------------------------------

    def _obey(self) -> None:
        while True:
            try:
                command = self._inbox.get_nowait()
            except queue.Empty:
                return
            kind, session = command[0], command[1]
            if kind == "start":
                self._session = session
            elif kind == "track":
                session.add_track(command[2], command[3])
            elif kind == "end":
                session.end_track()
            elif kind == "drop":
                session.drop_out(command[2])
                if session is self._session:
                    self._session = None

    def callback(self, indata, outdata, status):
        """The device's thread, once per 512-frame block."""
        try:
            self._obey()
            samples = indata[:, 0] if indata.ndim == 2 else indata
            peak_db = dbfs(samples, self.gain) if not self.sings_recording else SILENCE_DB
            session = self._session
            if session is None:
                outdata.fill(0)
                self.reactor.callFromThread(self.report, None, (), peak_db, 0, 0)
                return
            session.record(samples, overflow=bool(getattr(status, "input_overflow", False)))
            outdata[:] = session.play(underflow=bool(getattr(status, "output_underflow", False)))
            events = session.take_events()
            if self.sings_recording:
                peak_db = max([dbfs(e.samples, self.gain) for e in events
                               if isinstance(e, VoiceChunk)], default=SILENCE_DB)
            if session.over:
                self._session = None
            self.reactor.callFromThread(self.report, session, events, peak_db,
                                        session.played, session.buffered)
        except Exception as e:  # never let the device thread die: play silence
            outdata.fill(0)
            if not self._failed:
                self._failed = True
                traceback.print_exc()
                self.reactor.callFromThread(self.note, f"Error in the audio thread: {e!r}")
