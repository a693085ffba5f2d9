"""multipart/form-data, streaming: the bodies of result uploads, media uploads, studio edits.

``parse_multipart`` reads a whole body from a file in CHUNK-sized pieces (fields in memory,
bounded; file parts to the sinks the caller opens). ``leading_fields`` reads the fields at the
start of a body still arriving: the runner's tokens come before its files, so they can be
checked before a byte of the files is stored (``upload_gate``).

The parsing is the ``multipart`` package's ``PushMultipartParser`` (sans-IO, its header limits
built in; faster than the parser we had: bench/multipart_parsers.py). This module is the thin
layer around it: our limits on fields and on the preamble, a part's name required, our errors.
"""
import multipart

if not hasattr(multipart, "PushMultipartParser"):  # python-multipart < 0.0.13 took the name
    raise ImportError(f"choir needs the package multipart >= 2, < 3; the module multipart at "
                      f"{multipart.__file__} is another one (python-multipart < 0.0.13, or "
                      f"a multipart.py in the script's folder?)")

CHUNK = 64 * 1024
MAX_FIELD_BYTES = 64 * 1024
MAX_PART_HEAD = 16384  # a part's header line; the preamble of a body still arriving
MAX_PART_HEADERS = 8  # header lines of a part (RFC 7578 has 3 kinds)
MAX_BOUNDARY = 200


class MultipartError(ValueError):
    pass


def multipart_boundary(content_type: str) -> bytes:
    kind, options = multipart.parse_options_header(content_type)
    if kind != "multipart/form-data":
        raise MultipartError("not multipart/form-data")
    boundary = options.get("boundary")
    if not boundary or len(boundary) > MAX_BOUNDARY:
        raise MultipartError("multipart/form-data without a valid boundary")
    return boundary.encode("latin-1")


class _NamedPartsParser(multipart.PushMultipartParser):
    """The package's parser, refusing a part without a name (it would name it "")."""

    def _create_segment(self, headerlist):  # the package's documented extension point
        if multipart.MultipartSegment(headerlist).name is None:
            raise multipart.ParserError("multipart part without a name")
        return super()._create_segment(headerlist)


class _Form:
    """The fields and file parts of one body, fed to it in pieces (sans-IO).

    ``open_file(name, filename)`` returns a writable file for a file part's content, or None
    to skip it; ``open_file`` None: stop at the first file part (``file_begun``)."""

    def __init__(self, boundary: bytes, open_file, max_field: int):
        self.fields, self.files = {}, {}
        self.file_begun = False
        self._open_file, self._max_field = open_file, max_field
        self._part = self._sink = None
        self._value = bytearray()
        self._parts = 0
        try:
            self._parser = _NamedPartsParser(boundary, max_header_size=MAX_PART_HEAD,
                                             max_header_count=MAX_PART_HEADERS)
        except multipart.MultipartError as e:
            raise _ours(e) from None

    def feed(self, data: bytes):
        """``data``: the next piece of the body; b"": its end. Raises MultipartError."""
        try:
            self._parse(data)
        except multipart.MultipartError as e:
            if data:
                raise _ours(e) from None
            raise MultipartError("unterminated multipart body" if self._parts else  # too soon
                                 "no multipart boundary found in the body") from None

    def may_end(self) -> bool:
        """Whether the body may end here (its closing delimiter is read). Ends the parse."""
        try:
            self._parser.close()
        except multipart.MultipartError:
            return False
        return True

    def _parse(self, data):
        for event in self._parser.parse(data):
            if isinstance(event, multipart.MultipartSegment):
                self._begin(event)
                if self.file_begun:
                    return
            elif event is None:
                self._end()
            elif self._part.filename is None:
                self._value += event
                if len(self._value) > self._max_field:
                    raise MultipartError(f"field {self._part.name} is longer than "
                                         f"{self._max_field} bytes")
            elif self._sink is not None:
                self._sink.write(event)

    def _begin(self, part):
        self._part, self._value, self._sink = part, bytearray(), None
        self._parts += 1
        if part.filename is not None:
            if self._open_file is None:
                self.file_begun = True
            else:
                self._sink = self._open_file(part.name, part.filename)

    def _end(self):
        part = self._part
        if part.filename is not None:
            self.files[part.name] = part.filename
            return
        try:
            self.fields[part.name] = self._value.decode("utf-8")
        except UnicodeDecodeError:
            raise MultipartError(f"field {part.name} is not UTF-8")


def _ours(e: multipart.MultipartError) -> MultipartError:
    return MultipartError(str(e.args[0]) if e.args else type(e).__name__)


def parse_multipart(fp, content_type: str, open_file=lambda name, filename: None,
                    max_field: int = MAX_FIELD_BYTES):
    """Reads multipart/form-data from the file ``fp`` in CHUNK-sized pieces.

    -> (fields {name: str}, files {name: filename}). ``open_file(name, filename)`` returns
    a writable file for a file part's content, or None to skip it. Raises MultipartError."""
    form = _Form(multipart_boundary(content_type), open_file, max_field)
    while True:
        data = fp.read(CHUNK)
        form.feed(data)  # (read on to the end: what follows the closing delimiter is dropped)
        if not data:
            return form.fields, form.files


def leading_fields(start: bytes, boundary: bytes, max_field: int = MAX_FIELD_BYTES):
    """The fields before the first file part, from the ``start`` of a body still arriving.

    -> (fields {name: str}, complete): ``complete`` once a file part has begun or the body
    has ended (no more fields will come before a file); until then the fields whole so far.
    Raises MultipartError for what cannot begin a valid body."""
    form = _Form(boundary, None, max_field)
    if start:
        form.feed(start)
    if form.file_begun:
        return form.fields, True
    if len(start) > MAX_PART_HEAD and b"--" + boundary not in start:
        raise MultipartError("no multipart boundary found in the body")
    return form.fields, form.may_end()
