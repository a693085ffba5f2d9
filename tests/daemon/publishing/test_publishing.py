"""Publishing over real HTTP on 127.0.0.1: a recorded session becomes an audio merge and HLS
renditions, uploads are probed and planned, outputs are served, webhooks are called.

A test plays the runner with plain HTTP and real ffmpeg output (choir-runner has its own
tests), so every byte the daemon serves and stores can be checked.

Over 400 lines: a recording and an upload through every publishing step, on the shared
PublishingCase.
"""
import datetime
import hashlib
import hmac
import json
import os
import re
import sqlite3

import attrs
from ffmpeg import probe as ffmpeg_probe
import pytest
from twisted.internet import defer, protocol, reactor, threads
from twisted.trial import unittest

from choir_protocol.runners import jobs as J
from choir_protocol.runners.jobs import DEFAULT_SETTINGS, JobState, JobType
from choir_twisted.publishing.covers import fit_cover
from choir_twisted.publishing.publisher import probe_file
from choir_twisted.runners.service import RunnerService

from ...support.daemon_process import until
from ...support.http import multipart
from ...support.media_files import ffmpeg
from ...support.paths import temp_dir
from ...support.publishing import M, PublishingCase, bearer, make_session, until_media, until_value


class PublishingTest(PublishingCase):
    # -- a recording ---------------------------------------------------------------------

    async def test_a_recording_is_published_transcoded_and_served(self):
        await self.start()
        session = make_session(self.sessions)
        await self.run_service()
        await until(lambda: os.path.exists(os.path.join(session, "cover.png")), what="cover")
        media = await until_media(self.store)
        self.assertEqual(media.kind, "recording")
        self.assertEqual(media.name, "Choir rehearsal, " + datetime.datetime.fromisoformat(
            "2026-11-21T14:03:00+00:00").astimezone().strftime("%d %B %Y, %H:%M")
            + " (session 20261121-140300-1)")
        cover = ffmpeg_probe(os.path.join(session, "cover.png"))["streams"][0]
        self.assertEqual((cover["codec_name"], cover["width"], cover["height"]),
                         ("png", 1920, 1080))
        inputs = sorted(f.name for f in await self.store.media_files(media.id, "input"))
        self.assertEqual(inputs, ["cover.png", "mix.flac", "singer-001-ann-alto.flac"])

        jobs = await self.store.media_jobs(media.id)
        merge = [j for j in jobs if j.type == JobType.VOD_AUDIO_MERGE]
        hls = [j for j in jobs if j.type == JobType.VOD_HLS]
        self.assertEqual(len(merge), 1)
        self.assertEqual(merge[0].state, JobState.PENDING)
        self.assertEqual(sorted(j.payload["output"]["resolution"] for j in hls), [360, 480, 720])
        self.assertTrue(all(j.state is JobState.WAITING_FOR_PARENT_JOB for j in hls))

        # the merge: its inputs are the mix and the cover, byte for byte
        token = await self.register()
        wire = await self.accept(token, merge[0])
        audio = await self.fetch(token, wire["jobToken"], wire["payload"]["input"]["audioFileUrl"])
        with open(os.path.join(session, "mix.flac"), "rb") as f:
            self.assertEqual(audio.body, f.read())
        preview = await self.fetch(token, wire["jobToken"],
                                   wire["payload"]["input"]["previewFileUrl"])
        self.assertEqual(preview.code, 200)
        self.assertEqual(preview.content_type, "image/png")
        work = temp_dir(self)
        merged = os.path.join(work, "merged.mp4")
        ffmpeg("-i", os.path.join(session, "mix.flac"), "-f", "lavfi", "-i",
               "color=c=blue:s=1280x720:r=25", "-shortest", "-c:v", "libx264", "-preset",
               "ultrafast", "-c:a", "aac", merged)
        with open(merged, "rb") as f:
            merged_bytes = f.read()
        await self.succeed(token, wire, [("payload[videoFile]", "x.mp4", merged_bytes)])

        # the HLS children are released and transcode the merged MP4
        hls = [await self.store.get_job(j.uuid) for j in hls]
        self.assertTrue(all(j.state is JobState.PENDING for j in hls))
        for job in hls:
            wire = await self.accept(token, job)
            source = await self.fetch(token, wire["jobToken"],
                                      wire["payload"]["input"]["videoFileUrl"])
            self.assertEqual(source.body, merged_bytes)
            res = wire["payload"]["output"]["resolution"]
            playlist = os.path.join(work, f"runner-{res}.m3u8")
            ffmpeg("-i", merged, "-vf", f"scale=-2:{res}", "-c:v", "libx264", "-preset",
                   "ultrafast", "-c:a", "copy", "-f", "hls", "-hls_segment_type", "fmp4",
                   "-hls_flags", "single_file", "-hls_playlist_type", "vod",
                   "-hls_segment_filename", os.path.join(work, f"runner-{res}.mp4"), playlist)
            with open(playlist, "rb") as p, open(os.path.join(work, f"runner-{res}.mp4"), "rb") as v:
                files = [("payload[videoFile]", "runner.mp4", v.read()),
                         ("payload[resolutionPlaylistFile]", "runner.m3u8", p.read())]
            await self.succeed(token, wire, files)

        # ended: master playlist, webhook, everything served
        await until(lambda: self.sink.bodies, what="the webhook")
        # recorded once the answer is in (the sink has the body before that)
        media = await until_value(lambda: self.store.get_media(media.id),
                                  lambda m: m.webhook_sent_at is not None)
        self.assertIsNotNone(media.ended_at)
        self.assertIsNone(media.webhook_error)
        hook = self.sink.bodies[0]
        self.assertEqual(hook["event"], "media.ended")
        self.assertEqual(hook["media"]["id"], media.id)
        self.assertEqual(hook["media"]["state"], "completed")
        self.assertEqual(len(self.sink.bodies), 1)

        # the webhook's file links are signed: whoever it tells can fetch them, no token
        hooked = {f["name"]: f["url"] for f in hook["media"]["outputs"]}
        self.assertRegex(hooked["720p.mp4"],
                         rf"^{M}/{media.id}/signed/[0-9]+/[0-9a-f]{{32}}/files/720p\.mp4$")
        self.assertEqual((await self.http("GET", hooked["720p.mp4"])).body, merged_bytes)
        api = await self.api_token()
        shown = await self.http("GET", f"{M}/{media.id}", headers=bearer(api))
        self.assertEqual(shown.code, 200, shown.body)
        view = shown.json
        self.assertEqual(view["state"], "completed")
        outputs = {f["name"] for f in view["outputs"]}
        self.assertEqual(outputs, {"720p.mp4", "hls/master.m3u8"}
                         | {f"hls/{r}p.m3u8" for r in (360, 480, 720)}
                         | {f"hls/{r}p-fragmented.mp4" for r in (360, 480, 720)})
        master = await self.http("GET", view["hlsUrl"])
        self.assertEqual(master.code, 200)
        self.assertEqual(master.content_type, "application/vnd.apple.mpegurl")
        lines = master.body.decode().splitlines()
        self.assertEqual([line for line in lines if not line.startswith("#")],
                         ["720p.m3u8", "480p.m3u8", "360p.m3u8"])
        self.assertIn("RESOLUTION=1280x720", master.body.decode())
        playlist = await self.http("GET", f"{M}/{media.id}/files/hls/480p.m3u8",
                                   headers=bearer(api))
        self.assertIn('URI="480p-fragmented.mp4"', playlist.body.decode())
        self.assertNotIn("runner", playlist.body.decode())
        part = await self.http("GET", f"{M}/{media.id}/files/720p.mp4",
                               headers={"Range": "bytes=0-99", **bearer(api)})
        self.assertEqual(part.code, 206)
        self.assertEqual(part.body, merged_bytes[:100])
        # the HLS rendition as a player sees it: ffprobe reads it through the playlists
        probe = await threads.deferToThread(probe_file, self.base + view["hlsUrl"])
        self.assertTrue(probe.has_video and probe.has_audio)
        self.assertLess(abs(probe.duration - 3.0), 0.3)

    async def test_a_session_is_published_once_across_restarts(self):
        await self.start()
        make_session(self.sessions, "s1")
        make_session(self.sessions, "s2", seconds=0.5)  # too short to publish
        os.makedirs(os.path.join(self.sessions, "s3"))  # still being written: no summary
        await self.run_service()
        await until_media(self.store)
        self.assertEqual(await self.service.publisher.scan_sessions(), [])
        await defer.ensureDeferred(self.service.stopService())
        self.service = RunnerService(reactor, "tcp:0:interface=127.0.0.1", self.data_dir)
        await self.run_service()
        self.assertEqual(await self.service.publisher.scan_sessions(), [])
        self.assertEqual(len(await self.store.list_media()), 1)

    async def test_a_configured_cover_and_ladder(self):
        cover = self.generated("ours.jpg", "-f", "lavfi", "-i", "color=c=red:s=1000x500",
                               "-frames:v", "1")
        await self.start(cover=cover, settings=attrs.evolve(DEFAULT_SETTINGS,
                                                            resolutions=frozenset({480})))
        session = make_session(self.sessions)
        await self.run_service()
        media = await until_media(self.store)
        jobs = await self.store.media_jobs(media.id)
        self.assertEqual([(j.type, j.payload["output"]["resolution"]) for j in jobs],
                         [(JobType.VOD_AUDIO_MERGE, 480), (JobType.VOD_HLS, 480)])
        self.assertFalse(os.path.exists(os.path.join(session, "cover.png")))
        # the audio merge's picture is the cover at the job's resolution: PeerTube's runner
        # makes its video the picture's size
        preview = jobs[0].private_payload["inputs"]["preview"]
        self.assertEqual(os.path.basename(preview), "preview-480p.png")
        picture = ffmpeg_probe(preview)["streams"][0]
        self.assertEqual((picture["width"], picture["height"]), (960, 480))

    # -- uploads -------------------------------------------------------------------------

    async def test_an_uploaded_video_is_probed_and_planned(self):
        token = await self.serving()
        video = self.generated("clip.mp4", "-f", "lavfi", "-i", "testsrc=s=854x480:r=24:d=2",
                               "-f", "lavfi", "-i", "sine=d=2", "-c:v", "libx264", "-preset",
                               "ultrafast", "-c:a", "aac")
        with open(video, "rb") as f:
            data = f.read()
        a = await self.upload(data, "clip.mp4", token, webhook="http://127.0.0.1:9/x")
        self.assertEqual(a.code, 201, a.body)
        view = a.json
        self.assertEqual(view["name"], "clip")
        self.assertEqual(view["state"], "processing")
        self.assertEqual((view["probe"]["width"], view["probe"]["height"]), (854, 480))
        self.assertEqual(sorted((j["type"], j["resolution"]) for j in view["jobs"]), sorted([
            (JobType.VOD_WEB_VIDEO, 480), (JobType.VOD_HLS, 480), (JobType.VOD_HLS, 360),
            (JobType.VOD_WEB_VIDEO, 360)]))
        media = await self.store.get_media(view["id"])
        self.assertEqual(media.webhook, "http://127.0.0.1:9/x")
        with open(media.path, "rb") as f:
            self.assertEqual(f.read(), data)
        self.assertEqual(os.listdir(os.path.join(self.data_dir, "uploads")), [])
        # the source is downloadable and listed
        got = await self.http("GET", f"{M}/{view['id']}/files/source.mp4", headers=bearer(token))
        self.assertEqual(got.body, data)
        listing = await self.http("GET", M, headers={"Authorization": f"Bearer {token}"})
        self.assertEqual([m["id"] for m in listing.json["data"]], [view["id"]])

    async def test_an_uploaded_song_gets_a_cover(self):
        token = await self.serving()
        song = self.generated("song.mp3", "-f", "lavfi", "-i", "sine=d=3")
        with open(song, "rb") as f:
            a = await self.upload(f.read(), "song.mp3", token, name="Ave verum")
        self.assertEqual(a.code, 201, a.body)
        self.assertEqual(a.json["name"], "Ave verum")
        self.assertEqual(a.json["jobs"][0]["type"], JobType.VOD_AUDIO_MERGE)
        self.assertEqual(sorted(f["name"] for f in a.json["inputs"]), ["cover.png", "source.mp3"])

    async def test_a_runner_cannot_have_a_page_served(self):
        """A result named .html is stored under its role's extension, and every file goes
        out with nosniff: no runner makes the daemon serve a page (with CORS *)."""
        token = await self.serving()
        song = self.generated("song.flac", "-f", "lavfi", "-i", "sine=d=1")
        with open(song, "rb") as f:
            view = (await self.upload(f.read(), "song.flac", token)).json
        merge = next(j for j in await self.store.media_jobs(view["id"])
                     if j.type == JobType.VOD_AUDIO_MERGE)
        runner = await self.register()
        wire = await self.accept(runner, merge)
        page = b"<html><script>alert(document.cookie)</script></html>"
        await self.succeed(runner, wire, [("payload[videoFile]", "720p.html", page)])
        names = [f.name for f in await self.store.media_files(view["id"], "output")]
        self.assertEqual(names, ["720p.mp4"])
        got = await self.http("GET", f"{M}/{view['id']}/files/720p.mp4", headers=bearer(token))
        self.assertEqual((got.body, got.content_type), (page, "video/mp4"))
        self.assertEqual(got.headers.getRawHeaders(b"x-content-type-options"), [b"nosniff"])
        missing = await self.http("GET", f"{M}/{view['id']}/files/720p.html",
                                  headers=bearer(token))
        self.assertEqual(missing.code, 404)

    async def test_many_ranges_get_the_file_once_not_many_copies(self):
        token = await self.serving()
        song = self.generated("song.flac", "-f", "lavfi", "-i", "sine=d=2")
        with open(song, "rb") as f:
            data = f.read()
        view = (await self.upload(data, "song.flac", token)).json
        url = f"{M}/{view['id']}/files/source.flac"
        got = await self.http("GET", url, headers={"Range": "bytes=" + ",".join(["0-"] * 100),
                                                   **bearer(token)})
        self.assertEqual((got.code, got.body), (200, data))
        got = await self.http("GET", url, headers={"Range": "bytes=0-9,20-29", **bearer(token)})
        self.assertEqual(got.code, 206)  # a few ranges are served as asked
        self.assertIn(data[20:30], got.body)
        self.assertLess(len(got.body), 1000)

    async def test_upload_refusals(self):
        token = await self.serving(max_upload_bytes=200_000)
        a = await self.upload(b"x", "a.mp4", "choir-wrong")
        self.assertEqual((a.code, a.json["code"]), (401, "unauthorized"))
        body, ctype = multipart([], [("file", "a.mp4", b"x")])
        a = await self.http("POST", M, raw=body, content_type=ctype)
        self.assertEqual(a.code, 401)
        a = await self.upload(b"this is not a video at all" * 100, "notes.mp4", token)
        self.assertEqual((a.code, a.json["code"]), (400, "not_media"))
        self.assertIn("not a media file", a.json["detail"])
        a = await self.upload(os.urandom(300_000), "big.mp4", token)
        self.assertEqual((a.code, a.json["code"]), (413, "payload_too_large"))
        a = await self.http("POST", M, {"file": "x"},
                            headers={"Authorization": f"Bearer {token}"})
        self.assertEqual((a.code, a.json["code"]), (400, "bad_request"))
        a = await self.upload(b"", "a.mp4", token, webhook="ftp://x")
        self.assertEqual((a.code, a.json["code"]), (400, "bad_request"))
        self.assertIn("webhook", a.json["detail"])
        self.assertEqual(self.leftovers(), [])
        self.assertEqual(await self.store.list_media(), [])
        a = await self.http("GET", M)
        self.assertEqual(a.code, 401)
        a = await self.http("GET", f"{M}/nope")
        self.assertEqual((a.code, a.json["code"]), (401, "unauthorized"))
        a = await self.http("GET", f"{M}/nope", headers=bearer(token))
        self.assertEqual((a.code, a.json["code"]), (404, "unknown_media"))

    async def test_a_failed_webhook_is_recorded(self):
        token = await self.serving(webhook_code=500)
        song = self.generated("song.flac", "-f", "lavfi", "-i", "sine=d=2")
        with open(song, "rb") as f:
            view = (await self.upload(f.read(), "song.flac", token)).json
        for job in await self.store.media_jobs(view["id"]):  # an operator cancels it all
            if job.parent_uuid is None:
                await self.store.save(J.cancel(job, 1.0, await self.store.children(job.uuid)))
        await until(lambda: len(self.sink.bodies) == 3, what="three attempts")
        media = await until_value(lambda: self.store.get_media(view["id"]),
                                  lambda m: m.webhook_error is not None)
        self.assertEqual(media.webhook_error, "HTTP 500")
        self.assertIsNone(media.webhook_sent_at)
        self.assertEqual(self.sink.bodies[0]["media"]["state"], "failed")


