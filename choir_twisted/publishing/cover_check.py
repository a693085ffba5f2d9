"""``--cover``: refused at start unless ffmpeg decodes a picture from it.

The cover is only read when a recording is published (``covers.fit_cover`` scales its
first picture with ffmpeg), hours after the start: a file ffmpeg cannot read would fail
every publication then. Decoding one frame now (about 60 ms) says so at once. ffprobe
alone is not enough: it takes a text file named ``.png`` for a PNG it cannot decode.
"""
import os
import re
import subprocess

ACCEPTED = "PNG, JPEG, WebP or GIF"


class CoverError(ValueError):
    """A cover that cannot be used; the message says why, in one line."""


def check_cover(path: str, timeout: float = 20.0) -> None:
    if not os.path.isfile(path):
        raise CoverError("no such file" if not os.path.exists(path) else "not a file")
    command = ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-xerror", "-i", path,
               "-map", "0:v:0", "-frames:v", "1", "-f", "null", "-"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise CoverError("ffmpeg, which reads the cover, is not installed") from None
    except subprocess.TimeoutExpired:
        raise CoverError(f"ffmpeg took more than {timeout:.0f} s to read it") from None
    if result.returncode != 0:
        raise CoverError(f"not a {ACCEPTED} picture that ffmpeg can read "
                         f"({_words(result.stderr, path)})")


def _words(stderr: str, path: str) -> str:
    """ffmpeg's last line, without its ``[png @ 0x...]`` or file name prefix."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    if not lines:
        return "ffmpeg failed"
    if any("matches no streams" in line for line in lines):
        return "it has no picture"
    line = re.sub(r"^\[[^]]*\]\s*", "", lines[0])
    return line.removeprefix(f"{path}: ").rstrip(".")
