"""Where the daemon's HTTP endpoint is reached, left in the data directory for ``choir-admin``.

The commands ``choir-admin`` prints (``curl ... /api/v1/media``, ``peertube-runner register
--url ...``) must name the daemon's real address, not a guess. The daemon writes
``DATA_DIR/http-url`` once its HTTP port listens: ``--public-url`` when given, else
``http://<this host's name>:<the port it listens on>``. The file is left behind at stop: the
last address is still the best guess for the next start.
"""
import os

HTTP_URL_NAME = "http-url"


def write_http_url(data_dir: str, url: str) -> None:
    path = os.path.join(data_dir, HTTP_URL_NAME)
    temporary = path + ".tmp"
    with open(temporary, "w") as f:
        f.write(url.rstrip("/") + "\n")
    os.replace(temporary, path)


def read_http_url(data_dir: str) -> str | None:
    """The URL the daemon last wrote, or None if it never ran here."""
    try:
        with open(os.path.join(data_dir, HTTP_URL_NAME)) as f:
            return f.readline().strip() or None
    except OSError:
        return None
