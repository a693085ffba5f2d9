"""The simulated singers' voices: each rings at a note of its own, in time with what it hears."""
import threading

import numpy as np

from choir_clients.demo.demo import Options, singer_plan
from choir_clients.demo.signals import best_lag, broadband_track, mono
from choir_clients.demo.voices import (Resonator, SingingDevice, Voice, expected_stem, sing,
                                       voice_for)
from choir_clients.rehearsal.devices import CallbackStop


def record_through(device, played: np.ndarray) -> np.ndarray:
    """What ``device``'s microphone hears while its stream plays ``played`` (mono float),
    block after block, then as long again in silence."""
    blocks = len(played) // 512
    heard = []
    done = threading.Event()

    def callback(indata, outdata, status):
        k = len(heard)
        heard.append(indata[:, 0].copy())
        if k < blocks:
            outdata[:, 0] = outdata[:, 1] = played[k * 512:(k + 1) * 512]
        if len(heard) == 2 * blocks:
            raise CallbackStop

    stream = device.open(callback, finished=done.set)
    stream.start()
    assert done.wait(30)
    stream.close()
    return np.concatenate(heard)


def test_the_microphone_hears_the_voice_sung_to_what_was_played_after_the_latency():
    played = (mono(broadband_track(1.0)) / 32768).astype(np.float32)
    voice = voice_for("Tenor", 0)
    device = SingingDevice(1234, voice, breath=0.0, realtime=False)
    heard = record_through(device, played)
    assert not heard[:1234].any()
    np.testing.assert_allclose(heard[1234:1234 + len(played)], sing(voice, played), atol=1e-6)
    # with its breath, the same voice and a little noise of this singer's own, 30 dB under
    sung = sing(voice, played)
    breathing = record_through(SingingDevice(1234, voice, seed=3, realtime=False), played)
    noise = breathing[1234:1234 + len(played)] - sung
    assert 0.02 < noise.std() / sung.std() < 0.04
    other = record_through(SingingDevice(1234, voice, seed=4, realtime=False), played)
    assert abs(np.corrcoef(noise, other[1234:1234 + len(played)] - sung)[0, 1]) < 0.05


def test_a_voice_is_the_same_whatever_the_blocks():
    x = np.random.default_rng(1).standard_normal(5000)
    resonator = Resonator(voice_for("Bass", 0))  # a period of 357 samples
    pieces = np.concatenate([resonator.process(x[a:b]) for a, b in
                             ((0, 100), (100, 612), (612, 613), (613, 5000))])
    np.testing.assert_array_equal(pieces, Resonator(voice_for("Bass", 0)).process(x))


def test_a_voice_rings_at_its_note_and_lines_up_with_the_track():
    track = broadband_track(2.0)
    voice = Voice(69)  # A4
    assert (voice.note, voice.period) == ("A4", 100)
    stem = expected_stem(voice, track)
    spectrum = np.abs(np.fft.rfft(stem))
    frequencies = np.fft.rfftfreq(len(stem), 1 / 44100)
    strongest = frequencies[np.argmax(spectrum[frequencies > 100]) + np.sum(frequencies <= 100)]
    assert abs(strongest / voice.frequency - round(strongest / voice.frequency)) < 0.02
    assert best_lag(mono(track), stem) == 0  # its first tap is what was heard, undelayed


def test_the_demos_eight_singers_have_eight_notes_of_their_registers():
    options = Options()
    options.parseOptions([])
    plan = singer_plan(options)
    notes = [p.voice.note for p in plan]
    assert notes == ["E5", "C5", "A4", "F4", "D3", "B2", "G5", "Bb4"]
    assert len({p.voice.midi % 12 for p in plan}) == 8  # no two an octave apart
