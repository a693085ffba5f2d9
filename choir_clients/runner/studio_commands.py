"""Studio edits in choir-runner, pure: PeerTube's ``video-studio-transcoding`` tasks read from
a job's payload, and each task as one ffmpeg command (ffmpeg-python). Nothing here runs a
process; runner_jobs.studio runs the commands, each on the previous one's output.

Every output is an MP4 as the other jobs make (runner_ffmpeg: H.264 + AAC, faststart, no
metadata, a key frame every 2 s) at the input's own size and frame rate (rounded, as
PeerTube's getVideoStreamFPS). Each task after PeerTube's runner
(packages/ffmpeg/src/ffmpeg-edition.ts):

- ``cut``: keeps ``start``..``end`` seconds (either may be absent), re-encoded. PeerTube
  gives ``-ss start -to end`` as output options, decoding and dropping all that comes before
  the start; here ``-ss`` is an input option (ffmpeg seeks to the key frame before the
  start, then decodes and drops up to it: accurate seeking) and the output lasts
  ``-t end-start``: the very same frames are kept, without decoding an hour of concert to
  cut its end.
- ``add-intro`` / ``add-outro``: the clip is scaled into the main video's size, its aspect
  kept (spline), centred on black, at the main video's frame rate, then joined before /
  after the main video (concat, ``unsafe`` as PeerTube). PeerTube draws this with
  scale2ref + drawbox + overlay; ``scale=force_original_aspect_ratio=decrease`` + ``pad``
  gives the same picture. A side without audio gets silence (anullsrc) as long as itself:
  PeerTube does so for a silent clip; for a silent main video it drops the clip's sound,
  which is kept here. A still picture is refused as intro or outro: PeerTube's runner
  cannot use one either (a PNG gives its silent track ``-t NaN``, a JPEG one frame).
- ``add-watermark``: the picture scaled to ``watermarkSizeRatio`` of the video's *height*,
  its aspect kept (PeerTube's ``scale2ref=w=oh*mdar:h=ih*ratio``, the size computed here
  from the probes: scale2ref is deprecated in newer ffmpeg), overlaid in the top-right
  corner at PeerTube's very expressions: ``x=main_w-overlay_w-(main_h*horitonzalMarginRatio)``
  (sic: the horizontal margin is a share of the height), ``y=main_h*verticalMarginRatio``.
  AAC audio is copied (PeerTube's canCopyAudio), other audio encoded.

A main input without a video stream can be cut (the output is audio only); the other tasks
need its picture. Our recordings are a still cover + audio as an ordinary H.264 video, so
every task works on them.
"""
import math

import attrs
import ffmpeg

from choir_protocol.runners import studio as core
# the task names, and PeerTube's watermark ratios for a payload that leaves them out
from choir_protocol.runners.studio import (CUT, INTRO, OUTRO, WATERMARK, WATERMARK_MARGIN_RATIO,
                                           WATERMARK_SIZE_RATIO)

from . import ffmpeg_commands as F

DEFAULT_FPS = 25  # a video without a readable frame rate (PeerTube's audio-merge fps)
SILENCE = "anullsrc=channel_layout=stereo:sample_rate=48000"
# PeerTube's addDefaultEncoderGlobalParams: a lavfi input may run well ahead of a file
STUDIO_OUTPUT = {"f": "mp4", "movflags": "faststart", "map_metadata": -1,
                 "max_muxing_queue_size": 1024}


class StudioError(F.MediaError):
    """A task that cannot be done as given (reported as the job's error, one line)."""


@attrs.frozen
class Task:
    name: str
    start: float | None = None  # cut, seconds; None (or 0, as PeerTube) = from the start
    end: float | None = None  # None = to the end
    file: str | None = None  # the task file's URL (intro, outro, watermark)
    size_ratio: float = WATERMARK_SIZE_RATIO  # of the video's height
    horizontal_margin: float = WATERMARK_MARGIN_RATIO  # of the video's height (sic)
    vertical_margin: float = WATERMARK_MARGIN_RATIO  # of the video's height


@attrs.frozen
class Edit:
    args: list  # the ffmpeg command
    duration: float | None  # of its output, for the progress


