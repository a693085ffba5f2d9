"""Repairs the recordings of sessions a killed daemon left behind.

The FLAC files of an interrupted session hold everything the recorder flushed
(all but the last second or two) but their headers never got their length, which
some readers (libsndfile among them) refuse. At start-up, every session whose
session.json still says "recording" has its FLACs rewritten by ffmpeg and is
marked "interrupted".
"""
import glob
import json
import os

import ffmpeg
import soundfile
from twisted.logger import Logger

from choir_protocol.constants import FRAMES_PER_CHUNK

log = Logger()


def interrupted_sessions(data_dir: str) -> list:
    found = []
    for path in sorted(glob.glob(os.path.join(data_dir, "sessions", "*", "session.json"))):
        try:
            with open(path) as f:
                if json.load(f).get("state") == "recording":
                    found.append(os.path.dirname(path))
        except (OSError, ValueError):
            log.warn("Unreadable {path}: left as it is", path=path)
    return found


def rewrite_flac(path: str) -> int:
    """Rewrite ``path`` with a complete header; returns its length in frames."""
    fixed = path + ".fixed.flac"
    try:
        ffmpeg.input(path).output(fixed, acodec="flac", sample_fmt="s16").overwrite_output().run(
            quiet=True)
    except ffmpeg.Error as e:
        if os.path.exists(fixed):
            os.remove(fixed)
        raise RuntimeError(e.stderr.decode(errors="replace").strip()) from None
    os.replace(fixed, path)
    return soundfile.info(path).frames


def recover_session(directory: str) -> dict:
    with open(os.path.join(directory, "session.json")) as f:
        summary = json.load(f)
    lengths = {}
    for path in sorted(glob.glob(os.path.join(directory, "*.flac"))):
        if os.path.getsize(path) == 0:  # nothing was ever flushed
            os.remove(path)
            continue
        lengths[os.path.basename(path)] = rewrite_flac(path)
    summary["state"] = "interrupted"
    summary["files"] = sorted(lengths)
    summary["mix_chunks"] = lengths.get("mix.flac", 0) // FRAMES_PER_CHUNK
    with open(os.path.join(directory, "session.json.tmp"), "w") as f:
        json.dump(summary, f, indent=2)
    os.replace(os.path.join(directory, "session.json.tmp"), os.path.join(directory, "session.json"))
    return summary


def recover_all(data_dir: str) -> list:
    """Runs in a thread at start-up; returns the ids of the sessions recovered."""
    recovered = []
    for directory in interrupted_sessions(data_dir):
        try:
            summary = recover_session(directory)
        except Exception as e:
            log.error("Could not recover {dir}: {error}", dir=directory, error=e)
            continue
        log.info("Recovered interrupted session {id}: {n} mix chunks kept", id=summary.get("id"),
                 n=summary["mix_chunks"])
        recovered.append(summary.get("id"))
    return recovered
