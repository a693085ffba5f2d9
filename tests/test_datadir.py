"""One daemon per data directory: the lock, in-process and between real twistd processes."""
import os
import subprocess

import pytest

from choir_twisted.datadir import LOCK_NAME, DataDirInUse, lock_data_dir

from .daemon_process import VENV_BIN, TwistdDaemon


def test_a_second_lock_is_refused_naming_the_holder(tmp_path):
    held = lock_data_dir(str(tmp_path))
    try:
        with pytest.raises(DataDirInUse, match=rf"in use by another choir daemon \(pid {os.getpid()}\)"):
            lock_data_dir(str(tmp_path))
    finally:
        held.close()
    lock_data_dir(str(tmp_path)).close()  # free again once the holder let go


def test_a_dead_holder_leaves_no_lock(tmp_path):
    subprocess.run(["python3", "-c", "import fcntl, sys; f = open(sys.argv[1], 'w'); "
                    "fcntl.flock(f, fcntl.LOCK_EX); f.write('99999')",
                    str(tmp_path / LOCK_NAME)], check=True)
    lock_data_dir(str(tmp_path)).close()


def test_a_second_daemon_on_a_live_data_directory_refuses_in_one_line(tmp_path):
    data = tmp_path / "data"
    first = TwistdDaemon(str(data), str(tmp_path / "first.log"))
    try:
        sessions_before = sorted(os.listdir(data / "sessions"))
        second = subprocess.run(
            [os.path.join(VENV_BIN, "twistd"), "-n", "--pidfile=", "choir", "-d", str(data),
             "--singers", "tcp:0", "--director", "tcp:0", "--desk", "tcp:0", "--http", "tcp:0"],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert second.returncode == 1, second
        assert second.stderr.strip().splitlines() == [
            f"twistd choir: {data} is in use by another choir daemon "
            f"(pid {first.process.pid}); give this one another --data-dir"], second.stderr
        assert first.process.poll() is None
        assert sorted(os.listdir(data / "sessions")) == sessions_before
    finally:
        first.stop()
    # the first one gone, the directory is free
    again = TwistdDaemon(str(data), str(tmp_path / "again.log"))
    again.stop()
