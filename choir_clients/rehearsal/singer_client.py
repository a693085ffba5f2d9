"""choir-singer's client: connects, sings every session the director starts, reconnects.

One duplex stream stays open while the program runs, so the latency stays what was
calibrated. The audio callback (singer_audio) runs a ``SingerSession``
(singer_session) on the device's thread; the network, the encoder and the display run
on the reactor, here.

(Over 400 lines: one object's state, shared by its connection, its sessions and its
status line; what has a job of its own is beside it: singer_link, singer_audio.)
"""
import math

import numpy as np
from twisted.internet import defer, endpoints, task
from twisted.logger import Logger

from choir_protocol.addresses import format_server
from choir_protocol.errors import ProtocolError
from choir_protocol.rehearsal.adpcm import MonoEncoder, StereoDecoder
from choir_protocol.rehearsal.constants import FRAMES_PER_CHUNK, IDLE_TIMEOUT, KEEPALIVE_INTERVAL
from choir_protocol.rehearsal.events import (KeepAlive, Refused, SessionEnded, SessionStarted,
                                             TrackAudio)
from choir_protocol.rehearsal.header import Header

from ..cli import plain_reason
from .singer_audio import AudioThread
from .singer_calibrate import EXIT_ERROR, EXIT_OK
from .singer_link import ServerLink, SessionReport
from .singer_session import (BUFFER_CHUNKS, ERROR_BUDGET, DeviceUnderrun, Finished, LateChunk,
                             PlaybackStarted, SingerSession, StoppedEarly, VoiceChunk)
from .terminal import LineRenderer, level_bar

BACKOFF = (1.0, 30.0)  # first and longest wait before reconnecting (doubling)
STOP_TIMEOUT = 3.0  # seconds Ctrl-C waits for the goodbye (-2) to go out
# A server that kept the connection this long without refusing it (our daemon refuses at
# once) accepted the singer: what was given on the command line is then remembered.
ACCEPT_SECONDS = 1.0


