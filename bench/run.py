"""Run benchmark suites: fastconv against PyTorch, saved as JSON.

    python -m bench.run --quick                           # the default suites, short budgets
    python -m bench.run --suite dw_vs_standard --quick --out bench/results/dw.json
    python -m bench.run --suite mobilenet_v2 --match 'dw|dws2' --algo depthwise
    python -m bench.run --suite all --also inprocess,busy --report reports/
    python -m bench.run --quick --also training --report reports/   # and a training step of two nets
    python -m bench.run --quick --compare bench/results/old.json   # exit 1 on regressions
    python -m bench.run --list --suite resnet50           # the problems, not run

Modes. ``--mode process`` (the default and the headline): fastconv and PyTorch each run in
a worker process of its own with its own default environment, alternating over rounds
(``bench/processes.py`` says what each worker gets). ``--mode inprocess``: both in this
process, interleaved; before NumPy, Numba or PyTorch is imported the run then unsets
``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` (``--keep-env`` keeps them), and applies
``--threading-layer`` and ``--omp-wait-policy`` when given (by default neither is set); if
one of those libraries was already imported, it re-executes itself; ``--threads`` sets
Numba's thread count, ``torch.set_num_threads`` and the BLAS pool. ``--busy-core`` keeps
one core busy while timing. ``--also inprocess,busy`` adds the passes the targets need; ``--also
training`` a training step of ResNet-18 and MobileNetV2 (``bench/training.py``).
Everything is recorded in the result file under ``environment`` and ``settings``.

The run writes the JSON (``--out``) and, with ``--report DIR``, the report; README.md only
with ``--update-readme``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from . import THREADING_LAYERS, WAIT_POLICIES, environment_plan, prepare_environment

SCHEMA = "fastconv-bench/1"
DEFAULT_SUITES = ("dw_vs_standard", "mobilenet_v2", "resnet50")
DEFAULT_OUT = Path("bench/results/latest.json")
DEFAULT_MARGIN = 0.15
DEFAULT_POOL_MB = 64


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0],
                                epilog="examples:\n" + __doc__.split("\n\n")[1] + "\n\n" + __doc__.split("\n\n")[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", action="append", metavar="NAME",
                   help=f"workload suite (repeatable; 'all' for every suite); default: {', '.join(DEFAULT_SUITES)}")
    p.add_argument("--match", metavar="REGEX",
                   help="only problems whose 'suite:layer canonical-name' matches (re.search)")
    p.add_argument("--algo", action="append", metavar="NAME",
                   help="fastconv algorithm(s) to time (repeatable or comma-separated; 'auto', 'direct', "
                        "'im2col', 'depthwise', ...); default: all that can serve each problem, and auto")
    p.add_argument("--layout", default="nchw,nhwc",
                   help="layouts, comma-separated: nchw (PyTorch NCHW) and nhwc (channels_last); default both")
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--threads", type=int, default=None, help="threads for fastconv and PyTorch (and BLAS in "
                   "inprocess mode); default: each library's own default (inprocess: the CPUs this process may use)")
    p.add_argument("--quick", action="store_true", help="short time budgets (for CI and smoke runs)")
    p.add_argument("--warmup", type=float, help="warm-up budget per candidate, seconds (overrides the mode)")
    p.add_argument("--measure", type=float, help="measurement budget per candidate, seconds")
    p.add_argument("--min-reps", type=int)
    p.add_argument("--max-reps", type=int)
    p.add_argument("--pool-mb", type=float, default=DEFAULT_POOL_MB,
                   help="bytes of input buffers each problem cycles through, per layout (default %(default)s MB)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="result JSON (default %(default)s)")
    p.add_argument("--compare", type=Path, metavar="OLD.json",
                   help="flag layers whose fastconv/PyTorch ratio got worse than in OLD.json; exit 1 if any")
    p.add_argument("--margin", type=float, default=DEFAULT_MARGIN,
                   help="--compare: how much worse a ratio may get before it is flagged (default %(default)s)")
    p.add_argument("--report", type=Path, metavar="DIR", help="also write the Markdown report and plots to DIR")
    p.add_argument("--readme", type=Path, metavar="README.md",
                   help="with --report: also fill the file's <!-- bench-targets:start/end --> block with the "
                        "targets table")
    p.add_argument("--update-readme", action="store_true",
                   help="with --report: rewrite README.md's figures (--readme README.md); never by default")
    p.add_argument("--mode", default="process", choices=("process", "inprocess"),
                   help="process (default): fastconv and PyTorch each in a process of its own, each with its own "
                        "default environment, alternating over rounds (bench/processes.py); inprocess: both in "
                        "this process, interleaved, with the environment plan below")
    p.add_argument("--busy-core", action="store_true",
                   help="keep one core busy with a spinning process while timing (both libraries alike)")
    p.add_argument("--also", action="append", metavar="PASS",
                   help="extra passes the targets need, auto only, each to OUT-PASS.json: 'inprocess' (fastconv "
                        "with PyTorch in its process), 'busy' (ResNet-50 3x3 and MobileNetV2 depthwise layers with "
                        "one core busy), 'backward' (each conv layer's backward pass, grad input and grad weight, "
                        "of the resnet50, mobilenet_v2, dw_vs_standard and dilated suites), 'training' (a training "
                        "step of ResNet-18 and MobileNetV2, converted against PyTorch's, bench/training.py); "
                        "comma-separated or repeated")
    p.add_argument("--no-startup", action="store_true",
                   help="skip timing import and first calls in fresh processes (bench/startup.py)")
    p.add_argument("--list", action="store_true", help="list the selected problems and exit")
    p.add_argument("--threading-layer", default="default", choices=THREADING_LAYERS,
                   help="inprocess mode: NUMBA_THREADING_LAYER for this process (default %(default)s: fastconv's)")
    p.add_argument("--omp-wait-policy", default="unset", choices=WAIT_POLICIES,
                   help="inprocess mode: OMP_WAIT_POLICY for this process (PyTorch's OpenMP threads); 'unset' keeps "
                        "libgomp's default (default %(default)s; see bench/__init__.py)")
    p.add_argument("--keep-env", action="store_true", help="keep OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE")
    p.add_argument("--no-progress", action="store_true")
    return p


# ---------------------------------------------------------------------------------------
# Selection
# ---------------------------------------------------------------------------------------


def select_problems(suites, match: str | None, dtype: str):
    """[(suite, index, layer, problem)] for the chosen suites, filtered by ``match``."""
    from .problems import load_suite, suite_names

    names = []
    for s in suites or DEFAULT_SUITES:
        names += suite_names() if s == "all" else [s]
    pattern = re.compile(match) if match else None
    out = []
    for suite in dict.fromkeys(names):
        for index, (layer, problem) in enumerate(load_suite(suite, dtype)):
            if pattern is None or pattern.search(f"{suite}:{layer} {problem.name()}"):
                out.append((suite, index, layer, problem))
    return out


def split_list(values) -> list[str]:
    out = []
    for v in values or []:
        out += [x.strip() for x in v.split(",") if x.strip()]
    return out


# ---------------------------------------------------------------------------------------
# One problem
# ---------------------------------------------------------------------------------------

CHECK_TOL = {"float32": 1e-4, "float64": 1e-10}


def plan_candidates(problem, layout: str, algos: list[str]) -> tuple[list[str], str | None]:
    """(fastconv algorithms to time, the algorithm "auto" is an alias of or None)."""
    every = not algos or "all" in algos
    capable = problem.algorithms(layout)
    explicit = [a for a in capable if a != "auto" and (every or a in algos)]
    want_auto = every or "auto" in algos
    alias = None
    if want_auto:
        auto = problem.auto_algorithm(layout)
        if auto is not None and auto in explicit:
            alias = auto
        elif capable:
            explicit.append("auto")
    return explicit, alias


def pool_sets(set_bytes: int, pool_bytes: int) -> int:
    """How many argument sets to cycle through: at least 2, at most 64."""
    return int(min(max(math.ceil(pool_bytes / max(set_bytes, 1)), 2), 64))


def run_problem(problem, *, layouts, algos, budget, pool_bytes, rng, clock=time.perf_counter):
    """Time every candidate of one problem; return (per-layout facts, result rows)."""
    from .problems import Unsupported
    from .timing import Candidate, _Turns, first_call, measure

    n_sets = pool_sets(problem.set_bytes(), pool_bytes)
    base = [problem.make_arrays(rng) for _ in range(n_sets)]
    candidates, meta, facts = [], {}, {}
    for layout in layouts:
        data = [problem.in_layout(a, layout) for a in base]
        planned, alias = plan_candidates(problem, layout, algos)
        facts[layout] = {"algorithms": problem.algorithms(layout), "timed": planned, "auto_alias": alias,
                         "auto_label": problem.auto_label(layout), "pool_sets": n_sets,
                         "set_bytes": problem.set_bytes(layout)}
        for algo in planned:
            fn = problem.fastconv_fn(algo, layout)
            key = f"{layout}/fastconv/{algo}"
            candidates.append(Candidate(key, _bind(fn, data), n_sets, is_numba=True))
            meta[key] = {"layout": layout, "library": "fastconv", "algo": algo}
        try:
            tfn = problem.torch_fn(layout)
        except Unsupported as exc:
            facts[layout]["torch_unsupported"] = str(exc)
            continue
        import torch

        tdata = [problem.torch_arrays(a, layout) for a in data]
        key = f"{layout}/torch"
        candidates.append(Candidate(key, _bind_torch(tfn, tdata, torch), n_sets))
        meta[key] = {"layout": layout, "library": "torch", "algo": None}
        facts[layout]["torch_note"] = problem.torch_note(layout)
    if not any(m["library"] == "fastconv" for m in meta.values()):
        return facts, []

    # first calls on argument set 0, so every result can be checked against PyTorch
    turns = _Turns()
    firsts = {}
    for c in candidates:
        firsts[c.key] = first_call(Candidate(c.key, c.fn, 1, c.is_numba), clock)
    checks = _check(problem, candidates, meta, firsts)
    for m in firsts.values():
        m.first_result = None
    measured = measure(candidates, budget, clock, measurements=firsts, turns=turns)
    rows = []
    for c in candidates:
        m = measured[c.key]
        row = dict(meta[c.key])
        row.update(first_call_s=m.first_call_s, warmup_calls=m.warmup_calls, warmup_s=m.warmup_s,
                   stats=m.stats, samples_s=[float(f"{t:.6g}") for t in m.samples_s], error=m.error)
        if row["library"] == "fastconv":
            row["jit"] = m.jit
            row["check"] = checks.get(c.key)
        rows.append(row)
    return facts, rows


def _bind(fn, data):
    def call(i):
        return fn(*data[i])
    return call


def _bind_torch(fn, tdata, torch):
    # autograd is off for the whole process (see _set_threads): no per-call context manager
    def call(i):
        return fn(*tdata[i])
    return call


def _check(problem, candidates, meta, firsts) -> dict:
    """In-process mode: each fastconv first result against PyTorch's, same data."""
    results = {}
    for c in candidates:
        m = firsts[c.key]
        if m.error is None:
            info = meta[c.key]
            results[c.key] = problem.output_nchw(m.first_result, info["layout"], info["library"])
    return check_results(problem, meta, results)


