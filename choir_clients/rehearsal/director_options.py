"""choir-director's command line: the session's options and the `desk` subcommand's.

``--server`` takes ``HOST`` or ``HOST:PORT`` (``choir_protocol.addresses``): a port given
there is the director port, as ``--port`` is; both at once must agree. The desk port
follows the director port (20 below it, as online-choir's) unless ``--desk-port`` says.
"""
import math
import os
import sys

from twisted.python import usage

from choir_protocol.addresses import AddressError, parse_server
from choir_protocol.rehearsal.peer_kind import DEFAULT_DIRECTOR_PORT, DESK_BELOW_DIRECTOR

from . import media
from ..version import program_version

CLIENT_VERSION = program_version("choir-director")  # also sent in the header


def _port(value, name):
    try:
        port = int(value)
    except ValueError:
        raise usage.UsageError(f"{name} must be a port number, not {value!r}") from None
    if not 1 <= port <= 65535:
        raise usage.UsageError(f"{name} must be between 1 and 65535")
    return port


class _ServerOptions:
    """Where the choir server is; shared by the session and the desk commands."""

    port_given = False  # --port was on the command line (not a default)

    def opt_port(self, value):
        """The server's director port [default: the port in --server, or 8878]"""
        self["port"] = _port(value, "--port")
        self.port_given = True

    opt_p = opt_port

    def opt_desk_port(self, value):
        """The server's mixing-desk (control) port [default: the director port minus 20]"""
        self["desk-port"] = _port(value, "--desk-port")

    def _resolve_server(self):
        """``--server HOST[:PORT]`` -> ``self["server"]`` the host, ``self["port"]`` the port
        in it or --port's (None if neither)."""
        value = self["server"]
        try:
            host, port = parse_server(value)
        except AddressError as e:
            raise usage.UsageError(f"--server: {e}") from None
        if port is not None and self.port_given and port != self["port"]:
            raise usage.UsageError(f"--server {value} says port {port} but --port says "
                                   f"{self['port']}: give the port once")
        self["server"] = host
        if port is not None:
            self["port"] = port


class _PreformattedHelp:
    """usage.Options re-wraps ``longdesc``; ``help_text`` is shown as written."""

    longdesc = ""
    help_text = ""

    def getUsage(self, width=None):
        return super().getUsage(width) + "\n" + self.help_text.strip("\n") + "\n"

    def opt_version(self):
        """Show the version and exit."""
        print(CLIENT_VERSION)
        sys.exit(0)


class DeskOptions(_ServerOptions, _PreformattedHelp, usage.Options):
    help_text = """The mixing desk: who is singing, and how loud each voice is in the mix.
Works from another terminal while a session runs.

  list                 every singer, with their vocal group, gain and address (the default)
  gain SINGER DB       set a singer's level: 0 is as they sing, -6 half as loud,
                       +6 twice as loud, -inf silent (for example: gain Anna -6)
  mute SINGER          silence a singer (their level is kept for unmute)
  unmute SINGER        bring a muted singer back at their previous level
  group GROUP DB       set the level of every singer of a vocal group (for example:
                       group Alto +3)

SINGER is a name (any case, or its first letters if no one else's start the same way)
or, when two singers share a name, the address shown by `list`.

Levels are remembered per singer name and vocal group (in ~/.config/choir/, or
$CHOIR_CONFIG_DIR) and applied again at the start of each session you run with
choir-director. An online-choir 1.1.3 server lists only the singers who have joined a
session, so use this during (or after) a session there."""

    def getSynopsis(self):
        return ("Usage: choir-director [--server HOST[:PORT]] desk [options] "
                "[list | gain SINGER DB | mute SINGER | unmute SINGER | group GROUP DB]")

    optParameters = [
        ["server", "s", None, "The choir server: HOST or HOST:PORT, PORT its director port "
                              "[default: the one before `desk`, 127.0.0.1]"],
    ]

    def __init__(self):
        super().__init__()
        self["port"] = self["desk-port"] = None
        self.command, self.arguments = "list", []

    COMMANDS = {"list": 0, "gain": 2, "mute": 1, "unmute": 1, "group": 2}

    def parseArgs(self, command="list", *arguments):
        if command not in self.COMMANDS:
            raise usage.UsageError(f"unknown desk command {command!r}: use one of "
                                   + ", ".join(self.COMMANDS))
        if len(arguments) != self.COMMANDS[command]:
            usage_line = {"list": "list", "gain": "gain SINGER DB", "mute": "mute SINGER",
                          "unmute": "unmute SINGER", "group": "group GROUP DB"}[command]
            raise usage.UsageError(f"usage: choir-director desk {usage_line}")
        self.command, self.arguments = command, list(arguments)

    def postOptions(self):
        if self["server"] is not None:
            self._resolve_server()


