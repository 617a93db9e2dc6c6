"""The GPU pooling-gradient kernels (fastconv.cuda.pool_grad) against the NumPy reference
(adjointness), torch.autograd and the CPU kernels.

Runs on a real GPU or under Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``), like
tests/test_cuda.py; shapes are tiny (the simulator runs each GPU thread as a Python
thread). Each case runs with Numba device arrays (the result must come back as one) and
with NumPy input and ``device``-less host arrays for the CPU comparison.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from numba import cuda

from fastconv import grad as G
from fastconv import reference as ref

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not cuda.is_available(), reason="no CUDA GPU and NUMBA_ENABLE_CUDASIM is not set"),
]

torch.set_num_threads(1)


def _on_device(fn, *arrays, **kwargs):
    """fn on device copies of ``arrays``; the result must be a device array."""
    out = fn(*(cuda.to_device(a) for a in arrays), **kwargs)
    assert hasattr(out, "copy_to_host"), type(out)
    return out.copy_to_host()


def _cl(a):
    return np.ascontiguousarray(np.moveaxis(a, 1, -1))


def _adjoint(y, g, x, gi):
    lhs, rhs = float(np.vdot(y, g)), float(np.vdot(x, gi))
    assert abs(lhs - rhs) <= 1e-12 * (np.abs(y * g).sum() + np.abs(x * gi).sum()), (lhs, rhs)


def _torch_grad(fn, x, g):
    xt = torch.tensor(x, requires_grad=True)
    fn(xt).backward(torch.tensor(g))
    return xt.grad.numpy()


CASES = [
    # name, nd, input shape, grad call, reference forward, torch forward (None: no torch twin)
    ("max1d", (1, 2, 9), lambda g, x, **kw: G.max_pool1d(g, x, 3, 2, 1, ceil_mode=True, **kw),
     lambda x: ref.max_pool(x, 3, 2, 1, ceil_mode=True), lambda t: TF.max_pool1d(t, 3, 2, 1, ceil_mode=True)),
    ("max2d_dil", (1, 2, 6, 5), lambda g, x, **kw: G.max_pool2d(g, x, 2, 1, 1, 2, **kw),
     lambda x: ref.max_pool(x, 2, 1, 1, 2), lambda t: TF.max_pool2d(t, 2, 1, 1, 2)),
    ("avg2d", (1, 2, 5, 6), lambda g, x, **kw: G.avg_pool2d(g, x, 3, 2, 1, True, False, **kw),
     lambda x: ref.avg_pool(x, 3, 2, 1, True, False), lambda t: TF.avg_pool2d(t, 3, 2, 1, True, False)),
    ("avg3d_div", (1, 1, 3, 4, 4), lambda g, x, **kw: G.avg_pool3d(g, x, 2, 1, divisor_override=3, **kw),
     lambda x: ref.avg_pool(x, 2, 1, divisor_override=3), lambda t: TF.avg_pool3d(t, 2, 1, divisor_override=3)),
    ("lp2d_p3", (1, 2, 4, 6), lambda g, x, **kw: G.lp_pool2d(g, x, 3.0, 2, 2, **kw),
     lambda x: ref.lp_pool(x, 3.0, 2, 2), None),
    ("lp1d_p2", (1, 2, 8), lambda g, x, **kw: G.lp_pool1d(g, x, 2.0, 3, 2, **kw),
     lambda x: ref.lp_pool(x, 2.0, 3, 2), lambda t: TF.lp_pool1d(t, 2.0, 3, 2)),
    ("lp2d_inf", (1, 2, 4, 4), lambda g, x, **kw: G.lp_pool2d(g, x, np.inf, 2, **kw),
     lambda x: ref.lp_pool(x, np.inf, 2), None),
    ("adaptive_avg2d", (1, 2, 5, 7), lambda g, x, **kw: G.adaptive_avg_pool2d(g, x, (3, 4), **kw),
     lambda x: ref.adaptive_avg_pool(x, (3, 4)), lambda t: TF.adaptive_avg_pool2d(t, (3, 4))),
    ("adaptive_max3d", (1, 2, 3, 4, 5), lambda g, x, **kw: G.adaptive_max_pool3d(g, x, (2, 3, 2), **kw),
     lambda x: ref.adaptive_max_pool(x, (2, 3, 2)), lambda t: TF.adaptive_max_pool3d(t, (2, 3, 2))),
    ("global_avg", (2, 2, 3, 4), lambda g, x, **kw: G.global_avg_pool(g, x, **kw),
     lambda x: ref.global_avg_pool(x), lambda t: TF.adaptive_avg_pool2d(t, 1)),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c[0])
def test_against_reference_torch_and_cpu(case):
    _, shape, grad, forward, theirs = case
    x = np.random.default_rng(0).standard_normal(shape)
    y = forward(x)
    g = np.random.default_rng(1).standard_normal(y.shape)
    gi = _on_device(grad, g, x)
    _adjoint(y, g, x, gi)
    np.testing.assert_allclose(gi, grad(g, x), rtol=1e-13, atol=1e-15)  # the CPU twin, same order of sums
    if theirs is not None:
        np.testing.assert_allclose(gi, _torch_grad(theirs, x, g), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", [CASES[0], CASES[2], CASES[4], CASES[7]], ids=lambda c: c[0])
def test_channels_last_float32_float16(case):
    _, shape, grad, forward, _ = case
    x64 = np.random.default_rng(2).standard_normal(shape)
    g64 = np.random.default_rng(3).standard_normal(forward(x64).shape)
    for dtype in (np.float32, np.float16):
        x, g = _cl(x64).astype(dtype), _cl(g64).astype(dtype)
        got = _on_device(grad, g, x, channels_last=True)
        assert got.dtype == dtype
        assert np.isfinite(got).all()
        expected = grad(g, x, channels_last=True)  # the CPU kernel: same working dtype, same order of sums
        np.testing.assert_allclose(got.astype(np.float64), expected.astype(np.float64),
                                   rtol=1e-6 if dtype == np.float32 else 1e-3, atol=1e-6)


def test_given_indices_on_device():
    x = np.random.default_rng(4).standard_normal((1, 2, 6, 6))
    from fastconv import max_pool2d

    _, idx = max_pool2d(x, 2, return_indices=True)
    g = np.random.default_rng(5).standard_normal(idx.shape)
    got = G.max_pool2d(cuda.to_device(g), cuda.to_device(x), 2, indices=cuda.to_device(idx)).copy_to_host()
    np.testing.assert_array_equal(got, G.max_pool2d(g, x, 2))


def test_same_bits_on_every_run():
    x = np.random.default_rng(6).standard_normal((1, 3, 6, 5)).astype(np.float32)
    g = np.random.default_rng(7).standard_normal((1, 3, 4, 3)).astype(np.float32)
    first = _on_device(lambda a, b: G.avg_pool2d(a, b, 3, 2, 1, True), g, x)
    np.testing.assert_array_equal(first, _on_device(lambda a, b: G.avg_pool2d(a, b, 3, 2, 1, True), g, x))


# ---- spatial_pyramid_pool: one gather kernel over the levels (fastconv.cuda.pool_pyramid_grad) ----

def _torch_pyramid(levels, mode):
    pool = TF.adaptive_max_pool2d if mode == "max" else TF.adaptive_avg_pool2d
    return lambda t: torch.cat([pool(t, lv).flatten(1) for lv in levels], 1)


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_pyramid_against_reference_torch_and_cpu(mode):
    levels = (1, 2, 3)
    x = np.random.default_rng(8).standard_normal((2, 3, 5, 7))
    y = ref.spatial_pyramid_pool(x, levels, mode)
    g = np.random.default_rng(9).standard_normal(y.shape)
    gi = _on_device(lambda a, b: G.spatial_pyramid_pool(a, b, levels, mode), g, x)
    _adjoint(y, g, x, gi)
    np.testing.assert_allclose(gi, G.spatial_pyramid_pool(g, x, levels, mode), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(gi, _torch_grad(_torch_pyramid(levels, mode), x, g), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shape,levels,mode", [((1, 2, 9), (1, 4), "avg"), ((1, 2, 3, 4, 5), (1, 2), "max")],
                         ids=["1d_avg", "3d_max"])
def test_pyramid_channels_last_float32_float16(shape, levels, mode):
    x64 = np.random.default_rng(10).standard_normal(shape)
    g64 = np.random.default_rng(11).standard_normal(ref.spatial_pyramid_pool(x64, levels, mode).shape)
    exact = G.spatial_pyramid_pool(g64, x64, levels, mode)
    for dtype in (np.float32, np.float16):
        x, g = _cl(x64).astype(dtype), g64.astype(dtype)
        got = _on_device(lambda a, b: G.spatial_pyramid_pool(a, b, levels, mode, channels_last=True), g, x)
        assert got.dtype == dtype
        # float16: g rounded (eps16 relative, max routing unchanged where x's ties stay apart), sums in float32
        np.testing.assert_allclose(np.moveaxis(got, -1, 1).astype(np.float64), exact,
                                   rtol=1e-6 if dtype == np.float32 else 2e-3, atol=1e-6)
    with pytest.raises(ValueError, match=r"spatial_pyramid_pool: grad_output has shape \(1, 3\)"):
        G.spatial_pyramid_pool(cuda.to_device(np.zeros((1, 3))), cuda.to_device(x64), levels, mode)
