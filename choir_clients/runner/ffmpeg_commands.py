"""The ffmpeg side of choir-runner, pure: output sizes, ffmpeg-python graphs compiled to
argument lists, and ``-progress`` parsing (ffprobe is read by ``choir_protocol.runners.probes``).
Nothing here runs a process.

Output conventions follow PeerTube's runner (packages/ffmpeg/src/ffmpeg-vod.ts):
- web video: MP4, H.264 + AAC, faststart, no metadata, scaled so that the *smaller* side is
  the job's resolution (aspect kept, even dimensions), at the job's fps;
- HLS: the same streams as one fragmented MP4 (``-hls_segment_type fmp4 -hls_flags
  single_file``) plus its resolution playlist, which names the MP4 by basename;
- audio merge: the cover image and the audio as such an MP4. The cover is decoded, scaled
  and converted ONCE, then repeated as the same frame by the ``loop`` filter; with
  ``-tune stillimage`` and ``veryfast`` this is ~5x faster than ``-loop 1`` on the image
  input, which decodes and scales the PNG again for every output frame; the audio is
  encoded beside it, in a process of its own (``AudioMerge``; bench/audio_merge.py);
- studio edits (cut, intro/outro, watermark): in runner_studio.py, on the same conventions.
"""
import json
import os

import attrs
import ffmpeg

from choir_protocol.runners.probes import MediaInfo, media_info  # noqa: F401 (the runner's API)

VIDEO_CODEC = {"vcodec": "libx264", "pix_fmt": "yuv420p", "crf": 23, "preset": "veryfast"}
AUDIO_CODEC = {"acodec": "aac", "b:a": "192k"}
# -nostdin: ffmpeg must not read our terminal; -progress pipe:1 gives key=value blocks on
# stdout; errors only on stderr, so its tail is a usable failure message.
GLOBAL_ARGS = ("-nostdin", "-hide_banner", "-loglevel", "error", "-nostats",
               "-progress", "pipe:1")
HLS_SEGMENT_SECONDS = 4


class MediaError(ValueError):
    """An input that cannot be processed as asked (no video stream, bad probe...)."""


def probe_args(path: str) -> list:
    return ["-v", "error", "-show_format", "-show_streams", "-of", "json", path]


def parse_probe(output: bytes) -> MediaInfo:
    try:
        return media_info(json.loads(output))
    except (ValueError, AttributeError) as e:
        raise MediaError(f"unreadable ffprobe output: {e}") from None


def even(n: float) -> int:
    """The nearest even integer, at least 2 (x264 needs even dimensions)."""
    return max(2, int(round(n / 2)) * 2)


def scaled_size(width: int, height: int, resolution: int) -> tuple[int, int]:
    """The output size for a job resolution: the smaller side becomes ``resolution``
    (portrait videos too, as PeerTube's resolutions are), the other keeps the aspect."""
    if width <= 0 or height <= 0 or resolution <= 0:
        raise MediaError(f"cannot scale {width}x{height} to {resolution}p")
    if width < height:  # portrait
        return even(resolution), even(height * resolution / width)
    return even(width * resolution / height), even(resolution)


# -- the graphs ------------------------------------------------------------------------------

def _compile(output) -> list:
    """["ffmpeg", global options, inputs, graph, outputs] (global options first: after the
    last output ffmpeg would call them trailing)."""
    args = ffmpeg.compile(output, cmd="ffmpeg", overwrite_output=True)
    return [args[0], *GLOBAL_ARGS, *args[1:]]


def _video_stream(source, info: MediaInfo, resolution: int, fps: int):
    width, height = scaled_size(info.width, info.height, resolution)
    return source.video.filter("scale", width, height).filter("fps", fps)


def _av_streams(video_path, audio_path, info: MediaInfo, resolution, fps,
                audio_info: MediaInfo | None = None, with_audio=True, with_video=True):
    """The (streams, output kwargs) of a video input + optional separate audio input."""
    source = ffmpeg.input(video_path)
    streams, kwargs = [], {}
    if with_video and resolution:
        if not info.has_video:
            raise MediaError("the input has no video stream")
        streams.append(_video_stream(source, info, resolution, fps))
        kwargs.update(VIDEO_CODEC, r=fps, g=fps * 2)  # a key frame every 2 s, as PeerTube
    if with_audio:
        if audio_path is not None:
            if audio_info is None or audio_info.has_audio:
                streams.append(ffmpeg.input(audio_path).audio)
                kwargs.update(AUDIO_CODEC)
        elif info.has_audio:
            streams.append(source.audio)
            kwargs.update(AUDIO_CODEC)
    if not streams:
        raise MediaError("nothing to transcode: no video at this resolution and no audio")
    return streams, kwargs


def web_video_args(video_path, output_path, info: MediaInfo, resolution: int, fps: int,
                   audio_path=None, audio_info=None) -> list:
    streams, kwargs = _av_streams(video_path, audio_path, info, resolution, fps, audio_info)
    return _compile(ffmpeg.output(*streams, output_path, f="mp4", movflags="faststart",
                                  map_metadata=-1, **kwargs))


