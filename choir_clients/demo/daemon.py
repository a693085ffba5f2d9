"""choir-demo's daemon: one started in-process, or the user's (``--server``); the wait until
it has every singer of the demo; and what it recorded of the session.

The wait asks the daemon itself, through its mixing desk: a singer's client has connected
as soon as its simulated network link has, but the daemon has it only once its header has
crossed that link (up to the link's delay later), and a singer who arrives after the
director's first chunk is not in that session. A daemon serves its desk to this machine,
to its ``--desk-from`` networks, and to the address of a connected director: so when the
desk is refused, a director that sends its header and nothing more opens it.
"""
import collections
import os

import attrs
import numpy as np
from twisted.internet import endpoints, error, task, threads

from choir_protocol.rehearsal.header import Header
from choir_protocol.rehearsal.session_summary import SessionSummary
from choir_twisted.rehearsal.summary_file import read_summary

from ..cli import plain_reason
from ..rehearsal.desk_client import DeskError, connect_desk
from ..rehearsal.director_connection import DirectorClientProtocol
from ..rehearsal.playback import TrackSource
from ..version import program_version

POLL = 0.25  # seconds between two looks (the desk allows 5 lists a second)
RECORD_TIMEOUT = 120.0  # seconds for the daemon to write the session's files


class DemoError(Exception):
    """The demo cannot go on; the message says why, in one line."""


@attrs.define
class Daemon:
    host: str
    singer_port: int
    director_port: int
    desk_port: int
    data_dir: str | None  # where its recordings are, if they are on this machine
    room: object = None  # the in-process daemon's Room

    def endpoint(self, reactor, port: int):
        return endpoints.HostnameEndpoint(reactor, self.host, port)

    def session_dirs(self) -> set:
        sessions = os.path.join(self.data_dir, "sessions") if self.data_dir else None
        try:
            return set(os.listdir(sessions)) if sessions else set()
        except OSError:
            return set()


def director_header() -> Header:
    # names our director client, so the daemon says why it refuses (signal -4), in words
    return Header("choir-demo", client_version=program_version("choir-director"))


def start_in_process(reactor, data_dir: str) -> Daemon:
    """A Room and its three listeners on 127.0.0.1, on ports the system chooses."""
    from choir_twisted.rehearsal.protocols import (DeskProtocol, DirectorProtocol, RoomFactory,
                                                   SingerProtocol)
    from choir_twisted.rehearsal.room import Room
    room = Room(reactor, data_dir=data_dir)
    room.start()
    host = "127.0.0.1"
    roles = (("singers", SingerProtocol), ("director", DirectorProtocol), ("desk", DeskProtocol))
    ports = {role: reactor.listenTCP(0, RoomFactory(room, protocol_class), interface=host)
             for role, protocol_class in roles}
    number = {role: port.getHost().port for role, port in ports.items()}
    ports["singers"].factory.other_port = number["director"]  # as the daemon's makeService
    ports["director"].factory.other_port = number["singers"]
    return Daemon(host, number["singers"], number["director"], number["desk"], data_dir, room)


# -- the wait -------------------------------------------------------------------------------

async def open_desk(reactor, daemon: Daemon, until: float):
    """The daemon's desk (a DeskClient); DemoError if it cannot be had before ``until``."""
    director = None
    why_director = ""
    try:
        while True:
            desk = await _desk(reactor, daemon)
            try:
                await desk.list()  # a refusal comes instead of the first list
                return desk
            except DeskError as e:
                if not desk.refusal:
                    raise DemoError(f"the daemon's mixing desk at {daemon.host}:"
                                    f"{daemon.desk_port}: {e}") from None
                refusal = desk.refusal
            if director is not None and director.done.called:
                why_director = director.refusal or "it closed the connection"
                director = None
            if reactor.seconds() >= until:
                raise DemoError(
                    f"cannot see which singers the daemon has: {refusal}"
                    + (f", and it refused a director ({why_director})" if why_director else "")
                    + " (start the daemon with --desk-from naming this machine)")
            if director is None:
                # its header alone makes this address a director's; it plays nothing
                director = DirectorClientProtocol(reactor, TrackSource(np.zeros((0, 2), "<i2")),
                                                  header=director_header(), held=True,
                                                  idle_timeout=None)
                try:
                    await endpoints.connectProtocol(
                        daemon.endpoint(reactor, daemon.director_port), director)
                except (error.ConnectError, error.DNSLookupError, error.TimeoutError) as e:
                    raise DemoError(f"cannot reach the daemon's director port at {daemon.host}:"
                                    f"{daemon.director_port} ({plain_reason(e)})") from None
            await task.deferLater(reactor, POLL, lambda: None)
    finally:
        if director is not None and not director.done.called:
            director.transport.loseConnection()  # the desk, once open, stays open


