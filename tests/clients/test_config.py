"""Per-user configuration files."""
import json
import os
import pathlib
import stat

import pytest

from choir_clients import config
from choir_clients.config import ConfigError, config_dir, load_config, save_config


@pytest.fixture
def where(tmp_path, monkeypatch):
    directory = tmp_path / "deep" / "choir-config"
    monkeypatch.setenv("CHOIR_CONFIG_DIR", str(directory))
    return directory


def test_config_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv("CHOIR_CONFIG_DIR", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert config_dir() == tmp_path / "home" / ".config" / "choir"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert config_dir() == tmp_path / "xdg" / "choir"
    monkeypatch.setenv("CHOIR_CONFIG_DIR", str(tmp_path / "mine"))
    assert config_dir() == tmp_path / "mine"


def test_round_trip(where):
    singer = {"latency_samples": 1024, "confidence": 0.998, "measured": "2024-05-01T20:15:00+02:00",
              "input_device": "USB Audio", "output_device": 3, "name": "Zoë", "group": "Alto"}
    director = {"gains": {"Zoë/Alto": 1.5, "Bob/Bass": 0.75}}
    path = save_config("singer", singer)
    assert path == where / "singer.json"
    save_config("director", director)
    assert load_config("singer") == singer
    assert load_config("director") == director
    assert json.loads(path.read_text(encoding="utf-8")) == singer
    singer["latency_samples"] = 1536
    save_config("singer", singer)
    assert load_config("singer")["latency_samples"] == 1536


def test_private_file(where):
    path = save_config("singer", {"name": "a"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(where.stat().st_mode) == 0o700


def test_missing_file(where):
    assert load_config("singer") == {}
    assert not where.exists()  # reading creates nothing


def test_corrupt_file(where):
    where.mkdir(parents=True)
    (where / "singer.json").write_text('{"latency_samples": 10', encoding="utf-8")
    with pytest.raises(ConfigError, match=str(where / "singer.json")):
        load_config("singer")
    (where / "singer.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ConfigError, match="does not hold a JSON object"):
        load_config("singer")
    (where / "singer.json").write_bytes(b"\xff\xfe{}")
    with pytest.raises(ConfigError, match="singer.json"):
        load_config("singer")


def test_atomic_write(where, monkeypatch):
    """A failed write leaves the old file whole, and no temporary file behind."""
    save_config("singer", {"latency_samples": 512})
    real_replace = os.replace

    def crash(src, dst):
        assert pathlib.Path(src).parent == where and pathlib.Path(src).read_text().startswith("{")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(config.os, "replace", crash)
    with pytest.raises(ConfigError, match="No space left"):
        save_config("singer", {"latency_samples": 2048})
    assert load_config("singer") == {"latency_samples": 512}
    assert sorted(p.name for p in where.iterdir()) == ["singer.json"]
    monkeypatch.setattr(config.os, "replace", real_replace)

    with pytest.raises(TypeError):  # not JSON: nothing written
        save_config("singer", {"when": object()})
    assert load_config("singer") == {"latency_samples": 512}
    assert sorted(p.name for p in where.iterdir()) == ["singer.json"]


def test_write_into_unwritable_place(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("CHOIR_CONFIG_DIR", str(blocker / "sub"))
    with pytest.raises(ConfigError, match="cannot write"):
        save_config("singer", {})


def test_program_names(where):
    for bad in ("", "../x", "a/b", ".hidden"):
        with pytest.raises(ValueError):
            load_config(bad)
