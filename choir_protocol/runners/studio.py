"""Studio edits, sans-IO: PeerTube's ``video-studio-transcoding`` tasks and the jobs of an edit.

An edit is a list of tasks applied in order to a media's max-quality file: ``cut`` (keep
``start``..``end`` seconds), ``add-intro`` / ``add-outro`` (a clip before / after),
``add-watermark`` (an image in the top-right corner). As in PeerTube, the result replaces the
max-quality file and every other rendition is made again from it: the studio job is the
new parent, and the renditions of the previous max-quality job are planned again as its
children (they wait in state 5).

Task files (intro, outro, watermark) are named in the payload by URL,
``.../studio/task-files/<name>``, and found through the job's private payload
(``inputs["task-files"][name]``) when the runner asks.
"""
import math
import os
import re

import attrs

from . import jobs as J
from .jobs import JobState, JobType
from .publishing import RECORDING_PRIORITY, new_uuid

CUT, INTRO, OUTRO, WATERMARK = "cut", "add-intro", "add-outro", "add-watermark"
TASK_NAMES = (CUT, INTRO, OUTRO, WATERMARK)
FILE_TASKS = (INTRO, OUTRO, WATERMARK)
MAX_TASKS = 10
# PeerTube's VIDEO_FILTERS.WATERMARK
WATERMARK_SIZE_RATIO = 1 / 10
WATERMARK_MARGIN_RATIO = 1 / 20


class StudioError(ValueError):
    """An edit that cannot be made: the message says why, in one line."""


@attrs.frozen
class Task:
    name: str
    start: float | None = None  # cut
    end: float | None = None
    file: str | None = None  # the field naming the uploaded file (intro, outro, watermark)


