"""An independent, pure-Python IMA ADPCM codec, written from the standard.

It follows the reference coder of the IMA recommendation (Intel/DVI ADPCM, as in
CPython's Modules/audioop.c): 89-entry step table, 16-entry index table, state
(predicted value, step index) starting at (0, 0), two 4-bit codes per byte with
the first sample in the HIGH nibble. It is deliberately slow and obvious; the
tests compare it with audioop and with choir_protocol.rehearsal.adpcm.

State is a ``(predicted_value, step_index)`` tuple, like audioop's, so that a
stream can be coded in pieces.
"""
import struct

STEP_TABLE = (
    7, 8, 9, 10, 11, 12, 13, 14, 16, 17,
    19, 21, 23, 25, 28, 31, 34, 37, 41, 45,
    50, 55, 60, 66, 73, 80, 88, 97, 107, 118,
    130, 143, 157, 173, 190, 209, 230, 253, 279, 307,
    337, 371, 408, 449, 494, 544, 598, 658, 724, 796,
    876, 963, 1060, 1166, 1282, 1411, 1552, 1707, 1878, 2066,
    2272, 2499, 2749, 3024, 3327, 3660, 4026, 4428, 4871, 5358,
    5894, 6484, 7132, 7845, 8630, 9493, 10442, 11487, 12635, 13899,
    15289, 16818, 18500, 20350, 22385, 24623, 27086, 29794, 32767,
)
assert len(STEP_TABLE) == 89

# Index adjustment for the 3 magnitude bits of a code (the sign bit does not matter).
INDEX_TABLE = (-1, -1, -1, -1, 2, 4, 6, 8) * 2

INITIAL_STATE = (0, 0)


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def _reconstruct(code: int, step: int) -> int:
    """The quantised difference a 4-bit code stands for: about (magnitude + 1/2) * step / 4.

    Computed with shifts as the standard does, so the rounding is the standard's.
    """
    diff = step >> 3
    if code & 4:
        diff += step
    if code & 2:
        diff += step >> 1
    if code & 1:
        diff += step >> 2
    return -diff if code & 8 else diff


def encode_sample(sample: int, state: tuple[int, int]) -> tuple[int, tuple[int, int]]:
    """One 16-bit sample -> (4-bit code, new state)."""
    predicted, index = state
    step = STEP_TABLE[index]
    diff = sample - predicted
    code = 0
    if diff < 0:
        code = 8
        diff = -diff
    # Successive approximation of diff * 4 / step, one bit at a time.
    threshold = step
    for bit in (4, 2, 1):
        if diff >= threshold:
            code |= bit
            diff -= threshold
        threshold >>= 1
    # The encoder tracks exactly what the decoder will reconstruct.
    predicted = _clamp(predicted + _reconstruct(code, step), -32768, 32767)
    index = _clamp(index + INDEX_TABLE[code], 0, 88)
    return code, (predicted, index)


def decode_code(code: int, state: tuple[int, int]) -> tuple[int, tuple[int, int]]:
    """One 4-bit code -> (16-bit sample, new state)."""
    predicted, index = state
    step = STEP_TABLE[index]
    predicted = _clamp(predicted + _reconstruct(code, step), -32768, 32767)
    index = _clamp(index + INDEX_TABLE[code], 0, 88)
    return predicted, (predicted, index)


def encode(pcm: bytes, state: tuple[int, int] | None = None) -> tuple[bytes, tuple[int, int]]:
    """16-bit little-endian PCM (an even number of samples) -> (ADPCM bytes, state)."""
    if state is None:
        state = INITIAL_STATE
    samples = struct.unpack(f"<{len(pcm) // 2}h", pcm)
    if len(samples) % 2:
        raise ValueError("this reference codes whole bytes only: give an even number of samples")
    out = bytearray()
    for i in range(0, len(samples), 2):
        high, state = encode_sample(samples[i], state)
        low, state = encode_sample(samples[i + 1], state)
        out.append(high << 4 | low)  # first sample in the high nibble
    return bytes(out), state


def decode(adpcm: bytes, state: tuple[int, int] | None = None) -> tuple[bytes, tuple[int, int]]:
    """ADPCM bytes -> (16-bit little-endian PCM, two samples per byte, state)."""
    if state is None:
        state = INITIAL_STATE
    samples = []
    for byte in adpcm:
        for code in (byte >> 4, byte & 0x0F):  # high nibble first
            sample, state = decode_code(code, state)
            samples.append(sample)
    return struct.pack(f"<{len(samples)}h", *samples), state
