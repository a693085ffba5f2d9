"""session.json as a SessionSummary: version 1 is the first daemons' layout, key for key."""
import json

from hypothesis import given
from hypothesis import strategies as st
import pytest

from choir_protocol.rehearsal.session_summary import VERSION, SessionSummary, SingerSummary

# as a daemon before the typed summary wrote it, at the end of a session
WRITTEN_BEFORE = {
    "id": "20261203-143012-1", "started": "2026-12-03T14:30:12+00:00",
    "ended": "2026-12-03T14:33:40+00:00", "state": "complete",
    "director": "director 127.0.0.1:5000", "sample_rate": 44100, "chunk_frames": 512,
    "track_chunks": 300, "mix_chunks": 300, "monitor_level": 0.0, "stray_chunks": 2,
    "singers": [{"name": "ann", "group": "Alto", "state": "active", "row": 0, "gain": 1.0,
                 "chunks": 300, "late": 0, "missing": 0, "left_at": None, "reason": "",
                 "address": ["10.0.0.1", 40001]}],
    "tracks": "ready", "recording_lost_bytes": 0, "files": ["mix.flac", "singer-001-ann-Alto.flac"],
}


def test_a_summary_written_before_versions_reads_and_writes_back_the_same_keys():
    summary = SessionSummary.from_json(json.loads(json.dumps(WRITTEN_BEFORE)))
    assert summary.version == VERSION == 1
    assert summary.singers[0].address == ("10.0.0.1", 40001)
    assert summary.recorded and summary.publishable
    assert summary.to_json() == {"version": 1, **WRITTEN_BEFORE}


def test_keys_that_mean_nothing_yet_are_not_written():
    data = SessionSummary(id="x").to_json()
    assert "recording_failed" not in data and "files" not in data
    assert data["state"] == data["tracks"] == "recording" and data["ended"] is None


def test_a_partial_summary_reads_with_defaults_and_unknown_keys_are_dropped():
    summary = SessionSummary.from_json({"id": "x", "state": "complete", "tracks": "pending",
                                        "singers": [{"name": "ann"}], "later": 1})
    assert summary.recorded and not summary.publishable
    assert summary.singers == (SingerSummary(name="ann"),) and summary.mix_chunks == 0


@pytest.mark.parametrize("data", [[], {"version": 2}, {"singers": [1]}, {"id": "x", "singers": 3}])
def test_what_is_no_summary_of_ours_is_a_value_error(data):
    with pytest.raises(ValueError):
        SessionSummary.from_json(data)


@given(st.builds(SessionSummary, id=st.text(), state=st.text(), mix_chunks=st.integers(0, 10**9),
                 singers=st.lists(st.builds(SingerSummary, name=st.text(),
                                            address=st.tuples(st.text(), st.integers(0, 65535))),
                                  max_size=3).map(tuple),
                 files=st.none() | st.lists(st.text(), max_size=3).map(tuple),
                 recording_failed=st.none() | st.text()))
def test_any_summary_survives_json(summary):
    assert SessionSummary.from_json(json.loads(json.dumps(summary.to_json()))) == summary