def check_results(problem, meta, results) -> dict:
    """Each fastconv result against PyTorch's (NCHW if timed, else channels_last), same data.

    ``results`` maps candidate keys to first results as NCHW NumPy arrays (None: failed).
    """
    import numpy as np

    ref = None
    for layout in ("nchw", "nhwc"):
        if results.get(f"{layout}/torch") is not None:
            ref = np.asarray(results[f"{layout}/torch"], dtype=np.float64)
            ref_layout = layout
            break
    out = {}
    if ref is None:
        return out
    tol = CHECK_TOL.get(problem.dtype, 1e-4)
    for key, info in meta.items():
        if info["library"] != "fastconv" or results.get(key) is None:
            continue
        try:
            got = np.asarray(results[key], dtype=np.float64)
            want = ref
            if problem.check_order_insensitive():
                got, want = np.sort(got.reshape(got.shape[0], -1)), np.sort(want.reshape(want.shape[0], -1))
            if got.shape != want.shape:
                out[key] = {"ok": False, "error": f"shape {got.shape} != PyTorch's {want.shape}"}
                continue
            scale = max(float(np.max(np.abs(want))) if want.size else 0.0, 1e-30)
            err = float(np.max(np.abs(got - want))) / scale if want.size else 0.0
            out[key] = {"ok": bool(err <= tol), "rel_err": err, "tol": tol, "against": f"torch/{ref_layout}"}
        except Exception as exc:
            out[key] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return out


