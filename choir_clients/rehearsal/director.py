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

The command line is in ``director_options``; the connection in ``director_connection``; the
status line in ``director_status``; the desk during a session in ``director_desk``; the
track, the microphone and the player in ``playback``.
"""
import os
import signal
import sys

import numpy as np
from twisted.internet import defer, endpoints, error, task

from choir_protocol.addresses import format_server
from choir_protocol.rehearsal.peer_kind import NOTHING, UNKNOWN, recognise, wrong_port_message

from . import media
from ..cli import parse_options, plain_reason
from .desk_client import DeskError, RememberedGains, run_desk_command
from .director_connection import SERVER_SILENCE_TIMEOUT, DirectorClientProtocol, chunk_seconds
from .director_desk import DeskWatcher
from .director_options import Options, parse  # noqa: F401 (parse: the API)
from .director_status import DirectorStatus, level_dbfs
from .playback import LiveSource, Player, TrackSource, simulated_card
from .port_probe import probe

REFUSED_HELP = ("The server refused the session: another director is running a session, or no "
                "singer is connected. Check that your singers are connected and try again.")
ABORTED_HELP = ("The server ended the session early: no singer joined in time (5 s after the "
                "start), every singer left, or the choir's mix stopped coming.")


# -- a session ----------------------------------------------------------------------------

class DirectorRun:
    """One rehearsal, from connecting to saving the mix."""

    def __init__(self, reactor, options, out, track=None, device_factory=None,
                 remembered=None, status_interval=None, idle_timeout=SERVER_SILENCE_TIMEOUT):
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

        self.status = DirectorStatus(self.out, self.source.total_chunks,
                                 interval=self.status_interval or 5.0)
        if self.status.tty and self.status_interval is None:
            self.status.interval = 0.2
        # Connected first (header only), so that the desk is served to this address; the
        # remembered gains are set before the first track chunk opens the session.
        self.director = DirectorClientProtocol(self.reactor, self.source, on_mix=self._on_mix, held=True,
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
    session = DirectorRun(reactor, options, out, track=track, device_factory=device_factory,
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
        session = DirectorRun(reactor, options, out, track=track)
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