class Options(_ServerOptions, _PreformattedHelp, usage.Options):
    synopsis = ("Usage: choir-director [options] (--input FILE | --live)\n"
                "       choir-director [--server HOST[:PORT]] desk [list | gain SINGER DB | "
                "mute SINGER | unmute SINGER | group GROUP DB]\n"
                "       choir-director --list-devices")
    help_text = """
Lead a rehearsal: your backing track (or your microphone) goes to every singer
connected to the choir server, and you hear the whole choir come back, in time,
while they sing along. The status line shows the progress, how many singers are
in the mix and how loud the mix is (dBFS: 0 is the loudest possible).

Press Ctrl-C to stop early: the choir's last few seconds still come back and are
saved; press Ctrl-C twice to quit at once. The server refuses the session if
another director is running one or no singer is connected.

Playing the choir needs speakers only, no microphone; --live needs a microphone
only. --simulate uses no sound card at all, to check a setup or to run on a
server: the choir is "played" at real time into a simulated speaker (nothing is
heard; --output saves the mix as usual), and --live sends a simulated
microphone's quiet hiss.

Levels you set with `choir-director desk` are remembered per singer and applied
at the start of each session. Examples:

  choir-director --server choir.example.org --input song.mp3 --output take1.flac
  choir-director --server choir.example.org:9878 --input song.mp3 --skip-seconds 45
  choir-director --server choir.example.org --live --output warmup.wav
  choir-director --server 127.0.0.1 --simulate --input song.mp3 --output check.wav
  choir-director --server choir.example.org desk list
  choir-director --server choir.example.org desk gain Anna -6
"""
    optFlags = [
        ["live", "l", "Sing or play live: send your microphone (the default input device, or "
                      "--input-device) instead of a file. Implies --mute (no feedback loop). "
                      "Stop with Ctrl-C."],
        ["mute", "x", "Do not play the choir through the speakers (it is still saved with --output)."],
        ["simulate", None, "No sound card: play the choir into a simulated speaker at real time "
                           "(nothing is heard), and with --live send a simulated microphone "
                           "(a quiet hiss)."],
        ["list-devices", None, "Show the sound devices and exit."],
    ]
    optParameters = [
        ["server", "s", "127.0.0.1", "The choir server: HOST or HOST:PORT (a host name or an IP "
                                     "address; [IPv6]:PORT), PORT its director port."],
        ["input", "i", None, "The backing track: an audio file (MP3, M4A, OGG, FLAC, WAV, ...; "
                             "any sample rate, mono or stereo)."],
        ["skip-seconds", "k", 0.0, "Start the backing track this many seconds in.", float],
        ["monitor-level", "m", 0.1, "How loud you hear the backing track along with the choir, "
                                    "from 0 (only the choir) to 1 (as loud as it is). Only in "
                                    "your speakers: not sent, not saved.", float],
        ["output", "o", None, "Save the choir's mix to this file (.wav or .flac: 16-bit, 44.1 kHz, mono)."],
        ["output-device", None, None, "The sound device to play the choir on (a number or part of a "
                                      "name, see --list-devices) [default: the system's default]."],
        ["input-device", None, None, "The microphone for --live (a number or part of a name) "
                                     "[default: the system's default]."],
    ]
    subCommands = [["desk", None, DeskOptions, "The mixing desk: list the singers, set their levels "
                                               "(see `choir-director desk --help`)."]]

    def __init__(self):
        super().__init__()
        self["port"] = DEFAULT_DIRECTOR_PORT
        self["desk-port"] = None

    def postOptions(self):
        self._resolve_server()
        if self["desk-port"] is None:
            self["desk-port"] = _desk_port(self["port"])
        if self.subCommand == "desk":
            sub = self.subOptions
            sub["server"] = sub["server"] or self["server"]
            sub["port"] = sub["port"] or self["port"]
            if sub["desk-port"] is None:
                sub["desk-port"] = self["desk-port"] if sub["port"] == self["port"] else _desk_port(sub["port"])
            if not sub["desk-port"]:
                raise usage.UsageError("give the desk port with --desk-port")
            return
        if self["list-devices"]:
            return
        if self["live"] and self["input"]:
            raise usage.UsageError("use either --input FILE or --live, not both")
        if not self["live"] and not self["input"]:
            raise usage.UsageError("say what to play: --input FILE (a backing track) or --live "
                                   "(your microphone)")
        if self["simulate"] and (self["input-device"] or self["output-device"]):
            raise usage.UsageError("--simulate uses no sound card: leave out --input-device "
                                   "and --output-device")
        if self["live"]:
            self["mute"] = True  # 1.1.3 too: the choir in the speakers would go back to the mic
        if not 0.0 <= self["monitor-level"] <= 1.0:
            raise usage.UsageError("--monitor-level must be between 0 and 1")
        if self["skip-seconds"] < 0 or math.isnan(self["skip-seconds"]):
            raise usage.UsageError("--skip-seconds cannot be negative")
        if self["output"]:
            try:
                media.output_format(self["output"])
            except media.MediaError as e:
                raise usage.UsageError(str(e)) from None
            folder = os.path.dirname(os.path.abspath(self["output"]))
            if not os.path.isdir(folder):
                raise usage.UsageError(f"--output: the folder {folder} does not exist")


def _desk_port(director_port: int) -> int | None:
    return director_port - DESK_BELOW_DIRECTOR if director_port > DESK_BELOW_DIRECTOR else None


def parse(argv) -> Options:
    options = Options()
    options.parseOptions(argv)
    return options