def hls_names(resolution: int, stem: str) -> tuple[str, str]:
    """(playlist, fragmented MP4) file names, as PeerTube's runner names them."""
    return f"{stem}-{resolution}.m3u8", f"{stem}-{resolution}-fragmented.mp4"


def hls_args(video_path, playlist_path, fragmented_path, info: MediaInfo, resolution: int,
             fps: int, separated_audio=False, audio_path=None, audio_info=None) -> list:
    """``resolution`` 0 is the audio-only playlist; with ``separated_audio`` the video
    playlists carry no audio (the audio has its own job, at resolution 0)."""
    streams, kwargs = _av_streams(video_path, audio_path, info, resolution, fps, audio_info,
                                  with_audio=not (separated_audio and resolution))
    return _compile(ffmpeg.output(
        *streams, playlist_path, f="hls", hls_time=HLS_SEGMENT_SECONDS, hls_list_size=0,
        hls_playlist_type="vod", hls_segment_type="fmp4", hls_flags="single_file",
        hls_segment_filename=fragmented_path, map_metadata=-1, **kwargs))


def fix_hls_playlist(text: str, video_path: str) -> str:
    """Some ffmpeg versions write the fragmented file's full path in EXT-X-MAP: the
    playlist must name it by basename, next to it (PeerTube's fixHLSPlaylistIfNeeded)."""
    return text.replace(f'#EXT-X-MAP:URI="{video_path}"',
                        f'#EXT-X-MAP:URI="{os.path.basename(video_path)}"')


@attrs.frozen
class AudioMerge:
    """An audio merge as three commands: ``video`` (the still cover) and ``audio`` (AAC) run
    at the same time, then ``mux`` puts them in one MP4 without re-encoding. In one ffmpeg
    (5.x) the AAC encoder waits its turn behind x264 on every frame: run apart, on 2 cores,
    60 s with a 1080p cover to 720p takes about 4 s instead of 5 (bench/audio_merge.py)."""

    video: list
    audio: list
    mux: list
    video_path: str
    audio_path: str


def audio_merge_args(audio_path, image_path, output_path, image: MediaInfo, audio: MediaInfo,
                     resolution: int, fps: int) -> AudioMerge:
    if not image.has_video:
        raise MediaError("the preview is not an image")
    if not audio.has_audio:
        raise MediaError("the audio input has no audio stream")
    width, height = scaled_size(image.width, image.height, resolution)
    cover = (ffmpeg.input(image_path).video
             .filter("scale", width, height).filter("format", "yuv420p")
             .filter("loop", loop=-1, size=1, start=0)  # that one decoded frame, for ever
             .filter("fps", fps))
    # bounded by the audio's length (the looped cover never ends)
    bounded = {"t": f"{audio.duration:.3f}"} if audio.duration else {}
    video_path, sound_path = output_path + ".video.mp4", output_path + ".audio.m4a"
    video = _compile(ffmpeg.output(cover, video_path, f="mp4", tune="stillimage", r=fps,
                                   g=fps * 2, **VIDEO_CODEC, **bounded))
    sound = _compile(ffmpeg.output(ffmpeg.input(audio_path).audio, sound_path, f="mp4",
                                   **AUDIO_CODEC, **bounded))
    mux = _compile(ffmpeg.output(ffmpeg.input(video_path).video, ffmpeg.input(sound_path).audio,
                                 output_path, f="mp4", c="copy", movflags="faststart",
                                 map_metadata=-1, shortest=None))
    return AudioMerge(video, sound, mux, video_path, sound_path)


def naive_audio_merge_args(audio_path, image_path, output_path, width, height, fps) -> list:
    """The usual recipe (``-loop 1`` image input, preset medium), for the benchmark."""
    cover = ffmpeg.input(image_path, loop=1).video.filter("scale", width, height)
    return _compile(ffmpeg.output(
        cover, ffmpeg.input(audio_path).audio, output_path, f="mp4", shortest=None, r=fps,
        vcodec="libx264", pix_fmt="yuv420p", preset="medium", **AUDIO_CODEC))


# -- progress --------------------------------------------------------------------------------

class ProgressParser:
    """``-progress pipe:1`` output, fed in arbitrary pieces: key=value lines, in blocks
    ending with ``progress=continue`` or ``progress=end``. ``percent`` is the work done
    (0..100) against the expected output duration, None while unknown."""

    def __init__(self, duration: float | None):
        self.duration = duration
        self.out_time = 0.0  # seconds of output written
        self.ended = False
        self._buffer = b""

    def feed(self, data: bytes) -> None:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        self._buffer = self._buffer[-4096:]  # a line never gets long; bound it anyway
        for line in lines:
            key, _, value = line.decode("ascii", "replace").strip().partition("=")
            if key in ("out_time_us", "out_time_ms"):  # both are microseconds (sic)
                try:
                    self.out_time = max(self.out_time, int(value) / 1e6)
                except ValueError:
                    pass  # "N/A" before the first frame
            elif key == "progress" and value == "end":
                self.ended = True

    @property
    def percent(self) -> int | None:
        if self.ended:
            return 100
        if not self.duration:
            return None
        return max(0, min(99, int(self.out_time * 100 / self.duration)))