# ---------------------------------------------------------------------------------------
# Progress
# ---------------------------------------------------------------------------------------


class Progress:
    """tqdm when it is importable, else a one-line bar on stderr (a line per item if not a tty)."""

    def __init__(self, total: int, enabled: bool = True):
        self.total, self.done, self.start = total, 0, time.perf_counter()
        self.enabled = enabled
        self.bar = None
        if enabled:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, unit="problem", dynamic_ncols=True)
            except ImportError:
                self.bar = None
        self.tty = sys.stderr.isatty()

    def update(self, label: str):
        self.done += 1
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(label[:60])
            self.bar.update(1)
            return
        elapsed = time.perf_counter() - self.start
        eta = elapsed / self.done * (self.total - self.done)
        width = 30
        fill = int(width * self.done / max(self.total, 1))
        text = (f"[{'#' * fill}{'.' * (width - fill)}] {self.done}/{self.total} "
                f"{elapsed:5.0f}s elapsed, ~{eta:4.0f}s left  {label[:50]}")
        if self.tty:
            sys.stderr.write("\r" + text.ljust(120))
            if self.done == self.total:
                sys.stderr.write("\n")
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def write(self, line: str):
        if self.bar is not None:
            self.bar.write(line)
        elif self.enabled and self.tty:
            sys.stderr.write("\r" + " " * 120 + "\r" + line + "\n")
        else:
            print(line)

    def close(self):
        if self.bar is not None:
            self.bar.close()


