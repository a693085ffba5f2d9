"""``--server`` values: a host name or address, with or without a port.

Every program takes ``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address, so a user
can paste what another program printed. A port given in the value wins over the default.
"""
import ipaddress
import re

_NAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?\.?$")


class AddressError(ValueError):
    """A ``--server`` value that is not a host; the message says why, in one line."""


def _port(text: str, value: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise AddressError(f"{value!r}: the port must be a number from 1 to 65535")
    return int(text)


def _host(text: str, value: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    if not _NAME.match(text):
        raise AddressError(f"{value!r} is not a host name or an IP address")
    return text


def parse_server(value: str, default_port: int | None = None) -> tuple[str, int | None]:
    """``(host, port)`` from a ``--server`` value; ``port`` is ``default_port`` when the
    value has none. Raises :class:`AddressError` for anything else."""
    text = value.strip()
    if not text:
        raise AddressError("the server address is empty")
    if "://" in text:
        raise AddressError(f"{value!r}: give a host and port (example.org:8868), not a URL")
    if text.startswith("["):  # [v6] or [v6]:port
        close = text.find("]")
        if close < 0:
            raise AddressError(f"{value!r}: a '[' without its ']'")
        host, rest = text[1:close], text[close + 1:]
        if rest and not rest.startswith(":"):
            raise AddressError(f"{value!r}: expected ':PORT' after ']'")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise AddressError(f"{value!r}: {host!r} is not an IPv6 address") from None
        return str(ipaddress.IPv6Address(host)), _port(rest[1:], value) if rest else default_port
    if text.count(":") > 1:  # a bare IPv6 address has no port
        try:
            return str(ipaddress.IPv6Address(text)), default_port
        except ValueError:
            raise AddressError(f"{value!r} is not an IPv6 address (write [ADDRESS]:PORT "
                               "to give a port)") from None
    host, colon, port = text.partition(":")
    return _host(host, value), _port(port, value) if colon else default_port


def format_server(host: str, port: int) -> str:
    """``host:port``, with an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
