"""The synchronised mixer, on its own: no sockets, no clock (time is passed in)."""
from hypothesis import given, settings
from hypothesis import strategies as st
import numpy as np
import pytest

from choir_protocol.errors import ProtocolError
from choir_protocol.rehearsal.adpcm import MonoDecoder, MonoEncoder
from choir_protocol.rehearsal.constants import CHUNKS_PER_SECOND, FRAMES_PER_CHUNK
from choir_protocol.rehearsal.mixer import MAX_PASS_CHUNKS, MixBlock, Mixer, MixState, VoiceState

N = FRAMES_PER_CHUNK


def voice_signal(chunks: int, seed: int, amplitude: float = 6000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(chunks * N)
    signal = amplitude * np.sin(2 * np.pi * (110 + 40 * seed) * t / 44100) + 500 * rng.standard_normal(len(t))
    return np.clip(signal, -32768, 32767).astype("<i2")


def encode(signal: np.ndarray) -> list:
    encoder = MonoEncoder()
    return [encoder.encode(signal[i * N:(i + 1) * N].tobytes()) for i in range(len(signal) // N)]


def decoded(payloads: list) -> np.ndarray:
    decoder = MonoDecoder()
    return np.concatenate([np.frombuffer(decoder.decode(p), "<i2") for p in payloads])


def session(singers: int, chunks: int, window: int = 20, **options):
    mixer = Mixer(window=window, **options)
    voices = [mixer.invite(("10.0.0.1", 1000 + i), f"s{i}", "Alto") for i in range(singers)]
    for voice in voices:
        assert mixer.check_in(voice)
    for i in range(chunks):
        mixer.add_track(i)
    return mixer, voices


def collect(mixer, now, blocks):
    """Every pass due at ``now`` (a pass holds at most MAX_PASS_CHUNKS), as one block."""
    passes = []
    while (block := mixer.mix(now)) is not None:
        assert block.count <= MAX_PASS_CHUNKS
        if blocks or passes:  # consecutive with what came before
            last = (blocks + passes)[-1]
            assert block.first_index == last.first_index + last.count
        passes.append(block)
    if not passes:
        return None
    blocks.extend(passes)
    return MixBlock(passes[0].first_index, np.concatenate([b.mix for b in passes]),
                    np.concatenate([b.voices for b in passes]))


def mix_all(mixer, now=0.0):
    return collect(mixer, now, [])


def joined(blocks) -> np.ndarray:
    return np.concatenate([b.mix.reshape(-1) for b in blocks]) if blocks else np.zeros(0, "<i2")


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_mix_does_not_depend_on_arrival_order_or_ticks(data):
    """Whatever the interleaving of deliveries and mixing passes, the mix is the mean."""
    singers, chunks = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 30))
    mixer, voices = session(singers, chunks, window=1000)
    mixer.end_track()
    payloads = [encode(voice_signal(chunks, seed)) for seed in range(singers)]
    sent = [0] * singers
    blocks = []
    while any(s < chunks for s in sent):
        who = data.draw(st.sampled_from([i for i in range(singers) if sent[i] < chunks]))
        count = data.draw(st.integers(1, chunks - sent[who]))
        mixer.add_audio(voices[who], sent[who], payloads[who][sent[who]:sent[who] + count])
        sent[who] += count
        if data.draw(st.booleans()):
            collect(mixer, 0.0, blocks)
    collect(mixer, 0.0, blocks)
    assert mixer.state is MixState.DONE
    expected = np.mean([decoded(p).astype(np.float64) for p in payloads], axis=0)
    np.testing.assert_allclose(joined(blocks), expected, atol=0.51)
    for b in blocks:  # each singer's aligned track, for the recorder
        for row in range(singers):
            np.testing.assert_array_equal(
                b.voices[:, row].reshape(-1),
                decoded(payloads[row])[b.first_index * N:(b.first_index + b.count) * N])


def test_waits_for_every_singer_then_mixes():
    mixer, (a, b) = session(2, 10)
    pa, pb = encode(voice_signal(10, 1)), encode(voice_signal(10, 2))
    mixer.add_audio(a, 0, pa[:8])
    assert mix_all(mixer, 0.0) is None  # b has delivered nothing
    mixer.add_audio(b, 0, pb[:3])
    block = mix_all(mixer, 0.0)
    assert (block.first_index, block.count) == (0, 3)
    assert mixer.state is MixState.MIXING


def test_late_singer_is_left_out_after_the_window_and_keeps_its_codec_state():
    window = 5
    mixer, (fast, slow) = session(2, 30, window=window)
    signal = voice_signal(30, 3)
    payloads = encode(signal)
    mixer.add_audio(slow, 0, payloads[:2])
    mixer.add_audio(fast, 0, payloads[:12])
    block = mix_all(mixer, 0.0)
    # the leader is at 11: chunks up to 11 - 5 = 6 are forced out, without the slow singer from 2
    assert (block.first_index, block.count) == (0, 7)
    assert slow.missing == 5
    mixer.add_audio(slow, 2, payloads[2:12])  # 2..6 arrive late, 7..11 in time
    assert slow.late == 5
    block = mix_all(mixer, 0.0)
    assert (block.first_index, block.count) == (7, 5)
    # its chunks 7.. decode right although 2..6 were dropped: the state was carried
    np.testing.assert_array_equal(block.voices[:, slow.row].reshape(-1), decoded(payloads)[7 * N:12 * N])


def test_end_of_track_waits_for_slower_singers_within_the_window():
    """1.1.3 closed the mix when the fastest singer was done; the last chunks then
    missed the slower singers. Here they get the window's time at the end too."""
    chunks, window = 40, 10
    mixer, (fast, slow) = session(2, chunks, window=window)
    mixer.end_track()
    payloads = encode(voice_signal(chunks, 4))
    mixer.add_audio(fast, 0, payloads)
    mixer.add_audio(slow, 0, payloads[:37])
    block = mix_all(mixer, 100.0)  # the fastest just finished: chunks 0..36 are complete
    assert block.first_index + block.count == 37
    # chunk 37 is due once the leader, advancing in real time, is a window past it:
    # 37 + 10 - 39 = 8 chunks of time after the end
    assert mix_all(mixer, 100.0 + 7.9 / CHUNKS_PER_SECOND) is None
    mixer.add_audio(slow, 37, payloads[37:])
    block = mix_all(mixer, 100.0 + 7.9 / CHUNKS_PER_SECOND)
    assert block.first_index + block.count == chunks
    assert mixer.state is MixState.DONE
    assert slow.missing == 0 and slow.late == 0


def test_end_of_track_gives_up_on_a_stalled_singer_after_the_window():
    chunks, window = 40, 10
    mixer, (fast, stalled) = session(2, chunks, window=window)
    mixer.end_track()
    payloads = encode(voice_signal(chunks, 5))
    mixer.add_audio(fast, 0, payloads)
    mixer.add_audio(stalled, 0, payloads[:30])
    blocks = []
    collect(mixer, 50.0, blocks)
    assert sum(b.count for b in blocks) == 30
    collect(mixer, 50.0 + 5 / CHUNKS_PER_SECOND, blocks)  # the leader is "at" 44: 30..34 out
    assert sum(b.count for b in blocks) == 35
    collect(mixer, 50.0 + (window + 1) / CHUNKS_PER_SECOND, blocks)
    assert mixer.state is MixState.DONE
    assert sum(b.count for b in blocks) == chunks
    assert stalled.missing == 10


def test_level_stays_steady_without_a_step_when_a_singer_leaves():
    """1.1.3 kept dividing by the starting count: the mix dropped when one left."""
    chunks = 120
    mixer, voices = session(4, chunks, window=1000)
    mixer.end_track()
    payloads = encode(voice_signal(chunks, 6))
    for voice in voices:
        mixer.add_audio(voice, 0, payloads[:40])
    mixer.leave(voices[3], "dropped out (-2)")  # out from chunk 40
    for voice in voices[:3]:
        mixer.add_audio(voice, 40, payloads[40:])
    mix = joined([mix_all(mixer, 0.0)]).astype(np.float64)
    reference = decoded(payloads).astype(np.float64)
    # Everyone sings the same, so a steady level means the mix is the voice itself, all
    # along: the leaver fades out over its last queued chunks as the others rise.
    np.testing.assert_allclose(mix, reference, atol=0.51)
    assert voices[3].state is VoiceState.LEFT and voices[3].left_at == 40


def test_a_leaver_fades_out_while_the_others_rise_in_step():
    """Its last chunks still queued, a leaver fades out over them; no step anywhere."""
    chunks = 80
    mixer, voices = session(2, chunks, window=1000)
    mixer.end_track()
    steady = np.full(chunks * N, 8000, "<i2")
    a_payloads = encode(steady)
    mixer.add_audio(voices[0], 0, a_payloads)
    mixer.add_audio(voices[1], 0, encode(np.zeros(chunks * N, "<i2"))[:20])  # silent, then gone
    mixer.leave(voices[1], "disconnected")
    mix = joined([mix_all(mixer, 0.0)]).astype(np.float64)
    voice = decoded(a_payloads).astype(np.float64)
    settled = np.abs(voice) > 4000  # past the codec's attack, where the ratio is precise
    gain = mix[settled] / voice[settled]  # the remaining singer's share
    # two singers, the other fading out over its 20 queued chunks: 1 / (2 - faded part)
    faded = np.minimum(np.arange(1, len(voice) + 1) / (20 * N), 1.0)[settled]
    np.testing.assert_allclose(gain, 1 / (2 - faded), atol=0.002)
    assert np.max(np.abs(np.diff(gain))) < 0.002  # never a jump


def test_a_sudden_change_is_smoothed_over_one_chunk():
    """A singer that stalls (nothing queued) leaves a gap; the others' share rises over a chunk."""
    mixer, voices = session(2, 40, window=10)
    mixer.end_track()
    steady = np.full(40 * N, 8000, "<i2")
    payloads = encode(steady)
    mixer.add_audio(voices[0], 0, payloads)
    mixer.add_audio(voices[1], 0, payloads[:20])  # then stalls
    blocks = []
    collect(mixer, 0.0, blocks)
    collect(mixer, 100.0, blocks)  # long after the end: the stalled singer is left out
    mix = joined(blocks).astype(np.float64)
    reference = decoded(payloads).astype(np.float64)
    np.testing.assert_allclose(mix[:20 * N], reference[:20 * N], atol=0.51)
    np.testing.assert_allclose(mix[21 * N:], reference[21 * N:], atol=0.51)  # level kept
    dip = mix[20 * N:21 * N] / reference[20 * N:21 * N]
    assert dip.min() >= 0.5 - 0.01 and np.all(np.diff(dip) >= -1e-3)  # rises from 1/2 to 1


def test_sums_saturate_and_never_wrap():
    mixer, voices = session(2, 4, window=100)
    mixer.end_track()
    loud = np.full(4 * N, 30000, "<i2")
    for voice in voices:
        mixer.set_gain(voice, 5.0)
        mixer.add_audio(voice, 0, encode(loud))
    mix = mix_all(mixer, 0.0).mix.reshape(-1)
    assert mix[N:].min() == 32767  # past the codec's attack: clipped, not wrapped negative
    assert mix.min() >= 0


def test_gain_changes_take_effect_on_the_next_chunks():
    mixer, (voice,) = session(1, 20, window=100)
    payloads = encode(voice_signal(20, 7))
    mixer.add_audio(voice, 0, payloads[:10])
    first = mix_all(mixer, 0.0).mix.reshape(-1).astype(np.float64)
    mixer.set_gain(voice, 0.25)
    mixer.add_audio(voice, 10, payloads[10:])
    second = mix_all(mixer, 0.0).mix.reshape(-1).astype(np.float64)
    reference = decoded(payloads).astype(np.float64)
    np.testing.assert_allclose(first, reference[:10 * N], atol=0.51)
    np.testing.assert_allclose(second, 0.25 * reference[10 * N:], atol=0.51)


def test_check_in_after_the_first_mix_chunk_is_refused():
    mixer = Mixer(window=3)
    early, late = mixer.invite("early"), mixer.invite("late")
    mixer.check_in(early)
    for i in range(10):
        mixer.add_track(i)
    mixer.add_audio(early, 0, encode(voice_signal(6, 8)))
    assert mix_all(mixer, 0.0) is not None  # forced by the window while "late" has not checked in
    assert mixer.check_in(late) is False
    assert late.state is VoiceState.REFUSED
    mixer.add_audio(late, 0, encode(voice_signal(2, 9)))  # ignored, not an error
    assert mixer.checked_in == 1


def test_invited_singers_hold_the_start_until_they_check_in():
    mixer = Mixer(window=50)
    a, b = mixer.invite("a"), mixer.invite("b")
    mixer.check_in(a)
    for i in range(10):
        mixer.add_track(i)
    mixer.add_audio(a, 0, encode(voice_signal(10, 1)))
    assert mix_all(mixer, 0.0) is None
    mixer.check_in(b)
    mixer.add_audio(b, 0, encode(voice_signal(10, 2))[:4])
    assert mix_all(mixer, 0.0).count == 4


def test_a_singer_cannot_sing_what_the_director_has_not_sent():
    mixer, (voice,) = session(1, 3)
    with pytest.raises(ProtocolError, match="before the director sent it"):
        mixer.add_audio(voice, 0, encode(voice_signal(4, 1)))


def test_chunks_must_come_in_order():
    mixer, (voice,) = session(1, 5)
    with pytest.raises(ProtocolError, match="expected 0"):
        mixer.add_audio(voice, 1, encode(voice_signal(1, 1)))


def test_session_aborts_when_every_singer_has_left():
    mixer, voices = session(2, 10)
    payloads = encode(voice_signal(10, 1))
    for voice in voices:
        mixer.add_audio(voice, 0, payloads[:3])
    mix_all(mixer, 0.0)
    for voice in voices:
        mixer.leave(voice, "disconnected")
    mix_all(mixer, 0.0)
    assert mixer.state is MixState.ABORTED


def test_a_track_without_audio_is_done_at_once():
    mixer = Mixer()
    mixer.check_in(mixer.invite("a"))
    mixer.end_track()
    assert mix_all(mixer, 0.0) is None
    assert mixer.state is MixState.DONE


def test_monitor_mixes_the_track_in_at_its_level():
    mixer = Mixer(window=100, monitor_level=0.5)
    voice = mixer.invite("a")
    mixer.check_in(voice)
    track = np.full(N, 10000, "<i2").tobytes()
    for i in range(4):
        mixer.add_track(i, track)
    mixer.end_track()
    mixer.add_audio(voice, 0, encode(np.zeros(4 * N, "<i2")))
    assert set(mix_all(mixer, 0.0).mix.reshape(-1).tolist()) == {5000}


def test_buffered_audio_is_bounded_by_the_window_and_the_track():
    mixer, (fast, slow) = session(2, 400, window=30)
    payloads = encode(voice_signal(400, 1))
    for start in range(0, 400, 10):
        mixer.add_audio(fast, start, payloads[start:start + 10])
        mix_all(mixer, 0.0)
        assert mixer.buffered_chunks() <= 30 + 10
    assert slow.missing == 400 - 30
