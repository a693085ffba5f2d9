"""choir-singer's command line: options, their checks, and what a run may remember.

``--simulate`` takes an optional value, which ``usage.Options`` (getopt) cannot express:
``expand_optional_values`` rewrites the command line first, so that ``--simulate`` alone
means ``--simulate=100`` and ``--simulate 150`` (a number next) means ``--simulate=150``.
Anything else after a bare ``--simulate`` is left as the next argument.
"""
import re
import sys

from twisted.python import usage

from choir_protocol.addresses import AddressError, parse_server
from choir_protocol.rehearsal.constants import VOCAL_GROUPS

from ..cli import parse_options
from ..version import program_version

DEFAULT_PORT = 8868
DEFAULT_SERVER = "localhost"
SIMULATE_DEFAULT_MS = 100
SIMULATE_RANGE_MS = (12, 1000)  # an echo needs a block (11.6 ms); calibration measures up to 1 s
_NUMBER = re.compile(r"^\d+(\.\d*)?$")


def group_named(value: str) -> str:
    """The vocal group ``value`` names (any case); ValueError listing them otherwise."""
    for group in VOCAL_GROUPS:
        if value.strip().lower() == group.lower():
            return group
    raise ValueError(f"unknown group {value!r} (choose one of: {', '.join(VOCAL_GROUPS)})")


def _show_version():
    print(program_version("choir-singer"))
    sys.exit(0)


_DEVICE_HELP = ("The sound card {}: a name or number from --list-devices (default: the one "
                "remembered, else the system's default).")
_SIMULATE_HELP = (
    "Use a built-in simulated sound card instead of a real one: what it plays comes back to its "
    f"microphone LATENCY_MS milliseconds later (default {SIMULATE_DEFAULT_MS}; "
    f"{SIMULATE_RANGE_MS[0]} to {SIMULATE_RANGE_MS[1]}), with a quiet noise. Write --simulate, "
    "--simulate 150 or --simulate=150. It is calibrated like a real card (choir-singer calibrate "
    "--simulate 150), its calibration kept apart from your real card's, and it is never "
    "remembered.")


def _check_simulate(options) -> None:
    """--simulate's value as a number of milliseconds, in range; no real device with it."""
    value = options["simulate"]
    if value is None:
        return
    low, high = SIMULATE_RANGE_MS
    try:
        ms = float(value)
    except ValueError:
        ms = None
    if ms is None or not low <= ms <= high:
        raise usage.UsageError(f"--simulate takes the simulated card's latency in milliseconds, "
                               f"from {low} to {high}, not {value!r}")
    options["simulate"] = ms
    for device in ("input-device", "output-device"):
        if options[device] is not None:
            raise usage.UsageError(f"--simulate replaces the sound card: give no --{device} "
                                   f"with it")


class CalibrateOptions(usage.Options):
    synopsis = "Usage: choir-singer calibrate [--simulate [LATENCY_MS]] [options]"
    longdesc = (
        "Measure how long sound takes from your speakers to your microphone, so that your "
        "singing lines up with the choir. Turn the volume up and put your headphones right "
        "against the microphone (or use loudspeakers), keep quiet, and let it play a rising tone "
        "for a few seconds. Do it again whenever you change sound card, headphones or "
        "microphone: the result is remembered for these devices, and singing needs it. "
        "With --simulate it measures the built-in simulated card, e.g. choir-singer calibrate "
        "--simulate 150 (about 150 ms), then choir-singer --simulate 150 sings with it.")
    optParameters = [
        ["input-device", "i", None, _DEVICE_HELP.format("of your microphone")],
        ["output-device", "o", None, _DEVICE_HELP.format("of your headphones")],
        ["simulate", None, None, _SIMULATE_HELP],
        ["seconds", None, 3.0, "How long to measure.", float],
    ]

    def getSynopsis(self):
        return self.synopsis

    def opt_version(self):
        """Show the version and exit."""
        _show_version()

    def postOptions(self):
        if not 0.5 <= self["seconds"] <= 30:
            raise usage.UsageError("--seconds must be between 0.5 and 30")
        _check_simulate(self)


