"""Per-user configuration files: one JSON object per program.

``<config_dir>/<program>.json``, where config_dir is ``$CHOIR_CONFIG_DIR`` if set,
else ``$XDG_CONFIG_HOME/choir``, else ``~/.config/choir``. The contents are the
programs' business (the singer keeps its calibration and devices there, the
director its desk gains); this module only reads and writes them safely.
"""
import json
import os
import pathlib
import tempfile


class ConfigError(Exception):
    """A configuration file that cannot be read or written."""


def config_dir() -> pathlib.Path:
    explicit = os.environ.get("CHOIR_CONFIG_DIR")
    if explicit:
        return pathlib.Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CONFIG_HOME")
    if xdg and os.path.isabs(xdg):  # (the XDG spec says to ignore a relative path)
        return pathlib.Path(xdg) / "choir"
    return pathlib.Path.home() / ".config" / "choir"


def config_path(program: str) -> pathlib.Path:
    if not program or "/" in program or os.sep in program or program.startswith("."):
        raise ValueError(f"not a program name: {program!r}")
    return config_dir() / f"{program}.json"


def load_config(program: str) -> dict:
    """The program's saved values; {} if it has none yet."""
    path = config_path(program)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read the configuration file {path}: {e}") from e
    try:
        values = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"the configuration file {path} is not valid JSON ({e}): "
                          "fix it or delete it") from e
    if not isinstance(values, dict):
        raise ConfigError(f"the configuration file {path} does not hold a JSON object: "
                          "fix it or delete it")
    return values


def save_config(program: str, values: dict) -> pathlib.Path:
    """Write the program's values (readable by the user only), atomically: a reader
    sees the old file or the new one, never a part. Returns the file's path."""
    path = config_path(program)
    text = json.dumps(values, indent=2, sort_keys=True, ensure_ascii=False) + "\n"  # TypeError if not JSON
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=f".{program}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise ConfigError(f"cannot write the configuration file {path}: {e}") from e
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:  # mkstemp makes it 0600
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise ConfigError(f"cannot write the configuration file {path}: {e}") from e
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
    return path
