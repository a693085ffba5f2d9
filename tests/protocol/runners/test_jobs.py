"""The sans-IO job model: transitions, error codes, payloads, the transcoding ladder."""
import random

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st
import pytest

from choir_protocol.runners import jobs as J
from choir_protocol.runners.jobs import JobError, JobState, JobType

T0 = 1_700_000_000.0


def make(state=JobState.PENDING, **kw):
    job = J.new_job("j1", JobType.VOD_HLS, {"x": 1}, T0).job
    return attrs.evolve(job, state=state, **kw)


def processing(**kw):
    return J.accept(make(), "r1", "ptrjt-a", T0 + 1).job if not kw else attrs.evolve(
        J.accept(make(), "r1", "ptrjt-a", T0 + 1).job, **kw)


def child(uuid="c1", parent="j1", state=JobState.WAITING_FOR_PARENT_JOB):
    return attrs.evolve(make(), uuid=uuid, parent_uuid=parent, state=state)


def test_states_ids_and_peertube_labels():
    assert [int(s) for s in JobState] == list(range(1, 10))
    assert JobState(5).label == "Waiting for parent job to finish"
    assert JobState.PARENT_ERRORED.label == "Parent job failed"
    assert JobState.PARENT_CANCELLED.label == "Parent job cancelled"
    assert JobState.COMPLETING.label == "Completing"


def test_new_job_pending_or_waiting():
    tr = J.new_job("a", JobType.VOD_WEB_VIDEO, {}, T0)
    assert tr.job.state is JobState.PENDING and tr.notify_available
    tr2 = J.new_job("b", JobType.VOD_HLS, {}, T0, parent=tr.job)
    assert tr2.job.state is JobState.WAITING_FOR_PARENT_JOB and not tr2.notify_available
    assert tr2.job.parent_uuid == "a"
    done = attrs.evolve(tr.job, state=JobState.COMPLETED)
    assert J.new_job("c", JobType.VOD_HLS, {}, T0, parent=done).job.state is JobState.PENDING
    with pytest.raises(ValueError):
        J.new_job("d", "nope", {}, T0)
    with pytest.raises(ValueError):
        J.new_job("d", JobType.VOD_HLS, {}, T0, parent=attrs.evolve(tr.job, state=4))


def test_accept():
    tr = J.accept(make(), "r1", "ptrjt-a", T0 + 5)
    assert tr.job.state is JobState.PROCESSING and tr.previous_state is JobState.PENDING
    assert (tr.job.runner_id, tr.job.job_token, tr.job.started_at) == ("r1", "ptrjt-a", T0 + 5)
    wire = tr.job.to_wire(with_token=True)
    assert wire["state"] == {"id": 2, "label": "Processing"} and wire["jobToken"] == "ptrjt-a"
    assert wire["startedAt"].endswith("Z")
    for s in JobState:
        if s is not JobState.PENDING:
            with pytest.raises(JobError) as e:
                J.accept(make(s), "r1", "t", T0)
            assert (e.value.code, e.value.status) == ("runner_job_not_in_pending_state", 409)
            assert e.value.problem()["code"] == "runner_job_not_in_pending_state"


@pytest.mark.parametrize("op", ["update", "success", "error", "abort"])
def test_processing_only_operations(op):
    calls = {"update": lambda j: J.update(j, T0, 5), "success": lambda j: J.success(j, T0),
             "error": lambda j: J.error(j, "boom", T0), "abort": lambda j: J.abort(j, T0)}
    for s in JobState:
        if s is JobState.PROCESSING or (op == "success" and s is JobState.COMPLETING):
            continue
        with pytest.raises(JobError) as e:
            calls[op](make(s))
        assert (e.value.code, e.value.status) == ("runner_job_not_in_processing_state", 400)


def test_update_progress_and_heartbeat():
    tr = J.update(processing(), T0 + 50, 42)
    assert tr.job.progress == 42 and tr.job.updated_at == T0 + 50
    assert J.update(tr.job, T0 + 60).job.progress == 42
    with pytest.raises(JobError):
        J.update(tr.job, T0, 101)


def test_success_releases_waiting_children_only():
    kids = [child("c1"), child("c2"), child("c3", parent="other"),
            child("c4", state=JobState.CANCELLED)]
    tr = J.success(processing(), T0 + 9, kids)
    assert tr.job.state is JobState.COMPLETED and tr.job.finished_at == T0 + 9
    assert [c.uuid for c in tr.children] == ["c1", "c2"]
    assert all(c.state is JobState.PENDING for c in tr.children) and tr.notify_available
    assert not J.success(processing(), T0).notify_available