class Options(usage.Options):
    synopsis = ("Usage: choir-singer [options]\n"
                "       choir-singer --simulate [LATENCY_MS] [options]\n"
                "       choir-singer --input-file FILE [options]\n"
                "       choir-singer calibrate [--simulate [LATENCY_MS]] [options]")
    longdesc = (
        "Sing in an online choir rehearsal. You hear the director's track in your headphones "
        "and sing along; your voice is sent to the rehearsal server, which lines it up with "
        "the other singers to the sample. Calibrate first (choir-singer calibrate), then run "
        "choir-singer --server HOST and leave it running: it waits for the director, sings "
        "every session, and reconnects by itself if the connection drops. Ctrl-C to leave. "
        "Without a sound card: --simulate [LATENCY_MS] sings what a simulated card hears (the "
        "track, echoed), after choir-singer calibrate --simulate [LATENCY_MS]; --input-file FILE "
        "sings a recording, needing no calibration. Name, group, server, port, gain and sound "
        "cards are remembered once the server has accepted the singer (not --simulate or "
        "--input-file).")
    optFlags = [
        ["list-devices", "l", "List the sound cards and exit."],
    ]
    optParameters = [
        ["server", "s", None, f"Rehearsal server: HOST or HOST:PORT (default: the one "
                              f"remembered, else {DEFAULT_SERVER})."],
        ["port", "p", None, f"Singer port of the server, if --server gives none (default: "
                            f"remembered, else {DEFAULT_PORT})."],
        ["name", "n", None, "Your name, as the director sees it (default: remembered, else your "
                            "login name)."],
        ["group", "g", None, "Your voice: " + ", ".join(VOCAL_GROUPS) + " (default: "
                             "remembered, else No group)."],
        ["input-device", "i", None, _DEVICE_HELP.format("of your microphone")],
        ["output-device", "o", None, _DEVICE_HELP.format("of your headphones")],
        ["gain", None, None, "Microphone gain in dB, applied before sending (default: "
                             "remembered, else 0).", float],
        ["simulate", None, None, _SIMULATE_HELP],
        ["input-file", None, None, "Sing this recording (any audio file: WAV, FLAC, MP3, M4A, "
                                   "...) instead of the microphone: its first sample goes with "
                                   "the first sample of each session's track. No sound card "
                                   "and no calibration are used; the track is not played."],
    ]
    subCommands = [
        ["calibrate", None, CalibrateOptions, "Measure your sound card's latency (do it first)."],
    ]

    def opt_version(self):
        """Show the version and exit."""
        _show_version()

    def postOptions(self):
        if self["port"] is not None:
            if not self["port"].strip().isdigit() or not 0 < int(self["port"]) < 65536:
                raise usage.UsageError(f"--port must be a number from 1 to 65535, not "
                                       f"{self['port']!r}")
            self["port"] = int(self["port"])
        if self["server"] is not None:
            try:
                host, port = parse_server(self["server"], None)
            except AddressError as e:
                raise usage.UsageError(f"--server: {e}") from None
            if port is not None and self["port"] is not None and port != self["port"]:
                raise usage.UsageError(f"--server {self['server']} says port {port} but --port "
                                       f"says {self['port']}: give the port once")
            self["server"] = host
            if port is not None:
                self["port"] = port
        if self["group"] is not None:
            try:
                self["group"] = group_named(self["group"])
            except ValueError as e:
                raise usage.UsageError(str(e)) from None
        if self["gain"] is not None and not -40 <= self["gain"] <= 40:
            raise usage.UsageError("--gain must be between -40 and 40 dB")
        if self["simulate"] is not None and self["input-file"] is not None:
            raise usage.UsageError("give --simulate or --input-file, not both")
        _check_simulate(self)
        if self["input-file"] is not None:
            for device in ("input-device", "output-device"):
                if self[device] is not None:
                    raise usage.UsageError(f"--input-file replaces the sound card: give no "
                                           f"--{device} with it")


# What a run remembers: these options, under these names in the config.
REMEMBERED = (("server", "server"), ("port", "port"), ("name", "name"), ("group", "group"),
              ("input-device", "input_device"), ("output-device", "output_device"),
              ("gain", "gain_db"))


def given_settings(options) -> dict:
    """The settings given on the command line, by their names in the config."""
    return {field: options[option] for option, field in REMEMBERED
            if option in options and options[option] is not None}


def _value_options(*option_classes) -> set:
    """The option words that take the next argument as their value (--name, -n)."""
    words = set()
    for option_class in option_classes:
        options = option_class()
        words.update("--" + o[:-1] for o in options.longOpt if o.endswith("="))
        short = options.shortOpt
        words.update("-" + c for i, c in enumerate(short) if short[i + 1:i + 2] == ":")
    return words


def expand_optional_values(argv, option: str = "--simulate",
                           default=SIMULATE_DEFAULT_MS) -> list:
    """``argv`` with a bare ``option`` given its value: the next argument if it is a
    number, else ``default``."""
    takes_value = _value_options(Options, CalibrateOptions)
    args, out, i = list(argv), [], 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            out += args[i:]
            break
        if arg == option:
            if i + 1 < len(args) and _NUMBER.match(args[i + 1]):
                out.append(f"{option}={args[i + 1]}")
                i += 2
            else:
                out.append(f"{option}={default}")
                i += 1
            continue
        out.append(arg)
        if arg in takes_value and i + 1 < len(args):  # (its value is never an option)
            out.append(args[i + 1])
            i += 1
        i += 1
    return out


def parse(argv) -> Options:
    return parse_options(Options(), expand_optional_values(argv), "choir-singer")