async def _desk(reactor, daemon):
    try:
        return await connect_desk(reactor, daemon.host, daemon.desk_port)
    except DeskError as e:  # (the director port - 20 by default)
        raise DemoError(f"{e}; --desk-port gives the desk's port") from None


async def wait_for_singers(reactor, daemon: Daemon, wanted: list, why_missing,
                           seconds: float) -> None:
    """Until the daemon lists every (name, group) of ``wanted``; DemoError after ``seconds``.
    ``why_missing(i)``: what the client of ``wanted[i]`` knows of why it is not there."""
    until = reactor.seconds() + seconds
    desk = await open_desk(reactor, daemon, until)
    try:
        while True:
            try:
                listed = collections.Counter((s.name, s.group) for s in await desk.list())
            except DeskError as e:
                raise DemoError(f"the daemon's mixing desk: {e}") from None
            missing = []
            for i, (name, group) in enumerate(wanted):
                if listed[name, group]:
                    listed[name, group] -= 1
                else:
                    missing.append(f"{name} ({why_missing(i)})")
            if not missing:
                return
            if reactor.seconds() >= until:
                have = len(wanted) - len(missing)
                raise DemoError(f"after {seconds:g} s the daemon has {have} of the "
                                f"{len(wanted)} singers; missing: {'; '.join(missing)} "
                                f"(its log says more)")
            await task.deferLater(reactor, POLL, lambda: None)
    finally:
        await desk.close()


# -- what the daemon recorded ---------------------------------------------------------------

@attrs.frozen
class Record:
    """A session as the daemon recorded it."""

    directory: str
    summary: SessionSummary  # its session.json


async def session_record(reactor, daemon: Daemon, before: set, director_port: int):
    """The session the demo's director just played, from the daemon's files: a Record once
    its tracks are written, or None if its recordings are not on this machine."""
    if daemon.room is not None:
        session = daemon.room.last_session
        if session is None or session.recorder is None:
            return None
        await threads.deferToThread(session.recorder.wait, RECORD_TIMEOUT)
        return _read(session.recorder.directory)
    # the daemon made the session's folder when the session began: it is there by now
    new = sorted(daemon.session_dirs() - before)
    if not new:
        return None
    sessions = os.path.join(daemon.data_dir, "sessions")
    directory = os.path.join(sessions, new[-1])
    for name in new:  # ours, if the daemon saw our director's port
        summary = _summary(os.path.join(sessions, name))
        if summary and summary.director.endswith(f":{director_port}"):
            directory = os.path.join(sessions, name)
    for _ in range(int(RECORD_TIMEOUT / POLL)):
        summary = _summary(directory)
        if summary and summary.recorded:
            return Record(directory, summary)
        await task.deferLater(reactor, POLL, lambda: None)
    raise DemoError(f"the daemon has not finished writing {directory} after {RECORD_TIMEOUT:g} s")


def _read(directory):
    summary = _summary(directory)
    return Record(directory, summary) if summary is not None else None


def _summary(directory) -> SessionSummary | None:
    try:
        return read_summary(directory)
    except (OSError, ValueError):  # not written yet, or being written
        return None


async def singers_mixed_per_desk(reactor, daemon: Daemon) -> collections.Counter:
    """(name, group) of the singers in the daemon's last session, as its desk lists them
    (for a daemon whose recordings are elsewhere)."""
    desk = await open_desk(reactor, daemon, reactor.seconds() + 5)
    try:
        return collections.Counter((s.name, s.group) for s in await desk.list(everyone=False))
    except DeskError as e:
        raise DemoError(f"the daemon's mixing desk: {e}") from None
    finally:
        await desk.close()
