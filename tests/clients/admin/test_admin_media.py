"""choir-admin media submit and api-tokens, on a real store, with real ffmpeg; and a running
daemon telling its runners of the submitted jobs."""
import json
import os
import time

from twisted.internet import reactor, threads
from twisted.trial import unittest

from choir_protocol.runners.jobs import JobState, JobType
from choir_twisted.runners.service import RunnerService

from ...support.media_files import make_video
from ...support.paths import temp_dir
from ...support.programs import choir_admin
from ...support.runner_api import post_runner_api
from ...support.socketio_runner import connect_socket


class AdminMediaTest(unittest.TestCase):
    timeout = 120

    def setUp(self):
        self.dir = temp_dir(self)

    def cli(self, *args):
        return choir_admin("--data-dir", self.dir, *args)

    def test_api_tokens_round_trip(self):
        code, out, err = self.cli("--json", "api-tokens", "create", "--name", "website")
        self.assertEqual((code, err), (0, ""))
        token = json.loads(out)["token"]
        self.assertTrue(token.startswith("choir-"))
        code, out, _ = self.cli("--json", "api-tokens", "list")
        self.assertEqual([(t["prefix"], t["name"]) for t in json.loads(out)],
                         [(token[:14], "website")])  # the token itself was shown once
        self.assertEqual(self.cli("api-tokens", "revoke", token)[0], 0)
        self.assertEqual(json.loads(self.cli("--json", "api-tokens", "list")[1]), [])
        code, _, err = self.cli("api-tokens", "revoke", token)
        self.assertEqual(code, 1)
        self.assertIn("already revoked", err)

    def test_submit_a_video_and_refuse_what_is_not_media(self):
        video = os.path.join(self.dir, "concert.mp4")
        make_video(video, size="1280x720")
        code, out, err = self.cli("--json", "media", "submit", "--resolutions", "360,720,1080",
                                  video)
        self.assertEqual((code, err), (0, ""))
        made = json.loads(out)
        self.assertEqual(made["name"], "concert")
        self.assertEqual(sorted((j["type"], j["resolution"], j["state"]) for j in made["jobs"]),
                         sorted([(JobType.VOD_WEB_VIDEO, 720, "Pending"),
                                 (JobType.VOD_HLS, 720, "Waiting for parent job to finish"),
                                 (JobType.VOD_HLS, 360, "Waiting for parent job to finish"),
                                 (JobType.VOD_WEB_VIDEO, 360,
                                  "Waiting for parent job to finish")]))
        self.assertTrue(os.path.isfile(video))  # copied, not moved
        code, out, _ = self.cli("--json", "media", "show", made["id"][:8])
        shown = json.loads(out)
        self.assertEqual((shown["state"], shown["endedAt"], shown["probe"]["width"]),
                         ("processing", None, 1280))
        stored = os.path.join(self.dir, "media", made["id"], "source.mp4")
        self.assertEqual(os.path.getsize(stored), os.path.getsize(video))

        junk = os.path.join(self.dir, "notes.mp4")
        with open(junk, "w") as f:
            f.write("not a video")
        code, out, err = self.cli("media", "submit", junk)
        self.assertEqual(code, 1)
        self.assertIn("not a media file", err)
        self.assertEqual(os.listdir(os.path.join(self.dir, "media")), [made["id"]])
        code, _, err = self.cli("media", "submit", os.path.join(self.dir, "missing.mp4"))
        self.assertEqual(code, 1)
        self.assertIn("no such file", err)
        code, _, err = self.cli("media", "submit", "--webhook", "gopher://x", video)
        self.assertEqual(code, 2)

    async def test_the_daemon_tells_its_runners_of_a_submitted_media(self):
        service = RunnerService(reactor, "tcp:0:interface=127.0.0.1", self.dir)
        await service.startService()
        self.addCleanup(service.stopService)
        port = service.port.getHost().port
        reg = await service.store.create_registration_token()
        _, answer = await post_runner_api(port, "register", {"registrationToken": reg.token,
                                                             "name": "r"})
        token = answer["runnerToken"]
        socket = await connect_socket(port, token, self)

        video = os.path.join(self.dir, "clip.mp4")
        make_video(video)
        code, out, err = await threads.deferToThread(self.cli, "--json", "media", "submit", video)
        done = time.monotonic()
        self.assertEqual((code, err), (0, ""))
        heard_at, frame = await socket.arrivals.get()
        self.assertEqual(frame, '42/runners,["available-jobs"]')
        self.assertLess(heard_at - done, 2.0)
        _, body = await post_runner_api(port, "jobs/request", {"runnerToken": token})
        self.assertEqual([j["uuid"] for j in body["availableJobs"]],
                         [j["uuid"] for j in json.loads(out)["jobs"]
                          if j["state"] == JobState.PENDING.label])
