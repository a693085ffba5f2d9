"""Bounded log rotation: ``twistd --logger=choir_twisted.logfile.observer`` (a real twistd)."""
import glob
import os
import socket
import time

from twisted.trial import unittest

from choir_protocol.rehearsal.header import Header
from choir_twisted import logfile

from ..support.daemon_process import TwistdDaemon
from ..support.paths import temp_dir

ROTATE_BYTES = 2000
ROTATED_FILES = 2
SINGERS = 60  # two lines each (joined, left): about 10 kB, five times what may be kept


class BoundedLogTest(unittest.TestCase):
    def setUp(self):
        self.tmp = temp_dir(self)
        self.log = os.path.join(self.tmp, "logs", "choir.log")
        os.makedirs(os.path.dirname(self.log))

    def test_twistd_keeps_at_most_the_configured_rotated_files(self):
        env = dict(os.environ, CHOIR_LOG_FILE=self.log, CHOIR_LOG_ROTATE_BYTES=str(ROTATE_BYTES),
                   CHOIR_LOG_ROTATED_FILES=str(ROTATED_FILES))
        daemon = TwistdDaemon(os.path.join(self.tmp, "data"), os.path.join(self.tmp, "unused.log"),
                              "--no-record", "--max-singers-per-address=0", env=env,
                              twistd_options=("--logger=choir_twisted.logfile.observer",))
        self.addCleanup(daemon.stop)
        for i in range(SINGERS):
            with socket.create_connection(("127.0.0.1", daemon.ports["singers"])) as s:
                s.sendall(Header(f"s{i:03d}", "Alto", "choir-test").to_bytes())
        last = f"'s{SINGERS - 1:03d}'"
        deadline = time.monotonic() + 15
        while not any(last in line and " left" in line
                      for name in glob.glob(self.log + "*") for line in self.lines(name)):
            self.assertLess(time.monotonic(), deadline, "the last singer's leaving was not logged")
            time.sleep(0.05)

        files = sorted(glob.glob(self.log + "*"))
        self.assertEqual(files, [self.log, self.log + ".1", self.log + ".2"])
        for name in files:
            self.assertLessEqual(os.path.getsize(name), ROTATE_BYTES + 300)  # + the last line
        kept = "".join(line for name in files for line in self.lines(name))
        self.assertNotIn("starting up", kept)  # the oldest lines went with the oldest files
        self.assertNotIn("'s000'", kept)
        self.assertIn(f"'s{SINGERS - 2:03d}'", kept)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "unused.log")))  # -l ignored

    @staticmethod
    def lines(name):
        try:
            with open(name) as f:
                return f.readlines()
        except FileNotFoundError:
            return []


class ObserverOptionsTest(unittest.TestCase):
    def test_bad_settings_stop_twistd_with_one_line(self):
        for name, value in (("CHOIR_LOG_ROTATED_FILES", "0"), ("CHOIR_LOG_ROTATE_BYTES", "10k")):
            self.patch(os, "environ", {"CHOIR_LOG_FILE": os.devnull, name: value})
            with self.assertRaises(SystemExit) as raised:
                logfile.observer()
            self.assertIn(f"${name} must be a whole number", str(raised.exception))

    def test_the_defaults_bound_the_log_to_110_MB(self):
        self.assertEqual((logfile.DEFAULT_ROTATE_BYTES, logfile.DEFAULT_ROTATED_FILES),
                         (10_000_000, 10))
        tmp = temp_dir(self)
        log = logfile.bounded_log_file(os.path.join(tmp, "x.log"), 1000, 3)
        self.addCleanup(log.close)
        self.assertEqual((log.rotateLength, log.maxRotatedFiles), (1000, 3))
