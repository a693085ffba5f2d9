"""What to transcode, sans-IO: the jobs for a recording or an uploaded media, output names,
HLS playlists.

A media is published as PeerTube does it: one *max-quality* job first (an audio merge of the
recording's mix with a cover image, or a web-video transcoding of an uploaded video), then,
as its children (they wait in state 5 until it completes), the other renditions, made from
the parent's output: HLS at every resolution of the ladder, and web video at the lower ones.
Nothing is made above the source's own resolution.

Job specs are the dicts ``Store.create_jobs`` takes. A child's ``max-quality`` input names
its parent's output (``{"job": uuid, "file": "videoFile"}``), resolved when the runner asks.
Job uuids come from ``make_uuid`` (random by default; pass a counter for reproducible plans).
"""
import re
import uuid as uuidlib

import attrs

from . import jobs as J
from .hls_codecs import runner_guess, stream_codecs
from .jobs import JobType, TranscodingSettings
from .probes import STILL_CODECS, audio_stream, media_info, picture_stream

RECORDING_PRIORITY = J.DEFAULT_PRIORITY
CHILD_PRIORITY = J.DEFAULT_PRIORITY + 10  # the max-quality renditions of other media first
MASTER_PLAYLIST = "hls/master.m3u8"


class NotMedia(ValueError):
    """The file has no audio or video stream anyone could publish."""


@attrs.frozen
class Probe:
    """What ``ffprobe`` tells of a file, reduced to what the ladder needs."""

    duration: float
    width: int | None = None  # None: no video stream (audio only)
    height: int | None = None
    fps: float | None = None
    has_audio: bool = False
    format: str = ""
    codecs: str = ""  # RFC 6381, for HLS's CODECS: "avc1.64001f,mp4a.40.2"; "" if unknown

    @property
    def has_video(self) -> bool:
        return self.width is not None

    def to_json(self) -> dict:
        return attrs.asdict(self)


def probe_from_ffprobe(info: dict) -> Probe:
    """Reduces ``ffmpeg.probe()``'s answer (``probes.media_info``: the runner's reading,
    rotation included); raises NotMedia for anything not publishable.

    Cover art in an audio file (an attached picture) and a still picture are not video."""
    reduced = media_info(info)
    video = picture_stream(info)
    if video is not None and (reduced.image or video.get("codec_name") in STILL_CODECS):
        video = None
    audio = audio_stream(info)
    if video is None and audio is None:
        raise NotMedia("the file has no audio or video stream")
    if reduced.duration is None:
        raise NotMedia("the file has no duration (a still image, or an empty stream?)")
    format_name = (info.get("format") or {}).get("format_name", "")
    if video is None:
        return Probe(reduced.duration, has_audio=True, format=format_name,
                     codecs=stream_codecs(None, audio))
    if not reduced.has_video:
        raise NotMedia("the video stream has no picture size")
    return Probe(reduced.duration, reduced.width, reduced.height,
                 round(reduced.fps or 25.0, 3), audio is not None, format_name,
                 stream_codecs(video, audio))


# -- the plan -----------------------------------------------------------------------------------

def new_uuid() -> str:
    return str(uuidlib.uuid4())


def _hls_jobs(parent: str, media_id: str, targets, make_uuid) -> list:
    out = []
    for resolution, fps in targets:
        uuid = make_uuid()
        out.append(dict(type=JobType.VOD_HLS, uuid=uuid, parent_uuid=parent, media_id=media_id,
                        priority=CHILD_PRIORITY,
                        payload=J.hls_payload("", uuid, media_id, resolution, fps),
                        private_payload={"inputs": {"max-quality": {"job": parent,
                                                                    "file": "videoFile"}}}))
    return out


def recording_jobs(media_id: str, audio_path: str, cover_path: str,
                   settings: TranscodingSettings = J.DEFAULT_SETTINGS,
                   make_uuid=new_uuid) -> list:
    """An audio merge (audio + cover -> MP4 at the ladder's top, PeerTube's audio-merge fps),
    then HLS at every resolution of the ladder, made from the merged MP4."""
    top = max(settings.resolutions)
    fps = settings.fps_audio_merge
    merge = make_uuid()
    specs = [dict(type=JobType.VOD_AUDIO_MERGE, uuid=merge, media_id=media_id,
                  priority=RECORDING_PRIORITY,
                  payload=J.audio_merge_payload("", merge, media_id, top, fps),
                  private_payload={"inputs": {"max-quality": audio_path,
                                              "preview": cover_path}})]
    ladder = sorted(settings.resolutions, reverse=True)
    return specs + _hls_jobs(merge, media_id, [(r, fps) for r in ladder], make_uuid)


def upload_jobs(media_id: str, probe: Probe, source_path: str, cover_path: str | None = None,
                settings: TranscodingSettings = J.DEFAULT_SETTINGS,
                make_uuid=new_uuid) -> list:
    """A video: web video at the max quality, then HLS at each target and web video at the
    lower ones. Audio only: as a recording (needs ``cover_path``)."""
    if not probe.has_video:
        if cover_path is None:
            raise ValueError("an audio-only media needs a cover image")
        return recording_jobs(media_id, source_path, cover_path, settings, make_uuid)
    targets = J.transcoding_targets(probe.width, probe.height, probe.fps, settings)
    (top, top_fps), lower = targets[0], targets[1:]
    parent = make_uuid()
    specs = [dict(type=JobType.VOD_WEB_VIDEO, uuid=parent, media_id=media_id,
                  priority=RECORDING_PRIORITY,
                  payload=J.web_video_payload("", parent, media_id, top, top_fps),
                  private_payload={"inputs": {"max-quality": source_path}})]
    specs += _hls_jobs(parent, media_id, targets, make_uuid)
    for resolution, fps in lower:
        uuid = make_uuid()
        specs.append(dict(type=JobType.VOD_WEB_VIDEO, uuid=uuid, parent_uuid=parent,
                          media_id=media_id, priority=CHILD_PRIORITY,
                          payload=J.web_video_payload("", uuid, media_id, resolution, fps),
                          private_payload={"inputs": {"max-quality": {"job": parent,
                                                                      "file": "videoFile"}}}))
    return specs


