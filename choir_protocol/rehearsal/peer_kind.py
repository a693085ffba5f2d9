"""What the first bytes from a server say it is, for a director pointed at the wrong port.

A director port answers a director's header with mix chunks or a refusal (a chunk of
1028 bytes, index -2 or -4). Other ports give themselves away by what they send first:

- our singer port sends a -4 refusal whose reason names the director port
  (``choir_protocol.rehearsal.roles.wrong_port_reason``: "this is the singer port; directors use
  port 8878");
- a mixing-desk port sends desk messages (2-byte length, then gzip: ``1f 8b``), e.g. our
  ``{"error": ...}`` to an address it does not serve;
- an HTTP server answers ``HTTP/1.1 400 Bad Request``; a TLS server an alert record; SSH,
  SMTP, FTP, Redis and the like a line of text.

Our own desk and HTTP ports say nothing to a director's bytes (they close the connection),
so the director asks them directly (``choir_clients.rehearsal.port_probe``), and reads the answers
with the same ``recognise``.
"""
import re

import attrs

from ..errors import ProtocolError
from .chunks import refusal_reason
from .constants import INDEX_BYTES, INDEX_MULTIPLIER, MIX_CHUNK_SIZE, Signal
from .desk import MessageReader

# the kinds of peer
DIRECTOR_PORT = "director port"  # what the director wanted: a choir server's director port
SINGER_PORT = "singer port"
DESK_PORT = "desk port"
HTTP = "http"
TLS = "tls"
TEXT = "text"  # a line of text: SSH, SMTP, FTP, Redis, ...
NOTHING = "nothing"  # not a byte
UNKNOWN = "unknown"

DEFAULT_DIRECTOR_PORT = 8878
DESK_BELOW_DIRECTOR = 20  # by default the desk port is the director port minus 20 (online-choir's)
SHOWN = 60  # characters of a peer's words quoted at most
ENOUGH = 4096  # bytes: the most a peer is listened to

_SINGER_PORT_REASON = re.compile(r"this is the singer port; directors use (?:port (\d+)|the director port)")


@attrs.frozen
class Peer:
    kind: str
    detail: str = ""  # its words, when it has any (a status line, a banner, a reason)
    director_port: int | None = None  # where it says the director port is


def recognise(data: bytes) -> Peer:
    """What sent ``data``, the first bytes (any number) a director received, before any
    mix chunk."""
    if not data:
        return Peer(NOTHING)
    if data.startswith(b"HTTP/"):
        return Peer(HTTP, _first_line(data))
    if len(data) >= 2 and data[0] in (0x15, 0x16) and data[1] == 0x03:  # TLS alert or handshake
        return Peer(TLS)
    if data[2:4] == b"\x1f\x8b":  # a desk message: its length, then gzip's magic number
        return Peer(DESK_PORT, _desk_error(data))
    if len(data) >= INDEX_BYTES:
        index = int.from_bytes(data[:INDEX_BYTES], "big", signed=True)
        if index == Signal.REFUSED * INDEX_MULTIPLIER:
            reason = refusal_reason(data[:MIX_CHUNK_SIZE])
            match = _SINGER_PORT_REASON.search(reason)
            if match:
                return Peer(SINGER_PORT, reason, int(match.group(1)) if match.group(1) else None)
            return Peer(DIRECTOR_PORT, reason)
        if index == Signal.KEEPALIVE * INDEX_MULTIPLIER:  # sent to singers only
            return Peer(SINGER_PORT)
        if index in (0, Signal.ABORT * INDEX_MULTIPLIER):  # mix chunk 0, or -2: refused
            return Peer(DIRECTOR_PORT)
    line = _first_line(data)
    if line and _printable(data[:len(line)]):
        return Peer(TEXT, line)
    return Peer(UNKNOWN)


def enough(data: bytes) -> bool:
    """Whether ``data`` holds all ``recognise`` reads (a whole line, desk message or chunk),
    so that whoever asks can stop listening."""
    if len(data) >= ENOUGH or (len(data) >= 2 and data[0] in (0x15, 0x16) and data[1] == 0x03):
        return True
    if data[2:4] == b"\x1f\x8b":
        return len(data) >= 2 + int.from_bytes(data[:2], "big")
    if data[:1] == b"\xff" and len(data) >= INDEX_BYTES:  # a signal chunk (negative index)
        return len(data) >= MIX_CHUNK_SIZE
    return b"\n" in data


def _desk_error(data: bytes) -> str:
    try:
        messages = MessageReader().feed(data)
    except ProtocolError:
        return ""
    for message in messages:
        if isinstance(message, dict) and isinstance(message.get("error"), str):
            return message["error"][:SHOWN]
    return ""


def _first_line(data: bytes) -> str:
    line = data.split(b"\n", 1)[0].rstrip(b"\r")
    return line[:SHOWN].decode("ascii", "replace")


def _printable(raw: bytes) -> bool:
    return all(32 <= byte < 127 or byte == 9 for byte in raw)


def wrong_port_message(address: str, port: int, peer: Peer) -> str | None:
    """What to tell a director whose server at ``address`` (``port`` its port) is ``peer``;
    None if it is a director port after all."""
    not_ours = "not a choir server's director port"
    if peer.kind == SINGER_PORT:
        try_port = f" (try :{peer.director_port})" if peer.director_port else ""
        return f"{address} is a choir server's singer port, not its director port{try_port}"
    if peer.kind == DESK_PORT:
        return (f"{address} is a choir server's mixing-desk port, not its director port "
                f"(the director port is usually {DESK_BELOW_DIRECTOR} above it: "
                f"try :{port + DESK_BELOW_DIRECTOR})")
    if peer.kind == HTTP:
        return (f"{address} is a web server (it answered {peer.detail!r}), {not_ours} "
                f"({DEFAULT_DIRECTOR_PORT} by default)")
    if peer.kind == TLS:
        return f"{address} speaks TLS (an encrypted service such as HTTPS), {not_ours}"
    if peer.kind == TEXT:
        return f"{address} answered {peer.detail!r}: it is {not_ours}"
    if peer.kind == NOTHING:
        return (f"{address} closed the connection without a word: it is {not_ours}, "
                "or that server has stopped")
    if peer.kind == UNKNOWN:
        return f"{address} sent bytes no choir server sends: it is {not_ours}"
    return None
