"""Addresses and networks given on the command line (``--desk-from``, ``--trusted-proxy``),
and whether a peer's address is in them: for the rehearsal ports and the HTTP port alike."""
import ipaddress


def parse_networks(text: str) -> tuple:
    """``--trusted-proxy``: comma-separated addresses or networks (``10.0.0.0/8``)."""
    networks = []
    for part in text.split(","):
        part = part.strip()
        if part:
            networks.append(ipaddress.ip_network(part, strict=False))  # ValueError if bad
    return tuple(networks)


def in_networks(peer: str | None, networks) -> bool:
    """Whether address ``peer`` is in one of ``networks`` (an IPv4-mapped IPv6 counts as IPv4)."""
    if not peer or not networks:
        return False
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in n for n in networks)
