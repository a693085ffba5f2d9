"""IMA ADPCM exactly as Python's audioop does it, with the state carried across chunks.

The codec state (predicted value, step index) runs on for the whole session, one
state per channel per stream; a decoder that restarts at every chunk is wrong.
"""
import warnings

with warnings.catch_warnings():
    # Deprecated in the standard library up to 3.12; audioop-lts provides it from 3.13 on.
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

_lin2adpcm = audioop.lin2adpcm
_adpcm2lin = audioop.adpcm2lin
_SAMPLE_WIDTH = 2
_HALF = 256  # bytes of one channel in a stereo payload


class MonoDecoder:
    __slots__ = ("_state",)

    def __init__(self):
        self._state = None

    def decode(self, payload) -> bytes:
        """ADPCM bytes (2 samples each) -> 16-bit little-endian PCM."""
        pcm, self._state = _adpcm2lin(payload, _SAMPLE_WIDTH, self._state)
        return pcm


class MonoEncoder:
    __slots__ = ("_state",)

    def __init__(self):
        self._state = None

    def encode(self, pcm) -> bytes:
        adpcm, self._state = _lin2adpcm(pcm, _SAMPLE_WIDTH, self._state)
        return adpcm


class StereoDecoder:
    """A stereo payload is 256 bytes of the left channel, then 256 of the right."""

    __slots__ = ("left", "right")

    def __init__(self):
        self.left = MonoDecoder()
        self.right = MonoDecoder()

    def decode(self, payload) -> tuple[bytes, bytes]:
        return self.left.decode(payload[:_HALF]), self.right.decode(payload[_HALF:])


class StereoEncoder:
    __slots__ = ("left", "right")

    def __init__(self):
        self.left = MonoEncoder()
        self.right = MonoEncoder()

    def encode(self, left_pcm, right_pcm) -> bytes:
        return self.left.encode(left_pcm) + self.right.encode(right_pcm)
