"""choir-demo's last act: the session's recording published as the daemon publishes it
(runner API, socket.io, an audio-merge job and its HLS children), to a choir-runner in
the same process, with the progress shown as it goes; then where to watch it.

The HTTP endpoint (runner API and media API, on 127.0.0.1) lives only as long as the
publishing, unless ``serve``: then it stays up, serving the HLS stream at a signed URL
(a player follows its relative links), until the reactor stops (Ctrl-C)."""
import sys
import tempfile
import time

from twisted.internet import defer, task

from choir_protocol.runners import jobs as J
from choir_protocol.runners import publishing as P
from choir_twisted.rehearsal.summary_file import read_summary

from ..runner.runner import Runner


async def publish(reactor, data_dir, session_dir, serve: bool = False,
                  details: bool = False) -> None:
    """``details``: each job's progress and every file made, as they go."""
    from choir_twisted.runners.service import RunnerService
    service = RunnerService(reactor, "tcp:0:interface=127.0.0.1", data_dir,
                            publishing={"sessions_dir": None, "choir_name": "choir-demo"})
    await service.startService()
    runner = None
    try:
        summary = read_summary(session_dir)
        started = time.monotonic()
        media = await service.publisher.publish_recording(session_dir, summary)
        if media is None:
            print("\nNothing to publish (the recording is too short or already published).")
            return
        url = f"http://127.0.0.1:{service.port.getHost().port}"
        reg = await service.store.create_registration_token()
        registered = await service.store.register_runner(reg.token, f"choir-demo-{media.id[:8]}")
        with tempfile.TemporaryDirectory() as work:
            runner = Runner(reactor, [{"url": url, "runnerToken": registered.token,
                                       "name": registered.name}], work_dir=work)
            runner.start()
            print(f"\nPublishing \"{media.name}\" as a video and an HLS stream, with a runner "
                  f"in this process...")
            shown = None
            while (media := await service.store.get_media(media.id)).ended_at is None:
                jobs = sorted(await service.store.media_jobs(media.id), key=_order)
                line = "  " + ", ".join(_job_line(j) for j in jobs)
                if line != shown and details:
                    print(line)
                    shown = line
                await task.deferLater(reactor, 0.25, lambda: None)
            await runner.stop()
            runner = None
        jobs = await service.store.media_jobs(media.id)
        files = await service.store.media_files(media.id)
        outputs = [f for f in files if f.role == "output"]
        print(f"  {P.media_state(jobs)} in {time.monotonic() - started:.1f} s"
              + (":" if details else "."))
        for f in sorted(outputs, key=lambda f: f.name) if details else ():
            if not f.name.endswith("-fragmented.mp4"):
                print(f"    {f.name:<18} {f.path}")
        hls = P.describe_media(media, jobs, files, url,
                               service.publisher.links.segment(media.id))["hlsUrl"]
        _print_watch(outputs, hls if serve else None)
        if serve and hls:
            # the reactor's shutdown (Ctrl-C) stops the service; this never returns
            reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
            service = None
            sys.stdout.flush()  # the URL, now, even into a pipe
            await defer.Deferred()
    finally:
        if runner is not None:
            await runner.stop()
        if service is not None:
            await service.stopService()


def _print_watch(outputs, hls_url) -> None:
    """Where to watch the published recording: the MP4 and the HLS master playlist."""
    lines = [("the video (MP4)", f.path) for f in sorted(outputs, key=lambda f: f.name)
             if f.name.endswith(".mp4") and "/" not in f.name]
    lines += [("HLS, in a player", f.path) for f in outputs if f.name == P.MASTER_PLAYLIST]
    if hls_url:
        lines.append(("HLS over HTTP", hls_url))
    if not lines:
        return
    print("\nWatch:")
    for label, path in lines:
        print(f"  {label:<16}  {path}")
    if hls_url:
        print("Serving the HLS stream at that URL (open it in mpv, ffplay or VLC) until Ctrl-C.")
    elif any(f.name == P.MASTER_PLAYLIST for f in outputs):
        print("(choir-demo --serve also serves the HLS stream over HTTP, until Ctrl-C.)")


def _order(job):
    return job.parent_uuid is not None, -(job.payload.get("output") or {}).get("resolution", 0)


def _job_line(job) -> str:
    kind = {J.JobType.VOD_AUDIO_MERGE: "MP4", J.JobType.VOD_HLS: "HLS",
            J.JobType.VOD_WEB_VIDEO: "MP4"}.get(job.type, job.type)
    resolution = (job.payload.get("output") or {}).get("resolution")
    state = (f"{job.progress}%" if job.state is J.JobState.PROCESSING and job.progress is not None
             else job.state.label.lower())
    return f"{kind} {resolution}p {state}"
