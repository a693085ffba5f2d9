"""Publishing: recordings and uploads become transcoding jobs; ended media get their HLS
master playlist and their webhook.

* A session is published when its recording is final (session.json: ended, tracks ready
  or failed): the room says so (``Room.on_session_recorded`` -> ``session_recorded``), and
  so does the recovery of an interrupted one at start. Only at start is ``sessions/``
  scanned, for the sessions that ended while the daemon or its runner side was down. Its
  media is keyed by its mix's path, so a session is published once, whatever restarts.
* ``submit_media`` (the HTTP upload and ``choir-admin media submit`` share it) probes a
  file with ffmpeg-python, refuses what is not media, stores it under ``media/<id>/`` and
  creates its jobs. Audio gets a cover, as a recording does.
* When the last job of a media reaches a final state (seen on the store's change feed,
  whoever made the change), the media is marked ended once (compare-and-set), the HLS
  master playlist is written over the completed renditions, and the webhook (the media's
  own, else the daemon's) is POSTed the media's JSON, with retries; the outcome is stored,
  and undelivered webhooks are retried at the next start.

Just over 400 lines: the publishing steps of a media (plan, jobs, master playlist, webhook)
share its state; the cover and the studio are modules of their own.
"""
import datetime
import hashlib
import hmac
import io
import json
import os
import shutil
import uuid as uuidlib

import ffmpeg
from twisted.internet import defer, protocol, task, threads
from twisted.logger import Logger
from twisted.web.client import Agent, FileBodyProducer
from twisted.web.http_headers import Headers

from choir_protocol.rehearsal.constants import FRAMES_PER_CHUNK, SAMPLE_RATE
from choir_protocol.runners import jobs as J
from choir_protocol.runners import publishing as P

from ..rehearsal.summary_file import read_summary
from .covers import fit_cover, make_cover

log = Logger()

MIN_RECORDING_SECONDS = 1.0
WEBHOOK_TIMEOUT = 10.0
WEBHOOK_RETRIES = (2.0, 10.0, 30.0)  # seconds before each new attempt
PUBLISH_RETRY_FIRST, PUBLISH_RETRY_MAX = 5.0, 300.0  # a session that failed to publish
DEFAULT_CHOIR_NAME = "Choir rehearsal"


def probe_file(path: str) -> P.Probe:
    """Blocking. Raises P.NotMedia with ffprobe's own words for what it cannot read."""
    try:
        info = ffmpeg.probe(path)
    except ffmpeg.Error as e:
        words = (e.stderr or b"").decode("utf-8", "replace").strip().splitlines()
        raise P.NotMedia(f"not a media file ({words[-1] if words else 'ffprobe failed'})")
    return P.probe_from_ffprobe(info)


