"""The real ``choir-admin`` program (subprocesses) and what it prints for others to run:
the daemon's real address in the printed commands (its --url, the daemon's http-url file,
else a guess said to be one), both runners' register lines, --version, the usage lines;
and a real ``twistd choir`` running the printed curl, whose refusal of a non-media file
names no path of the server's."""
import json
import os
import shlex
import socket
import subprocess

from twisted.trial import unittest

from choir_clients.version import program_version
from choir_twisted.publishing.http_url import HTTP_URL_NAME, read_http_url, write_http_url

from ...support.daemon_process import TwistdDaemon
from ...support.media_files import make_video
from ...support.paths import temp_dir
from ...support.programs import choir_admin, indented_commands, wait_for_file

HOST = socket.gethostname()


class PrintedCommandsTest(unittest.TestCase):
    timeout = 120

    def setUp(self):
        self.tmp = temp_dir(self)
        self.data = os.path.join(self.tmp, "data")
        os.makedirs(self.data)

    def test_a_running_daemons_address_is_in_every_printed_command_and_they_work(self):
        daemon = TwistdDaemon(self.data, os.path.join(self.tmp, "choir.log"))
        self.addCleanup(daemon.stop)
        wait_for_file(os.path.join(self.data, HTTP_URL_NAME), daemon.process)
        url = f"http://127.0.0.1:{daemon.ports['http']}"
        self.assertEqual(read_http_url(self.data), url)  # the interface it listens on

        # api-tokens create: the curl line names the daemon, and works as printed
        code, out, err = choir_admin("-d", self.data, "api-tokens", "create", "--name", "site")
        self.assertEqual((code, err), (0, ""))
        token = out.split("API token: ")[1].split()[0]
        curl = indented_commands(out)["curl"]
        self.assertEqual(curl, f"curl -H 'Authorization: Bearer {token}' -F file=@video.mp4 "
                               f"{url}/api/v1/media")
        self.assertNotIn("guess", out)
        make_video(os.path.join(self.tmp, "video.mp4"), seconds=1, size="320x240")
        done = subprocess.run([*shlex.split(curl), "-s"], cwd=self.tmp, capture_output=True,
                              text=True, timeout=60)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(json.loads(done.stdout)["name"], "video")

        # what is not media is refused with what the file is, and no path of the server's
        with open(os.path.join(self.tmp, "notes.mp4"), "w") as f:
            f.write("not a video at all\n" * 50)
        refused = subprocess.run([*shlex.split(curl.replace("@video.mp4", "@notes.mp4")),
                                  "-s"], cwd=self.tmp, capture_output=True, text=True,
                                 timeout=60)
        problem = json.loads(refused.stdout)
        self.assertEqual((problem["status"], problem["code"]), (400, "not_media"))
        self.assertEqual(problem["detail"], "the upload is not a media file (ffprobe: Invalid "
                                            "data found when processing input)")
        self.assertNotIn(self.tmp, refused.stdout)

        # tokens create: both runners' register lines, with the same options
        code, out, err = choir_admin("-d", self.data, "tokens", "create", "--runner-name", "gpu")
        self.assertEqual((code, err), (0, ""))
        token = out.split("Registration token: ")[1].split()[0]
        lines = indented_commands(out)
        options = f"register --url {url} --registration-token {token} --runner-name gpu"
        self.assertEqual(lines, {"choir-runner": f"choir-runner {options}",
                                 "peertube-runner": f"peertube-runner {options}"})
        self.assertIn("'peertube-runner server' must be running first", out)

        # operator-tokens create names the daemon for choir-admin --url; over HTTP, the
        # URL choir-admin was given is the one the runners are told
        code, out, err = choir_admin("-d", self.data, "operator-tokens", "create")
        self.assertEqual((code, err), (0, ""))
        operator = out.splitlines()[-1]
        self.assertIn(f"\n    choir-admin --url {url} --token <the token below> jobs list\n",
                      out)
        there = f"http://localhost:{daemon.ports['http']}"
        code, out, err = choir_admin("--url", there, "--token", operator, "--json", "tokens",
                               "create", "--runner-name", "far")
        self.assertEqual((code, err), (0, ""))
        made = json.loads(out)
        self.assertEqual((made["url"], made["urlGuessed"]), (there, False))
        self.assertEqual(made["registerCommands"]["peertube-runner"],
                         f"peertube-runner register --url {there} --registration-token "
                         f"{made['token']} --runner-name far")

    def test_without_the_daemons_address_the_host_name_is_a_guess_said_so(self):
        code, out, err = choir_admin("-d", self.data, "tokens", "create", "--runner-name", "a")
        self.assertEqual((code, err), (0, ""))
        token = out.split("Registration token: ")[1].split()[0]
        self.assertEqual(indented_commands(out)["choir-runner"],
                         f"choir-runner register --url http://{HOST}:8000 "
                         f"--registration-token {token} --runner-name a")
        self.assertIn(f"(http://{HOST}:8000 is a guess, this host's name and the default port: "
                      f"the daemon has not written {self.data}/{HTTP_URL_NAME} yet. Pass --url "
                      f"URL to name the address it is reached at.)", out)
        code, out, _ = choir_admin("-d", self.data, "--json", "api-tokens", "create")
        made = json.loads(out)
        self.assertEqual((made["url"], made["urlGuessed"]), (f"http://{HOST}:8000", True))

        # the address the daemon left (its --public-url, say) wins over the guess...
        write_http_url(self.data, "https://choir.example.org/choir/")
        code, out, _ = choir_admin("-d", self.data, "api-tokens", "create")
        self.assertTrue(indented_commands(out)["curl"].endswith(
            " https://choir.example.org/choir/api/v1/media"))
        self.assertNotIn("guess", out)
        # ...and the command's own --url over both
        code, out, _ = choir_admin("-d", self.data, "--json", "tokens", "create", "--url",
                             "http://10.0.0.5:8000")
        self.assertTrue(json.loads(out)["registerCommand"].startswith(
            "choir-runner register --url http://10.0.0.5:8000 --registration-token "))
        code, out, _ = choir_admin("-d", self.data, "--json", "operator-tokens", "create")
        self.assertEqual(json.loads(out)["url"], "https://choir.example.org/choir")


