"""One version for every program: the installed distribution's, as setup.cfg sets it."""
from importlib import metadata

try:
    VERSION = metadata.version("choir")
except metadata.PackageNotFoundError:  # pragma: no cover - run from a source tree
    VERSION = "0.0.0+source"


def program_version(program: str) -> str:
    """What ``PROGRAM --version`` prints, and what a client tells the server it is."""
    return f"{program} {VERSION}"