# ---------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------


def _budget(args):
    from dataclasses import replace

    from .timing import FULL, QUICK

    b = QUICK if args.quick else FULL
    over = {k: v for k, v in (("warmup_s", args.warmup), ("measure_s", args.measure),
                              ("min_reps", args.min_reps), ("max_reps", args.max_reps)) if v is not None}
    return replace(b, **over)


def _set_threads(threads: int):
    import numba
    import torch
    from threadpoolctl import threadpool_limits

    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    torch.set_num_threads(threads)
    torch.set_grad_enabled(False)  # inference timing, as fastconv has no autograd
    return threadpool_limits(limits=threads, user_api="blas")


def _write_json(path: Path, doc: dict):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, allow_nan=True))
    os.replace(tmp, path)


def main(argv=None, *, reexec: bool = False) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    layouts = [x for x in split_list([args.layout])]
    algos = split_list(args.algo)
    if args.list:
        for suite, _, layer, problem in select_problems(args.suite, args.match, args.dtype):
            print(f"{suite:15s} {layer:18s} {problem.name():64s} {problem.flops / 1e6:10.2f} MFLOP "
                  f"{problem.intensity:8.2f} FLOP/B")
        return 0
    if args.update_readme and args.readme is None:
        args.readme = Path("README.md")
    if args.readme is not None and args.report is None:
        raise SystemExit("--readme/--update-readme need --report (the README links the report)")
    changes = {}
    if args.mode == "inprocess":
        changes = prepare_environment(environment_plan(args.threading_layer, args.omp_wait_policy, args.keep_env),
                                      reexec_argv=["-m", "bench.run", *argv] if reexec else None)
    from .problems import LAYOUTS

    for layout in layouts:
        if layout not in LAYOUTS:
            raise SystemExit(f"--layout: {layout!r} is not one of {', '.join(LAYOUTS)}")
    problems = select_problems(args.suite, args.match, args.dtype)
    if not problems:
        raise SystemExit("no problem matches --suite/--match")
    passes = [("main", args.mode, args.busy_core, algos, problems, args.out)]
    for extra in split_list(args.also):
        if extra == "training":  # whole models, not the suites' layers
            passes.append((extra, "process", False, None, None, args.out.with_name(f"{args.out.stem}-training.json")))
            continue
        if extra not in COMPANIONS:
            raise SystemExit(f"--also: {extra!r} is not one of {', '.join([*COMPANIONS, 'training'])}")
        if extra == "inprocess" and args.mode == "inprocess":
            continue
        companion = COMPANIONS[extra]
        chosen = [companion.get("problem", lambda p: p)(p) for p in problems if companion["select"](p)]
        if chosen:
            out = args.out.with_name(f"{args.out.stem}-{extra}{args.out.suffix}")
            passes.append((extra, companion["mode"], extra == "busy", ["auto"], chosen, out))
    docs, status = [], 0
    for name, mode, busy, pass_algos, pass_problems, out in passes:
        if name == "training":
            from . import training

            docs.append(training.run_pass(out, models=training.MODELS, layouts=layouts, quick=args.quick,
                                          batch=training.BATCH, size=training.SIZE, classes=training.CLASSES,
                                          seed=args.seed, keep_env=args.keep_env, threads=args.threads,
                                          command=["python", "-m", "bench.run", *argv]))
            continue
        doc = run_pass(args, argv, name, mode, busy, pass_algos, pass_problems, layouts, out, changes,
                       startup=not args.no_startup and not docs)
        if not docs and args.compare:
            from .report import compare, format_comparison

            comparison = compare(json.loads(args.compare.read_text()), doc, args.margin)
            comparison["against"] = str(args.compare)
            doc["comparison"] = comparison
            print(format_comparison(comparison))
            status = 1 if comparison["flagged"] else 0
            _write_json(out, doc)
        docs.append(doc)
    if args.report:
        from .report import build_report

        companions = {doc["settings"]["pass"]: doc for doc in docs[1:]}
        for path in build_report([docs[0]], args.report, stem=args.out.stem, readme=args.readme,
                                 companions=companions):
            print(f"wrote {path}", file=sys.stderr)
    return status


