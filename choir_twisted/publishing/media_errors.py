"""Why a file is not media, in words for whoever sent it: what the file is, no server path.

ffprobe names the file it read ("/srv/choir-data/uploads/.partial-x1y2.mp4: Invalid data
found when processing input"): for an upload, a temporary file of the daemon's data
directory, which a client has no business knowing (nor an operator's CLI repeating a path
it was just given).
"""
import os

_FFPROBE_PREFIX = "not a media file ("  # publisher.probe_file's words around ffprobe's line


def not_media_reason(error, *paths, what="the file") -> str:
    """``NotMedia``'s message with ``paths`` (as given, and absolute) named ``what``:
    "the upload is not a media file (ffprobe: Invalid data found when processing input)"."""
    text = str(error)
    named = {p for given in paths if given for p in (given, os.path.abspath(given))}
    for path in sorted(named, key=len, reverse=True):  # "/d/x" before its tail "d/x"
        text = text.replace(f"{path}: ", "").replace(path, what)
    if text.startswith(_FFPROBE_PREFIX) and text.endswith(")"):
        text = f"{what} is not a media file (ffprobe: " + text[len(_FFPROBE_PREFIX):]
    return text
