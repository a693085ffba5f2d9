import json

from hypothesis import given
from hypothesis import strategies as st
import pytest

from choir_protocol.errors import ProtocolError
from choir_protocol.runners.socketio import (RESERVED_EVENTS, AckReceived, Closed, EngineState,
                                             EventReceived, NamespaceConnected,
                                             NamespaceConnectRequested, NamespaceDisconnected,
                                             NamespaceRefused, Opened, Ping, Pong,
                                             SocketIOClientConnection, SocketIOServerConnection)

OPEN = '0{"sid":"s1","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}'


def opened_server(**kwargs):
    server = SocketIOServerConnection("s1", **kwargs)
    server.open_frame()
    return server


def connected_pair(namespace="/runners", auth=None):
    server = SocketIOServerConnection("s1", namespaces={namespace})
    client = SocketIOClientConnection()
    client.receive_frame(server.open_frame())
    requested = server.receive_frame(client.connect_namespace(namespace, auth))
    assert requested == [NamespaceConnectRequested(namespace, auth)]
    assert client.receive_frame(server.accept_namespace(namespace, "n1")) == [
        NamespaceConnected(namespace, "n1")]
    return server, client


# -- the frames of RUNNERS.md -----------------------------------------------------------

def test_exact_frames_of_runners_md():
    server = SocketIOServerConnection("s1")
    assert server.open_frame() == OPEN
    client = SocketIOClientConnection()
    assert client.receive_frame(OPEN) == [Opened("s1", 25000, 20000, 1000000)]
    assert (client.ping_interval, client.ping_timeout) == (25000, 20000)

    connect = client.connect_namespace("/runners", {"runnerToken": "t0k"})
    assert connect == '40/runners,{"runnerToken":"t0k"}'
    assert server.receive_frame(connect) == [
        NamespaceConnectRequested("/runners", {"runnerToken": "t0k"})]
    accept = server.accept_namespace("/runners", "n1")
    assert accept == '40/runners,{"sid":"n1"}'
    assert client.receive_frame(accept) == [NamespaceConnected("/runners", "n1")]

    emit = server.emit("/runners", "available-jobs")
    assert emit == '42/runners,["available-jobs"]'
    assert client.receive_frame(emit) == [EventReceived("/runners", "available-jobs", ())]

    assert server.ping() == "2"
    assert client.receive_frame("2") == [Ping()]
    assert client.pong() == "3"
    assert server.receive_frame("3") == [Pong()]


def test_refusal():
    server = SocketIOServerConnection("s1")
    client = SocketIOClientConnection()
    client.receive_frame(server.open_frame())
    server.receive_frame(client.connect_namespace("/runners", {"runnerToken": "bad"}))
    refuse = server.refuse_namespace("/runners", "unknown runner token")
    assert refuse == '44/runners,{"message":"unknown runner token"}'
    assert client.receive_frame(refuse) == [NamespaceRefused("/runners", "unknown runner token")]
    assert "/runners" not in server.connected and "/runners" not in client.connected
    with pytest.raises(ProtocolError, match="not connected"):
        server.receive_frame('42/runners,["get-jobs"]')
    with pytest.raises(RuntimeError):
        server.emit("/runners", "available-jobs")
    with pytest.raises(RuntimeError):
        client.emit("/runners", "get-jobs")
    # refused, the client may ask again
    assert server.receive_frame(client.connect_namespace("/runners", {"runnerToken": "ok"})) == [
        NamespaceConnectRequested("/runners", {"runnerToken": "ok"})]


def test_default_namespace_without_and_with_auth():
    server = opened_server(namespaces={"/"})
    assert server.receive_frame("40") == [NamespaceConnectRequested("/", None)]
    assert server.accept_namespace("/", "n1") == '40{"sid":"n1"}'
    assert server.emit("/", "hi", 1) == '42["hi",1]'
    server = opened_server(namespaces={"/"})
    assert server.receive_frame('40{"token":"x"}') == [NamespaceConnectRequested("/", {"token": "x"})]
    client = SocketIOClientConnection()
    client.receive_frame(OPEN)
    assert client.connect_namespace("/") == "40"