class VersionAndUsageTest(unittest.TestCase):
    timeout = 60

    def test_version_is_choir_admins_own(self):
        for args in (["--version"], ["media", "submit", "--version"]):
            code, out, err = choir_admin(*args)
            self.assertEqual((code, out, err), (0, program_version("choir-admin") + "\n", ""),
                             args)
        self.assertNotIn("Twisted", out)

    def test_each_argument_is_named_once_in_the_usage_line(self):
        code, out, _ = choir_admin("media", "submit", "--help")
        self.assertEqual(code, 0)
        self.assertTrue(out.splitlines()[0].endswith(
            " media submit [--name NAME] [--webhook URL] [--resolutions LIST] FILE"), out)
        code, out, _ = choir_admin("media", "studio", "--help")
        self.assertTrue(out.splitlines()[0].endswith(" [--watermark FILE] ID"), out)
        code, out, _ = choir_admin("jobs", "show", "--help")
        self.assertTrue(out.splitlines()[0].endswith(" jobs show [options] UUID"), out)
        code, out, err = choir_admin("-d", "/nonexistent/choir", "media", "submit")
        self.assertEqual((code, out), (2, ""))
        self.assertEqual(err, "choir-admin: error: missing FILE\n"
                              "(see 'choir-admin media submit --help')\n")


class NotMediaReasonTest(unittest.TestCase):
    """``not_media_reason``: ffprobe's line names the file it read; the reason does not."""

    def test_the_path_as_given_and_absolute_are_taken_out(self):
        from choir_protocol.runners.publishing import NotMedia
        from choir_twisted.publishing.media_errors import not_media_reason
        relative = os.path.join("choir-data", "uploads", ".partial-a1b2.mp4")
        for named in (relative, os.path.abspath(relative)):
            error = NotMedia(f"not a media file ({named}: Invalid data found when processing "
                             f"input)")
            self.assertEqual(not_media_reason(error, relative, what="the upload"),
                             "the upload is not a media file (ffprobe: Invalid data found "
                             "when processing input)")
        studio = NotMedia(f"add-intro: a video clip is needed, and not a media file "
                          f"({relative}: moov atom not found)")
        self.assertEqual(not_media_reason(studio, relative),
                         "add-intro: a video clip is needed, and not a media file (moov atom "
                         "not found)")
        self.assertEqual(not_media_reason(NotMedia("the file has no audio or video stream"),
                                          relative), "the file has no audio or video stream")
