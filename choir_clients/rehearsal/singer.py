"""choir-singer: sing in an online choir rehearsal from a terminal.

``choir-singer calibrate`` measures the sound card's round-trip latency once (the
time from the speakers to the microphone); ``choir-singer --server HOST`` then
connects to the rehearsal server and sings every session the director starts: it
plays the director's track, records the singer and sends the recording labelled so
that the server lines it up with everyone else, to the sample.

One duplex stream stays open while the program runs, so the latency stays what was
calibrated. The audio callback runs a ``SingerSession`` (choir_clients.rehearsal.singer_session)
on the device's thread; the network, the encoder and the display run on the reactor.
Commands go to the audio thread through a queue, results come back with
``reactor.callFromThread``.

Beside: the command line (singer_options), the card and its calibration (singer_cards:
a real card, ``--simulate``'s simulated one, or ``--input-file``'s recording), and the
calibrate command (singer_calibrate). What was given on the command line is saved only
once a server accepted the singer, so a value that does not work is never remembered.
"""
import getpass
import math
import queue
import sys
import traceback

import numpy as np
from twisted.internet import defer, endpoints, protocol, task, threads
from twisted.logger import Logger

from choir_protocol.addresses import AddressError, format_server, parse_server
from choir_protocol.errors import ProtocolError
from choir_protocol.rehearsal.adpcm import MonoEncoder, StereoDecoder
from choir_protocol.rehearsal.connections import SingerClientConnection
from choir_protocol.rehearsal.constants import (FRAMES_PER_CHUNK, IDLE_TIMEOUT, KEEPALIVE_INTERVAL,
                                                SAMPLE_RATE, VOCAL_GROUPS)
from choir_protocol.rehearsal.events import (KeepAlive, Refused, SessionEnded, SessionStarted,
                                             TrackAudio)
from choir_protocol.rehearsal.header import Header
from choir_protocol.version import program_version

from ..cli import plain_reason
from .singer_calibrate import EXIT_ERROR, EXIT_OK, PROGRAM, calibrate, first_line
from .singer_cards import (NotCalibrated, calibrated_latency, chosen_card, load_voice,  # noqa: F401
                           sound_card, stored_calibration)
from .singer_options import (DEFAULT_PORT, DEFAULT_SERVER, CalibrateOptions, Options,  # noqa: F401
                             given_settings, parse)
from .singer_session import (BUFFER_CHUNKS, ERROR_BUDGET, DeviceUnderrun, DroppedOut, Finished,
                             LateChunk, PlaybackStarted, SingerSession, VoiceChunk)
from .terminal import SILENCE_DB, LineRenderer, level_bar

BACKOFF = (1.0, 30.0)  # first and longest wait before reconnecting (doubling)
STOP_TIMEOUT = 3.0  # seconds Ctrl-C waits for the goodbye (-2) to go out
# A server that kept the connection this long without refusing it (our daemon refuses at
# once) accepted the singer: what was given on the command line is then remembered.
ACCEPT_SECONDS = 1.0

EXIT_UNCALIBRATED = 2


def _version() -> str:
    return program_version("choir-singer")


def _peak_db(samples, gain: float) -> float:
    peak = float(np.max(np.abs(samples))) * gain if len(samples) else 0.0
    return 20 * math.log10(peak) if peak > 1e-9 else SILENCE_DB


# -- the client -----------------------------------------------------------------------------

class SessionReport:
    """What happened in one session, as the reactor saw it."""

    def __init__(self, number: int):
        self.number = number
        self.received = 0  # track chunks
        self.played = 0
        self.buffered = 0
        self.sent = 0  # voice chunks
        self.late = 0
        self.underruns = 0
        self.started_playing = False
        self.track_ended = False
        self.dropped = None  # the reason, once dropped out
        self.finished = False

    @property
    def over(self) -> bool:
        return self.finished or self.dropped is not None