def test_acks_both_ways():
    server, client = connected_pair()
    [event] = server.receive_frame('42/runners,17["get-jobs",{"n":1}]')
    assert event == EventReceived("/runners", "get-jobs", ({"n": 1},), 17)
    answer = server.ack("/runners", 17, [])
    assert answer == "43/runners,17[[]]"
    with pytest.raises(RuntimeError):
        server.ack("/runners", 17)  # answered already
    frame = client.emit("/runners", "x", ack_id=3)
    assert frame == '42/runners,3["x"]'
    assert server.receive_frame(frame) == [EventReceived("/runners", "x", (), 3)]
    assert client.receive_frame(server.ack("/runners", 3, "ok")) == [
        AckReceived("/runners", 3, ("ok",))]
    with pytest.raises(ProtocolError, match="answers nothing"):
        client.receive_frame('43/runners,3["again"]')


def test_namespace_disconnect_and_close():
    server, client = connected_pair()
    assert client.disconnect_namespace("/runners") == "41/runners,"
    assert server.receive_frame("41/runners,") == [NamespaceDisconnected("/runners")]
    with pytest.raises(ProtocolError):
        server.receive_frame('42/runners,["get-jobs"]')
    server.receive_frame('40/runners,{}')
    server.accept_namespace("/runners", "n2")
    assert server.receive_frame("41/runners") == [NamespaceDisconnected("/runners")]  # no comma
    assert client.close() == "1"
    assert server.receive_frame("1") == [Closed()]
    assert server.state is EngineState.CLOSED
    with pytest.raises(ProtocolError, match="closed"):
        server.receive_frame("3")


def test_max_payload():
    server = opened_server(max_payload=100)
    server.receive_frame('40/runners,{}')
    server.accept_namespace("/runners", "n")
    frame = '42/runners,["x","' + "é" * 40 + '"]'  # 58 characters, 98 bytes
    assert server.receive_frame(frame)[0].args == ("é" * 40,)
    with pytest.raises(ProtocolError, match="over 100 bytes"):
        server.receive_frame(frame[:-2] + 'é"]')


# -- malformed input --------------------------------------------------------------------

SERVER_BAD = [
    "", "7", "x", "0", '0{"sid":"a"}', "2", "2probe", "3probe", "1x", "5", "6", "4", "47",
    "4x", '40/runners,{"runnerToken":', '40/runners,{"a":NaN}', '40/runners,{"a":1e999}', '40/runners,[1]', '40/runners,"t"',
    '40/runners,5{}', "40/admin,", "40/runners,{}40", '44/runners,{"message":"x"}',
    '42/runners,["x"]', '45-/runners,["x"]', '46-/runners,[]', "[" * 5000, "40/runners," + "[" * 5000,
    b"40/runners,",
]


@pytest.mark.parametrize("frame", SERVER_BAD)
def test_server_rejects_malformed(frame):
    server = opened_server()
    with pytest.raises(ProtocolError):
        server.receive_frame(frame)


CONNECTED_SERVER_BAD = [
    '40/runners,{}', '42/runners,[]', '42/runners,{"a":1}', '42/runners,[1]', '42/runners,["x"',
    '42/runners,["disconnect"]', '42/runners,' + "9" * 20 + '["x"]', '43/runners,[]',
    '43/runners,1["x"]', '41/runners,{}', '41/runners,3', '42/runners,"x"', '42/other,["x"]',
    '42["x"]', '42/runners,1e999', "42/runners," + "1" * 5000,
]


@pytest.mark.parametrize("frame", CONNECTED_SERVER_BAD)
def test_connected_server_rejects_malformed(frame):
    server, _ = connected_pair()
    with pytest.raises(ProtocolError):
        server.receive_frame(frame)


CLIENT_BAD_BEFORE_OPEN = ["2", "3", "4", '40/runners,{"sid":"a"}', "0", "0{", "0[]",
                          '0{"sid":1,"pingInterval":1,"pingTimeout":1,"maxPayload":1}',
                          '0{"sid":"a","pingInterval":true,"pingTimeout":1,"maxPayload":1}']


@pytest.mark.parametrize("frame", CLIENT_BAD_BEFORE_OPEN)
def test_client_rejects_malformed_open(frame):
    with pytest.raises(ProtocolError):
        SocketIOClientConnection().receive_frame(frame)


