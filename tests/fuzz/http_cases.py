"""The HTTP fuzz target: raw requests to every route of the runner, media and admin APIs.

Requests are built from the Klein apps' own route lists (a new route is fuzzed without
being named here). Each request is right but for at most two of its parts, the faults,
so that most cases get past the first check and reach the route's logic:

    method, path (the route's arguments junk), query, Host, Authorization, body fields,
    body (JSON too deep or not JSON, multipart cut or malformed, junk), Content-Type,
    framing (Content-Length wrong or junk, chunked and malformed), extra headers, version

Right values name the store's real objects (``Ref``: a processing job and its token, a
media and its files, every kind of token). A case is one or two requests on one
connection (pipelined), cut anywhere, sometimes abandoned by the client before the answer.
Any 5xx or logged failure is a bug.

Over 400 lines: a generator for each route's body kind (JSON, multipart, query), which the
fuzz target and bench/fuzz.py share.
"""
import contextlib
import json
import re
from urllib.parse import quote

from hypothesis import strategies as st
from twisted.internet import reactor

from choir_protocol.runners.jobs import JobType
from choir_twisted.publishing.media_api import MediaAPI
from choir_twisted.runners.admin_api import AdminAPI
from choir_twisted.runners.api import RunnerAPI

from .daemon import PLAYLIST, WAV, Cat, Daemon, Ref, render, resolve
from .harness import Target, pump
from .wire import CUTS, split

PARTS = ("method", "path", "query", "host", "auth", "fields", "body", "content_type",
         "framing", "headers", "version")

# -- paths -------------------------------------------------------------------------------------

ROUTES = sorted({(rule.rule, frozenset(rule.methods))
                 for api in (RunnerAPI, MediaAPI, AdminAPI)
                 for rule in api.app.url_map.iter_rules()}, key=lambda r: (r[0], sorted(r[1])))
ARGUMENT = re.compile(r"<(?:[a-z]+:)?(\w+)>")
# what a route argument names in the store, when it is right
ARGUMENT_REFS = {"uuid": ["job", "pending_job"], "job_uuid": ["job"],
                 "video_id": ["media_id", "job"], "filename": ["task_file"],
                 "media_id": ["media_id"], "name": ["file_name"], "runner_id": ["runner_id"],
                 "token_id": ["registration_token_id"], "expires": ["link_expires"],
                 "sig": ["link_sig"]}
OTHER_ARGUMENTS = st.sampled_from(["x", "jobs", "registration-tokens/x", "a/b/c"])  # <path:rest>

JUNK_SEGMENT = st.one_of(
    st.sampled_from(["", "..", "%2e%2e", ".", "%ff", "%00", "%", "%zz", "%ED%A0%80", "%c0%af",
                     "x%2Fy", "a" * 3000, "0", "-1", "1" * 30, "null", "%20", "ptrt-x",
                     "ptrjt-x", "ptrrt-x", "%F0%9F%8E%B5", "x?y", "x#y", "\\", "%ff/%fe"]),
    st.text(max_size=30).map(lambda t: quote(t.encode("utf-8", "surrogatepass"), safe="")))


def path_of(template, argument):
    """The route's path, each argument drawn from ``argument(name)``."""
    parts, at = [], 0
    for match in ARGUMENT.finditer(template):
        parts += [st.just(template[at:match.start()]), argument(match.group(1))]
        at = match.end()
    return st.tuples(*parts, st.just(template[at:])).map(Cat)


def right_argument(name):
    refs = ARGUMENT_REFS.get(name)
    return st.sampled_from([Ref(r) for r in refs]) if refs else OTHER_ARGUMENTS


def wrong_path(template):
    return st.one_of(
        path_of(template, lambda name: JUNK_SEGMENT),
        path_of(template, right_argument).map(lambda p: Cat((p, "/"))),
        st.tuples(path_of(template, right_argument),
                  st.sampled_from(["//", "/x", "%2F", ";x", "/..", "%00"])).map(Cat),
        st.sampled_from(["/", "/socket.io/", "/socket.io/?EIO=4&transport=polling", "/api",
                         "/api/v1", "/api/v1/", "/api/v1/runners/", "*",
                         "http://example.org/api/v1/media", "/api/v1/media/../runners",
                         "//api/v1/media", "/" + "a" * 20000, "api/v1/media", "/%ff"]))