class _Link(protocol.Protocol):
    """One TCP connection to the server; the client does the thinking."""

    def __init__(self, client):
        self.client = client
        self.conn = SingerClientConnection()
        self.alive = False
        self.made_at = None
        self.received_any = False

    def connectionMade(self):
        self.alive = True
        try:
            self.transport.setTcpNoDelay(True)
        except (AttributeError, OSError):
            pass
        self.client._link_made(self)

    def dataReceived(self, data):
        self.client._link_data(self, data)

    def connectionLost(self, reason):
        self.alive = False
        self.client._link_lost(self, reason)

    def write(self, data: bytes) -> None:
        if self.alive:
            self.transport.write(data)


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
        self._link: _Link | None = None
        self._connecting = None  # the Deferred of a connection attempt
        self._retry = None  # the delayed reconnection
        self._retry_at = None
        self._backoff = self.backoff_min
        self._last_sent = self._last_received = 0.0
        self._inbox = queue.SimpleQueue()  # reactor -> audio thread
        self._audio_session = None  # owned by the audio thread
        self._session = None  # (SingerSession, SessionReport, link, encoder, decoder), reactor side
        self._peak_db = None
        self._audio_failed = False
        self._ticker = task.LoopingCall(self._tick)
        self._ticker.clock = reactor

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Open the sound card (DeviceError if it cannot) and connect."""
        self._stream = self.device.open(self._callback, finished=self._stream_finished)
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
        link = _Link(self)
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

    def _link_made(self, link: _Link) -> None:
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

    def _accept(self, link: _Link) -> None:
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

    def _link_lost(self, link: _Link, reason) -> None:
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

    def _link_data(self, link: _Link, data: bytes) -> None:
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

    def _start_session(self, link: _Link) -> None:
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
        self._inbox.put(("start", session))
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
        self._inbox.put(("track", session, index, stereo))

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
        self._inbox.put(("end", session))

    def _end_session(self, reason: str, tell_server: bool, conn_done: bool = True) -> None:
        """Abandon the current session (if it is not over yet)."""
        if self._session is None:
            return
        session, report, link, _, _ = self._session
        if not report.over:
            report.dropped = reason
            self._inbox.put(("drop", session, reason))
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
            elif isinstance(event, DroppedOut):
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

    # -- the audio thread -----------------------------------------------------------------

    def _callback(self, indata, outdata, status):
        """The device's thread, once per 512-frame block."""
        try:
            while True:
                try:
                    command = self._inbox.get_nowait()
                except queue.Empty:
                    break
                kind, session = command[0], command[1]
                if kind == "start":
                    self._audio_session = session
                elif kind == "track":
                    session.add_track(command[2], command[3])
                elif kind == "end":
                    session.end_track()
                elif kind == "drop":
                    session.drop_out(command[2])
                    if session is self._audio_session:
                        self._audio_session = None
            samples = indata[:, 0] if indata.ndim == 2 else indata
            # (with a recording for a voice, the meter shows what is sent)
            peak_db = _peak_db(samples, self.gain) if self.voice is None else SILENCE_DB
            session = self._audio_session
            if session is None:
                outdata.fill(0)
                self.reactor.callFromThread(self._audio_report, None, (), peak_db, 0, 0)
                return
            session.record(samples, overflow=bool(getattr(status, "input_overflow", False)))
            outdata[:] = session.play(underflow=bool(getattr(status, "output_underflow", False)))
            events = session.take_events()
            if self.voice is not None:
                peak_db = max([_peak_db(e.samples, self.gain) for e in events
                               if isinstance(e, VoiceChunk)], default=SILENCE_DB)
            if session.over:
                self._audio_session = None
            self.reactor.callFromThread(self._audio_report, session, events, peak_db,
                                        session.played, session.buffered)
        except Exception as e:  # never let the device thread die: play silence
            outdata.fill(0)
            if not self._audio_failed:
                self._audio_failed = True
                traceback.print_exc()
                self.reactor.callFromThread(self.display.note, f"Error in the audio thread: {e!r}")

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


# -- commands -------------------------------------------------------------------------------

def server_address(options, config) -> tuple:
    """(host, port): given (--server may carry the port), else remembered, else the defaults."""
    from ..config import ConfigError

    port = options["port"]
    if options["server"] is not None:
        host = options["server"]
    else:  # (an older choir-singer may have remembered "host:port")
        remembered = str(config.get("server") or DEFAULT_SERVER)
        try:
            host, remembered_port = parse_server(remembered, None)
        except AddressError as e:
            raise ConfigError(f"the remembered server is not usable ({e}): give --server") from None
        port = port or remembered_port
    try:
        return host, int(port or config.get("port") or DEFAULT_PORT)
    except (TypeError, ValueError):
        raise ConfigError(f"the remembered port {config.get('port')!r} is not a number: give "
                          f"--port") from None


