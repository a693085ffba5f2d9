"""``twistd choir`` itself: what a failed start prints, in one line.

twistd prints the whole usage (40 lines) before a bad option's one line, and a port in
use as a traceback from inside its start, which a daemonized twistd reduces to "An error
has occurred: b'...'". Here, the plugin's options exit with the one line and a pointer to
``--help``; and the rehearsal ports listen in ``makeService``, which twistd calls before
it daemonizes and before its log starts, so a port in use is told on the terminal, naming
the option, whether or not twistd daemonizes. The sockets are inherited by the daemon.

The in-process API (``service.Options``, ``service.makeService``) keeps raising
UsageError and listening at start, for the tests and for embedding.
"""
import os

from twisted.internet.error import CannotListenError
from twisted.python import usage

from . import service
from .datadir import first_missing, unmake_data_dir
from .endpoint_check import cannot_listen_reason, probe_listen

HELP = "see 'twistd choir --help'"
REHEARSAL_ROLES = ("singers", "director", "desk")


class Options(service.Options):
    """The daemon's options as twistd parses them: a usage error is one line."""

    def parseOptions(self, options=None):
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            raise SystemExit(f"twistd choir: {e}; {HELP}") from None


def makeService(options):
    """``service.makeService``, its rehearsal ports listening and its HTTP port found
    free; else the one line, with nothing left of a data directory this start made."""
    uses_data_dir = not (options["no-record"] and options["no-runners"])
    made = first_missing(options["data-dir"]) if uses_data_dir else None
    top = service.makeService(options)
    role = None
    try:
        for role in REHEARSAL_ROLES:
            top.getServiceNamed(role).listen()
        if not options["no-runners"]:
            role = "http"
            # the runner API listens only when it starts, after the fork: a port taken
            # between this probe and then is still reported, by twistd (a traceback)
            probe_listen(options["http"])
    except CannotListenError as e:
        reason = cannot_listen_reason(e, role)
    except OSError as e:  # a socket adopted from systemd that is not one
        reason = f"cannot listen: {e.strerror or e}"
    else:
        return top
    # the process exits now, closing the ports that did listen
    lock_file = getattr(top, "lock_file", None)
    if lock_file is not None:
        lock_file.close()
    if uses_data_dir:
        unmake_data_dir(os.path.abspath(options["data-dir"]), made)
    raise SystemExit(f"twistd choir: {options.named(role)}: {reason}")
