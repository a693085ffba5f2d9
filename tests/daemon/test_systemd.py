"""The systemd units in contrib/ and socket activation of the real daemon.

The socket-activation tests start ``systemd-socket-activate``, which binds the four
listening sockets and execs ``twistd choir`` in place with LISTEN_FDS, LISTEN_PID and
LISTEN_FDNAMES set, as systemd does for contrib/choir.socket. They then speak the
rehearsal protocol on the singers, director and desk ports and HTTP (the runner API and
the media API) on the fourth, and check in /proc that the daemon listens only on the
sockets it inherited. They fail (never skip) when the systemd tools are missing.

Over 400 lines: the units and a socket-activated daemon speaking every protocol, which need
the same process plumbing.
"""
import http.client
import json
import os
from pathlib import Path
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from choir_protocol.rehearsal.chunks import decode_index, encode_index
from choir_protocol.rehearsal.constants import TRACK_CHUNK_SIZE, Signal
from choir_protocol.rehearsal.desk import MessageReader, encode_message
from choir_protocol.rehearsal.header import Header
from choir_twisted.service import Options

from ..support import paths
from ..support.ports import free_ports

ROOT = Path(paths.ROOT)
CONTRIB = ROOT / "contrib"
INSTALLED_TWISTD = "/opt/choir/venv/bin/twistd"
INSTALLED_DATA_DIR = "/var/lib/choir"
DROPIN_PATH = "/etc/systemd/system/choir.service.d/socket-activation.conf"
ROLES = ("singers", "director", "desk", "http")  # the order of choir.socket
DEADLINE = 10.0  # seconds for any one step; a run normally takes about two


def _twistd() -> str:
    for candidate in (Path(sys.executable).parent / "twistd", ROOT / ".venv" / "bin" / "twistd"):
        if os.access(candidate, os.X_OK):
            return str(candidate)
    pytest.fail(f"no twistd next to {sys.executable} nor in {ROOT}/.venv/bin: "
                "run the tests with the project's virtualenv")


def _systemd_tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/bin:/bin:/usr/sbin:/sbin")
    if path is None:
        pytest.fail(f"{name} is not installed: these tests need systemd's tools "
                    "(Debian/Ubuntu: apt install systemd)")
    return path


# -- the units as shipped ---------------------------------------------------------------

def _unit_values(text: str, key: str) -> list[str]:
    """Values of ``key=`` in a unit file, continuation lines joined."""
    text = text.replace("\\\n", " ")
    return [line.split("=", 1)[1].strip() for line in text.splitlines()
            if line.strip().startswith(key + "=")]


def socket_activation_dropin() -> str:
    """The drop-in that contrib/README.md tells operators to install, verbatim."""
    readme = (CONTRIB / "README.md").read_text()
    for block in re.findall(r"```ini\n(.*?)```", readme, re.S):
        if block.startswith(f"# {DROPIN_PATH}\n"):
            return block
    pytest.fail(f"contrib/README.md has no ```ini block starting with '# {DROPIN_PATH}'")


def dropin_command() -> list[str]:
    """The drop-in's ExecStart= as an argument list."""
    commands = [v for v in _unit_values(socket_activation_dropin(), "ExecStart") if v]
    assert len(commands) == 1, commands
    return shlex.split(commands[0])


def test_units_agree_with_the_daemon_defaults():
    service = (CONTRIB / "choir.service").read_text()
    (command,) = _unit_values(service, "ExecStart")
    args = shlex.split(command)
    assert args[:args.index("choir")] == [INSTALLED_TWISTD, "--nodaemon", "--pidfile=",
                                          "--logfile=-"]
    assert args[args.index("--data-dir") + 1] == INSTALLED_DATA_DIR
    assert _unit_values(service, "StateDirectory") == ["choir"]

    # choir.socket lists the daemon's default ports in the order the drop-in takes them.
    defaults = Options()
    listen = _unit_values((CONTRIB / "choir.socket").read_text(), "ListenStream")
    assert listen == [f"0.0.0.0:{defaults[role].split(':')[1]}" for role in ROLES]
    args = dropin_command()
    assert args[0] == INSTALLED_TWISTD
    assert args[args.index("--data-dir") + 1] == INSTALLED_DATA_DIR
    for index, role in enumerate(ROLES):
        assert args[args.index(f"--{role}") + 1] == f"systemd:domain=INET:index={index}"


