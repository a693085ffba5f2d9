"""A job's result files (``success``): which form fields are files, where each is stored,
and their copy out of the request's body, which runs in a thread.

Each is written to ``files_dir/media/<media_id or job uuid>/`` under the name of
``publishing.output_name`` (``720p.mp4``, ``hls/720p.m3u8`` + ``hls/720p-fragmented.mp4``;
the extension from the uploaded file name when it is one of ``ALLOWED_EXTENSIONS``), first
as a partial file (``PARTIAL_UPLOAD_PREFIX``) renamed once whole. An HLS playlist is
rewritten to name the stored video file.
"""
import os
import tempfile

import attrs

from choir_protocol.runners.jobs import JobError, JobType
from choir_protocol.runners.publishing import output_name, rename_segments

from .multipart import parse_multipart

MAX_PLAYLIST_BYTES = 4 * 1024 ** 2
PARTIAL_UPLOAD_PREFIX = ".upload-"  # a body being received; removed at start if left

# what a runner may name its result: anything else is stored under the default (a runner
# must not choose .html and have it served as a page)
ALLOWED_EXTENSIONS = {"videoFile": {".mp4", ".m4a", ".webm", ".mkv", ".mov"},
                      "resolutionPlaylistFile": {".m3u8"}, "vttFile": {".vtt"}}
# success file fields -> (short role, default extension)
SUCCESS_FILES = {
    "payload[videoFile]": ("videoFile", ".mp4"),
    "payload[resolutionPlaylistFile]": ("resolutionPlaylistFile", ".m3u8"),
    "payload[vttFile]": ("vttFile", ".vtt"),
}
REQUIRED_FILES = {
    JobType.VOD_AUDIO_MERGE: ("payload[videoFile]",),
    JobType.VOD_WEB_VIDEO: ("payload[videoFile]",),
    JobType.VOD_HLS: ("payload[videoFile]", "payload[resolutionPlaylistFile]"),
    JobType.STUDIO: ("payload[videoFile]",),
    JobType.TRANSCRIPTION: ("payload[vttFile]",),
    JobType.LIVE_RTMP_HLS: (),
}


@attrs.define
class ResultFile:
    field: str
    role: str
    path: str
    name: str  # relative to the media's directory
    size: int = 0


def _safe_ext(filename, role: str, default: str) -> str:
    ext = os.path.splitext(os.path.basename(filename or ""))[1].lower()
    return ext if ext in ALLOWED_EXTENSIONS.get(role, ()) else default


def result_files(files_dir, job, files: dict) -> dict:
    """-> {field: ResultFile} for the body's file fields (``{field: filename}``)."""
    directory = os.path.join(files_dir, "media", str(job.media_id or job.uuid))
    wanted = {}
    for field, filename in files.items():
        if field in SUCCESS_FILES:
            role, default_ext = SUCCESS_FILES[field]
            ext = _safe_ext(filename, role, default_ext)
            name = output_name(job.type, job.payload, role, ext, job.private_payload)
            wanted[field] = ResultFile(field, role, os.path.join(directory, name), name)
    return wanted


def write_result_files(body, content_type: str, wanted: dict) -> list:
    """Blocking: the ``wanted`` files copied out of the multipart ``body`` (a file), each
    renamed into place once whole; nothing left behind on a failure. -> [ResultFile]."""
    for w in wanted.values():
        os.makedirs(os.path.dirname(w.path), exist_ok=True)
    sinks = {}

    def open_file(name, filename):
        w = wanted.get(name)
        if w is None or name in sinks:
            return None
        sinks[name] = tempfile.NamedTemporaryFile(dir=os.path.dirname(w.path),
                                                  prefix=PARTIAL_UPLOAD_PREFIX, delete=False)
        return sinks[name]
    try:
        body.seek(0)
        parse_multipart(body, content_type, open_file)
        for sink in sinks.values():
            sink.close()
        _point_playlist_at_video(sinks, wanted)
        for name, sink in sinks.items():
            wanted[name].size = os.path.getsize(sink.name)
            os.replace(sink.name, wanted[name].path)
    except BaseException:
        for sink in sinks.values():
            sink.close()
            unlink(sink.name)
        raise
    return list(wanted.values())


def _point_playlist_at_video(sinks, wanted):
    """An HLS runner's playlist names its own file; ours has the name we stored it under."""
    playlist = sinks.get("payload[resolutionPlaylistFile]")
    video = wanted.get("payload[videoFile]")
    if playlist is None or video is None or "payload[videoFile]" not in sinks:
        return
    with open(playlist.name, encoding="utf-8", errors="replace") as f:
        text = f.read(MAX_PLAYLIST_BYTES + 1)
    if len(text) > MAX_PLAYLIST_BYTES:
        raise JobError("payload_too_large", 413, "resolution playlist too large")
    with open(playlist.name, "w", encoding="utf-8") as f:
        f.write(rename_segments(text, os.path.basename(video.path)))


def unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
