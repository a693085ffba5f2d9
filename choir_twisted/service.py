"""``twistd choir``: options and the service tree."""
import itertools
import os
import re
from urllib.parse import urlsplit

import attrs
from twisted.application import service
from twisted.internet import defer, reactor, threads
from twisted.python import usage

from choir_protocol.networks import parse_networks
from choir_protocol.rehearsal.constants import MIX_WINDOW_CHUNKS
from choir_protocol.runners.jobs import ALL_RESOLUTIONS, DEFAULT_SETTINGS

from .datadir import DataDirInUse, LockedServices, check_data_dir, lock_data_dir
from .endpoint_check import EndpointError, check_server_endpoint, desk_for_director, same_tcp_port
from .limits import (DEFAULT_MAX_PER_ADDRESS, REHEARSAL, ConnectionLimits, LimitedFactory,
                     LimitsService)
from .listeners import HttpUrlService, RehearsalPort
from .publishing.cover_check import CoverError, check_cover
from .rehearsal.protocols import DeskProtocol, DirectorProtocol, RoomFactory, SingerProtocol
from .rehearsal.room import TICK, Room


class _Following(str):
    """A default that another option's value replaces (the desk follows the director):
    a given value is a plain str, so postOptions tells the two apart."""


class _NamedCoerce(usage.CoerceParameter):
    """Twisted says "Parameter type enforcement failed: invalid literal for int()":
    this says which option, and what it takes."""
    KINDS = {int: "a whole number", float: "a number"}

    def dispatch(self, parameterName, value):
        try:
            super().dispatch(parameterName, value)
        except usage.UsageError:
            raise usage.UsageError(f"--{parameterName}: {value!r} is not "
                                   f"{self.KINDS.get(self.coerce, 'valid')}") from None


