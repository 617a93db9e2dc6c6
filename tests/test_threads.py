"""fastconv's thread runtime: TBB by default, fork, PyTorch in the same process, Python threads.

Each case that depends on what a process loaded first runs in a fresh interpreter. Results
are checked against the NumPy reference; speed belongs to the benchmark (bench/), not here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading

import numba
import numpy as np
import pytest

import fastconv as F
from fastconv import reference as ref_conv
from fastconv.cpu import _jit, blas

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A script prelude: three small layers that take the direct, depthwise and gemm kernels,
# and their reference results.
PRELUDE = textwrap.dedent("""
    import json, sys
    import numpy as np
    rng = np.random.default_rng(0)
    def r(*s):
        return rng.standard_normal(s).astype(np.float32)
    x, w = r(2, 8, 12, 12), r(8, 8, 3, 3)
    xd, wd = r(2, 12, 12, 16), r(16, 1, 3, 3)
    xp, wp = r(2, 32, 9, 9), r(64, 32, 1, 1)
    def calls(F):
        return [F.conv2d(x, w, padding=1, algo="direct"),
                F.conv2d(xd, wd, padding=1, groups=16, channels_last=True, algo="depthwise"),
                F.conv2d(xp, wp, algo="gemm")]
    def max_errors(F):
        from fastconv import reference as ref
        want = [ref.conv(x, w, padding=1), ref.conv(xd.transpose(0, 3, 1, 2), wd, padding=1, groups=16).transpose(0, 2, 3, 1),
                ref.conv(xp, wp)]
        return [float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)) for a, b in zip(calls(F), want)]
""")


def run_script(body: str, env: dict | None = None, timeout: float = 300) -> dict:
    """Run PRELUDE + body in a fresh interpreter; the body prints one JSON line last. A variable
    given as None is removed from the child's environment."""
    full_env = dict(os.environ, **(env or {}))
    full_env = {name: value for name, value in full_env.items() if value is not None}
    done = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(body)], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_default_runtime_is_tbb():
    assert _jit.THREADS.startswith("tbb layer"), _jit.THREADS


def test_user_threading_layer_is_kept():
    out = run_script("""
        import fastconv as F, numba
        from fastconv.cpu import _jit
        errors = max_errors(F)
        print(json.dumps({"layer": numba.threading_layer(), "threads": _jit.THREADS, "errors": errors}))
    """, env={"NUMBA_THREADING_LAYER": "workqueue"})
    assert out["layer"] == "workqueue" and "chosen by the user" in out["threads"]
    assert max(out["errors"]) < 1e-5


@pytest.mark.parametrize("layer", ["default", "omp"])
def test_forked_child_gets_the_parents_results(layer):
    """A child made by fork after the parent ran parallel kernels runs them and returns
    the parent's results (TBB: in parallel; OpenMP: on one thread instead of being killed)."""
    out = run_script("""
        import multiprocessing as mp
        import fastconv as F, numba
        parent = calls(F)
        def child(q):
            q.put(([a.tobytes() for a in calls(F)], numba.get_num_threads()))
        ctx = mp.get_context("fork")
        q = ctx.Queue()
        p = ctx.Process(target=child, args=(q,))
        p.start()
        got, threads = q.get(timeout=240)
        p.join()
        same = [g == a.tobytes() for g, a in zip(got, parent)]
        print(json.dumps({"exit": p.exitcode, "same": same, "child_threads": threads,
                          "parent_threads": numba.get_num_threads(),
                          "layer": numba.threading_layer(), "errors": max_errors(F)}))
    """, env={} if layer == "default" else {"NUMBA_THREADING_LAYER": layer})
    assert out["exit"] == 0
    assert all(out["same"]), out
    assert max(out["errors"]) < 1e-5
    if layer == "default":
        assert out["layer"] == "tbb" and out["child_threads"] == out["parent_threads"]
    else:
        assert out["layer"] == "omp" and out["child_threads"] == 1


