"""pytest-benchmark entry points over the harness's problems, for people who use it.

    python -m pytest bench/pytest_benchmarks.py --benchmark-enable
    FASTCONV_BENCH_SUITES=mobilenet_v2,resnet50 FASTCONV_BENCH_MATCH='dw' \\
        python -m pytest bench/pytest_benchmarks.py --benchmark-enable --benchmark-json out.json

Not collected by the default test run (``testpaths = ["tests"]``); the project's
``--benchmark-disable`` default is why ``--benchmark-enable`` is needed. One test per
(problem, layout, implementation); the test id is ``suite:layer-layout-impl`` and the
problem's canonical name, FLOPs and bytes go to ``extra_info`` (GFLOP/s = flops / time).
Each round reads the next argument set from a pool of buffers, as ``bench.run`` does.
``bench.run`` remains the harness of record (interleaving, machine ceilings, reports);
this file reuses its problems and environment settings, nothing more.

Environment: ``FASTCONV_BENCH_SUITES`` (default ``dw_vs_standard``),
``FASTCONV_BENCH_MATCH`` (regex), ``FASTCONV_BENCH_LAYOUTS`` (default ``nchw,nhwc``),
``FASTCONV_BENCH_THREADS`` (default: all CPUs this process may use),
``FASTCONV_BENCH_ROUNDS`` (default 20), ``FASTCONV_BENCH_POOL_MB`` (default 64).
"""

from __future__ import annotations

import os
import warnings

from bench import environment_plan, prepare_environment

_CHANGES = prepare_environment(environment_plan())  # before NumPy / Numba / PyTorch load
if any(c.get("late") for c in _CHANGES.values()):
    warnings.warn("bench.pytest_benchmarks: NumPy, Numba or PyTorch was imported before the benchmark's "
                  "environment was set; OPENBLAS_*/NUMBA_THREADING_LAYER/OMP_WAIT_POLICY changes may not apply",
                  stacklevel=1)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from bench.problems import Unsupported  # noqa: E402
from bench.run import plan_candidates, pool_sets, select_problems, split_list  # noqa: E402

SUITES = split_list([os.environ.get("FASTCONV_BENCH_SUITES", "dw_vs_standard")])
MATCH = os.environ.get("FASTCONV_BENCH_MATCH") or None
LAYOUTS = split_list([os.environ.get("FASTCONV_BENCH_LAYOUTS", "nchw,nhwc")])
THREADS = int(os.environ.get("FASTCONV_BENCH_THREADS") or len(os.sched_getaffinity(0)))
ROUNDS = int(os.environ.get("FASTCONV_BENCH_ROUNDS", "20"))
POOL_BYTES = int(float(os.environ.get("FASTCONV_BENCH_POOL_MB", "64")) * 1024 ** 2)


def _cases():
    out = []
    for suite, _, layer, problem in select_problems(SUITES, MATCH, "float32"):
        for layout in LAYOUTS:
            algos, alias = plan_candidates(problem, layout, [])
            for algo in algos:
                out.append(pytest.param(problem, layout, "fastconv", algo,
                                        id=f"{suite}:{layer}-{layout}-fastconv-{algo}-{problem.name()}"))
            out.append(pytest.param(problem, layout, "torch", None,
                                    id=f"{suite}:{layer}-{layout}-torch-{problem.name()}"))
    return out


@pytest.fixture(scope="module", autouse=True)
def _threads():
    import numba
    import torch
    from threadpoolctl import threadpool_limits

    numba.set_num_threads(min(THREADS, numba.config.NUMBA_NUM_THREADS))
    torch.set_num_threads(THREADS)
    with threadpool_limits(limits=THREADS, user_api="blas"):
        yield


@pytest.mark.parametrize("problem,layout,library,algo", _cases())
def test_layer(benchmark, problem, layout, library, algo):
    rng = np.random.default_rng(0)
    n_sets = pool_sets(problem.set_bytes(), POOL_BYTES)
    data = [problem.in_layout(problem.make_arrays(rng), layout) for _ in range(n_sets)]
    if library == "fastconv":
        fn = problem.fastconv_fn(algo, layout)
    else:
        import torch

        try:
            fn = problem.torch_fn(layout)
        except Unsupported as exc:
            pytest.skip(str(exc))
        data = [problem.torch_arrays(a, layout) for a in data]
        torch.set_grad_enabled(False)
    fn(*data[0])  # first call (JIT compilation) outside the timing
    turn = {"i": 0}

    def setup():
        turn["i"] += 1
        return data[turn["i"] % n_sets], {}

    benchmark.extra_info.update(problem=problem.name(), layout=layout, library=library, algo=algo,
                                flops=problem.flops, min_bytes=problem.min_bytes, threads=THREADS)
    benchmark.pedantic(fn, setup=setup, rounds=ROUNDS, warmup_rounds=2, iterations=1)
