"""One daemon per data directory: the lock, in-process and between real twistd processes;
what a killed daemon left half-written, removed at the next start."""
import os
import subprocess

import pytest
from twisted.internet import reactor
from twisted.trial import unittest

from choir_twisted.datadir import (LOCK_NAME, DataDirInUse, check_data_dir, first_missing,
                                   lock_data_dir, unmake_data_dir)
from choir_twisted.runners.service import RunnerService

from ..support.daemon_process import VENV_BIN
from ..support.paths import temp_dir


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


def test_a_second_daemon_on_a_live_data_directory_refuses_in_one_line(twistd_daemon, data_dir):
    first = twistd_daemon()
    sessions_before = sorted(os.listdir(data_dir / "sessions"))
    second = subprocess.run(
        [os.path.join(VENV_BIN, "twistd"), "-n", "--pidfile=", "choir", "-d", str(data_dir),
         "--singers", "tcp:0", "--director", "tcp:0", "--desk", "tcp:0", "--http", "tcp:0"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert second.returncode == 1, second
    assert second.stderr.strip().splitlines() == [
        f"twistd choir: {data_dir} is in use by another choir daemon "
        f"(pid {first.process.pid}); give this one another --data-dir"], second.stderr
    assert first.process.poll() is None
    assert sorted(os.listdir(data_dir / "sessions")) == sessions_before
    first.stop()
    twistd_daemon()  # the first one gone, the directory is free


def test_a_failed_start_removes_only_the_directories_it_made(tmp_path):
    data = tmp_path / "new" / "data"
    made = first_missing(str(data))
    assert made == str(tmp_path / "new")
    lock_data_dir(str(data)).close()
    os.makedirs(data / "sessions")
    unmake_data_dir(str(data), made)
    assert not (tmp_path / "new").exists() and tmp_path.exists()
    kept = tmp_path / "kept"  # existing: untouched, and what is in it
    (kept / "sessions").mkdir(parents=True)
    assert first_missing(str(kept)) is None
    unmake_data_dir(str(kept), None)
    assert (kept / "sessions").is_dir()
    filled = tmp_path / "filled" / "data"  # made, but something else wrote in it since
    made = first_missing(str(filled))
    lock_data_dir(str(filled)).close()
    (filled / "other").write_text("x")
    unmake_data_dir(str(filled), made)
    assert (filled / "other").exists() and not (filled / LOCK_NAME).exists()


def test_a_data_directory_under_a_file_is_refused_without_making_anything(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=f"^{tmp_path}/file is a file, not a directory$"):
        check_data_dir(str(tmp_path / "file" / "data"))
    with pytest.raises(ValueError, match="is a file"):
        check_data_dir(str(tmp_path / "file"))
    check_data_dir(str(tmp_path / "a" / "b"))
    assert sorted(os.listdir(tmp_path)) == ["file"]


class PartialUploadsTest(unittest.TestCase):
    async def test_uploads_a_killed_daemon_left_half_written_are_removed_at_start(self):
        data = temp_dir(self)
        left = [os.path.join(data, "media", "m1", ".upload-abc"),
                os.path.join(data, "media", "m1", "hls", ".upload-def"),
                os.path.join(data, "uploads", ".upload-123.mp4")]
        kept = [os.path.join(data, "media", "m1", "720p.mp4"),
                os.path.join(data, "sessions", "s1", ".upload-not-ours")]
        for path in left + kept:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(b"x" * 1000)
        runners = RunnerService(reactor, "tcp:0:interface=127.0.0.1", data)
        await runners.startService()
        self.addCleanup(runners.stopService)
        self.assertEqual([p for p in left if os.path.exists(p)], [])
        self.assertEqual([p for p in kept if os.path.exists(p)], kept)


class StoreModeTest(unittest.TestCase):
    async def test_a_new_store_and_its_wal_are_the_owners_alone(self):
        from choir_twisted.store.store import DB_NAME, Store
        data = temp_dir(self)
        old = os.umask(0o022)
        try:
            store = await Store.open(data_dir=data)
        finally:
            os.umask(old)
        self.addCleanup(store.close)
        await store.create_registration_token()
        for name in (DB_NAME, DB_NAME + "-wal"):
            self.assertEqual(os.stat(os.path.join(data, name)).st_mode & 0o777, 0o600, name)
