"""Rank the compilations a tools/compile_recorder.py log holds.

    python tools/compile_report.py LOG.jsonl [--top N]

By dispatcher: total exclusive CPU seconds, number of signatures; by test file; and the
dispatchers compiled for more than one signature, with the signatures.
"""

from __future__ import annotations

import argparse
import collections
import json


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("log")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--sigs", action="store_true", help="list the signatures of multi-signature dispatchers")
    a = parser.parse_args()
    records = [json.loads(line) for line in open(a.log)]
    total_cpu = sum(r["self_cpu"] for r in records)
    total_wall = sum(r["self_wall"] for r in records)
    print(f"{len(records)} compilations, {total_cpu:.0f} CPU s ({total_wall:.0f} wall s)")
    by_func = collections.defaultdict(list)
    for r in records:
        by_func[r["func"]].append(r)
    print("\n-- dispatchers by CPU seconds (signatures, s)")
    ranked = sorted(by_func.items(), key=lambda kv: -sum(r["self_cpu"] for r in kv[1]))
    for name, rs in ranked[: a.top]:
        print(f"{sum(r['self_cpu'] for r in rs):8.1f} {len(rs):4d}  {name}")
    print("\n-- test files by CPU seconds")
    by_file = collections.Counter()
    for r in records:
        by_file[r["test"].split("::")[0]] += r["self_cpu"]
    for name, s in by_file.most_common():
        print(f"{s:8.1f}  {name}")
    print("\n-- tests by CPU seconds")
    by_test = collections.Counter()
    for r in records:
        by_test[r["test"]] += r["self_cpu"]
    for name, s in by_test.most_common(a.top):
        print(f"{s:8.1f}  {name}")
    if a.sigs:
        print("\n-- multi-signature dispatchers")
        for name, rs in sorted(by_func.items(), key=lambda kv: -len(kv[1])):
            if len(rs) > 1:
                print(f"{name}: {len(rs)}")
                for r in rs:
                    print(f"    {r['self_cpu']:6.2f} {'(' + ', '.join(r['args']) + ')'}  <- {r['test']}")


if __name__ == "__main__":
    main()
