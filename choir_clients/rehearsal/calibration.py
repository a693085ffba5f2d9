"""Round-trip latency calibration: play a test sweep, record it, find the echo.

``measure_latency(device)`` plays, through the device's stream, 0.5 s of silence
(time for a JACK port connection made just after the stream starts to be in
place), a sine sweep, then silence long enough to record an echo up to 1 s late;
it records the microphone all along and finds the lag at which the recording
best matches the sweep, by cross-correlation (FFT), to the sample.

The latency is in stream positions (see ``choir_clients.rehearsal.devices``): what the
callback plays at output position *t* is recorded at input position
``t + latency_samples``.

The test signal is a linear sine sweep from 150 Hz to 12 kHz with faded ends,
at -12 dBFS peak on both channels. Its spectrum is flat over the band, so its
autocorrelation is a narrow pulse (about 4 samples wide, side lobes below 2 %
beyond a few samples), and 3 s of it give a correlation gain of about 50 dB
over noise.

Confidence: ``1 - rival / peak``, where ``peak`` is the largest absolute
correlation and ``rival`` the largest one at least 5 ms away from it (any other
candidate lag: noise, hum, a reflection). 1 means the echo stands alone; a value
near 0 means another lag fits almost as well, as happens when there is no echo
at all. Measurements below ``min_confidence`` (0.5 by default: the echo
correlates at least twice as well as anything else) are refused. The measure is
independent of the level, so a faint but clean echo is accepted.
"""
import threading
import time

import attrs
import numpy as np

from choir_protocol.rehearsal.constants import FRAMES_PER_CHUNK, SAMPLE_RATE

from .devices import CallbackStop

BLOCK = FRAMES_PER_CHUNK
LEAD_IN_SECONDS = 0.5
MAX_LATENCY = SAMPLE_RATE  # samples: the longest round trip accepted (1 s)
SEARCH_MARGIN = 2048  # the search also covers this much before 0 and after MAX_LATENCY
EXCLUSION = int(0.005 * SAMPLE_RATE)  # a rival peak is at least this far from the peak
SWEEP_LOW, SWEEP_HIGH = 150.0, 12000.0
LEVEL = 0.25  # peak amplitude of the sweep (-12 dBFS)
FADE_SECONDS = 0.05
SILENCE_RMS = 1e-5  # a microphone below this (-100 dBFS) delivers nothing at all
MIN_CONFIDENCE = 0.5


class CalibrationError(Exception):
    """A measurement that cannot be trusted; the message is meant for the singer."""


@attrs.frozen
class Calibration:
    latency_samples: int
    confidence: float

    @property
    def latency_chunks(self) -> float:
        return self.latency_samples / FRAMES_PER_CHUNK

    @property
    def latency_ms(self) -> float:
        return self.latency_samples * 1000.0 / SAMPLE_RATE


def test_sweep(seconds: float) -> np.ndarray:
    """The calibration sweep, mono float32, ``seconds`` long."""
    n = max(int(round(seconds * SAMPLE_RATE)), BLOCK)
    t = np.arange(n) / SAMPLE_RATE
    duration = n / SAMPLE_RATE
    phase = 2 * np.pi * (SWEEP_LOW * t + (SWEEP_HIGH - SWEEP_LOW) * t * t / (2 * duration))
    envelope = np.ones(n)
    fade = min(int(FADE_SECONDS * SAMPLE_RATE), n // 4)
    if fade:
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / fade)
        envelope[:fade] = ramp
        envelope[n - fade:] = ramp[::-1]
    return (LEVEL * envelope * np.sin(phase)).astype(np.float32)


test_sweep.__test__ = False  # (not a pytest test, despite its name)


