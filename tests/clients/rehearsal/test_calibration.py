"""Latency calibration on simulated devices, and through sounddevice on JACK's dummy card."""
import threading

import attrs
import numpy as np
import pytest

from choir_clients.rehearsal.audio import AudioDevice, AudioStream
from choir_clients.rehearsal.calibration import (LEAD_IN_SECONDS, MAX_LATENCY, Calibration,
                                                 CalibrationError, find_latency, measure_latency,
                                                 test_sweep)
from choir_clients.rehearsal.simulated_devices import EchoDevice, SimulatedCard

from ...support.jack import jack_dummy, run_sounddevice


@pytest.mark.parametrize("latency", [512, 513, 777, 2048, 5000, MAX_LATENCY])
def test_exact_to_the_sample(latency):
    calibration = measure_latency(EchoDevice(latency, realtime=False))
    assert calibration.latency_samples == latency
    assert calibration.confidence > 0.99


@pytest.mark.parametrize("latency, gain, noise", [(777, 0.5, 0.05), (2048, 0.1, 0.1), (5000, 1.0, 1.0),
                                                  (1500, -0.8, 0.05)])
def test_exact_with_noise_and_gain(latency, gain, noise):
    """Noise (even 15 dB above the echo) and a faint or inverted echo do not move it."""
    calibration = measure_latency(EchoDevice(latency, gain=gain, noise=noise, seed=latency, realtime=False))
    assert calibration.latency_samples == latency
    assert 0.5 < calibration.confidence <= 1.0


@pytest.mark.parametrize("ms", [12, 150, 1000])
def test_simulated_card_measures_its_latency(ms):
    """choir-singer's --simulate card, quiet noise and all, measures what it was given,
    from the shortest to the longest latency --simulate accepts."""
    card = SimulatedCard(ms, seed=ms)
    card.realtime = False
    calibration = measure_latency(card, seconds=1.0)
    assert calibration.latency_samples == round(ms * 44.1)
    assert calibration.latency_ms == pytest.approx(ms, abs=0.02)
    assert calibration.confidence > 0.9


@pytest.mark.parametrize("lag", [0, 1, 511])
def test_find_latency_below_one_block(lag):
    """The analysis itself has no lower bound (devices do)."""
    sweep = test_sweep(1.0)
    start = 30000
    recording = np.zeros(start + len(sweep) + MAX_LATENCY + 4096, np.float32)
    recording[start + lag:start + lag + len(sweep)] = 0.3 * sweep
    assert find_latency(sweep, recording, start).latency_samples == lag


def test_refuses_an_echo_heard_before_it_was_played():
    sweep = test_sweep(1.0)
    start = 30000
    recording = np.zeros(start + len(sweep) + MAX_LATENCY + 4096, np.float32)
    recording[start - 700:start - 700 + len(sweep)] = sweep
    with pytest.raises(CalibrationError, match="700 samples before it was played"):
        find_latency(sweep, recording, start)


def test_refuses_when_there_is_no_echo():
    with pytest.raises(CalibrationError, match="no sound at all came from the microphone"):
        measure_latency(EchoDevice(1000, gain=0.0, realtime=False))
    with pytest.raises(CalibrationError, match=r"no echo heard \(confidence 0\.[01]\d\)") as error:
        measure_latency(EchoDevice(1000, gain=0.0, noise=0.01, realtime=False))
    assert "microphone near the headphones/speakers" in str(error.value)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_refuses_when_noise_drowns_the_echo(seed):
    """Noise RMS 20 against an echo of RMS 0.18 (-41 dB): whatever the peak, it is not sure."""
    with pytest.raises(CalibrationError, match=r"\(confidence 0\.[0-4]\d\)"):
        measure_latency(EchoDevice(3000, noise=20.0, seed=seed, realtime=False))


def test_refuses_an_echo_later_than_one_second():
    with pytest.raises(CalibrationError, match="1.04 s late"):
        measure_latency(EchoDevice(46000, realtime=False))
    with pytest.raises(CalibrationError, match="no echo heard"):  # beyond the search range
        measure_latency(EchoDevice(60000, realtime=False))


def test_refuses_when_the_device_drops_sound():
    with pytest.raises(CalibrationError, match="dropped sound"):
        measure_latency(EchoDevice(1000, realtime=False, underrun_every=100))


class StuckDevice(AudioDevice):
    """Delivers ``blocks`` blocks, then nothing (or ends the stream, with ``end``)."""

    def __init__(self, blocks, end=False):
        self.blocks, self.end = blocks, end

    def open(self, callback, finished=None):
        device = self

        class Stream(AudioStream):
            closed = False

            def start(self):
                def run():
                    indata, outdata = np.zeros((512, 1), np.float32), np.zeros((512, 2), np.float32)
                    for _ in range(device.blocks):
                        callback(indata, outdata, None)
                    if device.end and finished:
                        finished()
                threading.Thread(target=run, daemon=True).start()

            def stop(self):
                pass

            def close(self):
                Stream.closed = True

        device.stream = Stream
        return Stream()


def test_refuses_a_device_that_never_delivers():
    device = StuckDevice(3)
    with pytest.raises(CalibrationError, match="delivered 3 of .* blocks in 0 s"):
        measure_latency(device, timeout=0.3)
    assert device.stream.closed


def test_refuses_a_stream_that_ends_early():
    device = StuckDevice(10, end=True)
    with pytest.raises(CalibrationError, match="stopped during the measurement"):
        measure_latency(device)
    assert device.stream.closed


def test_realtime_with_progress():
    fractions = []
    calibration = measure_latency(EchoDevice(1234), seconds=0.25, progress=fractions.append)
    assert calibration.latency_samples == 1234
    assert calibration.confidence > 0.99
    assert len(fractions) > 10  # the measurement lasts 1.8 s
    assert fractions == sorted(fractions) and fractions[0] < 0.1 and fractions[-1] == 1.0


def test_calibration_values():
    calibration = Calibration(latency_samples=1536, confidence=0.9)
    assert calibration.latency_chunks == 3.0
    assert calibration.latency_ms == pytest.approx(34.83, abs=0.01)
    assert Calibration(latency_samples=700, confidence=1.0).latency_chunks == pytest.approx(1.367, abs=0.001)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        calibration.latency_samples = 3


def test_the_test_signal():
    sweep = test_sweep(3.0)
    assert len(sweep) == 3 * 44100 and sweep.dtype == np.float32
    assert 0.2 < np.abs(sweep).max() <= 0.25  # moderate level
    assert sweep[0] == 0 and abs(sweep[-1]) < 1e-3  # faded ends
    # a sharp autocorrelation: nothing beyond 5 ms reaches 1 % of the peak
    size = 1 << (2 * len(sweep)).bit_length()
    auto = np.fft.irfft(np.abs(np.fft.rfft(sweep, size)) ** 2, size)[:len(sweep)]
    assert np.abs(auto[221:]).max() < 0.01 * auto[0]
    assert LEAD_IN_SECONDS >= 0.5


def test_on_jack_dummy_with_loopback():
    """Through sounddevice on JACK's dummy card, looped back with jack_connect: two
    measurements agree to the sample (JACK's loop: whole periods)."""
    with jack_dummy() as env:
        answer = run_sounddevice(env, "calibrate", 2, 1.0)
    first, second = answer["measurements"]
    assert first["latency_samples"] == second["latency_samples"]
    assert first["latency_samples"] % 512 == 0 and 512 <= first["latency_samples"] <= 4096
    assert first["confidence"] > 0.99 and second["confidence"] > 0.99
    print("JACK dummy loopback latency:", first["latency_samples"], "samples")
