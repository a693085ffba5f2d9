"""Fuzzes every parser a client reaches, N generated cases each, and prints a table.

    .venv/bin/python bench/fuzz.py                    # 100 000 cases per target
    .venv/bin/python bench/fuzz.py --cases 2000 --targets http,desk

The targets and their generators are the test suite's (tests/fuzz/targets.py): the sans-IO
parsers (header, chunks, connections, desk, socket.io codec) and, in-process, the daemon's
HTTP port (runner, media and admin APIs) and its socket.io WebSocket endpoint. A case fails
when anything but ProtocolError is raised, when the daemon logs a failure, or when it
answers with a 5xx. Generation only (nothing is shrunk: every bug met is counted); a seed
makes a run repeatable. The exit status is 1 when any case failed; one case of each kind of
failure (told apart by the exception it ends with) is printed under the table.
"""
import argparse
import json
import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.fuzz.harness import tally  # noqa: E402
from tests.fuzz.targets import all_targets  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=100_000, help="cases per target")
    parser.add_argument("--targets", help="comma-separated names (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gc-every", type=int, default=200,
                        help="cases between garbage collections in the daemon's targets")
    parser.add_argument("--show", type=int, default=10,
                        help="kinds of failure shown per target (one case of each)")
    parser.add_argument("--json", action="store_true", help="one JSON object per target")
    args = parser.parse_args(argv)
    targets = all_targets(args.gc_every)
    if args.targets:
        wanted = args.targets.split(",")
        unknown = set(wanted) - {t.name for t in targets}
        if unknown:
            parser.error(f"unknown targets {', '.join(sorted(unknown))}; "
                         f"known: {', '.join(t.name for t in targets)}")
        targets = [t for t in targets if t.name in wanted]
    warnings.simplefilter("ignore")  # hypothesis's notes on long runs are not findings
    if not args.json:
        print(f"| {'target':<20} | {'cases':>7} | {'tracebacks':>10} | {'5xx':>5} | {'seconds':>7} |")
        print(f"|{'-' * 22}|{'-' * 9}|{'-' * 12}|{'-' * 7}|{'-' * 9}|", flush=True)
    results = []
    for target in targets:
        result = tally(target, args.cases, args.seed)
        results.append(result)
        if args.json:
            print(json.dumps({"target": result.target, "cases": result.cases,
                              "tracebacks": result.tracebacks, "5xx": result.server_errors,
                              "seconds": round(result.seconds, 1)}), flush=True)
        else:
            print(f"| {result.target:<20} | {result.cases:>7} | {result.tracebacks:>10} | "
                  f"{result.server_errors:>5} | {result.seconds:>7.1f} |", flush=True)
    for result in results:  # one case of each kind of failure
        for key, (case, outcome, count) in list(result.examples.items())[:args.show]:
            print(f"\n== {result.target}, {count} case(s): {key}\n{case!r:.2000}\n"
                  f"{outcome.describe()[:4000]}", file=sys.stderr)
    return 1 if any(r.tracebacks or r.server_errors for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