# Extra passes (``--also``) that the targets need beside the main run: auto only.
def _busy_target_layer(selected) -> bool:
    """ResNet-50's 3x3 layers and MobileNetV2's depthwise layers: the busy-core targets."""
    suite, _, _, problem = selected
    facts = problem.describe()
    return ((suite == "resnet50" and facts.get("role") == "standard" and list(facts.get("kernel") or []) == [3, 3])
            or (suite == "mobilenet_v2" and facts.get("role") == "depthwise"))


# The backward pass's targets (issue 12) cover these suites.
BACKWARD_SUITES = ("resnet50", "mobilenet_v2", "dw_vs_standard", "dilated")


def _backward_pass(selected):
    """The layer's backward problem when its suite is one the backward targets cover, else None."""
    from .problems import backward_of

    suite, index, layer, problem = selected
    backward = backward_of(problem) if suite in BACKWARD_SUITES else None
    return None if backward is None else (suite, index, layer, backward)


COMPANIONS = {
    "inprocess": {"mode": "inprocess", "select": lambda selected: True},
    "busy": {"mode": "process", "select": _busy_target_layer},
    "backward": {"mode": "process", "select": lambda selected: _backward_pass(selected) is not None,
                 "problem": _backward_pass},
}


def run_pass(args, argv, name, mode, busy, algos, problems, layouts, out, changes, startup) -> dict:
    """Time ``problems`` in ``mode`` ("process" or "inprocess") as the pass ``name`` ("main" or a
    companion of ``--also``); write and return the result doc."""
    import numpy as np

    from . import machine
    from .processes import BusyCore, ProcessPair

    threads = args.threads
    limits = _set_threads(threads or len(os.sched_getaffinity(0))) if mode == "inprocess" else None
    budget = _budget(args)
    pool_bytes = int(args.pool_mb * 1024 ** 2)
    label = f"{mode}{' with one core busy' if busy else ''}"
    started = time.perf_counter()
    doc = {
        "schema": SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": ["python", "-m", "bench.run", *argv],
        "settings": {"pass": name, "mode": mode,
                     "busy_core": busy, "suites": list(dict.fromkeys(s for s, *_ in problems)),
                     "match": args.match, "algos": algos or ["all"], "layouts": layouts, "dtype": args.dtype,
                     "threads": threads, "quick": args.quick, "budget": budget.to_json(),
                     "pool_bytes": pool_bytes, "seed": args.seed, "check_tol": CHECK_TOL},
        "environment": {"changed": changes, "threading_layer": args.threading_layer if mode == "inprocess" else None,
                        "omp_wait_policy": args.omp_wait_policy if mode == "inprocess" else None,
                        "reexecuted": bool(os.environ.get("FASTCONV_BENCH_REEXEC"))},
        "machine": {},
        "problems": [],
        "results": [],
        "skipped": [],
        "finished": False,
    }
    print(f"[{label}] measuring the machine...", file=sys.stderr)
    measured = machine.measure(pool_bytes, quick=args.quick)
    doc["machine"] = machine.describe()
    doc["machine"]["measured"] = measured
    print(f"  peak {measured['peak_gflops']:.1f} GFLOP/s ({measured['peak_source']}), bandwidth "
          f"{measured['bandwidth_gbs']:.1f} GB/s (DRAM {measured['dram_bandwidth_gbs']:.1f}), "
          f"load average {doc['machine']['load_avg'][0]:.2f}", file=sys.stderr)
    cpus = len(os.sched_getaffinity(0))
    if machine.is_busy(doc["machine"]["load_avg"][0], cpus):
        print(f"  WARNING: load average {doc['machine']['load_avg'][0]:.2f} on {cpus} CPUs: other processes "
              "share the cores; times will be noisy. The report says so.", file=sys.stderr)
    if startup:
        from . import startup as startup_probe

        print("timing import and first calls in fresh processes (one with an empty Numba cache)...",
              file=sys.stderr)
        doc["startup"] = startup_probe.measure()
        print("  import {import_s:.2f} s, first call from cache {first_call_cached_s:.2f} s, cold "
              "{first_call_cold_s:.1f} s".format(**doc["startup"]), file=sys.stderr)
    _write_json(out, doc)

    from .report import summarize_problem

    pair = ProcessPair(args.dtype, keep_env=args.keep_env, threads=threads) if mode == "process" else None
    hog = None
    rng = np.random.default_rng(args.seed)
    progress = Progress(len(problems), enabled=not args.no_progress)
    try:
        if pair is not None:
            doc["environment"]["workers"] = pair.describe()
        hog = BusyCore() if busy else None
        for suite, index, layer, problem in problems:
            record = {"suite": suite, "index": index, "layer": layer, **problem.describe()}
            try:
                if pair is not None:
                    facts, rows = pair.run_problem(suite, index, problem, layouts=layouts, algos=algos,
                                                   budget=budget, pool_bytes=pool_bytes, seed=args.seed)
                else:
                    facts, rows = run_problem(problem, layouts=layouts, algos=algos, budget=budget,
                                              pool_bytes=pool_bytes, rng=rng)
            except Exception as exc:  # one broken problem must not lose the run
                doc["skipped"].append({"suite": suite, "layer": layer, "name": problem.name(),
                                       "reason": f"{type(exc).__name__}: {exc}"})
                progress.write(f"{suite}:{layer} failed: {type(exc).__name__}: {exc}")
                progress.update(f"{suite}:{layer}")
                if pair is not None and any(w.proc.poll() is not None for w in pair.workers.values()):
                    pair.close()
                    pair = ProcessPair(args.dtype, keep_env=args.keep_env, threads=threads)
                continue
            record["layouts"] = facts
            if not rows:
                doc["skipped"].append({"suite": suite, "layer": layer, "name": problem.name(),
                                       "reason": "no selected algorithm serves it"})
            else:
                doc["problems"].append(record)
                for row in rows:
                    doc["results"].append({"suite": suite, "layer": layer, "name": problem.name(), **row})
                for line in summarize_problem(doc, suite, layer, problem.name()):
                    progress.write(line)
            doc["duration_s"] = time.perf_counter() - started
            _write_json(out, doc)
            progress.update(f"{suite}:{layer}")
    finally:
        progress.close()
        if hog is not None:
            hog.close()
        if pair is not None:
            pair.close()
        if limits is not None:
            limits.restore_original_limits()
    doc["finished"] = True
    doc["duration_s"] = time.perf_counter() - started
    doc["load_avg_end"] = list(os.getloadavg())
    _write_json(out, doc)
    print(f"wrote {out} ({len(doc['results'])} rows, {doc['duration_s']:.0f} s)", file=sys.stderr)
    return doc


if __name__ == "__main__":
    sys.exit(main(reexec=True))
