"""Running the daemon (in-process on loopback, or as a real twistd process) for tests."""
import os
import socket
import subprocess
import sys
import time

from twisted.internet import defer, endpoints, reactor, task, threads

from choir_twisted.rehearsal.protocols import (DeskProtocol, DirectorProtocol, RoomFactory,
                                               SingerProtocol)
from choir_twisted.rehearsal.room import Room

from .ports import free_port  # noqa: F401 (its users import it from here)

VENV_BIN = os.path.dirname(sys.executable)


class InProcessDaemon:
    """A Room with its three listeners on 127.0.0.1, ephemeral ports, real reactor."""

    def __init__(self, data_dir=None, **room_options):
        self.room = Room(reactor, data_dir=data_dir, **room_options)
        self.ports = {}
        for role, protocol_class in (("singers", SingerProtocol), ("director", DirectorProtocol),
                                     ("desk", DeskProtocol)):
            self.ports[role] = reactor.listenTCP(0, RoomFactory(self.room, protocol_class),
                                                 interface="127.0.0.1")
        for role, other in (("singers", "director"), ("director", "singers")):  # as makeService
            self.ports[role].factory.other_port = self.port(other)
        self.room.start()

    def port(self, role: str) -> int:
        return self.ports[role].getHost().port

    def endpoint(self, role: str):
        return endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", self.port(role))

    async def stop(self):
        """Stop listening, close every connection, and wait until they are closed."""
        for port in self.ports.values():
            await defer.maybeDeferred(port.stopListening)
        self.room.stop()
        while self.room.singers or self.room.session is not None:
            await task.deferLater(reactor, 0.01, lambda: None)
        await self.recording_done()

    async def recording_done(self):
        """Wait until the last session's files are all written (tracks converted)."""
        session = self.room.last_session
        if session is not None and session.recorder is not None:
            await threads.deferToThread(session.recorder.wait, 60)


async def until(condition, deadline=30.0, what="condition"):
    """Wait (polling the reactor's own state every 50 ms) until ``condition()`` holds."""
    for _ in range(int(deadline / 0.05)):
        if condition():
            return
        await task.deferLater(reactor, 0.05, lambda: None)
    raise AssertionError(f"timed out waiting for {what}")


def wait_for_port(port: int, process: subprocess.Popen, deadline: float = 20.0) -> None:
    """Block until ``port`` accepts connections; fail if the process dies first."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if process.poll() is not None:
            raise AssertionError(f"daemon exited with {process.returncode} before listening "
                                 f"(its output is in the log file's .out)")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port} after {deadline} s")


class TwistdDaemon:
    """``twistd -n choir`` as a real process on free loopback ports."""

    def __init__(self, data_dir: str, log_file: str, *extra: str, env=None, prefix=(),
                 twistd_options=()):
        """``extra``: more ``twistd choir`` options; ``env``: the process's environment
        [default: this one's]; ``prefix``: a command that runs twistd (e.g. in a namespace);
        ``twistd_options``: options of twistd itself (``--logger=...``)."""
        self.ports = {role: free_port() for role in ("singers", "director", "desk", "http")}
        args = [os.path.join(VENV_BIN, "twistd"), "-n", "--pidfile=", "-l", log_file,
                *twistd_options, "choir", "-d", data_dir]
        for role, port in self.ports.items():
            args.append(f"--{role}=tcp:{port}:interface=127.0.0.1")
        self.log_file = log_file
        with open(log_file + ".out", "ab") as out:  # a file: a pipe nobody reads can fill up
            self.process = subprocess.Popen([*prefix, *args, *extra], stdout=out,
                                            stderr=subprocess.STDOUT, env=env)
        for port in self.ports.values():
            wait_for_port(port, self.process)

    def endpoint(self, role: str):
        return endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", self.ports[role])

    def stop(self) -> int:
        self.process.terminate()
        try:
            return self.process.wait(10)
        finally:
            if self.process.poll() is None:
                self.process.kill()
