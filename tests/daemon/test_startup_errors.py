"""``twistd choir`` start-up errors (issue 11, items 3, 6, 9): each is one line naming the
option and the cause, a non-zero exit, and no data directory left behind. The real twistd,
as a subprocess; a port in use is a socket this test really listens on."""
from http.client import HTTPConnection
import os
import signal
import socket
import subprocess
import time

import pytest
from twisted.python import usage

from choir_protocol.rehearsal.header import Header
from choir_twisted.endpoint_check import desk_for_director
from choir_twisted.service import Options

from ..support.daemon_process import VENV_BIN, free_port, wait_for_port

TWISTD = os.path.join(VENV_BIN, "twistd")
HELP = "; see 'twistd choir --help'"
ROLES = ("singers", "director", "desk", "http")


def ephemeral(*others) -> list[str]:
    """Options for free loopback ports for every role but ``others``."""
    return [f"--{role}=tcp:0:interface=127.0.0.1" for role in ROLES if role not in others]


EPHEMERAL = ephemeral()


def twistd_choir(*args, daemonize=False, cwd=None):
    """``twistd [-n] --pidfile= choir ARGS`` to its end -> (exit status, its output lines)."""
    command = [TWISTD, *([] if daemonize else ["-n"]), "--pidfile=", "choir", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=20, cwd=cwd,
                            stdin=subprocess.DEVNULL)
    return result.returncode, (result.stdout + result.stderr).splitlines()


@pytest.fixture
def files(tmp_path):
    (tmp_path / "notmedia.txt").write_text("hello, not a picture\n")
    (tmp_path / "plain-file").write_text("x")
    return tmp_path


def listening_socket(port=0, host="127.0.0.1"):
    s = socket.socket()
    s.bind((host, port))
    s.listen()
    return s


BAD_VALUES = [  # (arguments, the one line after "twistd choir: ")
    (["--singers", "tcp:notaport"], "--singers tcp:notaport: invalid port 'notaport'" + HELP),
    (["--director", "tcp:70000"], "--director tcp:70000: port 70000 is out of range "
                                  "(0 to 65535)" + HELP),
    (["--http", "tcp:8000:bogus=1"], "--http tcp:8000:bogus=1: unknown parameter 'bogus' "
                                     "for tcp" + HELP),
    (["--http", "htp:8000"], "--http htp:8000: unknown endpoint type 'htp' (give tcp:PORT, "
                             "tcp6:PORT, ssl:PORT:privateKey=FILE, unix:PATH, "
                             "systemd:domain=INET:index=N)" + HELP),
    (["--singers", "systemd:domain=INET:index=0"],
     "--singers systemd:domain=INET:index=0: no such socket was passed by systemd (start the "
     "daemon from its .socket unit, or give a tcp: endpoint)" + HELP),
    (["-d", "{tmp}/plain-file/sub"], "--data-dir {tmp}/plain-file/sub: {tmp}/plain-file is a "
                                     "file, not a directory" + HELP),
    (["--max-singers", "many"], "--max-singers: 'many' is not a whole number" + HELP),
    (["--monitor-level", "2"], "--monitor-level must be between 0 and 1" + HELP),
    (["--no-such-option"], "option --no-such-option not recognized" + HELP),
    (["--cover", "{tmp}/notmedia.txt"], "--cover {tmp}/notmedia.txt: not a PNG, JPEG, WebP or "
                                        "GIF picture that ffmpeg can read (Invalid data found "
                                        "when processing input)" + HELP),
    (["--cover", "{tmp}/none.png"], "--cover {tmp}/none.png: no such file" + HELP),
    (["--director", "tcp:9000", "--http", "tcp:8980"],
     "--http tcp:8980: the same port as --desk" + HELP),
    (["--director", "tcp:15"], "--desk: the director's port 15 has no port 20 below it for "
                               "the desk; give --desk" + HELP),
]


@pytest.mark.parametrize("arguments, line", BAD_VALUES, ids=[" ".join(a) for a, _ in BAD_VALUES])
def test_a_bad_value_is_one_line_without_the_usage(files, arguments, line):
    data = files / "data" / "sub"
    arguments = [a.format(tmp=files) for a in arguments]
    code, lines = twistd_choir("-d", str(data), *arguments)
    assert code == 1, lines
    assert lines == ["twistd choir: " + line.format(tmp=files)]
    assert not (files / "data").exists()


