"""The audio devices: simulated ones in process, sounddevice on JACK's dummy backend in
a subprocess (PortAudio must be initialised after jackd is up)."""
import builtins
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import soundfile

from choir_clients.rehearsal.audio import AudioStream, StreamStatus
from choir_clients.rehearsal.devices import CallbackStop, DeviceError, SoundDevice
from choir_clients.rehearsal.simulated_devices import (EchoDevice, FileMicrophone, SilentCard,
                                                       SimulatedCard)

from ...support.jack import jack_dummy, run_sounddevice
from ...support.paths import ROOT

BLOCK = 512
DT = BLOCK / 44100


def run(device, blocks, play=None, *, timeout=10.0):
    """Run ``blocks`` blocks through the device: (played stereo, recorded mono, statuses, finished)."""
    rng = np.random.default_rng(3)
    if play is None:
        play = (0.3 * rng.standard_normal((blocks * BLOCK, 2))).astype(np.float32)
    recorded = np.full(blocks * BLOCK, np.nan, np.float32)
    statuses, finished, count = [], [], [0]
    done = threading.Event()

    def callback(indata, outdata, status):
        k = count[0]
        assert indata.shape == (BLOCK, 1) and indata.dtype == np.float32
        assert outdata.shape == (BLOCK, 2) and outdata.dtype == np.float32
        recorded[k * BLOCK:(k + 1) * BLOCK] = indata[:, 0]
        outdata[:] = play[k * BLOCK:(k + 1) * BLOCK]
        statuses.append(status)
        count[0] = k + 1
        if k + 1 == blocks:
            raise CallbackStop

    stream = device.open(callback, finished=lambda: (finished.append(threading.current_thread()), done.set()))
    assert isinstance(stream, AudioStream)
    with stream:
        assert done.wait(timeout), "the stream did not end"
    assert count[0] == blocks
    return play, recorded, statuses, finished


def mono(play):
    return (play[:, 0] + play[:, 1]) * np.float32(0.5)


@pytest.mark.parametrize("latency", [512, 513, 777, 1023, 1024, 3000])
def test_echo_delays_by_exactly_latency_samples(latency):
    play, recorded, _, _ = run(EchoDevice(latency, realtime=False), 20)
    assert np.all(recorded[:latency] == 0)  # silence before
    np.testing.assert_array_equal(recorded[latency:], mono(play)[:len(recorded) - latency])


@pytest.mark.parametrize("latency", [0, 1, 511, -5])
def test_echo_refuses_latency_below_one_block(latency):
    """indata is delivered before outdata is filled: no duplex callback device can hear
    a sample sooner than one block after it is played."""
    with pytest.raises(ValueError, match="least latency is 512"):
        EchoDevice(latency)


def test_echo_gain_and_noise():
    play, recorded, _, _ = run(EchoDevice(600, gain=0.5, realtime=False), 40)
    np.testing.assert_allclose(recorded[600:], 0.5 * mono(play)[:-600], rtol=0, atol=1e-7)

    silent = np.zeros((200 * BLOCK, 2), np.float32)
    _, noise, _, _ = run(EchoDevice(600, gain=1.0, noise=0.1, seed=5, realtime=False), 200, silent)
    assert abs(np.sqrt(np.mean(noise.astype(np.float64) ** 2)) - 0.1) < 0.002
    assert abs(np.mean(noise)) < 0.002
    spectrum = np.abs(np.fft.rfft(noise)) ** 2  # white: as much power in the low half as the high
    half = len(spectrum) // 2
    assert 0.9 < spectrum[:half].sum() / spectrum[half:].sum() < 1.1
    _, same, _, _ = run(EchoDevice(600, noise=0.1, seed=5, realtime=False), 200, silent)
    _, other, _, _ = run(EchoDevice(600, noise=0.1, seed=6, realtime=False), 200, silent)
    np.testing.assert_array_equal(noise, same)
    assert not np.array_equal(noise, other)

    # echo and noise add up
    play, both, _, _ = run(EchoDevice(700, gain=2.0, noise=0.1, seed=5, realtime=False), 200)
    residual = both[700:] - 2.0 * mono(play)[:-700]
    np.testing.assert_allclose(residual, noise[700:], atol=1e-6)


