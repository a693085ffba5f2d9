"""The 512-byte authentication header (PROTOCOL.md, "The authentication header")."""
import struct

from hypothesis import example, given, settings
from hypothesis import strategies as st
from onlinechoir.common.auth import AUTH_KEY as THEIR_KEY
from onlinechoir.common.auth import AuthenticationHeader
import pytest

from choir_protocol.errors import ProtocolError
from choir_protocol.rehearsal.constants import HEADER_SIZE, VOCAL_GROUPS
from choir_protocol.rehearsal.header import AUTH_KEY, PROTOCOL_VERSION, Header

KEY_HEX = (
    "b723d29bdf8bd0b410dfdffe5ea6c78357f1fef8e7e1eeac2f90556e83e15c2284e0afa03a0690beca27e5809c17fe67"
    "635a099e866c75112e3ffc66a1bf9c1aef0c3bb6720eea536b0e9c5b819258c2556f82540dc3baac4037098fca7e8a7d"
    "dd0d68a3056d7fbd83c48663f05c3915731d8df8f4f881e47855b669e777d9e4e8f62210cd0ec7f92484493b35b44b98"
    "ae2f6436ce883f86945cf1f9f841a6d5701cce3ee9d903bf7533448faf5456365a63852ab9ecb8bbdc1f69896d62c593"
    "2da7682099adfc865e9f94d2d3e544a60fccb01003e82d74ed33c2c08508031a69dc5d76ac4747eacc48fec9554d2655"
    "0c6a2b2191615b49c88cc948d44dfa77"
)

NAME_BYTES, VERSION_BYTES, GROUP_BYTES = 218, 24, 12
V2_NAME_BYTES = 242


# -- helpers ----------------------------------------------------------------------------

def fit(value: str, length: int) -> str:
    """The longest prefix of ``value``, in whole characters, whose UTF-8 fits in ``length``."""
    out = ""
    for char in value:
        if len((out + char).encode("utf-8")) > length:
            break
        out += char
    return out


def expected_group(group: str) -> str:
    return fit(group, GROUP_BYTES).strip() or VOCAL_GROUPS[0]


def field(value: bytes, length: int) -> bytes:
    assert len(value) <= length
    return value.ljust(length, b" ")


def v3_bytes(name: bytes, client_version: bytes, group: bytes, *, version=3, key=AUTH_KEY) -> bytes:
    """A version-3 header built by hand from the table in PROTOCOL.md."""
    return (struct.pack(">H", version) + field(name, NAME_BYTES)
            + field(client_version, VERSION_BYTES) + field(group, GROUP_BYTES) + key)


def v2_bytes(name: bytes, group: bytes) -> bytes:
    return struct.pack(">H", 2) + field(name, V2_NAME_BYTES) + field(group, GROUP_BYTES) + AUTH_KEY


# Names: mostly short, sometimes far past 218 bytes, with 1- to 4-byte UTF-8 characters.
MULTIBYTE = "aZ é ßж€中😀🎶"
names = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=MULTIBYTE, min_size=50, max_size=260),
    st.text(alphabet=st.characters(min_codepoint=0x80, exclude_categories=("Cs",)), min_size=60, max_size=120),
)
groups = st.one_of(st.sampled_from(VOCAL_GROUPS), st.text(max_size=8),
                   st.text(alphabet=MULTIBYTE, max_size=14))
versions = st.one_of(st.just("1.1.3"), st.text(alphabet=MULTIBYTE, max_size=30))


# -- the key and the layout -------------------------------------------------------------

def test_key_is_the_documented_256_bytes():
    assert AUTH_KEY == bytes.fromhex(KEY_HEX)
    assert len(AUTH_KEY) == 256


def test_key_equals_the_1_1_3_key():
    assert AUTH_KEY == THEIR_KEY


def test_layout_of_an_encoded_header():
    data = Header("Anna", "Alto", "choir 0.1").to_bytes()
    assert len(data) == HEADER_SIZE
    assert data[0:2] == b"\x00\x03"
    assert data[2:220] == b"Anna".ljust(218, b" ")
    assert data[220:244] == b"choir 0.1".ljust(24, b" ")
    assert data[244:256] == b"Alto".ljust(12, b" ")
    assert data[256:] == AUTH_KEY


def test_default_header_round_trips():
    header = Header.parse(Header().to_bytes())
    assert header == Header(name="", group="No group", client_version="", version=3)