def find_latency(sweep: np.ndarray, recording: np.ndarray, sweep_start: int, *,
                 min_confidence: float = MIN_CONFIDENCE) -> Calibration:
    """The lag of ``sweep`` (played from output position ``sweep_start``) in ``recording``
    (input positions from 0). Raises CalibrationError when it cannot be trusted."""
    recording = np.asarray(recording, np.float64).ravel()
    sweep = np.asarray(sweep, np.float64).ravel()
    if len(recording) and np.sqrt(np.mean(recording ** 2)) < SILENCE_RMS:
        raise CalibrationError("no sound at all came from the microphone: is it plugged in, "
                               "selected and unmuted?")
    first, last = sweep_start - SEARCH_MARGIN, sweep_start + MAX_LATENCY + SEARCH_MARGIN
    if first < 0 or last + len(sweep) > len(recording):
        raise ValueError("the recording does not cover the search range")
    # corr[d] = sum_t recording[d + t] * sweep[t], for d in [first, last]
    segment = recording[first:last + len(sweep)]
    size = 1 << (len(segment) + len(sweep)).bit_length()
    corr = np.fft.irfft(np.fft.rfft(segment, size) * np.conj(np.fft.rfft(sweep, size)), size)
    corr = np.abs(corr[:last - first + 1])
    lags = np.arange(first, last + 1) - sweep_start
    best = int(np.argmax(corr))
    peak = float(corr[best])
    away = np.abs(lags - lags[best]) > EXCLUSION
    rival = float(corr[away].max()) if away.any() else 0.0
    confidence = 1.0 - rival / peak if peak > 0 else 0.0
    latency = int(lags[best])
    if confidence < min_confidence:
        if confidence < 0.2:
            raise CalibrationError(
                f"no echo heard (confidence {confidence:.2f}): is the microphone near the "
                "headphones/speakers and unmuted, and the volume up?")
        raise CalibrationError(
            f"the echo is too noisy to be sure (confidence {confidence:.2f}): try again in a "
            "quieter room, or turn the volume up")
    if latency < 0:
        raise CalibrationError(
            f"the microphone heard the test sound {-latency} samples before it was played: "
            "this sound set-up cannot be measured (is something else playing the same sound?)")
    if latency > MAX_LATENCY:
        raise CalibrationError(
            f"the echo came back {latency / SAMPLE_RATE:.2f} s late, more than the "
            f"{MAX_LATENCY / SAMPLE_RATE:.0f} s this measurement accepts: choose a sound device "
            "with less latency (smaller buffers)")
    return Calibration(latency_samples=latency, confidence=confidence)


def measure_latency(device, *, seconds: float = 3.0, progress=None, timeout: float | None = None,
                    min_confidence: float = MIN_CONFIDENCE) -> Calibration:
    """Measure the device's round-trip latency; blocks until done.

    ``seconds`` is the length of the test sweep; the whole measurement lasts about
    ``seconds + 1.55`` s. ``progress(fraction)``, if given, is called on the calling
    thread as it goes, ending with 1.0. ``timeout`` (default: twice the duration plus
    5 s) bounds the wait for the device. Raises CalibrationError when the
    measurement cannot be trusted (or the device does not deliver), DeviceError
    when the device cannot be opened.
    """
    sweep = test_sweep(seconds)
    lead_in = int(LEAD_IN_SECONDS * SAMPLE_RATE)
    total = lead_in + len(sweep) + MAX_LATENCY + SEARCH_MARGIN
    blocks = -(-total // BLOCK)
    played = np.zeros(blocks * BLOCK, np.float32)
    played[lead_in:lead_in + len(sweep)] = sweep
    recorded = np.zeros(blocks * BLOCK, np.float32)
    lead_in_blocks = lead_in // BLOCK  # device hiccups while starting up do not matter
    state = {"block": 0, "flagged": []}
    done = threading.Event()  # all blocks recorded
    ended = threading.Event()  # the stream ended (normally or not)

    def callback(indata, outdata, status):
        k = state["block"]
        if k >= blocks:  # (a device that calls again after CallbackStop)
            outdata.fill(0)
            raise CallbackStop
        recorded[k * BLOCK:(k + 1) * BLOCK] = indata[:, 0]
        outdata[:] = played[k * BLOCK:(k + 1) * BLOCK, None]
        if status and k >= lead_in_blocks:
            state["flagged"].append(k)
        state["block"] = k + 1
        if k + 1 == blocks:
            done.set()
            raise CallbackStop

    if timeout is None:
        timeout = 2 * blocks * BLOCK / SAMPLE_RATE + 5.0
    stream = device.open(callback, finished=ended.set)
    try:
        stream.start()
        deadline = time.monotonic() + timeout
        while not done.wait(0.05):
            if progress is not None:
                progress(state["block"] / blocks)
            if ended.is_set() and not done.is_set():
                error = getattr(stream, "error", None)
                raise CalibrationError("the sound device stopped during the measurement"
                                       + (f" ({error})" if error else "") + ": try again")
            if time.monotonic() > deadline:
                raise CalibrationError(
                    f"the sound device delivered {state['block']} of {blocks} blocks in "
                    f"{timeout:.0f} s: is it in use by another program, or disconnected?")
    finally:
        stream.close()
    if progress is not None:
        progress(1.0)
    if state["flagged"]:
        raise CalibrationError(
            f"the sound device dropped sound during the measurement ({len(state['flagged'])} "
            "over- or under-runs): close other programs using sound and try again")
    return find_latency(sweep, recorded, lead_in, min_confidence=min_confidence)
