"""A log file with bounded rotation, for ``twistd --logger=choir_twisted.logfile.observer``.

twistd's own ``--logfile`` rotates at 1 MB and keeps every rotated file for ever. twistd
takes no arguments for a ``--logger`` factory, so this one is configured by environment:

* ``CHOIR_LOG_FILE``: the file [default: ``twistd.log``, as twistd]; ``-`` for stdout;
* ``CHOIR_LOG_ROTATE_BYTES``: size at which it is rotated [default: 10 MB];
* ``CHOIR_LOG_ROTATED_FILES``: rotated files kept, ``.1`` the newest [default: 10].

As with twistd's file, SIGUSR1 rotates it (for logrotate's ``postrotate``).
"""
import os
import signal
import sys

from twisted.logger import textFileLogObserver
from twisted.python.logfile import LogFile

DEFAULT_FILE = "twistd.log"
DEFAULT_ROTATE_BYTES = 10_000_000
DEFAULT_ROTATED_FILES = 10


def _count(name: str, default: int, least: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = least - 1
    if value < least:
        raise SystemExit(f"twistd: ${name} must be a whole number, at least {least}: {text!r}")
    return value


def bounded_log_file(path: str, rotate_bytes: int, rotated_files: int) -> LogFile:
    return LogFile.fromFullPath(os.path.abspath(path), rotateLength=rotate_bytes,
                                maxRotatedFiles=rotated_files)


def observer():
    """twistd's text log format, to the file ``$CHOIR_LOG_FILE`` names, bounded."""
    path = os.environ.get("CHOIR_LOG_FILE") or DEFAULT_FILE
    rotate_bytes = _count("CHOIR_LOG_ROTATE_BYTES", DEFAULT_ROTATE_BYTES, 1000)
    rotated_files = _count("CHOIR_LOG_ROTATED_FILES", DEFAULT_ROTATED_FILES, 1)
    if path == "-":
        return textFileLogObserver(sys.stdout)
    try:
        log_file = bounded_log_file(path, rotate_bytes, rotated_files)
    except OSError as e:
        raise SystemExit(f"twistd: $CHOIR_LOG_FILE: {e.strerror}: {path}")
    if not signal.getsignal(signal.SIGUSR1):  # as twistd: unless someone else handles it

        def rotate(signum, frame):
            from twisted.internet import reactor
            reactor.callFromThread(log_file.rotate)

        signal.signal(signal.SIGUSR1, rotate)
    return textFileLogObserver(log_file)
