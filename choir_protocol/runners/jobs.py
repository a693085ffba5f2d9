"""PeerTube remote-runner jobs, sans-IO: records, pure transitions, payloads, the ladder.

No clock, no randomness, no storage: ``now`` is always passed in as float seconds since
the epoch (the same unit the store keeps), job tokens are made by the caller (see
``new_job_token``). Every transition takes a ``Job`` and returns a ``Transition``: the new
record, the children records it changed, and whether the runners must be told
"available-jobs". Anything the protocol forbids raises ``JobError`` carrying the
problem+json ``code`` and HTTP ``status`` of RUNNERS.md.
"""
import datetime
import enum
import hmac
import secrets

import attrs

from ..text import is_text
from .tokens import hash_token


class JobState(enum.IntEnum):
    PENDING = 1
    PROCESSING = 2
    COMPLETED = 3
    ERRORED = 4
    WAITING_FOR_PARENT_JOB = 5
    CANCELLED = 6
    PARENT_ERRORED = 7
    PARENT_CANCELLED = 8
    COMPLETING = 9

    @property
    def label(self) -> str:
        return _LABELS[self]


# PeerTube's RUNNER_JOB_STATES (server/core/initializers/constants.ts).
_LABELS = {
    JobState.PENDING: "Pending",
    JobState.PROCESSING: "Processing",
    JobState.COMPLETED: "Completed",
    JobState.ERRORED: "Errored",
    JobState.WAITING_FOR_PARENT_JOB: "Waiting for parent job to finish",
    JobState.CANCELLED: "Cancelled",
    JobState.PARENT_ERRORED: "Parent job failed",
    JobState.PARENT_CANCELLED: "Parent job cancelled",
    JobState.COMPLETING: "Completing",
}

FINAL_STATES = frozenset({JobState.COMPLETED, JobState.ERRORED, JobState.CANCELLED,
                          JobState.PARENT_ERRORED, JobState.PARENT_CANCELLED})
CANCELLABLE_STATES = frozenset({JobState.PENDING, JobState.PROCESSING,
                                JobState.WAITING_FOR_PARENT_JOB})


class JobType:
    VOD_AUDIO_MERGE = "vod-audio-merge-transcoding"
    VOD_WEB_VIDEO = "vod-web-video-transcoding"
    VOD_HLS = "vod-hls-transcoding"
    STUDIO = "video-studio-transcoding"
    TRANSCRIPTION = "video-transcription"
    LIVE_RTMP_HLS = "live-rtmp-hls-transcoding"

    ALL = frozenset({VOD_AUDIO_MERGE, VOD_WEB_VIDEO, VOD_HLS, STUDIO, TRANSCRIPTION,
                     LIVE_RTMP_HLS})


DEFAULT_PRIORITY = 100  # PeerTube's priority for transcoding jobs
MAX_FAILURES = 5
VOD_STALLED_AFTER = 120.0
LIVE_STALLED_AFTER = 30.0
JOB_TOKEN_PREFIX = "ptrjt-"


class JobError(Exception):
    """A refusal of the protocol, rendered as application/problem+json by the caller."""

    def __init__(self, code: str, status: int, detail: str):
        super().__init__(f"{code} ({status}): {detail}")
        self.code = code
        self.status = status
        self.detail = detail

    def problem(self) -> dict:
        return {"type": "about:blank", "title": self.code.replace("_", " ").capitalize(),
                "detail": self.detail, "status": self.status, "code": self.code}


def not_pending(job) -> JobError:
    return JobError("runner_job_not_in_pending_state", 409,
                    f"job {job.uuid} is {job.state.label.lower()}, not pending")


def not_processing(job) -> JobError:
    return JobError("runner_job_not_in_processing_state", 400,
                    f"job {job.uuid} is {job.state.label.lower()}, not processing")


def unknown_job(uuid: str) -> JobError:
    return JobError("unknown_runner_job", 404, f"unknown runner job {uuid}")


def new_job_token() -> str:
    return JOB_TOKEN_PREFIX + secrets.token_hex(16)


