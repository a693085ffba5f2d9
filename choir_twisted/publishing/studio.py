"""Studio edits of a media (cut, intro, outro, watermark): task files and jobs.

``edit_media`` is shared by the media API (``POST /api/v1/media/{id}/studio/edit``) and
``choir-admin media studio``. Task files are checked with ffprobe (a clip for intro and
outro, a picture for the watermark), stored under ``media/<id>/studio/<edit>/`` and the
jobs planned by ``choir_protocol.runners.studio.edit_jobs`` inside the store's transaction, so an
edit never races another edit or a running transcoding.
"""
import os
import secrets
import shutil

import ffmpeg
from twisted.internet import threads

from choir_protocol.runners import publishing as P
from choir_protocol.runners import studio as S

from .publisher import probe_file


class NotEditable(Exception):
    """The media cannot be edited now (still transcoding, or nothing to edit)."""


def _check_task_file(task: S.Task, path: str) -> None:
    """Blocking. Raises StudioError naming what is wrong with the file."""
    if task.name == S.WATERMARK:
        try:
            streams = ffmpeg.probe(path).get("streams") or []
        except ffmpeg.Error:
            streams = []
        if not any(s.get("codec_type") == "video" for s in streams):
            raise S.StudioError(f"{task.name}: the file is not a picture")
        return
    try:
        probe = probe_file(path)
    except P.NotMedia as e:
        raise S.StudioError(f"{task.name}: a video clip is needed, and {e}")
    if not probe.has_video:
        raise S.StudioError(f"{task.name}: a video clip is needed, and the file has no video")


def _store_task_files(files_dir, media_id, tasks, uploads, move) -> tuple:
    """Blocking: -> (edit directory, {task index: (name, path)})."""
    edit_dir = os.path.join(files_dir, "media", media_id, "studio", secrets.token_hex(4))
    os.makedirs(edit_dir)
    stored = {}
    try:
        for i, task in enumerate(tasks):
            if task.file is None:
                continue
            source, filename = uploads[task.file]
            _check_task_file(task, source)
            name = S.task_file_name(i, task, filename)
            path = os.path.join(edit_dir, name)
            (shutil.move if move else shutil.copyfile)(source, path)
            stored[i] = (name, path)
    except BaseException:
        shutil.rmtree(edit_dir, ignore_errors=True)
        raise
    return edit_dir, stored


async def edit_media(store, files_dir, media, raw_tasks, uploads=None, *, move=False,
                     now=None) -> list:
    """Plans an edit of ``media``. ``raw_tasks``: PeerTube's ``[{name, options}]``, a file
    option naming a key of ``uploads`` ({key: (path, original filename)}). -> [Job].
    Raises StudioError (a bad edit) or NotEditable (the media is busy), storing nothing."""
    uploads = uploads or {}
    duration = (media.probe or {}).get("duration")
    tasks = S.parse_tasks(raw_tasks, duration)
    for i, task in enumerate(tasks):
        if task.file is not None and task.file not in uploads:
            raise S.StudioError(f"tasks[{i}]: {task.name} names a file that was not sent "
                                f"({task.file})")
    edit_dir, stored = await threads.deferToThread(
        _store_task_files, files_dir, media.id, tasks, uploads, move)

    def plan(jobs):
        try:
            return S.edit_jobs(media.id, tasks, jobs, stored)
        except S.StudioError as e:
            raise NotEditable(str(e))
    try:
        transitions = await store.edit_media(media.id, plan, now=now)
    except BaseException:
        shutil.rmtree(edit_dir, ignore_errors=True)
        raise
    return [t.job for t in transitions]