def _number(value, what, low=0.0, high=None, low_open=False) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise StudioError(f"{what} must be a number, not {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise StudioError(f"{what} must be a number, not {value!r}") from None
    if not math.isfinite(number) or number < low or (low_open and number == low) \
            or (high is not None and number > high):
        bound = f"{'above' if low_open else 'at least'} {low:g}" + \
            (f" and at most {high:g}" if high is not None else "")
        raise StudioError(f"{what} must be {bound}, not {value!r}")
    return number


def parse_tasks(raw) -> tuple:
    """A payload's ``tasks`` -> (Task, ...); raises StudioError (before any download) for
    what this runner cannot do: an unknown task name, a file task without its file, a cut
    ending before it starts, ratios out of range."""
    if not isinstance(raw, list) or not raw:
        raise StudioError("the job has no tasks (a non-empty list of {name, options})")
    tasks = []
    for i, item in enumerate(raw):
        try:
            where, name, options = core.task_item(i, item)
        except core.StudioError as e:
            raise StudioError(str(e))
        if name == CUT:
            start = _number(options.get("start"), f"{where}.options.start") or None
            end = _number(options.get("end"), f"{where}.options.end") or None
            if end is not None and end <= (start or 0):
                raise StudioError(f"{where}: the cut ends at {end:g} s, not after its start "
                                  f"({start or 0:g} s)")
            tasks.append(Task(CUT, start=start, end=end))
            continue
        file = options.get("file")
        if not isinstance(file, str) or not file:
            raise StudioError(f"{where}: {name} needs options.file (the file's URL)")
        if name != WATERMARK:
            tasks.append(Task(name, file=file))
            continue

        def ratio(key, default, **bounds):
            value = _number(options.get(key), f"{where}.options.{key}", **bounds)
            return default if value is None else value
        tasks.append(Task(
            name, file=file,
            size_ratio=ratio("watermarkSizeRatio", WATERMARK_SIZE_RATIO, high=1, low_open=True),
            horizontal_margin=ratio("horitonzalMarginRatio", WATERMARK_MARGIN_RATIO, high=1),
            vertical_margin=ratio("verticalMarginRatio", WATERMARK_MARGIN_RATIO, high=1)))
    return tuple(tasks)


def fps_of(info: F.MediaInfo) -> int:
    """The frame rate an edit keeps: the input's, rounded half up (JavaScript's Math.round)."""
    if not info.fps or info.fps <= 0:
        return DEFAULT_FPS
    return max(1, int(math.floor(info.fps + 0.5)))


def _seconds(value: float) -> str:
    return f"{value:.3f}"


def _sources(video_path, info, audio_path, audio_info, **input_options):
    """(video stream or None, audio stream or None) of the main input, its audio from the
    separate audio file when there is one (only the first task has one)."""
    main = ffmpeg.input(video_path, **input_options)
    video = main["v:0"] if info.has_video else None
    if audio_path is not None:
        with_audio = audio_info is None or audio_info.has_audio
        audio = ffmpeg.input(audio_path, **input_options)["a:0"] if with_audio else None
    else:
        audio = main["a:0"] if info.has_audio else None
    return video, audio


def _output(streams, output_path, fps, video=True, audio=None, t=None) -> list:
    """``audio``: None (no audio), "encode" or "copy"; ``t``: the output's duration."""
    kwargs = dict(STUDIO_OUTPUT, **({"t": t} if t else {}))
    if video:
        kwargs.update(F.VIDEO_CODEC, r=fps, g=fps * 2)
    if audio == "copy":
        kwargs["acodec"] = "copy"
    elif audio:
        kwargs.update(F.AUDIO_CODEC)
    return F._compile(ffmpeg.output(*streams, output_path, **kwargs))


def _need_picture(info: F.MediaInfo, name: str):
    if not info.has_video:
        raise StudioError(f"{name}: the video has no video stream (nothing to draw on)")


def cut_args(video_path, output_path, info: F.MediaInfo, start=None, end=None,
             audio_path=None, audio_info=None) -> Edit:
    if start and info.duration and start >= info.duration:
        raise StudioError(f"cut: it starts at {start:g} s, after the video's end "
                          f"({info.duration:g} s)")
    seek = {"ss": _seconds(start)} if start else {}
    video, audio = _sources(video_path, info, audio_path, audio_info, **seek)
    streams = [s for s in (video, audio) if s is not None]
    if not streams:
        raise StudioError("cut: the video has neither a video nor an audio stream")
    stop = min(end, info.duration) if end and info.duration else end or info.duration
    duration = stop - (start or 0) if stop else None
    return Edit(_output(streams, output_path, fps_of(info), video=video is not None,
                        audio="encode" if audio is not None else None,
                        t=_seconds(end - (start or 0)) if end else None), duration)


def _silence(seconds, what):
    if not seconds:
        raise StudioError(f"{what} has no known duration: cannot give it a silent track")
    return ffmpeg.input(SILENCE, f="lavfi", t=_seconds(seconds))["a"]


def intro_outro_args(video_path, clip_path, output_path, info: F.MediaInfo,
                     clip: F.MediaInfo, outro=False, audio_path=None, audio_info=None) -> Edit:
    name = OUTRO if outro else INTRO
    _need_picture(info, name)
    if not clip.has_video:
        raise StudioError(f"{name}: the file has no video (a clip is needed)")
    if clip.image:
        raise StudioError(f"{name}: the file is a still picture, not a clip (PeerTube's "
                          "studio takes a video for an intro or outro)")
    width, height, fps = info.width, info.height, fps_of(info)
    video, audio = _sources(video_path, info, audio_path, audio_info)
    source = ffmpeg.input(clip_path)
    clip_video = (source["v:0"]
                  .filter("scale", width, height, force_original_aspect_ratio="decrease",
                          flags="spline")
                  .filter("pad", width, height, "(ow-iw)/2", "(oh-ih)/2", color="black")
                  .filter("setsar", 1)
                  .filter("fps", fps))
    clip_audio = source["a:0"] if clip.has_audio else None
    with_audio = audio is not None or clip_audio is not None
    if with_audio:  # concat needs every segment to have the audio stream
        main_duration = audio_info.duration if audio_path is not None and audio_info \
            and audio_info.duration else info.duration
        audio = audio if audio is not None else _silence(main_duration, "the video")
        clip_audio = clip_audio if clip_audio is not None else _silence(clip.duration, name)
    segments = [(video, audio), (clip_video, clip_audio)]
    if not outro:
        segments.reverse()
    joined = ffmpeg.concat(*(s for segment in segments for s in segment if s is not None),
                           v=1, a=int(with_audio), unsafe=1).node
    streams = [joined[0], joined[1]] if with_audio else [joined[0]]
    duration = info.duration + clip.duration if info.duration and clip.duration else None
    return Edit(_output(streams, output_path, fps,
                        audio="encode" if with_audio else None), duration)


def watermark_size(info: F.MediaInfo, image: F.MediaInfo, ratio: float) -> tuple[int, int]:
    """(width, height) of the watermark: ``ratio`` of the video's height, its aspect kept
    (scale2ref's ``h=ih*ratio``, ``w=oh*mdar``, truncated as the scale filter does)."""
    height = max(1, int(info.height * ratio))
    return max(1, int(height * image.width / image.height)), height


def watermark_args(video_path, image_path, output_path, info: F.MediaInfo,
                   image: F.MediaInfo, task: Task = Task(WATERMARK), audio_path=None,
                   audio_info=None) -> Edit:
    _need_picture(info, WATERMARK)
    if not image.has_video:
        raise StudioError(f"{WATERMARK}: the file is not a picture")
    width, height = watermark_size(info, image, task.size_ratio)
    video, audio = _sources(video_path, info, audio_path, audio_info)
    mark = ffmpeg.input(image_path)["v:0"].filter("scale", width, height)
    marked = ffmpeg.overlay(video, mark,
                            x=f"main_w-overlay_w-(main_h*{task.horizontal_margin!r})",
                            y=f"main_h*{task.vertical_margin!r}")
    codec = (audio_info if audio_path is not None and audio_info else info).audio_codec
    streams = [marked] + ([audio] if audio is not None else [])
    return Edit(_output(streams, output_path, fps_of(info),
                        audio=None if audio is None else "copy" if codec == "aac"
                        else "encode"), info.duration)


def edit_args(task: Task, video_path, output_path, info: F.MediaInfo, file_path=None,
              file_info: F.MediaInfo | None = None, audio_path=None, audio_info=None) -> Edit:
    """The command of one task; ``file_path``/``file_info``: its downloaded task file."""
    if task.name == CUT:
        return cut_args(video_path, output_path, info, task.start, task.end, audio_path,
                        audio_info)
    if task.name in (INTRO, OUTRO):
        return intro_outro_args(video_path, file_path, output_path, info, file_info,
                                task.name == OUTRO, audio_path, audio_info)
    if task.name == WATERMARK:
        return watermark_args(video_path, file_path, output_path, info, file_info, task,
                              audio_path, audio_info)
    raise StudioError(f"unknown studio task {task.name!r}")
