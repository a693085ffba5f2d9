"""A media's files need a token or a signed, expiring link (choir_protocol.runners.signed_links,
choir_twisted.publishing.media_links): a recording's id alone gives out no singer's track.

The signing is checked as plain functions; the routes over real HTTP on 127.0.0.1 against a
RunnerService, with files on disk (an HLS master playlist, a rendition, its segment file)."""
import os
import re
import stat
from urllib.parse import urljoin

from hypothesis import given
from hypothesis import strategies as st
import pytest

from choir_protocol.runners import signed_links as L
from choir_twisted.publishing.media_links import SECRET_NAME, load_secret

from ...support.publishing import M, PublishingCase, bearer

SECRET = b"k" * 32
NOW = 1_700_000_000


# -- the signing, sans-IO ----------------------------------------------------------------

def parse(segment):
    signed, expires, sig = segment.split("/")
    assert signed == "signed"
    return expires, sig


def test_a_link_opens_its_media_until_it_expires():
    expires, sig = parse(L.link_segment(SECRET, "m1", NOW))
    assert int(expires) >= NOW + L.LINK_TTL and int(expires) % L.ROUND_TO == 0
    assert int(expires) < NOW + L.LINK_TTL + L.ROUND_TO
    assert len(sig) == L.SIG_HEX
    L.check_link(SECRET, "m1", expires, sig, NOW)
    L.check_link(SECRET, "m1", expires, sig, int(expires) - 1)
    with pytest.raises(L.LinkError) as e:
        L.check_link(SECRET, "m1", expires, sig, int(expires))
    assert e.value.reason == "expired"
    # made within the same hour: the same link (caches and players see one URL)
    assert L.link_segment(SECRET, "m1", NOW + 60) == L.link_segment(SECRET, "m1", NOW)


@given(other=st.text(min_size=1, max_size=40), later=st.integers(1, 10 ** 9),
       flip=st.integers(0, L.SIG_HEX - 1))
def test_a_link_opens_nothing_else(other, later, flip):
    expires, sig = parse(L.link_segment(SECRET, "m1", NOW))
    bad = [("m1" + other, expires, sig),  # another media
           ("m1", str(int(expires) + later), sig),  # a later expiry
           ("m1", expires, sig[:flip] + "0123456789abcdef"[(int(sig[flip], 16) + 1) % 16]
            + sig[flip + 1:])]  # one digit changed
    for media_id, e, s in bad:
        with pytest.raises(L.LinkError) as error:
            L.check_link(SECRET, media_id, e, s, NOW)
        assert error.value.reason == "bad_signature"
    with pytest.raises(L.LinkError):
        L.check_link(b"another secret, another daemon!", "m1", expires, sig, NOW)


@pytest.mark.parametrize("expires, sig", [("", "0" * 32), ("12x", "0" * 32), ("1" * 13, "0" * 32),
                                          ("2000000000", "0" * 31), ("2000000000", "G" * 32)])
def test_malformed_links(expires, sig):
    with pytest.raises(L.LinkError, match="malformed"):
        L.check_link(SECRET, "m1", expires, sig, NOW)


def test_the_secret_is_made_once_private_and_kept(tmp_path):
    secret = load_secret(str(tmp_path))
    assert len(secret) == L.SECRET_BYTES
    path = tmp_path / SECRET_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_secret(str(tmp_path)) == secret  # a restart keeps the links handed out
    assert os.listdir(tmp_path) == [SECRET_NAME]
    assert load_secret(str(tmp_path / "other")) != secret
    path.write_bytes(b"short")
    with pytest.raises(RuntimeError, match="too short"):
        load_secret(str(tmp_path))


# -- the routes -------------------------------------------------------------------------

MASTER = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000,RESOLUTION=640x360\n360p.m3u8\n"
RENDITION = ('#EXTM3U\n#EXT-X-MAP:URI="360p-fragmented.mp4",BYTERANGE="10@0"\n#EXTINF:2.0,\n'
             '#EXT-X-BYTERANGE:20@10\n360p-fragmented.mp4\n#EXT-X-ENDLIST\n')
SEGMENT = bytes(range(30))
STEM = b"fLaC ann's alto line, nobody else's"


