"""choir_clients.rehearsal.media: backing tracks in (any format, rate, mono/stereo), the mix out."""
import os

import numpy as np
import pytest
import soundfile

from choir_clients.rehearsal.media import MediaError, load_track, output_format, save_mix
from choir_protocol.rehearsal.constants import FRAMES_PER_CHUNK, SAMPLE_RATE

from ...support.director_helpers import encode


def tones(seconds, rate, channels, amplitude=0.5):
    """440 Hz on the left (or mono), 660 Hz on the right."""
    t = np.arange(int(seconds * rate)) / rate
    return np.stack([amplitude * np.sin(2 * np.pi * f * t) for f in (440, 660)[:channels]],
                    1).astype(np.float32)


def peak_hz(channel):
    x = channel.astype(np.float64) * np.hanning(len(channel))
    return np.argmax(np.abs(np.fft.rfft(x))) * SAMPLE_RATE / len(channel)


def snr_db(reference, signal):
    error = signal.astype(np.float64) - reference
    return 10 * np.log10(np.sum(reference ** 2) / np.sum(error ** 2))


def check_shape(track, at_least):
    assert track.dtype == np.dtype("<i2")
    assert track.ndim == 2 and track.shape[1] == 2
    assert len(track) % FRAMES_PER_CHUNK == 0
    assert at_least <= len(track) < at_least + FRAMES_PER_CHUNK + 4096  # (lossy codecs pad a bit)


