"""Test signals and measures of a mix against its track."""
import numpy as np

from choir_protocol.rehearsal.constants import FRAMES_PER_CHUNK, SAMPLE_RATE


def broadband_track(seconds: float, seed: int = 1) -> np.ndarray:
    """A stereo int16 track, whole chunks, with a sharp autocorrelation peak."""
    n = int(seconds * SAMPLE_RATE) // FRAMES_PER_CHUNK * FRAMES_PER_CHUNK
    t = np.arange(n) / SAMPLE_RATE
    rng = np.random.default_rng(seed)
    chirp = np.sin(2 * np.pi * (200 + 900 * t / t[-1]) * t)
    tones = 0.5 * np.sin(2 * np.pi * 330 * t) + 0.3 * np.sin(2 * np.pi * 1234 * t + 1)
    noise = np.convolve(rng.standard_normal(n), np.ones(8) / 8, "same")
    left = 5000 * chirp + 3000 * tones + 2000 * noise
    right = 5000 * chirp - 3000 * tones + 2000 * noise
    return np.clip(np.stack([left, right], 1), -32768, 32767).astype("<i2")


def mono(track: np.ndarray) -> np.ndarray:
    return (track[:, 0].astype(np.int32) + track[:, 1]) >> 1


def snr_db(reference: np.ndarray, signal: np.ndarray) -> float:
    reference = reference.astype(np.float64)
    error = signal.astype(np.float64) - reference
    return float(10 * np.log10(np.sum(reference**2) / max(np.sum(error**2), 1e-9)))


def best_lag(reference: np.ndarray, signal: np.ndarray, max_lag: int = 2048) -> int:
    """The shift (in samples) of ``signal`` against ``reference`` that correlates best."""
    n = min(len(reference), len(signal))
    a = reference[:n].astype(np.float64)
    b = signal[:n].astype(np.float64)
    size = 1 << (2 * n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(b, size) * np.conj(np.fft.rfft(a, size)), size)
    lags = np.concatenate([np.arange(0, max_lag + 1), np.arange(-max_lag, 0)])
    values = np.concatenate([corr[:max_lag + 1], corr[-max_lag:]])
    return int(lags[np.argmax(values)])