def _install_units(directory: Path, *, socket_activation: bool) -> list[str]:
    """Copy the units (ExecStart pointing at this virtualenv) into ``directory``."""
    twistd = _twistd()
    service = directory / "choir.service"
    service.write_text((CONTRIB / "choir.service").read_text().replace(INSTALLED_TWISTD, twistd))
    if not socket_activation:
        return [str(service)]
    shutil.copy(CONTRIB / "choir.socket", directory / "choir.socket")
    dropin = directory / "choir.service.d" / "socket-activation.conf"
    dropin.parent.mkdir()
    dropin.write_text(socket_activation_dropin().replace(INSTALLED_TWISTD, twistd))
    return [str(service), str(directory / "choir.socket")]


@pytest.mark.parametrize("socket_activation", [False, True], ids=["service", "socket+dropin"])
def test_systemd_analyze_verify_accepts_the_units(tmp_path, socket_activation):
    analyze = _systemd_tool("systemd-analyze")
    units = _install_units(tmp_path, socket_activation=socket_activation)
    result = subprocess.run([analyze, "verify", "--man=no", *units], capture_output=True,
                            text=True, timeout=60)
    output = result.stdout + result.stderr
    # verify exits 0 on unknown keys or bad values but warns: any word about our units fails.
    complaints = [line for line in output.splitlines() if "choir" in line]
    assert result.returncode == 0 and not complaints, output
    if socket_activation:  # control: a mistake in the drop-in is noticed, so it was read
        dropin = tmp_path / "choir.service.d" / "socket-activation.conf"
        dropin.write_text(dropin.read_text() + "ExecStrat=/bin/false\n")
        result = subprocess.run([analyze, "verify", "--man=no", *units], capture_output=True,
                                text=True, timeout=60)
        assert "ExecStrat" in result.stdout + result.stderr


# -- socket activation of the real daemon ------------------------------------------------

class SocketActivated:
    """``systemd-socket-activate -l ... --fdname=... twistd ... choir ...`` in its own
    process group; ``listeners`` are (role, fd name) in LISTEN_FDS order."""

    def __init__(self, output_path: Path, listeners, twistd_args):
        self.ports = dict(zip((role for role, _ in listeners), free_ports(len(listeners))))
        self.order = [role for role, _ in listeners]
        command = [_systemd_tool("systemd-socket-activate")]
        for role, _ in listeners:
            command += ["-l", f"127.0.0.1:{self.ports[role]}"]
        # Twisted only trusts LISTEN_FDS when LISTEN_FDNAMES has as many names (systemd
        # always sets it); systemd-socket-activate sets it only if told.
        command.append("--fdname=" + ":".join(name for _, name in listeners))
        command += twistd_args
        env = {k: v for k, v in os.environ.items() if not k.startswith("LISTEN_")}
        env["PYTHONUNBUFFERED"] = "1"
        self.output_path = output_path  # stdout + stderr: what the journal would get
        with open(self.output_path, "wb") as output:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=output,
                                            stderr=subprocess.STDOUT, cwd=output_path.parent,
                                            env=env, start_new_session=True)
        self.sockets = []

    def output(self) -> str:
        return self.output_path.read_text(errors="replace")

    def fail(self, message: str):
        pytest.fail(f"{message}\n--- daemon output ---\n{self.output()}")

    def wait_listening(self) -> bool:
        """Until systemd-socket-activate has bound every port (before the daemon runs);
        False if a port was taken meanwhile (by some other program's outgoing connection)."""
        end = time.monotonic() + DEADLINE
        while time.monotonic() < end:
            if self.process.poll() is not None:
                if "Address already in use" in self.output():
                    return False
                self.fail(f"systemd-socket-activate exited with {self.process.returncode}")
            if self.output().count("Listening on ") >= len(self.ports):
                break
            time.sleep(0.02)
        else:
            self.fail("systemd-socket-activate did not report its listening sockets")
        # Before any connection it is still systemd-socket-activate, holding the sockets
        # it bound as fds 3, 4, ... (in -l order): note which socket listens on which port.
        pid = self.process.pid
        assert os.readlink(f"/proc/{pid}/exe").endswith("systemd-socket-activate")
        fds, listening = _socket_fds(pid), _listening_tcp_inodes()
        self.bound_by_systemd = {}
        for offset, role in enumerate(self.order):
            inode = fds.get(3 + offset)
            assert inode in listening, f"fd {3 + offset} is not a listening socket: {fds}"
            assert listening[inode] == self.ports[role], (role, listening[inode])
            self.bound_by_systemd[inode] = self.ports[role]
        return True

    def connect(self, role: str) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", self.ports[role]), timeout=DEADLINE)
        self.sockets.append(s)
        return s

    def stop(self) -> None:
        for s in self.sockets:
            s.close()
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
            except ProcessLookupError:
                pass
        else:  # the group may outlive its leader
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _recv_exactly(sock: socket.socket, size: int, end: float) -> bytes:
    data = b""
    while len(data) < size:
        sock.settimeout(max(0.01, end - time.monotonic()))
        try:
            more = sock.recv(size - len(data))
        except socket.timeout:
            raise AssertionError(f"got {len(data)} of {size} bytes before the deadline") from None
        if not more:
            raise AssertionError(f"connection closed after {len(data)} of {size} bytes")
        data += more
    return data