ROLE_OPTIONS = ("singers", "director", "desk", "http")


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = ("Run the choir rehearsal daemon: singers and a director connect with online-choir "
                "1.1.3 compatible programs; the daemon returns a synchronised mix to the director "
                "and records every session under DATA_DIR/sessions/.")
    optParameters = [
        ["singers", None, "tcp:8868", "Endpoint for singers (strports syntax, e.g. tcp:8868, "
                                      "systemd:domain=INET:index=0)."],
        ["director", None, "tcp:8878", "Endpoint for the director."],
        ["desk", None, _Following("tcp:8858"), "Endpoint for the director's mixing desk "
                                               "(by default the director's port - 20 on its "
                                               "interface, as the 1.1.3 director expects)."],
        ["http", None, "tcp:8000", "Endpoint for the HTTP runner API and its socket.io "
                                   "notifications (PeerTube's remote-runner protocol)."],
        ["data-dir", "d", "./choir-data", "Directory for recordings (sessions/<id>/)."],
        ["monitor-level", "m", 0.0, "Level of the backing track in the mix returned to the "
                                    "director (0 to 1; 0: singers only).", float],
        ["max-singers", None, 1000, "Singers beyond this many are refused at connection.", int],
        ["desk-from", None, "127.0.0.0/8,::1", "Addresses or networks always served the mixing "
                                               "desk; others get it only from the address of a "
                                               "connected director or the last session's."],
        ["max-singers-per-address", None, 50, "Singers beyond this many from one IP address "
                                              "are refused (0: no limit).", int],
        ["max-connections-per-address", None, DEFAULT_MAX_PER_ADDRESS,
         "Open connections one address (an IPv6 /64) may hold on all ports together; more "
         "are closed at once (0: no limit; --trusted-proxy addresses are not counted).", int],
        ["mix-window", None, MIX_WINDOW_CHUNKS, "Chunks (11.6 ms each) the fastest singer may "
                                                "run ahead of a late one before the late one is "
                                                "left out of the mix.", int],
        ["tick", None, TICK, "Seconds between mixing passes (latency against CPU).", float],
        ["choir-name", None, "Choir rehearsal", "Title on the generated cover of each "
                                                "published recording."],
        ["cover", None, None, "An image to use as the cover of every published recording "
                              "instead of the generated waveform."],
        ["resolutions", None, "360,480,720", "Resolutions (the smaller side, comma-separated, "
                                             f"from {','.join(map(str, ALL_RESOLUTIONS))}) "
                                             "to publish recordings and uploads at."],
        ["webhook", None, None, "URL to POST a media's JSON to when all its jobs have ended "
                                "(an upload's own webhook field takes precedence)."],
        ["webhook-secret", None, None, "Sign each webhook's body with this secret: header "
                                       "X-Choir-Signature: sha256=<hex HMAC-SHA256> "
                                       "(or the file named by $CHOIR_WEBHOOK_SECRET_FILE)."],
        ["public-url", None, None, "The URL this daemon's HTTP endpoint is reached at, with "
                                   "its path prefix behind a reverse proxy (https://host/choir), "
                                   "for the links in job payloads and webhooks [default: the "
                                   "scheme and Host of each request]."],
        ["trusted-proxy", None, "", "Comma-separated addresses or networks of reverse proxies "
                                    "whose X-Forwarded-Proto and X-Forwarded-Host are believed "
                                    "(e.g. 127.0.0.1,10.0.0.0/8) [default: none]."],
    ]
    optFlags = [
        ["no-record", None, "Do not record sessions."],
        ["no-runners", None, "Do not serve the runner API."],
    ]

    def __init__(self):
        super().__init__()
        self.desk_follows_director = False  # postOptions tells
        for name, handler in self._dispatch.items():
            if type(handler) is usage.CoerceParameter and handler.coerce in _NamedCoerce.KINDS:
                self._dispatch[name] = _NamedCoerce(self, handler.coerce)

    def postOptions(self):
        if not 0 <= self["monitor-level"] <= 1:
            raise usage.UsageError("--monitor-level must be between 0 and 1")
        if self["max-singers"] < 1:
            raise usage.UsageError("--max-singers must be at least 1")
        if self["max-singers-per-address"] < 0:
            raise usage.UsageError("--max-singers-per-address must be 0 (no limit) or more")
        if self["max-connections-per-address"] < 0:
            raise usage.UsageError("--max-connections-per-address must be 0 (no limit) or more")
        if self["mix-window"] < 1:
            raise usage.UsageError("--mix-window must be at least 1 chunk")
        if not 0.001 <= self["tick"] <= 0.5:
            raise usage.UsageError("--tick must be between 0.001 and 0.5 seconds")
        try:
            resolutions = {int(r) for r in self["resolutions"].split(",") if r.strip()}
        except ValueError:
            resolutions = {0}
        if not resolutions or not resolutions <= set(ALL_RESOLUTIONS):
            raise usage.UsageError("--resolutions: comma-separated, from "
                                   + ", ".join(map(str, ALL_RESOLUTIONS)))
        self["resolutions"] = frozenset(resolutions)
        if self["cover"] is not None:
            try:
                check_cover(self["cover"])
            except CoverError as e:
                raise usage.UsageError(f"--cover {self['cover']}: {e}")
        for url in ("webhook", "public-url"):
            if self[url] is not None and not self[url].startswith(("http://", "https://")):
                raise usage.UsageError(f"--{url} must be an http:// or https:// URL")
        if self["public-url"] is not None:
            parts = urlsplit(self["public-url"])
            if not parts.netloc or parts.query or parts.fragment:
                raise usage.UsageError("--public-url: scheme://host[:port][/prefix], "
                                       "without query or fragment")
        secret_file = os.environ.get("CHOIR_WEBHOOK_SECRET_FILE")
        if self["webhook-secret"] is None and secret_file:  # kept out of `ps`
            try:
                with open(secret_file) as f:
                    self["webhook-secret"] = f.read().strip() or None
            except OSError as e:
                raise usage.UsageError(f"$CHOIR_WEBHOOK_SECRET_FILE: {e.strerror}: {secret_file}")
        try:
            self["desk-from"] = parse_networks(self["desk-from"])
        except ValueError as e:
            raise usage.UsageError(f"--desk-from: {e}")
        try:
            self["trusted-proxy"] = parse_networks(self["trusted-proxy"])
        except ValueError as e:
            raise usage.UsageError(f"--trusted-proxy: {e}")
        self._check_endpoints()
        if not (self["no-record"] and self["no-runners"]):
            try:
                check_data_dir(self["data-dir"])
            except ValueError as e:
                raise usage.UsageError(f"--data-dir {self['data-dir']}: {e}")

    def _check_endpoints(self):
        self.desk_follows_director = type(self["desk"]) is _Following
        if self.desk_follows_director:
            try:
                self["desk"] = desk_for_director(self["director"])
            except EndpointError as e:
                raise usage.UsageError(f"--desk: {e}")
        roles = [r for r in ROLE_OPTIONS if not (r == "http" and self["no-runners"])]
        for role in roles:
            try:
                check_server_endpoint(self[role])
            except EndpointError as e:
                raise usage.UsageError(f"{self.named(role)}: {e}")
        for role, other in itertools.combinations(roles, 2):  # else: "in use", by ourselves
            if same_tcp_port(self[role], self[other]):
                raise usage.UsageError(f"{self.named(other)}: the same port as --{role}")

    def named(self, role: str) -> str:
        """How an endpoint option is named in a message: with its value, and for the desk
        left to its default, where that came from."""
        if role == "desk" and self.desk_follows_director:
            return f"--desk {self['desk']} (the director's port - 20)"
        return f"--{role} {self[role]}"