# made once: building a strategy costs more than drawing from it
RIGHT_PATHS = {template: path_of(template, right_argument) for template, _ in ROUTES}
WRONG_PATHS = {template: wrong_path(template) for template, _ in ROUTES}

METHODS = st.sampled_from(["GET", "POST", "HEAD", "DELETE", "PUT", "PATCH", "OPTIONS", "get",
                           "TRACE", "CONNECT", "G\x00T", "", "POST POST", b"GE\xffT"])

QUERY_KEYS = st.sampled_from(["start", "count", "sort", "stateOneOf", "stateOneOf[]",
                              "typeOneOf", "search", "includeRevoked", "EIO", "transport", "x",
                              "%ff", ""])
QUERY_VALUES = st.one_of(
    st.sampled_from(["0", "1", "15", "100", "101", "-1", "1e3", "0x10", "createdAt",
                     "-createdAt", "updatedAt", "-x", "true", "false", "2", "9", "10", "%ff",
                     "%ED%A0%80", "", "1" * 5000, *sorted(JobType.ALL)]),
    st.text(max_size=20).map(lambda t: quote(t.encode("utf-8", "surrogatepass"), safe="")))
RIGHT_QUERY = st.lists(st.sampled_from(
    ["start=0", "count=15", "count=100", "sort=-createdAt", "sort=createdAt", "stateOneOf=1",
     "stateOneOf=2", "typeOneOf=vod-hls-transcoding", "search=fuzz", "includeRevoked=true"]),
    max_size=3)
WRONG_QUERY = st.lists(st.tuples(QUERY_KEYS, QUERY_VALUES).map("=".join), min_size=1,
                       max_size=4)

# -- bodies ------------------------------------------------------------------------------------

TEXT = st.one_of(
    st.text(max_size=20),
    st.text(st.characters(categories=["Cs", "Cc", "Lo"]), max_size=5),  # lone surrogates
    st.sampled_from(["", " ", "a" * 300, "\x00", "\ud800", "x\udfffy", "%s%n{0}{x}"]))
JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(-2**70, 2**70)
    | st.floats() | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8)

RIGHT_TASKS = st.lists(st.one_of(
    st.fixed_dictionaries({"name": st.just("cut"), "options": st.fixed_dictionaries(
        {}, optional={"start": st.integers(0, 3), "end": st.integers(0, 3)})}),
    st.fixed_dictionaries({"name": st.sampled_from(["add-intro", "add-outro", "add-watermark"]),
                           "options": st.just({"file": "tasks[0][options][file]"})})),
    min_size=1, max_size=2)
WRONG_TASKS = st.one_of(
    st.lists(st.fixed_dictionaries({
        "name": st.sampled_from(["cut", "add-intro", "x"]) | JSON_VALUE,
        "options": st.fixed_dictionaries({}, optional={
            "start": st.integers(-5, 100) | st.floats() | TEXT,
            "end": st.integers(-5, 100) | st.floats() | TEXT, "file": TEXT}) | JSON_VALUE}),
        max_size=3),
    st.lists(st.just({"name": "cut"}), min_size=11, max_size=11), JSON_VALUE)
