"""Tokens at rest: what is kept of a secret once it has been handed out.

Every token the daemon makes (registration, runner, job, API and operator tokens) is shown
once, when it is made, and kept only as its SHA-256: a copy of the store (a backup, a file
left readable) lets nobody in, and a token is checked by looking its hash up (an index
lookup, as for the token itself). A fast hash without salt is right for these, unlike for
passwords: each token holds 128 bits or more of ``secrets`` randomness, so there is no
dictionary to try and no precomputed table to defeat, and a slow hash would only slow
down every runner request.

Listings tell tokens apart by a prefix: the kind (``ptrrt-``) and 8 characters, which
leaves the other 96 or more bits unknown.
"""
import hashlib

PREFIX_CHARS = 8


def hash_token(token: str) -> str:
    """The hex SHA-256 of a token (any string: no token holds a lone surrogate, so letting
    them through cannot make two tokens alike)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def token_prefix(token: str) -> str:
    """How a listing shows a token: ``ptrrt-1a2b3c4d`` for ``ptrrt-1a2b3c4d...``."""
    kind, dash, rest = token.partition("-")
    return kind + dash + rest[:PREFIX_CHARS] if dash else token[:PREFIX_CHARS]
