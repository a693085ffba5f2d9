"""choir-admin: the operator's tool, working on the daemon's store directly or over HTTP.

It opens ``choir.sqlite3`` in the daemon's data directory (``--data-dir``, default
./choir-data like ``twistd -n choir``); a running daemon notices the job changes through
the store's change feed (job_events), so the daemon need not be stopped.

    choir-admin tokens create | list | revoke TOKEN|PREFIX|ID
    choir-admin runners list | remove ID_OR_NAME
    choir-admin jobs list [--state ...] [--type ...] | show UUID | cancel UUID
    choir-admin media list | show ID | submit FILE [--name] [--webhook] [--resolutions]
    choir-admin media studio [--cut START:END] [--intro F] [--outro F] [--watermark F] ID
    choir-admin api-tokens create [--name] | list | revoke TOKEN|PREFIX
    choir-admin operator-tokens create [--name] | list | revoke ID

With ``--url URL --token TOKEN`` (or ``CHOIR_URL``/``CHOIR_TOKEN``) it manages a daemon on
another machine through its admin HTTP API instead (``remote``), authorised by an
operator token made on the daemon's machine with ``operator-tokens create``. tokens,
runners, jobs and media list/show work so; api-tokens, operator-tokens and media submit
only on the data directory.

The store keeps only each token's hash: a token is printed once, by its ``create``; lists
show its prefix (``ptrrt-1a2b3c4d``), and ``revoke`` takes the token or that prefix. The
commands a ``create`` prints for others to run (``choir-runner register``, ``curl``) name
the daemon's real address (``hints``).

Exit status: 0 on success, 1 on an operational error (one line on stderr), 2 on a usage
error. ``--json`` (before the command) prints JSON for scripts instead of tables.

The command line is in ``options``; the commands on the store in ``local``, over HTTP in
``remote``; both fill the records of ``records``, which ``output`` prints.
"""
import os
import sqlite3
import sys
import time

from twisted.internet import defer

from ..cli import parse_options
from .local import WRITE_CREATES, Admin, open_store
from .options import PROGRAM, Options
from .output import AdminError


async def run(argv, out=None, err=None, now=None):
    """Runs one command; -> the exit status. ``out``/``err`` default to sys.stdout/stderr."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        config = parse_options(Options(), argv, PROGRAM, err)
    except SystemExit as e:  # a usage error (2), or --help (0)
        return e.code or 0
    group, leaf = config.subCommand, config.subOptions.subCommand
    if config["url"] is not None:
        return await _run_remote(config, out, err, time.time() if now is None else now)
    store = None
    try:
        store = await open_store(config["data-dir"], (group, leaf) in WRITE_CREATES)
        admin = Admin(store, out, config["json"], time.time() if now is None else now,
                      config["data-dir"])
        await getattr(admin, f"{group.replace('-', '_')}_{leaf}")(config.subOptions.subOptions)
    except AdminError as e:
        err.write(f"choir-admin: {e}\n")
        return 1
    except sqlite3.Error as e:  # locked too long, not a database, ...
        err.write(f"choir-admin: store {os.path.join(config['data-dir'], 'choir.sqlite3')}: "
                  f"{e}\n")
        return 1
    finally:
        if store is not None:
            store.close()
    return 0


async def _run_remote(config, out, err, now):
    """A command over the daemon's admin HTTP API (``remote``)."""
    from .remote import RemoteAdmin
    group, leaf = config.subCommand, config.subOptions.subCommand
    remote = RemoteAdmin(config["url"], config["token"], out, config["json"], now)
    try:
        command = getattr(remote, f"{group.replace('-', '_')}_{leaf}", None)
        if command is None:
            raise AdminError(f"'{group} {leaf}' works only on the data directory: run it on "
                             f"the daemon's machine, without --url")
        await command(config.subOptions.subOptions)
    except AdminError as e:
        err.write(f"choir-admin: {e}\n")
        return 1
    finally:
        await remote.close()
    return 0


def main(argv=None):
    from twisted.internet.task import react
    argv = sys.argv[1:] if argv is None else argv

    async def go(reactor):
        code = await run(argv)
        if code:
            raise SystemExit(code)
    react(lambda reactor: defer.ensureDeferred(go(reactor)))


if __name__ == "__main__":
    main()
