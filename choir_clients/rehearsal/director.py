"""choir-director: run a rehearsal from the terminal.

The director plays a backing track (or the microphone, ``--live``) to every singer
connected to the choir server and hears the choir come back, mixed and in time.
Works with our daemon (``twistd -n choir``) and with an online-choir 1.1.3 server.

    choir-director --server HOST --input song.mp3 --output rehearsal.flac
    choir-director --server HOST:PORT --simulate --input song.mp3   (no sound card)
    choir-director --server HOST desk list          (in another terminal, during a session)
    choir-director --server HOST desk gain Anna -6

How a session runs: the track is sent ahead of time, at most 6 s (516 chunks) ahead of
the mix received (1.1.3's flow control), then the end of the track (-1); the server
sends back one mix chunk per track chunk, and the session is over when the last one is
in. Ctrl-C stops sending the track: the choir's mix of what was already sent still
comes back (up to 6 s), is saved, and the program exits normally. A second Ctrl-C
quits at once. A server that is no director port (a singer, desk or web port, another
service) is named for what it is (``choir_protocol.rehearsal.peer_kind``).

The command line is in ``director_options``; the track, the microphone and the player
in ``playback``.
"""
import math
import os
import signal
import sys
import time

import numpy as np
from twisted.internet import defer, endpoints, error, protocol, task

from choir_protocol.addresses import format_server
from choir_protocol.errors import ProtocolError
from choir_protocol.rehearsal.adpcm import StereoEncoder
from choir_protocol.rehearsal.connections import DirectorClientConnection
from choir_protocol.rehearsal.constants import DIRECTOR_LEAD_CHUNKS, FRAMES_PER_CHUNK, SAMPLE_RATE
from choir_protocol.rehearsal.events import MixChunk, Refused, SessionRefused
from choir_protocol.rehearsal.header import Header
from choir_protocol.rehearsal.peer_kind import NOTHING, UNKNOWN, recognise, wrong_port_message

from . import media
from ..cli import parse_options, plain_reason
from .desk_client import (DeskClient, DeskError, RememberedGains, connect_desk, format_gain,
                          run_desk_command)
from .director_options import CLIENT_VERSION, Options, parse  # noqa: F401 (parse: the API)
from .playback import END, LiveSource, Player, TrackSource, simulated_card
from .port_probe import probe

IDLE_TIMEOUT = 45.0  # seconds without a byte from the server (it drops stalled sessions at 30)
FIRST_BYTES_KEPT = 2048  # of the server's answer before any mix: what it is, if not a director port
REFUSED_HELP = ("The server refused the session: another director is running a session, or no "
                "singer is connected. Check that your singers are connected and try again.")
ABORTED_HELP = ("The server ended the session early: no singer joined in time (5 s after the "
                "start), every singer left, or the choir's mix stopped coming.")


def chunk_seconds(chunks: int) -> float:
    return chunks * FRAMES_PER_CHUNK / SAMPLE_RATE


# -- the connection -------------------------------------------------------------------

