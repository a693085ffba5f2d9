"""choir's programs as their users run them: the installed console scripts (else their
modules), and what the tests read in what they print or write."""
import os
import subprocess
import sys
import time

from .daemon_process import VENV_BIN


def command(script: str, module: str) -> list[str]:
    """The installed console script when there is one (pip install -e .), else the module."""
    path = os.path.join(VENV_BIN, script)
    return [path] if os.path.exists(path) else [sys.executable, "-m", module]


ADMIN_COMMAND = command("choir-admin", "choir_clients.admin.admin")
RUNNER_COMMAND = command("choir-runner", "choir_clients.runner.runner")


def choir_admin(*args, cwd=None):
    """-> (exit status, stdout, stderr) of choir-admin run with ``args``."""
    p = subprocess.run([*ADMIN_COMMAND, *args], capture_output=True, text=True, timeout=60,
                       cwd=cwd)
    return p.returncode, p.stdout, p.stderr


def indented_commands(out: str) -> dict:
    """The commands a text shows indented on their own lines, by program name."""
    return {line.split()[0]: line.strip() for line in out.splitlines()
            if line.startswith("    ")}


def wait_for_file(path, process, deadline=20.0):
    """Until the daemon has written ``path`` (it does once its HTTP port listens)."""
    end = time.monotonic() + deadline
    while not os.path.exists(path):
        if process.poll() is not None or time.monotonic() > end:
            raise AssertionError(f"the daemon wrote no {path}")
        time.sleep(0.05)
