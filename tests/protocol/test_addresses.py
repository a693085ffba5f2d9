"""``--server`` values, as every program parses them."""
from hypothesis import given
from hypothesis import strategies as st
import pytest

from choir_protocol.addresses import AddressError, format_server, parse_server


@pytest.mark.parametrize("value, expected", [
    ("localhost", ("localhost", 8868)),
    ("127.0.0.1:21868", ("127.0.0.1", 21868)),
    ("choir.example.org:9000", ("choir.example.org", 9000)),
    (" 10.0.0.2 ", ("10.0.0.2", 8868)),
    ("::1", ("::1", 8868)),
    ("[::1]:9999", ("::1", 9999)),
    ("[2001:db8::1]", ("2001:db8::1", 8868)),
])
def test_accepted(value, expected):
    assert parse_server(value, 8868) == expected


@pytest.mark.parametrize("value, says", [
    ("", "empty"),
    ("host:0", "1 to 65535"),
    ("host:70000", "1 to 65535"),
    ("host:port", "1 to 65535"),
    ("127.0.0.1:21868:21868", "IPv6"),
    ("tcp://host:1", "not a URL"),
    ("[::1", "without its ']'"),
    ("[::1]x", "':PORT'"),
    ("[nothex]:1", "not an IPv6"),
    ("bad host", "not a host name"),
])
def test_refused_with_a_reason(value, says):
    with pytest.raises(AddressError, match=says.replace("[", r"\[").replace("]", r"\]")
                       .replace("(", r"\(")):
        parse_server(value, 8868)


@given(st.ip_addresses(), st.integers(1, 65535))
def test_format_then_parse_is_the_identity(address, port):
    assert parse_server(format_server(str(address), port)) == (str(address), port)


@given(st.text(max_size=300))
def test_any_text_is_parsed_or_refused_with_a_reason(value):
    try:
        host, port = parse_server(value, 8868)
    except AddressError as e:
        assert "\n" not in str(e)
    else:
        assert host and 0 < port < 65536
