"""The mixing desk from the terminal: list the singers, set their gains.

``DeskClient`` speaks the control protocol (a 512-byte header, then 2-byte length +
gzip JSON messages both ways) of our daemon and of the online-choir 1.1.3 server:

- ``{"action": "list", "all": true}``: our daemon lists every connected singer; 1.1.3
  ignores ``all`` and lists the singers checked in to the current (or last) session.
  ``{"action": "list"}`` lists the singers in the session on both.
- ``{"action": "adjust_gain", "id": [host, port], "gain": g}``: no reply.

Gains are shown and typed in dB (0 dB = 1.0, the singer as they sing; mute = gain 0).
``RememberedGains`` keeps the director's choices per singer name and vocal group in the
per-user config (program "director"), as 1.1.3's desk did, so they can be applied again
when the singers come back.
"""
import collections
import math

import attrs
from twisted.internet import defer, endpoints, error, protocol

from choir_protocol.addresses import format_server
from choir_protocol.errors import ProtocolError
from choir_protocol.rehearsal import desk
from choir_protocol.rehearsal.header import Header

from ..cli import plain_reason

MAX_GAIN = 100.0  # the daemon refuses more (+40 dB)
MAX_DB = 20 * math.log10(MAX_GAIN)
CONFIG_PROGRAM = "director"


class DeskError(Exception):
    """The desk cannot do what was asked; the message says why."""


# -- dB ----------------------------------------------------------------------------------

def db_to_gain(db: float) -> float:
    return 0.0 if db == -math.inf else 10 ** (db / 20)


def gain_to_db(gain: float) -> float:
    return -math.inf if gain <= 0 else 20 * math.log10(gain)


def parse_db(text: str) -> float:
    """'-12', '-12dB', '+3 dB', '0', '-inf', 'off' -> dB (a float, -inf for silence)."""
    cleaned = str(text).strip().lower().replace(" ", "")
    if cleaned.endswith("db"):
        cleaned = cleaned[:-2]
    if cleaned in ("-inf", "-infinity", "off", "mute", "muted", "silent"):
        return -math.inf
    try:
        db = float(cleaned)
    except ValueError:
        raise DeskError(f"{text!r} is not a level in dB (examples: 0, -6, +3, -inf)") from None
    if math.isnan(db) or db == math.inf:
        raise DeskError(f"{text!r} is not a level in dB")
    if db > MAX_DB + 1e-9:
        raise DeskError(f"{text} dB is too loud: at most +{MAX_DB:.0f} dB")
    return db


def format_gain(gain: float) -> str:
    if gain <= 0:
        return "muted"
    return f"{gain_to_db(gain):+.1f} dB"


# -- singers ----------------------------------------------------------------------------

@attrs.frozen
class Singer:
    """One entry of the desk's list."""

    id: tuple
    name: str
    group: str
    gain: float

    @classmethod
    def from_message(cls, entry) -> "Singer":
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), list):
            raise ProtocolError(f"unexpected entry in the singers' list: {entry!r}")
        gain = entry.get("gain", 1.0)
        return cls(tuple(entry["id"]), str(entry.get("name", "")), str(entry.get("group", "")),
                   float(gain) if isinstance(gain, (int, float)) else 1.0)

    @property
    def address(self) -> str:
        return ":".join(str(part) for part in self.id)

    @property
    def is_monitor(self) -> bool:
        """1.1.3 servers started with --monitor-level list the backing track as a source."""
        return self.id == ("monitor",)

    def describe(self) -> str:
        return f"{self.name or '(no name)'} ({self.group})"