# every JSON field a route reads, right: a route ignores the others
RIGHT_FIELDS = {
    "registrationToken": st.just(Ref("registration_token")),
    "runnerToken": st.just(Ref("runner_token")),
    "jobToken": st.just(Ref("job_token")),
    "name": st.text("abcdefghij-", min_size=1, max_size=12).map(lambda t: "fuzz-" + t),
    "description": st.text(max_size=10), "version": st.just("6.0.0"),
    "reason": st.just("fuzz"), "message": st.just("fuzz failed"),
    "progress": st.integers(0, 100),
    "jobTypes": st.lists(st.sampled_from(sorted(JobType.ALL)), max_size=2),
    "tasks": RIGHT_TASKS,
}
WRONG_FIELDS = {
    **{name: JSON_VALUE for name in RIGHT_FIELDS},
    "message": TEXT | st.just("e" * 100001), "name": TEXT | st.just("n" * 201),
    "progress": st.one_of(st.integers(-5, 105), st.floats(), st.booleans(),
                          st.sampled_from(["50", " 7 ", "x", "1e2"])),
    "jobTypes": st.lists(st.sampled_from(sorted(JobType.ALL)) | TEXT, max_size=3) | JSON_VALUE,
    "tasks": WRONG_TASKS, "payload": JSON_VALUE,
}


@st.composite
def json_fields(draw, wrong):
    """The route fields, all right, or with one to three of them wrong or missing."""
    fields = {name: draw(value) for name, value in RIGHT_FIELDS.items()
              if draw(st.integers(0, 5))}  # now and then one is missing
    if wrong:
        for name in draw(st.lists(st.sampled_from(sorted(WRONG_FIELDS)), min_size=1,
                                  max_size=3)):
            fields[name] = draw(WRONG_FIELDS[name])
    return fields


NOT_JSON = st.sampled_from([
    b"[" * 100000, b'{"a":' * 50000, b"1" * 5000, b"NaN", b'{"runnerToken": Infinity}',
    b'{"a": 1e999}', b'{"runnerToken": "\\ud800"}', b"\xff\xfe{}", b'{"a":1,}', b"",
    b"null", b"[]", b'"x"', b"\x00" * 10, b'{"runnerToken": "ptrt-' + b"x" * 20000 + b'"}',
    b"\xef\xbb\xbf{}", b'{"runnerToken": "a", "runnerToken": "b"}'])

FILE_CONTENT = st.one_of(st.just(WAV), st.just(PLAYLIST), st.binary(max_size=64),
                         st.just(b"--fuzz\r\n" * 3), st.just(b"WEBVTT\n\n"))
# the form parts routes read, right (tokens first, as runners send them)
RIGHT_PARTS = [
    ("runnerToken", None, Ref("runner_token")), ("jobToken", None, Ref("job_token")),
    ("progress", None, "42"), ("payload[inputLanguage]", None, "en"),
    ("payload[videoFile]", "video.mp4", WAV),
    ("payload[resolutionPlaylistFile]", "video.m3u8", PLAYLIST),
    ("payload[vttFile]", "captions.vtt", b"WEBVTT\n\n"),
    ("file", "upload.wav", WAV), ("name", None, "fuzz upload"),
    ("webhook", None, "http://127.0.0.1:9/hook"),
    ("tasks[0][name]", None, "cut"), ("tasks[0][options][end]", None, "0.02"),
]
PART_NAMES = st.sampled_from([p[0] for p in RIGHT_PARTS] + [
    "tasks[0][options][file]", "tasks[1][name]", "tasks[x][name]", "tasks[99][name]",
    "tasks[0]", "", 'a"b', "\ud800"])
PART_VALUES = st.one_of(TEXT, st.binary(max_size=20), st.sampled_from(
    [Ref("runner_token"), Ref("job_token"), "http://127.0.0.1:9/hook", "cut", "add-intro",
     "1", "x" * 70000]))
FILENAMES = st.sampled_from(["a.mp4", "a.m3u8", "a.vtt", "a.wav", "../../x.html", "", "a\ud800.mp4",
                             'q"x', "a" * 300])


@st.composite
def wrong_part(draw):
    name = draw(PART_NAMES)
    filename = draw(FILENAMES) if draw(st.booleans()) else None
    return name, filename, draw(FILE_CONTENT if filename is not None else PART_VALUES)


def part_bytes(name, filename, content, header="Content-Disposition: form-data; ", extra=""):
    disposition = f'name="{name}"' + ("" if filename is None else f'; filename="{filename}"')
    return Cat((header, disposition, "\r\n", extra, "\r\n", content, "\r\n"))


