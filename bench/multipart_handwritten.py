"""The hand-written multipart parser choir had before it took the ``multipart`` package
(choir_twisted/runners/multipart.py at aff89c9, ``parse_multipart`` only), kept for
bench/multipart_parsers.py's "before" row."""
import re

CHUNK = 64 * 1024
MAX_FIELD_BYTES = 64 * 1024
MAX_PART_HEAD = 16384


class MultipartError(ValueError):
    pass


_PARAM = re.compile(r';\s*([A-Za-z0-9_*-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]*))')


def _params(header: str) -> dict:
    return {m.group(1).lower(): (re.sub(r"\\(.)", r"\1", m.group(2)) if m.group(2) is not None
                                 else m.group(3)) for m in _PARAM.finditer(header)}


def multipart_boundary(content_type: str) -> bytes:
    if not content_type.split(";")[0].strip().lower() == "multipart/form-data":
        raise MultipartError("not multipart/form-data")
    boundary = _params(content_type).get("boundary")
    if not boundary or len(boundary) > 200:
        raise MultipartError("multipart/form-data without a valid boundary")
    return boundary.encode("latin-1")


def _disposition(head: bytes):
    """A part's (name, filename) from its headers (after the delimiter line's rest)."""
    name = filename = None
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.decode("utf-8", "replace").partition(":")
        if key.strip().lower() == "content-disposition":
            params = _params(value)
            name, filename = params.get("name"), params.get("filename")
    if name is None:
        raise MultipartError("multipart part without a name")
    return name, filename


def parse_multipart(fp, content_type: str, open_file=lambda name, filename: None,
                    max_field: int = MAX_FIELD_BYTES):
    """Reads multipart/form-data from the file ``fp`` in CHUNK-sized pieces.

    -> (fields {name: str}, files {name: filename}). ``open_file(name, filename)`` returns
    a writable file for a file part's content, or None to skip it. Raises MultipartError."""
    delim = b"\r\n--" + multipart_boundary(content_type)
    fields, files = {}, {}
    buf, eof = b"\r\n", False  # the leading CRLF makes the first delimiter like the others

    def fill():
        nonlocal buf, eof
        data = fp.read(CHUNK)
        if not data:
            eof = True
        buf += data

    while True:  # the preamble
        i = buf.find(delim)
        if i >= 0:
            buf = buf[i + len(delim):]
            break
        if eof:
            raise MultipartError("no multipart boundary found in the body")
        buf = buf[-len(delim):]
        fill()
    while True:
        while len(buf) < 2 and not eof:
            fill()
        if buf.startswith(b"--"):
            return fields, files
        while b"\r\n\r\n" not in buf:
            if eof or len(buf) > MAX_PART_HEAD:
                raise MultipartError("malformed multipart part headers")
            fill()
        head, buf = buf.split(b"\r\n\r\n", 1)
        name, filename = _disposition(head)
        sink = open_file(name, filename) if filename is not None else None
        value = bytearray()
        keep = len(delim) - 1

        def emit(data):
            if filename is not None:
                if sink is not None:
                    sink.write(data)
            else:
                value.extend(data)
                if len(value) > max_field:
                    raise MultipartError(f"field {name} is longer than {max_field} bytes")

        while True:
            i = buf.find(delim)
            if i >= 0:
                emit(buf[:i])
                buf = buf[i + len(delim):]
                break
            if eof:
                raise MultipartError("unterminated multipart body")
            if len(buf) > keep:
                emit(buf[:-keep])
                buf = buf[-keep:]
            fill()
        if filename is None:
            try:
                fields[name] = value.decode("utf-8")
            except UnicodeDecodeError:
                raise MultipartError(f"field {name} is not UTF-8")
        else:
            files[name] = filename
