"""Rank the compilations a tools/compile_recorder.py log holds, or compare two logs.

    python tools/compile_report.py LOG.jsonl [--top N] [--sigs]
    python tools/compile_report.py BEFORE.jsonl --compare AFTER.jsonl

By dispatcher: total exclusive CPU seconds, number of signatures; by test file (compile
CPU and the tests' own CPU, compile included); and the dispatchers compiled for more than
one signature, with the signatures. ``--compare``: the compilations both logs hold (same
dispatcher and signature) and the tests both ran, CPU seconds before -> after, so two
partial runs on a loaded host still compare like for like.
"""

from __future__ import annotations

import argparse
import collections
import json


def load(path: str) -> tuple[list, list]:
    """(compile records, test records) of a log; lines of older recorders without CPU are skipped."""
    records = [json.loads(line) for line in open(path)]
    compiles = [r for r in records if r.get("kind", "compile") == "compile" and "self_cpu" in r]
    tests = [r for r in records if r.get("kind") == "test"]
    return compiles, tests


def compare(before: str, after: str) -> None:
    (c0, t0), (c1, t1) = load(before), load(after)
    k0 = {(r["func"], tuple(r["args"])): r["self_cpu"] for r in c0}
    k1 = {(r["func"], tuple(r["args"])): r["self_cpu"] for r in c1}
    both = [k for k in k0 if k in k1]
    print(f"compilations in both: {len(both)} of {len(k0)} / {len(k1)}: "
          f"{sum(k0[k] for k in both):.1f} -> {sum(k1[k] for k in both):.1f} CPU s")
    s0 = {r["test"]: r["cpu"] for r in t0}
    s1 = {r["test"]: r["cpu"] for r in t1}
    tests = [t for t in s0 if t in s1]
    print(f"tests in both: {len(tests)}: {sum(s0[t] for t in tests):.1f} -> {sum(s1[t] for t in tests):.1f} CPU s "
          "(compile and run)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("log")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--sigs", action="store_true", help="list the signatures of multi-signature dispatchers")
    parser.add_argument("--compare", metavar="AFTER", help="a second log: like-for-like CPU seconds")
    a = parser.parse_args()
    if a.compare:
        compare(a.log, a.compare)
        return
    records, tests = load(a.log)
    total_cpu = sum(r["self_cpu"] for r in records)
    total_wall = sum(r["self_wall"] for r in records)
    print(f"{len(records)} compilations, {total_cpu:.0f} CPU s ({total_wall:.0f} wall s); "
          f"{len(tests)} tests, {sum(t['cpu'] for t in tests):.0f} CPU s")
    by_func = collections.defaultdict(list)
    for r in records:
        by_func[r["func"]].append(r)
    print("\n-- dispatchers by CPU seconds (signatures, s)")
    ranked = sorted(by_func.items(), key=lambda kv: -sum(r["self_cpu"] for r in kv[1]))
    for name, rs in ranked[: a.top]:
        print(f"{sum(r['self_cpu'] for r in rs):8.1f} {len(rs):4d}  {name}")
    print("\n-- test files by compile CPU seconds (tests' CPU seconds, compile included)")
    by_file = collections.Counter()
    test_cpu = collections.Counter()
    for r in records:
        by_file[r["test"].split("::")[0]] += r["self_cpu"]
    for t in tests:
        test_cpu[t["test"].split("::")[0]] += t["cpu"]
    for name, s in by_file.most_common():
        print(f"{s:8.1f} {test_cpu[name]:8.1f}  {name}")
    print("\n-- tests by CPU seconds (compile included)")
    for t in sorted(tests, key=lambda t: -t["cpu"])[: a.top]:
        print(f"{t['cpu']:8.1f}  {t['test']}")
    if a.sigs:
        print("\n-- multi-signature dispatchers")
        for name, rs in sorted(by_func.items(), key=lambda kv: -len(kv[1])):
            if len(rs) > 1:
                print(f"{name}: {len(rs)}")
                for r in rs:
                    print(f"    {r['self_cpu']:6.2f} {'(' + ', '.join(r['args']) + ')'}  <- {r['test']}")


if __name__ == "__main__":
    main()