@st.composite
def multipart(draw, wrong):
    """A form of the right parts (a subset, in order); wrong: parts added, headers broken,
    a strange boundary, the body cut short."""
    parts = [p for p in RIGHT_PARTS if draw(st.integers(0, 2))]
    boundary, header, extra, cut = "fuzzboundary", "Content-Disposition: form-data; ", "", None
    if wrong:
        fault = draw(st.sampled_from(["parts", "header", "boundary", "cut", "end"]))
        if fault == "parts":
            for part in draw(st.lists(wrong_part(), min_size=1, max_size=3)):
                parts.insert(draw(st.integers(0, len(parts))), part)
        elif fault == "header":
            header = draw(st.sampled_from(["content-disposition:", "X: ", "Content-Disposition:"
                                           " attachment; "]))
            extra = draw(st.sampled_from(["", "Content-Type: x\r\n", "X: " + "y" * 20000 + "\r\n"]))
        elif fault == "boundary":
            boundary = draw(st.one_of(st.text("abcXYZ019'()+_,-./:=? ", min_size=1, max_size=70),
                                      st.just("a" * 300)))
        elif fault == "cut":
            cut = draw(st.floats(0, 1))
    pieces = [x for p in parts for x in ("--" + boundary + "\r\n", part_bytes(*p, header, extra))]
    end = "" if wrong and fault == "end" else "--" + boundary + "--\r\n"
    return ("multipart", Cat(tuple(pieces) + (end,)), cut), \
        f"multipart/form-data; boundary={boundary}"


RIGHT_BODY = st.one_of(
    json_fields(False).map(lambda f: (("json", f, True), "application/json")),
    json_fields(False).map(lambda f: (("json", f, False), "application/json; charset=utf-8")),
    multipart(False),
    st.just((("raw", b""), None)))
FIELDS_WRONG_BODY = st.one_of(
    json_fields(True).map(lambda f: (("json", f, True), "application/json")), multipart(True))


WRONG_BODY = st.one_of(
    st.tuples(st.tuples(st.just("raw"), NOT_JSON | st.binary(max_size=100)),
              st.just("application/json")),
    st.tuples(st.tuples(st.just("json"), JSON_VALUE, st.booleans()), st.just("application/json")),
    multipart(True))
CONTENT_TYPES = st.sampled_from([
    None, "text/plain", "application/octet-stream", "application/json; charset=latin-1",
    "multipart/form-data", "multipart/form-data; boundary=", "multipart/form-data; boundary=other",
    'multipart/form-data; boundary="fuzzboundary"', "Multipart/Form-Data;boundary=fuzzboundary",
    "multipart/mixed; boundary=fuzzboundary", "application/x-www-form-urlencoded", "\xff"])


def render_body(body, daemon) -> bytes:
    kind = body[0]
    if kind == "json":
        _, obj, ascii_only = body
        text = json.dumps(resolve(obj, daemon), ensure_ascii=ascii_only)
        return text.encode("utf-8", "surrogatepass")
    if kind == "multipart":
        data = render(body[1], daemon)
        return data if body[2] is None else data[:int(body[2] * len(data))]
    return body[1]


# -- headers and framing -------------------------------------------------------------------------

RIGHT_HOST = st.sampled_from(["localhost:8000", "localhost", "127.0.0.1:8000", "[::1]:8000",
                              "choir.example.org"])
WRONG_HOST = st.one_of(st.none(), st.sampled_from(
    ["a b", "a" * 300, "x:y:z", "", "\xff", "localhost:99999", "a..b", ".", "[::1", "%41"]), TEXT)
RIGHT_AUTH = st.sampled_from([Cat(("Bearer ", Ref("api_token"))),
                              Cat(("Bearer ", Ref("operator_token"))), None])
WRONG_AUTH = st.one_of(
    st.none(),
    st.sampled_from([Cat(("Bearer ", Ref("runner_token"))),
                     Cat(("Bearer ", Ref("registration_token"))),
                     Cat(("Bearer  ", Ref("api_token"), " x")),
                     "Bearer", "Bearer ", "bearer choir-x", "Basic dXNlcjpwYXNz", "Bearer \xff",
                     "Bearer " + "x" * 10000, "Bearer a b", "Bearer\tchoir-x", b"Bearer \xff\xfe"]),
    TEXT.map(lambda t: "Bearer " + t))
