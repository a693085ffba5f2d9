"""The runner HTTP API for the tests: served in-process for a trial TestCase, a job's four
input files, every route that carries a job token, and the check of a refusal."""
import json
import os

from twisted.internet import reactor
from twisted.internet.task import Clock

from choir_twisted.runners.api import RunnerAPI
from choir_twisted.runners.notifications import NotificationHub
from choir_twisted.store.store import Store

from .http import http_post, loopback_agent, multipart
from .paths import temp_dir

P = "/api/v1/runners"
TASK_FILE = "intro.mp4"
INPUTS = {"max-quality": ("source.wav", b"the source " * 1000),
          "max-quality-audio": ("audio.wav", b"the audio " * 500),
          "preview": ("preview.jpg", b"the preview"),
          "task-files": ("intro.mp4", b"the intro")}


async def serve_api(test, max_upload_bytes=10 * 1024 * 1024):
    """The runner API on 127.0.0.1 for ``test`` (a trial TestCase): a store in a temporary
    directory, a hub on a Clock, an HTTP agent; all cleaned up after the test."""
    test.tmp = temp_dir(test)
    test.files_dir = os.path.join(test.tmp, "files")
    os.makedirs(test.files_dir)
    test.store = await Store.open(data_dir=test.tmp)
    test.addCleanup(test.store.close)
    test.clock = Clock()
    test.clock.advance(1_700_000_000)
    test.hub = NotificationHub(test.clock, lambda token: None)
    test.addCleanup(test.hub.stop)
    test.api = RunnerAPI(test.store, test.hub, test.files_dir, test.clock,
                         max_upload_bytes=max_upload_bytes)
    test.port = reactor.listenTCP(0, test.api.site(), interface="127.0.0.1")
    test.addCleanup(test.port.stopListening)
    test.agent = loopback_agent()


def write_inputs(files_dir) -> dict:
    """Writes the four input files; -> the private payload that names them (relative)."""
    for name, content in INPUTS.values():
        with open(os.path.join(files_dir, name), "wb") as f:
            f.write(content)
    inputs = {k: name for k, (name, _) in INPUTS.items() if k != "task-files"}
    inputs["task-files"] = {TASK_FILE: INPUTS["task-files"][0]}
    return {"inputs": inputs}


def job_token_calls(job_uuid, video_id, filename=TASK_FILE):
    """[(name, path, kind, extra fields, expected file content or None)] for every route that
    carries a job token. kind: "json", "multipart" (fields only) or "upload" (multipart with
    a payload[videoFile])."""
    base = f"{P}/jobs/{job_uuid}"
    files = f"{base}/files/videos/{video_id}"
    return [
        ("update", base + "/update", "json", {"progress": 10}, None),
        ("update (multipart)", base + "/update", "multipart", {"progress": "10"}, None),
        ("abort", base + "/abort", "json", {"reason": "r"}, None),
        ("error", base + "/error", "json", {"message": "m"}, None),
        ("success (JSON)", base + "/success", "json", {}, None),
        ("success", base + "/success", "upload", {}, None),
        ("max-quality", files + "/max-quality", "json", {}, INPUTS["max-quality"][1]),
        ("max-quality/audio", files + "/max-quality/audio", "json", {},
         INPUTS["max-quality-audio"][1]),
        ("previews/max-quality", files + "/previews/max-quality", "json", {},
         INPUTS["preview"][1]),
        ("studio/task-files", f"{files}/studio/task-files/{filename}", "json", {},
         INPUTS["task-files"][1]),
    ]


def encode_call(kind, fields):
    """-> (raw body, content type) for a call of ``job_token_calls``."""
    if kind == "json":
        return json.dumps(fields).encode(), "application/json"
    files = [("payload[videoFile]", "out.mp4", b"a forged video")] if kind == "upload" else []
    return multipart(list(fields.items()), files)


def check_problem(case, answer, status, code=None, what=""):
    """The answer is application/problem+json with this status and code (any code if None);
    -> the problem. A TestCase may take it as its ``assertProblem``."""
    case.assertEqual(answer.code, status, (what, answer.body))
    case.assertEqual(answer.content_type, "application/problem+json", what)
    problem = answer.json
    case.assertEqual(set(problem), {"type", "title", "detail", "status", "code"}, what)
    case.assertEqual(problem["status"], status, what)
    if code is not None:
        case.assertEqual(problem["code"], code, what)
    case.assertTrue(problem["detail"], what)
    return problem


async def post_runner_api(port, path, body):
    """POST ``body`` as JSON to ``path`` below /api/v1/runners/ on 127.0.0.1:``port``;
    -> (status, the answer's JSON or None)."""
    answer = await http_post(loopback_agent(), port, f"{P}/{path}", json.dumps(body).encode(),
                             "application/json")
    return answer.code, (answer.json if answer.body else None)