# Below the unit's TimeoutStopSec (20 s): a stop is never killed halfway. Tracks whose
# conversion this cuts short are converted by the recovery at the next start.
STOP_WAIT_SECONDS = 15


def tcp_port(endpoint: str) -> int | None:
    """The port of a ``tcp:PORT...`` endpoint string, to tell a client where to go."""
    match = re.match(r"tcp6?:(?:port=)?(\d+)(?::|$)", endpoint)
    return int(match.group(1)) if match and match.group(1) != "0" else None


class RoomService(service.Service):
    def __init__(self, room):
        self.room = room
        self.recovered = None  # Deferred list of the session ids recovered at start

    def startService(self):
        super().startService()
        self.room.start()
        if self.room.data_dir is not None:
            from .rehearsal.recovery import recover_all
            self.recovered = threads.deferToThread(recover_all, self.room.data_dir)
            self.recovered.addCallback(self._report_recovered)

    def _report_recovered(self, session_ids):
        """A recovered session's recording is final now: told as a recorded one is."""
        if self.room.on_session_recorded is not None:
            for session_id in session_ids:
                self.room.on_session_recorded(
                    os.path.join(self.room.data_dir, "sessions", session_id))
        return session_ids

    def stopService(self):
        super().stopService()
        # Let recorders close their files and convert their tracks; what a stop
        # timeout cuts short, the recovery finishes at the next start.
        recorders = self.room.stop()
        if recorders:
            return defer.gatherResults([threads.deferToThread(r.wait, STOP_WAIT_SECONDS)
                                        for r in recorders])


def makeService(options, clock=reactor) -> service.MultiService:
    """The service tree; exits in one line if another daemon holds the data directory."""
    data_dir = None if options["no-record"] else os.path.abspath(options["data-dir"])
    if options["no-record"] and options["no-runners"]:
        top = service.MultiService()  # nothing on disk
    else:
        try:
            top = LockedServices(lock_data_dir(os.path.abspath(options["data-dir"])))
        except DataDirInUse as e:
            raise SystemExit(f"twistd choir: {e}")
    if data_dir is not None:
        os.makedirs(os.path.join(data_dir, "sessions"), exist_ok=True)
    room = Room(clock, data_dir=data_dir, max_singers=options["max-singers"],
                max_singers_per_address=options["max-singers-per-address"],
                desk_networks=options["desk-from"],
                monitor_level=options["monitor-level"], tick=options["tick"],
                window=options["mix-window"])
    # first, so that the descriptor limit is raised and shared out before any connection
    limits = ConnectionLimits(clock, per_address=options["max-connections-per-address"],
                              exempt=options["trusted-proxy"])
    LimitsService(limits, max_singers=options["max-singers"]).setServiceParent(top)
    room_service = RoomService(room)
    room_service.setServiceParent(top)
    for option, protocol_class in (("singers", SingerProtocol), ("director", DirectorProtocol),
                                   ("desk", DeskProtocol)):
        other = {"singers": "director", "director": "singers"}.get(option)
        factory = RoomFactory(room, protocol_class, other and tcp_port(options[other]))
        RehearsalPort(option, options[option], LimitedFactory(factory, limits, REHEARSAL)
                      ).setServiceParent(top)
    if not options["no-runners"]:
        from .runners.service import RunnerService
        publishing = dict(
            settings=attrs.evolve(DEFAULT_SETTINGS, resolutions=options["resolutions"]),
            choir_name=options["choir-name"], webhook=options["webhook"],
            webhook_secret=options["webhook-secret"],
            public_url=options["public-url"],
            cover=os.path.abspath(options["cover"]) if options["cover"] else None)
        if data_dir is None:
            publishing["sessions_dir"] = None  # nothing recorded, nothing to publish
        runners = RunnerService(clock, options["http"], os.path.abspath(options["data-dir"]),
                                publishing=publishing,
                                trusted_proxies=options["trusted-proxy"], limits=limits)
        runners.setName("runners")
        runners.setServiceParent(top)
        if data_dir is not None:
            room.on_session_recorded = runners.session_recorded  # publishing starts at its end
        HttpUrlService(runners, options["public-url"]).setServiceParent(top)
        top.runners = runners
    top.room = room
    top.room_service = room_service
    top.limits = limits
    return top
