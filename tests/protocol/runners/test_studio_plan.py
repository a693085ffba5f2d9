"""choir_protocol.runners.studio: PeerTube's studio tasks, validated, and the jobs of an edit."""
import itertools

import attrs
from hypothesis import given
from hypothesis import strategies as st
import pytest

from choir_protocol.runners import jobs as J
from choir_protocol.runners import publishing as P
from choir_protocol.runners import studio as S
from choir_protocol.runners.jobs import JobState, JobType


def counter(prefix="u"):
    n = itertools.count(1)
    return lambda: f"{prefix}{next(n)}"


def completed(specs, t=100.0):
    """The jobs of ``specs`` as if all had completed, each parent's output stored."""
    out = []
    for i, spec in enumerate(specs):
        job = J.Job(uuid=spec["uuid"], type=spec["type"], state=JobState.COMPLETED,
                    payload=spec["payload"], created_at=t + i, updated_at=t + i,
                    priority=spec["priority"], parent_uuid=spec.get("parent_uuid"),
                    private_payload={**spec["private_payload"],
                                     "result": {"files": {"videoFile": f"/m/{spec['uuid']}.mp4"}}},
                    finished_at=t + i, media_id=spec.get("media_id"))
        out.append(job)
    return out


UPLOAD = P.upload_jobs("m1", P.Probe(30.0, 1280, 720, 30.0, True), "/src.mp4",
                       settings=attrs.evolve(J.DEFAULT_SETTINGS, resolutions=frozenset({360, 720})),
                       make_uuid=counter("p"))


def test_parse_every_task():
    tasks = S.parse_tasks([{"name": "cut", "options": {"start": "5", "end": 20.5}},
                           {"name": "add-intro", "options": {"file": "intro"}},
                           {"name": "add-outro", "options": {"file": "outro"}},
                           {"name": "add-watermark", "options": {"file": "logo"}}], 30.0)
    assert tasks == (S.Task("cut", 5.0, 20.5), S.Task("add-intro", file="intro"),
                     S.Task("add-outro", file="outro"), S.Task("add-watermark", file="logo"))
    assert S.parse_tasks([{"name": "cut", "options": {"end": 3}}]) == (S.Task("cut", end=3.0),)


@pytest.mark.parametrize("raw, words", [
    ([], "non-empty"),
    ("cut", "non-empty"),
    ([{"name": "rotate"}], "unknown studio task 'rotate'"),
    ([{"name": "cut", "options": {}}], "a start, an end or both"),
    ([{"name": "cut", "options": {"start": 5, "end": 5}}], "after its start"),
    ([{"name": "cut", "options": {"start": -1}}], "≥ 0"),
    ([{"name": "cut", "options": {"start": "nan"}}], "≥ 0"),
    ([{"name": "cut", "options": {"start": "soon"}}], "number of seconds"),
    ([{"name": "cut", "options": {"start": 40}}], "after the media's end"),
    ([{"name": "add-intro", "options": {}}], "needs a file"),
    ([{"name": "cut", "options": []}], "must be an object"),
    ([7], "an object"),
    ([{"name": "cut", "options": {"end": 1}}] * 11, "at most 10"),
])
def test_bad_tasks_say_why(raw, words):
    with pytest.raises(S.StudioError, match=words):
        S.parse_tasks(raw, 30.0)


def test_the_form_fields_of_peertube():
    fields = {"tasks[0][name]": "cut", "tasks[0][options][start]": "2",
              "tasks[1][name]": "add-watermark", "other": "x"}
    files = {"tasks[1][options][file]": "logo.png"}
    assert S.tasks_from_form(fields, files) == [
        {"name": "cut", "options": {"start": "2"}},
        {"name": "add-watermark", "options": {"file": "tasks[1][options][file]"}}]
    with pytest.raises(S.StudioError, match="without gaps"):
        S.tasks_from_form({"tasks[1][name]": "cut"}, {})
    with pytest.raises(S.StudioError, match="at most"):
        S.tasks_from_form({"tasks[99999999][name]": "cut"}, {})


@given(st.dictionaries(st.text(max_size=30), st.text(max_size=10), max_size=8))
def test_any_form_gives_a_list_or_a_clear_error(fields):
    try:
        raw = S.tasks_from_form(fields, {})
    except S.StudioError:
        return
    try:
        S.parse_tasks(raw)
    except S.StudioError:
        pass