def test_error_retries_then_errors_with_children():
    job = processing()
    for n in range(1, 5):
        tr = J.error(job, f"fail {n}", T0 + n)
        assert tr.job.state is JobState.PENDING and tr.job.failures == n
        assert tr.notify_available and tr.job.runner_id is None and tr.job.job_token is None
        job = J.accept(tr.job, "r2", f"ptrjt-{n}", T0 + n).job
    tr = J.error(job, "last", T0 + 10, [child()])
    assert tr.job.state is JobState.ERRORED and tr.job.failures == 5 and tr.job.error == "last"
    assert [c.state for c in tr.children] == [JobState.PARENT_ERRORED]
    assert not tr.notify_available


def test_abort_is_not_a_failure():
    tr = J.abort(processing(failures=2), T0 + 3, "shutdown")
    assert tr.job.state is JobState.PENDING and tr.job.failures == 2 and tr.notify_available
    assert tr.job.started_at is None and tr.job.progress is None


def test_cancel():
    for s in (JobState.PENDING, JobState.PROCESSING, JobState.WAITING_FOR_PARENT_JOB):
        tr = J.cancel(make(s), T0, [child()])
        assert tr.job.state is JobState.CANCELLED
        assert [c.state for c in tr.children] == [JobState.PARENT_CANCELLED]
    for s in set(JobState) - J.CANCELLABLE_STATES:
        with pytest.raises(JobError) as e:
            J.cancel(make(s), T0)
        assert e.value.status == 400


def test_stalled():
    job = processing()  # updated at T0 + 1
    assert J.stalled(job, T0 + 1 + 120) is None
    tr = J.stalled(job, T0 + 1 + 120.5)
    assert tr.job.state is JobState.PENDING and tr.job.failures == 0 and tr.notify_available
    live = attrs.evolve(job, type=JobType.LIVE_RTMP_HLS)
    assert J.stalled(live, T0 + 30) is None and J.stalled(live, T0 + 31.5) is not None
    assert J.stalled(make(), T0 + 10_000) is None
    assert J.stalled(job, T0 + 20, vod_timeout=10) is not None


def test_check_job_token():
    job = processing()
    assert J.check_job_token(job, "ptrjt-a", "r1") is job
    for token, runner in (("ptrjt-b", "r1"), ("ptrjt-a", "r2"), ("", "r1")):
        with pytest.raises(JobError) as e:
            J.check_job_token(job, token, runner)
        assert e.value.status == 404
    with pytest.raises(JobError):
        J.check_job_token(None, "ptrjt-a", "r1", "j1")
    with pytest.raises(JobError) as e:
        J.check_job_token(attrs.evolve(job, state=JobState.COMPLETED), "ptrjt-a", "r1")
    assert e.value.code == "runner_job_not_in_processing_state"
    assert J.new_job_token().startswith("ptrjt-")


# -- random walks: never an invalid state ------------------------------------------------------

def _invariants(job, kids):
    assert job.failures <= J.MAX_FAILURES
    if job.state is JobState.PROCESSING:
        assert job.runner_id and job.job_token and job.started_at is not None
    if job.state is JobState.PENDING:
        assert job.runner_id is None and job.job_token is None
    if job.state is JobState.ERRORED:
        assert job.failures == J.MAX_FAILURES
    for k in kids:
        if job.state is JobState.COMPLETED:
            assert k.state is not JobState.WAITING_FOR_PARENT_JOB
        elif job.state is JobState.ERRORED:
            assert k.state is JobState.PARENT_ERRORED
        elif job.state is JobState.CANCELLED:
            assert k.state is JobState.PARENT_CANCELLED
        else:
            assert k.state is JobState.WAITING_FOR_PARENT_JOB
    assert job.state in JobState