def _seconds(value, what) -> float | None:
    if value is None or value == "":
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise StudioError(f"{what} must be a number of seconds, not {value!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise StudioError(f"{what} must be a number of seconds ≥ 0")
    return seconds


def task_item(i: int, item) -> tuple:
    """The ``i``-th of a list of tasks, ``{"name", "options"}``, checked for its shape
    and name (by the daemon for an operator's edit, by choir-runner for a payload).
    -> (where, name, options)."""
    where = f"tasks[{i}]"
    if not isinstance(item, dict):
        raise StudioError(f"{where}: an object with name and options is needed")
    name, options = item.get("name"), item.get("options")
    options = {} if options is None else options
    if name not in TASK_NAMES:
        raise StudioError(f"{where}: unknown studio task {name!r} (known: "
                          f"{', '.join(TASK_NAMES)})")
    if not isinstance(options, dict):
        raise StudioError(f"{where}.options must be an object")
    return where, name, options


def parse_tasks(raw, duration: float | None = None) -> tuple:
    """``raw``: ``[{"name": ..., "options": {...}}]`` (JSON, or rebuilt from PeerTube's form
    fields ``tasks[i][name]``, ``tasks[i][options][start]``...). A file task's ``options.file``
    names its uploaded file. ``duration``: the media's, to refuse a cut past its end."""
    if not isinstance(raw, list) or not raw:
        raise StudioError("tasks: a non-empty list of {name, options} is needed")
    if len(raw) > MAX_TASKS:
        raise StudioError(f"tasks: at most {MAX_TASKS} in one edit")
    tasks = []
    for i, item in enumerate(raw):
        where, name, options = task_item(i, item)
        if name == CUT:
            start = _seconds(options.get("start"), f"{where}.options.start")
            end = _seconds(options.get("end"), f"{where}.options.end")
            if start is None and end is None:
                raise StudioError(f"{where}: a cut needs a start, an end or both")
            if start is not None and end is not None and end <= start:
                raise StudioError(f"{where}: the cut's end must come after its start")
            if duration is not None and start is not None and start >= duration:
                raise StudioError(f"{where}: the cut starts at {start:g} s, after the media's "
                                  f"end ({duration:g} s)")
            tasks.append(Task(CUT, start=start, end=end))
        else:
            field = options.get("file")
            if not isinstance(field, str) or not field:
                raise StudioError(f"{where}: {name} needs a file")
            tasks.append(Task(name, file=field))
    return tuple(tasks)


_FORM_FIELD = re.compile(r"^tasks\[(\d+)\]\[(name|options)\](?:\[(\w+)\])?$")


def tasks_from_form(fields: dict, files: dict) -> list:
    """PeerTube's multipart form (``tasks[0][name]=cut``, ``tasks[0][options][end]=30``,
    a file part ``tasks[1][options][file]``) as the list ``parse_tasks`` takes; a file
    option names its own form field."""
    by_index = {}
    for key in list(fields) + list(files):
        m = _FORM_FIELD.match(key)
        if m is None:
            continue
        index, kind, option = int(m.group(1)), m.group(2), m.group(3)
        if index >= MAX_TASKS:
            raise StudioError(f"tasks: at most {MAX_TASKS} in one edit")
        task = by_index.setdefault(index, {"options": {}})
        if kind == "name":
            task["name"] = fields.get(key)
        elif option is not None:
            task["options"][option] = key if key in files else fields.get(key)
    if sorted(by_index) != list(range(len(by_index))):
        raise StudioError("tasks: indexes must run 0, 1, 2... without gaps")
    return [by_index[i] for i in range(len(by_index))]


def task_file_name(index: int, task: Task, filename: str | None) -> str:
    """The name a task file is stored and served under: ``1-add-intro.mp4``."""
    ext = os.path.splitext(filename or "")[1].lower()
    if not re.fullmatch(r"\.[a-z0-9]{1,8}", ext):
        ext = ""
    return f"{index}-{task.name}{ext}"


def _task_files_url(job_uuid, media_id, name) -> str:
    return J.max_quality_url("", job_uuid, media_id).rsplit("/", 1)[0] + \
        f"/studio/task-files/{name}"


def studio_payload(job_uuid: str, media_id: str, tasks, file_names: dict) -> dict:
    """PeerTube's payload: the input, then the tasks with their file URLs.
    ``file_names``: task index -> its task file's name."""
    wire = []
    for i, task in enumerate(tasks):
        if task.name == CUT:
            options = {k: v for k, v in (("start", task.start), ("end", task.end))
                       if v is not None}
        else:
            options = {"file": _task_files_url(job_uuid, media_id, file_names[i])}
            if task.name == WATERMARK:
                options.update(watermarkSizeRatio=WATERMARK_SIZE_RATIO,
                               horitonzalMarginRatio=WATERMARK_MARGIN_RATIO,  # sic, PeerTube
                               verticalMarginRatio=WATERMARK_MARGIN_RATIO)
        wire.append({"name": task.name, "options": options})
    return {"input": {"videoFileUrl": J.max_quality_url("", job_uuid, media_id),
                      "separatedAudioFileUrl": []},
            "tasks": wire}


def max_quality_job(jobs):
    """The job whose output is the media's max-quality file now: the last completed job
    without a parent (audio merge, web video or an earlier edit). None if there is none."""
    roots = [j for j in jobs if j.parent_uuid is None and j.state is JobState.COMPLETED
             and ((j.private_payload.get("result") or {}).get("files") or {}).get("videoFile")]
    return max(roots, key=lambda j: (j.finished_at or 0, j.created_at), default=None)


def edit_jobs(media_id: str, tasks, jobs, task_files: dict, make_uuid=new_uuid) -> list:
    """The job specs of an edit (``Store.create_jobs``): the studio job on the current
    max-quality file, then the renditions of that file's job again, as its children.
    ``task_files``: task index -> (name, stored path). Raises StudioError when the media
    is still being transcoded or has no max-quality file."""
    if any(j.state not in J.FINAL_STATES for j in jobs):
        raise StudioError("the media is still being transcoded: edit it when its jobs end")
    source = max_quality_job(jobs)
    if source is None:
        raise StudioError("the media has no max-quality file to edit (its transcoding failed?)")
    studio = make_uuid()
    names = {i: name for i, (name, _) in task_files.items()}
    output = source.payload.get("output") or source.private_payload.get("output") or {}
    specs = [dict(type=JobType.STUDIO, uuid=studio, media_id=media_id,
                  priority=RECORDING_PRIORITY,
                  payload=studio_payload(studio, media_id, tasks, names),
                  private_payload={
                      "inputs": {"max-quality": {"job": source.uuid, "file": "videoFile"},
                                 "task-files": {n: p for n, p in task_files.values()}},
                      # named as the file it replaces (720p.mp4)
                      "output": {"resolution": output.get("resolution")}})]
    for child in sorted((j for j in jobs if j.parent_uuid == source.uuid),
                        key=lambda j: j.created_at):
        if child.type not in (JobType.VOD_HLS, JobType.VOD_WEB_VIDEO):
            continue
        uuid = make_uuid()
        out = child.payload.get("output") or {}
        if child.type == JobType.VOD_HLS:
            payload = J.hls_payload("", uuid, media_id, out.get("resolution"), out.get("fps"),
                                    bool(out.get("separatedAudio")))
        else:
            payload = J.web_video_payload("", uuid, media_id, out.get("resolution"),
                                          out.get("fps"))
        specs.append(dict(type=child.type, uuid=uuid, parent_uuid=studio, media_id=media_id,
                          priority=child.priority, payload=payload,
                          private_payload={"inputs": {"max-quality": {"job": studio,
                                                                      "file": "videoFile"}}}))
    return specs
