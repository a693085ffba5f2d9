"""choir-demo: a whole rehearsal in one command, no sound card needed.

Starts a daemon in-process (or uses --server), then N real singer clients
(choir-singer's SingerClient), each on a simulated sound card that hears what it
plays after a given device latency, calibrated the way a singer calibrates, and
each behind a simulated network link with its own delay and jitter. Each singer
sings a voice of its own (voices.py: the track it hears, ringing at its note), so the
stems are separate and the demo knows what each should be. Once the daemon has every
singer (asked of its mixing desk), choir-director's connection plays a backing track (a
file, or a generated one); the report, from what the daemon recorded, says who was mixed and
whether each is in time, to the sample, and where to listen. Then the recording is
published as the daemon publishes it, to an in-process choir-runner: an MP4 of the mix
with its cover, and HLS.
"""
import io
import os
import sys

import numpy as np
import soundfile
from twisted.internet import defer, endpoints, error, task, threads
from twisted.python import usage

from choir_protocol.addresses import AddressError, format_server, parse_server
from choir_protocol.rehearsal.constants import FRAMES_PER_CHUNK, SAMPLE_RATE, VOCAL_GROUPS
from choir_protocol.rehearsal.header import Header

from . import report as demo_report
from ..cli import parse_options, plain_reason
from ..rehearsal.calibration import measure_latency
from ..rehearsal.director_connection import DirectorClientProtocol
from ..rehearsal.playback import TrackSource
from ..rehearsal.simulated_devices import EchoDevice
from ..rehearsal.singer_client import SingerClient
from ..rehearsal.terminal import LineRenderer
from ..version import program_version
from .daemon import (Daemon, DemoError, director_header, session_record, singers_mixed_per_desk,
                     start_in_process, wait_for_singers)
from .netsim import DelayProxy
from .signals import broadband_track
from .voices import SingingDevice, voice_for

GROUPS = VOCAL_GROUPS[1:]


def _floats(text: str) -> list:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise usage.UsageError(f"not a comma-separated list of numbers: {text!r}") from None


class Options(usage.Options):
    synopsis = "Usage: choir-demo [options]"
    longdesc = ("Run a rehearsal with simulated singers, each singing a voice of its own, and "
                "say who the daemon mixed, whether each singer is in time (to the sample, "
                "whatever their network delay and sound card latency) and where to listen to "
                "the result. Needs no sound card. Exits with 0 when every singer was mixed in "
                "time, 1 otherwise.")
    optParameters = [
        ["singers", "n", 8, "Number of simulated singers.", int],
        ["track", "t", None, "Backing track: any audio file (MP3, OGG, FLAC, WAV...; any rate). "
                             "Default: a generated one."],
        ["seconds", "s", 10.0, "Length of the generated track, or how much of --track to play.",
         float],
        ["delays", None, None, "Network delays of the singers in seconds, comma-separated, "
                               "repeated as needed (default: spread from 0 to --max-delay)."],
        ["max-delay", None, 0.5, "Spread the network delays from 0 to this (seconds).", float],
        ["jitter", None, 0.05, "Network jitter of every singer (seconds).", float],
        ["latencies", None, None, "Sound-card round-trip latencies in milliseconds, "
                                  "comma-separated, repeated as needed (default: 15 to 110 ms)."],
        ["data-dir", "d", "./choir-data", "Where the in-process daemon records sessions. With "
                                          "--server: the daemon's data directory, if it is on "
                                          "this machine (the report reads its recordings)."],
        ["output", "o", None, "Also write the mix the director received to this WAV/FLAC file."],
        ["server", None, None, "Use the daemon on this host instead of starting one "
                               "(HOST or HOST:PORT, PORT its singer port)."],
        ["singer-port", None, 8868, "Singer port of --server.", int],
        ["director-port", None, 8878, "Director port of --server.", int],
        ["desk-port", None, None, "Mixing-desk port of --server (default: the director port "
                                  "- 20), asked which singers the daemon has.", int],
        ["wait", None, 20.0, "How long to wait for the daemon to have every singer (seconds).",
         float],
    ]
    optFlags = [
        ["no-publish", None, "Do not publish the recording (by default an in-process runner "
                             "turns it into an MP4 and HLS, as remote runners do)."],
        ["serve", None, "Once published, serve the HLS stream over HTTP until Ctrl-C, and "
                        "print its URL for a player."],
        ["details", None, "Also print the engineer's figures: each singer's delays, "
                          "latencies, chunks, offset and SNR."],
    ]

    def opt_version(self):
        """Show the version and exit."""
        print(program_version("choir-demo"))
        sys.exit(0)

    def postOptions(self):
        if not 1 <= self["singers"] <= 200:
            raise usage.UsageError("--singers must be between 1 and 200")
        if not 0.5 <= self["seconds"] <= 600:
            raise usage.UsageError("--seconds must be between 0.5 and 600")
        self["delay_list"] = _floats(self["delays"]) if self["delays"] else None
        self["latency_list"] = _floats(self["latencies"]) if self["latencies"] else None
        if any(d < 0 for d in self["delay_list"] or []) or self["jitter"] < 0:
            raise usage.UsageError("delays and jitter cannot be negative")
        if any(not 12 <= ms <= 1000 for ms in self["latency_list"] or []):
            raise usage.UsageError("sound-card latencies must be between 12 and 1000 ms")
        if not 1 <= self["wait"] <= 3600:
            raise usage.UsageError("--wait must be between 1 and 3600 seconds")
        if self["server"] is not None:
            try:
                self["host"], self["singer-port"] = parse_server(self["server"],
                                                                 self["singer-port"])
            except AddressError as e:
                raise usage.UsageError(f"--server: {e}") from None
            if self["serve"]:
                raise usage.UsageError("--serve serves what the demo publishes itself: not "
                                       "with --server (the daemon publishes through its runners)")
        if self["desk-port"] is None:
            self["desk-port"] = self["director-port"] - 20
        for name in ("singer-port", "director-port", "desk-port"):
            if not 0 < self[name] < 65536:
                raise usage.UsageError(f"--{name} must be between 1 and 65535")
        if self["output"] and not os.path.isdir(os.path.dirname(os.path.abspath(self["output"]))):
            raise usage.UsageError(f"--output: there is no folder "
                                   f"{os.path.dirname(os.path.abspath(self['output']))}")
        if self["serve"] and self["no-publish"]:
            raise usage.UsageError("--serve serves the published recording: not with --no-publish")


