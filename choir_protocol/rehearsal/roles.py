"""Which role a client says it has, and the words for one that came to the wrong port."""
from .constants import MIX_CHUNK_SIZE, TRACK_CHUNK_SIZE
from .header import Header

# Our clients name themselves first in the header's client version ("choir-singer 0.3").
# 1.1.3's clients do not, so they are never refused on these grounds.
CLIENT_ROLES = {"choir-singer": "singer", "choir-director": "director"}
# the size of the chunks a client of each role reads, so that it can read its refusal
CHUNK_SIZE_READ_BY = {"singer": TRACK_CHUNK_SIZE, "director": MIX_CHUNK_SIZE}
PLURAL = {"singer": "singers", "director": "directors"}


def claimed_role(header: Header) -> str | None:
    words = header.client_version.split(maxsplit=1)
    return CLIENT_ROLES.get(words[0]) if words else None


def wrong_port_reason(header: Header, port_role: str, other_port: int | None) -> str | None:
    """Why a client that names the other role is refused on ``port_role``'s port, or None."""
    role = claimed_role(header)
    if role is None or role == port_role or port_role not in PLURAL:  # (the desk is the director's)
        return None
    where = f"port {other_port}" if other_port else f"the {role} port"
    return f"this is the {port_role} port; {PLURAL[role]} use {where}"
