"""Sessions: tests (the CI job), bench (the main job), lint, gpu_static, boundscheck.

The environment may set OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE: tests keep them; the
bench process unsets them for itself (see bench/run.py).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_external_run = True

# One Numba cache per session kind: a bounds-checked build must not be served from,
# or leak into, the ordinary cache (Numba's cache key does not include the flag).
CACHE = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".nox", "numba-cache")


@nox.session
def tests(session: nox.Session) -> None:
    """The CPU suite, and beside it the bounds-checked run followed by the GPU kernels under numba-cuda's simulator.

    A cold run is nearly all Numba compiling, one kernel at a time per process. The CPU suite runs as
    two pytest-xdist workers (work stealing: each starts on its half of the tests and takes from the
    other's at the end). Beside it, one after the other: the bounds-checked run (its own cache, every
    kernel compiled again with checks, at LLVM's -O0 for half the compile time), then the simulator run,
    whose threads spend much of their time waiting on each other and so fill the cores' gaps. The CPU
    suite and the simulator share one cache and tests/compile_lock.py makes a process that reaches a
    kernel another is compiling wait and load it, so no kernel is compiled twice in either cache. Extra
    arguments go to the CPU suite and the simulator run.
    """
    session.install("-e", ".[test]")
    args = session.posargs or []
    python = os.path.join(session.bin, "python")
    checked = ["-m", "not cuda and not slow", "-k", "not real_layers", "tests/test_conv.py", "tests/test_pooling.py",
               "tests/test_windows.py", "tests/test_integer_pooling.py", "tests/test_grad_pool.py", "-x", "-q"]
    # NUMBA_OPT=0: every index is checked the same unoptimised, and the kernels compile in half the time
    checked_env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_OPT="0", NUMBA_CACHE_DIR=CACHE + "-boundscheck",
                       FASTCONV_NUM_CASES="6")
    simulated = ["-m", "cuda", "tests/test_cuda.py", "tests/test_grad_pool_cuda.py", "tests/test_grad_conv_cuda.py",
                 "tests/test_cuda_stream.py", "tests/test_grad_backward.py", "-n", "2", "-q", *args]
    simulated_env = dict(os.environ, NUMBA_CACHE_DIR=CACHE, NUMBA_ENABLE_CUDASIM="1")
    runs = [("bounds-checked run", checked, checked_env), ("simulator run", simulated, simulated_env)]
    outcomes: list[tuple[str, int]] = []
    with tempfile.TemporaryFile("w+") as log:
        def beside() -> None:
            for name, argv, env in runs:
                log.write(f"\n{name}: pytest {' '.join(argv)}\n")
                log.flush()
                code = subprocess.call([python, "-m", "pytest", *argv], env=env, stdout=log, stderr=subprocess.STDOUT)
                outcomes.append((name, code))
                if code != 0:
                    return

        session.log("started in the background: " + "; then ".join(name for name, _, _ in runs))
        background = threading.Thread(target=beside)
        background.start()
        try:
            session.run("python", "-m", "pytest", "-m", "not cuda", "-n", "2", "--dist", "worksteal", *args,
                        env={"NUMBA_CACHE_DIR": CACHE})
        finally:
            background.join()
            log.seek(0)
            session.log("beside the CPU suite: " + ", ".join(f"{name} exit {code}" for name, code in outcomes))
            print(log.read(), flush=True)
    failed = [name for name, code in outcomes if code != 0]
    if failed or len(outcomes) != len(runs):
        session.error(f"failed: {', '.join(failed) or 'a run beside the CPU suite did not finish'}")


@nox.session
def bench(session: nox.Session) -> None:
    """The main job: quick benchmark of dw_vs_standard, MobileNetV2 and ResNet-50, then reports/.

    Each library runs in a process of its own with its own default environment (bench/processes.py).
    It writes bench/results/ and reports/ only, with the extra passes the targets need
    (fastconv beside PyTorch in one process; a busy core; each conv layer's backward pass; a
    training step of ResNet-18 and MobileNetV2, converted against PyTorch's own, bench/training.py). Extra
    arguments go to bench.run, e.g.
    ``nox -s bench -- --suite all``,
    ``-- --update-readme`` (rewrite README.md's targets block), or
    ``-- --compare bench/results/OLD.json`` (exits 1 on a regression).
    """
    session.install("-e", ".[bench]")
    session.run("python", "-m", "bench.run", "--quick", "--out", "bench/results/latest.json",
                "--report", "reports/", "--also", "inprocess,busy,backward,training", *session.posargs,
                env={"NUMBA_CACHE_DIR": CACHE})


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.5")
    session.run("ruff", "check", "fastconv", "bench", "tests", "tools", "noxfile.py")


@nox.session
def gpu_static(session: nox.Session) -> None:
    """Compile every GPU kernel specialisation the workloads use to PTX and assemble with ptxas -v."""
    session.install("-e", ".[gpu-static]")
    session.run("python", "tools/gpu_static.py", *session.posargs)