@pytest.mark.parametrize("order", ["torch first", "torch after"])
def test_correct_with_torch_in_the_process(order):
    """torch imported before or after fastconv, and used between fastconv calls."""
    out = run_script(f"""
        order = {order!r}
        if order == "torch first":
            import torch
        import fastconv as F, numba
        first = max_errors(F)
        import torch
        t = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=1)
        again = max_errors(F)
        from fastconv import reference as ref
        torch_error = float((t.numpy() - ref.conv(x, w, padding=1)).__abs__().max())
        print(json.dumps({{"first": first, "again": again, "torch": torch_error,
                          "layer": numba.threading_layer()}}))
    """)
    assert out["layer"] == "tbb"
    assert max(out["first"] + out["again"]) < 1e-5
    assert out["torch"] < 1e-4


@pytest.mark.parametrize("env", [{"OMP_NUM_THREADS": None, "MKL_NUM_THREADS": None},
                                 {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": None}])
def test_torch_bridge_holds_torchs_pool_to_one_thread(env):
    """Importing fastconv.torch leaves the cores to fastconv's runtime (PyTorch on one intra-op
    thread) unless the user sized PyTorch's pool; either way a converted net trains as PyTorch's.
    The child's variables are set or removed explicitly: an earlier test's dask LocalCluster
    leaves OMP_NUM_THREADS=1 and MKL_NUM_THREADS=1 in this process's environment."""
    pytest.importorskip("torch")
    out = run_script("""
        import os, torch
        before = torch.get_num_threads()
        import fastconv.torch as FT
        from fastconv.torch import _threads
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                                  torch.nn.MaxPool2d(2), torch.nn.Conv2d(8, 8, 1), torch.nn.AdaptiveAvgPool2d(1),
                                  torch.nn.Flatten(), torch.nn.Linear(8, 4))
        converted, _ = FT.convert(net)
        xb, yb = torch.randn(4, 3, 10, 10), torch.tensor([0, 1, 2, 3])
        losses = [torch.nn.functional.cross_entropy(m(xb), yb) for m in (net, converted)]
        grads = [torch.autograd.grad(loss, net[0].weight)[0] for loss in losses]
        print(json.dumps({"before": before, "after": torch.get_num_threads(), "said": _threads.THREADS,
                          "loss": [float(v) for v in losses], "grad": float((grads[0] - grads[1]).abs().max()),
                          "scale": float(grads[0].abs().max())}))
    """, env=env)
    if env["OMP_NUM_THREADS"]:
        assert out["after"] == out["before"] == 2 and "OMP_NUM_THREADS set by the user" in out["said"]
    else:
        assert out["after"] == 1 and ("-> 1" in out["said"])
    assert out["loss"][0] == pytest.approx(out["loss"][1], rel=1e-5)
    assert out["grad"] <= 1e-4 * out["scale"]


def test_python_threads_at_once():
    """Several Python threads launching parallel kernels at the same time."""
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((2, 8, 16, 16)).astype(np.float32), rng.standard_normal((8, 8, 3, 3)).astype(np.float32)
    xp, wp = rng.standard_normal((2, 32, 9, 9)).astype(np.float32), rng.standard_normal((64, 32, 1, 1)).astype(np.float32)
    want, want_p = F.conv2d(x, w, padding=1), F.conv2d(xp, wp, algo="gemm")
    bad = []

    def work():
        for _ in range(20):
            if not np.array_equal(F.conv2d(x, w, padding=1), want):
                bad.append("direct")
            if not np.array_equal(F.conv2d(xp, wp, algo="gemm"), want_p):
                bad.append("gemm")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not bad
    np.testing.assert_allclose(want, ref_conv.conv(x, w, padding=1), rtol=1e-5, atol=1e-4)


# --- GEMM on fastconv's threads ----------------------------------------------------------

def _operand(rng, shape, transposed, dtype):
    a = rng.standard_normal(shape[::-1] if transposed else shape).astype(dtype)
    return a.T if transposed else a


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,n,k", [(256, 169, 64), (64, 3136, 64), (5, 7, 3), (1000, 40, 300), (1, 513, 17)])
@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
def test_gemm_against_numpy(dtype, m, n, k, ta, tb):
    rng = np.random.default_rng(m * n + k)
    a, b = _operand(rng, (m, k), ta, dtype), _operand(rng, (k, n), tb, dtype)
    a0, b0 = a.copy(), b.copy()
    out = np.full((m, n), np.nan, dtype)
    blas.gemm(a, b, out)
    want = a.astype(np.float64) @ b.astype(np.float64)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert np.abs(out - want).max() <= tol * max(np.abs(want).max(), 1)
    blas.gemm(a, b, out, accumulate=True)
    assert np.abs(out - 2 * want).max() <= 2 * tol * max(np.abs(want).max(), 1)
    assert np.array_equal(a, a0) and np.array_equal(b, b0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,n,k", [(16, 32, 12544), (24, 20, 3000), (5, 7, 2100), (64, 64, 300)])
@pytest.mark.parametrize("ta,tb", [(False, True), (True, False)])
def test_gemm_sum_against_numpy_and_threads(dtype, m, n, k, ta, tb):
    """The inner dimension cut into pieces fixed by the shapes: NumPy's product to rounding, and
    bitwise the same on 1 and 2 threads."""
    rng = np.random.default_rng(m * n + k)
    a, b = _operand(rng, (m, k), ta, dtype), _operand(rng, (k, n), tb, dtype)
    a0, b0 = a.copy(), b.copy()
    want = a.astype(np.float64) @ b.astype(np.float64)
    tol = (1e-5 if dtype == np.float32 else 1e-12) * max(np.abs(want).max(), 1)
    start = rng.standard_normal((m, n)).astype(dtype)
    runs = []
    old = numba.get_num_threads()
    try:
        for threads in (1, 2):
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            out = np.full((m, n), np.nan, dtype)
            blas.gemm_sum(a, b, out)
            total = start.copy()
            blas.gemm_sum(a, b, total, accumulate=True)
            runs.append((out, total))
    finally:
        numba.set_num_threads(old)
    assert np.abs(runs[0][0] - want).max() <= tol
    assert np.abs(runs[0][1] - (start + want)).max() <= 2 * tol
    assert all(x.tobytes() == y.tobytes() for x, y in zip(runs[0], runs[1]))
    assert np.array_equal(a, a0) and np.array_equal(b, b0)


def test_gemm_batched_broadcast_and_strided_views():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((64, 32)).astype(np.float32)
    planes = rng.standard_normal((3, 32, 500)).astype(np.float32)
    out = np.empty((3, 64, 500), np.float32)
    blas.gemm(w, planes, out)
    np.testing.assert_allclose(out, w @ planes, rtol=1e-5, atol=1e-4)
    rows = rng.standard_normal((700, 96)).astype(np.float32)
    wide = np.zeros((700, 80), np.float32)
    blas.gemm(rows[:, 32:64], w[:40].T, wide[:, 40:])  # column slices of a wider out
    np.testing.assert_allclose(wide[:, 40:], rows[:, 32:64] @ w[:40].T, rtol=1e-5, atol=1e-4)
    assert not wide[:, :40].any()
    odd = rng.standard_normal((50, 60)).astype(np.float32)[::2, ::3]  # no unit stride: np.matmul's path
    res = np.empty((25, 7), np.float32)
    blas.gemm(odd, rng.standard_normal((20, 7)).astype(np.float32), res)
    assert np.isfinite(res).all()


def test_gemm_leaves_openblas_thread_count_as_it_was():
    if not blas.LIBRARY.ok:
        pytest.fail("NumPy's OpenBLAS was not found: fastconv's GEMM falls back to np.matmul")
    before = blas.LIBRARY.get()
    a = np.ones((300, 200), np.float32)
    blas.gemm(a, a.T, np.empty((300, 300), np.float32))
    assert blas.LIBRARY.get() == before


def test_gemm_shapes_it_cannot_split_go_to_numpy():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((4, 8, 5)).astype(np.float32)
    b = rng.standard_normal((5, 6)).astype(np.float32)
    out = np.empty((4, 8, 6), np.float32)
    blas.gemm(a, b, out)  # a batched, b shared
    np.testing.assert_allclose(out, a @ b, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError):
        blas.gemm(a, b, np.empty((8, 6), np.float32))  # a batch the 2-D output cannot hold: NumPy's error