def _desk_list_until(daemon: SocketActivated, name: str) -> list:
    """Ask the desk for the singers until ``name`` is among them (the daemon starts
    when the first connection arrives, and accepts the ports in no set order)."""
    desk = daemon.connect("desk")
    desk.sendall(Header("desk", "No group").to_bytes())
    reader = MessageReader()
    end = time.monotonic() + DEADLINE
    singers = None
    while time.monotonic() < end:
        desk.sendall(encode_message({"action": "list", "all": True}))
        messages = []
        while not messages:
            desk.settimeout(max(0.01, end - time.monotonic()))
            try:
                data = desk.recv(65536)
            except socket.timeout:
                daemon.fail(f"no desk reply within {DEADLINE} s (last list: {singers})")
            if not data:
                daemon.fail("the daemon closed the desk connection")
            messages = reader.feed(data)
        singers = messages[-1]
        if any(singer["name"] == name for singer in singers):
            return singers
        time.sleep(0.05)
    daemon.fail(f"singer {name!r} never listed by the desk: {singers}")


def _http_problem(daemon: SocketActivated, method: str, path: str, body=None) -> dict:
    """``method path`` on the HTTP port: the answer must be an application/problem+json
    document (the runner API's and the media API's refusals), returned decoded."""
    connection = http.client.HTTPConnection("127.0.0.1", daemon.ports["http"], timeout=DEADLINE)
    try:
        headers = {}
        if body is not None:
            body = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        content_type, data = response.getheader("Content-Type"), response.read()
    finally:
        connection.close()
    assert content_type == "application/problem+json", (method, path, content_type, data)
    problem = json.loads(data)
    assert problem["status"] == response.status, (method, path, response.status, problem)
    return problem


def _listening_tcp_inodes() -> dict[int, int]:
    """socket inode -> port of every listening TCP socket in this network namespace."""
    listening = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A":  # TCP_LISTEN
                listening[int(fields[9])] = int(fields[1].rsplit(":", 1)[1], 16)
    return listening


def _socket_fds(pid: int) -> dict[int, int]:
    """fd -> socket inode of the process's open sockets."""
    fds = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        match = re.fullmatch(r"socket:\[(\d+)\]", target)
        if match:
            fds[int(fd)] = int(match.group(1))
    return fds


def _run_rehearsal(daemon: SocketActivated, data_dir: Path) -> None:
    try:
        _rehearse(daemon, data_dir)
    except (AssertionError, OSError) as e:  # show what the daemon said
        daemon.fail(f"{type(e).__name__}: {e}")