def test_only_version_3_headers_are_sent():
    with pytest.raises(ValueError):
        Header(version=2).to_bytes()
    assert PROTOCOL_VERSION == 3


# -- version 3 round trip ---------------------------------------------------------------

@settings(max_examples=300)
@given(name=names, group=groups, client_version=versions)
@example(name="é" * 200, group="Soprano", client_version="1.1.3")
@example(name="a" + "😀" * 60, group="Baritone", client_version="x")
def test_v3_round_trip(name, group, client_version):
    data = Header(name, group, client_version).to_bytes()
    assert len(data) == HEADER_SIZE
    parsed = Header.parse(data)
    assert parsed.version == 3
    assert parsed.name == fit(name, NAME_BYTES).strip()
    assert parsed.group == expected_group(group)
    assert parsed.client_version == fit(client_version, VERSION_BYTES).strip()


@settings(max_examples=300)
@given(name=names)
@example(name="a" + "é" * 200)  # 'é' is 2 bytes: 218 is reached in the middle of one
@example(name="ab" + "😀" * 60)  # 4-byte characters, cut 2 bytes into one
def test_long_names_are_cut_without_splitting_a_character(name):
    raw = Header(name, "Alto").to_bytes()[2:220]
    kept = fit(name, NAME_BYTES)
    assert raw == kept.encode("utf-8").ljust(NAME_BYTES, b" ")
    raw.decode("utf-8")  # strict: no partial sequence was sent


def test_a_name_of_exactly_218_bytes_is_kept_whole():
    name = "é" * 109
    assert Header.parse(Header(name).to_bytes()).name == name


def test_fields_are_stripped():
    data = v3_bytes(b"  Anna  ", b" 1.1.3", b" Bass ")
    header = Header.parse(data)
    assert (header.name, header.client_version, header.group) == ("Anna", "1.1.3", "Bass")


def test_empty_group_means_no_group():
    assert Header.parse(v3_bytes(b"Anna", b"1.1.3", b"")).group == "No group"


# -- versions 1 and 2, built by hand ----------------------------------------------------

def test_parse_v2_header():
    name = "Zoë " + "x" * 230  # v2 names may be longer than 218 bytes
    data = v2_bytes(name.encode("utf-8"), b"Tenor")
    header = Header.parse(data)
    assert header.version == 2
    assert header.name == name
    assert header.group == "Tenor"
    assert header.client_version != "" and "2" in header.client_version


def test_parse_v2_header_with_empty_group():
    header = Header.parse(v2_bytes(b"Bob", b""))
    assert (header.name, header.group) == ("Bob", "No group")


def test_parse_v1_header_ignores_the_fields():
    data = struct.pack(">H", 1) + bytes(range(254)) + AUTH_KEY  # garbage where fields would be
    header = Header.parse(data)
    assert header.version == 1
    assert header.name == ""
    assert header.group == "No group"
    assert "1" in header.client_version


# -- invalid headers --------------------------------------------------------------------

def test_wrong_key_is_refused():
    bad_key = bytearray(AUTH_KEY)
    bad_key[100] ^= 1
    with pytest.raises(ProtocolError):
        Header.parse(v3_bytes(b"Anna", b"1.1.3", b"Alto", key=bytes(bad_key)))


def test_zero_key_is_refused():
    with pytest.raises(ProtocolError):
        Header.parse(v3_bytes(b"Anna", b"1.1.3", b"Alto", key=bytes(256)))


@pytest.mark.parametrize("version", [0, 5, 256, 768, 65535])
def test_unknown_versions_are_refused(version):
    with pytest.raises(ProtocolError):
        Header.parse(v3_bytes(b"Anna", b"1.1.3", b"Alto", version=version))


@pytest.mark.parametrize("length", [0, 1, 256, 511, 513, 1024])
def test_wrong_length_is_refused(length):
    good = Header("Anna").to_bytes()
    data = (good * 2)[:length]  # a prefix, or the header followed by more bytes
    with pytest.raises(ProtocolError):
        Header.parse(data)


def test_key_at_the_wrong_offset_is_refused():
    data = Header("Anna").to_bytes()
    shifted = data[:255] + data[256:] + b" "  # key one byte early
    assert len(shifted) == HEADER_SIZE
    with pytest.raises(ProtocolError):
        Header.parse(shifted)


@settings(max_examples=200)
@given(st.binary(min_size=HEADER_SIZE, max_size=HEADER_SIZE))
def test_random_bytes_are_refused(data):
    with pytest.raises(ProtocolError):
        Header.parse(data)