class DeskClient(protocol.Protocol):
    """The control connection. Replies come in the order of the requests."""

    def __init__(self, reactor, name="choir-director", timeout=5.0):
        self.reactor = reactor
        self.header = Header(name, client_version="choir-director")
        self.timeout = timeout
        self._reader = desk.MessageReader()
        self._pending = collections.deque()
        self.connected = False
        self.refusal = ""  # the server's reason, when it refuses this desk
        self.closed = defer.Deferred()

    def connectionMade(self):
        self.connected = True
        self.transport.setTcpNoDelay(True)
        self.transport.write(self.header.to_bytes())

    def dataReceived(self, data):
        try:
            messages = self._reader.feed(data)
            for message in messages:
                if isinstance(message, dict) and isinstance(message.get("error"), str):
                    self.refusal = f"the server refused the mixing desk: {message['error']}"
                    self._fail(DeskError(self.refusal))
                    return
                if not self._pending:
                    raise ProtocolError("the server sent a desk message nobody asked for")
                waiting = self._pending.popleft()
                if not isinstance(message, list):
                    raise ProtocolError(f"expected the list of singers, got {message!r}")
                waiting.callback([Singer.from_message(entry) for entry in message])
        except ProtocolError as e:
            self._fail(DeskError(f"the server's mixing desk sent something unexpected: {e}"))
            self.transport.abortConnection()

    def list(self, everyone: bool = True) -> defer.Deferred:
        """Deferred list of Singer. ``everyone``: every connected singer where the server can."""
        if not self.connected:
            return defer.fail(DeskError("the mixing desk is not connected"))
        waiting = defer.Deferred()
        self._pending.append(waiting)
        request = {"action": "list", "all": True} if everyone else {"action": "list"}
        self.transport.write(desk.encode_message(request))
        timer = self.reactor.callLater(self.timeout, self._timed_out, waiting)
        waiting.addBoth(self._cancel_timer, timer)
        return waiting

    def set_gain(self, singer_id, gain: float) -> None:
        if not 0 <= gain <= MAX_GAIN or math.isnan(gain):
            raise DeskError(f"gain {gain} is out of range (0 to {MAX_GAIN:g})")
        if not self.connected:
            raise DeskError("the mixing desk is not connected")
        self.transport.write(desk.encode_message(
            {"action": "adjust_gain", "id": list(singer_id), "gain": float(gain)}))

    @staticmethod
    def _cancel_timer(result, timer):
        if timer.active():
            timer.cancel()
        return result

    def _timed_out(self, waiting):
        if not waiting.called:
            # A late reply would answer the wrong request: start again from a clean state.
            self._fail(DeskError(f"the server's mixing desk did not answer within {self.timeout:g} s"))
            if self.transport is not None:
                self.transport.abortConnection()

    def _fail(self, exc):
        while self._pending:
            waiting = self._pending.popleft()
            if not waiting.called:
                waiting.errback(exc)

    def close(self):
        if self.connected and self.transport is not None:
            self.transport.loseConnection()
        return self.closed

    def connectionLost(self, reason):
        self.connected = False
        self._fail(DeskError(self.refusal or "the server closed the mixing-desk connection"))
        if not self.closed.called:
            self.closed.callback(None)


async def connect_desk(reactor, host: str, port: int, timeout: float = 5.0) -> DeskClient:
    endpoint = endpoints.HostnameEndpoint(reactor, host, port, timeout=timeout)
    client = DeskClient(reactor, timeout=timeout)
    try:
        await endpoints.connectProtocol(endpoint, client)
    except (error.ConnectError, error.DNSLookupError, error.TimeoutError) as e:
        raise DeskError(f"cannot reach the mixing desk at {format_server(host, port)} "
                        f"({plain_reason(e)})") from None
    return client


# -- remembered gains -------------------------------------------------------------------

class RememberedGains:
    """The gains the director chose, per singer name + vocal group, across sessions.

    Stored in the per-user config of program "director" as
    ``{"gains": {GROUP: {NAME: {"gain": linear gain, "muted": bool}}}}``. The file is
    read again at each look-up and each change, so a ``choir-director desk`` command in
    another terminal and a running session see each other's choices.
    """

    def __init__(self, program: str = CONFIG_PROGRAM):
        self.program = program

    problem = None  # why the config could not be read, if it could not

    def _load(self) -> dict:
        from ..config import ConfigError, load_config
        self.problem = None
        try:
            values = load_config(self.program)
        except ConfigError as e:
            self.problem = str(e)
            return {}
        return values if isinstance(values, dict) else {}

    def entry(self, name: str, group: str):
        """{"gain": g, "muted": bool} or None."""
        if not name:
            return None
        gains = self._load().get("gains", {})
        entry = gains.get(group, {}).get(name) if isinstance(gains, dict) else None
        if not isinstance(entry, dict) or not isinstance(entry.get("gain"), (int, float)):
            return None
        return {"gain": min(max(float(entry["gain"]), 0.0), MAX_GAIN), "muted": bool(entry.get("muted"))}

    def effective(self, name: str, group: str):
        """The gain to apply to this singer (0 if muted), or None if nothing is remembered."""
        entry = self.entry(name, group)
        if entry is None:
            return None
        return 0.0 if entry["muted"] else entry["gain"]

    def remember(self, name: str, group: str, gain: float, muted: bool = False) -> None:
        if not name:
            return  # 1.1.3 did not remember nameless singers either: there is nothing to match
        from ..config import ConfigError, save_config
        values = self._load()
        if self.problem:
            raise DeskError(f"{self.problem}: the level is set, but not remembered")
        gains = values.get("gains")
        if not isinstance(gains, dict):
            gains = values["gains"] = {}
        by_group = gains.get(group)
        if not isinstance(by_group, dict):
            by_group = gains[group] = {}
        by_group[name] = {"gain": float(gain), "muted": bool(muted)}
        try:
            save_config(self.program, values)
        except ConfigError as e:
            raise DeskError(f"{e}: the level is set, but not remembered") from None


