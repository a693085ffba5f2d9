"""Streaming multipart/form-data parsers on one big upload: ours (choir_twisted.runners.multipart,
now a thin layer on ``multipart``), the hand-written one it replaced (``hand-written``,
bench/multipart_handwritten.py) and the well-kept ones on PyPI, ``multipart``,
``python-multipart`` and ``streaming-form-data``, side by side in one run.

The body is what a runner's ``success`` sends: its two token fields, then one file part
(random bytes with a near-boundary ``\\r\\n--`` every 64 kB, to make a parser look twice),
``--size`` MiB (1024 by default), written once to a temporary file. Each parser reads it
from that file in 64 kB pieces, as the route does, keeps the fields and passes the file's
bytes to a sink that counts and drops them (the disk is not what is measured), in a process
of its own, after a first parse of a body with an empty file part (imports and first calls
off the clock): throughput (MB/s of body), and the peak resident memory above the process's
before the parse (``ru_maxrss``), so a parser that held the file would show it. The body is
synced to disk once written, and the parsers take turns in each of the ``--runs`` (the best
of N is shown): no parser always runs first.

    .venv/bin/python bench/multipart_parsers.py [--size 1024] [--runs 3]

(Not bench/multipart.py: bench/ is on sys.path for every script in it, where a multipart.py
would hide the package of that name from the daemon's code that the other scripts import.)

needs: pip install multipart python-multipart streaming-form-data
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

BOUNDARY = "----choirbench7MA4YWxkTrZu0gW"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
CHUNK = 64 * 1024
PARSERS = ("hand-written", "ours", "multipart", "python-multipart", "streaming-form-data")


def make_body(path, mib):
    piece = bytearray(os.urandom(CHUNK))
    piece[CHUNK // 2:CHUNK // 2 + 4] = b"\r\n--"  # a delimiter's start, not a delimiter
    with open(path, "wb") as f:
        for name, value in (("runnerToken", "ptrt-" + "a" * 32), ("jobToken", "ptrjt-" + "b" * 32)):
            f.write(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                    f"{value}\r\n".encode())
        f.write(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="payload[videoFile]"; '
                f'filename="out.mp4"\r\nContent-Type: video/mp4\r\n\r\n'.encode())
        for _ in range(mib * 1024 * 1024 // CHUNK):
            f.write(piece)
        f.write(f"\r\n--{BOUNDARY}--\r\n".encode())
        f.flush()
        os.fsync(f.fileno())  # written back now, not while the first parser reads it
    return mib * 1024 * 1024


class Count:
    n = 0

    def write(self, data):
        self.n += len(data)


def chunks(fp):
    while True:
        data = fp.read(CHUNK)
        if not data:
            return
        yield data


def parse_ours(fp, sink):
    from choir_twisted.runners.multipart import parse_multipart
    fields, files = parse_multipart(fp, CONTENT_TYPE, lambda name, filename: sink)
    return fields, files


def parse_handwritten(fp, sink):
    from multipart_handwritten import parse_multipart  # (bench/, this script's folder)
    return parse_multipart(fp, CONTENT_TYPE, lambda name, filename: sink)


def parse_multipart_pkg(fp, sink):
    import multipart
    fields, files, part, value = {}, {}, None, bytearray()
    with multipart.PushMultipartParser(BOUNDARY, max_segment_count=100) as parser:
        for data in chunks(fp):
            for event in parser.parse(data):
                if isinstance(event, multipart.MultipartSegment):
                    part, value = event, bytearray()
                elif event:
                    if part.filename is not None:
                        sink.write(event)
                    else:
                        value += event
                        if len(value) > 64 * 1024:
                            raise ValueError("field too long")
                elif part.filename is not None:
                    files[part.name] = part.filename
                else:
                    fields[part.name] = value.decode()
    return fields, files


def parse_python_multipart(fp, sink):
    from python_multipart import MultipartParser
    fields, files = {}, {}
    state = {"headers": {}, "field": None, "value": bytearray(), "name": b""}

    def on_part_begin():
        state.update(headers={}, value=bytearray())

    def on_header_field(data, start, end):
        state["name"] += data[start:end]

    def on_header_value(data, start, end):
        state["headers"][state["name"].lower()] = \
            state["headers"].get(state["name"].lower(), b"") + data[start:end]

    def on_header_end():
        state["name"] = b""

    def on_headers_finished():
        from python_multipart.multipart import parse_options_header
        _, params = parse_options_header(state["headers"].get(b"content-disposition", b""))
        state["field"] = (params.get(b"name", b"").decode(),
                          params[b"filename"].decode() if b"filename" in params else None)

    def on_part_data(data, start, end):
        if state["field"][1] is not None:
            sink.write(data[start:end])
        else:
            state["value"] += data[start:end]

    def on_part_end():
        name, filename = state["field"]
        if filename is not None:
            files[name] = filename
        else:
            fields[name] = state["value"].decode()

    parser = MultipartParser(BOUNDARY, {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field,
        "on_header_value": on_header_value, "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished, "on_part_data": on_part_data,
        "on_part_end": on_part_end})
    for data in chunks(fp):
        parser.write(data)
    parser.finalize()
    return fields, files


def parse_streaming_form_data(fp, sink):
    from streaming_form_data import StreamingFormDataParser
    from streaming_form_data.targets import BaseTarget, ValueTarget

    class SinkTarget(BaseTarget):
        def on_data_received(self, chunk):
            sink.write(chunk)

    parser = StreamingFormDataParser(headers={"Content-Type": CONTENT_TYPE})
    tokens = {name: ValueTarget() for name in ("runnerToken", "jobToken")}
    for name, target in tokens.items():
        parser.register(name, target)
    video = SinkTarget()
    parser.register("payload[videoFile]", video)
    for data in chunks(fp):
        parser.data_received(data)
    return ({n: t.value.decode() for n, t in tokens.items()},
            {"payload[videoFile]": video.multipart_filename})


RUN = {"hand-written": parse_handwritten, "ours": parse_ours, "multipart": parse_multipart_pkg,
       "python-multipart": parse_python_multipart,
       "streaming-form-data": parse_streaming_form_data}


def child(parser, path):
    """In a process of its own: -> one JSON line of what it measured."""
    with open(path + ".small", "rb") as fp:  # imports and first calls, before the clock
        RUN[parser](fp, Count())
    sink = Count()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with open(path, "rb") as fp:
        fields, files = RUN[parser](fp, sink)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert fields["jobToken"].startswith("ptrjt-") and files == {"payload[videoFile]": "out.mp4"}
    print(json.dumps({"seconds": seconds, "file_bytes": sink.n, "body": os.path.getsize(path),
                      "peak_kib": peak - before}))


def version(parser):
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as of
    if parser in ("ours", "hand-written"):
        return "-"
    try:
        return of(parser)
    except PackageNotFoundError:
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=1024, help="file part, MiB")
    ap.add_argument("--runs", type=int, default=1, help="the best of N per parser")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    with tempfile.TemporaryDirectory() as work:
        path = os.path.join(work, "body")
        file_bytes = make_body(path, args.size)
        make_body(path + ".small", 0)
        print(f"body: {os.path.getsize(path) / 1e6:.0f} MB, one file part of {args.size} MiB, "
              f"read in {CHUNK // 1024} kB pieces")
        versions = {parser: version(parser) for parser in PARSERS}
        best, failed = {}, {}
        for _ in range(args.runs):  # the parsers in turn, each run: none always comes first
            for parser in PARSERS:
                if versions[parser] is None or parser in failed:
                    continue
                out = subprocess.run([sys.executable, __file__, "--child", parser, path],
                                     capture_output=True, text=True)
                if out.returncode:
                    failed[parser] = out.stderr.strip().splitlines()[-1]
                    continue
                r = json.loads(out.stdout)
                assert r["file_bytes"] == file_bytes, (parser, r)
                if parser not in best or r["seconds"] < best[parser]["seconds"]:
                    best[parser] = r
        print(f"{'parser':22} {'version':>8} {'MB/s':>8} {'seconds':>8} {'peak RSS +MiB':>14}")
        for parser in PARSERS:
            v, r = versions[parser], best.get(parser)
            if v is None:
                print(f"{parser:22} {'(not installed)':>8}")
            elif parser in failed:
                print(f"{parser:22} failed: {failed[parser]}")
            else:
                print(f"{parser:22} {v:>8} {r['body'] / 1e6 / r['seconds']:8.0f} "
                      f"{r['seconds']:8.2f} {r['peak_kib'] / 1024:14.1f}")

if __name__ == "__main__":
    main()