EXTRA_HEADERS = {
    "Range": st.one_of(st.sampled_from(
        ["bytes=0-", "bytes=0-0", "bytes=-5", "bytes=5-2", "bytes=0-1,2-3", "bytes=-0",
         "bytes=" + ",".join(["0-"] * 100), "bytes=99999999-", "bytes=x-y", "items=0-1",
         "bytes=0-" + "9" * 30, "bytes=99999-,99998-", "bytes=-0,-0", b"bytes=\xff-"]),
        TEXT.map(lambda t: "bytes=" + t)),
    "X-Forwarded-Proto": st.sampled_from(["https", "http", "gopher", "https, http", ""]),
    "X-Forwarded-Host": st.sampled_from(["example.org", "a b", "", "x" * 300, "\xff"]),
    "X-Forwarded-For": st.sampled_from(["1.2.3.4", "x", ""]),
    "Expect": st.sampled_from(["100-continue", "x"]),
    "Connection": st.sampled_from(["close", "keep-alive", "Upgrade", "close, Upgrade"]),
    "Upgrade": st.sampled_from(["websocket", "h2c"]),
    "Sec-WebSocket-Key": st.sampled_from(["dGhlIHNhbXBsZSBub25jZQ==", "x"]),
    "Sec-WebSocket-Version": st.sampled_from(["13", "8", "x"]),
    "Cookie": st.sampled_from(["a=b", "=", ";;", "a=\xff"]),
    "If-Modified-Since": st.sampled_from(["Thu, 01 Jan 1970 00:00:00 GMT", "x", "0"]),
    "If-Range": st.sampled_from(["x", '"etag"']),
    "Content-Encoding": st.sampled_from(["gzip", "x"]),
}
RIGHT_HEADERS = st.fixed_dictionaries({}, optional={
    "Connection": st.sampled_from(["close", "keep-alive"]),
    "Range": st.sampled_from(["bytes=0-", "bytes=0-9", "bytes=-5"]),
    "Expect": st.just("100-continue")})
WRONG_HEADERS = st.tuples(
    st.fixed_dictionaries({}, optional=EXTRA_HEADERS),
    st.lists(st.sampled_from([
        "X-Junk: \x00", "NoColon", ": empty", "Content-Length: 5", "Transfer-Encoding: gzip",
        "X-Long: " + "y" * 17000, " folded", "Host: second", "Content-Type: text/plain",
        "Authorization: Bearer second"]), max_size=2))

RIGHT_FRAMING = st.one_of(st.just(("length",)), st.just(("length",)),
                          st.tuples(st.just("chunked"), st.lists(st.integers(1, 300), max_size=3),
                                    st.just("")))
WRONG_FRAMING = st.one_of(
    st.just(("none",)),
    st.tuples(st.just("wrong"), st.integers(-20, 20)),
    st.tuples(st.just("junk"), st.sampled_from(["-1", "x", "99999999999", "1e3", "0x10", " 5",
                                                "5, 5", str(2**64), "", "+5"])),
    st.tuples(st.just("chunked"), st.lists(st.integers(1, 300), max_size=4),
              st.sampled_from(["bad-size", "no-end", "trailer", "ext", "both"])))
VERSIONS = st.sampled_from(["HTTP/1.0", "HTTP/2.0", "HTTP/1.x", "", "HTTP/1.1 x", "http/1.1"])