def test_cover_text_fits_the_picture():
    from choir_twisted.publishing.covers import WIDTH, _fitting
    assert _fitting("Choir rehearsal", 96) == 96  # short titles at full size
    for length in (40, 80, 200):
        size = _fitting("x" * length, 96)
        assert 24 <= size < 96 and (size == 24 or 0.6 * size * length <= WIDTH)


@pytest.mark.parametrize("size, resolution, expected", [
    ("1920x1080", 720, (1280, 720)), ("1000x500", 480, (960, 480)),
    ("500x1000", 360, (360, 720)), ("333x333", 240, (240, 240))])
def test_the_audio_merge_picture_is_fitted_to_the_resolution(tmp_path, size, resolution,
                                                            expected):
    cover = str(tmp_path / "c.png")
    ffmpeg("-f", "lavfi", "-i", f"color=c=red:s={size}", "-frames:v", "1", cover)
    out = fit_cover(cover, str(tmp_path / "p.png"), resolution)
    picture = ffmpeg_probe(out)["streams"][0]
    assert (picture["width"], picture["height"]) == expected


class PublishRetryTest(unittest.TestCase):
    """A recording that fails to publish (a locked database) is tried again, with backoff,
    until it is published; not marked done at the first failure."""

    async def test_a_failed_publish_is_retried_until_it_is_published(self):
        from twisted.internet.task import Clock

        from choir_twisted.publishing.publisher import PUBLISH_RETRY_FIRST, Publisher
        from choir_twisted.runners.notifications import NotificationHub
        from choir_twisted.store.store import Store
        data = temp_dir(self)
        sessions = os.path.join(data, "sessions")
        session = make_session(sessions)
        store = await Store.open(data_dir=data)
        self.addCleanup(store.close)
        clock = Clock()
        hub = NotificationHub(clock, lambda token: None)
        publisher = Publisher(store, hub, data, clock, sessions_dir=sessions)
        real, failures = store.publish_media, []

        def locked(*args, **kw):
            if len(failures) < 2:
                failures.append(1)
                return defer.fail(sqlite3.OperationalError("database is locked"))
            return real(*args, **kw)
        store.publish_media = locked

        self.assertIsNone(await publisher.session_recorded(session))  # fails: tried later
        self.assertEqual(await publisher.scan_sessions(), [])  # not yet: backing off
        self.assertEqual(len(failures), 1)
        clock.advance(PUBLISH_RETRY_FIRST)  # tried again, fails again
        await until(lambda: len(failures) == 2 and clock.getDelayedCalls(), what="2nd try")
        clock.advance(PUBLISH_RETRY_FIRST)  # the delay doubled: not yet
        self.assertEqual(len(failures), 2)
        clock.advance(PUBLISH_RETRY_FIRST)  # tried a third time: published
        (media,) = await until_value(store.list_media, bool)
        self.assertEqual(media.kind, "recording")
        self.assertEqual(len(await store.media_jobs(media.id)), 4)
        self.assertIsNone(await publisher.session_recorded(session))  # published once
        self.assertEqual(await publisher.scan_sessions(), [])


