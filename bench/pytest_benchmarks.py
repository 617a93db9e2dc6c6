"""The benchmark harness's problems and timing as pytest tests, for people who run pytest.

    python -m pytest bench/pytest_benchmarks.py -s
    FASTCONV_BENCH_ARGS="--suite mobilenet_v2 --match dw --quick --algo auto" \\
        python -m pytest bench/pytest_benchmarks.py -s --junitxml out.xml

Not collected by the default test run (``testpaths = ["tests"]``). ``FASTCONV_BENCH_ARGS``
takes ``python -m bench.run``'s own options (``--suite``, ``--match``, ``--algo``,
``--layout``, ``--dtype``, ``--threads``, ``--quick`` and the budget options, ``--pool-mb``,
``--seed``; default ``--suite dw_vs_standard --quick``), read by its own parser, and each
test is one selected problem run by ``bench.run.run_problem``: the same first calls,
check against PyTorch, interleaved warm-up and measurement, buffer pools and statistics
as ``python -m bench.run --mode inprocess`` (``bench/timing.py``). A test fails when a
candidate raises or a fastconv result disagrees with PyTorch's; the rows (median, IQR,
GFLOP/s) are printed and recorded as the test's ``bench`` property (``--junitxml``).
``python -m bench.run`` remains the way to get result files, process mode and reports.
"""

from __future__ import annotations

import json
import os
import shlex
import warnings

from bench import environment_plan, prepare_environment

_CHANGES = prepare_environment(environment_plan())  # before NumPy / Numba / PyTorch load
if any(c.get("late") for c in _CHANGES.values()):
    warnings.warn("bench.pytest_benchmarks: NumPy, Numba or PyTorch was imported before the benchmark's "
                  "environment was set; OPENBLAS_*/NUMBA_THREADING_LAYER/OMP_WAIT_POLICY changes may not apply",
                  stacklevel=1)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from bench.run import _budget, _set_threads, build_parser, run_problem, select_problems, split_list  # noqa: E402

ARGS = build_parser().parse_args(shlex.split(os.environ.get("FASTCONV_BENCH_ARGS", "--suite dw_vs_standard --quick")))
PROBLEMS = select_problems(ARGS.suite, ARGS.match, ARGS.dtype)


@pytest.fixture(scope="module", autouse=True)
def _threads():
    with _set_threads(ARGS.threads or len(os.sched_getaffinity(0))):
        yield


@pytest.mark.parametrize("selected", PROBLEMS, ids=[f"{suite}:{layer}-{p.name()}" for suite, _, layer, p in PROBLEMS])
def test_problem(selected, record_property):
    suite, index, layer, problem = selected
    rng = np.random.default_rng(ARGS.seed + index)
    facts, rows = run_problem(problem, layouts=split_list([ARGS.layout]), algos=split_list(ARGS.algo),
                              budget=_budget(ARGS), pool_bytes=int(ARGS.pool_mb * 1024 ** 2), rng=rng)
    record_property("bench", json.dumps({"suite": suite, "layer": layer, "problem": problem.describe(),
                                         "layouts": facts, "rows": rows}, default=str))
    for row in rows:
        median = row["stats"].get("median_s")
        gflops = f"{problem.flops / median / 1e9:8.2f} GFLOP/s" if median else ""
        label = f"{row['layout']}/{row['library']}" + (f"/{row['algo']}" if row["algo"] else "")
        print(f"{suite}:{layer} {label:28s} median {median or float('nan'):.3e} s {gflops}")
    assert rows, f"{problem.name()}: nothing to time ({facts})"
    errors = {f"{r['layout']}/{r['library']}/{r['algo']}": r["error"] for r in rows if r["error"]}
    assert not errors, errors
    wrong = {f"{r['layout']}/{r['algo']}": r["check"] for r in rows
             if r["library"] == "fastconv" and r.get("check") and not r["check"].get("ok")}
    assert not wrong, wrong