class DirectorProtocol(protocol.Protocol):
    """The director's connection: the track out with 1.1.3's flow control, the mix in."""

    def __init__(self, reactor, source, lead=DIRECTOR_LEAD_CHUNKS, on_mix=None,
                 idle_timeout=IDLE_TIMEOUT, held=False):
        self.reactor = reactor
        self.source = source
        # held: only the header goes out until ``release`` (the daemon opens the session on
        # the first track chunk, and serves the desk to a connected director's address)
        self.held = held
        self.lead = lead
        self.on_mix = on_mix
        self.idle_timeout = idle_timeout
        self.conn = DirectorClientConnection()
        self.encoder = StereoEncoder()
        self.mix = []  # the mix chunks received, 16-bit mono PCM bytes
        self.refused = False
        self.refusal = ""  # the server's words, when it gives them (signal -4)
        self.failure = None  # why the session broke off, if it did
        self.hung_up = False  # the server closed the connection before the end of the mix
        self.timed_out = False  # the server fell silent
        self.first_bytes = b""  # the server's first words, to tell what it is if not a director port
        self.interrupted = False
        self.done = defer.Deferred()
        self._idle = None

    # sending
    def connectionMade(self):
        self.transport.setTcpNoDelay(True)
        self.transport.write(self.conn.initiate(Header(client_version=CLIENT_VERSION)))
        self.source.on_data = self.pump
        self._idle = self.reactor.callLater(self.idle_timeout, self._timed_out)
        self.pump()

    def release(self):
        self.held = False
        if self.transport is not None:
            self.pump()

    def pump(self):
        if self.held or self.conn.track_ended or self.conn.refused or not self.transport.connected:
            return
        out = []
        while self.conn.sent - self.conn.received < self.lead:
            chunk = self.source.take(self.conn.sent)
            if chunk is None:
                break
            if chunk is END:
                out.append(self.conn.end_track())
                break
            payload = self.encoder.encode(np.ascontiguousarray(chunk[:, 0]).tobytes(),
                                          np.ascontiguousarray(chunk[:, 1]).tobytes())
            out.append(self.conn.send_track(self.conn.sent, payload))
        if out:
            self.transport.write(b"".join(out))
        self._close_if_done()

    def stop(self):
        """No more track (Ctrl-C): send the end now; the mix of what was sent still comes."""
        self.interrupted = True
        self.source.close()
        if self.transport is not None and self.transport.connected and not (
                self.conn.track_ended or self.conn.refused):
            if self.conn.sent == 0:
                self.transport.loseConnection()  # nothing was sent: nothing to wait for
                return
            self.transport.write(self.conn.end_track())
            self._close_if_done()

    # receiving
    def dataReceived(self, data):
        if self._idle is not None and self._idle.active():
            self._idle.reset(self.idle_timeout)
        if not self.mix and len(self.first_bytes) < FIRST_BYTES_KEPT:
            self.first_bytes += data[:FIRST_BYTES_KEPT - len(self.first_bytes)]
        try:
            events = self.conn.receive_data(data)
        except ProtocolError as e:
            self.failure = f"the server sent something unexpected ({e})"
            self.transport.abortConnection()
            return
        for event in events:
            if isinstance(event, MixChunk):
                self.mix.append(event.pcm)
                if self.on_mix is not None:
                    self.on_mix(event.index, event.pcm)
            elif isinstance(event, (SessionRefused, Refused)):
                self.refused = True
                self.refusal = getattr(event, "reason", "")
                self.transport.loseConnection()
                return
        if not self._close_if_done():
            self.pump()

    def _close_if_done(self) -> bool:
        if self.conn.done:
            self.transport.loseConnection()
            return True
        return False

    def _timed_out(self):
        self.failure = f"the server sent nothing for {self.idle_timeout:g} s"
        self.timed_out = True
        self.transport.abortConnection()

    def connectionLost(self, reason):
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        self.source.on_data = None
        self.source.close()
        if not (self.conn.done or self.refused or self.failure or (self.interrupted and not self.conn.sent)):
            self.failure = "the server closed the connection before the end of the mix"
            self.hung_up = True
        if not self.done.called:
            self.done.callback(self)

    @property
    def mix_signal(self) -> np.ndarray:
        return np.frombuffer(b"".join(self.mix), "<i2")


# -- what the director sees -----------------------------------------------------------