OPS = ["accept", "update", "success", "error", "abort", "cancel", "stalled"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(OPS), st.floats(0, 200)), max_size=40))
def test_random_operation_sequences_keep_invariants(ops):
    job = make()
    kids = [child("c1"), child("c2")]
    now = T0
    for n, (op, dt) in enumerate(ops):
        now += dt
        try:
            if op == "accept":
                tr = J.accept(job, "r", f"ptrjt-{n}", now)
            elif op == "update":
                tr = J.update(job, now, n % 101)
            elif op == "success":
                tr = J.success(job, now, kids)
            elif op == "error":
                tr = J.error(job, "x", now, kids)
            elif op == "abort":
                tr = J.abort(job, now)
            elif op == "cancel":
                tr = J.cancel(job, now, kids)
            else:
                tr = J.stalled(job, now)
                if tr is None:
                    continue
        except JobError as e:
            assert e.code in ("runner_job_not_in_pending_state",
                              "runner_job_not_in_processing_state", "runner_job_not_cancellable")
            continue
        assert tr.previous_state is job.state
        changed = {c.uuid: c for c in tr.children}
        kids = [changed.get(k.uuid, k) for k in kids]
        job = tr.job
        _invariants(job, kids)
        if job.state in J.FINAL_STATES:
            assert job.finished_at is not None


# -- payloads ------------------------------------------------------------------------------------

def test_payload_shapes():
    base = "http://h:8000"
    files = f"{base}/api/v1/runners/jobs/J/files/videos/7"
    assert J.audio_merge_payload(base, "J", 7, 480, 25) == {
        "input": {"audioFileUrl": files + "/max-quality",
                  "previewFileUrl": files + "/previews/max-quality"},
        "output": {"resolution": 480, "fps": 25}}
    assert J.web_video_payload(base + "/", "J", 7, 720, 30) == {
        "input": {"videoFileUrl": files + "/max-quality", "separatedAudioFileUrl": []},
        "output": {"resolution": 720, "fps": 30}}
    hls = J.hls_payload(base, "J", 7, 360, 30)
    assert hls["output"] == {"resolution": 360, "fps": 30, "separatedAudio": False}
    assert hls["input"]["separatedAudioFileUrl"] == []
    hls = J.hls_payload("", "J", 7, 360, 30, True, audio_input=True)
    assert hls["output"]["separatedAudio"] is True
    assert hls["input"]["separatedAudioFileUrl"] == [
        "/api/v1/runners/jobs/J/files/videos/7/max-quality/audio"]


# -- the ladder ---------------------------------------------------------------------------------

def test_ladder_defaults():
    assert J.transcoding_targets(1920, 1080, 30) == [(720, 30), (480, 30), (360, 30)]
    assert J.transcoding_targets(1920, 1080, 60) == [(720, 60), (480, 30), (360, 30)]
    assert J.transcoding_targets(1920, 1080, 50) == [(720, 50), (480, 25), (360, 25)]
    assert J.transcoding_targets(640, 480, 25) == [(480, 25), (360, 25)]
    assert J.transcoding_targets(1080, 1920, 30)[0] == (720, 30)  # portrait: smaller side
    assert J.transcoding_targets(320, 240, 30) == [(240, 30)]  # nothing fits: the input
    assert J.transcoding_targets(321, 241, 30) == [(242, 30)]  # made even


def test_ladder_settings():
    s = J.TranscodingSettings(resolutions=frozenset(J.ALL_RESOLUTIONS),
                              always_transcode_original_resolution=True)
    assert [r for r, _ in J.transcoding_targets(3840, 2160, 120, s)] == [
        2160, 1440, 1080, 720, 480, 360, 240, 144]
    assert J.transcoding_targets(3840, 2160, 120, s)[0] == (2160, 60)  # > max: HD standard
    assert J.transcoding_targets(1000, 700, 30, s)[0] == (700, 30)  # original kept
    with pytest.raises(ValueError):
        J.transcoding_targets(640, 480, 0.2)


@given(st.integers(16, 8000), st.integers(16, 8000), st.integers(1, 240),
       st.booleans(), st.sets(st.sampled_from(J.ALL_RESOLUTIONS)))
def test_ladder_never_upscales_and_caps_fps(w, h, fps, keep, enabled):
    s = J.TranscodingSettings(resolutions=frozenset(enabled),
                              always_transcode_original_resolution=keep)
    targets = J.transcoding_targets(w, h, fps, s)
    res = [r for r, _ in targets]
    assert len(set(res)) == len(res) and res == sorted(res, reverse=True)
    assert all(r <= J.to_even(min(w, h)) for r in res)
    assert all(r in enabled for r in res[1:])
    for r, f in targets:
        assert 1 <= f <= 60 and f <= max(fps, 1)
        if r < 720 and fps > 30:
            assert f in (24, 25, 30)
