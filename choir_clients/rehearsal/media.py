"""Audio files for the director: the backing track in, the mix out.

``load_track`` reads anything soundfile (libsndfile: WAV, FLAC, OGG, MP3, AIFF, ...)
or ffmpeg (M4A/AAC, Opus, WMA, video soundtracks, ...) can decode, at any rate,
mono or stereo, and returns what the protocol carries: 44.1 kHz stereo 16-bit,
padded with silence to whole 512-frame chunks. Resampling and down-mixing of more
than two channels are left to ffmpeg.
"""
import os

import numpy as np

from choir_protocol.rehearsal.constants import FRAMES_PER_CHUNK, SAMPLE_RATE

OUTPUT_FORMATS = {".wav": "WAV", ".flac": "FLAC"}


class MediaError(Exception):
    """A file that cannot be used: the message says why, in plain words."""


def _to_int16(samples: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(samples * 32768.0), -32768, 32767).astype("<i2")


def _read_with_soundfile(path: str):
    """(n, 2) int16 if libsndfile reads the file and it needs no resampling, else None."""
    import soundfile

    try:
        with soundfile.SoundFile(path) as f:
            if f.samplerate != SAMPLE_RATE or f.channels not in (1, 2):
                return None  # ffmpeg resamples and down-mixes
            samples = f.read(dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError):
        return None
    if len(samples) == 0:
        return None  # let ffmpeg have a go; it reports an empty file clearly
    samples = _to_int16(samples)
    if samples.shape[1] == 1:
        samples = np.repeat(samples, 2, axis=1)
    return samples


def _ffmpeg_error(stderr: bytes) -> str:
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[-1] if lines else "ffmpeg could not decode it"


def _audio_channels(ffmpeg, path: str):
    """The channel count of the file's first audio stream (ffprobe), or None if unknown."""
    try:
        streams = ffmpeg.probe(path, select_streams="a:0").get("streams", [])
        return int(streams[0]["channels"]) if streams else None
    except (ffmpeg.Error, FileNotFoundError, KeyError, ValueError, TypeError):
        return None


def _read_with_ffmpeg(path: str) -> np.ndarray:
    try:
        import ffmpeg
    except ImportError:  # pragma: no cover - a dependency of the package
        raise MediaError(f"{path}: soundfile cannot read it and ffmpeg-python is not installed")
    # Mono is decoded as mono and copied to both sides, as soundfile's files are: ffmpeg's
    # own up-mix would put it 3 dB lower. More than two channels are down-mixed by ffmpeg.
    channels = 1 if _audio_channels(ffmpeg, path) == 1 else 2
    try:
        pcm, _ = (ffmpeg.input(path)
                  .output("pipe:", format="s16le", acodec="pcm_s16le", ac=channels, ar=SAMPLE_RATE)
                  .global_args("-nostdin", "-hide_banner", "-loglevel", "error")
                  .run(capture_stdout=True, capture_stderr=True))
    except FileNotFoundError:
        raise MediaError(f"{path}: soundfile cannot read it, and the ffmpeg program (needed for "
                         "this kind of file and for resampling) is not installed") from None
    except ffmpeg.Error as e:
        reason = _ffmpeg_error(e.stderr or b"")
        if reason.startswith(path + ": "):
            reason = reason[len(path) + 2:]
        raise MediaError(f"{path} is not an audio file that can be read ({reason})") from None
    frame = 2 * channels
    if len(pcm) < frame:
        raise MediaError(f"{path} contains no audio")
    samples = np.frombuffer(pcm[:len(pcm) // frame * frame], "<i2").reshape(-1, channels)
    return np.repeat(samples, 2, axis=1) if channels == 1 else samples


def load_track(path, skip_seconds: float = 0.0) -> np.ndarray:
    """The backing track: (n, 2) int16 at 44 100 Hz, n a multiple of 512, from ``skip_seconds`` on."""
    path = os.fspath(path)
    if skip_seconds < 0:
        raise ValueError("skip_seconds must not be negative")
    if not os.path.exists(path):
        raise MediaError(f"{path}: no such file")
    if os.path.isdir(path):
        raise MediaError(f"{path} is a folder, not an audio file")
    samples = _read_with_soundfile(path)
    if samples is None:
        samples = _read_with_ffmpeg(path)
    skip = int(round(skip_seconds * SAMPLE_RATE))
    if skip >= len(samples):
        raise MediaError(f"{path} lasts {format_time(len(samples) / SAMPLE_RATE)}: "
                         f"cannot skip {skip_seconds:g} seconds of it")
    samples = samples[skip:]
    chunks = -(-len(samples) // FRAMES_PER_CHUNK)
    track = np.zeros((chunks * FRAMES_PER_CHUNK, 2), "<i2")
    track[:len(samples)] = samples
    return track


def output_format(path) -> str:
    """The soundfile format for an output path (WAV or FLAC); MediaError for anything else."""
    extension = os.path.splitext(os.fspath(path))[1].lower()
    try:
        return OUTPUT_FORMATS[extension]
    except KeyError:
        raise MediaError(f"{path}: the mix can be saved as .wav or .flac, not {extension or 'a file without extension'}") from None


def save_mix(path, mix: np.ndarray) -> None:
    """Write the mono 16-bit mix at 44.1 kHz, as WAV or FLAC by the file's extension."""
    import soundfile

    soundfile.write(os.fspath(path), np.asarray(mix, "<i2"), SAMPLE_RATE, "PCM_16",
                    format=output_format(path))


def format_time(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"