CLIENT_BAD = [  # (connect /runners first?, frame)
    (False, OPEN), (False, "000"), (False, "3"), (False, "2x"),
    (False, '40/runners,{"sid":"a"}'), (False, '44/runners,{"message":"x"}'),
    (False, '42/runners,["available-jobs"]'), (False, "41/runners,"),
    (True, "40/runners,{}"), (True, '40/runners,{"sid":1}'), (True, '44/runners,{}'),
    (True, '44/runners,"no"'), (True, "40/runners,"), (True, '42/runners,["available-jobs"]'),
]


@pytest.mark.parametrize("connect, frame", CLIENT_BAD)
def test_client_rejects_malformed(connect, frame):
    client = SocketIOClientConnection()
    client.receive_frame(OPEN)
    if connect:
        client.connect_namespace("/runners")
    with pytest.raises(ProtocolError):
        client.receive_frame(frame)


def test_client_rejects_a_second_accept():
    client = SocketIOClientConnection()
    client.receive_frame(OPEN)
    client.connect_namespace("/runners")
    assert client.receive_frame('40/runners,{"sid":"a"}') == [NamespaceConnected("/runners", "a")]
    with pytest.raises(ProtocolError, match="never asked for"):
        client.receive_frame('40/runners,{"sid":"a"}')


def test_server_sends_no_pong_and_client_no_ping():
    with pytest.raises(ProtocolError, match="only the server pings"):
        opened_server().receive_frame("2")
    client = SocketIOClientConnection()
    client.receive_frame(OPEN)
    with pytest.raises(ProtocolError, match="client answers pings"):
        client.receive_frame("3")


@given(st.lists(st.text(), max_size=5))
def test_arbitrary_text_raises_only_protocol_error(frames):
    server, _ = connected_pair()
    client = SocketIOClientConnection()
    for frame in frames:
        for peer in (server, client):
            try:
                assert isinstance(peer.receive_frame(frame), list)
            except ProtocolError:
                pass


@given(st.sampled_from(["0", "1", "2", "3", "4", "40", "41", "42", "43", "44", "40/runners,",
                        "42/runners,", "43/runners,", "42/runners,1", "44/runners,"]),
       st.text(alphabet='[]{}",:0123456789/,abtrueflsn \\', max_size=30))
def test_json_looking_text_raises_only_protocol_error(prefix, rest):
    server, client = connected_pair()
    client.pending.add("/runners")
    for peer in (server, client):
        try:
            assert isinstance(peer.receive_frame(prefix + rest), list)
        except ProtocolError:
            pass


# -- properties of the codec -------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=10)
namespaces = st.just("/") | st.text().filter(lambda s: "," not in s).map(lambda s: "/" + s)
names = st.text().filter(lambda s: s not in RESERVED_EVENTS)


@given(namespaces, names, st.lists(json_values, max_size=4),
       st.none() | st.integers(0, 10**15 - 1))
def test_events_round_trip_both_ways(namespace, name, args, ack_id):
    server, client = connected_pair(namespace)
    frame = server.emit(namespace, name, *args, ack_id=ack_id)
    prefix = "42" + ("" if namespace == "/" else namespace + ",") + (
        "" if ack_id is None else str(ack_id))
    assert frame.startswith(prefix) and json.loads(frame[len(prefix):]) == [name, *args]
    assert client.receive_frame(frame) == [EventReceived(namespace, name, tuple(args), ack_id)]
    frame = client.emit(namespace, name, *args, ack_id=ack_id)
    assert server.receive_frame(frame) == [EventReceived(namespace, name, tuple(args), ack_id)]
    if ack_id is not None:
        assert client.receive_frame(server.ack(namespace, ack_id, *args)) == [
            AckReceived(namespace, ack_id, tuple(args))]


@given(namespaces, st.none() | st.dictionaries(st.text(), json_values, max_size=4), st.text())
def test_connect_round_trips(namespace, auth, message):
    server = SocketIOServerConnection("s1", namespaces={namespace})
    client = SocketIOClientConnection()
    client.receive_frame(server.open_frame())
    frame = client.connect_namespace(namespace, auth)
    assert frame.startswith("40" if namespace == "/" else f"40{namespace},")
    assert server.receive_frame(frame) == [NamespaceConnectRequested(namespace, auth)]
    assert client.receive_frame(server.refuse_namespace(namespace, message)) == [
        NamespaceRefused(namespace, message)]