def test_wav_at_44100_stereo_is_exact(tmp_path):
    data = (tones(1.3, SAMPLE_RATE, 2) * 32767).astype("<i2")
    path = str(tmp_path / "t.wav")
    soundfile.write(path, data, SAMPLE_RATE, "PCM_16")
    track = load_track(path)
    assert len(track) == -(-len(data) // FRAMES_PER_CHUNK) * FRAMES_PER_CHUNK
    np.testing.assert_array_equal(track[:len(data)], data)
    assert not track[len(data):].any()  # padded with silence to a whole chunk


def test_flac_mono_goes_to_both_channels(tmp_path):
    data = (tones(0.7, SAMPLE_RATE, 1)[:, 0] * 20000).astype("<i2")
    path = str(tmp_path / "t.flac")
    soundfile.write(path, data, SAMPLE_RATE, "PCM_16")
    track = load_track(path)
    np.testing.assert_array_equal(track[:len(data), 0], data)
    np.testing.assert_array_equal(track[:, 0], track[:, 1])


def test_float_wav_is_clipped_not_wrapped(tmp_path):
    data = np.array([[0.5, -0.5], [1.5, -1.5], [-1.0, 0.999]], np.float32)
    path = str(tmp_path / "f.wav")
    soundfile.write(path, data, SAMPLE_RATE, "FLOAT")
    track = load_track(path)
    np.testing.assert_array_equal(track[:3], [[16384, -16384], [32767, -32768], [-32768, 32735]])


@pytest.mark.parametrize("name, rate, channels", [("t48.wav", 48000, 1), ("t22.flac", 22050, 2),
                                                  ("t96.wav", 96000, 2)])
def test_other_rates_are_resampled_in_time(tmp_path, name, rate, channels):
    """ffmpeg resamples: a tone keeps its pitch, its level and its timing (lag 0)."""
    path = encode(tones(1.5, rate, channels), rate, str(tmp_path / name))
    track = load_track(path)
    n = int(1.5 * SAMPLE_RATE)
    check_shape(track, n)
    expected = tones(1.5, SAMPLE_RATE, channels)[:n] * 32768
    middle = slice(2000, n - 2000)  # the resampler's filter rings at the edges
    for c in range(2):
        reference = expected[middle, min(c, channels - 1)]
        assert snr_db(reference, track[middle, c]) > 35
    if channels == 1:
        np.testing.assert_array_equal(track[:, 0], track[:, 1])


@pytest.mark.parametrize("name, rate, channels, args", [
    ("t.mp3", 48000, 1, ("-c:a", "libmp3lame", "-b:a", "128k")),
    ("t44.mp3", 44100, 2, ("-c:a", "libmp3lame", "-b:a", "192k")),
    ("t.ogg", 44100, 2, ()),
    ("t.ogg", 32000, 1, ()),
    ("t.m4a", 22050, 2, ("-c:a", "aac", "-b:a", "128k")),
])
def test_lossy_formats(tmp_path, name, rate, channels, args):
    """MP3, OGG Vorbis, M4A (AAC): decoded, resampled when needed, channels kept apart."""
    path = encode(tones(1.5, rate, channels), rate, str(tmp_path / name), *args)
    track = load_track(path)
    check_shape(track, int(1.5 * SAMPLE_RATE) - 2048)
    middle = track[10000:50000].astype(np.float64)
    for c, frequency in enumerate((440, 660)[:channels] * (2 if channels == 1 else 1)):
        assert abs(peak_hz(middle[:, c]) - frequency) < 3
        rms = np.sqrt(np.mean(middle[:, c] ** 2))
        assert abs(20 * np.log10(rms / (0.5 * 32768 / np.sqrt(2)))) < 1.0  # level kept (±1 dB)
    if channels == 1:
        np.testing.assert_array_equal(track[:, 0], track[:, 1])


def test_skip_seconds(tmp_path):
    data = (np.random.default_rng(0).uniform(-0.5, 0.5, (SAMPLE_RATE * 2, 2)) * 32768).astype("<i2")
    path = str(tmp_path / "noise.wav")
    soundfile.write(path, data, SAMPLE_RATE, "PCM_16")
    track = load_track(path, skip_seconds=0.5)
    rest = data[SAMPLE_RATE // 2:]
    np.testing.assert_array_equal(track[:len(rest)], rest)
    assert len(track) == -(-len(rest) // FRAMES_PER_CHUNK) * FRAMES_PER_CHUNK
    # a resampled file: the skip counts in seconds of the file, whatever its rate
    resampled = encode(tones(2.0, 48000, 1), 48000, str(tmp_path / "t48.wav"))
    whole, skipped = load_track(resampled), load_track(resampled, skip_seconds=1.25)
    skip, n = int(1.25 * SAMPLE_RATE), int(0.75 * SAMPLE_RATE)  # (then padding)
    np.testing.assert_array_equal(skipped[:n], whole[skip:skip + n])
    with pytest.raises(MediaError, match="cannot skip 3 seconds"):
        load_track(path, skip_seconds=3)
    with pytest.raises(ValueError):
        load_track(path, skip_seconds=-1)


def test_not_audio(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("Soprano: bar 12, breathe before the high A.\n" * 20)
    with pytest.raises(MediaError, match="notes.txt is not an audio file"):
        load_track(str(text))
    disguised = tmp_path / "song.mp3"
    disguised.write_text("this is not an mp3\n" * 50)
    with pytest.raises(MediaError, match="song.mp3 is not an audio file"):
        load_track(str(disguised))
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(MediaError, match="empty.wav"):
        load_track(str(empty))
    with pytest.raises(MediaError, match="no such file"):
        load_track(str(tmp_path / "missing.flac"))
    with pytest.raises(MediaError, match="folder"):
        load_track(str(tmp_path))


@pytest.mark.parametrize("name", ["mix.wav", "MIX.FLAC"])
def test_save_mix(tmp_path, name):
    mix = (np.random.default_rng(1).uniform(-1, 1, 3 * FRAMES_PER_CHUNK) * 32767).astype("<i2")
    path = str(tmp_path / name)
    save_mix(path, mix)
    info = soundfile.info(path)
    assert (info.samplerate, info.channels, info.subtype) == (SAMPLE_RATE, 1, "PCM_16")
    assert info.format == os.path.splitext(name)[1][1:].upper()
    back, _ = soundfile.read(path, dtype="int16")
    np.testing.assert_array_equal(back, mix)


def test_output_format():
    assert output_format("a/b/rehearsal.flac") == "FLAC"
    assert output_format("take2.WAV") == "WAV"
    for bad in ("mix.mp3", "mix"):
        with pytest.raises(MediaError, match=".wav or .flac"):
            output_format(bad)