class StatusLine:
    """One line: progress, time, singers in the mix, mix level. Rewritten in place (\\r) on
    a terminal; elsewhere (a log, a pipe) printed as a line every ``interval`` seconds."""

    WIDTH = 24

    def __init__(self, out, total_chunks=None, tty=None, interval=5.0):
        self.out = out
        self.total_chunks = total_chunks
        self.tty = bool(getattr(out, "isatty", lambda: False)()) if tty is None else tty
        self.interval = interval
        self.received = 0
        self.singers = None
        self.level = None
        self._shown = 0  # length of the line on screen (tty)
        self._last_print = None

    def render(self) -> str:
        elapsed = media.format_time(chunk_seconds(self.received))
        if self.total_chunks:
            filled = int(self.WIDTH * min(1.0, self.received / self.total_chunks))
            bar = "[" + "#" * filled + "-" * (self.WIDTH - filled) + "]"
            position = f"{bar} {elapsed} / {media.format_time(chunk_seconds(self.total_chunks))}"
        else:
            position = f"live {elapsed}"
        singers = "?" if self.singers is None else str(self.singers)
        if self.level is None:
            level = "   - dBFS"
        elif self.level == -math.inf:
            level = "-inf dBFS"
        else:
            level = f"{self.level:5.1f} dBFS"
        return f"{position}  singers: {singers}  mix: {level}"

    def update(self, force=False):
        line = self.render()
        if self.tty:
            self.out.write("\r" + line.ljust(self._shown))
            self._shown = len(line)
        else:
            now = time.monotonic()
            if not force and self._last_print is not None and now - self._last_print < self.interval:
                return
            self._last_print = now
            self.out.write(line + "\n")
        self.out.flush()

    def note(self, message: str):
        """A message on a line of its own (the status line is redrawn below it)."""
        self.clear()
        self.out.write(message + "\n")
        self.out.flush()

    def clear(self):
        """Take the status line off the screen (a terminal), e.g. when nothing happened."""
        if self.tty and self._shown:
            self.out.write("\r" + " " * self._shown + "\r")
            self._shown = 0
            self.out.flush()

    def finish(self):
        if self.tty:
            self.update()
            self.out.write("\n")
            self._shown = 0
        else:
            self.update(force=True)
        self.out.flush()


def level_dbfs(pcm: bytes) -> float:
    """RMS level of a mix chunk in dB full scale (a full-scale sine is -3 dBFS)."""
    samples = np.frombuffer(pcm, "<i2").astype(np.float64)
    rms = math.sqrt(float(np.mean(samples * samples))) if len(samples) else 0.0
    return 20 * math.log10(rms / 32768.0) if rms > 0 else -math.inf


class DeskWatcher:
    """The session's view of the mixing desk: counts the singers in the mix (asks every
    couple of seconds) and applies the remembered gains to singers as they appear."""

    def __init__(self, reactor, host, port, remembered, note, interval=2.0, fast_interval=0.25,
                 fast_period=6.0):
        self.reactor = reactor
        self.host, self.port = host, port
        self.remembered = remembered
        self.note = note
        self.interval, self.fast_interval, self.fast_period = interval, fast_interval, fast_period
        self.client: DeskClient | None = None
        self.unreachable = None  # the note, held until the mix comes (not for a wrong port)
        self.singers = None  # how many in the mix, None if unknown
        self.handled = set()  # singer ids whose remembered gain was looked at
        self.applied = []  # (Singer, gain) applied
        self._timer = None
        self._started = None
        self._stopped = False

    async def connect(self) -> bool:
        if self.port is None:
            return False
        try:
            self.client = await connect_desk(self.reactor, self.host, self.port)
        except DeskError as e:
            self.unreachable = f"Note: {e}. Singers will not be counted, and remembered levels not applied."
            return False
        return True

    async def prepare(self):
        """Before the session: remembered gains to every singer already connected."""
        if self.client is None:
            return
        try:
            if self._apply(await self.client.list(everyone=True)):
                await self.client.list(everyone=False)  # answered after the gains are set
        except DeskError as e:
            self._lost(e)
        if self.remembered.problem:
            self.note(f"Note: remembered levels are not applied: {self.remembered.problem}")

    def start(self):
        self._started = self.reactor.seconds()
        if self.client is not None:
            self._timer = self.reactor.callLater(0, self._poll)

    def _poll(self):
        self._timer = None
        if self.client is None or self._stopped:
            return
        d = self.client.list(everyone=False)  # the singers in the mix, on both servers
        d.addCallback(self._listed)
        d.addErrback(lambda f: self._lost(f.value))

    def _apply(self, singers) -> bool:
        changes = []
        for singer in singers:
            if singer.is_monitor or singer.id in self.handled:
                continue
            self.handled.add(singer.id)
            gain = self.remembered.effective(singer.name, singer.group)
            if gain is not None and abs(gain - singer.gain) > 1e-6:
                self.client.set_gain(singer.id, gain)
                changes.append((singer, gain))
        if changes:
            self.applied += changes
            self.note("Remembered levels: " + ", ".join(
                f"{singer.describe()} {format_gain(gain)}" for singer, gain in changes))
        return bool(changes)

    def _listed(self, singers):
        if self.client is None or self._stopped:
            return
        self.singers = sum(1 for s in singers if not s.is_monitor)
        try:
            self._apply(singers)
        except DeskError as e:
            self._lost(e)
            return
        self._schedule()

    def _schedule(self):
        if self._stopped or self.client is None:
            return
        fast = self.reactor.seconds() - self._started < self.fast_period
        self._timer = self.reactor.callLater(self.fast_interval if fast else self.interval, self._poll)

    def _lost(self, exc):
        if self.client is not None and not self._stopped:
            self.note(f"Note: mixing desk unavailable ({exc}).")
            self.client.close()
            self.client = None
            self.singers = None

    async def stop(self):
        self._stopped = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        if self.client is not None:
            client, self.client = self.client, None
            await client.close()


