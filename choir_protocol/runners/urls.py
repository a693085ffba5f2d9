"""Absolute URLs for what runners read.

Job payloads are stored with path-only URLs (``/api/v1/runners/jobs/<uuid>/files/...``), so a
daemon that moves behind a proxy or changes its public URL keeps working jobs. PeerTube's own
runner passes every payload URL through ``new URL()``, which refuses a path: the URLs are made
absolute when a payload is served, against the base the runner reached us at.

The base is ``--public-url`` when given (a path prefix included: ``https://host/choir``);
otherwise the request's own scheme and ``Host``, where ``X-Forwarded-Proto`` and
``X-Forwarded-Host`` count only when the peer is a trusted proxy (anyone else could make us
hand out links to a host of theirs).
"""
import re
from urllib.parse import urlsplit

from ..networks import in_networks

# payload keys whose value is a URL (or a list of them); studio tasks carry theirs in "file"
_URL_KEY = re.compile(r"Urls?$")
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?$")


def _join(base: str, url):
    if isinstance(url, str) and url.startswith("/"):
        return base + url
    return url


def absolute_payload(payload, base: str):
    """A copy of ``payload`` with every path-only URL in it prefixed with ``base``
    (``scheme://host[:port][/prefix]``, no trailing slash). Absolute URLs and other values
    are left as they are."""
    base = base.rstrip("/")

    def walk(value, key=None):
        if isinstance(value, dict):
            return {k: walk(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, key) for v in value]
        if key is not None and (_URL_KEY.search(key) or key == "file"):
            return _join(base, value)
        return value

    return walk(payload)


def valid_host(host: str) -> bool:
    """A ``Host``-header value we may put in a URL: a name or address, an optional port."""
    return bool(_HOST.match(host)) and len(host) <= 255


def request_base(*, public_url: str | None, secure: bool, host: str | None, peer: str | None,
                 forwarded_proto: str | None = None, forwarded_host: str | None = None,
                 trusted_proxies=(), default_host: str = "localhost") -> str:
    """The base URL a runner reached us at (see the module docstring)."""
    if public_url:
        parts = urlsplit(public_url)
        return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
    scheme = "https" if secure else "http"
    if in_networks(peer, trusted_proxies):
        # a proxy chain appends: the first value is what the client used
        proto = (forwarded_proto or "").split(",")[0].strip().lower()
        if proto in ("http", "https"):
            scheme = proto
        fwd_host = (forwarded_host or "").split(",")[0].strip()
        if fwd_host and valid_host(fwd_host):
            host = fwd_host
    if not host or not valid_host(host):
        host = default_host
    return f"{scheme}://{host}"
