"""choir-demo --server against a separate real daemon (twistd): the director starts only
once the daemon has every singer, even those behind slow links, and the report comes
from what the daemon recorded."""
import json
import os
import re
import subprocess
import sys

DEMO = os.path.join(os.path.dirname(sys.executable), "choir-demo")


def demo_against(daemon, *args, timeout=90):
    return subprocess.run(
        [DEMO, "--server", "127.0.0.1", "--singer-port", str(daemon.ports["singers"]),
         "--director-port", str(daemon.ports["director"]), "--desk-port",
         str(daemon.ports["desk"]), *args], capture_output=True, text=True, timeout=timeout)


def the_session(data_dir):
    (session,) = (data_dir / "sessions").iterdir()
    return session, json.loads((session / "session.json").read_text())


def test_every_singer_behind_slow_links_is_mixed(data_dir, twistd_daemon):
    """The singers' headers cross links of 0, 0.75 and 1.5 s: the daemon has the last one
    1.5 s after its client connected. (choir-demo used to start at once: 1 singer mixed.)"""
    daemon = twistd_daemon()
    result = demo_against(daemon, "--singers", "3", "--seconds", "2", "--delays", "0,0.75,1.5",
                          "--jitter", "0", "-d", str(data_dir))
    daemon.stop()  # its session written whole
    assert result.returncode == 0, result.stdout + result.stderr
    assert "The daemon has all 3 singers" in result.stdout
    assert "The rehearsal: 3 of 3 singers mixed, all in time; 2.0 s of music." in result.stdout
    session, summary = the_session(data_dir)
    assert [(s["name"], s["state"], s["chunks"], s["missing"]) for s in summary["singers"]] == [
        (f"singer{i}", "active", 172, 0) for i in (1, 2, 3)]
    assert f"the mix            {session / 'mix.flac'}" in result.stdout
    assert "The daemon publishes the recording itself" in result.stdout


def test_the_report_says_who_the_daemon_did_not_mix(data_dir, twistd_daemon):
    """singer2's link takes 3.5 s each way: the daemon has it before the session, but its
    check-in comes back after the 2 s track is mixed. The report says so, from session.json,
    and the demo exits with 1."""
    daemon = twistd_daemon()
    result = demo_against(daemon, "--singers", "2", "--seconds", "2", "--delays", "0,3.5",
                          "--jitter", "0", "-d", str(data_dir))
    daemon.stop()  # its session written whole
    assert result.returncode == 1, result.stdout + result.stderr
    assert "The rehearsal: 1 of 2 singers mixed, those in time; 2.0 s of music." in result.stdout
    assert re.search(r"^  singer1  Soprano +sings E5 +in time ", result.stdout, re.M)
    assert re.search(r"^  singer2  Mezzo +sings C5 +not mixed: its check-in did not reach",
                     result.stdout, re.M), result.stdout
    _, summary = the_session(data_dir)
    assert [(s["name"], s["state"]) for s in summary["singers"]] == [
        ("singer1", "active"), ("singer2", "invited")]


def test_a_desk_served_only_to_directors_and_recordings_elsewhere(data_dir, twistd_daemon,
                                                                 tmp_path):
    """The daemon serves its desk only to a director's address (as to a demo on another
    machine): a director's header opens it. Its recordings are not where -d says: the
    report says who was mixed from the desk, and that timing needs the recordings."""
    daemon = twistd_daemon("--desk-from", "192.0.2.0/24")
    result = demo_against(daemon, "--singers", "2", "--seconds", "1.5", "--delays", "0,1",
                          "-d", str(tmp_path / "elsewhere"))
    daemon.stop()  # its session written whole
    assert result.returncode == 0, result.stdout + result.stderr
    assert "The rehearsal: 2 of 2 singers mixed, the mix lines up; 1.5 s of music." in result.stdout
    assert "  singer2  Mezzo     sings C5   mixed " in result.stdout
    assert "needs the daemon's recordings" in result.stdout
    _, summary = the_session(data_dir)
    assert [(s["name"], s["state"]) for s in summary["singers"]] == [
        ("singer1", "active"), ("singer2", "active")]
    with open(daemon.log_file) as log:
        assert "the mixing desk is served only to the director's address" in log.read()


def test_singers_the_daemon_never_gets_are_named(data_dir, twistd_daemon):
    daemon = twistd_daemon("--max-singers", "2")
    result = demo_against(daemon, "--singers", "3", "--seconds", "1", "--wait", "3",
                          "-d", str(data_dir))
    daemon.stop()
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "choir-demo: after 3 s the daemon has 2 of the 3 singers; missing: singer3 (The server "
        "refused this singer: the room is full (2 singers at most)) (its log says more)"], \
        result.stderr
    assert not list(data_dir.glob("sessions/*"))  # no session was started without them