# -- the `choir-director desk` commands --------------------------------------------------

def find_singer(singers, wanted: str) -> Singer:
    """A singer by address (host:port), by name (any case), or by the start of a name."""
    singers = [s for s in singers if not s.is_monitor]
    wanted_clean = wanted.strip()
    for singer in singers:
        if singer.address == wanted_clean:
            return singer
    lowered = wanted_clean.lower()
    for matches in ([s for s in singers if s.name.lower() == lowered],
                    [s for s in singers if s.name.lower().startswith(lowered)]):
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            names = ", ".join(f"{s.describe()} at {s.address}" for s in matches)
            raise DeskError(f"several singers match {wanted!r}: {names}. Give the address instead.")
    if not singers:
        raise DeskError(f"no singer called {wanted!r}: nobody is listed (see `choir-director desk list`)")
    names = ", ".join(s.describe() for s in singers)
    raise DeskError(f"no singer called {wanted!r}. Listed: {names}")


def format_table(singers, remembered: RememberedGains | None = None) -> str:
    singers = sorted(singers, key=lambda s: (s.is_monitor, s.group.lower(), s.name.lower()))
    rows = [("Singer", "Group", "Gain", "Address")]
    for singer in singers:
        gain = format_gain(singer.gain)
        if remembered is not None and not singer.is_monitor:
            entry = remembered.entry(singer.name, singer.group)
            if entry is not None:
                wanted = 0.0 if entry["muted"] else entry["gain"]
                if abs(wanted - singer.gain) > 1e-6:
                    gain += f" (remembered: {format_gain(wanted)})"
        rows.append((singer.name or "(no name)", singer.group, gain, singer.address))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
                     for row in rows)


NO_SINGER = ("No singer is listed. Nobody is connected, or the server is an online-choir 1.1.3 "
             "server, which lists only the singers who have joined a session.")


async def run_desk_command(reactor, host: str, port: int, command: str, args, out,
                           remembered: RememberedGains | None = None) -> int:
    """``list``, ``gain NAME DB``, ``mute NAME``, ``unmute NAME``, ``group GROUP DB``."""
    remembered = remembered or RememberedGains()
    client = await connect_desk(reactor, host, port)
    try:
        singers = [s for s in await client.list(everyone=True)]
        if command == "list":
            if not [s for s in singers if not s.is_monitor]:
                print(NO_SINGER, file=out)
            else:
                print(format_table(singers, remembered), file=out)
            return 0

        changes = []  # (singer, gain to send, gain to remember, muted)

        def muting(singer):
            entry = remembered.entry(singer.name, singer.group)
            keep = singer.gain if singer.gain > 0 else (entry["gain"] if entry and entry["gain"] > 0 else 1.0)
            return (singer, 0.0, keep, True)  # mute keeps the level to come back to

        def setting(singer, gain):
            return muting(singer) if gain == 0 else (singer, gain, gain, False)

        if command == "gain":
            changes.append(setting(find_singer(singers, args[0]), db_to_gain(parse_db(args[1]))))
        elif command == "mute":
            changes.append(muting(find_singer(singers, args[0])))
        elif command == "unmute":
            singer = find_singer(singers, args[0])
            entry = remembered.entry(singer.name, singer.group)
            gain = entry["gain"] if entry and entry["gain"] > 0 else (singer.gain or 1.0)
            changes.append((singer, gain, gain, False))
        elif command == "group":
            group, gain = args[0].strip().lower(), db_to_gain(parse_db(args[1]))
            members = [s for s in singers if s.group.lower() == group and not s.is_monitor]
            if not members:
                groups = sorted({s.group for s in singers if not s.is_monitor})
                raise DeskError(f"no singer of group {args[0]!r} is listed"
                                + (f" (groups: {', '.join(groups)})" if groups else ""))
            changes += [setting(s, gain) for s in members]
        else:
            raise DeskError(f"unknown desk command {command!r}")

        for singer, gain, keep, muted in changes:
            client.set_gain(singer.id, gain)
            try:
                remembered.remember(singer.name, singer.group, keep, muted)
            except DeskError as e:
                print(f"Warning: {e}", file=out)
        # The server answers requests in order: this list comes after the gains are set.
        now = {s.id: s for s in await client.list(everyone=True)}
        for change in changes:
            singer = now.get(change[0].id, change[0])
            print(f"{singer.describe()}: {format_gain(singer.gain)}", file=out)
        return 0
    finally:
        await client.close()
