"""Overload degrades, never collapses (docs/architecture.md, "Overload").

A machine that cannot keep up shows as late ticks. The room must then keep feeding
the singers (they run dry in a second) and let the mix fall behind instead (the
director runs up to 6 s ahead), catching up in passes small enough never to stall
the reactor. Past ``--max-singers`` singers are refused (test_rules.test_max_singers).
"""
import numpy as np

from choir_protocol.rehearsal.mixer import MAX_PASS_CHUNKS

from ...support.daemon_helpers import MemoryDaemon, voice_signal

CHUNKS = 300
LATE_TICK = 0.5  # seconds between ticks on a machine that cannot keep up (12.5 ticks late)


def test_a_late_reactor_delays_the_mix_but_keeps_feeding_the_singers():
    daemon = MemoryDaemon()
    voices = [voice_signal(CHUNKS, seed) for seed in range(4)]
    singers = [daemon.singer(f"s{i}", voice=voice) for i, voice in enumerate(voices)]
    daemon.advance(0.1)
    director = daemon.director()
    director.stream(CHUNKS)
    director.end()

    steps = 0
    while daemon.room.session is not None:
        mixed_before = len(director.mix)
        daemon.clock.advance(LATE_TICK)  # one tick, half a second late
        daemon.react()
        steps += 1
        # each late tick mixes one bounded pass: the reactor is never held up by a backlog
        assert len(director.mix) - mixed_before <= MAX_PASS_CHUNKS
        if steps >= 2:  # while the mix lags far behind, the singers have the whole track
            assert all(len(s.heard) == CHUNKS for s in singers)
        assert steps < 100, "the session never completed"

    assert steps > CHUNKS // MAX_PASS_CHUNKS  # the mix did lag: it took many passes
    session = daemon.room.last_session
    assert session.ended == "complete"
    assert [v.state.value for v in session.mixer.voices.values()] == ["active"] * 4
    assert all(v.missing == 0 and v.late == 0 for v in session.mixer.voices.values())
    expected = np.mean([np.concatenate([s.sent_pcm[i] for i in range(CHUNKS)]).astype(np.float64)
                        for s in singers], axis=0)
    np.testing.assert_allclose(director.mix_signal(), expected, atol=0.51)