class MediaLinksTest(PublishingCase):
    async def recording(self):
        """A published recording, as the store has it: its inputs (the mix and a singer's
        own track) and HLS outputs, real files under the data directory."""
        media = await self.store.create_media("recording", "Rehearsal", path="/x/mix.flac")
        out = os.path.join(self.data_dir, "media", media.id)
        os.makedirs(os.path.join(out, "hls"))
        for name, data in (("singer-001-ann-alto.flac", STEM), ("hls/master.m3u8", MASTER),
                           ("hls/360p.m3u8", RENDITION), ("hls/360p-fragmented.mp4", SEGMENT)):
            path = os.path.join(out, name)
            with open(path, "wb") as f:
                f.write(data.encode() if isinstance(data, str) else data)
            role = "input" if name.endswith(".flac") else "output"
            await self.store.add_media_file(media.id, role, name, path, os.path.getsize(path))
        return media

    async def shown(self, media, token):
        a = await self.http("GET", f"{M}/{media.id}", headers=bearer(token))
        self.assertEqual(a.code, 200, a.body)
        return a.json

    def assertProblem(self, answer, status, code):
        self.assertEqual((answer.code, answer.json["code"]), (status, code), answer.body)
        self.assertEqual(answer.content_type, "application/problem+json")

    async def test_a_stem_needs_a_token_of_the_media_api(self):
        token = await self.serving()
        media = await self.recording()
        stem = f"{M}/{media.id}/files/singer-001-ann-alto.flac"
        self.assertProblem(await self.http("GET", stem), 401, "unauthorized")
        self.assertEqual((await self.http("HEAD", stem)).code, 401)
        self.assertProblem(await self.http("GET", f"{M}/{media.id}"), 401, "unauthorized")
        runner = await self.register()  # a runner's token is of another kind
        self.assertProblem(await self.http("GET", stem, headers=bearer(runner)), 401,
                           "unauthorized")
        self.assertProblem(await self.http("GET", f"{M}/{media.id}", headers=bearer(runner)),
                           401, "unauthorized")
        got = await self.http("GET", stem, headers=bearer(token))
        self.assertEqual((got.code, got.body), (200, STEM))
        operator = (await self.store.create_operator_token("laptop"))[1]
        got = await self.http("GET", stem, headers=bearer(operator))
        self.assertEqual((got.code, got.body), (200, STEM))

    async def test_a_signed_link_opens_the_files_and_hls_follows_it(self):
        token = await self.serving()
        media = await self.recording()
        view = await self.shown(media, token)
        pattern = rf"^{M}/{media.id}/signed/[0-9]+/[0-9a-f]{{32}}/files/"
        for f in view["inputs"] + view["outputs"]:
            self.assertRegex(f["url"], pattern + re.escape(f["name"]) + "$")
        stem = next(f["url"] for f in view["inputs"] if f["name"].startswith("singer-"))
        got = await self.http("GET", stem)  # no token: the link is enough
        self.assertEqual((got.code, got.body), (200, STEM))
        # a player: master -> rendition -> segment, each by its relative link
        master_url = self.base + view["hlsUrl"]
        master = await self.http("GET", master_url)
        self.assertEqual((master.code, master.body.decode()), (200, MASTER))
        rendition_url = urljoin(master_url, "360p.m3u8")
        rendition = await self.http("GET", rendition_url)
        self.assertEqual((rendition.code, rendition.body.decode()), (200, RENDITION))
        segment = await self.http("GET", urljoin(rendition_url, "360p-fragmented.mp4"),
                                  headers={"Range": "bytes=10-29"})
        self.assertEqual((segment.code, segment.body), (206, SEGMENT[10:]))
        # the list gives the same links
        listed = await self.http("GET", M, headers=bearer(token))
        self.assertEqual(listed.json["data"][0]["hlsUrl"], view["hlsUrl"])

    async def test_expired_tampered_and_borrowed_links_are_refused(self):
        token = await self.serving()
        media, other = await self.recording(), await self.recording()
        secret = self.service.media_api.links.secret
        name = "files/singer-001-ann-alto.flac"
        past = int(self.service.reactor.seconds()) - 1
        expired = f"signed/{past}/{L.signature(secret, media.id, past)}"
        self.assertProblem(await self.http("GET", f"{M}/{media.id}/{expired}/{name}"), 403,
                           "link_expired")
        url = next(f["url"] for f in (await self.shown(media, token))["inputs"]
                   if f["name"].startswith("singer-"))
        _, expires, sig = re.search(r"/(signed)/([0-9]+)/([0-9a-f]+)/", url).groups()
        later = str(int(expires) + 3600)
        forged_sig = ("0" if sig[0] != "0" else "1") + sig[1:]
        for bad in (url.replace(expires, later), url.replace(sig, forged_sig),
                    url.replace(media.id, other.id),  # one media's link opens no other
                    url.replace(sig, sig[:-1])):
            self.assertProblem(await self.http("GET", bad), 403, "bad_link_signature")
        # a good link to a file the media does not have is still a 404
        missing = url.replace("singer-001-ann-alto.flac", "singer-002-bob-bass.flac")
        self.assertProblem(await self.http("GET", missing), 404, "file_not_found")

    async def test_links_survive_a_restart_of_the_daemon(self):
        token = await self.serving()
        media = await self.recording()
        url = (await self.shown(media, token))["hlsUrl"]
        path = url  # relative: the new daemon listens elsewhere
        await self.service.stopService()
        from twisted.internet import reactor

        from choir_twisted.runners.service import RunnerService
        self.service = RunnerService(reactor, "tcp:0:interface=127.0.0.1", self.data_dir)
        await self.run_service()
        got = await self.http("GET", path)
        self.assertEqual((got.code, got.body.decode()), (200, MASTER))
