"""choir-runner is deployed alone: it starts without PortAudio and takes nothing of the
rehearsal clients."""
import subprocess
import sys

from ...support.paths import ROOT

# a machine without PortAudio: sounddevice's import fails as it does there (OSError)
NO_PORTAUDIO = """
import sys
class NoPortAudio:
    def find_spec(self, name, path=None, target=None):
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
sys.meta_path.insert(0, NoPortAudio())
sys.argv = ["choir-runner", *sys.argv[1:]]
from choir_clients.runner.runner import main
try:
    main()
finally:
    loaded = sorted(m for m in sys.modules
                    if m.startswith(("choir_clients.rehearsal", "choir_clients.demo",
                                     "choir_protocol.rehearsal", "choir_twisted", "sounddevice")))
    print("loaded:", loaded, file=sys.stderr)
"""


def run(*args):
    return subprocess.run([sys.executable, "-c", NO_PORTAUDIO, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_the_runner_starts_without_portaudio_and_without_the_rehearsal_clients(config_dir):
    done = run("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("choir-runner ")
    assert done.stderr.strip() == "loaded: []"


def test_its_commands_run_there_too(config_dir):
    done = run("list-registered")
    assert done.returncode == 0, done.stderr
    assert "loaded: []" in done.stderr
