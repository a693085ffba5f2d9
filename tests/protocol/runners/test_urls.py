"""choir_protocol.runners.urls: absolute payload URLs and the base a runner reached us at."""
import ipaddress

from hypothesis import given
from hypothesis import strategies as st
import pytest

from choir_protocol.networks import in_networks, parse_networks
from choir_protocol.runners import jobs as J
from choir_protocol.runners.urls import absolute_payload, request_base

PROXY = parse_networks("10.0.0.0/8, 127.0.0.1")


def test_every_payload_url_is_made_absolute():
    payload = J.hls_payload("", "job-1", "media-1", 720, 30, audio_input=True)
    payload["tasks"] = [{"name": "add-intro", "options": {"file": "/api/v1/x/intro.mp4"}},
                        {"name": "cut", "options": {"start": 1, "end": 2}}]
    out = absolute_payload(payload, "https://example.org/choir/")
    assert out["input"]["videoFileUrl"] == (
        "https://example.org/choir/api/v1/runners/jobs/job-1/files/videos/media-1/max-quality")
    assert out["input"]["separatedAudioFileUrl"] == [
        "https://example.org/choir/api/v1/runners/jobs/job-1/files/videos/media-1/"
        "max-quality/audio"]
    assert out["tasks"][0]["options"]["file"] == "https://example.org/choir/api/v1/x/intro.mp4"
    assert out["tasks"][1] == payload["tasks"][1]
    assert out["output"] == payload["output"]
    # the stored payload is untouched
    assert payload["input"]["videoFileUrl"].startswith("/api/")


def test_absolute_urls_and_other_values_are_kept():
    payload = {"input": {"videoFileUrl": "http://cdn.example/v.mp4"}, "name": "/not-a-url"}
    assert absolute_payload(payload, "http://h") == payload


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                    lambda c: st.lists(c, max_size=3) |
                    st.dictionaries(st.sampled_from(["a", "fileUrl", "file", "xUrls"]), c,
                                    max_size=3)))
def test_only_path_values_under_url_keys_change(payload):
    out = absolute_payload({"k": payload}, "http://h:1")

    def check(a, b, key=None):
        if isinstance(a, dict):
            assert set(a) == set(b)
            for k in a:
                check(a[k], b[k], k)
        elif isinstance(a, list):
            assert len(a) == len(b)
            for x, y in zip(a, b):
                check(x, y, key)
        elif key in ("fileUrl", "file", "xUrls") and isinstance(a, str) and a.startswith("/"):
            assert b == "http://h:1" + a
        else:
            assert a == b

    check({"k": payload}, out)


def test_public_url_wins_with_its_prefix():
    base = request_base(public_url="https://choir.example/choir/", secure=False,
                        host="127.0.0.1:8000", peer="127.0.0.1",
                        forwarded_host="evil.example", trusted_proxies=PROXY)
    assert base == "https://choir.example/choir"


def test_host_header_and_scheme_without_public_url():
    assert request_base(public_url=None, secure=False, host="10.1.2.3:8000",
                        peer="192.0.2.9") == "http://10.1.2.3:8000"
    assert request_base(public_url=None, secure=True, host="[::1]:8443",
                        peer="::1") == "https://[::1]:8443"


def test_forwarded_headers_only_from_trusted_proxies():
    kw = dict(public_url=None, secure=False, host="127.0.0.1:8000",
              forwarded_proto="https", forwarded_host="choir.example, inner.proxy")
    assert request_base(peer="192.0.2.9", trusted_proxies=PROXY, **kw) == "http://127.0.0.1:8000"
    assert request_base(peer="10.3.3.3", trusted_proxies=PROXY, **kw) == "https://choir.example"
    assert request_base(peer="127.0.0.1", trusted_proxies=(), **kw) == "http://127.0.0.1:8000"
    assert request_base(peer="::ffff:127.0.0.1", trusted_proxies=PROXY, **kw) == (
        "https://choir.example")


@pytest.mark.parametrize("host", ["evil.example/path", "a b", "x@y", "", None, "h:99999999"])
def test_a_bad_host_header_falls_back_to_the_listening_address(host):
    assert request_base(public_url=None, secure=False, host=host, peer="192.0.2.1",
                        default_host="127.0.0.1:8000") == "http://127.0.0.1:8000"


def test_trusted_proxy_parsing():
    assert parse_networks("") == ()
    assert parse_networks("::1,192.168.0.0/16") == (ipaddress.ip_network("::1"),
                                                    ipaddress.ip_network("192.168.0.0/16"))
    with pytest.raises(ValueError):
        parse_networks("not-an-address")
    assert not in_networks("garbage", PROXY)
    assert not in_networks(None, PROXY)


def test_twistd_options_for_the_urls(tmp_path):
    from twisted.python import usage

    from choir_twisted.service import Options, makeService
    options = Options()
    options.parseOptions(["-d", str(tmp_path), "--public-url", "https://choir.example/choir/",
                          "--trusted-proxy", "127.0.0.1, 10.0.0.0/8"])
    assert options["trusted-proxy"] == PROXY[::-1]
    options["no-record"] = True
    top = makeService(options)
    runners = top.runners  # what the runner API is built with at start
    assert runners.trusted_proxies == PROXY[::-1]
    assert runners.publishing["public_url"] == "https://choir.example/choir/"
    top.lock_file.close()
    for bad, words in ((["--public-url", "choir.example"], "http:// or https://"),
                       (["--public-url", "https://h/x?y=1"], "without query"),
                       (["--trusted-proxy", "10.0.0.0/33"], "--trusted-proxy")):
        with pytest.raises(usage.UsageError, match=words):
            Options().parseOptions(bad)