def _duration_text(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _prepare_upload(files_dir, media_id, source, name, move):
    """Blocking: probe, store the file under media/<id>/, make a cover for audio."""
    probe = probe_file(source)
    directory = os.path.join(files_dir, "media", media_id)
    os.makedirs(directory, exist_ok=True)
    ext = os.path.splitext(source)[1].lower()
    dest = os.path.join(directory, "source" + (ext if 1 < len(ext) <= 11 else ""))
    (shutil.move if move else shutil.copyfile)(source, dest)
    cover = None
    if not probe.has_video:
        cover = make_cover(dest, os.path.join(directory, "cover.png"), name,
                           _duration_text(probe.duration))
    return probe, dest, cover


def audio_merge_preview(files_dir, media_id, cover, settings) -> str:
    """Blocking: the cover at the top of the ladder, for the audio merge (``fit_cover``)."""
    top = max(settings.resolutions)
    directory = os.path.join(files_dir, "media", media_id)
    os.makedirs(directory, exist_ok=True)
    return fit_cover(cover, os.path.join(directory, f"preview-{top}p.png"), top)


async def submit_media(store, files_dir, source, name, webhook=None, *, move=False,
                       settings=J.DEFAULT_SETTINGS, now=None):
    """-> (Media, [Job]). Raises P.NotMedia (nothing stored) for a file that is not media."""
    media_id = str(uuidlib.uuid4())
    try:
        probe, path, cover = await threads.deferToThread(
            _prepare_upload, files_dir, media_id, source, name, move)
        preview = None if cover is None else await threads.deferToThread(
            audio_merge_preview, files_dir, media_id, cover, settings)
    except BaseException:
        shutil.rmtree(os.path.join(files_dir, "media", media_id), ignore_errors=True)
        raise
    try:
        media, transitions = await store.publish_media(
            "upload", name, path, [f for f in (path, cover) if f is not None],
            P.upload_jobs(media_id, probe, path, preview, settings), probe=probe.to_json(),
            webhook=webhook, media_id=media_id, now=now)
    except BaseException:
        shutil.rmtree(os.path.join(files_dir, "media", media_id), ignore_errors=True)
        raise
    return media, [t.job for t in transitions]


def _session_title(summary, choir_name, with_id=True):
    """The media's name: "Choir rehearsal, 03 December 2026, 14:30 (session
    20261203-143012-1)". The session id tells apart two sessions of one minute, and names
    the folder of its recordings. ``with_id=False``: the cover's title (its subtitle has
    the id), short enough for large letters."""
    session_id = str(summary.id or "")
    try:
        started = datetime.datetime.fromisoformat(summary.started).astimezone()
    except (TypeError, ValueError):
        return f"{choir_name}, session {session_id}" if session_id else choir_name
    when = started.strftime("%d %B %Y, %H:%M")
    return f"{choir_name}, {when}" + (f" (session {session_id})" if session_id and with_id else "")


def _session_subtitle(summary):
    seconds = summary.mix_chunks * FRAMES_PER_CHUNK / SAMPLE_RATE
    singers = len(summary.singers)
    session = f" · session {summary.id}" if summary.id and summary.started else ""
    return f"{singers} singer{'s' * (singers != 1)} · {_duration_text(seconds)}{session}"


def _variants(files_dir, jobs) -> list:
    """Blocking: the completed HLS renditions, probed for size and bit rate. A rendition
    made again (after a studio edit) is stored under the same name: the last one counts."""
    latest = {}
    for job in sorted(jobs, key=lambda j: j.finished_at or 0):
        files = ((job.private_payload.get("result") or {}).get("files") or {})
        playlist, video = files.get("resolutionPlaylistFile"), files.get("videoFile")
        if job.type == J.JobType.VOD_HLS and job.state is J.JobState.COMPLETED \
                and playlist and video:
            latest[playlist] = video
    out = []
    for playlist, video in latest.items():
        try:
            probe = probe_file(video)
            size = os.path.getsize(video)
        except (P.NotMedia, OSError):
            continue
        if not probe.has_video:
            continue
        hls_dir = os.path.dirname(video)
        bandwidth = int(size * 8 / max(probe.duration, 0.001))
        out.append(P.Variant(os.path.relpath(playlist, hls_dir), probe.width, probe.height,
                             probe.fps or 25.0, bandwidth, probe.codecs))
    return out


class Publisher:
    def __init__(self, store, hub, files_dir, reactor, *, sessions_dir=None,
                 settings=J.DEFAULT_SETTINGS, choir_name=DEFAULT_CHOIR_NAME, cover=None,
                 webhook=None, public_url=None, agent=None, retry_delays=WEBHOOK_RETRIES,
                 webhook_secret=None, links=None):
        self.store = store
        self.hub = hub
        self.files_dir = files_dir
        self.reactor = reactor
        self.sessions_dir = sessions_dir
        self.settings = settings
        self.choir_name = choir_name
        self.cover = cover  # a fixed cover image for every recording
        self.webhook = webhook
        self.public_url = public_url or ""
        self.webhook_secret = webhook_secret
        self.links = links  # media_links.MediaLinks: the webhook's file URLs are signed
        self.agent = agent or Agent(reactor, connectTimeout=WEBHOOK_TIMEOUT)
        self.retry_delays = tuple(retry_delays)
        self._seen = set()  # session ids published, or never to be
        self._publishing = set()  # session ids being published
        self._retry = {}  # session id -> the DelayedCall of its next try
        self._delays = {}  # session id -> the delay before its next try, should it fail
        self._sending = set()
        self._ending = set()  # media being finished (one at a time each)

    # -- recordings --

    def session_recorded(self, directory):
        """The room's ``on_session_recorded`` (and the recovery's, at start): publishes the
        session in ``directory``, once; a failure is tried again later, with backoff.
        -> Deferred (its Media, or None)."""
        d = defer.ensureDeferred(self._publish_session(os.path.basename(directory)))
        d.addErrback(lambda f: log.failure("Publishing session {dir}", f, dir=directory))
        return d

    async def scan_sessions(self):
        """At start: the sessions recorded but not yet published (the daemon, or its runner
        side, was down when they ended). -> [Media] published."""
        if self.sessions_dir is None or not os.path.isdir(self.sessions_dir):
            return []
        published = []
        for session_id in sorted(set(os.listdir(self.sessions_dir)) - self._seen):
            media = await self._publish_session(session_id)
            if media is not None:
                published.append(media)
        return published

    def stop(self):
        """Cancels the retries still to come."""
        for call in self._retry.values():
            if call.active():
                call.cancel()
        self._retry.clear()

    async def _publish_session(self, session_id):
        if self.sessions_dir is None or session_id in self._seen \
                or session_id in self._publishing or session_id in self._retry:
            return None
        directory = os.path.join(self.sessions_dir, session_id)
        summary = _read_summary(directory)
        if summary is None or not summary.publishable:
            return None  # not final: its end (or the recovery at the next start) tells us
        self._publishing.add(session_id)
        try:
            media = await self.publish_recording(directory, summary)
        except Exception as e:  # a locked database, a full disk: try again later
            delay = self._delays.get(session_id, PUBLISH_RETRY_FIRST)
            self._delays[session_id] = min(delay * 2, PUBLISH_RETRY_MAX)
            self._retry[session_id] = self.reactor.callLater(
                delay, self._try_again, session_id)
            log.warn("Session {id} could not be published ({error}): trying again in "
                     "{delay:.0f} s", id=session_id, error=f"{type(e).__name__}: {e}",
                     delay=delay)
            return None
        finally:
            self._publishing.discard(session_id)
        self._delays.pop(session_id, None)
        self._seen.add(session_id)
        return media

    def _try_again(self, session_id):
        del self._retry[session_id]
        self.session_recorded(os.path.join(self.sessions_dir, session_id))

    async def publish_recording(self, directory, summary):
        mix = os.path.join(directory, "mix.flac")
        seconds = summary.mix_chunks * FRAMES_PER_CHUNK / SAMPLE_RATE
        if not os.path.exists(mix) or seconds < MIN_RECORDING_SECONDS:
            log.info("Session {id}: no recording to publish ({seconds:.1f} s)",
                     id=summary.id, seconds=seconds)
            return None
        if await self.store.media_by_path(mix) is not None:
            return None
        title = _session_title(summary, self.choir_name)
        cover = self.cover or await threads.deferToThread(
            make_cover, mix, os.path.join(directory, "cover.png"),
            _session_title(summary, self.choir_name, with_id=False), _session_subtitle(summary))
        tracks = [os.path.join(directory, n) for n in summary.files or () if n != "mix.flac"]
        media_id = str(uuidlib.uuid4())
        preview = await threads.deferToThread(audio_merge_preview, self.files_dir, media_id,
                                              cover, self.settings)
        media, transitions = await self.store.publish_media(
            "recording", title, mix, [p for p in [mix, cover] + tracks if os.path.exists(p)],
            P.recording_jobs(media_id, mix, preview, self.settings), media_id=media_id)
        self.hub.notify_available_jobs()
        log.info("Session {id} published as media {media}: {n} jobs",
                 id=summary.id, media=media.id, n=len(transitions))
        return media

    # -- uploads --

    async def submit(self, source, name, webhook=None, move=True):
        media, jobs = await submit_media(self.store, self.files_dir, source, name, webhook,
                                         move=move, settings=self.settings)
        self.hub.notify_available_jobs()
        return media, jobs

    # -- the end of a media --

    async def jobs_changed(self, changes):
        """``changes``: [(job uuid, state)] from the store's change feed."""
        ended = {uuid for uuid, state in changes if state in J.FINAL_STATES}
        media_ids = set()
        for uuid in ended:
            job = await self.store.get_job(uuid)
            if job is not None and job.media_id is not None:
                media_ids.add(job.media_id)
        for media_id in sorted(media_ids):
            await self.media_maybe_ended(media_id)

    async def media_maybe_ended(self, media_id):
        if media_id in self._ending:
            return False
        self._ending.add(media_id)
        try:
            jobs = await self.store.media_jobs(media_id)
            if not jobs or any(j.state not in J.FINAL_STATES for j in jobs):
                return False
            if (await self.store.get_media(media_id)).ended_at is not None:
                return False
            # the playlist first: a media is shown ended only once it is all there
            await self._write_master_playlist(media_id, jobs)
            if not await self.store.mark_media_ended(media_id):
                return False
        finally:
            self._ending.discard(media_id)
        media = await self.store.get_media(media_id)
        log.info("Media {id} ended: {state}", id=media_id, state=P.media_state(jobs))
        self.deliver(media)
        return True

    async def _write_master_playlist(self, media_id, jobs):
        variants = await threads.deferToThread(_variants, self.files_dir, jobs)
        if not variants:
            return
        path = os.path.join(self.files_dir, "media", media_id, P.MASTER_PLAYLIST)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path + ".tmp", "w") as f:
            f.write(P.master_playlist(variants))
        os.replace(path + ".tmp", path)
        await self.store.replace_media_file(media_id, "output", P.MASTER_PLAYLIST, path,
                                            os.path.getsize(path))

    async def catch_up(self):
        """At start: media whose last job ended while we were down, and webhooks not yet
        delivered (those that failed every retry are left for the operator)."""
        for media in await self.store.list_media():
            if media.ended_at is None:
                await self.media_maybe_ended(media.id)
        for media in await self.store.media_awaiting_webhook():
            if media.webhook_error is None:
                self.deliver(media)

    # -- webhooks --

    def deliver(self, media):
        """Fire and forget: POST the media's JSON to its webhook, with retries."""
        url = media.webhook or self.webhook
        if not url or media.id in self._sending:
            return None
        self._sending.add(media.id)
        d = defer.ensureDeferred(self._deliver(media, url))
        d.addErrback(lambda f: log.failure("Webhook of media {id}", f, id=media.id))
        d.addBoth(lambda _: self._sending.discard(media.id))
        return d

    async def _deliver(self, media, url):
        jobs = await self.store.media_jobs(media.id)
        files = await self.store.media_files(media.id)
        body = json.dumps({"event": "media.ended",
                           "media": P.describe_media(
                               media, jobs, files, self.public_url,
                               self.links.segment(media.id) if self.links else "")}
                          ).encode()
        error = None
        for delay in (0.0,) + self.retry_delays:
            if delay:
                await task.deferLater(self.reactor, delay, lambda: None)
            try:
                error = await self._post(url, body)
            except Exception as e:
                error = f"{type(e).__name__}: {e}"
            if error is None:
                await self.store.set_webhook_outcome(media.id, sent_at=self.reactor.seconds())
                log.info("Webhook of media {id} delivered to {url}", id=media.id, url=url)
                return True
            log.warn("Webhook of media {id} to {url} failed: {error}", id=media.id, url=url,
                     error=error)
        await self.store.set_webhook_outcome(media.id, error=error)
        return False

    async def _post(self, url, body):
        headers = Headers({b"content-type": [b"application/json"],
                           b"user-agent": [b"choir-webhook"]})
        if self.webhook_secret:
            headers.setRawHeaders(b"x-choir-signature", [sign(self.webhook_secret, body)])
        d = self.agent.request(b"POST", url.encode(), headers, FileBodyProducer(io.BytesIO(body)))
        d.addTimeout(WEBHOOK_TIMEOUT, self.reactor)
        response = await d
        # The status is the answer: a 2xx is a delivery, whatever its body (none, without
        # a length, cut short), which is read and dropped, never kept.
        body_sink = _Discard()
        response.deliverBody(body_sink)
        try:
            await body_sink.done.addTimeout(WEBHOOK_TIMEOUT, self.reactor)
        except defer.TimeoutError:
            body_sink.drop()  # a body that never ends: hang up
        return None if 200 <= response.code < 300 else f"HTTP {response.code}"


def sign(secret: str, body: bytes) -> bytes:
    """``X-Choir-Signature``: ``sha256=`` and the hex HMAC-SHA256 of the body, as GitHub's
    webhooks do; a receiver recomputes it with the shared secret."""
    return b"sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest().encode()


class _Discard(protocol.Protocol):
    """A response body read and dropped; ``done`` fires when it ends, however it ends."""

    def __init__(self):
        self.done = defer.Deferred()

    def dataReceived(self, data):
        pass

    def connectionLost(self, reason):
        if not self.done.called:
            self.done.callback(None)

    def drop(self):
        if self.transport is not None:
            self.transport.stopProducing()


def _read_summary(directory):
    """The session's SessionSummary, or None while there is none to read."""
    try:
        return read_summary(directory)
    except (OSError, ValueError):
        return None