# -- outputs ------------------------------------------------------------------------------------

def output_name(job_type: str, payload: dict, role: str, ext: str,
                private_payload: dict | None = None) -> str:
    """The published name of a job's output, relative to the media's directory:
    ``720p.mp4``, ``hls/720p.m3u8`` + ``hls/720p-fragmented.mp4``, ``subtitles.vtt``. A
    studio job's payload has no output: its private payload names the file it replaces."""
    resolution = (payload.get("output") or (private_payload or {}).get("output")
                  or {}).get("resolution")
    tag = f"{int(resolution)}p" if isinstance(resolution, (int, float)) else "output"
    if job_type == JobType.VOD_HLS:
        return f"hls/{tag}.m3u8" if role == "resolutionPlaylistFile" else f"hls/{tag}-fragmented{ext}"
    if role == "vttFile":
        return f"subtitles{ext}"
    return f"{tag}{ext}"


_URI_ATTR = re.compile(r'(URI=")([^"]*)(")')


def rename_segments(playlist: str, new_name: str) -> str:
    """A runner's playlist names its own file; ours is stored as ``new_name``. Every segment
    line and EXT-X-MAP URI is pointed at it (single-file fragmented MP4 HLS)."""
    out = []
    for line in playlist.splitlines():
        if line.startswith("#EXT-X-MAP:"):
            line = _URI_ATTR.sub(lambda m: m.group(1) + new_name + m.group(3), line)
        elif line and not line.startswith("#"):
            line = new_name
        out.append(line)
    return "\n".join(out) + "\n"


@attrs.frozen
class Variant:
    playlist: str  # relative to the master playlist
    width: int
    height: int
    fps: float
    bandwidth: int  # bits per second
    # the rendition's own, from ffprobe (Probe.codecs); None: not probed, so what
    # choir-runner makes; "": probed but not nameable, so no CODECS attribute
    codecs: str | None = None


def master_playlist(variants) -> str:
    """The master playlist over the resolution playlists, highest first, each with
    BANDWIDTH, RESOLUTION, FRAME-RATE and CODECS (which players choose a variant by)."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for v in sorted(variants, key=lambda v: v.height * v.width, reverse=True):
        codecs = runner_guess(v.width, v.height, v.fps) if v.codecs is None else v.codecs
        lines.append(f"#EXT-X-STREAM-INF:BANDWIDTH={max(1, v.bandwidth)},"
                     f"RESOLUTION={v.width}x{v.height},FRAME-RATE={v.fps:.3f}"
                     + (f',CODECS="{codecs}"' if codecs else ""))
        lines.append(v.playlist)
    return "\n".join(lines) + "\n"


# -- how a media stands -------------------------------------------------------------------------

def media_state(jobs) -> str:
    """processing (jobs still to end), completed, partial (some renditions failed), failed,
    or none (no jobs)."""
    if not jobs:
        return "none"
    if any(j.state not in J.FINAL_STATES for j in jobs):
        return "processing"
    done = sum(j.state is J.JobState.COMPLETED for j in jobs)
    return "completed" if done == len(jobs) else "partial" if done else "failed"


def _shown_state(media, jobs) -> str:
    """Its jobs' state, but processing until the daemon has finished it (master playlist
    written, ``ended_at`` set): a client seeing "completed" finds every output there."""
    state = media_state(jobs)
    return "processing" if state not in ("processing", "none") and media.ended_at is None \
        else state


def describe_media(media, jobs, files, url_prefix: str = "", file_link: str = "") -> dict:
    """The JSON of a media for the HTTP API and the webhook. ``url_prefix``: where
    ``/api/v1/media`` lives (an absolute URL for a webhook, "" for relative links);
    ``file_link``: a signed link's ``signed/{expires}/{sig}`` (``signed_links``), put before
    ``files/`` in every file URL, so that whoever is given the URLs can fetch the files."""
    base = f"{url_prefix.rstrip('/')}/api/v1/media/{media.id}"
    files_base = f"{base}/{file_link}/files" if file_link else f"{base}/files"

    def job_view(j):
        output = (j.payload.get("output") or {})
        return {"uuid": j.uuid, "type": j.type,
                "state": {"id": int(j.state), "label": j.state.label},
                "progress": j.progress, "failures": j.failures, "error": j.error,
                "resolution": output.get("resolution"), "fps": output.get("fps"),
                "parentUuid": j.parent_uuid}

    def file_view(f):
        return {"name": f.name, "role": f.role, "size": f.size, "url": f"{files_base}/{f.name}"}

    outputs = [f for f in files if f.role == "output"]
    master = next((f for f in outputs if f.name == MASTER_PLAYLIST), None)
    return {
        "id": media.id, "kind": media.kind, "name": media.name,
        "state": _shown_state(media, jobs), "createdAt": J.iso(media.created_at),
        "endedAt": J.iso(media.ended_at), "probe": media.probe,
        "hlsUrl": file_view(master)["url"] if master else None,
        "jobs": [job_view(j) for j in jobs],
        "inputs": [file_view(f) for f in files if f.role == "input"],
        "outputs": [file_view(f) for f in outputs],
    }

