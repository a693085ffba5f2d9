"""choir-singer: sing in an online choir rehearsal from a terminal.

``choir-singer calibrate`` measures the sound card's round-trip latency once (the
time from the speakers to the microphone); ``choir-singer --server HOST`` then
connects to the rehearsal server and sings every session the director starts: it
plays the director's track, records the singer and sends the recording labelled so
that the server lines it up with everyone else, to the sample.

One duplex stream stays open while the program runs, so the latency stays what was
calibrated. The audio callback runs a ``SingerSession`` (choir_clients.singer_session)
on the device's thread; the network, the encoder and the display run on the reactor.
Commands go to the audio thread through a queue, results come back with
``reactor.callFromThread``.
"""
import datetime
import getpass
import math
import queue
import sys
import traceback

import numpy as np
from twisted.internet import defer, endpoints, protocol, task, threads
from twisted.logger import Logger
from twisted.python import usage

from choir_protocol.adpcm import MonoEncoder, StereoDecoder
from choir_protocol.connections import SingerClientConnection
from choir_protocol.constants import (FRAMES_PER_CHUNK, IDLE_TIMEOUT, KEEPALIVE_INTERVAL,
                                      SAMPLE_RATE, VOCAL_GROUPS)
from choir_protocol.errors import ProtocolError
from choir_protocol.events import KeepAlive, Refused, SessionEnded, SessionStarted, TrackAudio
from choir_protocol.header import Header
from choir_protocol.version import program_version

from .cli import parse_options, plain_reason
from .singer_session import (BUFFER_CHUNKS, ERROR_BUDGET, DeviceUnderrun, DroppedOut, Finished,
                             LateChunk, PlaybackStarted, SingerSession, VoiceChunk)
from .terminal import SILENCE_DB, LineRenderer, level_bar

PROGRAM = "singer"
DEFAULT_PORT = 8868
DEFAULT_SERVER = "localhost"
BACKOFF = (1.0, 30.0)  # first and longest wait before reconnecting (doubling)
STOP_TIMEOUT = 3.0  # seconds Ctrl-C waits for the goodbye (-2) to go out

EXIT_OK, EXIT_ERROR, EXIT_UNCALIBRATED = 0, 1, 2


def _version() -> str:
    return program_version("choir-singer")


# -- command line ---------------------------------------------------------------------------

def _group(value: str) -> str:
    for group in VOCAL_GROUPS:
        if value.strip().lower() == group.lower():
            return group
    raise ValueError(f"unknown group {value!r}")


_group.coerceDoc = ""

_DEVICE_HELP = ("The sound card {}: a name or number from --list-devices (default: the one "
                "remembered, else the system's default).")


def _show_version():
    """Show the version and exit."""
    print(_version())
    sys.exit(0)


class CalibrateOptions(usage.Options):
    longdesc = (
        "Measure how long sound takes from your speakers to your microphone, so that your "
        "singing lines up with the choir. Turn the volume up and put your headphones right "
        "against the microphone (or use loudspeakers), keep quiet, and let it play a rising tone "
        "for a few seconds. Do it again whenever you change sound card, headphones or "
        "microphone: the result is remembered for these devices, and singing needs it.")
    optParameters = [
        ["input-device", "i", None, _DEVICE_HELP.format("of your microphone")],
        ["output-device", "o", None, _DEVICE_HELP.format("of your headphones")],
        ["seconds", None, 3.0, "How long to measure.", float],
    ]

    def getSynopsis(self):
        return "Usage: choir-singer calibrate [options]"

    def opt_version(self):
        """Show the version and exit."""
        _show_version()

    def postOptions(self):
        if not 0.5 <= self["seconds"] <= 30:
            raise usage.UsageError("--seconds must be between 0.5 and 30")


class Options(usage.Options):
    synopsis = "Usage: choir-singer [options]\n       choir-singer calibrate [options]"
    longdesc = (
        "Sing in an online choir rehearsal. You hear the director's track in your headphones "
        "and sing along; your voice is sent to the rehearsal server, which lines it up with "
        "the other singers to the sample. Calibrate first (choir-singer calibrate), then run "
        "choir-singer --server HOST and leave it running: it waits for the director, sings "
        "every session, and reconnects by itself if the connection drops. Ctrl-C to leave. "
        "Name, group, server, gain and sound cards are remembered once given.")
    optFlags = [
        ["list-devices", "l", "List the sound cards and exit."],
    ]
    optParameters = [
        ["server", "s", None, f"Rehearsal server host name or address (default: the one "
                              f"remembered, else {DEFAULT_SERVER})."],
        ["port", "p", None, f"Singer port of the server (default: remembered, else "
                            f"{DEFAULT_PORT}).", int],
        ["name", "n", None, "Your name, as the director sees it (default: remembered, else your "
                            "login name)."],
        ["group", "g", None, "Your voice: " + ", ".join(VOCAL_GROUPS) + ".", _group],
        ["input-device", "i", None, _DEVICE_HELP.format("of your microphone")],
        ["output-device", "o", None, _DEVICE_HELP.format("of your headphones")],
        ["gain", None, None, "Microphone gain in dB, applied before sending (default: "
                             "remembered, else 0).", float],
    ]
    subCommands = [
        ["calibrate", None, CalibrateOptions, "Measure your sound card's latency (do it first)."],
    ]

    def opt_version(self):
        """Show the version and exit."""
        _show_version()

    def postOptions(self):
        if self["port"] is not None and not 0 < self["port"] < 65536:
            raise usage.UsageError("--port must be between 1 and 65535")
        if self["gain"] is not None and not -40 <= self["gain"] <= 40:
            raise usage.UsageError("--gain must be between -40 and 40 dB")


