"""choir-demo: a whole rehearsal in one command, no sound card needed.

Starts a daemon in-process (or uses --server), then N real singer clients
(choir-singer's SingerClient), each on a simulated sound card that hears what it
plays after a given device latency, calibrated the way a singer calibrates, and
each behind a simulated network link with its own delay and jitter. A director
plays a backing track (a file, or a generated one) and the demo reports where
each singer landed in the mix: 0 samples off when all is right. Then the recording
is published as the daemon publishes it, to an in-process choir-runner: an MP4 of the
mix with its cover, and HLS.
"""
import io
import os
import sys

import numpy as np
import soundfile
from twisted.internet import defer, endpoints, task, threads
from twisted.python import usage

from choir_protocol.constants import FRAMES_PER_CHUNK, SAMPLE_RATE, VOCAL_GROUPS
from choir_protocol.header import Header

from .calibration import measure_latency
from .cli import parse_options
from .devices import EchoDevice
from .netsim import DelayProxy
from .signals import best_lag, broadband_track, mono, snr_db
from .simulated import SimulatedDirector
from .singer import SingerClient
from .terminal import LineRenderer

GROUPS = VOCAL_GROUPS[1:]


def _floats(text: str) -> list:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise usage.UsageError(f"not a comma-separated list of numbers: {text!r}") from None


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = ("Run a rehearsal with simulated singers and print where each one landed in the "
                "mix: 0 samples off when all is right, whatever their network delay and sound "
                "card latency. Needs no sound card.")
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
        ["data-dir", "d", "./choir-data", "Where the in-process daemon records sessions."],
        ["output", "o", None, "Also write the mix the director received to this WAV/FLAC file."],
        ["server", None, None, "Use the daemon on this host instead of starting one."],
        ["singer-port", None, 8868, "Singer port of --server.", int],
        ["director-port", None, 8878, "Director port of --server.", int],
    ]
    optFlags = [
        ["no-publish", None, "Do not publish the recording (by default an in-process runner "
                             "turns it into an MP4 and HLS, as remote runners do)."],
    ]

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


def singer_plan(options) -> list:
    """(name, group, delay s, jitter s, device latency in samples) for each singer."""
    count = options["singers"]
    plan = []
    for i in range(count):
        if options["delay_list"]:
            delay = options["delay_list"][i % len(options["delay_list"])]
        else:
            delay = options["max-delay"] * i / max(count - 1, 1)
        if options["latency_list"]:
            latency_ms = options["latency_list"][i % len(options["latency_list"])]
        else:
            latency_ms = 15 + (95 * ((7 * i) % max(count, 1))) / max(count - 1, 1)
        plan.append((f"singer{i + 1}", GROUPS[i % len(GROUPS)], delay, options["jitter"],
                     int(round(latency_ms * SAMPLE_RATE / 1000))))
    return plan


