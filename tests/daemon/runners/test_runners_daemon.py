"""The runner side of `twistd choir`: registration over HTTP, socket.io, and jobs made
pending by another process reaching connected runners within 2 s (the real runner
never polls)."""
import json
import os
import subprocess
import sys
import time

from twisted.internet import reactor
from twisted.trial import unittest

from choir_twisted.runners.service import RunnerService
from choir_twisted.store.store import Store

from ...support.daemon_process import TwistdDaemon, until
from ...support.paths import temp_dir
from ...support.programs import choir_admin
from ...support.runner_api import post_runner_api
from ...support.socketio_runner import connect_socket


class RunnerDaemonTest(unittest.TestCase):
    timeout = 60

    def setUp(self):
        self.data_dir = temp_dir(self)

    async def test_register_connect_and_hear_of_a_job_made_elsewhere(self):
        daemon = TwistdDaemon(self.data_dir, os.path.join(self.data_dir, "choir.log"))
        self.addCleanup(daemon.stop)
        http = daemon.ports["http"]
        code, out, err = choir_admin("--data-dir", self.data_dir, "--json", "tokens", "create")
        self.assertEqual(code, 0, err)
        token = json.loads(out)["token"]

        code, body = await post_runner_api(http, "register", {"registrationToken": token,
                                                              "name": "runner-1"})
        self.assertEqual(code, 200, body)
        runner_token = body["runnerToken"]
        code, body = await post_runner_api(http, "jobs/request", {"runnerToken": "ptrt-nobody"})
        self.assertEqual((code, body["code"]), (404, "unknown_runner_token"))

        socket = await connect_socket(http, runner_token, self)

        # another process (here: this one) makes a job pending in the daemon's store
        store = await Store.open(data_dir=self.data_dir)
        self.addCleanup(store.close)
        made = time.monotonic()
        await store.create_job("vod-web-video-transcoding",
                               {"input": {"videoFileUrl": "x", "separatedAudioFileUrl": []},
                                "output": {"resolution": 480, "fps": 30}})
        heard_at, frame = await socket.arrivals.get()
        self.assertEqual(frame, '42/runners,["available-jobs"]')
        self.assertLess(heard_at - made, 2.0)
        code, body = await post_runner_api(http, "jobs/request", {"runnerToken": runner_token})
        self.assertEqual(code, 200)
        self.assertEqual([j["type"] for j in body["availableJobs"]], ["vod-web-video-transcoding"])


class HttpPortInUseTest(unittest.TestCase):
    timeout = 60

    def test_a_daemon_that_cannot_listen_for_runners_says_so_and_exits(self):
        data_dir = temp_dir(self)
        import socket as sockets
        taken = sockets.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        p = subprocess.run([os.path.join(os.path.dirname(sys.executable), "twistd"), "-n",
                            "--pidfile=", "choir", "-d", data_dir, "--singers", "tcp:0",
                            "--director", "tcp:0", "--desk", "tcp:0",
                            f"--http=tcp:{port}:interface=127.0.0.1"],
                           capture_output=True, text=True, timeout=30, cwd=data_dir)
        self.assertEqual(p.returncode, 1, p.stdout)
        # one line naming the option and the cause (issue 11, item 3), no traceback
        self.assertIn(f"--http tcp:{port}:interface=127.0.0.1: port {port} on 127.0.0.1 is in "
                      f"use", p.stdout + p.stderr)
        self.assertNotIn("Traceback", p.stdout + p.stderr)


class AnnouncedOnceTest(unittest.TestCase):
    timeout = 30

    async def test_what_the_daemon_makes_pending_is_announced_once_and_others_changes_too(self):
        from choir_protocol.runners import jobs as J
        from choir_twisted.runners.service import RunnerService
        data_dir = temp_dir(self)
        service = RunnerService(reactor, "tcp:0:interface=127.0.0.1", data_dir)
        await service.startService()
        self.addCleanup(service.stopService)
        hub, port = service.hub, service.port.getHost().port
        reg = await service.store.create_registration_token()
        _, body = await post_runner_api(port, "register", {"registrationToken": reg.token,
                                                           "name": "r"})
        token = body["runnerToken"]
        job = (await service.store.create_job(
            "vod-hls-transcoding", J.hls_payload("", "x", "x", 480, 30))).job

        async def feed_caught_up():
            last = await service.store.last_event()
            await until(lambda: service._seq >= last, what="the change feed")
        await feed_caught_up()
        _, accepted = await post_runner_api(port, f"jobs/{job.uuid}/accept",
                                            {"runnerToken": token})
        sent = hub.notifications_sent
        code, _ = await post_runner_api(port, f"jobs/{job.uuid}/abort",
                                        {"runnerToken": token, "reason": "r",
                                         "jobToken": accepted["job"]["jobToken"]})
        self.assertEqual(code, 204)
        self.assertEqual(hub.notifications_sent, sent + 1)  # at once, by the API
        await feed_caught_up()
        self.assertEqual((hub.notifications_sent, hub._pending), (sent + 1, None))  # not again

        other = await Store.open(data_dir=data_dir)  # another process, as choir-admin
        self.addCleanup(other.close)
        await other.create_job("vod-hls-transcoding", J.hls_payload("", "y", "y", 480, 30))
        await until(lambda: hub.notifications_sent == sent + 2 or hub._pending is not None,
                    what="the other process's job announced")


class RemovedRunnerTest(unittest.TestCase):
    """A runner unregistered, or removed by an operator (here: on the store, as choir-admin
    does from another process), loses its socket.io connection: no more available-jobs."""

    timeout = 30

    async def test_a_removed_runner_hears_of_no_more_jobs(self):
        data_dir = temp_dir(self)
        service = RunnerService(reactor, "tcp:0:interface=127.0.0.1", data_dir,
                                watchdog_interval=0.05)
        await service.startService()
        self.addCleanup(service.stopService)
        http = service.port.getHost().port
        reg = await service.store.create_registration_token()
        tokens = {}
        for name in ("leaves", "removed", "stays"):
            code, body = await post_runner_api(http, "register",
                                               {"registrationToken": reg.token, "name": name})
            tokens[name] = body["runnerToken"]
        sockets = {name: await connect_socket(http, token, self) for name, token in tokens.items()}

        code, _ = await post_runner_api(http, "unregister", {"runnerToken": tokens["leaves"]})
        self.assertEqual(code, 204)
        await sockets["leaves"].closed
        self.assertEqual(sockets["leaves"].frames[-1], "41/runners,")
        removed = await service.store.runner_by_token(tokens["removed"])
        await service.store.unregister_runner(removed.id)
        await sockets["removed"].closed  # the watchdog's next pass

        service.hub.notify_available_jobs()
        _, frame = await sockets["stays"].arrivals.get()
        self.assertEqual(frame, '42/runners,["available-jobs"]')
        self.assertEqual(len(service.hub.sockets), 1)
        for name in ("leaves", "removed"):
            self.assertEqual(sockets[name].available_jobs(), 0)
