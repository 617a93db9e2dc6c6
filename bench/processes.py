"""The process mode: each library in a process of its own, with its own default environment.

This is how the libraries' users run them, and the headline comparison. One worker process
per library (``bench.worker``) lives for the whole run:

- **fastconv** gets this process's environment, less ``OPENBLAS_CORETYPE`` and
  ``OPENBLAS_L2_SIZE`` (which slow NumPy's OpenBLAS on this machine; ``--keep-env`` keeps
  them). Nothing else is set: fastconv's own defaults choose its threads.
- **PyTorch** gets this process's environment as it is: the harness sets nothing for it
  (no wait policy, no thread count, grad mode as PyTorch starts).

``--threads N`` is the one exception, applied to both alike. Per problem, both workers
build the same data (same seed), make their first calls (checked against each other from
saved results), warm up, then take ``rounds`` turns: in each round one library times all
its candidates for ``measure_s / rounds`` seconds each while the other waits, the first
library alternating from round to round. A candidate's statistics are over all its
samples; the medians of its rounds are kept as well (their spread shows drifts between
rounds).

``busy_core=True`` runs a spinning process beside the workers for the whole timing, so
both libraries share the machine with one busy core.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from . import UNSET_BY_DEFAULT

ROOT = Path(__file__).resolve().parent.parent
LIBRARIES = ("fastconv", "torch")


def worker_env(library: str, keep_env: bool, base: dict | None = None) -> dict:
    env = dict(os.environ if base is None else base)
    if library == "fastconv" and not keep_env:
        for name in UNSET_BY_DEFAULT:
            env.pop(name, None)
    env.pop("FASTCONV_BENCH_REEXEC", None)
    return env


class WorkerProcess:
    """A running ``bench.worker``: ``call(op, **args)`` sends a command and returns the reply."""

    def __init__(self, library: str, dtype: str, env: dict):
        self.library = library
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.worker", library, dtype], cwd=ROOT, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def call(self, op: str, **args) -> dict:
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            raise RuntimeError(f"the {self.library} worker exited (code {code}) during {op!r}")
        reply = json.loads(line)
        if not reply.pop("ok"):
            raise RuntimeError(f"{self.library} worker, {op}: {reply['error']}")
        return reply

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()


class BusyCore:
    """A process that keeps one core busy (a Python loop) until closed."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])

    def close(self):
        self.proc.kill()
        self.proc.wait()


class ProcessPair:
    """The two workers of a run, started once; ``describe()`` records their environments."""

    def __init__(self, dtype: str, keep_env: bool = False, threads: int | None = None):
        self.workers = {lib: WorkerProcess(lib, dtype, worker_env(lib, keep_env)) for lib in LIBRARIES}
        self.threads = threads
        self.check_dir = tempfile.TemporaryDirectory(prefix="fastconv-bench-check-")

    def describe(self) -> dict:
        return {lib: w.call("describe") for lib, w in self.workers.items()}

    def close(self):
        for w in self.workers.values():
            w.close()
        self.check_dir.cleanup()

    def run_problem(self, suite: str, index: int, problem, *, layouts, algos, budget, pool_bytes, seed):
        """Time one problem on both workers; return (per-layout facts, result rows) as bench.run does."""
        from .run import check_results

        setup = {lib: w.call("setup", suite=suite, index=index, direction=getattr(problem, "direction", "forward"),
                             layouts=layouts, algos=algos, pool_bytes=pool_bytes, seed=seed,
                             check_dir=self.check_dir.name, threads=self.threads)
                 for lib, w in self.workers.items()}
        facts = {layout: {**setup["fastconv"]["facts"].get(layout, {}), **setup["torch"]["facts"].get(layout, {})}
                 for layout in layouts}
        meta = {**setup["fastconv"]["meta"], **setup["torch"]["meta"]}
        firsts = {**setup["fastconv"]["firsts"], **setup["torch"]["firsts"]}
        if not setup["fastconv"]["meta"]:
            return facts, []
        results = {k: (None if f["result"] is None else _load(f["result"])) for k, f in firsts.items()}
        checks = check_results(problem, meta, results)
        errors = {k: f["error"] for k, f in firsts.items()}
        samples, round_medians = self.alternate(meta, budget, errors)
        for f in firsts.values():
            if f["result"]:
                os.unlink(f["result"])
        from .timing import summarize

        rows = []
        for key, info in meta.items():
            first = firsts[key]
            row = dict(info)
            row.update(first_call_s=first["first_call_s"], warmup_calls=None, warmup_s=budget.warmup_s,
                       stats=summarize(samples[key]), samples_s=[float(f"{t:.6g}") for t in samples[key]],
                       round_medians_s=[float(f"{t:.6g}") for t in round_medians[key]], error=errors.get(key))
            if info["library"] == "fastconv":
                row["jit"] = first["jit"]
                row["check"] = checks.get(key)
            rows.append(row)
        return facts, rows


    def alternate(self, keys, budget, errors: dict, untimed: int = 2) -> tuple[dict, dict]:
        """Time the candidates the workers set up: one untimed warm-up round each, then
        ``budget.rounds`` rounds taking turns, the first worker alternating, each round after
        ``untimed`` calls. Returns ({key: samples}, {key: per-round medians}); a round's errors
        go into ``errors``."""
        samples = {k: [] for k in keys}
        round_medians = {k: [] for k in keys}
        per_round = budget.measure_s / max(budget.rounds, 1)
        min_reps = max(1, math.ceil(budget.min_reps / max(budget.rounds, 1)))
        max_reps = max(min_reps, math.ceil(budget.max_reps / max(budget.rounds, 1)))
        order = list(self.workers.values())
        for w in order:  # warm-up: one untimed round each
            w.call("round", seconds=budget.warmup_s, min_reps=1, max_reps=max_reps)
        for r in range(budget.rounds):
            for w in (order if r % 2 == 0 else order[::-1]):
                for key, got in w.call("round", seconds=per_round, min_reps=min_reps, max_reps=max_reps,
                                       untimed=untimed).items():
                    samples[key] += got["samples"]
                    if got["samples"]:
                        round_medians[key].append(statistics.median(got["samples"]))
                    if got.get("error") and not errors.get(key):
                        errors[key] = got["error"]
        return samples, round_medians


def _load(path):
    import numpy as np

    return np.load(path)