def load_backing_track(options) -> np.ndarray:
    if options["track"]:
        from .media import load_track
        track = load_track(options["track"])
        return track[:int(options["seconds"] * SAMPLE_RATE) // FRAMES_PER_CHUNK * FRAMES_PER_CHUNK]
    return broadband_track(options["seconds"])


async def start_daemon(reactor, options):
    """The in-process daemon: (room, host, singer port, director port)."""
    from choir_twisted.protocols import DirectorProtocol, RoomFactory, SingerProtocol
    from choir_twisted.room import Room
    data_dir = os.path.abspath(options["data-dir"])
    room = Room(reactor, data_dir=data_dir)
    room.start()
    host = "127.0.0.1"
    singer_port = reactor.listenTCP(0, RoomFactory(room, SingerProtocol), interface=host).getHost().port
    director_port = reactor.listenTCP(0, RoomFactory(room, DirectorProtocol), interface=host).getHost().port
    print(f"Daemon started in-process (singers on {host}:{singer_port}, director on "
          f"{host}:{director_port}), recording to {data_dir}")
    return room, host, singer_port, director_port


async def run(reactor, options):
    try:
        track = load_backing_track(options)
    except Exception as e:  # a file that is not audio, or missing
        print(f"choir-demo: cannot use --track: {e}", file=sys.stderr)
        return 2
    room = None
    if options["server"]:
        host, singer_port, director_port = options["server"], options["singer-port"], options["director-port"]
    else:
        room, host, singer_port, director_port = await start_daemon(reactor, options)

    plan = singer_plan(options)
    print(f"Calibrating {len(plan)} simulated sound cards...")
    calibrations = await defer.gatherResults([
        threads.deferToThread(measure_latency, EchoDevice(latency, seed=i, realtime=False), seconds=1.0)
        for i, (_, _, _, _, latency) in enumerate(plan)])
    clients = []
    quiet = LineRenderer(io.StringIO(), tty=False)
    for i, ((name, group, delay, jitter, latency), calibration) in enumerate(zip(plan, calibrations)):
        target = endpoints.TCP4ClientEndpoint(reactor, host, singer_port)
        link = reactor.listenTCP(0, DelayProxy(reactor, target, delay, jitter, seed=i), interface="127.0.0.1")
        client = SingerClient(reactor, EchoDevice(latency, seed=i), host="127.0.0.1",
                              port=link.getHost().port, header=Header(name, group, "choir-demo"),
                              latency_samples=calibration.latency_samples, display=quiet)
        client.start()
        clients.append(client)
    await until(reactor, lambda: all(c.state == "waiting for a session" for c in clients))
    if room is not None:
        await until(reactor, lambda: len(room.singers) >= len(clients))

    print(f"{len(clients)} singers connected; playing a {len(track) / SAMPLE_RATE:.1f} s track...")
    director = SimulatedDirector(track)
    await endpoints.connectProtocol(endpoints.TCP4ClientEndpoint(reactor, host, director_port), director)
    await director.done
    if director.refused:
        print("The daemon refused or aborted the session (-2).", file=sys.stderr)
        return 1
    mix = director.mix_signal
    print(f"\nMix: {len(director.mix)} of {len(track) // FRAMES_PER_CHUNK} chunks, offset "
          f"{best_lag(mono(track), mix)} samples, SNR {snr_db(mono(track), mix):.1f} dB against the "
          f"track (IMA ADPCM, applied twice, allows about 30 dB)")
    if options["output"]:
        soundfile.write(options["output"], mix, SAMPLE_RATE, "PCM_16")
        print(f"The mix as the director heard it: {os.path.abspath(options['output'])}")
    session = room.last_session if room is not None else None
    if session is not None and session.recorder is not None:
        await threads.deferToThread(session.recorder.wait, 120)
    report_singers(plan, calibrations, session, track)
    if session is not None and session.recorder is not None:
        print(f"\nRecordings (mix.flac, one FLAC per singer, session.json): {session.recorder.directory}")
    await defer.gatherResults([client.stop() for client in clients])
    if session is not None and session.recorder is not None and not options["no-publish"]:
        from .demo_publish import publish
        await publish(reactor, os.path.abspath(options["data-dir"]), session.recorder.directory)
    return 0


async def until(reactor, condition, deadline: float = 30.0):
    for _ in range(int(deadline / 0.05)):
        if condition():
            return
        await task.deferLater(reactor, 0.05, lambda: None)
    raise RuntimeError("the simulated singers did not all connect")


def report_singers(plan, calibrations, session, track) -> None:
    voices = list(session.mixer.voices.values()) if session is not None else [None] * len(plan)
    directory = session.recorder.directory if session is not None and session.recorder else None
    print(f"\n{'singer':<10} {'group':<9} {'delay':>6} {'jitter':>6} {'card latency':>13} "
          f"{'calibrated':>11} {'chunks':>6} {'late':>5} {'missing':>7} {'offset in mix':>14}")
    for (name, group, delay, jitter, latency), calibration, voice in zip(plan, calibrations, voices):
        offset = "n/a"  # with --server the recordings are on the server
        if directory and voice is not None and voice.row >= 0:
            path = os.path.join(directory, f"singer-{voice.row + 1:03d}-{name}-{group}.flac")
            if os.path.exists(path):
                recorded, _ = soundfile.read(path, dtype="int16")
                offset = f"{best_lag(mono(track), recorded)} samples"
        chunks = f"{voice.delivered:6d} {voice.late:5d} {voice.missing:7d}" if voice else f"{'':6} {'':5} {'':7}"
        print(f"{name:<10} {group:<9} {delay * 1000:4.0f}ms {jitter * 1000:4.0f}ms "
              f"{latency:6d} smp.  {calibration.latency_samples:6d} smp. {chunks} {offset:>14}")


def main(argv=None):
    options = parse_options(Options(), sys.argv[1:] if argv is None else argv, "choir-demo")
    def exit_status(code):
        if code:
            raise SystemExit(code)  # react exits with it

    task.react(lambda reactor: defer.ensureDeferred(run(reactor, options)).addCallback(exit_status))


if __name__ == "__main__":
    main()
