"""Voices for simulated singers: each sings the track it hears at a pitch of its own.

A voice is the heard sound through a resonator tuned to the singer's note (a feedback comb
filter: y[n] = a x[n] + r y[n - P], P the note's period in samples), which makes any
sound ring at that pitch and its harmonics, plus a breath of noise of the singer's own
that follows the voice's level (so a stem is its voice to about 30 dB, whatever the track).
The comb's first tap is the heard sound itself, undelayed, so a voice is exactly as much
in time as its singer: a singer's stem lines up with the track, and so does the mix.

``sing`` computes a voice from the track with the same arithmetic as ``SingingDevice``
does on the stream, so whoever knows the track knows every stem and the mix to expect,
to the sample (less the codec's noise and the breath). Notes are chosen per vocal group,
and differ in pitch class for the first eight singers of a demo, so their stems are
measurably different (their correlation is well below 1).
"""
import math

import attrs
import numpy as np

from choir_protocol.rehearsal.constants import SAMPLE_RATE

from ..rehearsal.audio import BLOCK
from ..rehearsal.simulated_devices import EchoDevice

RESONANCE = 0.95  # feedback of the comb: the higher, the more a voice rings at its note
LEVEL = 0.5  # a voice's level against what the singer hears (it rings louder at its note)
BREATH = 0.03  # each singer's own noise, against its voice's level (-30 dB): it follows the voice
BREATH_FLOOR = 1e-4  # and a trace of it in silence (-80 dBFS)

# MIDI note numbers, per vocal group, in the order a group's singers get them.
NOTES = {
    "Soprano": (76, 79, 74),  # E5 G5 D5
    "Mezzo": (72, 70, 69),  # C5 Bb4 A4
    "Alto": (69, 66, 67),  # A4 F#4 G4
    "Tenor": (65, 62, 64),  # F4 D4 E4
    "Baritone": (50, 52, 48),  # D3 E3 C3
    "Bass": (47, 43, 45),  # B2 G2 A2
}
OTHER_NOTES = (60, 64, 67, 71)  # C4 E4 G4 B4: a singer of no group
_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")


@attrs.frozen
class Voice:
    midi: int  # the note the singer's voice rings at

    @property
    def note(self) -> str:
        return f"{_NAMES[self.midi % 12]}{self.midi // 12 - 1}"

    @property
    def period(self) -> int:
        """The comb's delay in samples: the note's period, to the nearest sample."""
        return max(1, round(SAMPLE_RATE / (440.0 * 2 ** ((self.midi - 69) / 12))))

    @property
    def frequency(self) -> float:
        """The pitch it rings at (the period is whole samples, so a few cents off the note)."""
        return SAMPLE_RATE / self.period


def voice_for(group: str, nth: int) -> Voice:
    """The voice of the ``nth`` singer (from 0) of ``group``."""
    notes = NOTES.get(group, OTHER_NOTES)
    return Voice(notes[nth % len(notes)])


class Resonator:
    """The comb filter of one voice, carrying its state from one block to the next."""

    def __init__(self, voice: Voice, resonance: float = RESONANCE):
        self.period = voice.period
        self.feedback = resonance
        self.scale = math.sqrt(1 - resonance * resonance)  # unit power gain for white noise
        self._history = np.zeros(self.period)  # the last ``period`` outputs

    def process(self, heard) -> np.ndarray:
        """Float samples in, the voice out (float64); any block length, same result."""
        heard = np.asarray(heard, np.float64).reshape(-1)
        p = self.period
        out = np.empty(p + len(heard))
        out[:p] = self._history
        for start in range(0, len(heard), p):  # each output needs the one a period before
            stop = min(start + p, len(heard))
            out[p + start:p + stop] = (self.scale * heard[start:stop]
                                       + self.feedback * out[start:stop])
        self._history = out[-p:].copy()
        return out[p:]


def sing(voice: Voice, heard, level: float = LEVEL) -> np.ndarray:
    """The voice (float, full scale 1.0, clipped as a sound card does) of a singer who
    hears ``heard`` (mono float), from silence."""
    return np.clip(level * Resonator(voice).process(heard), -1.0, 1.0)


def expected_stem(voice: Voice, track: np.ndarray) -> np.ndarray:
    """The stem (int16 scale, float64) a singer with ``voice`` sends for ``track``
    (stereo int16), as the daemon records it aligned: without the codec's noise and the
    breath."""
    heard = (track[:, 0].astype(np.float64) + track[:, 1]) / (2 * 32768.0)
    return np.clip(np.rint(sing(voice, heard) * 32768.0), -32768, 32767)


class SingingDevice(EchoDevice):
    """A simulated singer on a simulated sound card: the microphone hears the singer's voice
    (``sing`` of what the card plays), ``latency_samples`` after the sound was played, plus
    the singer's own breath: white noise (seeded by ``seed``) at ``breath`` times the voice's
    RMS in each block. Calibrate with an EchoDevice of the same latency: a singer calibrates
    in silence, then sings."""

    def __init__(self, latency_samples: int, voice: Voice, *, breath: float = BREATH,
                 seed: int = 0, realtime: bool = True, level: float = LEVEL):
        self.voice = voice  # (before EchoDevice's __init__, which resets the stream's state)
        self.level = level
        self.breath = breath
        super().__init__(latency_samples, seed=seed, realtime=realtime)
        self.name = f"singing {voice.note} ({latency_samples} samples)"

    def _reset(self) -> None:
        super()._reset()
        self._resonator = Resonator(self.voice)
        self._sung = np.zeros((BLOCK, 2), np.float32)  # the voice, as a block to echo

    def _played(self, block: int, outdata: np.ndarray) -> None:
        heard = (outdata[:, 0] + outdata[:, 1]) * np.float32(0.5)
        voice = np.clip(self.level * self._resonator.process(heard), -1.0, 1.0)
        if self.breath:
            loudness = max(float(np.sqrt(np.mean(voice * voice))), BREATH_FLOOR)
            voice = voice + self.breath * loudness * self._rng.standard_normal(len(voice))
        self._sung[:, 0] = voice
        self._sung[:, 1] = voice
        super()._played(block, self._sung)  # the echo path: heard ``latency_samples`` later