class BareReceiver(protocol.Protocol):
    """A webhook receiver as some are: it answers 200 with a body but no Content-Length,
    then hangs up (a close-delimited body, which readBody calls a PartialDownloadError)."""

    def connectionMade(self):
        self.buffer = b""

    def dataReceived(self, data):
        self.buffer += data
        head, sep, body = self.buffer.partition(b"\r\n\r\n")
        if not sep:
            return
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
        if len(body) >= length:
            self.factory.requests.append((head, body[:length]))
            self.transport.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nthanks")
            self.transport.loseConnection()


class WebhookDeliveryTest(PublishingCase):
    async def test_a_2xx_without_a_length_is_a_delivery_and_the_body_is_signed(self):
        factory = protocol.Factory.forProtocol(BareReceiver)
        factory.requests = []
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        await self.start(webhook=f"http://127.0.0.1:{port.getHost().port}/hook",
                         webhook_secret="s3cret")
        make_session(self.sessions)
        await self.run_service()
        media = await until_media(self.store)
        for job in await self.store.media_jobs(media.id):  # an operator cancels it all
            if job.parent_uuid is None:
                await self.store.save(J.cancel(job, 1.0, await self.store.children(job.uuid)))
        media = await until_value(lambda: self.store.get_media(media.id),
                                  lambda m: m.webhook_sent_at or m.webhook_error)
        self.assertEqual((media.webhook_error, len(factory.requests)), (None, 1))
        head, body = factory.requests[0]
        signature = re.search(rb"(?i)x-choir-signature: *(\S+)", head).group(1)
        self.assertEqual(signature, b"sha256=" + hmac.new(b"s3cret", body,
                                                          hashlib.sha256).hexdigest().encode())
        self.assertEqual(json.loads(body)["media"]["id"], media.id)


def test_a_session_is_named_with_its_id():
    """Two sessions of one minute have two names; the cover keeps its title short (the id
    goes under it)."""
    from choir_protocol.rehearsal.session_summary import SessionSummary
    from choir_twisted.publishing.publisher import _session_subtitle, _session_title
    summary = SessionSummary.from_json({
        "id": "20261203-143012-1", "started": "2026-12-03T14:30:12+00:00",
        "mix_chunks": 861, "singers": [{"name": "ann"}, {"name": "bob"}]})
    when = datetime.datetime.fromisoformat(summary.started).astimezone().strftime(
        "%d %B %Y, %H:%M")
    assert _session_title(summary, "Choir rehearsal") == (
        f"Choir rehearsal, {when} (session 20261203-143012-1)")
    assert _session_title(summary, "Choir rehearsal", with_id=False) == f"Choir rehearsal, {when}"
    assert _session_subtitle(summary) == "2 singers · 0:10 · session 20261203-143012-1"
    assert _session_title(SessionSummary(id="20261203-143012-2"), "Choir rehearsal") == (
        "Choir rehearsal, session 20261203-143012-2")
