"""``python -m bench.report``: the command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .build import build_report, merge
from .compare import compare, format_comparison
from .derive import load


def main(argv=None) -> int:
    from . import __doc__ as about  # the package's: its first paragraph describes the command

    p = argparse.ArgumentParser(prog="python -m bench.report", description=about.split("\n\n")[0])
    p.add_argument("results", nargs="+", type=Path, help="result JSON file(s) from bench.run")
    p.add_argument("--out", type=Path, default=Path("reports"), help="output directory (default %(default)s)")
    p.add_argument("--name", help="file stem of the report and plots (default: the first JSON's stem)")
    p.add_argument("--compare", type=Path, metavar="OLD.json", help="flag ratios worse than in OLD.json; exit 1")
    p.add_argument("--margin", type=float, default=0.15)
    p.add_argument("--readme", type=Path, metavar="README.md",
                   help="also fill the file's <!-- bench-targets:start/end --> block with the targets table")
    p.add_argument("--companion", action="append", default=[], metavar="PASS=JSON",
                   help="a companion pass's result file (bench.run --also writes OUT-PASS.json), e.g. "
                        "backward=bench/results/latest-backward.json; repeatable")
    args = p.parse_args(argv)
    companions = {}
    for item in args.companion:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            p.error(f"--companion: expected PASS=JSON, got {item!r}")
        companions[name] = json.loads(Path(path).read_text())
    docs = load(args.results)
    status = 0
    if args.compare:
        new = merge(docs)
        comparison = compare(json.loads(args.compare.read_text()), new, args.margin)
        comparison["against"] = str(args.compare)
        print(format_comparison(comparison))
        status = 1 if comparison["flagged"] else 0
        if len(docs) == 1:
            docs = [{**docs[0], "comparison": comparison}]
    for path in build_report(docs, args.out, args.name or args.results[0].stem, sources=args.results,
                             readme=args.readme, companions=companions):
        print(f"wrote {path}", file=sys.stderr)
    return status
