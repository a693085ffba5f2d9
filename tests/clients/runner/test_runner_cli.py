"""The real ``choir-runner`` program against a real ``twistd choir``: a wrong --url is called
a wrong URL (not a wrong token); ``server`` serves a registration made while it runs, goes
on when an admin removes one of its runners, and says so and exits 1 when the last is gone
(removed, or unregistered). The register lines are the ones ``choir-admin tokens create``
prints, run as printed."""
import os
import subprocess
import sys
import time
import uuid as uuidlib

from twisted.internet import reactor, threads
from twisted.trial import unittest
from twisted.web import resource, server

from choir_clients.version import program_version
from choir_protocol.runners import jobs as J
from choir_protocol.runners.jobs import JobState, JobType
from choir_twisted.store.store import Store

from ...support.daemon_process import TwistdDaemon, free_port, until, wait_for_port
from ...support.media_files import make_video
from ...support.paths import temp_dir
from ...support.programs import RUNNER_COMMAND, choir_admin, indented_commands, wait_for_file


def error_line(log: str) -> str:
    """The line choir-runner's exit status goes with: its only unstamped one (the log's
    lines start with their time)."""
    (line,) = [ln for ln in log.splitlines() if ln.startswith("choir-runner: ")]
    return line


class RunnerCLI(unittest.TestCase):
    timeout = 90

    def setUp(self):
        self.tmp = temp_dir(self)
        self.data = os.path.join(self.tmp, "data")
        os.makedirs(self.data)
        self.env = {**os.environ, "CHOIR_CONFIG_DIR": os.path.join(self.tmp, "config")}

    def runner(self, *args):
        p = subprocess.run([*RUNNER_COMMAND, *args], env=self.env, capture_output=True, text=True,
                           timeout=60)
        return p.returncode, p.stdout, p.stderr

    def start_daemon(self):
        daemon = TwistdDaemon(self.data, os.path.join(self.tmp, "choir.log"))
        self.addCleanup(daemon.stop)
        wait_for_file(os.path.join(self.data, "http-url"), daemon.process)
        return daemon, f"http://127.0.0.1:{daemon.ports['http']}"

    def register_as_printed(self, name, url):
        """``choir-admin tokens create``'s choir-runner line, run as printed."""
        code, out, err = choir_admin("-d", self.data, "tokens", "create", "--runner-name", name)
        self.assertEqual((code, err), (0, ""))
        line = indented_commands(out)["choir-runner"].split()
        self.assertEqual(line[:4], ["choir-runner", "register", "--url", url])
        code, out, err = self.runner(*line[1:])
        self.assertEqual((code, out, err), (0, f"Registered with {url} as {name!r}.\n", ""))

    def start_server(self):
        log_path = os.path.join(self.tmp, "runner.log")
        with open(log_path, "wb") as log:
            process = subprocess.Popen([*RUNNER_COMMAND, "server", "--concurrency", "1",
                                        "--work-dir", os.path.join(self.tmp, "work")],
                                       env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.addCleanup(lambda: process.poll() is None and process.kill())

        def log_text():
            with open(log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        return process, log_text

    async def until_logged(self, log_text, words, count=1, deadline=30.0):
        await until(lambda: log_text().count(words) >= count, deadline,
                    f"the runner to log {words!r} ({count}x):\n{log_text()}")

    def test_version_is_choir_runners_own(self):
        for args in (["--version"], ["register", "--version"]):
            self.assertEqual(self.runner(*args), (0, program_version("choir-runner") + "\n",
                                                  ""))

    # -- register --------------------------------------------------------------------------

    async def test_a_wrong_url_is_not_called_a_wrong_token(self):
        _, url = self.start_daemon()
        code, out, _ = choir_admin("-d", self.data, "--json", "tokens", "create")
        token = out.split('"token": "')[1].split('"')[0]
        wrong = f"{url}/wrong-path"
        code, out, err = self.runner("register", "--url", wrong, "--registration-token", token,
                                     "--runner-name", "r")
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(err, f"choir-runner: no runner API at {wrong} (HTTP 404): check --url "
                              f"(it is the server's base URL, e.g. {url})\n")
        code, _, err = self.runner("register", "--url", url, "--registration-token",
                                   "ptrrt-nobody", "--runner-name", "r")
        self.assertEqual((code, err), (1, f"choir-runner: {url} does not know this "
                                          f"registration token\n"))
        self.assertEqual(self.runner("list-registered")[1],
                         "Not registered with any server (choir-runner register ...).\n")

    async def test_a_web_server_that_is_no_runner_api_is_said_to_be_none(self):
        class Anything(resource.Resource):
            isLeaf = True

            def render(self, request):  # 200 and a web page, whatever is asked
                return b"<html><body>Welcome</body></html>"
        port = reactor.listenTCP(0, server.Site(Anything()), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        url = f"http://127.0.0.1:{port.getHost().port}"
        # (the web server runs on this reactor: waiting for the runner must not block it)
        code, _, err = await threads.deferToThread(
            self.runner, "register", "--url", url, "--registration-token", "ptrrt-x",
            "--runner-name", "r")
        self.assertEqual((code, err), (1, f"choir-runner: no runner API at {url} (HTTP 200): "
                                          f"check --url (it is the server's base URL, e.g. "
                                          f"http://host:8000)\n"))

        # Python's own file server, which refuses POST (501)
        http_port = free_port()
        files = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
                                  str(http_port)], cwd=self.tmp, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        self.addCleanup(files.wait)
        self.addCleanup(files.terminate)
        wait_for_port(http_port, files)
        url = f"http://127.0.0.1:{http_port}/choir"
        code, _, err = self.runner("register", "--url", url, "--registration-token", "ptrrt-x",
                                   "--runner-name", "r")
        self.assertEqual((code, err), (1, f"choir-runner: no runner API at {url} (HTTP 501): "
                                          f"check --url (it is the server's base URL, e.g. "
                                          f"http://127.0.0.1:{http_port})\n"))

    # -- server ----------------------------------------------------------------------------

    async def test_the_server_follows_registrations_and_exits_when_none_is_left(self):
        _, url = self.start_daemon()
        self.register_as_printed("first", url)
        process, log_text = self.start_server()
        await self.until_logged(log_text, "connected, listening for jobs")

        # registered while it runs: served without a restart
        self.register_as_printed("second", url)
        await self.until_logged(log_text, f"{url}: new registration as 'second': connecting")
        await self.until_logged(log_text, "connected, listening for jobs", 2)

        # an operator removes the first runner (over HTTP: the daemon hangs up at once)
        code, out, _ = choir_admin("-d", self.data, "operator-tokens", "create")
        operator = out.splitlines()[-1]
        code, out, err = choir_admin("--url", url, "--token", operator, "runners", "remove",
                                     "first")
        self.assertEqual((code, err), (0, ""))
        await self.until_logged(log_text, f"{url} does not know runner 'first' any more "
                                          f"(its admin removed it): forgetting this "
                                          f"registration")
        self.assertIsNone(process.poll(), log_text())  # the second one goes on

        # ... and the second one does the work
        store = await Store.open(data_dir=self.data)
        self.addCleanup(store.close)
        source = os.path.join(self.tmp, "in.mp4")
        make_video(source, seconds=1, size="320x240")
        media = await store.create_media("upload", "clip", path=source)
        uuid = str(uuidlib.uuid4())
        await store.create_job(JobType.VOD_WEB_VIDEO,
                               J.web_video_payload("", uuid, media.id, 240, 25),
                               media_id=media.id, uuid=uuid)
        await self.until_logged(log_text, f"job {uuid} completed")
        (second,) = await store.list_runners()
        self.assertEqual(second.name, "second")
        job = await store.get_job(uuid)
        self.assertEqual((job.state, job.runner_id), (JobState.COMPLETED, second.id))

        # the last one removed (on the data directory: the daemon hangs up at its next
        # watchdog round): the server says so and exits 1
        code, _, err = choir_admin("-d", self.data, "runners", "remove", "second")
        self.assertEqual((code, err), (0, ""))
        await until(lambda: process.poll() is not None, 30, "the runner to exit")
        self.assertEqual(process.returncode, 1, log_text())
        self.assertEqual(error_line(log_text()),
                         f"choir-runner: no registration left: {url} removed this runner. "
                         f"Register it again (choir-runner register --url {url} ...), then "
                         f"start choir-runner server")
        self.assertEqual(self.runner("list-registered")[1],
                         "Not registered with any server (choir-runner register ...).\n")

    async def test_unregistering_the_last_one_while_serving_stops_the_server(self):
        _, url = self.start_daemon()
        self.register_as_printed("only", url)
        process, log_text = self.start_server()
        await self.until_logged(log_text, "connected, listening for jobs")
        started = time.monotonic()
        code, out, err = self.runner("unregister", "--url", url, "--runner-name", "only")
        self.assertEqual((code, err), (0, ""))
        await until(lambda: process.poll() is not None, 20, "the runner to exit")
        self.assertLess(time.monotonic() - started, 10)
        self.assertEqual(process.returncode, 1, log_text())
        self.assertIn(f"{url}: the registration is gone from the configuration: leaving this "
                      f"server", log_text())
        self.assertEqual(error_line(log_text()),
                         "choir-runner: no registration left in the configuration "
                         "(choir-runner unregister?)")
