"""Listening endpoints checked before the daemon starts, with one-line reasons.

Twisted's own errors for a bad endpoint string are a ``ValueError`` about ``int()``, or a
``TypeError`` about ``_parseTCP()``; a port in use is a ``CannotListenError`` traceback.
These say, in words, what is wrong with the value of which option.
"""
import errno
import re
import socket

from twisted.internet import endpoints
from twisted.internet.error import CannotListenError

TCP_KINDS = ("tcp", "tcp6", "ssl")
KNOWN = "tcp:PORT, tcp6:PORT, ssl:PORT:privateKey=FILE, unix:PATH, systemd:domain=INET:index=N"
DESK_BELOW_DIRECTOR = 20  # the 1.1.3 director looks for the desk 20 below the director port
WILDCARDS = ("", "0.0.0.0", "::")


class EndpointError(ValueError):
    """An endpoint string that cannot listen; the message says why, in one line."""


def _fields(description: str) -> list[str]:
    """The ``:``-separated fields, a backslash-escaped ``:`` kept inside its field."""
    return re.split(r"(?<!\\):", description)


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def _port_field(fields: list[str]) -> int | None:
    """The index of the port among a ``tcp:...`` endpoint's fields (positional or
    ``port=``), or None when there is none."""
    for i, field in enumerate(fields[1:], 1):
        if "=" not in field or field.startswith("port="):
            return i
    return None


def tcp_parts(description: str) -> tuple[str, int, str] | None:
    """``(kind, port, interface)`` of a well-formed tcp/tcp6/ssl endpoint, else None."""
    fields = _fields(description)
    index = _port_field(fields)
    if fields[0] not in TCP_KINDS or index is None:
        return None
    text = fields[index].removeprefix("port=")
    if not text.isdigit():
        return None
    interface = next((_unescape(f[len("interface="):]) for f in fields[1:]
                      if f.startswith("interface=")), "::" if fields[0] == "tcp6" else "")
    return fields[0], int(text), interface


def check_server_endpoint(description: str) -> None:
    """Raises :class:`EndpointError` unless ``description`` makes a server endpoint that
    can be asked to listen. Nothing listens: only the string is parsed (for ``systemd:``,
    its socket is looked up among those passed)."""
    fields = _fields(description)
    kind = fields[0]
    if kind in TCP_KINDS:
        index = _port_field(fields)
        if index is None:
            raise EndpointError(f"no port ({kind}:PORT[:interface=ADDRESS])")
        text = fields[index].removeprefix("port=")
        if not text.isdigit():
            raise EndpointError(f"invalid port {text!r}")
        if int(text) > 65535:
            raise EndpointError(f"port {text} is out of range (0 to 65535)")
    try:
        endpoints.serverFromString(None, description)  # no reactor: nothing is done yet
    except ValueError as e:
        if str(e).startswith("Unknown endpoint type"):
            raise EndpointError(f"unknown endpoint type {kind!r} (give {KNOWN})") from None
        raise EndpointError(f"invalid value ({e})") from None
    except TypeError as e:
        unknown = re.search(r"unexpected keyword argument '(\w+)'", str(e))
        missing = re.search(r"required positional argument: '(\w+)'", str(e))
        if unknown:
            raise EndpointError(f"unknown parameter {unknown.group(1)!r} for {kind}") from None
        if missing:
            raise EndpointError(f"no {missing.group(1)} given for {kind}") from None
        raise EndpointError(f"invalid value ({e})") from None
    except (IndexError, KeyError):
        raise EndpointError("no such socket was passed by systemd (start the daemon from "
                            "its .socket unit, or give a tcp: endpoint)") from None
    except OSError as e:
        raise EndpointError(f"{e.strerror}: {e.filename}" if e.filename else str(e)) from None


def desk_for_director(director: str) -> str:
    """The desk endpoint the 1.1.3 director expects: its port - 20, on the same
    interface. Raises :class:`EndpointError` when the director's endpoint has no such
    port (a systemd or unix endpoint, or a port below 20)."""
    fields = _fields(director)
    index = _port_field(fields)
    if fields[0] not in ("tcp", "tcp6") or index is None:
        raise EndpointError(f"the desk follows the director's port only for a tcp: "
                            f"--director, not {director}; give --desk")
    text = fields[index].removeprefix("port=")
    if not text.isdigit():
        raise EndpointError(f"--director {director}: invalid port {text!r}")
    port = int(text)
    if port == 0:
        desk = 0  # any free port, as the director's
    elif port > DESK_BELOW_DIRECTOR:
        desk = port - DESK_BELOW_DIRECTOR
    else:
        raise EndpointError(f"the director's port {port} has no port "
                            f"{DESK_BELOW_DIRECTOR} below it for the desk; give --desk")
    prefix = "port=" if fields[index].startswith("port=") else ""
    return ":".join(fields[:index] + [f"{prefix}{desk}"] + fields[index + 1:])


def same_tcp_port(one: str, other: str) -> bool:
    """Whether two tcp endpoints would take the same port (port 0 never does)."""
    a, b = tcp_parts(one), tcp_parts(other)
    if a is None or b is None or a[1] != b[1] or a[1] == 0:
        return False
    return a[2] in WILDCARDS or b[2] in WILDCARDS or a[2] == b[2]


def probe_listen(description: str) -> None:
    """Binds and listens a throwaway socket on a tcp endpoint's address, then closes it:
    raises CannotListenError now, on the terminal, for a port that is taken, as Twisted
    would later when it listens there. Other endpoints, and port 0, are not probed."""
    parts = tcp_parts(description)
    if parts is None or parts[1] == 0:
        return
    kind, port, interface = parts
    family = socket.AF_INET6 if kind == "tcp6" or ":" in interface else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Twisted's ports
        probe.bind((interface, port))
        probe.listen(1)
    except OSError as e:
        raise CannotListenError(interface, port, e) from None
    finally:
        probe.close()


def cannot_listen_reason(error: CannotListenError, option: str) -> str:
    """What a CannotListenError means, in words, with what to do about it."""
    cause = error.socketError
    interface = error.interface
    if isinstance(error.port, (str, bytes)):  # a unix socket's path
        where = f"socket {error.port}"
    elif interface not in WILDCARDS and interface is not None:
        where = f"port {error.port} on {interface}"
    else:
        where = f"port {error.port}"
    if isinstance(cause, socket.gaierror):
        return f"interface {interface!r} is not an address ({cause.strerror})"
    code = getattr(cause, "errno", None)
    if code == errno.EADDRINUSE:
        return (f"{where} is in use (another program listens there; choose another "
                f"with --{option})")
    if code == errno.EACCES:
        return (f"{where} needs privileges (ports below 1024 are for root; choose "
                f"another with --{option})")
    if code == errno.EADDRNOTAVAIL:
        return f"{interface} is not an address of this machine (give another in --{option})"
    return f"cannot listen on {where}: {getattr(cause, 'strerror', None) or cause}"