def test_echo_underruns_reported_every_nth_block():
    _, _, statuses, _ = run(EchoDevice(512, realtime=False, underrun_every=4), 13)
    assert [k for k, s in enumerate(statuses) if s.output_underflow] == [3, 7, 11]
    assert not any(s.input_overflow for s in statuses)
    _, _, statuses, _ = run(EchoDevice(512, realtime=False), 13)
    assert statuses == [StreamStatus()] * 13


def test_echo_realtime_pacing_keeps_time():
    """~1 s of blocks, each on its deadline, even with a callback that takes time."""
    blocks = 90
    times = []
    done = threading.Event()

    def callback(indata, outdata, status):
        times.append(time.monotonic())
        busy = time.monotonic() + 0.004  # work of 4 ms per block: must not add up
        while time.monotonic() < busy:
            pass
        outdata.fill(0)
        if len(times) == blocks:
            raise CallbackStop

    with EchoDevice(1024).open(callback, finished=done.set):
        assert done.wait(5)
    offsets = np.array(times) - times[0] - np.arange(blocks) * DT
    assert offsets.min() > -0.002, "a block came early"
    assert offsets[-1] < 0.03, f"drift: the last block came {offsets[-1] * 1000:.1f} ms late"
    assert np.median(offsets) < 0.01
    assert (times[-1] - times[0]) == pytest.approx((blocks - 1) * DT, abs=0.03)


def test_realtime_false_runs_faster_than_real_time():
    start = time.monotonic()
    run(EchoDevice(512, realtime=False), 200)  # 2.3 s of sound
    assert time.monotonic() - start < 1.0


def test_callback_stop_ends_stream_and_calls_finished_once():
    device = EchoDevice(512, realtime=False)
    play, recorded, statuses, finished = run(device, 10)
    assert len(statuses) == 10
    assert len(finished) == 1
    assert finished[0] is not threading.current_thread()  # on the device's thread

    calls, finished = [], []
    stream = device.open(lambda i, o, s: (calls.append(1), o.fill(0)), finished=lambda: finished.append(1))
    stream.start()
    deadline = time.monotonic() + 5
    while len(calls) < 5:
        assert time.monotonic() < deadline
        time.sleep(0.001)
    stream.stop()  # from another thread
    assert finished == [1]
    assert not stream.active
    n = len(calls)
    stream.close()
    assert finished == [1] and len(calls) == n


def test_error_in_callback_ends_stream():
    finished = threading.Event()
    def callback(indata, outdata, status):
        raise ZeroDivisionError("boom")
    stream = EchoDevice(512, realtime=False).open(callback, finished=finished.set)
    stream.start()
    assert finished.wait(5)
    assert isinstance(stream.error, ZeroDivisionError)
    stream.close()


def test_stop_and_close_are_safe_from_the_callback():
    done = threading.Event()
    holder = {}
    def callback(indata, outdata, status):
        outdata.fill(0)
        holder["stream"].close()
    holder["stream"] = stream = EchoDevice(512).open(callback, finished=done.set)
    stream.start()
    assert done.wait(5)
    with pytest.raises(RuntimeError):
        stream.start()


def test_file_microphone_plays_the_file_then_silence(tmp_path):
    rng = np.random.default_rng(9)
    pcm = (rng.standard_normal((3000, 2)) * 5000).astype(np.int16)
    path = tmp_path / "voice.wav"
    soundfile.write(path, pcm, 44100, "PCM_16")
    device = FileMicrophone(path, realtime=False)
    assert device.blocks == 6
    _, recorded, _, _ = run(device, 10)
    expected = pcm.astype(np.float32).mean(axis=1) / 32768
    np.testing.assert_allclose(recorded[:3000], expected, atol=1e-7)
    assert np.all(recorded[3000:] == 0)

    mono_path = tmp_path / "mono.flac"
    soundfile.write(mono_path, pcm[:, 0], 44100, "PCM_16")
    _, recorded, _, _ = run(FileMicrophone(mono_path, realtime=False), 7)
    np.testing.assert_array_equal(recorded[:3000], pcm[:, 0] / np.float32(32768))


def test_file_microphone_errors(tmp_path):
    path = tmp_path / "48k.wav"
    soundfile.write(path, np.zeros(4800, np.int16), 48000, "PCM_16")
    with pytest.raises(DeviceError, match="48000 Hz: it must be 44100"):
        FileMicrophone(path)
    with pytest.raises(DeviceError, match="cannot read"):
        FileMicrophone(tmp_path / "missing.wav")


