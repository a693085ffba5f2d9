"""choir-demo: a whole rehearsal in one command, no sound card needed.

Starts a daemon in-process (or uses --server), connects simulated singers with
chosen network delays, jitter and device latencies, plays a generated backing
track as the director, and reports where each singer landed in the mix.
"""
import os
import sys

import numpy as np
import soundfile
from twisted.internet import defer, endpoints, task, threads
from twisted.python import usage

from choir_protocol.constants import FRAMES_PER_CHUNK, SAMPLE_RATE

from .signals import best_lag, broadband_track, mono, snr_db
from .simulated import SimulatedDirector, SimulatedSinger

GROUPS = ("Soprano", "Alto", "Tenor", "Bass")


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = ("Run a rehearsal with simulated singers and print where each one landed in the "
                "mix: 0 samples off when all is right, whatever their network delay.")
    optParameters = [
        ["singers", "n", 8, "Number of simulated singers.", int],
        ["seconds", "s", 10.0, "Length of the generated backing track.", float],
        ["max-delay", None, 0.5, "Network delays are spread from 0 to this (seconds).", float],
        ["jitter", None, 0.05, "Network jitter of each singer (seconds).", float],
        ["data-dir", "d", "./choir-data", "Where the in-process daemon records sessions."],
        ["server", None, None, "Use the daemon on this host instead of starting one."],
        ["singer-port", None, 8868, "Singer port of --server.", int],
        ["director-port", None, 8878, "Director port of --server.", int],
    ]

    def postOptions(self):
        if not 1 <= self["singers"] <= 500:
            raise usage.UsageError("--singers must be between 1 and 500")
        if not 0.5 <= self["seconds"] <= 600:
            raise usage.UsageError("--seconds must be between 0.5 and 600")


def singer_plan(count: int, max_delay: float, jitter: float):
    """(name, group, delay, jitter, device latency in chunks) for each singer."""
    for i in range(count):
        delay = max_delay * i / max(count - 1, 1)
        yield f"singer{i + 1}", GROUPS[i % len(GROUPS)], delay, jitter, 2 + (3 * i) % 11


async def run(reactor, options):
    room = None
    if options["server"]:
        host, singer_port, director_port = options["server"], options["singer-port"], options["director-port"]
    else:
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

    plan = list(singer_plan(options["singers"], options["max-delay"], options["jitter"]))
    singers = []
    for seed, (name, group, delay, jitter, latency) in enumerate(plan):
        singer = SimulatedSinger(reactor, name, group, delay=delay, jitter=jitter,
                                 device_latency=latency, seed=seed)
        await endpoints.connectProtocol(endpoints.TCP4ClientEndpoint(reactor, host, singer_port), singer)
        singers.append(singer)
    await defer.gatherResults([s.ready for s in singers])
    if room is not None:
        while len(room.singers) < len(singers):
            await task.deferLater(reactor, 0.01, lambda: None)

    track = broadband_track(options["seconds"])
    print(f"{len(singers)} singers connected; playing a {options['seconds']:g} s track...")
    director = SimulatedDirector(track)
    await endpoints.connectProtocol(endpoints.TCP4ClientEndpoint(reactor, host, director_port), director)
    await director.done
    if director.refused:
        print("The daemon refused or aborted the session (-2).", file=sys.stderr)
        return 1

    mix = director.mix_signal
    print(f"\nMix: {len(director.mix)} of {len(track) // FRAMES_PER_CHUNK} chunks, offset "
          f"{best_lag(mono(track), mix)} samples, SNR {snr_db(mono(track), mix):.1f} dB "
          f"(IMA ADPCM, applied twice, allows about 30 dB)")
    session = room.last_session if room is not None else None
    if session is not None:
        if session.recorder is not None:
            await threads.deferToThread(session.recorder.wait, 30)
        report_singers(plan, session, track)
        print(f"\nRecordings: {session.recorder.directory if session.recorder else 'off'}")
    for singer in singers:
        singer.transport.loseConnection()
    return 0


def report_singers(plan, session, track):
    voices = list(session.mixer.voices.values())
    directory = session.recorder.directory if session.recorder else None
    print(f"\n{'singer':<10} {'group':<8} {'delay':>7} {'jitter':>7} {'latency':>8} "
          f"{'chunks':>7} {'late':>5} {'missing':>8} {'offset in mix':>14}")
    for (name, group, delay, jitter, latency), voice in zip(plan, voices):
        offset = "n/a"
        if directory and voice.row >= 0:
            path = os.path.join(directory, f"singer-{voice.row + 1:03d}-{name}-{group}.flac")
            if os.path.exists(path):
                recorded, _ = soundfile.read(path, dtype="int16")
                offset = f"{best_lag(mono(track), recorded)} samples"
        print(f"{name:<10} {group:<8} {delay * 1000:5.0f}ms {jitter * 1000:5.0f}ms "
              f"{latency:4d} ch. {voice.delivered:7d} {voice.late:5d} {voice.missing:8d} {offset:>14}")


def main(argv=None):
    options = Options()
    try:
        options.parseOptions(argv if argv is not None else sys.argv[1:])
    except usage.UsageError as e:
        print(f"{options}\nchoir-demo: {e}", file=sys.stderr)
        sys.exit(2)
    task.react(lambda reactor: defer.ensureDeferred(run(reactor, options)))


if __name__ == "__main__":
    main()