def _remember(settings: dict, display) -> None:
    """Save what was given on the command line, now that the server accepted it."""
    from ..config import ConfigError, load_config, save_config

    if not settings:
        return
    try:
        config = load_config(PROGRAM)
        config.update(settings)
        save_config(PROGRAM, config)
    except ConfigError as e:
        display.note(f"Could not remember your settings: {e}")


async def _voice_and_card(options, config, device_factory, err):
    """(voice or None, device, latency samples), or the exit status if singing cannot start."""
    from .devices import SilentCard
    from .media import MediaError

    if options["input-file"] is not None:
        try:
            voice = await threads.deferToThread(load_voice, options["input-file"])
        except (MediaError, OSError) as e:
            err.write(f"Cannot sing the recording: {first_line(e)}\n")
            return EXIT_ERROR
        return voice, SilentCard(f"recording {options['input-file']}"), 0
    card = chosen_card(options, config)
    try:
        calibration = stored_calibration(config, card)
        try:
            device = card.open(device_factory)
        except Exception as e:
            err.write(f"Cannot use the sound card: {first_line(e)}\n")
            return EXIT_ERROR
        return None, device, calibrated_latency(calibration, card, device)
    except NotCalibrated as e:
        err.write(f"{e}\n")
        return EXIT_UNCALIBRATED


async def sing(reactor, options, *, device_factory=None, out=None, err=None,
               client_options=None, started=None) -> int:
    """The singing command: returns the exit status once the client stopped. What was given
    on the command line is remembered only once a server accepted the singer."""
    from ..config import load_config

    out = out or sys.stdout
    err = err or sys.stderr
    config = load_config(PROGRAM)
    host, port = server_address(options, config)
    chosen = await _voice_and_card(options, config, device_factory or sound_card, err)
    if isinstance(chosen, int):
        return chosen
    voice, device, latency = chosen
    name = options["name"] or config.get("name") or _login_name()
    group = options["group"] or config.get("group") or VOCAL_GROUPS[0]
    gain = options["gain"] if options["gain"] is not None else float(config.get("gain_db") or 0.0)
    display = LineRenderer(out)
    settings = given_settings(options)
    client = SingerClient(reactor, device, host=host, port=port,
                          header=Header(name, group, _version()), latency_samples=latency,
                          gain_db=gain, display=display, voice=voice,
                          on_accepted=lambda: _remember(settings, display),
                          **(client_options or {}))
    if voice is not None:
        what = (f"singing the recording {options['input-file']} "
                f"({len(voice) / SAMPLE_RATE:.1f} s)")
    else:
        what = (f"sound card {getattr(device, 'name', '?')}, latency {latency} samples "
                f"({latency * 1000 / SAMPLE_RATE:.1f} ms)")
    display.note(f"{_version()}: singing as {name!r} ({group}) on {client._address()}; {what}. "
                 f"Ctrl-C to leave.")
    try:
        client.start()
    except Exception as e:
        err.write(f"Cannot open the sound card: {first_line(e)}\n")
        return EXIT_ERROR
    trigger = reactor.addSystemEventTrigger("before", "shutdown", client.stop)
    if started is not None:
        started(client)
    try:
        return await client.done
    finally:
        try:
            reactor.removeSystemEventTrigger(trigger)
        except (ValueError, KeyError):
            pass


def _login_name() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return ""


async def run(reactor, options, **kwargs) -> int:
    from ..config import ConfigError
    from .devices import DeviceError

    try:
        if options.subCommand == "calibrate":
            return await calibrate(reactor, options.subOptions,
                                   device_factory=kwargs.get("device_factory") or sound_card,
                                   out=kwargs.get("out"), err=kwargs.get("err"))
        if options["list-devices"]:
            from .devices import list_devices
            (kwargs.get("out") or sys.stdout).write(list_devices().rstrip("\n") + "\n")
            return EXIT_OK
        return await sing(reactor, options, **kwargs)
    except (ConfigError, DeviceError) as e:
        (kwargs.get("err") or sys.stderr).write(f"choir-singer: {first_line(e)}\n")
        return EXIT_ERROR


def main(argv=None, *, device_factory=None) -> None:
    """The choir-singer command. ``device_factory(input, output)`` makes the sound card
    (default: SoundDevice); tests pass a simulated one."""
    options = parse(sys.argv[1:] if argv is None else argv)

    async def react_main(reactor):
        code = await run(reactor, options, device_factory=device_factory)
        if code:
            raise SystemExit(code)

    task.react(react_main)


if __name__ == "__main__":
    main()
