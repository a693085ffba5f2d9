"""A job's input files, as its runner downloads them (``.../files/videos/{videoId}/...``).

They come from the job's private payload::

    {"inputs": {"max-quality": path, "max-quality-audio": path, "preview": path,
                "task-files": {filename: path}}}

A relative path is taken relative to ``files_dir``; ``{"job": uuid, "file": role}`` names
another job's stored output (a child transcodes its parent's max-quality file). When
``max-quality`` is absent the job's media ``path`` (the recorded/uploaded source) is served
instead. A file is streamed from disk with a ``FileSender`` (16 kB at a time, pull
producer), never read into memory; a missing one is a 404 ``file_not_found`` problem.
"""
import mimetypes
import os

from twisted.internet import defer
from twisted.protocols.basic import FileSender

from choir_protocol.runners.jobs import JobError


def file_not_found(what: str) -> JobError:
    return JobError("file_not_found", 404, f"no {what} file for this job")


async def input_path(store, files_dir, job, key, filename=None) -> str | None:
    """The path of the job's input ``key`` (a task file's by its ``filename``), or None."""
    inputs = job.private_payload.get("inputs") or {}
    if key == "task-files":
        path = (inputs.get("task-files") or {}).get(filename)
    else:
        path = inputs.get(key)
    if isinstance(path, dict):  # another job's output: {"job": uuid, "file": role}
        source = await store.get_job(str(path.get("job")))
        result = (source.private_payload.get("result") or {}) if source else {}
        path = (result.get("files") or {}).get(path.get("file"))
    if path is None and key == "max-quality" and job.media_id is not None:
        media = await store.get_media(job.media_id)
        path = media.path if media is not None else None
    if not isinstance(path, str) or not path:
        return None
    return path if os.path.isabs(path) else os.path.join(files_dir, path)


async def send_file(request, path, what: str):
    """Streams the file at ``path`` as the answer; JobError file_not_found if there is none."""
    try:
        f = open(path, "rb")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise file_not_found(what)
    sender, channel = _FileSender(), request.channel
    try:
        size = os.fstat(f.fileno()).st_size
        ctype = mimetypes.guess_type(path)[0] or "application/octet-stream"
        request.setResponseCode(200)
        request.setHeader(b"content-type", ctype.encode())
        request.setHeader(b"content-length", str(size).encode())
        await sender.beginFileTransfer(f, request)
    except Exception as e:
        # The runner went away: mid-file, or before the first byte (its connection
        # stopped the sender, or Klein cancelled us). Anything else before the first
        # byte is ours to answer.
        if not (request.startedWriting or sender.stopped
                or isinstance(e, defer.CancelledError)):
            raise
        # nothing more to say to it; and the channel must stop pulling the sender (the
        # file is closed below), also when the request has lost its channel already
        if request.producer is not None:
            channel.unregisterProducer()
            request.producer = None
    finally:
        f.close()
    return None


class _FileSender(FileSender):
    """A FileSender that remembers being stopped (by a connection going away): its Deferred
    fails with a bare Exception, before it forgets it."""

    stopped = False

    def stopProducing(self):
        self.stopped = True
        super().stopProducing()