def test_help_still_prints_the_whole_usage():
    code, lines = twistd_choir("--help")
    assert code == 0
    text = " ".join(" ".join(lines).split())
    assert "--singers=" in text and "--http=" in text and len(lines) > 30
    assert "(by default the director's port - 20 on its interface" in text


@pytest.mark.parametrize("daemonize", [False, True], ids=["nodaemon", "daemonized"])
def test_a_rehearsal_port_in_use_is_one_line_naming_the_option(files, daemonize):
    taken = listening_socket()
    port = taken.getsockname()[1]
    try:
        code, lines = twistd_choir("-d", str(files / "data" / "sub"), *ephemeral("director"),
                                   "--director", f"tcp:{port}:interface=127.0.0.1",
                                   daemonize=daemonize, cwd=files)
    finally:
        taken.close()
    assert code == 1, lines
    assert lines == [f"twistd choir: --director tcp:{port}:interface=127.0.0.1: port {port} on "
                     f"127.0.0.1 is in use (another program listens there; choose another "
                     f"with --director)"]
    assert not (files / "data").exists()
    assert not (files / "twistd.log").exists()  # it stopped before its log started


def test_the_http_port_in_use_is_one_line_naming_the_option(files):
    taken = listening_socket(host="0.0.0.0")
    port = taken.getsockname()[1]
    try:
        code, lines = twistd_choir("-d", str(files / "data"), *ephemeral("http"),
                                   "--http", f"tcp:{port}")
    finally:
        taken.close()
    assert code == 1, lines
    assert lines == [f"twistd choir: --http tcp:{port}: port {port} is in use (another program "
                     f"listens there; choose another with --http)"]
    assert not (files / "data").exists()


def test_the_default_desk_in_use_says_where_its_port_came_from(files):
    taken = listening_socket()
    desk = taken.getsockname()[1]
    try:
        code, lines = twistd_choir("-d", str(files / "data"), *ephemeral("director", "desk"),
                                   "--director", f"tcp:{desk + 20}:interface=127.0.0.1")
    finally:
        taken.close()
    if code == 1 and "the director's port" not in lines[0]:
        pytest.skip(f"port {desk + 20} was taken by someone else: {lines}")
    assert code == 1, lines
    assert lines == [f"twistd choir: --desk tcp:{desk}:interface=127.0.0.1 (the director's "
                     f"port - 20): port {desk} on 127.0.0.1 is in use (another program "
                     f"listens there; choose another with --desk)"]


def test_a_data_directory_in_use_is_still_one_line(tmp_path):
    """The lock's refusal (datadir.py) comes before the ports are listened on."""
    from choir_twisted.datadir import lock_data_dir
    held = lock_data_dir(str(tmp_path))
    try:
        code, lines = twistd_choir("-d", str(tmp_path), *EPHEMERAL)
    finally:
        held.close()
    assert code == 1
    assert lines == [f"twistd choir: {tmp_path} is in use by another choir daemon "
                     f"(pid {os.getpid()}); give this one another --data-dir"]


# -- the desk follows the director (item 6) ------------------------------------------------

def test_the_default_desk_follows_the_director_on_its_interface():
    assert desk_for_director("tcp:9878") == "tcp:9858"
    assert desk_for_director("tcp:9878:interface=127.0.0.1") == "tcp:9858:interface=127.0.0.1"
    assert desk_for_director("tcp6:port=9878:interface=\\:\\:1") == "tcp6:port=9858:interface=\\:\\:1"
    assert desk_for_director("tcp:0") == "tcp:0"
    options = Options()
    options.parseOptions(["--no-record", "--no-runners", "--director", "tcp:9878"])
    assert options["desk"] == "tcp:9858"
    options = Options()
    options.parseOptions(["--no-record", "--no-runners"])
    assert options["desk"] == "tcp:8858"  # the director's default 8878 - 20
    options = Options()  # an explicit --desk wins, even with the default's value
    options.parseOptions(["--no-record", "--no-runners", "--director", "tcp:9878",
                          "--desk", "tcp:8858"])
    assert options["desk"] == "tcp:8858"
    with pytest.raises(usage.UsageError, match="give --desk"):  # in-process: still UsageError
        Options().parseOptions(["--no-record", "--no-runners",
                                "--director", "unix:/tmp/director.sock"])