def test_an_edit_of_an_upload_replaces_the_max_quality_and_redoes_every_rendition():
    jobs = completed([{**s, "media_id": "m1"} for s in UPLOAD])
    tasks = S.parse_tasks([{"name": "cut", "options": {"start": 1, "end": 9}},
                           {"name": "add-watermark", "options": {"file": "f"}}])
    specs = S.edit_jobs("m1", tasks, jobs, {1: ("1-add-watermark.png", "/m/s/1.png")},
                        make_uuid=counter())  # u1, u2...
    studio, children = specs[0], specs[1:]
    assert studio["type"] == JobType.STUDIO and "parent_uuid" not in studio
    assert studio["payload"] == {
        "input": {"videoFileUrl": "/api/v1/runners/jobs/u1/files/videos/m1/max-quality",
                  "separatedAudioFileUrl": []},
        "tasks": [{"name": "cut", "options": {"start": 1.0, "end": 9.0}},
                  {"name": "add-watermark", "options": {
                      "file": "/api/v1/runners/jobs/u1/files/videos/m1/studio/task-files/"
                              "1-add-watermark.png",
                      "watermarkSizeRatio": 0.1, "horitonzalMarginRatio": 0.05,
                      "verticalMarginRatio": 0.05}}]}
    web_top = jobs[0]
    assert studio["private_payload"] == {
        "inputs": {"max-quality": {"job": web_top.uuid, "file": "videoFile"},
                   "task-files": {"1-add-watermark.png": "/m/s/1.png"}},
        "output": {"resolution": 720}}
    # named as the file it replaces
    assert P.output_name(JobType.STUDIO, studio["payload"], "videoFile", ".mp4",
                         studio["private_payload"]) == "720p.mp4"
    before = sorted((j.type, j.payload["output"]["resolution"]) for j in jobs[1:])
    after = sorted((c["type"], c["payload"]["output"]["resolution"]) for c in children)
    assert before == after
    for c in children:
        assert c["parent_uuid"] == studio["uuid"]
        assert c["private_payload"]["inputs"]["max-quality"] == {"job": "u1", "file": "videoFile"}
        assert f"/jobs/{c['uuid']}/" in c["payload"]["input"]["videoFileUrl"]


def test_a_second_edit_starts_from_the_first_edit():
    jobs = completed([{**s, "media_id": "m1"} for s in UPLOAD])
    cut = S.parse_tasks([{"name": "cut", "options": {"end": 5}}])
    first = completed(S.edit_jobs("m1", cut, jobs, {}, make_uuid=counter("e")), t=200.0)
    second = S.edit_jobs("m1", cut, jobs + first, {}, make_uuid=counter("f"))
    assert second[0]["private_payload"]["inputs"]["max-quality"]["job"] == first[0].uuid
    assert second[0]["private_payload"]["output"] == {"resolution": 720}
    assert len(second) == len(first)


def test_a_recording_edit_redoes_its_hls():
    specs = P.recording_jobs("m2", "/mix.flac", "/cover.png", make_uuid=counter("p"))
    jobs = completed([{**s, "media_id": "m2"} for s in specs])
    out = S.edit_jobs("m2", S.parse_tasks([{"name": "cut", "options": {"start": 2}}]),
                      jobs, {}, make_uuid=counter())
    assert [s["type"] for s in out] == [JobType.STUDIO] + [JobType.VOD_HLS] * (len(specs) - 1)


def test_no_edit_while_transcoding_or_without_a_max_quality_file():
    jobs = completed([{**s, "media_id": "m1"} for s in UPLOAD])
    cut = S.parse_tasks([{"name": "cut", "options": {"end": 5}}])
    busy = [attrs.evolve(jobs[0], state=JobState.PROCESSING)] + jobs[1:]
    with pytest.raises(S.StudioError, match="still being transcoded"):
        S.edit_jobs("m1", cut, busy, {})
    failed = [attrs.evolve(jobs[0], state=JobState.ERRORED)] + [
        attrs.evolve(j, state=JobState.PARENT_ERRORED) for j in jobs[1:]]
    with pytest.raises(S.StudioError, match="no max-quality file"):
        S.edit_jobs("m1", cut, failed, {})


def test_task_file_names_are_safe():
    task = S.Task("add-intro", file="x")
    assert S.task_file_name(0, task, "My Intro.MP4") == "0-add-intro.mp4"
    assert S.task_file_name(2, task, "../../etc/passwd") == "2-add-intro"
    assert S.task_file_name(1, task, None) == "1-add-intro"
