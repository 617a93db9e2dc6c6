"""fastconv's benchmark harness: real layers, FLOPs against wall-clock, PyTorch alongside.

Modules (each owns one thing):

- ``bench.problems``  workload JSON -> problems built from the library's own specs
- ``bench.timing``    time budgets, interleaving, buffer pools, median and IQR, JIT apart
- ``bench.machine``   what the machine is and what it can do (sgemm peak, triad bandwidth)
- ``bench.run``       the CLI: ``python -m bench.run --suite dw_vs_standard --quick``
- ``bench.report``    Markdown and PNG from saved JSON: ``python -m bench.report X.json``
- ``bench.pytest_benchmarks``  the same problems and timing as pytest tests

This file must stay free of heavy imports: :func:`prepare_environment` has to run before
NumPy, Numba or PyTorch is imported, because the variables it changes are read once,
when those libraries load (OpenBLAS reads ``OPENBLAS_CORETYPE`` in its constructor, Numba
reads ``NUMBA_THREADING_LAYER`` when its config module loads, libgomp reads
``OMP_WAIT_POLICY`` when it starts).
"""

from __future__ import annotations

import os
import sys

# Variables that slow NumPy's OpenBLAS here (a forced core type or L2 size picks slower
# kernels than the ones OpenBLAS detects); the benchmark process drops them for itself.
UNSET_BY_DEFAULT = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

# Prefixes of environment variables recorded in every result file.
RECORDED_ENV_PREFIXES = ("OPENBLAS_", "OMP_", "GOMP_", "KMP_", "MKL_", "NUMBA_", "OPENMP", "TORCH_",
                         "ATEN_", "DNNL_", "ONEDNN_", "FASTCONV_", "PYTHONHASHSEED")

HEAVY_MODULES = ("numpy", "numba", "torch")

THREADING_LAYERS = ("workqueue", "omp", "tbb", "default")
WAIT_POLICIES = ("passive", "active", "unset")


def environment_plan(threading_layer: str = "default", omp_wait_policy: str = "unset",
                     keep_env: bool = False) -> dict:
    """The in-process mode's environment changes: {name: new value or None (unset)}.

    - Numba's threading layer is left as users get it (``default``: fastconv's TBB runtime,
      see ``fastconv/_threads.py``); ``--threading-layer`` picks another one to compare.
    - ``OMP_WAIT_POLICY`` is left as users get it (``unset``): it is PyTorch's setting
      (fastconv no longer uses OpenMP), and the benchmark tunes neither side. Earlier
      runs set it to passive for both libraries in one process, which roughly doubled
      PyTorch's times on small layers (oneDNN's threads then sleep between calls).
    - ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` are unset unless ``keep_env``: they
      select slower OpenBLAS kernels for NumPy on this machine.

    The process mode (the default) sets none of these for PyTorch's process and only the
    last for fastconv's: see ``bench/processes.py``.
    """
    plan: dict[str, str | None] = {}
    if not keep_env:
        for name in UNSET_BY_DEFAULT:
            plan[name] = None
    if threading_layer != "default":
        plan["NUMBA_THREADING_LAYER"] = threading_layer
    if omp_wait_policy != "unset":
        plan["OMP_WAIT_POLICY"] = omp_wait_policy.upper()
    return plan


def prepare_environment(plan: dict, *, reexec_argv: list[str] | None = None) -> dict:
    """Apply ``plan`` to this process; return what changed as {name: {"was", "now"}}.

    When NumPy, Numba or PyTorch is already imported the change would come too late;
    then, if ``reexec_argv`` is given, the process replaces itself with
    ``sys.executable *reexec_argv`` under the new environment (the marker variable
    ``FASTCONV_BENCH_REEXEC`` stops a loop). Without ``reexec_argv`` it applies the
    change anyway and records ``"late": True`` so the result file says so.
    """
    changes = {}
    for name, value in plan.items():
        was = os.environ.get(name)
        if was != value:
            changes[name] = {"was": was, "now": value}
    if not changes:
        return {}
    late = [m for m in HEAVY_MODULES if m in sys.modules]
    if late and reexec_argv is not None and not os.environ.get("FASTCONV_BENCH_REEXEC"):
        env = dict(os.environ)
        for name, value in plan.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        env["FASTCONV_BENCH_REEXEC"] = "1"
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable, *reexec_argv], env)
    for name, value in plan.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    if late:
        for change in changes.values():
            change["late"] = late
    return changes


def recorded_environment() -> dict:
    """The environment variables that bear on speed, as this process sees them."""
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith(RECORDED_ENV_PREFIXES)}