def two_free_ports_20_apart() -> int:
    """A free port P whose P - 20 is free too -> P."""
    for _ in range(50):
        port = free_port()
        try:
            listening_socket(port - 20).close()
            return port
        except OSError:
            continue
    pytest.skip("no two free ports 20 apart")


def test_the_real_daemon_listens_for_the_desk_20_below_the_director(tmp_path):
    director = two_free_ports_20_apart()
    log = tmp_path / "twistd.log"
    process = subprocess.Popen(
        [TWISTD, "-n", "--pidfile=", "-l", str(log), "choir", "--no-record", "--no-runners",
         "--singers", "tcp:0:interface=127.0.0.1",
         "--director", f"tcp:{director}:interface=127.0.0.1"], stdin=subprocess.DEVNULL)
    try:
        wait_for_port(director - 20, process)  # it accepts before its log is written:
        wait_for_log(log, f"Desk port starting on {director - 20}", process)
    finally:
        process.terminate()
        process.wait(10)


# -- DATA_DIR/http-url ---------------------------------------------------------------------

def wait_for_log(log, text, process, deadline=20.0) -> None:
    end = time.monotonic() + deadline
    while not (log.exists() and text in log.read_text()):
        assert process.poll() is None, f"twistd exited with {process.returncode}"
        assert time.monotonic() < end, f"no {text!r} in {log} after {deadline} s"
        time.sleep(0.05)


def wait_for_file(path, process, deadline=20.0) -> str:
    end = time.monotonic() + deadline
    while not path.exists():
        assert process.poll() is None, f"twistd exited with {process.returncode}"
        assert time.monotonic() < end, f"no {path} after {deadline} s"
        time.sleep(0.05)
    return path.read_text()


@pytest.mark.parametrize("http, public_url, expected", [
    ("tcp:0:interface=127.0.0.1", None, "http://127.0.0.1:{port}\n"),
    ("tcp:0", None, f"http://{socket.gethostname()}:{{port}}\n"),
    ("tcp:0:interface=127.0.0.1", "https://choir.example/choir/", "https://choir.example/choir\n"),
], ids=["interface", "all-interfaces", "public-url"])
def test_the_daemon_writes_its_http_url_once_it_listens(tmp_path, http, public_url, expected):
    data = tmp_path / "data"
    log = tmp_path / "twistd.log"
    process = subprocess.Popen(
        [TWISTD, "-n", "--pidfile=", "-l", str(log), "choir", "-d", str(data), "--no-record",
         *ephemeral("http"), "--http", http, *(["--public-url", public_url] if public_url else [])],
        stdin=subprocess.DEVNULL)
    try:
        url = wait_for_file(data / "http-url", process)
        wait_for_log(log, "Site starting on ", process)
        port = int(log.read_text().split("Site starting on ")[1].split()[0])
        assert url == expected.format(port=port)
        # the port the file names is the runner API's: an unknown runner token is refused
        connection = HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("POST", "/api/v1/runners/jobs/request", body=b'{"runnerToken": "x"}',
                           headers={"Content-Type": "application/json"})
        assert connection.getresponse().status in (400, 401, 403, 404)
        connection.close()
    finally:
        process.terminate()
        process.wait(10)


# -- daemonized: the ports listened on before the fork serve in the daemon ------------------

def test_a_daemonized_daemon_serves_on_the_ports_it_listened_before_forking(tmp_path):
    singers = free_port()
    pidfile, log = tmp_path / "choir.pid", tmp_path / "twistd.log"
    result = subprocess.run(
        [TWISTD, f"--pidfile={pidfile}", "-l", str(log), "choir", "-d", str(tmp_path / "data"),
         *ephemeral("singers"), "--singers", f"tcp:{singers}:interface=127.0.0.1"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    pid = int(pidfile.read_text())
    try:
        assert pid != os.getpid()
        with socket.create_connection(("127.0.0.1", singers), timeout=10) as s:
            s.sendall(Header("daemonized", "Alto", "choir-test").to_bytes())
            end = time.monotonic() + 20
            while "'daemonized'" not in log.read_text():
                assert time.monotonic() < end, log.read_text()
                time.sleep(0.05)
        assert "joined" in log.read_text()
    finally:
        os.kill(pid, signal.SIGTERM)
        end = time.monotonic() + 20
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < end:
            time.sleep(0.05)
    assert not os.path.exists(f"/proc/{pid}")