@attrs.frozen
class Job:
    uuid: str
    type: str
    state: JobState = attrs.field(converter=JobState)
    payload: dict
    created_at: float
    updated_at: float
    priority: int = DEFAULT_PRIORITY
    private_payload: dict = attrs.field(factory=dict)
    failures: int = 0
    error: str | None = None
    progress: int | None = None
    parent_uuid: str | None = None
    runner_id: str | None = None
    # the token itself only on the record ``accept`` made (shown once, in its answer); the
    # store keeps, and gives back, only its hash
    job_token: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    media_id: str | None = None
    job_token_hash: str | None = None

    def to_wire(self, with_token: bool = False) -> dict:
        """The ``job`` object of PeerTube's answers (accept gives the job token)."""
        wire = {
            "uuid": self.uuid, "type": self.type,
            "state": {"id": int(self.state), "label": self.state.label},
            "payload": self.payload, "failures": self.failures, "error": self.error,
            "progress": self.progress, "priority": self.priority,
            "startedAt": iso(self.started_at), "createdAt": iso(self.created_at),
            "updatedAt": iso(self.updated_at), "finishedAt": iso(self.finished_at),
        }
        if with_token:
            wire["jobToken"] = self.job_token
        return wire


def iso(t: float | None) -> str | None:
    if t is None:
        return None
    dt = datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@attrs.frozen
class Transition:
    """The outcome of a transition: what to store and what to tell."""

    job: Job
    previous_state: JobState | None  # None for a job just created
    children: tuple = ()  # new records of children that changed (all were waiting)
    notify_available: bool = False  # emit "available-jobs" to the runners


# -- transitions ---------------------------------------------------------------------------

def new_job(uuid: str, type: str, payload: dict, now: float, *,
            priority: int = DEFAULT_PRIORITY, private_payload: dict | None = None,
            parent: Job | None = None, media_id: str | None = None) -> Transition:
    """A job is pending, or waits for its parent unless the parent has already completed."""
    if type not in JobType.ALL:
        raise ValueError(f"unknown job type {type!r}")
    waits = parent is not None and parent.state is not JobState.COMPLETED
    if parent is not None and parent.state in FINAL_STATES - {JobState.COMPLETED}:
        raise ValueError(f"parent job {parent.uuid} is {parent.state.label.lower()}")
    state = JobState.WAITING_FOR_PARENT_JOB if waits else JobState.PENDING
    job = Job(uuid=uuid, type=type, state=state, payload=payload, created_at=now,
              updated_at=now, priority=priority, private_payload=private_payload or {},
              parent_uuid=parent.uuid if parent else None, media_id=media_id)
    return Transition(job, None, (), state is JobState.PENDING)


def accept(job: Job, runner_id: str, job_token: str, now: float) -> Transition:
    if job.state is not JobState.PENDING:
        raise not_pending(job)
    new = attrs.evolve(job, state=JobState.PROCESSING, runner_id=runner_id,
                       job_token=job_token, job_token_hash=hash_token(job_token),
                       started_at=now, updated_at=now, progress=None)
    return Transition(new, job.state)


def check_job_token(job: Job | None, job_token: str, runner_id: str,
                    uuid: str | None = None) -> Job:
    """A runner acts only on the job it accepted, and only while that job is processing."""
    if job is None:
        raise unknown_job(uuid or "?")
    if (job.job_token_hash is None or job.runner_id != runner_id
            or not is_text(job_token or "")
            or not hmac.compare_digest(job.job_token_hash, hash_token(job_token or ""))):
        raise unknown_job(job.uuid)
    if job.state is not JobState.PROCESSING:
        raise not_processing(job)
    return job


def update(job: Job, now: float, progress: int | None = None) -> Transition:
    if job.state is not JobState.PROCESSING:
        raise not_processing(job)
    if progress is not None:
        progress = int(progress)
        if not 0 <= progress <= 100:
            raise JobError("invalid_progress", 400, f"progress {progress} not in 0..100")
    new = attrs.evolve(job, updated_at=now,
                       progress=job.progress if progress is None else progress)
    return Transition(new, job.state)