def frame(body: bytes, framing) -> tuple[list, bytes]:
    """-> (framing header lines, body bytes as sent)."""
    kind = framing[0]
    if kind == "length":
        return [f"Content-Length: {len(body)}"], body
    if kind == "none":
        return [], body
    if kind == "wrong":
        return [f"Content-Length: {max(0, len(body) + framing[1])}"], body
    if kind == "junk":
        return [f"Content-Length: {framing[1]}"], body
    sizes, fault = framing[1], framing[2]
    pieces, at = [], 0
    for size in sizes + [len(body)]:
        piece = body[at:at + size]
        at += len(piece)
        if piece:
            ext = ";x=y" if fault == "ext" else ""
            pieces.append(b"%x%s\r\n%s\r\n" % (len(piece), ext.encode(), piece))
    end = {"no-end": b"", "trailer": b"0\r\nX-Trailer: y\r\n\r\n"}.get(fault, b"0\r\n\r\n")
    if fault == "bad-size":
        pieces.insert(0, b"zz\r\n")
    lines = ["Transfer-Encoding: chunked"]
    if fault == "both":
        lines.append(f"Content-Length: {len(body)}")
    return lines, b"".join(pieces) + end


# -- requests --------------------------------------------------------------------------------------

@st.composite
def request(draw):
    faults = draw(st.sets(st.sampled_from(PARTS), max_size=2))

    def part(name, right, wrong):
        return draw(wrong if name in faults else right)

    template, methods = draw(st.sampled_from(ROUTES))
    method = part("method", st.sampled_from(sorted(methods)), METHODS)
    path = part("path", RIGHT_PATHS[template], WRONG_PATHS[template])
    query = part("query", RIGHT_QUERY, WRONG_QUERY)
    if query:
        path = Cat((path, "?" + "&".join(query)))
    headers = {"Host": part("host", RIGHT_HOST, WRONG_HOST),
               "Authorization": part("auth", RIGHT_AUTH, WRONG_AUTH)}
    if "body" in faults:
        body, ctype = draw(WRONG_BODY)
    elif "fields" in faults:
        body, ctype = draw(FIELDS_WRONG_BODY)
    else:
        body, ctype = draw(RIGHT_BODY)
    headers["Content-Type"] = part("content_type", st.just(ctype), CONTENT_TYPES)
    extra, junk_lines = part("headers", st.tuples(RIGHT_HEADERS, st.just([])), WRONG_HEADERS)
    headers.update(extra)
    return (method, path, part("version", st.just("HTTP/1.1"), VERSIONS),
            {k: v for k, v in headers.items() if v is not None}, junk_lines, body,
            part("framing", RIGHT_FRAMING, WRONG_FRAMING))


def render_request(req, daemon) -> bytes:
    method, path, version, headers, junk_lines, body, framing = req
    framing_lines, data = frame(render_body(body, daemon), framing)
    line = render(Cat((method, " ", path, " ", version)), daemon).rstrip(b" ")
    head = [line] + [render(Cat((k, ": ", v)), daemon) for k, v in headers.items()]
    head += [render(x, daemon) for x in junk_lines + framing_lines]
    return b"\r\n".join(head) + b"\r\n\r\n" + data


HTTP_CASES = st.fixed_dictionaries({
    "requests": st.lists(request(), min_size=1, max_size=2),  # two: pipelined
    "cuts": CUTS,
    # None: the client waits for the answers; n: it hangs up after n turns of the reactor
    "leave_after": st.one_of(st.none(), st.none(), st.none(), st.integers(0, 3)),
    # when it hangs up: the part of its bytes it had sent (it may die mid-body)
    "sent": st.one_of(st.just(1.0), st.just(1.0), st.floats(0, 1)),
    "slot": st.integers(0, 7),  # which processing job (one of each type) job refs name
})


def run_http(daemon, case):
    def drive(connection, outcome):
        data = b"".join(render_request(r, daemon) for r in case["requests"])
        if case["leave_after"] is not None:
            data = data[:int(case.get("sent", 1.0) * len(data))]
        for piece in split(data, case["cuts"]):
            connection.send(piece)
        if case["leave_after"] is None:
            pump(lambda: connection.answered, what="the answer")
        else:
            for _ in range(case["leave_after"]):
                reactor.iterate(0)
    return daemon.case(case["slot"], drive)


def http_target(gc_every=1) -> Target:
    @contextlib.contextmanager
    def open_daemon():
        with Daemon(gc_every) as daemon:
            yield lambda case: run_http(daemon, case)
    return Target("http", HTTP_CASES, open_daemon)
