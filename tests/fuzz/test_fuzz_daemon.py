"""Fuzzing the daemon in-process: its HTTP port (tests/fuzz/http_cases.py, tests/fuzz/socketio_cases.py:
every route of the runner, media and admin APIs and the socket.io WebSocket, through the
real HTTPChannel of RunnerService's Site) and its rehearsal ports (tests/fuzz/rehearsal.py:
the Room and protocols on a Clock). No case may raise, be answered with a 5xx or make the
daemon log a failure. ``make fuzz`` runs the same targets on 100 000 cases each."""
from twisted.logger import Logger
from twisted.web import resource

from .daemon import Daemon
from .harness import check
from .http_cases import http_target, run_http
from .rehearsal import rehearsal_target
from .socketio_cases import CONNECT, run_ws, ws_target

HANDSHAKE = ("EIO=4&transport=websocket",
             {"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"})


def test_http_routes():
    check(http_target(), max_examples=200)


def test_socketio_websocket():
    check(ws_target(), max_examples=150)


def test_rehearsal_ports():
    check(rehearsal_target(), max_examples=100)


class Broken(resource.Resource):
    isLeaf = True

    def render(self, request):
        try:
            1 / 0
        except ZeroDivisionError:
            Logger().failure("planted failure")
        request.setResponseCode(500)
        return b"planted"


def test_a_logged_failure_and_a_500_are_caught():
    """The harness sees what it must: a route that logs a failure and answers 500."""
    with Daemon() as daemon:
        root = daemon.service.port.factory.resource
        root.getChildWithDefault = lambda name, request: Broken()  # on this instance only
        request = ("GET", "/x", "HTTP/1.1", {"Host": "localhost"}, [], ("raw", b""),
                   ("length",))
        outcome = run_http(daemon, {"requests": [request], "cuts": [], "leave_after": None,
                                    "slot": 0})
    assert outcome.statuses == [500] and not outcome.ok
    assert any("planted failure" in t and "ZeroDivisionError" in t for t in outcome.tracebacks)


def test_a_fuzzed_runner_gets_as_far_as_a_real_one():
    """The socket.io cases reach the hub: the runner token is real and accepted."""
    with Daemon() as daemon:
        admitted = []
        hub_add = daemon.service.hub.add
        daemon.service.hub.add = lambda socket: (admitted.append(socket), hub_add(socket))
        outcome = run_ws(daemon, {"handshake": HANDSHAKE, "moves": [("text", CONNECT, 1)],
                                  "cuts": [], "slot": 0})
    assert outcome.ok and outcome.statuses == [101]
    assert len(admitted) == 1
