"""One daemon per data directory: an exclusive lock held for the daemon's life.

Two daemons on one directory wreck each other's work: the second one's start-up repair
(``recovery``) would take the first one's live session for an interrupted one and "repair"
it. The lock is ``flock`` on ``DATA_DIR/choir.lock``: the kernel drops it when the process
dies, however it dies, so a stale lock never keeps a daemon out. The file holds the
holder's pid, for the refusal's message.
"""
import fcntl
import os

from twisted.application import service
from twisted.internet import defer

LOCK_NAME = "choir.lock"


class DataDirInUse(Exception):
    """Another live process holds the data directory."""


def check_data_dir(data_dir: str) -> None:
    """Raises ValueError, in one line, unless ``data_dir`` is a directory this process
    can write in, or can be made as one. Makes nothing: a start that fails leaves no
    directory behind."""
    path = os.path.abspath(data_dir)
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ValueError(f"{existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "write in it" if existing == path else f"make it in {existing}"
        raise ValueError(f"permission denied: this user ({_user()}) cannot {what}")


def _user() -> str:
    import pwd
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid {os.geteuid()}"


def first_missing(data_dir: str) -> str | None:
    """The outermost directory of ``data_dir`` that does not exist yet (what making it
    creates), or None when it exists."""
    path = os.path.abspath(data_dir)
    missing = None
    while not os.path.exists(path):
        missing, path = path, os.path.dirname(path)
    return missing


def unmake_data_dir(data_dir: str, made: str | None) -> None:
    """Removes what a failed start made of ``data_dir``: its lock file and sessions/, then
    the directories up to ``made`` (from :func:`first_missing`), each only if empty."""
    if made is None:
        return
    path = os.path.abspath(data_dir)
    for leftover in (os.path.join(path, LOCK_NAME), os.path.join(path, "sessions")):
        try:
            os.rmdir(leftover) if os.path.isdir(leftover) else os.unlink(leftover)
        except OSError:
            pass
    while True:
        try:
            os.rmdir(path)
        except OSError:
            return
        if path == made:
            return
        path = os.path.dirname(path)


def lock_data_dir(data_dir: str):
    """Takes the lock -> its open file (keep it open). Raises DataDirInUse naming the
    holder's pid."""
    os.makedirs(data_dir, exist_ok=True)
    path = os.path.join(data_dir, LOCK_NAME)
    f = open(path, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "unknown"
        f.close()
        raise DataDirInUse(f"{data_dir} is in use by another choir daemon (pid {holder}); "
                           f"give this one another --data-dir")
    except BaseException:
        f.close()
        raise
    write_pid(f)
    return f


def write_pid(f) -> None:
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()


class LockedServices(service.MultiService):
    """The daemon's service tree, holding the data directory's lock from its making (in
    ``makeService``) until every service under it has stopped."""

    def __init__(self, lock_file):
        super().__init__()
        self.lock_file = lock_file

    def startService(self):
        # twistd forks to daemonize after the tree is made; the lock, held by the open
        # file, goes with the child, whose pid it names from now
        write_pid(self.lock_file)
        super().startService()

    def stopService(self):
        d = defer.maybeDeferred(super().stopService)

        def release(result):
            self.lock_file.close()
            return result
        return d.addBoth(release)
