"""The store's records and the rows they are read from and written to: shared by the
Store and its admin queries (``store_operator``).

A token's record carries the token itself only when it has just been made (shown once);
the store keeps its hash (``choir_protocol.runners.tokens``), and records read back carry that and
the prefix listings show."""
import json

import attrs

from choir_protocol.runners.jobs import Job

JOB_COLUMNS = ("uuid", "type", "state", "priority", "payload", "private_payload", "failures",
               "error", "progress", "parent_uuid", "runner_id", "job_token_hash", "media_id",
               "created_at", "updated_at", "started_at", "finished_at")
JOB_SELECT = f"SELECT {', '.join(JOB_COLUMNS)} FROM jobs"


@attrs.frozen
class RegistrationToken:
    token: str | None  # None once stored
    created_at: float
    revoked: bool
    id: str | None = None  # PeerTube's admin API names a registration token by it
    prefix: str | None = None
    token_hash: str | None = None


@attrs.frozen
class ApiToken:
    token: str | None  # None once stored
    name: str
    created_at: float
    revoked: bool
    prefix: str | None = None
    token_hash: str | None = None


@attrs.frozen
class RunnerRecord:
    id: str
    name: str
    description: str | None
    version: str | None
    token: str | None  # the runner token: only in register_runner's answer
    registration_token_hash: str | None  # the token it registered with
    ip: str | None
    last_contact: float | None
    created_at: float


RUNNER_SELECT = ("SELECT id, name, description, version, registration_token_hash, ip, "
                 "last_contact, created_at FROM runners")


def runner_from_row(row) -> RunnerRecord:
    i, name, description, version, registered_with, ip, contact, created = row
    return RunnerRecord(i, name, description, version, None, registered_with, ip, contact, created)


@attrs.frozen
class Media:
    id: str
    kind: str
    name: str
    path: str | None
    probe: dict | None
    webhook: str | None
    created_at: float
    ended_at: float | None = None  # when its last job reached a final state
    webhook_sent_at: float | None = None
    webhook_error: str | None = None


@attrs.frozen
class MediaFile:
    id: str
    media_id: str
    role: str
    name: str
    path: str
    size: int | None
    created_at: float


def job_from_row(row) -> Job:
    d = dict(zip(JOB_COLUMNS, row))
    d["payload"] = json.loads(d["payload"])
    d["private_payload"] = json.loads(d["private_payload"])
    return Job(**d)


def job_values(job: Job) -> tuple:
    d = attrs.asdict(job, recurse=False)
    d["state"] = int(job.state)
    d["payload"] = json.dumps(job.payload)
    d["private_payload"] = json.dumps(job.private_payload)
    return tuple(d[c] for c in JOB_COLUMNS)