def _children(job: Job, children, state: JobState, now: float) -> tuple:
    return tuple(attrs.evolve(c, state=state, updated_at=now) for c in children
                 if c.parent_uuid == job.uuid and c.state is JobState.WAITING_FOR_PARENT_JOB)


def success(job: Job, now: float, children=()) -> Transition:
    """processing -> completed; the children waiting for it become pending."""
    if job.state not in (JobState.PROCESSING, JobState.COMPLETING):
        raise not_processing(job)
    new = attrs.evolve(job, state=JobState.COMPLETED, progress=None, updated_at=now,
                       finished_at=now)
    released = _children(job, children, JobState.PENDING, now)
    return Transition(new, job.state, released, bool(released))


def _to_pending(job: Job, now: float, **changes) -> Job:
    return attrs.evolve(job, state=JobState.PENDING, runner_id=None, job_token=None,
                        job_token_hash=None, progress=None, started_at=None, updated_at=now,
                        **changes)


def error(job: Job, message: str, now: float, children=(),
          max_failures: int = MAX_FAILURES) -> Transition:
    """failures + 1: back to pending below ``max_failures``, else errored with its children."""
    if job.state is not JobState.PROCESSING:
        raise not_processing(job)
    failures = job.failures + 1
    if failures < max_failures:
        return Transition(_to_pending(job, now, failures=failures, error=message),
                          job.state, (), True)
    new = attrs.evolve(job, state=JobState.ERRORED, failures=failures, error=message,
                       progress=None, updated_at=now, finished_at=now)
    return Transition(new, job.state,
                      _children(job, children, JobState.PARENT_ERRORED, now))


def abort(job: Job, now: float, reason: str | None = None) -> Transition:
    """The runner gives the job back: pending again, not a failure."""
    if job.state is not JobState.PROCESSING:
        raise not_processing(job)
    return Transition(_to_pending(job, now), job.state, (), True)


def cancel(job: Job, now: float, children=()) -> Transition:
    """Admin cancel of a pending, processing or waiting job; its children are cancelled."""
    if job.state not in CANCELLABLE_STATES:
        raise JobError("runner_job_not_cancellable", 400,
                       f"job {job.uuid} is {job.state.label.lower()}: cannot cancel it")
    new = attrs.evolve(job, state=JobState.CANCELLED, job_token=None, job_token_hash=None,
                       progress=None, updated_at=now, finished_at=now)
    return Transition(new, job.state,
                      _children(job, children, JobState.PARENT_CANCELLED, now))


def is_stalled(job: Job, now: float, vod_timeout: float = VOD_STALLED_AFTER,
               live_timeout: float = LIVE_STALLED_AFTER) -> bool:
    if job.state is not JobState.PROCESSING:
        return False
    timeout = live_timeout if job.type == JobType.LIVE_RTMP_HLS else vod_timeout
    return now - job.updated_at > timeout


def stalled(job: Job, now: float, vod_timeout: float = VOD_STALLED_AFTER,
            live_timeout: float = LIVE_STALLED_AFTER) -> Transition | None:
    """A processing job whose runner stopped updating goes back to pending (not a failure).

    None when the job is not stalled."""
    if not is_stalled(job, now, vod_timeout, live_timeout):
        return None
    return Transition(_to_pending(job, now), job.state, (), True)


# -- payloads --------------------------------------------------------------------------------

def _files(base_url_path: str, job_uuid: str, media_id) -> str:
    return f"{base_url_path.rstrip('/')}/api/v1/runners/jobs/{job_uuid}/files/videos/{media_id}"


def max_quality_url(base_url_path, job_uuid, media_id) -> str:
    return _files(base_url_path, job_uuid, media_id) + "/max-quality"


def max_quality_audio_url(base_url_path, job_uuid, media_id) -> str:
    return _files(base_url_path, job_uuid, media_id) + "/max-quality/audio"


def preview_url(base_url_path, job_uuid, media_id) -> str:
    return _files(base_url_path, job_uuid, media_id) + "/previews/max-quality"


def audio_merge_payload(base_url_path: str, job_uuid: str, media_id, resolution: int,
                        fps: int) -> dict:
    return {"input": {"audioFileUrl": max_quality_url(base_url_path, job_uuid, media_id),
                      "previewFileUrl": preview_url(base_url_path, job_uuid, media_id)},
            "output": {"resolution": resolution, "fps": fps}}


