"""Fixtures every test directory shares. Helpers that are not fixtures (peers, daemons run
by trial TestCases, reference codecs) are in tests/support/.

No test reaches the user's own files: the whole run gets a config folder of its own
($CHOIR_CONFIG_DIR, inherited by every program a test starts), and a test that needs one
to itself asks for ``config_dir``.
"""
import os

import pytest

from .support.daemon_process import TwistdDaemon


@pytest.fixture(autouse=True, scope="session")
def _private_config_for_the_run(tmp_path_factory):
    old = os.environ.get("CHOIR_CONFIG_DIR")
    os.environ["CHOIR_CONFIG_DIR"] = str(tmp_path_factory.mktemp("config"))
    yield
    if old is None:
        os.environ.pop("CHOIR_CONFIG_DIR", None)
    else:
        os.environ["CHOIR_CONFIG_DIR"] = old


@pytest.fixture
def config_dir(tmp_path, monkeypatch):
    """A config folder of this test's own, for the programs it runs and for itself."""
    folder = tmp_path / "config"
    folder.mkdir()
    monkeypatch.setenv("CHOIR_CONFIG_DIR", str(folder))
    return folder


@pytest.fixture
def data_dir(tmp_path):
    """Where a daemon of this test keeps its data (not made yet: the daemon makes it)."""
    return tmp_path / "choir-data"


@pytest.fixture
def twistd_daemon(data_dir, tmp_path):
    """A real ``twistd -n choir`` on free loopback ports, stopped after the test; call it
    with more ``twistd choir`` options: ``daemon = twistd_daemon("--max-singers", "2")``."""
    started = []

    def start(*options: str, env=None) -> TwistdDaemon:
        daemon = TwistdDaemon(str(data_dir), str(tmp_path / f"twistd-{len(started)}.log"),
                              *options, env=env)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.stop()
