"""Repairs the recordings of sessions a killed daemon left behind.

The mix.flac of an interrupted session holds everything the recorder flushed (all
but the last second or two) but its header never got its length, which some
readers (libsndfile among them) refuse: ffmpeg rewrites it. The singers' journals
become their FLAC tracks (tracks.py). The session is then marked "interrupted".
Sessions whose tracks were still being converted when the daemon stopped are
finished too.
"""
import glob
import os

import attrs
import ffmpeg
import soundfile
from twisted.logger import Logger

from choir_protocol.rehearsal.constants import FRAMES_PER_CHUNK
from choir_protocol.rehearsal.session_summary import RECORDING, SessionSummary

from .summary_file import NAME, read_summary, write_summary
from .tracks import convert_journals

log = Logger()


def interrupted_sessions(data_dir: str) -> list:
    found = []
    for path in sorted(glob.glob(os.path.join(data_dir, "sessions", "*", NAME))):
        try:
            summary = read_summary(os.path.dirname(path))
            if summary.state == RECORDING or summary.tracks != "ready":
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


def recover_session(directory: str) -> SessionSummary:
    summary = read_summary(directory)
    mix = os.path.join(directory, "mix.flac")
    # a daemon killed mid-session, or a recording stopped by a full disk: the mix's
    # header may be short of what was written
    if summary.state == RECORDING or summary.recording_failed:
        if summary.state == RECORDING:
            summary = attrs.evolve(summary, state="interrupted")
        if os.path.exists(mix) and os.path.getsize(mix) > 0:
            mix_chunks = rewrite_flac(mix) // FRAMES_PER_CHUNK
        else:  # nothing was ever flushed
            mix_chunks = 0
        summary = attrs.evolve(summary, mix_chunks=mix_chunks)
    for partial in glob.glob(os.path.join(directory, "*.flac.part")):
        os.remove(partial)  # a conversion cut short: its journal is still there
    tracks = convert_journals(directory, summary.mix_chunks)
    files = sorted(set(summary.files or ()) | set(tracks)
                   | ({"mix.flac"} if os.path.exists(mix) else set()))
    summary = attrs.evolve(summary, tracks="ready", files=tuple(files))
    write_summary(directory, summary)
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
        log.info("Recovered interrupted session {id}: {n} mix chunks kept", id=summary.id,
                 n=summary.mix_chunks)
        recovered.append(summary.id)
    return recovered