class SingerClient:
    """Connects, sings every session, reconnects; ``done`` fires with the exit status.

    ``voice``: a recording (mono float32) sung instead of the microphone, chunk i with
    track chunk i (see SingerSession). ``on_accepted()`` is called once, when a server
    first accepted the singer (a session started, or ACCEPT_SECONDS without a refusal).
    """

    log = Logger()

    def __init__(self, reactor, device, *, host: str, port: int, header: Header,
                 latency_samples: int, gain_db: float = 0.0, display=None,
                 buffer_chunks: int = BUFFER_CHUNKS, error_budget: int = ERROR_BUDGET,
                 keepalive_interval: float = KEEPALIVE_INTERVAL,
                 idle_timeout: float = IDLE_TIMEOUT, backoff: tuple = BACKOFF,
                 refresh: float = 0.1, voice=None, on_accepted=None):
        self.reactor = reactor
        self.device = device
        self.host, self.port = host, port
        self.header = header
        self.latency = int(latency_samples)
        self.gain = 10 ** (gain_db / 20)
        self.display = display if display is not None else LineRenderer()
        self.buffer_chunks = buffer_chunks
        self.error_budget = error_budget
        self.keepalive_interval = keepalive_interval
        self.idle_timeout = idle_timeout
        self.backoff_min, self.backoff_max = backoff
        self.refresh = refresh
        self.voice = voice
        self.on_accepted = on_accepted
        self.accepted = False
        self._accepting = None  # the delayed call that counts the server as accepting
        self.done = defer.Deferred()
        self.state = "starting"
        self.warning = ""
        self.connections = 0  # links made
        self.reports: list[SessionReport] = []
        self.keepalives_sent = 0
        self.retry_delays = []  # each wait before reconnecting, in order
        self._stream = None
        self._stopping = False
        self._link: ServerLink | None = None
        self._connecting = None  # the Deferred of a connection attempt
        self._retry = None  # the delayed reconnection
        self._retry_at = None
        self._backoff = self.backoff_min
        self._last_sent = self._last_received = 0.0
        self._audio = AudioThread(reactor, gain=self.gain, sings_recording=voice is not None,
                                  report=self._audio_report,
                                  note=lambda text: self.display.note(text))
        self._session = None  # (SingerSession, SessionReport, link, encoder, decoder), reactor side
        self._peak_db = None
        self._ticker = task.LoopingCall(self._tick)
        self._ticker.clock = reactor

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Open the sound card (DeviceError if it cannot) and connect."""
        self._stream = self.device.open(self._audio.callback, finished=self._stream_finished)
        self._stream.start()
        self._ticker.start(self.refresh, now=False)
        self._connect()

    def stop(self, code: int = EXIT_OK) -> defer.Deferred:
        """Leave: drop out of a running session (-2), close, stop the sound card."""
        if self._stopping:
            return self._stopped_deferred()
        self._stopping = True
        self._exit_code = code
        self._cancel_accepting()
        if self._session is not None and not self._session[1].over:
            self.display.note(f"Leaving session {self._session[1].number}: telling the server "
                              f"you dropped out.")
        self._state("leaving")
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        if self._connecting is not None:
            self._connecting.cancel()
        self._end_session("you left", tell_server=True)
        closed = defer.succeed(None)
        if self._link is not None and self._link.alive:
            link = self._link
            closed = defer.Deferred()
            link.on_lost = closed
            link.transport.loseConnection()  # after what is queued (the -2)
            closed.addTimeout(STOP_TIMEOUT, self.reactor,
                              onTimeoutCancel=lambda *_: link.transport.abortConnection())
            closed.addErrback(lambda _: None)
        closed.addBoth(self._close_stream)
        return self._stopped_deferred()

    def _stopped_deferred(self) -> defer.Deferred:
        waiter = defer.Deferred()
        self.done.addBoth(lambda r: (waiter.callback(r), r)[1])
        return waiter

    def _close_stream(self, _=None):
        if self._ticker.running:
            self._ticker.stop()
        if self._stream is not None:
            stream, self._stream = self._stream, None
            try:
                stream.stop()
                stream.close()
            except Exception as e:  # the device is going anyway
                self.log.warn("closing the sound card: {e}", e=e)
        self.display.close()
        if self._exit_code == EXIT_OK:
            self.display.note("Bye!")
        if not self.done.called:
            self.done.callback(self._exit_code)

    def _stream_finished(self):
        """The device thread says the stream ended (maybe on its own: a device failure)."""
        self.reactor.callFromThread(self._stream_ended)

    def _stream_ended(self):
        if not self._stopping and self._stream is not None:
            error = getattr(self._stream, "error", None)
            self.display.note("The sound card stopped working" + (f" ({error})" if error else "")
                              + ": leaving.")
            self.stop(EXIT_ERROR)

    # -- connection -----------------------------------------------------------------------

    def _connect(self) -> None:
        self._retry = None
        if self._stopping:
            return
        self._state("connecting")
        link = ServerLink(self)
        endpoint = endpoints.HostnameEndpoint(self.reactor, self.host, self.port, timeout=10)
        self._connecting = endpoints.connectProtocol(endpoint, link)

        def failed(failure):
            self._connecting = None
            if failure.check(defer.CancelledError) or self._stopping:
                return
            self._reconnect_later(plain_reason(failure))

        def connected(_):
            self._connecting = None

        self._connecting.addCallbacks(connected, failed)

    def _reconnect_later(self, reason: str) -> None:
        if self._stopping:
            return
        delay = self._backoff
        self._backoff = min(self._backoff * 2, self.backoff_max)
        self.retry_delays.append(delay)
        self._retry_at = self.reactor.seconds() + delay
        self._retry = self.reactor.callLater(delay, self._connect)
        self.warning = f"{reason}"
        self.display.note(f"Not connected to {self._address()} ({reason}); "
                          f"trying again in {delay:g} s.")
        self._state("reconnecting")

    def _link_made(self, link: ServerLink) -> None:
        if self._stopping:
            link.transport.abortConnection()
            return
        self._link = link
        link.made_at = self.reactor.seconds()
        self.connections += 1
        self._last_sent = self._last_received = self.reactor.seconds()
        self._send(link.conn.initiate(self.header))
        self.display.note(f"Connected to {self._address()} as {self.header.name!r} "
                          f"({self.header.group}).")
        self.warning = ""
        self._state("waiting for a session")
        if not self.accepted:
            self._accepting = self.reactor.callLater(ACCEPT_SECONDS, self._accept, link)

    def _accept(self, link: ServerLink) -> None:
        self._accepting = None
        if self.accepted or self._stopping or link is not self._link or not link.alive:
            return
        self.accepted = True
        if self.on_accepted is not None:
            self.on_accepted()

    def _cancel_accepting(self) -> None:
        if self._accepting is not None and self._accepting.active():
            self._accepting.cancel()
        self._accepting = None

    def _address(self) -> str:
        return format_server(self.host, self.port)

    def _link_lost(self, link: ServerLink, reason) -> None:
        on_lost = getattr(link, "on_lost", None)
        if on_lost is not None and not on_lost.called:
            on_lost.callback(None)
        if link is not self._link:
            return
        self._link = None
        self._cancel_accepting()
        self._end_session("the connection was lost", tell_server=False)
        if self._stopping:
            return
        lived = self.reactor.seconds() - (link.made_at or 0)
        if link.received_any or lived >= 5:
            self._backoff = self.backoff_min
        self._reconnect_later(getattr(link, "drop_reason", None) or plain_reason(reason))

    def _drop_link(self, reason: str) -> None:
        link = self._link
        if link is not None and link.alive:
            link.drop_reason = reason
            link.transport.abortConnection()

    def _send(self, data: bytes) -> None:
        if self._link is not None:
            self._link.write(data)
            self._last_sent = self.reactor.seconds()

    def _link_data(self, link: ServerLink, data: bytes) -> None:
        if link is not self._link:
            return
        self._last_received = self.reactor.seconds()
        link.received_any = True
        try:
            events = link.conn.receive_data(data)
        except ProtocolError as e:
            self.display.note(f"The server sent something unexpected ({e}): reconnecting.")
            self._drop_link(f"protocol error: {e}")
            return
        for event in events:
            if isinstance(event, TrackAudio):
                self._track_chunk(event.index, event.payload)
            elif isinstance(event, SessionStarted):
                self._start_session(link)
            elif isinstance(event, SessionEnded):
                self._track_ended()
            elif isinstance(event, KeepAlive):
                pass
            elif isinstance(event, Refused):  # e.g. the director's port: trying again is no use
                self._cancel_accepting()
                self.display.note(f"The server refused this singer: {event.reason}.")
                self.stop(EXIT_ERROR)
                return

    # -- sessions (reactor side) ----------------------------------------------------------

    def _start_session(self, link: ServerLink) -> None:
        # (the tail of the previous one, if any, cannot be sent any more)
        self._end_session("a new session started", tell_server=False, conn_done=False)
        self._cancel_accepting()
        self._accept(link)  # (a server that starts a session accepted the singer)
        session = SingerSession(self.latency, buffer_chunks=self.buffer_chunks,
                                error_budget=self.error_budget, voice=self.voice)
        report = SessionReport(len(self.reports) + 1)
        self.reports.append(report)
        self._session = (session, report, link, MonoEncoder(), StereoDecoder())
        self._send(link.conn.check_in())
        self._audio.start(session)
        self.warning = ""
        self.display.note(f"Session {report.number} starting: get ready to sing!")
        self._state("buffering")

    def _track_chunk(self, index: int, payload: bytes) -> None:
        if self._session is None:
            return
        session, report, _, _, decoder = self._session
        report.received = index + 1
        if report.dropped is not None:
            return
        left, right = decoder.decode(payload)
        stereo = np.empty((FRAMES_PER_CHUNK, 2), np.float32)
        stereo[:, 0] = np.frombuffer(left, "<i2")
        stereo[:, 1] = np.frombuffer(right, "<i2")
        stereo *= 1 / 32768
        self._audio.track(session, index, stereo)

    def _track_ended(self) -> None:
        if self._session is None:
            return
        session, report, link, _, _ = self._session
        report.track_ended = True
        if report.dropped is not None:  # nothing more to send for this one
            link.conn.session_done()
            self._session = None
            self._state("waiting for a session")
            return
        self._audio.end(session)

    def _end_session(self, reason: str, tell_server: bool, conn_done: bool = True) -> None:
        """Abandon the current session (if it is not over yet)."""
        if self._session is None:
            return
        session, report, link, _, _ = self._session
        if not report.over:
            report.dropped = reason
            self._audio.drop(session, reason)
            if tell_server and link is self._link:
                self._send(link.conn.drop_out())
        if conn_done and link is self._link:
            link.conn.session_done()
        self._session = None

    def _audio_report(self, session, events, peak_db, played, buffered) -> None:
        """Runs on the reactor: what the audio thread did in one block."""
        if peak_db is not None and (self._peak_db is None or peak_db > self._peak_db):
            self._peak_db = peak_db
        if self._session is None or self._session[0] is not session:
            return  # idle, or a session abandoned meanwhile
        _, report, link, encoder, _ = self._session
        report.played, report.buffered = played, buffered
        for event in events:
            if isinstance(event, VoiceChunk):
                if report.dropped is None and link is self._link:
                    pcm = np.clip(np.rint(event.samples * (self.gain * 32768.0)), -32768, 32767)
                    payload = encoder.encode(pcm.astype("<i2").tobytes())
                    self._send(link.conn.send_voice(event.index, payload))
                    report.sent += 1
            elif isinstance(event, PlaybackStarted):
                report.started_playing = True
                self._state("singing")
            elif isinstance(event, LateChunk):
                report.late += 1
                self.warning = (f"the track came late ({report.late} chunks missing when due; "
                                f"{event.errors}/{self.error_budget} errors)")
            elif isinstance(event, DeviceUnderrun):
                report.underruns += 1
                self.warning = (f"sound card {event.what} ({event.errors}/{self.error_budget} "
                                f"errors)")
            elif isinstance(event, StoppedEarly):
                if report.dropped is None:  # the session gave up (too many errors)
                    report.dropped = event.reason
                    self._send(link.conn.drop_out())
                    self.display.note(f"Dropped out of session {report.number}: {event.reason}. "
                                      f"Waiting for the next one.")
                    self.warning = "dropped out: " + event.reason
                    if report.track_ended:  # the server's end of session came already
                        if link is self._link:
                            link.conn.session_done()
                        self._session = None
                        self._state("waiting for a session")
                    else:
                        self._state("dropped out")
            elif isinstance(event, Finished):
                report.finished = True
                if link is self._link:
                    link.conn.session_done()
                self._session = None
                self.display.note(f"Session {report.number} done: {report.sent} chunks sung"
                                  + (f", {report.late} late" if report.late else "")
                                  + (f", {report.underruns} sound-card errors"
                                     if report.underruns else "") + ".")
                self._state("waiting for a session")

    # -- timers and display ---------------------------------------------------------------

    def _tick(self) -> None:
        now = self.reactor.seconds()
        link = self._link
        if link is not None and link.alive:
            if now - self._last_received >= self.idle_timeout:
                self.display.note(f"The server said nothing for {self.idle_timeout:g} s: "
                                  f"reconnecting.")
                self._drop_link(f"server silent for {self.idle_timeout:g} s")
            elif now - self._last_sent >= self.keepalive_interval:
                self._send(link.conn.keepalive())
                self.keepalives_sent += 1
        self._render()

    def _state(self, state: str) -> None:
        changed = state != self.state
        self.state = state
        if changed:
            self._render(force=True)

    def _render(self, force: bool = False) -> None:
        state = self.state
        if state == "reconnecting" and self._retry_at is not None:
            left = max(0, math.ceil(self._retry_at - self.reactor.seconds()))
            state = f"reconnecting in {left} s"
        parts = [state, self._address()]
        if self._session is not None:
            report = self._session[1]
            if report.started_playing:
                parts.append(f"chunk {report.played}/{report.received} played/received")
            else:
                parts.append(f"buffering {report.received}/{self.buffer_chunks}")
        parts.append("mic " + level_bar(self._peak_db, width=16))
        if self.warning:
            parts.append("! " + self.warning)
        self.display.status(" | ".join(parts), force=force)
        self._peak_db = None