# -- configuration ------------------------------------------------------------------------

class NotCalibrated(Exception):
    """Singing cannot start: no calibration for these devices."""


def _device_key(name) -> str | None:
    return None if name in (None, "") else str(name)


def _describe_device(name) -> str:
    return "the default device" if name is None else repr(name)


def chosen_devices(options, config) -> tuple:
    """(input, output): given on the command line, else remembered, else None (default)."""
    return tuple(_device_key(options[key] if options[key] is not None else config.get(field))
                 for key, field in (("input-device", "input_device"),
                                    ("output-device", "output_device")))


def calibrated_latency(config: dict, input_device, output_device) -> int:
    """The calibrated latency in samples for these devices, or NotCalibrated."""
    calibration = config.get("calibration")
    if not calibration or "latency_samples" not in calibration:
        raise NotCalibrated(
            "Your sound card is not calibrated yet, so your singing would not line up with the "
            "choir. Run `choir-singer calibrate` first" + _device_args(input_device, output_device)
            + ".")
    devices = (_device_key(calibration.get("input_device")),
               _device_key(calibration.get("output_device")))
    if devices != (input_device, output_device):
        raise NotCalibrated(
            f"The calibration was made for other sound cards (input {_describe_device(devices[0])}, "
            f"output {_describe_device(devices[1])}); you chose input "
            f"{_describe_device(input_device)}, output {_describe_device(output_device)}. Run "
            f"`choir-singer calibrate`{_device_args(input_device, output_device)} first.")
    return int(calibration["latency_samples"])


