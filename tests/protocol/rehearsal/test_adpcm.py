"""IMA ADPCM: bit-exact with audioop, state carried from chunk to chunk (PROTOCOL.md, "IMA ADPCM").

Three independent sides must agree on every byte: choir_protocol.rehearsal.adpcm fed chunk by
chunk, audioop on the whole signal in one call, and the pure-Python reference codec in
tests/support/ima_reference.py written from the standard. 1.1.3's own codecs are checked too.
"""
import warnings

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
import numpy as np
import pytest

from choir_protocol.rehearsal.adpcm import MonoDecoder, MonoEncoder, StereoDecoder, StereoEncoder
from choir_protocol.rehearsal.chunks import encode_index
from choir_protocol.rehearsal.constants import FRAMES_PER_CHUNK, SAMPLE_RATE

from ...support import ima_reference as ref

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

    from onlinechoir.common import audio_codecs as their

N = FRAMES_PER_CHUNK  # samples per chunk
PCM_BYTES = 2 * N  # 1024
ADPCM_BYTES = N // 2  # 256


# -- signals ------------------------------------------------------------------------------

def _time(chunks: int) -> np.ndarray:
    return np.arange(chunks * N) / SAMPLE_RATE


def to_int16(x) -> np.ndarray:
    return np.clip(np.rint(x), -32768, 32767).astype("<i2")


def silence(chunks=12):
    return np.zeros(chunks * N, "<i2")