# -- a session ----------------------------------------------------------------------------

class Session:
    """One rehearsal, from connecting to saving the mix."""

    def __init__(self, reactor, options, out, track=None, device_factory=None,
                 remembered=None, status_interval=None, idle_timeout=IDLE_TIMEOUT):
        self.reactor = reactor
        self.options = options
        self.out = out
        self.track = track
        # --simulate: no sound card at all
        self.device_factory = device_factory or (simulated_card if options.get("simulate") else None)
        self.remembered = remembered or RememberedGains()
        self.status = None
        self.status_interval = status_interval
        self.idle_timeout = idle_timeout
        self.director = None
        self.desk = None
        self.player = None
        self.interrupted = False
        self._playback = None  # waiting for the end of playback

    def say(self, message):
        if self.status is not None:
            self.status.note(message)
        else:
            self.out.write(message + "\n")
            self.out.flush()

    def _device(self, **kwargs):
        if self.device_factory is not None:
            return self.device_factory(**kwargs)
        from .devices import SoundDevice
        return SoundDevice(**kwargs)

    def interrupt(self):
        """Ctrl-C: no more track; wait for the mix of what was sent."""
        if self.interrupted:
            return
        self.interrupted = True
        if self._playback is not None:  # the session is over: stop playing
            self._playback.cancel()
            return
        if self.director is None:
            return
        if self.director.conn.sent and not self.director.conn.track_ended:
            ahead = chunk_seconds(self.director.conn.sent - self.director.conn.received)
            self.say(f"Stopping: no more track is sent. Waiting for the choir's last {ahead:.1f} s "
                     "(Ctrl-C again to quit at once).")
        self.director.stop()

    def _on_mix(self, index, pcm):
        self.status.received = index + 1
        self.status.level = level_dbfs(pcm)
        if index == 0:
            self.say("The choir is in: the mix is coming back.")
            if self.desk.unreachable:
                self.say(self.desk.unreachable)
        if self.player is not None:
            samples = np.frombuffer(pcm, "<i2").astype(np.float32) / 32768.0
            monitor = self.source.monitor(index)
            if monitor is not None and self.options["monitor-level"] > 0:
                samples = samples + self.options["monitor-level"] * monitor
            self.player.feed(np.clip(samples, -1.0, 1.0))

    async def run(self) -> int:
        options = self.options
        host, port = options["server"], options["port"]
        self.address = address = format_server(host, port)
        if options["live"]:
            from .devices import DeviceError
            try:
                self.source = LiveSource(self.reactor, self._device(input_device=options["input-device"],
                                                                    need_output=False))
            except DeviceError as e:
                self.say(f"Cannot use the microphone: {e}")
                return 1
        else:
            if self.track is None:
                try:
                    self.track = media.load_track(options["input"], options["skip-seconds"])
                except media.MediaError as e:
                    self.say(str(e))
                    return 1
            self.source = TrackSource(self.track)
            self.say(f"Backing track: {options['input']}, "
                     f"{media.format_time(chunk_seconds(self.source.total_chunks))}"
                     + (f" (from {options['skip-seconds']:g} s)" if options["skip-seconds"] else ""))

        if not options["mute"]:
            from .devices import DeviceError
            try:
                # speakers only: a machine without a microphone plays the choir too
                self.player = Player(self.reactor, self._device(output_device=options["output-device"],
                                                                need_input=False))
            except DeviceError as e:
                self.say(f"Cannot play the choir: {e}\n(Use --mute to run without sound.)")
                return 1

        self.status = StatusLine(self.out, self.source.total_chunks,
                                 interval=self.status_interval or 5.0)
        if self.status.tty and self.status_interval is None:
            self.status.interval = 0.2
        # Connected first (header only), so that the desk is served to this address; the
        # remembered gains are set before the first track chunk opens the session.
        self.director = DirectorProtocol(self.reactor, self.source, on_mix=self._on_mix, held=True,
                                         idle_timeout=self.idle_timeout)
        self.desk = desk = DeskWatcher(self.reactor, host, options["desk-port"], self.remembered, self.say)
        endpoint = endpoints.HostnameEndpoint(self.reactor, host, port, timeout=10)
        try:
            await endpoints.connectProtocol(endpoint, self.director)
        except (error.ConnectError, error.DNSLookupError, error.TimeoutError) as e:
            self.say(f"Cannot reach the choir server at {address} ({plain_reason(e)}).")
            return 1
        if not self.director.done.called and await desk.connect():  # (not if refused at once)
            await desk.prepare()
        if self.interrupted:  # Ctrl-C before the session began
            await desk.stop()
            self.director.transport.loseConnection()
            self.say("Stopped before the session began.")
            return 0
        self.say(f"Connected to {address}." + (" Live: your microphone is sent. Ctrl-C to stop."
                                                   if self.source.live else " Ctrl-C to stop early."))
        self.director.release()
        try:
            self.source.start()
        except Exception as e:  # a device that cannot start (DeviceError, PortAudioError)
            self.director.failure = f"the microphone could not start ({e})"
            self.director.transport.abortConnection()
        if self.player is not None:
            try:
                self.player.start()
            except Exception as e:
                self.say(f"Cannot play the choir ({e}): going on without sound.")
                self.player = None
        desk.start()
        ticker = task.LoopingCall(self._tick, desk)
        ticker.start(self.status.interval if self.status.tty else 1.0, now=False)
        try:
            await self.director.done
        finally:
            ticker.stop()
            await desk.stop()
        return await self._finish()

    def _tick(self, desk):
        self.status.singers = desk.singers
        self.status.update()

    async def _wrong_port(self) -> str | None:
        """What the server is, if no mix came and it is not a choir server's director port."""
        director = self.director
        if director.mix or not (director.refused or director.hung_up or director.timed_out
                                or director.first_bytes):
            return None  # (e.g. our microphone failed)
        peer = recognise(director.first_bytes)
        if peer.kind == NOTHING:  # our desk and web ports hang up on a director's bytes,
            # 1.1.3's desk port says nothing: ask them in their own words
            peer = await probe(self.reactor, self.options["server"], self.options["port"])
            if director.timed_out and peer.kind in (NOTHING, UNKNOWN):
                return None  # a server that only fell silent
        return wrong_port_message(self.address, self.options["port"], peer)

    async def _finish(self) -> int:
        director, status = self.director, self.status
        status.received = director.conn.received
        if director.mix:
            status.finish()
        else:
            status.clear()
        if self.player is not None:
            self.player.end()
        code = 0
        wrong_port = await self._wrong_port()
        if wrong_port:
            self.say(f"Cannot run the session: {wrong_port}.")
            code = 1
        elif director.refusal:  # our daemon says why
            self.say(f"The server {'ended' if director.mix else 'refused'} the session: "
                     f"{director.refusal}.")
            code = 1
        elif director.refused and not director.mix:
            self.say(REFUSED_HELP)
            code = 1
        elif director.refused:
            self.say(ABORTED_HELP)
            code = 1
        elif director.failure:
            self.say(f"The session broke off: {director.failure}.")
            code = 1
        sent, received = director.conn.sent, len(director.mix)
        if not code:
            what = "the whole mix" if not director.interrupted else "the mix of all that was sent"
            self.say(f"Sent {sent} chunks ({chunk_seconds(sent):.1f} s) of "
                     f"{'your microphone' if self.source.live else 'backing track'}; received "
                     f"{what} ({received} chunks).")
        elif received:
            self.say(f"Received {received} of {sent} mix chunks.")
        if self.options["output"] and director.mix:
            try:
                media.save_mix(self.options["output"], director.mix_signal)
                self.say(f"Mix saved to {self.options['output']} ({chunk_seconds(received):.1f} s).")
            except (OSError, RuntimeError) as e:
                self.say(f"Could not save the mix to {self.options['output']}: {e}")
                code = 1
        if self.player is not None:
            if director.mix:  # let the last 2 s of buffered mix play out
                left = self.player.queue.qsize() + self.player.buffer_chunks
                self.interrupted = False  # Ctrl-C now stops the playback
                self._playback = self.player.finished
                timeout = self.reactor.callLater(chunk_seconds(left) + 3.0, self._playback.cancel)
                try:
                    await self._playback
                except defer.CancelledError:
                    pass
                if timeout.active():
                    timeout.cancel()
            self.player.close()
            pauses = self.player.underruns
            self.say(f"Played {chunk_seconds(self.player.played):.1f} s of the choir"
                     + (f" ({pauses} pause{'s' if pauses > 1 else ''} to refill the 2 s buffer: "
                        "the mix came late)." if pauses else "."))
        return code