@settings(max_examples=200)
@given(version=st.integers(0, 65535), fields=st.binary(min_size=254, max_size=254))
def test_any_field_bytes_with_the_key_parse_or_refuse_cleanly(version, fields):
    """Whatever the field bytes (invalid UTF-8 included), only the version decides."""
    data = struct.pack(">H", version) + fields + AUTH_KEY
    if version in (1, 2, 3):
        header = Header.parse(data)
        assert header.version == version
        assert isinstance(header.name, str) and isinstance(header.group, str)
    else:
        with pytest.raises(ProtocolError):
            Header.parse(data)


# -- a name cut mid-character, as 1.1.3 does ---------------------------------------------

def test_name_cut_mid_character_decodes_leniently():
    name = "a" + "é" * 200  # 401 bytes; 1.1.3 keeps 218, the last one half of an 'é'
    raw_name = name.encode("utf-8")[:NAME_BYTES]
    with pytest.raises(UnicodeDecodeError):
        raw_name.decode("utf-8")
    header = Header.parse(v3_bytes(raw_name, b"1.1.3", b"Soprano"))
    assert header.name.startswith("a" + "é" * 108)
    assert len(header.name) <= 110  # at most a replacement for the broken character
    assert header.group == "Soprano"  # the neighbouring fields are untouched
    assert header.client_version == "1.1.3"


def test_group_cut_mid_character_decodes_leniently():
    raw_group = "Sopraño€".encode("utf-8")[:GROUP_BYTES]  # 12 bytes end inside the '€'
    header = Header.parse(v3_bytes(b"Anna", b"1.1.3", raw_group))
    assert header.group.startswith("Sopraño")
    assert header.name == "Anna"


# -- compatibility with the real 1.1.3 package ------------------------------------------

@settings(max_examples=200)
@given(name=names, group=groups)
@example(name="a" + "é" * 200, group="Alto")
def test_1_1_3_parses_our_header(name, group):
    theirs = AuthenticationHeader.from_bytes(Header(name, group, "choir-0.1").to_bytes())
    assert theirs.is_valid
    # 1.1.3 decodes strictly and falls back to '' on a split character: we never split one.
    assert theirs.name == fit(name, NAME_BYTES).strip()
    assert theirs.group == fit(group, GROUP_BYTES).strip()
    assert theirs.client_version == "choir-0.1"


@settings(max_examples=200)
@given(name=names, group=groups)
@example(name="a" + "é" * 200, group="Alto")
def test_we_parse_the_1_1_3_header(name, group):
    data = AuthenticationHeader(name, group).to_bytes()
    ours = Header.parse(data)
    assert ours.version == 3
    assert ours.client_version == "1.1.3"
    whole_name = fit(name, NAME_BYTES)
    if name.encode("utf-8")[:NAME_BYTES] == whole_name.encode("utf-8"):
        assert ours.name == whole_name.strip()  # 1.1.3 did not split a character
    else:
        assert ours.name.startswith(whole_name.strip())  # the broken tail is replaced
        assert len(ours.name) <= len(whole_name) + 1
    if group.encode("utf-8")[:GROUP_BYTES] == fit(group, GROUP_BYTES).encode("utf-8"):
        assert ours.group == expected_group(group)


@pytest.mark.parametrize("group", VOCAL_GROUPS)
def test_1_1_3_vocal_groups_both_ways(group):
    assert Header.parse(AuthenticationHeader("Eve", group).to_bytes()).group == group
    assert AuthenticationHeader.from_bytes(Header("Eve", group).to_bytes()).group == group


def test_1_1_3_refuses_what_we_refuse():
    bad = v3_bytes(b"Anna", b"1.1.3", b"Alto", version=5)
    assert not AuthenticationHeader.from_bytes(bad).is_valid
    with pytest.raises(ProtocolError):
        Header.parse(bad)


def test_1_1_3_refuses_a_room_header_which_is_how_a_client_learns_it_has_no_rooms():
    """Version 4 (a room block follows) is ours: 1.1.3's server takes it for an invalid
    header and closes, so our client naming a room is told at once."""
    room_header = Header("Anna", "Alto", "choir-singer 0.1.0", version=4).to_bytes()
    assert not AuthenticationHeader.from_bytes(room_header).is_valid
    assert Header.parse(room_header) == Header("Anna", "Alto", "choir-singer 0.1.0", version=4)