def square(period, chunks=20, overdrive=1.0):
    """Full-scale square wave; with overdrive > 1 it clips at the int16 limits."""
    phase = (np.arange(chunks * N) // (period // 2)) % 2
    return to_int16(np.where(phase == 0, 32767, -32768) * overdrive)


def sine(freq, chunks=8, amplitude=0.9):
    return to_int16(amplitude * 32767 * np.sin(2 * np.pi * freq * _time(chunks)))


def noise(seed, chunks=20, scale=32767):
    rng = np.random.default_rng(seed)
    return to_int16(rng.uniform(-scale, scale, chunks * N))


def gaussian(seed, chunks=12, sigma=800):
    return to_int16(np.random.default_rng(seed).normal(0, sigma, chunks * N))


def steps(seed, chunks=16, hold=300):
    """Piecewise constant, jumping between random levels (worst case for ADPCM's step size)."""
    rng = np.random.default_rng(seed)
    levels = rng.integers(-32768, 32768, chunks * N // hold + 1)
    return levels.repeat(hold)[:chunks * N].astype("<i2")


def nyquist(chunks=6):
    return np.tile(np.array([32767, -32768], "<i2"), chunks * N // 2)


def chirp(chunks=20):
    t = _time(chunks)
    f0, f1 = 50, 20_000
    phase = 2 * np.pi * (f0 * t + (f1 - f0) / (2 * t[-1]) * t * t)
    return to_int16(30000 * np.sin(phase))


def fade_in_out(chunks=12):
    t = _time(chunks)
    envelope = np.sin(np.pi * t / t[-1]) ** 4
    return to_int16(32767 * envelope * np.sin(2 * np.pi * 523.25 * t))


SIGNALS = {
    "silence": silence(),
    "square-64": square(64),
    "square-10-clipping": square(10, overdrive=1.7),
    "square-1000-clipping": square(1000, chunks=12, overdrive=3.0),
    "nyquist-full-scale": nyquist(),
    **{f"sine-{f}Hz": sine(f) for f in (20, 110, 261.6, 440, 1000, 2500, 5000, 9000, 15000, 21000)},
    "sine-440Hz-quiet": sine(440, amplitude=0.001),
    "sine-1000Hz-overdriven": to_int16(3 * 32767 * np.sin(2 * np.pi * 1000 * _time(8))),
    "white-noise": noise(1),
    "white-noise-quiet": noise(2, scale=50),
    "gaussian-noise": gaussian(3),
    "steps": steps(4),
    "steps-fast": steps(5, hold=7),
    "chirp": chirp(),
    "fade": fade_in_out(),
}
TOTAL_CHUNKS = sum(len(s) for s in SIGNALS.values()) // N
# Signals whose codec state is not back at its start at a chunk boundary.
MOVING = [name for name in SIGNALS if name != "silence"]


def chunks_of(pcm: bytes, size: int) -> list[bytes]:
    assert len(pcm) % size == 0
    return [pcm[i:i + size] for i in range(0, len(pcm), size)]


def audioop_encode(pcm: bytes) -> bytes:
    return audioop.lin2adpcm(pcm, 2, None)[0]


def audioop_decode(adpcm: bytes) -> bytes:
    return audioop.adpcm2lin(adpcm, 2, None)[0]


def encode_by_chunks(pcm: bytes, encoder=None) -> bytes:
    encoder = encoder or MonoEncoder()
    out = [encoder.encode(c) for c in chunks_of(pcm, PCM_BYTES)]
    assert all(len(c) == ADPCM_BYTES for c in out)
    return b"".join(out)


def decode_by_chunks(adpcm: bytes, decoder=None) -> bytes:
    decoder = decoder or MonoDecoder()
    out = [decoder.decode(c) for c in chunks_of(adpcm, ADPCM_BYTES)]
    assert all(len(c) == PCM_BYTES for c in out)
    return b"".join(out)


def random_adpcm(seed: int, chunks: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, chunks * ADPCM_BYTES, dtype=np.uint8).tobytes()


def test_the_corpus_is_large():
    assert TOTAL_CHUNKS >= 250


# -- (a) our codec, chunk by chunk, against audioop on the whole signal ---------------------

@pytest.mark.parametrize("name", SIGNALS)
def test_mono_encoder_by_chunks_equals_audioop_whole(name):
    pcm = SIGNALS[name].tobytes()
    assert encode_by_chunks(pcm) == audioop_encode(pcm)


@pytest.mark.parametrize("name", SIGNALS)
def test_mono_decoder_by_chunks_equals_audioop_whole(name):
    adpcm = audioop_encode(SIGNALS[name].tobytes())
    assert decode_by_chunks(adpcm) == audioop_decode(adpcm)


@pytest.mark.parametrize("seed", range(5))
def test_mono_decoder_on_random_codes(seed):
    """Random bytes use every nibble, including the ones an encoder rarely picks."""
    adpcm = random_adpcm(seed, 30)
    assert decode_by_chunks(adpcm) == audioop_decode(adpcm)


@pytest.mark.parametrize("name", ["sine-110Hz", "sine-440Hz", "fade"])
def test_encode_decode_round_trip_is_close(name):
    """Not bit-exact (ADPCM is lossy), but a smooth signal comes back within 2 % RMS."""
    signal = SIGNALS[name]
    decoded = np.frombuffer(decode_by_chunks(encode_by_chunks(signal.tobytes())), "<i2")
    assert decoded.shape == signal.shape
    error = decoded.astype(float) - signal
    assert np.sqrt(np.mean(error ** 2)) < 0.02 * 32767


@settings(max_examples=60, deadline=None)
@given(arrays("<i2", st.integers(1, 4).map(lambda n: n * N)))
def test_hypothesis_mono_codec_equals_audioop(signal):
    pcm = signal.tobytes()
    adpcm = audioop_encode(pcm)
    assert encode_by_chunks(pcm) == adpcm
    assert decode_by_chunks(adpcm) == audioop_decode(adpcm)


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=ADPCM_BYTES, max_size=ADPCM_BYTES * 3)
       .map(lambda b: b[:len(b) - len(b) % ADPCM_BYTES]).filter(bool))
def test_hypothesis_mono_decoder_equals_audioop(adpcm):
    assert decode_by_chunks(adpcm) == audioop_decode(adpcm)


# -- (b) the pure-Python reference agrees with audioop --------------------------------------

@pytest.mark.parametrize("name", SIGNALS)
def test_reference_encoder_equals_audioop(name):
    pcm = SIGNALS[name].tobytes()
    assert ref.encode(pcm)[0] == audioop_encode(pcm)


@pytest.mark.parametrize("name", SIGNALS)
def test_reference_decoder_equals_audioop(name):
    adpcm = audioop_encode(SIGNALS[name].tobytes())
    assert ref.decode(adpcm)[0] == audioop_decode(adpcm)


@pytest.mark.parametrize("seed", range(3))
def test_reference_decoder_on_random_codes(seed):
    adpcm = random_adpcm(100 + seed, 10)
    assert ref.decode(adpcm)[0] == audioop_decode(adpcm)


def test_reference_state_matches_audioop_state():
    pcm = SIGNALS["chirp"].tobytes()
    adpcm, state = audioop.lin2adpcm(pcm, 2, None)
    assert ref.encode(pcm) == (adpcm, state)
    assert ref.decode(adpcm)[1] == audioop.adpcm2lin(adpcm, 2, None)[1]


def test_reference_by_chunks_equals_our_codec():
    """The reference, carrying its state, gives our chunk-by-chunk bytes: the layout is audioop's."""
    pcm = SIGNALS["fade"].tobytes()
    state, out = None, []
    for c in chunks_of(pcm, PCM_BYTES):
        adpcm, state = ref.encode(c, state)
        out.append(adpcm)
    assert b"".join(out) == encode_by_chunks(pcm)


def test_first_sample_is_in_the_high_nibble():
    # From state (0, 0) (step 7): +100 codes 0b0111, then 0 codes as a downward step (sign set).
    pcm = np.array([100, 0], "<i2").tobytes()
    adpcm = audioop_encode(pcm)
    assert adpcm == ref.encode(pcm)[0]
    assert adpcm[0] >> 4 == 0b0111
    assert adpcm[0] & 0x0F & 0b1000  # the second sample went down
    assert MonoEncoder().encode(pcm) == adpcm


def test_codec_starts_at_value_0_and_step_index_0():
    # Code 0b0111 from (0, 0): step 7 -> 0 + (7>>3) + 7 + 3 + 1 = 11, and the step index
    # moves to 0 + 8; code 0 then adds step 16 >> 3 = 2.
    assert np.frombuffer(MonoDecoder().decode(b"\x70"), "<i2").tolist() == [11, 13]
    assert ref.decode(b"\x70")[0] == audioop_decode(b"\x70")
    assert ref.encode(bytes(4)) == (b"\x00", (0, 0))  # silence stays at (0, 0)


@settings(max_examples=60, deadline=None)
@given(arrays("<i2", st.integers(1, 4).map(lambda n: n * N)))
def test_hypothesis_reference_equals_audioop(signal):
    pcm = signal.tobytes()
    adpcm = audioop_encode(pcm)
    assert ref.encode(pcm)[0] == adpcm
    assert ref.decode(adpcm)[0] == audioop_decode(adpcm)


@settings(max_examples=100, deadline=None)
@given(pcm=arrays("<i2", st.integers(1, 40).map(lambda n: 2 * n)),
       value=st.integers(-32768, 32767), index=st.integers(0, 88))
def test_hypothesis_reference_equals_audioop_from_any_state(pcm, value, index):
    state = (value, index)
    raw = pcm.tobytes()
    assert ref.encode(raw, state) == audioop.lin2adpcm(raw, 2, state)
    adpcm = raw[:len(raw) // 2]
    assert ref.decode(adpcm, state) == audioop.adpcm2lin(adpcm, 2, state)


# -- (c) restarting the state at every chunk is detectably wrong ----------------------------

@pytest.mark.parametrize("name", MOVING)
def test_restarting_decoder_differs(name):
    adpcm = audioop_encode(SIGNALS[name].tobytes())
    restarted = b"".join(MonoDecoder().decode(c) for c in chunks_of(adpcm, ADPCM_BYTES))
    assert restarted != audioop_decode(adpcm)
    assert decode_by_chunks(adpcm) == audioop_decode(adpcm)


@pytest.mark.parametrize("name", MOVING)
def test_restarting_encoder_differs(name):
    pcm = SIGNALS[name].tobytes()
    restarted = b"".join(MonoEncoder().encode(c) for c in chunks_of(pcm, PCM_BYTES))
    assert restarted != audioop_encode(pcm)


def test_restarting_decoder_differs_on_every_later_chunk_of_a_sine():
    adpcm = audioop_encode(SIGNALS["sine-440Hz"].tobytes())
    carried = chunks_of(decode_by_chunks(adpcm), PCM_BYTES)
    restarted = [MonoDecoder().decode(c) for c in chunks_of(adpcm, ADPCM_BYTES)]
    assert restarted[0] == carried[0]
    assert all(r != c for r, c in zip(restarted[1:], carried[1:]))


def test_each_stream_has_its_own_state():
    a, b = SIGNALS["sine-1000Hz"].tobytes(), SIGNALS["white-noise"].tobytes()[:len(SIGNALS["sine-1000Hz"]) * 2]
    enc_a, enc_b = MonoEncoder(), MonoEncoder()
    out_a, out_b = [], []
    for ca, cb in zip(chunks_of(a, PCM_BYTES), chunks_of(b, PCM_BYTES)):  # interleaved use
        out_a.append(enc_a.encode(ca))
        out_b.append(enc_b.encode(cb))
    assert b"".join(out_a) == audioop_encode(a)
    assert b"".join(out_b) == audioop_encode(b)


# -- (d) stereo: 256 bytes of left, then 256 bytes of right ---------------------------------

STEREO_PAIRS = [("sine-440Hz", "white-noise"), ("chirp", "steps"), ("square-10-clipping", "fade"),
                ("silence", "sine-15000Hz")]


def stereo_pair(left_name, right_name):
    left, right = SIGNALS[left_name], SIGNALS[right_name]
    n = min(len(left), len(right))
    return left[:n].tobytes(), right[:n].tobytes()


@pytest.mark.parametrize("left_name, right_name", STEREO_PAIRS)
def test_stereo_encoder_layout(left_name, right_name):
    left, right = stereo_pair(left_name, right_name)
    encoder = StereoEncoder()
    payloads = [encoder.encode(l, r) for l, r in zip(chunks_of(left, PCM_BYTES), chunks_of(right, PCM_BYTES))]
    assert all(len(p) == 2 * ADPCM_BYTES for p in payloads)
    assert b"".join(p[:ADPCM_BYTES] for p in payloads) == audioop_encode(left)
    assert b"".join(p[ADPCM_BYTES:] for p in payloads) == audioop_encode(right)


@pytest.mark.parametrize("left_name, right_name", STEREO_PAIRS)
def test_stereo_decoder_layout(left_name, right_name):
    left, right = stereo_pair(left_name, right_name)
    adpcm_left, adpcm_right = audioop_encode(left), audioop_encode(right)
    decoder = StereoDecoder()
    out_left, out_right = [], []
    for l, r in zip(chunks_of(adpcm_left, ADPCM_BYTES), chunks_of(adpcm_right, ADPCM_BYTES)):
        dl, dr = decoder.decode(l + r)
        out_left.append(dl)
        out_right.append(dr)
    assert b"".join(out_left) == audioop_decode(adpcm_left)
    assert b"".join(out_right) == audioop_decode(adpcm_right)


def test_stereo_channels_are_not_swapped():
    left = SIGNALS["sine-440Hz"][:N].tobytes()
    right = bytes(PCM_BYTES)
    payload = StereoEncoder().encode(left, right)
    assert payload[:ADPCM_BYTES] == audioop_encode(left)
    assert payload[ADPCM_BYTES:] == bytes(ADPCM_BYTES)  # silence from (0, 0) codes as zeros
    dl, dr = StereoDecoder().decode(payload)
    assert dr == bytes(PCM_BYTES)
    assert dl != bytes(PCM_BYTES)


# -- compatibility with 1.1.3's codecs --------------------------------------------------------

def as_float(samples: np.ndarray) -> np.ndarray:
    """The float input 1.1.3 expects that turns back into exactly these int16 samples."""
    return samples.astype(np.float64) / 32768


def test_1_1_3_stereo_encoder_matches():
    left, right = SIGNALS["chirp"][:8 * N], SIGNALS["white-noise"][:8 * N]
    theirs, ours = their.StereoEncoder(), StereoEncoder()
    for i in range(8):
        l, r = left[i * N:(i + 1) * N], right[i * N:(i + 1) * N]
        frame = theirs(np.stack([as_float(l), as_float(r)], axis=1))
        assert frame == encode_index(i) + ours.encode(l.tobytes(), r.tobytes())


def test_1_1_3_mono_encoder_matches():
    signal = SIGNALS["square-10-clipping"][:6 * N]
    theirs, ours = their.AdpcmEncoder(), MonoEncoder()
    for i in range(6):
        s = signal[i * N:(i + 1) * N]
        assert theirs(as_float(s)) == encode_index(i) + ours.encode(s.tobytes())


def test_1_1_3_stereo_decoder_matches():
    left, right = stereo_pair("fade", "steps")
    adpcm_left, adpcm_right = audioop_encode(left), audioop_encode(right)
    theirs, ours = their.StereoDecoder(), StereoDecoder()
    for i in range(8):
        payload = adpcm_left[i * ADPCM_BYTES:(i + 1) * ADPCM_BYTES] + adpcm_right[i * ADPCM_BYTES:(i + 1) * ADPCM_BYTES]
        assert theirs.decode_left_right(encode_index(i) + payload) == ours.decode(payload)


def test_1_1_3_mono_decoder_matches():
    adpcm = random_adpcm(7, 8)
    theirs, ours = their.AdpcmDecoder(), MonoDecoder()
    for i, c in enumerate(chunks_of(adpcm, ADPCM_BYTES)):
        assert theirs.decompress(encode_index(i) + c) == ours.decode(c)
