"""A full disk mid-session: the session ends as incomplete with what was written, the
director and the log are told, and the daemon still stops well within systemd's 20 s.

The disk is real: a 256 KiB tmpfs mounted on DATA_DIR/sessions in a mount namespace of
the daemon's own (``unshare``), so nothing is mocked and the machine's disks are safe.
"""
import json
import os
import shutil
import tempfile
import time

from twisted.internet import endpoints
from twisted.trial import unittest

from choir_protocol.rehearsal.constants import FRAMES_PER_CHUNK
from choir_protocol.rehearsal.header import Header

from ...support.audio_reference import broadband_track
from ...support.daemon_process import TwistdDaemon, until
from ...support.sessions import EIGHT_SINGERS, connect_singers
from ...support.simulated import SimulatedDirector

STOP_LIMIT = 20.0  # TimeoutStopSec of contrib/choir.service
# Mounts the small disk, runs twistd (passing SIGTERM on), then copies what is on the disk
# out beside it, since the mount goes with the namespace.
MOUNT = """mount -t tmpfs -o size=256k tmpfs "$0" || exit 1
"$@" & pid=$!
trap 'kill -TERM $pid' TERM
wait $pid; wait $pid; status=$?
mkdir "$0.after" && cp -a "$0/." "$0.after/"
exit $status"""


def unshare_available() -> str | None:
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    if os.system("unshare -rm true >/dev/null 2>&1") != 0:
        return "this kernel refuses unprivileged user and mount namespaces"
    return None


class FullDiskTest(unittest.TestCase):
    timeout = 90

    def setUp(self):
        missing = unshare_available()
        if missing:
            if os.environ.get("CI"):
                self.fail(missing)
            raise unittest.SkipTest(missing)
        self.data_dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.data_dir)

    async def test_full_disk_ends_the_session_incomplete_and_the_daemon_stops_in_time(self):
        sessions = os.path.join(self.data_dir, "sessions")
        os.makedirs(sessions)
        log_file = os.path.join(self.data_dir, "choir.log")
        daemon = TwistdDaemon(self.data_dir, log_file,
                              prefix=["unshare", "-rm", "sh", "-c", MOUNT, sessions])
        self.addCleanup(daemon.stop)
        await connect_singers(self, daemon, EIGHT_SINGERS[:2])
        await until(lambda: "(2 connected)" in open(log_file).read(), what="2 singers to join")
        track = broadband_track(20.0)  # noise: about 100 KiB a second of FLAC and journals
        director = SimulatedDirector(track, header=Header(client_version="choir-director test"))
        await endpoints.connectProtocol(daemon.endpoint("director"), director)
        await director.done

        # the director was told why, before the end of its track
        self.assertTrue(director.refused)
        self.assertIn("the recording stopped (No space left on device)", director.refusal)
        self.assertLess(len(director.mix), len(track) // FRAMES_PER_CHUNK)
        # the daemon logs the session's end once the director is gone: wait for the line
        await until(lambda: "ended (incomplete)" in open(log_file).read(), what="the end logged")
        self.assertIn("stopped: No space left on device", open(log_file).read())

        started = time.monotonic()
        daemon.stop()
        self.assertLess(time.monotonic() - started, STOP_LIMIT)
        self.assertNotIn("Traceback", open(log_file).read())
        self.assertIn("Server Shut Down", open(log_file).read())

        # what was written is kept, and session.json says what happened
        (session,) = os.listdir(sessions + ".after")
        directory = os.path.join(sessions + ".after", session)
        summary = json.load(open(os.path.join(directory, "session.json")))
        self.assertEqual(summary["state"], "incomplete")
        self.assertEqual(summary["recording_failed"], "No space left on device")
        self.assertEqual(summary["tracks"], "pending")  # converted at the next start
        self.assertGreater(os.path.getsize(os.path.join(directory, "mix.flac")), 50_000)
        journals = [n for n in os.listdir(directory) if n.endswith(".chunks")]
        self.assertEqual(len(journals), 2)

        # the next start, with room on the disk, finishes the tracks and keeps the state
        shutil.rmtree(sessions)
        os.rename(sessions + ".after", sessions)
        from choir_twisted.rehearsal.recovery import recover_all
        self.assertEqual(recover_all(self.data_dir), [session])
        summary = json.load(open(os.path.join(sessions, session, "session.json")))
        self.assertEqual((summary["state"], summary["tracks"]), ("incomplete", "ready"))
        self.assertEqual(len(summary["files"]), 3)
        self.assertGreater(summary["mix_chunks"], 100)
