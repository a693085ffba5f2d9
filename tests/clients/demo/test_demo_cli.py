"""choir-demo as a user runs it: its help and version, one-line errors, and --serve (the
published recording's HLS stream over HTTP until Ctrl-C)."""
import os
import select
import signal
import subprocess
import sys
import time
import urllib.request

from choir_clients.version import program_version

from ...support.daemon_process import free_port

DEMO = os.path.join(os.path.dirname(sys.executable), "choir-demo")


def demo(*args, timeout=60):
    return subprocess.run([DEMO, *args], capture_output=True, text=True, timeout=timeout)


def test_help_starts_with_a_usage_line():
    result = demo("--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "Usage: choir-demo [options]"
    for option in ("--server", "--desk-port", "--wait", "--details", "--serve"):
        assert option in result.stdout


def test_version_is_the_programs_own():
    result = demo("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == program_version("choir-demo")
    assert "Twisted" not in result.stdout


def test_a_bad_server_is_one_line_and_status_2():
    result = demo("--server", "choir.example.org:notaport")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "choir-demo: error: --server: 'choir.example.org:notaport': the port must be a number "
        "from 1 to 65535", "(see 'choir-demo --help')"]
    result = demo("--server", "localhost", "--serve")
    assert result.returncode == 2
    assert "--serve serves what the demo publishes itself: not with --server" in result.stderr


def test_no_daemon_at_the_server_is_one_line_and_status_1(tmp_path):
    port = free_port()  # nothing listens on it, nor on the desk port beside it
    result = demo("--server", f"127.0.0.1:{port}", "--director-port", str(port),
                  "--desk-port", str(port), "--singers", "1", "--seconds", "1",
                  "-d", str(tmp_path), timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.splitlines() == [
        f"choir-demo: cannot reach the mixing desk at 127.0.0.1:{port} (connection refused: is "
        f"the choir server running there, on this port?); --desk-port gives the desk's port"]
    assert "Traceback" not in result.stdout + result.stderr


def _read_until(process, text: str, deadline: float) -> str:
    """The process's output until a line holding ``text`` (AssertionError past the deadline)."""
    out = b""
    end = time.monotonic() + deadline
    fd = process.stdout.fileno()
    while text.encode() not in out:
        left = end - time.monotonic()
        if left <= 0 or process.poll() is not None and not select.select([fd], [], [], 0)[0]:
            raise AssertionError(f"no {text!r} from choir-demo; it said:\n{out.decode()}")
        if select.select([fd], [], [], left)[0]:
            out += os.read(fd, 65536)
    while not out.endswith(b"\n") and select.select([fd], [], [], 5)[0]:
        out += os.read(fd, 65536)
    return out.decode()


def test_serve_keeps_the_hls_stream_up_until_ctrl_c(tmp_path):
    process = subprocess.Popen([DEMO, "--singers", "2", "--seconds", "1.5", "-d", str(tmp_path),
                                "--serve"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out = _read_until(process, "until Ctrl-C", deadline=90)
        assert "The rehearsal: 2 of 2 singers mixed, all in time" in out, out
        (url,) = [line.split()[-1] for line in out.splitlines() if "HLS over HTTP" in line]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/files/hls/master.m3u8")
        with urllib.request.urlopen(url, timeout=10) as response:
            master = response.read().decode()
        assert master.startswith("#EXTM3U") and "360p.m3u8" in master, master
        # a player follows the relative links, still signed
        with urllib.request.urlopen(url.replace("master.m3u8", "360p.m3u8"), timeout=10) as r:
            assert "#EXTINF" in r.read().decode()
        process.send_signal(signal.SIGINT)
        assert process.wait(20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()


def test_bad_paths_are_one_line_and_status_2(tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    result = demo("-d", str(a_file / "sub"), "--singers", "1")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"choir-demo: --data-dir {a_file / 'sub'}: Not a directory"]
    result = demo("-o", str(tmp_path / "none" / "mix.wav"))
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == (
        f"choir-demo: error: --output: there is no folder {tmp_path / 'none'}")
