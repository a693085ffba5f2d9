"""ffprobe's answer (``-show_format -show_streams -of json``, or ``ffmpeg.probe()``) reduced
to what the runner and the publisher need, the one reading of it both use.

* The picture is the first video stream that is not an attached picture (cover art in an
  audio file). Its size is as displayed: a stream rotated by 90 or 270 degrees (a phone's
  portrait video) has its width and height swapped, as ffmpeg's autorotation turns it.
  The rotation is the display matrix's (``side_data_list``, ffmpeg 5 and later; -90 for a
  phone held upright), else the older ``rotate`` tag.
* A still image (PNG, JPEG) is a one-frame video stream, flagged ``image`` by its format
  (an image demuxer's); ``STILL_CODECS`` name the codecs of pictures in any container.
* The duration is the format's, else the first stream's that has one.
"""
import attrs

STILL_CODECS = frozenset({"mjpeg", "png", "bmp", "gif", "webp", "tiff"})


@attrs.frozen
class MediaInfo:
    width: int | None  # as displayed (rotation applied); None without a sized picture
    height: int | None
    duration: float | None  # seconds; None when nothing says
    has_audio: bool
    fps: float | None = None  # the picture's average frame rate
    audio_codec: str | None = None  # "aac"...
    image: bool = False  # a still picture (PNG, JPEG...) by its format, not a clip

    @property
    def has_video(self) -> bool:
        return self.width is not None


def picture_stream(probe: dict) -> dict | None:
    return next((s for s in probe.get("streams") or () if s.get("codec_type") == "video"
                 and not (s.get("disposition") or {}).get("attached_pic")), None)


def audio_stream(probe: dict) -> dict | None:
    return next((s for s in probe.get("streams") or () if s.get("codec_type") == "audio"),
                None)


def rotation(stream: dict) -> int:
    """The stream's display rotation in degrees, 0-359 (``side_data_list`` over the tag)."""
    rotate = (stream.get("tags") or {}).get("rotate")
    for side in stream.get("side_data_list") or ():
        if isinstance(side, dict) and "rotation" in side:
            rotate = side["rotation"]
    try:
        return int(float(rotate or 0)) % 360
    except (TypeError, ValueError, OverflowError):
        return 0


def displayed_size(stream: dict) -> tuple[int, int] | None:
    try:
        width, height = int(stream.get("width") or 0), int(stream.get("height") or 0)
    except (TypeError, ValueError):
        return None
    if width <= 0 or height <= 0:
        return None
    return (height, width) if rotation(stream) in (90, 270) else (width, height)


def frame_rate(stream: dict) -> float | None:
    """avg_frame_rate, else r_frame_rate ("30000/1001"), as PeerTube's getVideoStreamFPS."""
    for key in ("avg_frame_rate", "r_frame_rate"):
        num, _, den = str(stream.get(key) or "").partition("/")
        try:
            rate = float(num) / float(den or 1)
        except (ValueError, ZeroDivisionError):
            continue
        if rate > 0:
            return rate
    return None


def duration(probe: dict) -> float | None:
    for candidate in [(probe.get("format") or {}).get("duration")] + [
            s.get("duration") for s in probe.get("streams") or ()]:
        try:
            seconds = float(candidate)
        except (TypeError, ValueError):
            continue
        if seconds > 0:
            return seconds
    return None


def media_info(probe: dict) -> MediaInfo:
    picture, audio = picture_stream(probe), audio_stream(probe)
    size = displayed_size(picture) if picture is not None else None
    format_name = str((probe.get("format") or {}).get("format_name") or "")
    return MediaInfo(
        *(size or (None, None)), duration(probe), audio is not None,
        fps=frame_rate(picture) if picture is not None else None,
        audio_codec=audio.get("codec_name") if audio is not None else None,
        image=picture is not None and (format_name.startswith("image2")
                                       or format_name.endswith("_pipe")))