def _video_input(base_url_path, job_uuid, media_id, audio_input: bool) -> dict:
    audio = [max_quality_audio_url(base_url_path, job_uuid, media_id)] if audio_input else []
    return {"videoFileUrl": max_quality_url(base_url_path, job_uuid, media_id),
            "separatedAudioFileUrl": audio}


def web_video_payload(base_url_path: str, job_uuid: str, media_id, resolution: int,
                      fps: int, *, audio_input: bool = False) -> dict:
    """``audio_input``: the source keeps its audio in a separate file (max-quality/audio)."""
    return {"input": _video_input(base_url_path, job_uuid, media_id, audio_input),
            "output": {"resolution": resolution, "fps": fps}}


def hls_payload(base_url_path: str, job_uuid: str, media_id, resolution: int, fps: int,
                separated_audio: bool = False, *, audio_input: bool = False) -> dict:
    return {"input": _video_input(base_url_path, job_uuid, media_id, audio_input),
            "output": {"resolution": resolution, "fps": fps,
                       "separatedAudio": separated_audio}}


# -- the ladder ------------------------------------------------------------------------------

@attrs.frozen
class TranscodingSettings:
    """django-peertube-runner-connector 0.6.0's documented defaults (its settings.py)."""

    resolutions: frozenset = frozenset({360, 480, 720})  # 144/240/1080/1440/2160 off
    always_transcode_original_resolution: bool = False
    fps_min: int = 1
    fps_standard: tuple = (24, 25, 30)
    fps_hd_standard: tuple = (50, 60)
    fps_audio_merge: int = 25
    fps_average: int = 30
    fps_max: int = 60
    keep_origin_fps_resolution_min: int = 720
    max_failures: int = 5


DEFAULT_SETTINGS = TranscodingSettings()
ALL_RESOLUTIONS = (144, 240, 360, 480, 720, 1080, 1440, 2160)


def to_even(n: int) -> int:
    return n + 1 if n % 2 else n


def _closest_standard(fps: int, standards) -> int:
    # PeerTube sorts by fps % candidate (stable): the largest divisor-like standard wins.
    return sorted(standards, key=lambda s: fps % s)[0]


def output_fps(resolution: int, fps, settings: TranscodingSettings = DEFAULT_SETTINGS) -> int:
    """PeerTube's computeOutputFPS with the seed's limits."""
    fps = round(fps)
    if resolution < settings.keep_origin_fps_resolution_min and fps > settings.fps_average:
        fps = _closest_standard(fps, settings.fps_standard)
    if fps > settings.fps_max:
        fps = _closest_standard(fps, settings.fps_hd_standard)
    if fps < settings.fps_min:
        raise ValueError(f"cannot transcode a video at {fps} fps (minimum {settings.fps_min})")
    return fps


def original_resolution(input_resolution: int,
                        settings: TranscodingSettings = DEFAULT_SETTINGS) -> int:
    """PeerTube's buildOriginalFileResolution: the largest enabled resolution not above
    the input, or the input itself (made even) when so configured or when none fits."""
    if settings.always_transcode_original_resolution:
        return to_even(input_resolution)
    fitting = [r for r in settings.resolutions if r <= input_resolution]
    return max(fitting) if fitting else to_even(input_resolution)


def transcoding_targets(width: int, height: int, fps,
                        settings: TranscodingSettings = DEFAULT_SETTINGS) -> list:
    """[(resolution, fps)], the max-quality target first, then the lower ones, descending.

    The resolution of a video is its smaller side (portrait videos too). No upscaling: no
    enabled resolution above the input is produced."""
    input_resolution = min(width, height)
    if input_resolution <= 0:
        raise ValueError(f"not a video: {width}x{height}")
    top = original_resolution(input_resolution, settings)
    lower = sorted((r for r in settings.resolutions if r < top and r <= input_resolution),
                   reverse=True)
    return [(r, output_fps(r, fps, settings)) for r in [top, *lower]]