def singer_plan(options) -> list:
    """Each singer's SingerPlan: name, group, link, sound card, voice."""
    count = options["singers"]
    plan = []
    in_group = {}
    for i in range(count):
        if options["delay_list"]:
            delay = options["delay_list"][i % len(options["delay_list"])]
        else:
            delay = options["max-delay"] * i / max(count - 1, 1)
        if options["latency_list"]:
            latency_ms = options["latency_list"][i % len(options["latency_list"])]
        else:
            latency_ms = 15 + (95 * ((7 * i) % max(count, 1))) / max(count - 1, 1)
        group = GROUPS[i % len(GROUPS)]
        nth = in_group[group] = in_group.get(group, -1) + 1
        plan.append(demo_report.SingerPlan(f"singer{i + 1}", group, delay, options["jitter"],
                                           int(round(latency_ms * SAMPLE_RATE / 1000)),
                                           voice_for(group, nth)))
    return plan


def load_backing_track(options) -> np.ndarray:
    if options["track"]:
        from ..rehearsal.media import load_track
        track = load_track(options["track"])
        return track[:int(options["seconds"] * SAMPLE_RATE) // FRAMES_PER_CHUNK * FRAMES_PER_CHUNK]
    return broadband_track(options["seconds"])


def daemon_for(reactor, options) -> Daemon:
    """The user's daemon (--server), or one started in-process."""
    data_dir = os.path.abspath(options["data-dir"])
    if options["server"]:
        daemon = Daemon(options["host"], options["singer-port"], options["director-port"],
                        options["desk-port"], data_dir)
        print(f"Using the daemon at {format_server(daemon.host, daemon.singer_port)} (director "
              f"port {daemon.director_port}, desk port {daemon.desk_port})")
        return daemon
    os.makedirs(data_dir, exist_ok=True)
    daemon = start_in_process(reactor, data_dir)
    print(f"Daemon started in-process (singers on {daemon.host}:{daemon.singer_port}, director "
          f"on {daemon.host}:{daemon.director_port}), recording to {data_dir}")
    return daemon


class QuietDisplay(LineRenderer):
    """A demo singer's display: nothing shown, the last note kept (why it stopped)."""

    def __init__(self):
        super().__init__(io.StringIO(), tty=False)
        self.last_note = ""

    def note(self, text: str) -> None:
        self.last_note = text

    def status(self, text: str, force: bool = False) -> None:
        pass


def why_missing(client) -> str:
    """What a singer's client knows of why the daemon does not have it."""
    if client.done.called:  # it gave up: its last words say why
        return client.display.last_note.rstrip(".") or "it stopped"
    return client.warning or client.state


async def start_singers(reactor, daemon, plan):
    """Each singer calibrated on its sound card, then connected through its network link:
    (calibrations, SingerClients)."""
    print(f"Calibrating {len(plan)} simulated sound card{'s' * (len(plan) != 1)}...")
    calibrations = await defer.gatherResults([
        threads.deferToThread(measure_latency, EchoDevice(p.latency, seed=i, realtime=False),
                              seconds=1.0)
        for i, p in enumerate(plan)])
    clients = []
    for i, (p, calibration) in enumerate(zip(plan, calibrations)):
        target = endpoints.HostnameEndpoint(reactor, daemon.host, daemon.singer_port)
        link = reactor.listenTCP(0, DelayProxy(reactor, target, p.delay, p.jitter, seed=i),
                                 interface="127.0.0.1")
        client = SingerClient(reactor, SingingDevice(p.latency, p.voice, seed=i),
                              host="127.0.0.1", port=link.getHost().port,
                              header=Header(p.name, p.group, program_version("choir-singer")),
                              latency_samples=calibration.latency_samples,
                              display=QuietDisplay())
        client.start()
        clients.append(client)
    return calibrations, clients


async def play_session(reactor, options, daemon, plan, clients, track):
    """Once the daemon has every singer, the director plays the track: (director, Record
    or None, the desk's Counter of mixed singers or None)."""
    await wait_for_singers(reactor, daemon, [(p.name, p.group) for p in plan],
                           lambda i: why_missing(clients[i]), options["wait"])
    before = daemon.session_dirs()
    who = "the singer" if len(clients) == 1 else f"all {len(clients)} singers"
    print(f"The daemon has {who}; playing a {len(track) / SAMPLE_RATE:.1f} s track...")
    director = DirectorClientProtocol(reactor, TrackSource(track), header=director_header())
    try:
        await endpoints.connectProtocol(daemon.endpoint(reactor, daemon.director_port), director)
    except (error.ConnectError, error.DNSLookupError, error.TimeoutError) as e:
        raise DemoError(f"cannot reach the daemon's director port at {daemon.host}:"
                        f"{daemon.director_port} ({plain_reason(e)})") from None
    director_port = director.transport.getHost().port
    await director.done
    if director.refused:
        raise DemoError("the daemon refused or ended the session: "
                        + (director.refusal or "-2, its log says why"))
    record = await session_record(reactor, daemon, before, director_port)
    mixed = await singers_mixed_per_desk(reactor, daemon) if record is None else None
    return director, record, mixed


async def run(reactor, options):
    try:
        track = load_backing_track(options)
    except Exception as e:  # a file that is not audio, or missing
        print(f"choir-demo: cannot use --track: {e}", file=sys.stderr)
        return 2
    try:
        daemon = daemon_for(reactor, options)
    except OSError as e:  # the in-process daemon's data directory
        print(f"choir-demo: --data-dir {options['data-dir']}: {e.strerror or e}", file=sys.stderr)
        return 2
    plan = singer_plan(options)
    calibrations, clients = await start_singers(reactor, daemon, plan)
    try:
        director, record, desk_mixed = await play_session(reactor, options, daemon, plan,
                                                          clients, track)
    except DemoError as e:
        print(f"choir-demo: {e}", file=sys.stderr)
        await defer.gatherResults([client.stop() for client in clients])
        return 1
    mix = director.mix_signal
    output = options["output"]
    if output:
        try:
            soundfile.write(output, mix, SAMPLE_RATE, "PCM_16")
        except (OSError, TypeError, ValueError, RuntimeError) as e:  # soundfile's errors
            print(f"choir-demo: cannot write --output {output}: {e}", file=sys.stderr)
            output = None
    results = demo_report.outcomes(plan, [c.latency_samples for c in calibrations], record,
                                   desk_mixed, track)
    mix_check = demo_report.check_mix(results, track, mix)
    hint = "" if record is not None else (
        "(Whether each singer is in time needs the daemon's recordings: run choir-demo on its "
        "machine with -d and its data directory.)")
    demo_report.print_report(results, mix_check, record, sys.stdout, recordings_hint=hint)
    demo_report.print_listen(record, output, sys.stdout)
    if options["details"]:
        demo_report.print_details(results, mix_check, sys.stdout)
    await defer.gatherResults([client.stop() for client in clients])
    if options["server"]:
        print("\nThe daemon publishes the recording itself, through its runners "
              "(choir-admin media list shows it).")
    elif record is not None and not options["no-publish"]:
        from .publish import publish
        await publish(reactor, daemon.data_dir, record.directory, serve=options["serve"],
                      details=options["details"])
    return 0 if demo_report.all_right(results, mix_check) else 1


def main(argv=None):
    options = parse_options(Options(), sys.argv[1:] if argv is None else argv, "choir-demo")

    def exit_status(code):
        if code:
            raise SystemExit(code)  # react exits with it

    task.react(lambda reactor: defer.ensureDeferred(run(reactor, options)).addCallback(exit_status))


if __name__ == "__main__":
    main()
