"""One job's work in choir-runner: download the inputs, run ffmpeg, report, upload.

Job types: audio merge, web video, HLS (runner_ffmpeg builds their commands) and studio
edits, ``video-studio-transcoding`` (runner_studio: cut, add-intro, add-outro,
add-watermark, one ffmpeg each, in the payload's order, each on the previous output).

ffmpeg and ffprobe run as child processes of the reactor (spawnProcess), never in the
reactor's thread, so notifications, heartbeats and other jobs go on meanwhile. Cancelling
a job's Deferred kills its ffmpeg (shutdown, or the server took the job back).
"""
import collections
import os
import shutil
import signal
import tempfile

from twisted.internet import defer, error, protocol, task
from twisted.logger import Logger

from choir_protocol.runners.jobs import JobType

from . import ffmpeg_commands as F
from . import studio_commands as STUDIO
from .api import ServerProblem, Unreachable

log = Logger()

PROGRESS_EVERY = 3.0  # seconds between progress updates, at most
HEARTBEAT_EVERY = 60.0  # an update at least this often: the server's stall watchdog is 2 min
STDERR_TAIL = 4096
RETRY_DELAYS = (2.0, 10.0, 30.0)  # before each new try of a result the server did not get
SUPPORTED = (JobType.VOD_WEB_VIDEO, JobType.VOD_HLS, JobType.VOD_AUDIO_MERGE, JobType.STUDIO)
# the server no longer considers the job ours: stop working on it
LOST_CODES = frozenset({"runner_job_not_in_processing_state", "unknown_runner_job"})



def can_do(job: dict) -> bool:
    """Whether this runner can do an offered job, judged from its payload before accepting
    it, as PeerTube's runner does: a studio edit only if it knows every one of its tasks."""
    if job.get("type") != JobType.STUDIO:
        return True
    try:
        STUDIO.parse_tasks((job.get("payload") or {}).get("tasks"))
    except STUDIO.StudioError:
        return False
    return True

class JobFailed(Exception):
    """The job cannot be done: reported to the server with jobs/{uuid}/error."""


