"""JACK's dummy backend for the tests: a clocked, headless sound card, and loopbacks.

``start_jack_dummy(test)`` starts a JACK server of its own, named uniquely (so that
test runs in parallel do not share or stop each other's server), and returns the
environment (JACK_DEFAULT_SERVER set) in which JACK clients, and PortAudio
(sounddevice) in the processes started with it, find that server.

PortAudio enumerates its host APIs when it is initialised: sounddevice must be
imported in a process started *after* the server is up, with that environment.
A PortAudio stream appears in JACK as the client "PortAudio", with ports
``PortAudio:in_0`` (mono input) and ``PortAudio:out_0``, ``PortAudio:out_1``
(stereo output), registered when the stream is opened and connected to
``system:capture_*`` / ``system:playback_*`` when it starts.

Run as ``python -m tests.support.jack`` (in the environment of ``start_jack_dummy``), it
is the sounddevice side of the tests, see ``main``.
"""
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from .paths import ROOT

PORTAUDIO_CLIENT = "PortAudio"
_servers = itertools.count()


def start_jack_dummy(test, capture_ports: int = 2) -> dict:
    """Start JACK's dummy backend at 44.1 kHz, 512 frames per period (``capture_ports=0``:
    a card with no microphone); stopped at the test's cleanup. Returns the environment to
    run JACK clients in."""
    jackd = shutil.which("jackd")
    if jackd is None:
        raise AssertionError("jackd is not installed (apt-get install jackd2): needed for the "
                             "sounddevice tests")
    name = f"choir-test-{os.getpid()}-{next(_servers)}"
    env = dict(os.environ, JACK_NO_AUDIO_RESERVATION="1", JACK_DEFAULT_SERVER=name)
    def running() -> bool:  # (jack_wait --check exits 0 either way)
        return subprocess.run(["jack_lsp"], capture_output=True, env=env).returncode == 0

    output = tempfile.TemporaryFile()
    test.addCleanup(output.close)
    process = subprocess.Popen([jackd, "--no-realtime", "-n", name, "-d", "dummy", "-r", "44100",
                                "-p", "512", "-C", str(capture_ports)],
                               stdout=output, stderr=subprocess.STDOUT, env=env)
    test.addCleanup(process.wait)
    test.addCleanup(process.terminate)
    subprocess.run(["jack_wait", "--wait", "--timeout", "20"], capture_output=True, env=env)
    if not running():
        output.seek(0)
        raise AssertionError(f"jackd did not come up: {output.read().decode(errors='replace')}")
    return env


@contextlib.contextmanager
def jack_dummy():
    """``start_jack_dummy`` for code without a TestCase (e.g. a pytest fixture)."""
    class Cleanups:
        def addCleanup(self, function, *args, **kwargs):
            stack.callback(function, *args, **kwargs)

    with contextlib.ExitStack() as stack:
        yield start_jack_dummy(Cleanups())


def ports(env) -> dict[str, dict]:
    """JACK's ports: {port: {"input": bool, "connections": [ports]}}."""
    result = subprocess.run(["jack_lsp", "-c", "-p"], capture_output=True, text=True, env=env,
                            timeout=10)
    if result.returncode:
        raise AssertionError(f"jack_lsp failed: {result.stderr.strip()}")
    found: dict[str, dict] = {}
    port = None
    for line in result.stdout.splitlines():
        if not line.startswith((" ", "\t")):
            port = line.strip()
            if port:
                found[port] = {"input": False, "connections": []}
        elif line.strip().startswith("properties:"):
            found[port]["input"] = "input" in [p.strip() for p in line.split(":", 1)[1].split(",")]
        elif line.strip():
            found[port]["connections"].append(line.strip())
    return found


def _jack(env, *args):
    result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=10)
    if result.returncode:
        raise AssertionError(f"{' '.join(args)} failed: {(result.stderr or result.stdout).strip()}")


def loopback(client_prefix: str, env, *, mix: bool = False, timeout: float = 10.0) -> list[tuple[str, str]]:
    """Connect a JACK client's output ports to its own input ports, so that what it plays
    comes back to its microphone, one period (or more) later: a clocked audio loopback.

    Waits (up to ``timeout`` s) for the client's ports to exist. The client is the
    first one whose name starts with ``client_prefix`` and has both input and output
    ports. Its inputs are first disconnected from everything else. Output *i* goes
    to input *i* (a stereo player on a mono input: the left channel comes back), or,
    with ``mix``, every output to every input (the channels are summed by JACK).
    Returns the (output, input) pairs connected.
    """
    deadline = time.monotonic() + timeout
    while True:
        found = ports(env)
        clients: dict[str, dict[str, list[str]]] = {}
        for port, info in found.items():
            client = port.partition(":")[0]
            if client.startswith(client_prefix):
                clients.setdefault(client, {"in": [], "out": []})["in" if info["input"] else "out"].append(port)
        ready = [c for c, p in clients.items() if p["in"] and p["out"]]
        if ready:
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"no JACK client {client_prefix!r}* with input and output ports "
                                 f"appeared in {timeout} s; ports: {sorted(found)}")
        time.sleep(0.02)  # (polling a real condition, with a deadline)
    inputs, outputs = sorted(clients[ready[0]]["in"]), sorted(clients[ready[0]]["out"])
    for port in inputs:
        for other in found[port]["connections"]:
            _jack(env, "jack_disconnect", other, port)
    if mix:
        pairs = [(o, i) for o in outputs for i in inputs]
    else:
        pairs = list(zip(outputs, inputs))
    for output, input_ in pairs:
        _jack(env, "jack_connect", output, input_)
    return pairs