# -- entry points -----------------------------------------------------------------------

async def run(reactor, options, out=None, track=None, device_factory=None, remembered=None):
    """The program without its process-wide parts (signals, exit): returns the exit status."""
    out = out or sys.stdout
    if options.subCommand == "desk":
        sub = options.subOptions
        try:
            return await run_desk_command(reactor, sub["server"], sub["desk-port"], sub.command, sub.arguments, out, remembered)
        except DeskError as e:
            out.write(f"{e}\n")
            out.flush()
            return 1
    session = Session(reactor, options, out, track=track, device_factory=device_factory,
                      remembered=remembered)
    return await session.run()


def _install_sigint(reactor, session):
    """First Ctrl-C: end the session cleanly. Second: quit at once."""
    pressed = []

    def handler(signum, frame):
        if pressed:
            sys.stdout.write("\nQuit.\n")
            sys.stdout.flush()
            os._exit(130)
        pressed.append(True)
        reactor.callFromThread(session.interrupt)

    signal.signal(signal.SIGINT, handler)


async def _main(reactor, options, track):
    session = None
    out = sys.stdout
    if options.subCommand == "desk":
        code = await run(reactor, options, out)
    else:
        session = Session(reactor, options, out, track=track)
        reactor.callWhenRunning(_install_sigint, reactor, session)
        code = await session.run()
    if code:
        raise SystemExit(code)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    options = parse_options(Options(), argv, "choir-director")
    if options.subCommand is None and options["list-devices"]:
        from .devices import DeviceError, list_devices
        try:
            print(list_devices())
        except DeviceError as e:
            print(e)
            sys.exit(1)
        sys.exit(0)
    track = None
    if options.subCommand is None and not options["live"]:
        try:
            track = media.load_track(options["input"], options["skip-seconds"])
        except media.MediaError as e:
            sys.stderr.write(f"choir-director: {e}\n")
            sys.exit(1)
        except KeyboardInterrupt:
            sys.exit(130)
    task.react(_main, (options, track))


if __name__ == "__main__":
    main()