def executable(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise JobFailed(f"{name} is not installed (not found on PATH)")
    return path


class _Process(protocol.ProcessProtocol):
    def __init__(self, on_stdout=None):
        self.on_stdout = on_stdout
        self.stdout = bytearray()
        self.stderr = collections.deque(maxlen=64)  # the last pieces: the error message
        self.ended = defer.Deferred(self._kill)  # cancelling it kills the process
        self.exited = defer.Deferred()  # the process is gone (even when cancelled)

    def outReceived(self, data):
        if self.on_stdout is not None:
            self.on_stdout(data)
        else:
            self.stdout += data

    def errReceived(self, data):
        self.stderr.append(data)

    def processEnded(self, reason):
        self.exited.callback(None)
        if not self.ended.called:
            code = reason.value.exitCode if reason.check(error.ProcessTerminated) else 0
            self.ended.callback(code)

    def _kill(self, _):
        try:
            self.transport.signalProcess(signal.SIGKILL)
        except error.ProcessExitedAlready:
            pass

    def error_text(self) -> str:
        text = b"".join(self.stderr)[-STDERR_TAIL:].decode("utf-8", "replace").strip()
        return " | ".join(line for line in text.splitlines() if line.strip())


async def run(reactor, args, on_stdout=None) -> bytes:
    """Runs ``args`` (args[0] looked up on PATH); -> its stdout (unless on_stdout takes it).
    Raises JobFailed with the end of its stderr when it exits non-zero."""
    process = _Process(on_stdout)
    reactor.spawnProcess(process, executable(args[0]), args, env=os.environ.copy())
    try:
        code = await process.ended
    except defer.CancelledError:
        await process.exited  # killed: leave no process (nor its pipes) behind
        raise
    if code:
        raise JobFailed(f"{os.path.basename(args[0])} exited with status {code}: "
                        f"{process.error_text() or 'no message'}")
    return bytes(process.stdout)


async def probe(reactor, path) -> F.MediaInfo:
    return F.parse_probe(await run(reactor, ["ffprobe", *F.probe_args(path)]))


class ProgressReporter:
    """jobs/{uuid}/update: at the start, when the progress changes (at most every
    PROGRESS_EVERY s), and every HEARTBEAT_EVERY s even without change. One call in flight
    at a time. ``on_lost(problem)`` when the server says the job is no longer ours.
    ``finish()`` before the job's result: an update still in flight would race it, and the
    server refuses the transition that loses such a race (as "not processing")."""

    def __init__(self, reactor, send, on_lost, every=PROGRESS_EVERY, heartbeat=HEARTBEAT_EVERY):
        self.reactor, self.send, self.on_lost, self.every = reactor, send, on_lost, every
        self.progress = self.sent = None
        self._last = None  # reactor time of the last call
        self._busy = self._again = False
        self._in_flight = None  # the Deferred of the call being made
        self._heartbeat = task.LoopingCall(self._send)
        self._heartbeat.clock = reactor
        self._heartbeat_seconds = heartbeat

    def start(self):
        self._heartbeat.start(self._heartbeat_seconds, now=True)

    def stop(self):
        if self._heartbeat.running:
            self._heartbeat.stop()

    async def finish(self):
        """Stops, and waits for the call in flight (it never raises)."""
        self.stop()
        while self._in_flight is not None and not self._in_flight.called:
            await self._in_flight

    def set(self, progress):
        if progress is None or progress == self.progress:
            return
        self.progress = progress
        if self._last is None or self.reactor.seconds() - self._last >= self.every:
            self._send()

    def _send(self):
        if self._busy:
            self._again = True
            return
        self._busy, self._last = True, self.reactor.seconds()
        self._in_flight = defer.ensureDeferred(self._call())

    async def _call(self):
        progress = self.progress
        try:
            await self.send(progress)
            self.sent = progress
        except ServerProblem as e:
            if e.code in LOST_CODES:
                self.on_lost(e)
            else:
                log.warn("Cannot send the job's progress: {e}", e=e)
        except Exception as e:
            log.warn("Cannot send the job's progress: {e}", e=e)
        finally:
            self._busy = False
        if self._again and self._heartbeat.running:
            self._again = False
            self._send()


class Work:
    """What a job type needs: a temp dir, inputs fetched into it, ffmpeg with progress."""

    def __init__(self, reactor, fetch, report, directory):
        self.reactor, self._fetch, self.report, self.dir = reactor, fetch, report, directory
        self._count = 0

    def path(self, name):
        return os.path.join(self.dir, name)

    async def fetch(self, url) -> str:
        self._count += 1
        path = self.path(f"input-{self._count}")
        size = await self._fetch(url, path)
        log.info("Downloaded {url} ({size} bytes)", url=url, size=size)
        return path

    async def probe(self, path) -> F.MediaInfo:
        return await probe(self.reactor, path)

    async def ffmpeg(self, args, duration, share=(0, 1)):
        """``share``: (steps done, steps in all) when this command is one step of the job
        (a studio task): its progress is reported as that share of the job's."""
        parser = F.ProgressParser(duration)
        done, steps = share

        def on_stdout(data):
            parser.feed(data)
            percent = parser.percent
            if percent is not None or done:
                percent = (done * 100 + (percent or 0)) // steps
            self.report(percent)
        await run(self.reactor, args, on_stdout)

    def discard(self, *paths):
        """Removes inputs no longer needed (a long edit keeps one video on disk at a time)."""
        for path in paths:
            if path is not None and path.startswith(self.dir + os.sep):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass


async def _video_inputs(work, payload):
    video = await work.fetch(payload["input"]["videoFileUrl"])
    audio_urls = payload["input"].get("separatedAudioFileUrl") or []
    audio = await work.fetch(audio_urls[0]) if audio_urls else None
    info = await work.probe(video)
    return video, info, audio, (await work.probe(audio) if audio else None)


async def web_video(work, payload) -> dict:
    video, info, audio, audio_info = await _video_inputs(work, payload)
    out, output = work.path("output.mp4"), payload["output"]
    await work.ffmpeg(F.web_video_args(video, out, info, output["resolution"], output["fps"],
                                       audio, audio_info), info.duration)
    return {"payload[videoFile]": out}


async def hls(work, payload, stem="output") -> dict:
    video, info, audio, audio_info = await _video_inputs(work, payload)
    output = payload["output"]
    playlist_name, video_name = F.hls_names(output["resolution"], stem)
    playlist, fragmented = work.path(playlist_name), work.path(video_name)
    await work.ffmpeg(F.hls_args(video, playlist, fragmented, info, output["resolution"],
                                 output["fps"], bool(output.get("separatedAudio")), audio,
                                 audio_info), info.duration)
    with open(playlist, encoding="utf-8") as f:
        text = F.fix_hls_playlist(f.read(), fragmented)
    with open(playlist, "w", encoding="utf-8") as f:
        f.write(text)
    return {"payload[videoFile]": fragmented, "payload[resolutionPlaylistFile]": playlist}


async def audio_merge(work, payload) -> dict:
    audio = await work.fetch(payload["input"]["audioFileUrl"])
    image = await work.fetch(payload["input"]["previewFileUrl"])
    audio_info, image_info = await work.probe(audio), await work.probe(image)
    out, output = work.path("output.mp4"), payload["output"]
    merge = F.audio_merge_args(audio, image, out, image_info, audio_info, output["resolution"],
                               output["fps"])
    await _together(work.ffmpeg(merge.video, audio_info.duration), run(work.reactor, merge.audio))
    await run(work.reactor, merge.mux)
    return {"payload[videoFile]": out}


async def studio(work, payload) -> dict:
    """The tasks in order, each on the previous task's output (PeerTube's
    processStudioTranscoding); a task file is fetched when its task comes."""
    tasks = STUDIO.parse_tasks(payload.get("tasks"))  # an unknown task: fail before fetching
    video, info, audio, audio_info = await _video_inputs(work, payload)
    for i, step in enumerate(tasks):
        file_path = file_info = None
        if step.file is not None:
            file_path = await work.fetch(step.file)
            file_info = await work.probe(file_path)
        out = work.path(f"studio-{i + 1}.mp4")
        edit = STUDIO.edit_args(step, video, out, info, file_path, file_info, audio,
                                audio_info)
        log.info("Studio task {n}/{count}: {name}", n=i + 1, count=len(tasks), name=step.name)
        try:
            await work.ffmpeg(edit.args, edit.duration, share=(i, len(tasks)))
        except JobFailed as e:
            raise JobFailed(f"tasks[{i}] ({step.name}): {e}") from None
        work.discard(video, audio, file_path)
        video, audio, audio_info = out, None, None
        if i + 1 < len(tasks):
            info = await work.probe(out)
    return {"payload[videoFile]": video}


async def _together(*coroutines):
    """Awaits them all; the first failure cancels the others (their ffmpegs are killed)."""
    running = [defer.ensureDeferred(c) for c in coroutines]
    try:
        await defer.gatherResults(running, consumeErrors=True)
    except defer.FirstError as e:
        for d in running:
            d.cancel()
        await defer.DeferredList(running, consumeErrors=True)
        e.subFailure.raiseException()
    except defer.CancelledError:
        for d in running:
            d.cancel()
        await defer.DeferredList(running, consumeErrors=True)
        raise


HANDLERS = {JobType.VOD_WEB_VIDEO: web_video, JobType.VOD_HLS: hls,
            JobType.VOD_AUDIO_MERGE: audio_merge, JobType.STUDIO: studio}


async def process(reactor, api, job, work_root=None, progress_every=PROGRESS_EVERY) -> str:
    """The whole job; -> "completed", "failed" (reported with jobs/{uuid}/error) or "lost"
    (the server took the job back). Cancelling it kills its ffmpeg and raises
    CancelledError: the caller aborts the job."""
    uuid, token = job["uuid"], job["jobToken"]
    directory = tempfile.mkdtemp(prefix=f"choir-job-{uuid[:8]}-", dir=work_root)
    lost, inner = [], None

    def on_lost(problem):
        log.warn("Job {uuid} is no longer ours ({problem}): stopping it", uuid=uuid,
                 problem=problem)
        lost.append(problem)
        if inner is not None:
            inner.cancel()

    async def update(progress):
        await api.update(uuid, token, progress)
        if progress is not None:
            log.info("Job {uuid}: {progress}%", uuid=uuid, progress=progress)

    reporter = ProgressReporter(reactor, update, on_lost, every=progress_every)
    work = Work(reactor, lambda url, path: api.download(url, token, path), reporter.set,
                directory)
    try:
        reporter.start()
        inner = defer.ensureDeferred(HANDLERS[job["type"]](work, job["payload"]))
        try:
            files = await inner
        except defer.CancelledError:
            if lost:
                return "lost"
            raise
        except ServerProblem as e:
            if e.code in LOST_CODES:
                return "lost"
            await reporter.finish()
            return await _fail(api, uuid, token, e)
        except Exception as e:  # ffmpeg, a bad input, a download refused: the job's fault
            # (a refused studio task fails at once: the first update may be on its way)
            await reporter.finish()
            return await _fail(api, uuid, token, e)
        await reporter.finish()
        try:
            await retrying(reactor, lambda: api.success(uuid, token, files))
        except ServerProblem as e:  # e.g. a result over the server's size limit
            if e.code in LOST_CODES:  # (or a retry of a success the server had got)
                return "lost"
            return await _fail(api, uuid, token, e)
        return "completed"
    finally:
        reporter.stop()
        shutil.rmtree(directory, ignore_errors=True)


async def retrying(reactor, call, delays=RETRY_DELAYS):
    """``call()`` again after each delay while the server cannot be reached: a finished
    job's result is not thrown away for a moment's network trouble. A refusal is final."""
    for delay in (*delays, None):
        try:
            return await call()
        except Unreachable as e:
            if delay is None:
                raise
            log.warn("{e}: trying again in {delay:g} s", e=e, delay=delay)
            await task.deferLater(reactor, delay, lambda: None)


async def _fail(api, uuid, token, e) -> str:
    known = isinstance(e, (JobFailed, F.MediaError, ServerProblem, OSError))
    message = str(e) if known and str(e) else f"{type(e).__name__}: {e}"
    log.warn("Job {uuid} failed: {message}", uuid=uuid, message=message)
    try:
        await retrying(api.reactor, lambda: api.error(uuid, token, message[:10000]))
    except Exception as report_error:
        log.warn("Cannot report the failure of job {uuid}: {e}", uuid=uuid, e=report_error)
    return "failed"