# --- the sounddevice side, run in a process started after jackd -------------------------

def _duplex(blocks: int) -> dict:
    """Open SoundDevice, loop it back, play noise, record: what came back, where."""
    import numpy as np

    from choir_clients.rehearsal.devices import CallbackStop, SoundDevice

    rng = np.random.default_rng(7)
    played = np.zeros(blocks * 512, np.float32)
    start = blocks // 2 * 512  # after the loopback is in place (made within the first half)
    played[start:start + 20 * 512] = 0.2 * rng.standard_normal(20 * 512)
    recorded = np.zeros(blocks * 512, np.float32)
    shapes, flags, callbacks = set(), [], [0]
    done = threading.Event()
    threads = set()

    def callback(indata, outdata, status):
        k = callbacks[0]
        shapes.add((indata.shape, str(indata.dtype), outdata.shape, str(outdata.dtype)))
        threads.add(threading.get_ident())
        if status:
            flags.append(k)
        recorded[k * 512:(k + 1) * 512] = indata[:, 0]
        outdata[:, 0] = played[k * 512:(k + 1) * 512]
        outdata[:, 1] = -played[k * 512:(k + 1) * 512]  # (the left channel comes back)
        callbacks[0] = k + 1
        if k + 1 == blocks:
            raise CallbackStop

    device = SoundDevice()
    finished = []
    stream = device.open(callback, finished=lambda: (finished.append(1), done.set()))
    began = time.monotonic()
    with stream:
        pairs = loopback(PORTAUDIO_CLIENT, os.environ)
        connected_at = callbacks[0]
        if not done.wait(30):
            raise SystemExit("the stream did not end")
    elapsed = time.monotonic() - began
    size = 1 << (2 * len(played)).bit_length()
    corr = np.fft.irfft(np.fft.rfft(recorded, size) * np.conj(np.fft.rfft(played, size)), size)
    lag = int(np.argmax(np.abs(corr[:len(played)])))
    echo = recorded[start + lag:start + lag + 20 * 512]
    return {"device": device.name, "shapes": [list(map(str, s)) for s in shapes], "flags": flags,
            "callbacks": callbacks[0], "threads": len(threads), "main_thread": threading.get_ident() in threads,
            "finished": len(finished), "pairs": pairs, "connected_at_block": connected_at, "lag": lag,
            "echo_error": float(np.abs(echo - played[start:start + 20 * 512]).max()),
            "elapsed": elapsed}


def _calibrate(times: int, seconds: float) -> dict:
    """Measure the loopback's latency ``times`` times with measure_latency."""
    from choir_clients.rehearsal.calibration import CalibrationError, measure_latency
    from choir_clients.rehearsal.devices import SoundDevice

    device = SoundDevice()
    results = []
    for _ in range(times):
        refused = []
        for attempt in range(3):
            connected = []
            def progress(fraction):
                if not connected:  # first call: the stream runs, its ports exist
                    connected.append(loopback(PORTAUDIO_CLIENT, os.environ))
            try:
                calibration = measure_latency(device, seconds=seconds, progress=progress)
            except CalibrationError as e:  # only JACK xruns (a loaded machine) are excused
                if "dropped sound" not in str(e):
                    raise
                refused.append(str(e))
                calibration = None
            # the stream is closed: its ports must be gone before the next one registers its own
            deadline = time.monotonic() + 10
            while any(p.startswith(PORTAUDIO_CLIENT + ":") for p in ports(os.environ)):
                if time.monotonic() > deadline:
                    raise SystemExit("the closed stream's ports did not go away")
                time.sleep(0.02)
            if calibration is not None:
                break
        else:
            raise SystemExit(f"every measurement was refused: {refused}")
        results.append({"latency_samples": calibration.latency_samples,
                        "confidence": calibration.confidence, "pairs": connected[0],
                        "refused": refused})
    return {"device": device.name, "measurements": results}


def run_sounddevice(env, command: str, *args, timeout: float = 60) -> dict:
    """Run ``python -m tests.support.jack command args`` in ``env``; its JSON answer."""
    result = subprocess.run([sys.executable, "-m", "tests.support.jack", command, *map(str, args)], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode:
        raise AssertionError(f"tests.support.jack {command} failed ({result.returncode}):\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv):
    command, *args = argv
    if command == "duplex":
        answer = _duplex(int(args[0]))
    elif command == "calibrate":
        answer = _calibrate(int(args[0]), float(args[1]))
    elif command == "devices":
        from choir_clients.rehearsal.devices import DeviceError, SoundDevice, list_devices
        answer = {"table": list_devices()}
        try:
            SoundDevice(*args)
            answer["error"] = None
        except DeviceError as e:
            answer["error"] = str(e)
    else:
        raise SystemExit(f"unknown command {command}")
    print(json.dumps(answer))


if __name__ == "__main__":
    main(sys.argv[1:])
