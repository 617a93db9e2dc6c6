"""One library's benchmark process: ``python -m bench.worker fastconv|torch DTYPE``.

The harness's process mode (``bench.processes``) runs fastconv and PyTorch each in a
worker of its own, started with that library's own default environment, and sends each
JSON commands on stdin, one per line; every reply is one JSON line on the stdout the
worker started with (anything else the process prints goes to stderr):

- ``{"op": "describe"}``: the process's environment, threads and library settings;
- ``{"op": "setup", "suite", "index", "direction", "layouts", "algos", "pool_bytes", "seed", "check_dir"}``:
  build the problem (the layer's backward pass when ``direction`` is "backward") and its argument
  pool (the same seed gives both workers the same data), make the first call of every
  candidate (timed; Numba's compiling recorded), save each first result in NCHW order to
  ``check_dir`` for the coordinator to compare;
- ``{"op": "training", "model", "layout", "batch", "size", "classes", "seed"}``: set up one
  model's training step (forward, backward, SGD update; ``bench.training``) as the only
  candidate, after making its first step (timed); reply the first step's loss;
- ``{"op": "round", "seconds", "min_reps"}``: time every candidate for ``seconds`` (at
  least ``min_reps`` calls), one call at a time, the garbage collector off; reply the
  samples;
- ``{"op": "quit"}``.

The worker imports only what its library needs: the PyTorch worker never calls into
fastconv's kernels (the problem descriptions are fastconv's specs, plain Python), so no
fastconv thread starts beside PyTorch's.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
import zlib

from . import RECORDED_ENV_PREFIXES


def problem_rng(seed: int, suite: str, index: int):
    import numpy as np

    return np.random.default_rng([seed, zlib.crc32(suite.encode()), index])


class Worker:
    def __init__(self, library: str, dtype: str):
        self.library, self.dtype = library, dtype
        self.candidates = []  # (key, fn, pool size)
        self.turn = 0
        if library == "torch":
            import torch  # noqa: F401  (loaded now, as a user's script would, not inside a timed call)

    # -- commands ---------------------------------------------------------------------
    def describe(self, _cmd) -> dict:
        env = {k: v for k, v in sorted(os.environ.items()) if k.startswith(RECORDED_ENV_PREFIXES)}
        out = {"library": self.library, "pid": os.getpid(), "env": env,
               "affinity": sorted(os.sched_getaffinity(0))}
        if self.library == "torch":
            import torch

            out.update(torch=torch.__version__, num_threads=torch.get_num_threads(),
                       num_interop_threads=torch.get_num_interop_threads(),
                       grad_enabled=torch.is_grad_enabled(), parallel_info=torch.__config__.parallel_info())
        else:
            import numba

            import fastconv
            from fastconv.cpu import _jit

            out.update(fastconv=fastconv.__version__, numba=numba.__version__, runtime=_jit.THREADS,
                       threading_layer=numba.threading_layer(), num_threads=numba.get_num_threads())
        return out

    def setup(self, cmd) -> dict:
        from .problems import Unsupported, backward_of, load_suite
        from .run import plan_candidates, pool_sets
        from .timing import Candidate, first_call

        if cmd.get("threads"):
            self._set_threads(cmd["threads"])
        _, problem = load_suite(cmd["suite"], self.dtype)[cmd["index"]]
        if cmd.get("direction") == "backward":
            problem = backward_of(problem)
        rng = problem_rng(cmd["seed"], cmd["suite"], cmd["index"])
        n_sets = pool_sets(problem.set_bytes(), cmd["pool_bytes"])
        base = [problem.make_arrays(rng) for _ in range(n_sets)]
        self.candidates, facts, meta = [], {}, {}
        for layout in cmd["layouts"]:
            data = [problem.in_layout(a, layout) for a in base]
            if self.library == "fastconv":
                planned, alias = plan_candidates(problem, layout, cmd["algos"])
                facts[layout] = {"algorithms": problem.algorithms(layout), "timed": planned,
                                 "auto_alias": alias, "auto_label": problem.auto_label(layout),
                                 "pool_sets": n_sets, "set_bytes": problem.set_bytes(layout)}
                for algo in planned:
                    key = f"{layout}/fastconv/{algo}"
                    self.candidates.append((key, _bind(problem.fastconv_fn(algo, layout), data), n_sets))
                    meta[key] = {"layout": layout, "library": "fastconv", "algo": algo}
            else:
                try:
                    fn = problem.torch_fn(layout)
                except Unsupported as exc:
                    facts[layout] = {"torch_unsupported": str(exc)}
                    continue
                facts[layout] = {"torch_note": problem.torch_note(layout)}
                key = f"{layout}/torch"
                self.candidates.append((key, _bind(fn, [problem.torch_arrays(a, layout) for a in data]), n_sets))
                meta[key] = {"layout": layout, "library": "torch", "algo": None}
        firsts = {}
        for key, fn, _ in self.candidates:
            m = first_call(Candidate(key, fn, 1, is_numba=self.library == "fastconv"))
            path = None
            if m.error is None and cmd.get("check_dir"):
                import numpy as np

                path = os.path.join(cmd["check_dir"], key.replace("/", "-") + ".npy")
                got = problem.output_nchw(m.first_result, meta[key]["layout"], self.library)
                np.save(path, got.astype(self.dtype))
            firsts[key] = {"first_call_s": m.first_call_s, "jit": m.jit, "error": m.error, "result": path}
        return {"facts": facts, "meta": meta, "firsts": firsts}

    def training(self, cmd) -> dict:
        from .training import training_step

        if cmd.get("threads"):
            self._set_threads(cmd["threads"])
        key, fn, pool, info = training_step(self.library, cmd)
        self.candidates = [(key, fn, pool)]
        return info

    def round(self, cmd) -> dict:
        """Time each candidate for ``seconds`` (after ``untimed`` calls, 2 by default); {key: samples or error}."""
        out = {}
        clock = time.perf_counter
        gc.collect()
        gc.disable()
        try:
            for key, fn, pool in self.candidates:
                samples = []
                try:
                    for _ in range(cmd.get("untimed", 2)):
                        fn(self._next(pool))
                    end = clock() + cmd["seconds"]
                    while len(samples) < cmd["min_reps"] or clock() < end:
                        i = self._next(pool)
                        t0 = clock()
                        fn(i)
                        samples.append(clock() - t0)
                        if len(samples) >= cmd.get("max_reps", 1 << 30):
                            break
                    out[key] = {"samples": samples}
                except Exception as exc:  # reported, not fatal
                    out[key] = {"samples": samples, "error": f"{type(exc).__name__}: {exc}"}
        finally:
            gc.enable()
        return out

    def _set_threads(self, threads: int) -> None:
        if self.library == "torch":
            import torch

            torch.set_num_threads(threads)
        else:
            import numba

            from fastconv.cpu import _jit  # noqa: F401  (starts fastconv's runtime first)

            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))

    def _next(self, pool: int) -> int:
        self.turn += 1
        return self.turn % pool


def _bind(fn, data):
    def call(i):
        return fn(*data[i])
    return call


def serve(library: str, dtype: str) -> None:
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stray prints (Python's or a library's) must not reach the reply stream
    sys.stdout = sys.stderr
    worker = Worker(library, dtype)
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "quit":
            break
        try:
            reply = {"ok": True, **getattr(worker, cmd["op"])(cmd)}
        except Exception as exc:
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        replies.write(json.dumps(reply, allow_nan=True) + "\n")


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2])