def test_simulated_card_echoes_after_its_latency_in_ms_with_quiet_noise():
    """--simulate 150: the echo comes 6615 samples (150 ms at 44.1 kHz) later, under a
    noise of -60 dBFS RMS; the card is named (and its calibration keyed) by the ms."""
    card = SimulatedCard(150, seed=1)
    assert (card.latency_samples, card.name, card.card_names) == (
        6615, "simulated 150 ms", ("simulated 150 ms", "simulated 150 ms"))
    assert card.realtime
    card.realtime = False  # (the same card, run fast)
    play, recorded, _, _ = run(card, 40)
    noise = recorded[:6615]  # before the echo: the noise alone
    assert 0.0008 < np.sqrt(np.mean(noise.astype(np.float64) ** 2)) < 0.0012
    residual = recorded[6615:] - mono(play)[:-6615]
    assert np.abs(residual).max() < 0.01
    assert SimulatedCard(12.5).name == "simulated 12.5 ms"
    with pytest.raises(ValueError, match="least latency is 512"):
        SimulatedCard(11)


def test_silent_card_hears_nothing_in_real_time():
    """SilentCard (under --input-file): silence in, in real time (40 blocks take 0.46 s)."""
    start = time.monotonic()
    _, recorded, _, _ = run(SilentCard("recording x.wav"), 40)
    elapsed = time.monotonic() - start
    assert np.all(recorded == 0)
    assert 40 * DT - 0.05 < elapsed < 40 * DT + 0.5
    assert SilentCard("recording x.wav").card_names == ("recording x.wav",) * 2


def test_devices_module_does_not_import_sounddevice():
    code = ("import sys, choir_clients.rehearsal.devices, choir_clients.rehearsal.calibration; "
            "assert 'sounddevice' not in sys.modules, 'imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT)
    assert result.returncode == 0, result.stderr


def test_missing_portaudio_or_sounddevice(monkeypatch):
    real_import = builtins.__import__
    def no_portaudio(name, *args, **kwargs):
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_portaudio)
    with pytest.raises(DeviceError, match="libportaudio2"):
        SoundDevice()
    monkeypatch.setattr(builtins, "__import__", real_import)
    monkeypatch.setitem(sys.modules, "sounddevice", None)
    with pytest.raises(DeviceError, match="pip install sounddevice"):
        SoundDevice()


@pytest.fixture(scope="module")
def jack():
    with jack_dummy() as env:
        yield env


def test_sounddevice_on_jack_loopback(jack):
    """A duplex stream on JACK's dummy card: 512-frame blocks on a thread of its own, at
    the card's clock, and through loopback() what it played comes back."""
    blocks = 200
    answer = run_sounddevice(jack, "duplex", blocks)
    assert answer["device"] == "system"
    assert answer["shapes"] == [["(512, 1)", "float32", "(512, 2)", "float32"]]
    assert answer["callbacks"] == blocks
    assert answer["threads"] == 1 and not answer["main_thread"]
    assert answer["finished"] == 1
    assert answer["pairs"] == [["PortAudio:out_0", "PortAudio:in_0"]]
    assert answer["connected_at_block"] < blocks // 2
    # clocked: 200 blocks take 2.32 s of real time
    assert blocks * DT - 0.1 < answer["elapsed"] < blocks * DT + 1.0
    # the echo is the played left channel, exactly, whole JACK periods later
    assert answer["lag"] % 512 == 0 and 512 <= answer["lag"] <= 4096, answer["lag"]
    assert answer["echo_error"] < 1e-6


def test_sounddevice_errors_list_the_devices(jack):
    answer = run_sounddevice(jack, "devices", "no such card")
    assert "system" in answer["table"] and "JACK Audio Connection Kit" in answer["table"]
    assert answer["error"].startswith("cannot use input device 'no such card'")
    assert answer["table"] in answer["error"]
    answer = run_sounddevice(jack, "devices", "0", "7")  # "0": an index given as text
    assert answer["error"].startswith("cannot use output device 7"), answer["error"]
    answer = run_sounddevice(jack, "devices", "syst", "0")
    assert answer["error"] is None