def _device_args(input_device, output_device) -> str:
    args = ""
    if input_device is not None:
        args += f" --input-device {input_device!r}"
    if output_device is not None:
        args += f" --output-device {output_device!r}"
    return args and " with" + args


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
    """Connects, sings every session, reconnects; ``done`` fires with the exit status."""

    log = Logger()

    def __init__(self, reactor, device, *, host: str, port: int, header: Header,
                 latency_samples: int, gain_db: float = 0.0, display=None,
                 buffer_chunks: int = BUFFER_CHUNKS, error_budget: int = ERROR_BUDGET,
                 keepalive_interval: float = KEEPALIVE_INTERVAL,
                 idle_timeout: float = IDLE_TIMEOUT, backoff: tuple = BACKOFF,
                 refresh: float = 0.1):
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
        self.display.note(f"Not connected to {self.host}:{self.port} ({reason}); "
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
        self.display.note(f"Connected to {self.host}:{self.port} as {self.header.name!r} "
                          f"({self.header.group}).")
        self.warning = ""
        self._state("waiting for a session")

    def _link_lost(self, link: _Link, reason) -> None:
        on_lost = getattr(link, "on_lost", None)
        if on_lost is not None and not on_lost.called:
            on_lost.callback(None)
        if link is not self._link:
            return
        self._link = None
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
                self.display.note(f"The server refused this singer: {event.reason}.")
                self.stop(EXIT_ERROR)
                return

    # -- sessions (reactor side) ----------------------------------------------------------

    def _start_session(self, link: _Link) -> None:
        # (the tail of the previous one, if any, cannot be sent any more)
        self._end_session("a new session started", tell_server=False, conn_done=False)
        session = SingerSession(self.latency, buffer_chunks=self.buffer_chunks,
                                error_budget=self.error_budget)
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
            peak = float(np.max(np.abs(samples))) * self.gain if len(samples) else 0.0
            peak_db = 20 * math.log10(peak) if peak > 1e-9 else SILENCE_DB
            session = self._audio_session
            if session is None:
                outdata.fill(0)
                self.reactor.callFromThread(self._audio_report, None, (), peak_db, 0, 0)
                return
            session.record(samples, overflow=bool(getattr(status, "input_overflow", False)))
            outdata[:] = session.play(underflow=bool(getattr(status, "output_underflow", False)))
            events = session.take_events()
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
        parts = [state, f"{self.host}:{self.port}"]
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

def _default_device_factory(input_device, output_device):
    from .devices import SoundDevice  # imports sounddevice (PortAudio) only when needed
    return SoundDevice(input_device=input_device, output_device=output_device)


def _remember(config: dict, options) -> dict:
    """The settings given on the command line, merged into the config."""
    updates = {}
    for option, field in (("server", "server"), ("port", "port"), ("name", "name"),
                          ("group", "group"), ("input-device", "input_device"),
                          ("output-device", "output_device"), ("gain", "gain_db")):
        if option in options and options[option] is not None:
            updates[field] = options[option]
    if updates:
        config.update(updates)
    return updates


async def calibrate(reactor, options, *, device_factory=None, out=None, err=None) -> int:
    from .calibration import CalibrationError, measure_latency
    from .config import load_config, save_config

    out = out or sys.stdout
    err = err or sys.stderr
    device_factory = device_factory or _default_device_factory
    config = load_config(PROGRAM)
    input_device, output_device = chosen_devices(options, config)
    try:
        device = device_factory(input_device, output_device)
    except Exception as e:
        err.write(f"Cannot use the sound card: {e}\n")
        return EXIT_ERROR
    display = LineRenderer(out, interval=1.0)
    display.note(f"Calibrating: input {_describe_device(input_device)}, output "
                 f"{_describe_device(output_device)}. Turn the volume up, put your headphones "
                 f"against the microphone (or use loudspeakers) and keep quiet...")

    def progress(*args):
        fraction = args[0] if args and isinstance(args[0], (int, float)) else None
        text = f"measuring... {fraction:.0%}" if fraction is not None else "measuring..."
        reactor.callFromThread(display.status, text)

    try:
        result = await threads.deferToThread(measure_latency, device, seconds=options["seconds"],
                                              progress=progress)
    except CalibrationError as e:
        display.close()
        err.write(f"Calibration failed: {e}\n")
        return EXIT_ERROR
    except Exception as e:
        display.close()
        err.write(f"Calibration failed: the sound card did not work ({e}).\n")
        return EXIT_ERROR
    display.close()
    config = load_config(PROGRAM)  # (it may have changed meanwhile)
    _remember(config, options)
    config["calibration"] = {
        "latency_samples": int(result.latency_samples),
        "latency_ms": round(result.latency_samples * 1000 / SAMPLE_RATE, 2),
        "confidence": round(float(result.confidence), 3),
        "input_device": input_device,
        "output_device": output_device,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "device": getattr(device, "name", None),
    }
    path = save_config(PROGRAM, config)
    out.write(f"Latency: {result.latency_samples} samples = "
              f"{result.latency_samples / FRAMES_PER_CHUNK:.2f} chunks = "
              f"{result.latency_samples * 1000 / SAMPLE_RATE:.1f} ms "
              f"(confidence {result.confidence:.2f}).\n"
              f"Saved in {path}. You can sing now: choir-singer --server HOST\n")
    return EXIT_OK


async def sing(reactor, options, *, device_factory=None, out=None, err=None,
               client_options=None, started=None) -> int:
    """The singing command: returns the exit status once the client stopped."""
    from .config import load_config, save_config

    out = out or sys.stdout
    err = err or sys.stderr
    device_factory = device_factory or _default_device_factory
    config = load_config(PROGRAM)
    if _remember(config, options):
        save_config(PROGRAM, config)
    input_device, output_device = chosen_devices(options, config)
    try:
        latency = calibrated_latency(config, input_device, output_device)
    except NotCalibrated as e:
        err.write(f"{e}\n")
        return EXIT_UNCALIBRATED
    name = config.get("name") or _login_name()
    group = config.get("group") or VOCAL_GROUPS[0]
    host = config.get("server") or DEFAULT_SERVER
    port = int(config.get("port") or DEFAULT_PORT)
    try:
        device = device_factory(input_device, output_device)
    except Exception as e:
        err.write(f"Cannot use the sound card: {e}\n")
        return EXIT_ERROR
    display = LineRenderer(out)
    client = SingerClient(reactor, device, host=host, port=port,
                          header=Header(name, group, _version()), latency_samples=latency,
                          gain_db=float(config.get("gain_db") or 0.0), display=display,
                          **(client_options or {}))
    display.note(f"{_version()}: singing as {name!r} ({group}) on {host}:{port}; latency "
                 f"{latency} samples ({latency * 1000 / SAMPLE_RATE:.1f} ms). Ctrl-C to leave.")
    try:
        client.start()
    except Exception as e:
        err.write(f"Cannot open the sound card: {e}\n")
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
    from .config import ConfigError
    from .devices import DeviceError

    try:
        if options.subCommand == "calibrate":
            return await calibrate(reactor, options.subOptions, **kwargs)
        if options["list-devices"]:
            from .devices import list_devices
            (kwargs.get("out") or sys.stdout).write(list_devices().rstrip("\n") + "\n")
            return EXIT_OK
        return await sing(reactor, options, **kwargs)
    except (ConfigError, DeviceError) as e:
        (kwargs.get("err") or sys.stderr).write(f"choir-singer: {e}\n")
        return EXIT_ERROR


def parse(argv) -> Options:
    return parse_options(Options(), argv, "choir-singer")


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
