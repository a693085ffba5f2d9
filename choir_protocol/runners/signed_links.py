"""Signed, expiring links to a media's files, sans-IO (the clock and the secret come in).

A link is a path prefix, not a query: ``/api/v1/media/{id}/signed/{expires}/{sig}/files/...``.
HLS playlists name their sub-playlists and segments by relative URLs, which keep the
directories of the playlist's URL and drop its query; with the signature in the path, a
player following ``720p.m3u8`` from a signed master playlist stays signed.

``sig`` is HMAC-SHA256(secret, "{media id}:{expires}") in hex, cut to SIG_HEX characters:
one signature opens every file of one media until ``expires`` (Unix seconds), no other.
"""
import hashlib
import hmac
import re

LINK_TTL = 7 * 24 * 3600  # a week: a shared link outlives a rehearsal, not a season
ROUND_TO = 3600  # expiries end on the hour: links made within an hour are the same URL
SIG_HEX = 32  # 128 bits of the HMAC
SECRET_BYTES = 32

_EXPIRES = re.compile(r"[0-9]{1,12}")
_SIG = re.compile(r"[0-9a-f]{%d}" % SIG_HEX)


class LinkError(ValueError):
    """A signed link that opens nothing: ``reason`` is "expired" or "bad_signature"."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def signature(secret: bytes, media_id: str, expires: int) -> str:
    message = f"{media_id}:{int(expires)}".encode("utf-8")
    return hmac.new(secret, message, hashlib.sha256).hexdigest()[:SIG_HEX]


def expiry(now: float, ttl: float = LINK_TTL) -> int:
    """When a link made at ``now`` expires: at least ``ttl`` on, rounded up to the hour."""
    return -(-int(now + ttl) // ROUND_TO) * ROUND_TO


def link_segment(secret: bytes, media_id: str, now: float, ttl: float = LINK_TTL) -> str:
    """The path segment that signs a media's file URLs: ``signed/{expires}/{sig}``."""
    expires = expiry(now, ttl)
    return f"signed/{expires}/{signature(secret, media_id, expires)}"


def check_link(secret: bytes, media_id: str, expires: str, sig: str, now: float) -> None:
    """Raises LinkError unless ``sig`` signs ``media_id`` until ``expires`` and that is not
    past. The signature is checked first (in constant time): a forged expiry is a bad
    signature, not an expired link."""
    if not (_EXPIRES.fullmatch(expires or "") and _SIG.fullmatch(sig or "")):
        raise LinkError("bad_signature", "malformed signed link")
    if not hmac.compare_digest(signature(secret, media_id, int(expires)).encode(),
                               sig.encode()):
        raise LinkError("bad_signature", "the link's signature does not match this media")
    if int(expires) <= now:
        raise LinkError("expired", "the link expired; ask for the media again for a new one")