def _rehearse(daemon: SocketActivated, data_dir: Path) -> None:
    singer = daemon.connect("singers")  # this first connection makes it exec twistd
    singer.sendall(Header("test", "Alto").to_bytes())
    singers = _desk_list_until(daemon, "test")
    assert [(s["name"], s["group"]) for s in singers] == [("test", "Alto")]

    # A director with one singer connected opens a session; its chunk 0 invites the singer.
    director = daemon.connect("director")
    director.sendall(Header("director", "No group").to_bytes() + encode_index(0) + bytes(512))
    end = time.monotonic() + DEADLINE
    while True:
        chunk = _recv_exactly(singer, TRACK_CHUNK_SIZE, end)
        index = decode_index(chunk)
        if index != Signal.KEEPALIVE:
            break
    assert index == 0 and chunk == encode_index(0) + bytes(512), chunk[:8]

    # The session is being recorded in --data-dir.
    while not any(path.is_dir() for path in (data_dir / "sessions").glob("*")):
        if time.monotonic() > end:
            daemon.fail(f"no session directory in {data_dir}/sessions")
        time.sleep(0.02)

    # The runner API and the media API answer on the fourth inherited socket (the HTTP
    # service starts after its store is open; till then the request waits in the queue).
    problem = _http_problem(daemon, "POST", "/api/v1/runners/jobs/request",
                            {"runnerToken": "not-a-runner-token"})
    assert (problem["status"], problem["code"]) == (404, "unknown_runner_token"), problem
    problem = _http_problem(daemon, "GET", "/api/v1/media/nope")  # a media is no one's
    assert (problem["status"], problem["code"]) == (401, "unauthorized"), problem

    # The same process is now twistd (exec'd in place, so LISTEN_PID matched) ...
    pid = daemon.process.pid
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert any(arg.endswith(b"twistd") for arg in cmdline) and b"choir" in cmdline, cmdline
    # ... and listens on exactly the sockets systemd-socket-activate bound (Twisted dups
    # the inherited fds and closes the originals: compare sockets, not fd numbers). A
    # port bound by the daemon itself would be a new socket.
    listening = _listening_tcp_inodes()
    daemon_listening = {inode: listening[inode] for inode in _socket_fds(pid).values()
                        if inode in listening}
    assert daemon_listening == daemon.bound_by_systemd, (daemon_listening, daemon.bound_by_systemd)
    assert "Traceback" not in daemon.output(), daemon.output()


@pytest.fixture
def socket_activated(tmp_path):
    daemons = []

    def start(listeners, twistd_args):
        for attempt in range(3):
            daemon = SocketActivated(tmp_path / f"daemon-{attempt}.out", listeners, twistd_args)
            daemons.append(daemon)
            if daemon.wait_listening():
                return daemon
            daemon.stop()  # a port was taken between picking and binding it: pick others
        daemon.fail("three attempts, each with a port taken before it could be bound")

    yield start
    for daemon in daemons:
        daemon.stop()


def test_socket_activation_with_the_documented_dropin(tmp_path, socket_activated):
    """contrib/choir.socket + the README's drop-in: fds by position, as systemd passes
    the four sockets of one socket unit (all named after the unit)."""
    data_dir = tmp_path / "data"
    args = dropin_command()
    args[0] = _twistd()
    args[args.index("--data-dir") + 1] = str(data_dir)
    assert "--no-runners" not in args
    daemon = socket_activated([(role, "choir.socket") for role in ROLES], args)
    _run_rehearsal(daemon, data_dir)


def test_socket_activation_by_name(tmp_path, socket_activated):
    """One socket unit per port with FileDescriptorName= (docs/deployment.md): the
    daemon finds its sockets by name, whatever order they come in."""
    data_dir = tmp_path / "data"
    args = [_twistd(), "--nodaemon", "--pidfile=", "--logfile=-", "choir",
            "--data-dir", str(data_dir)]
    for role in ROLES:
        args += [f"--{role}", f"systemd:domain=INET:name={role}"]
    listeners = [("desk", "desk"), ("http", "http"), ("singers", "singers"),
                 ("director", "director")]
    daemon = socket_activated(listeners, args)
    _run_rehearsal(daemon, data_dir)


def test_systemd_analyze_verify_accepts_the_runner_unit(tmp_path):
    analyze = _systemd_tool("systemd-analyze")
    runner = os.path.join(os.path.dirname(_twistd()), "choir-runner")
    assert os.path.exists(runner)
    unit = tmp_path / "choir-runner.service"
    unit.write_text((CONTRIB / "choir-runner.service").read_text()
                    .replace("/opt/choir/venv/bin/choir-runner", runner))
    result = subprocess.run([analyze, "verify", "--man=no", str(unit)], capture_output=True,
                            text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "choir" not in output, output
    (command,) = _unit_values(unit.read_text(), "ExecStart")
    args = shlex.split(command)
    assert args[:2] == [runner, "server"]
    # the options it gives are the program's own
    from choir_clients.runner.runner import ServerOptions
    options = ServerOptions()
    options.parseOptions(args[2:])
    assert (options["concurrency"], options["work-dir"]) == (2, "/var/lib/choir-runner/work")
