"""The daemon's side of signed media links: the secret in the data directory, and a clock.

The secret is ``DATA_DIR/link-secret``: 32 random bytes, made 0600 at the first start and
kept, so links handed out survive a restart. Delete it (daemon stopped) to revoke every
link at once. The signing itself is ``choir_protocol.runners.signed_links``.
"""
import os
import secrets
import time

from choir_protocol.runners import signed_links as L

SECRET_NAME = "link-secret"


def load_secret(data_dir: str) -> bytes:
    """The data directory's link secret, made at the first call (atomically: two processes
    starting at once agree on one)."""
    path = os.path.join(data_dir, SECRET_NAME)
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    os.makedirs(data_dir, exist_ok=True)
    part = f"{path}.{os.getpid()}.tmp"
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, secrets.token_bytes(L.SECRET_BYTES))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(part, path)  # fails if another process made one meanwhile: theirs wins
    except FileExistsError:
        pass
    finally:
        os.unlink(part)
    return _read(path)


def _read(path) -> bytes:
    with open(path, "rb") as f:
        secret = f.read()
    if len(secret) < L.SECRET_BYTES // 2:
        raise RuntimeError(f"{path} is too short to be a link secret: delete it (every "
                           f"signed link handed out stops working) and start again")
    return secret


class MediaLinks:
    """Signs and checks a media's file links with one secret and a clock (``seconds()``)."""

    def __init__(self, secret: bytes, clock=time.time, ttl: float = L.LINK_TTL):
        self.secret = secret
        self.clock = clock
        self.ttl = ttl

    @classmethod
    def in_data_dir(cls, data_dir: str, clock=time.time, ttl: float = L.LINK_TTL):
        return cls(load_secret(data_dir), clock, ttl)

    def segment(self, media_id: str) -> str:
        """``signed/{expires}/{sig}``, for ``describe_media(file_link=...)``."""
        return L.link_segment(self.secret, media_id, self.clock(), self.ttl)

    def check(self, media_id: str, expires: str, sig: str) -> None:
        """Raises ``signed_links.LinkError`` for a link that opens nothing."""
        L.check_link(self.secret, media_id, expires, sig, self.clock())
