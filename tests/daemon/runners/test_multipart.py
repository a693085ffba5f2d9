"""choir_twisted.runners.multipart: the ``multipart`` package with our limits and errors."""
import io
import os
import subprocess
import sys

import multipart as multipart_package
import pytest

from choir_twisted.runners.multipart import (CHUNK, MAX_PART_HEAD, MAX_PART_HEADERS, MultipartError,
                                             leading_fields, multipart_boundary, parse_multipart)

CTYPE = "multipart/form-data; boundary=B"


def part(name, value: bytes, filename=None, headers=b"") -> bytes:
    disposition = f'form-data; name="{name}"' + ("" if filename is None else
                                                 f'; filename="{filename}"')
    return (b"--B\r\nContent-Disposition: " + disposition.encode() + b"\r\n" + headers
            + b"\r\n" + value + b"\r\n")


class Reads(io.BytesIO):
    """A body file that gives at most ``size`` bytes a read."""

    def __init__(self, data, size):
        super().__init__(data)
        self.size = size

    def read(self, n=-1):
        return super().read(min(n, self.size))


class Sink(io.BytesIO):
    def __init__(self):
        super().__init__()
        self.pieces = []

    def write(self, data):
        self.pieces.append(len(data))
        return super().write(data)


def parse(body, ctype=CTYPE, **kw):
    sinks = {}

    def open_file(name, filename):
        sinks[name] = Sink()
        return sinks[name]
    fields, files = parse_multipart(io.BytesIO(body), ctype, open_file, **kw)
    return fields, files, {name: s.getvalue() for name, s in sinks.items()}


def test_the_package_is_the_right_multipart(tmp_path):
    assert hasattr(multipart_package, "PushMultipartParser")
    (tmp_path / "multipart").mkdir()  # what python-multipart < 0.0.13 installs
    (tmp_path / "multipart" / "__init__.py").write_text("class MultipartParser: pass\n")
    run = subprocess.run([sys.executable, "-c", "import choir_twisted.runners.multipart"],
                         env={**os.environ, "PYTHONPATH": str(tmp_path)},
                         capture_output=True, text=True)
    assert run.returncode and "needs the package multipart >= 2, < 3" in run.stderr


def test_fields_and_files_in_any_pieces():
    data = os.urandom(3000) + b"\r\n--" + os.urandom(3000) + b"\r\n-B\r" + os.urandom(100)
    body = (b"preamble\r\n" + part("a", "é".encode()) + part("f", data, "x.bin")
            + part("b", b"") + b"--B--\r\nepilogue")
    for size in (1, 2, 3, 7, 64, 4096):
        sink = Sink()
        fields, files = parse_multipart(Reads(body, size), CTYPE, lambda n, fn: sink)
        assert (fields, files, sink.getvalue()) == ({"a": "é", "b": ""}, {"f": "x.bin"}, data)


def test_a_file_part_is_streamed_not_held():
    data = os.urandom(10 * CHUNK)
    sink = Sink()
    parse_multipart(io.BytesIO(part("f", data, "v.mp4") + b"--B--\r\n"), CTYPE,
                    lambda n, fn: sink)
    assert sink.getvalue() == data and len(sink.pieces) >= 10 and max(sink.pieces) <= CHUNK


def test_skipped_files_and_empty_bodies():
    body = part("f", b"xyz", "skip.bin") + part("a", b"1") + b"--B--\r\n"
    assert parse_multipart(io.BytesIO(body), CTYPE) == ({"a": "1"}, {"f": "skip.bin"})
    assert parse(b"--B--\r\n") == ({}, {}, {})


@pytest.mark.parametrize("body, error", [
    (part("a", b"v" * 70000) + b"--B--\r\n", "field a is longer than 65536 bytes"),
    (part("a", b"\xff") + b"--B--\r\n", "field a is not UTF-8"),
    (b"--B\r\nContent-Type: text/plain\r\n\r\nx\r\n--B--\r\n", "multipart part without a name"),
    (b"--B\r\nContent-Disposition: form-data\r\n\r\nx\r\n--B--\r\n", "without a name"),
    (b"no form here", "no multipart boundary found in the body"),
    (b"", "no multipart boundary found in the body"),
    (part("a", b"1") + b"--B\r\nContent-Disposition: form-data; name=", "unterminated"),
    (part("f", b"123", "f.bin"), "unterminated multipart body"),
    (part("a", b"1", headers=b"X: " + b"y" * MAX_PART_HEAD + b"\r\n") + b"--B--\r\n",
     "header length"),
    (part("a", b"1", headers=b"X: y\r\n" * MAX_PART_HEADERS) + b"--B--\r\n", "header count"),
])
def test_what_is_refused(body, error):
    with pytest.raises(MultipartError, match=error):
        parse(body)


def test_a_smaller_field_limit():
    with pytest.raises(MultipartError, match="longer than 10 bytes"):
        parse(part("a", b"v" * 11) + b"--B--\r\n", max_field=10)
    assert parse(part("a", b"v" * 10) + b"--B--\r\n", max_field=10)[0] == {"a": "v" * 10}


@pytest.mark.parametrize("ctype, boundary", [
    ("multipart/form-data; boundary=B", b"B"),
    ('Multipart/Form-Data;boundary="a b"', b"a b"),
    ("multipart/form-data; charset=utf-8; boundary=----x1", b"----x1"),
])
def test_boundaries(ctype, boundary):
    assert multipart_boundary(ctype) == boundary


@pytest.mark.parametrize("ctype", [
    "multipart/mixed; boundary=B", "application/json", "", "multipart/form-data",
    "multipart/form-data; boundary=", "multipart/form-data; boundary=" + "a" * 201])
def test_no_boundary(ctype):
    with pytest.raises(MultipartError):
        multipart_boundary(ctype)


def test_leading_fields_stop_at_the_first_file():
    body = part("runnerToken", b"r") + part("f", b"x" * 100, "f.bin") + part("late", b"1")
    assert leading_fields(body, b"B") == ({"runnerToken": "r"}, True)
    assert leading_fields(b"", b"B") == ({}, False)
    start = b"preamble\r\n" + part("a", b"1") + b"--B\r\n"
    assert leading_fields(start, b"B") == ({"a": "1"}, False)
