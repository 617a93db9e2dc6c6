"""Gradients of pooling and the window ops (fastconv.grad) against the NumPy reference
(adjointness, finite differences) and torch.autograd.

Max and Lp pooling are positively homogeneous of degree 1 and average pooling is
linear, so for every pooling op and any g, <pool(x), g> == <x, pool_grad(g, x)>
(Euler: sum_i x_i dy/dx_i = y); with the reference's float64 forward this checks the
gradient exactly in float64, with no torch in the loop.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import fastconv as F
from fastconv import grad as G
from fastconv import reference as ref
from fastconv.testing.pool_samples import pool_samples

torch.set_num_threads(1)

TORCH64 = dict(rtol=1e-10, atol=1e-12)


def _rng(seed=0):
    return np.random.default_rng(seed)


def _adjoint(forward_y, g, x, gi):
    """<y, g> == <x, gi> to float64 rounding."""
    lhs, rhs = float(np.vdot(forward_y, g)), float(np.vdot(x, gi))
    assert abs(lhs - rhs) <= 1e-12 * (np.abs(forward_y * g).sum() + np.abs(x * gi).sum()) + 1e-300, (lhs, rhs)


def _torch_grad(fn, x, g):
    xt = torch.tensor(x, requires_grad=True)
    fn(xt).backward(torch.tensor(g))
    return xt.grad.numpy()


def _cl(a):
    """(N, C, *spatial) -> (N, *spatial, C), C-contiguous."""
    return np.ascontiguousarray(np.moveaxis(a, 1, -1))


def _cf(a):
    return np.moveaxis(a, -1, 1)


# ---- the sample registry: every pooling op, by adjointness --------------------------------

_GRAD_KWARGS = {"return_indices"}  # forward-only arguments


@pytest.mark.parametrize("sample", pool_samples(), ids=str)
def test_samples_adjoint(sample):
    x = _rng(1).standard_normal(sample.shapes[0])
    kwargs = {k: v for k, v in sample.args.items() if k not in _GRAD_KWARGS}
    y = sample.call(F, [x], **({"return_indices": False} if "return_indices" in sample.args else {}))
    g = _rng(2).standard_normal(y.shape)
    gi = getattr(G, sample.op)(g, x, **kwargs)
    assert gi.shape == x.shape and gi.dtype == x.dtype
    _adjoint(y, g, x, gi)


# ---- window pooling: adjointness against the reference -------------------------------------

WINDOW_CASES = [
    # nd, input shape, kernel, stride, padding, dilation, ceil_mode
    (1, (2, 3, 11), 3, 2, 1, 1, False),
    (1, (1, 2, 10), 4, 3, ((2, 0),), 2, True),
    (2, (2, 2, 7, 6), 3, 2, 1, 1, True),
    (2, (1, 3, 8, 9), (2, 3), (1, 2), ((0, 1), (2, 1)), (2, 1), False),
    (2, (1, 2, 5, 5), 3, 1, "same", 1, False),
    (3, (1, 2, 5, 4, 6), 2, (2, 1, 2), (1, 0, 1), 1, True),
]


@pytest.mark.parametrize("case", WINDOW_CASES, ids=str)
@pytest.mark.parametrize("channels_last", [False, True])
def test_max_pool_adjoint(case, channels_last):
    nd, shape, k, s, p, d, ceil = case
    x = _rng().standard_normal(shape)
    y = ref.max_pool(x, k, s, p, d, ceil)
    g = _rng(3).standard_normal(y.shape)
    fn = getattr(G, f"max_pool{nd}d")
    if channels_last:
        gi = _cf(fn(_cl(g), _cl(x), k, s, p, d, ceil, channels_last=True))
    else:
        gi = fn(g, x, k, s, p, d, ceil)
    _adjoint(y, g, x, gi)


@pytest.mark.parametrize("case", WINDOW_CASES, ids=str)
@pytest.mark.parametrize("flags", [dict(), dict(count_include_pad=False), dict(divisor_override=3)], ids=str)
@pytest.mark.parametrize("channels_last", [False, True])
def test_avg_pool_adjoint(case, flags, channels_last):
    nd, shape, k, s, p, d, ceil = case
    x = _rng().standard_normal(shape)
    y = ref.avg_pool(x, k, s, p, ceil, dilation=d, **flags)
    g = _rng(4).standard_normal(y.shape)
    fn = getattr(G, f"avg_pool{nd}d")
    if channels_last:
        gi = _cf(fn(_cl(g), _cl(x), k, s, p, ceil, dilation=d, channels_last=True, **flags))
    else:
        gi = fn(g, x, k, s, p, ceil, dilation=d, **flags)
    _adjoint(y, g, x, gi)
    # avg pooling is linear: the gradient does not depend on x
    if not channels_last:
        np.testing.assert_array_equal(gi, fn(g, np.zeros_like(x), k, s, p, ceil, dilation=d, **flags))


@pytest.mark.parametrize("case", WINDOW_CASES[:4], ids=str)
@pytest.mark.parametrize("p_norm", [0.5, 1.0, 2.0, 3.0, 1.5, np.inf])
def test_lp_pool_adjoint(case, p_norm):
    nd, shape, k, s, p, d, ceil = case
    x = _rng().standard_normal(shape)
    y = ref.lp_pool(x, p_norm, k, s, ceil, padding=p, dilation=d)
    g = _rng(5).standard_normal(y.shape)
    gi = getattr(G, f"lp_pool{nd}d")(g, x, p_norm, k, s, ceil, padding=p, dilation=d)
    _adjoint(y, g, x, gi)


# ---- adaptive, global, pyramid -------------------------------------------------------------

ADAPTIVE_CASES = [(1, (2, 3, 9), 4), (2, (1, 2, 7, 5), (3, 2)), (2, (2, 2, 4, 6), (6, 4)),
                  (3, (1, 2, 5, 4, 3), (2, 3, 2))]


@pytest.mark.parametrize("case", ADAPTIVE_CASES, ids=str)
@pytest.mark.parametrize("mode", ["avg", "max"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_adaptive_against_reference_and_torch(case, mode, channels_last):
    nd, shape, out = case
    x = _rng().standard_normal(shape)
    y = getattr(ref, f"adaptive_{mode}_pool")(x, out)
    g = _rng(6).standard_normal(y.shape)
    fn = getattr(G, f"adaptive_{mode}_pool{nd}d")
    gi = _cf(fn(_cl(g), _cl(x), out, channels_last=True)) if channels_last else fn(g, x, out)
    _adjoint(y, g, x, gi)
    tfn = getattr(TF, f"adaptive_{mode}_pool{nd}d")
    np.testing.assert_allclose(gi, _torch_grad(lambda t: tfn(t, out), x, g), **TORCH64)


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("mode", ["avg", "max"])
def test_global_pool(nd, mode):
    x = _rng().standard_normal((2, 3) + (4, 5, 3)[:nd])
    y = getattr(ref, f"global_{mode}_pool")(x)
    g = _rng(7).standard_normal(y.shape)
    gi = getattr(G, f"global_{mode}_pool")(g, x)
    _adjoint(y, g, x, gi)
    tfn = getattr(TF, f"adaptive_{mode}_pool{nd}d")
    np.testing.assert_allclose(gi, _torch_grad(lambda t: tfn(t, 1), x, g), **TORCH64)


@pytest.mark.parametrize("mode", ["avg", "max"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_spatial_pyramid_pool(mode, channels_last):
    x = _rng().standard_normal((2, 3, 7, 6))
    levels = (1, 2, 3)
    y = ref.spatial_pyramid_pool(x, levels, mode)
    g = _rng(8).standard_normal(y.shape)
    if channels_last:
        gi = _cf(G.spatial_pyramid_pool(g, _cl(x), levels, mode, channels_last=True))
    else:
        gi = G.spatial_pyramid_pool(g, x, levels, mode)
    _adjoint(y, g, x, gi)
    tfn = getattr(TF, f"adaptive_{mode}_pool2d")

    def pyramid(t):
        return torch.cat([tfn(t, lv).flatten(1) for lv in levels], 1)

    np.testing.assert_allclose(gi, _torch_grad(pyramid, x, g), **TORCH64)


# ---- torch.autograd ------------------------------------------------------------------------

TORCH_WINDOW_CASES = [  # torch's limits: symmetric pads <= kernel / 2
    (1, (2, 3, 11), 3, 2, 1, 1, False),
    (2, (2, 2, 7, 6), 3, 2, 1, 1, True),
    (2, (1, 3, 8, 9), (2, 3), (1, 2), (1, 1), (2, 1), False),
    (3, (1, 2, 5, 4, 6), 2, (2, 1, 2), (1, 0, 1), 1, True),
]


@pytest.mark.parametrize("case", TORCH_WINDOW_CASES, ids=str)
def test_max_pool_against_torch(case):
    nd, shape, k, s, p, d, ceil = case
    x = _rng().standard_normal(shape)
    g = _rng(9).standard_normal(ref.max_pool(x, k, s, p, d, ceil).shape)
    gi = getattr(G, f"max_pool{nd}d")(g, x, k, s, p, d, ceil)
    tfn = getattr(TF, f"max_pool{nd}d")
    np.testing.assert_allclose(gi, _torch_grad(lambda t: tfn(t, k, s, p, d, ceil), x, g), **TORCH64)


AVG_FLAGS = [dict(), dict(count_include_pad=False), dict(divisor_override=5)]


@pytest.mark.parametrize("case, flags", [(c, f) for c in TORCH_WINDOW_CASES if c[5] == 1 for f in AVG_FLAGS
                                         if c[0] > 1 or "divisor_override" not in f],  # torch's 1-D has none
                         ids=str)
def test_avg_pool_against_torch(case, flags):
    nd, shape, k, s, p, _, ceil = case
    x = _rng().standard_normal(shape)
    g = _rng(10).standard_normal(ref.avg_pool(x, k, s, p, ceil, **flags).shape)
    gi = getattr(G, f"avg_pool{nd}d")(g, x, k, s, p, ceil, **flags)
    tfn = getattr(TF, f"avg_pool{nd}d")
    np.testing.assert_allclose(gi, _torch_grad(lambda t: tfn(t, k, s, p, ceil, **flags), x, g), **TORCH64)


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("p_norm", [2.0, 4.0])
def test_lp_pool_against_torch(nd, p_norm):
    """torch raises x (not |x|) to the power p and rescales ceil_mode windows: they agree
    on even p without ceil_mode (fastconv.lp_pool2d's docstring)."""
    x = _rng().standard_normal((2, 2) + (6, 5, 7)[:nd])
    k, s = 2, (1, 2, 2)[:nd]
    g = _rng(11).standard_normal(ref.lp_pool(x, p_norm, k, s).shape)
    gi = getattr(G, f"lp_pool{nd}d")(g, x, p_norm, k, s)
    tfn = getattr(TF, f"lp_pool{nd}d")
    np.testing.assert_allclose(gi, _torch_grad(lambda t: tfn(t, p_norm, k, s), x, g), **TORCH64)


def test_float32_against_torch():
    """float32 sums at most (kernel / stride) ** nd terms per element, each one rounding:
    a few float32 ulps of the largest term. 1e-5 relative (80 ulps) with atol 1e-6 for
    cancellation leaves room without hiding a wrong term (each term is O(0.1))."""
    x = _rng().standard_normal((2, 3, 9, 7)).astype(np.float32)
    g = _rng(12).standard_normal((2, 3, 5, 4)).astype(np.float32)
    cases = [
        (lambda a, g_: G.avg_pool2d(g_, a, 3, 2, 1, True), lambda t: TF.avg_pool2d(t, 3, 2, 1, True)),
        (lambda a, g_: G.max_pool2d(g_, a, 3, 2, 1, 1, True), lambda t: TF.max_pool2d(t, 3, 2, 1, 1, True)),
        (lambda a, g_: G.lp_pool2d(g_, a, 2.0, 3, 2, True, padding=1), None),
        (lambda a, g_: G.adaptive_avg_pool2d(g_, a, (5, 4)), lambda t: TF.adaptive_avg_pool2d(t, (5, 4))),
    ]
    for ours, theirs in cases:
        got = ours(x, g)
        assert got.dtype == np.float32
        expected = ours(x.astype(np.float64), g.astype(np.float64)) if theirs is None else \
            _torch_grad(theirs, x.astype(np.float64), g.astype(np.float64))
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_float16_is_computed_in_float32():
    x = _rng().standard_normal((1, 2, 6, 6)).astype(np.float16)
    g = _rng(13).standard_normal((1, 2, 3, 3)).astype(np.float16)
    for fn in (lambda a, g_: G.avg_pool2d(g_, a, 2), lambda a, g_: G.max_pool2d(g_, a, 2),
               lambda a, g_: G.lp_pool2d(g_, a, 3.0, 2)):
        got = fn(x, g)
        assert got.dtype == np.float16
        expected = fn(x.astype(np.float32), g.astype(np.float32)).astype(np.float16)
        np.testing.assert_array_equal(got, expected)


# ---- finite differences --------------------------------------------------------------------

def _numeric_grad(f, x, g, eps=1e-6):
    out = np.zeros_like(x)
    flat = x.reshape(-1)
    for i in range(flat.size):
        keep = flat[i]
        flat[i] = keep + eps
        up = np.vdot(f(x), g)
        flat[i] = keep - eps
        down = np.vdot(f(x), g)
        flat[i] = keep
        out.reshape(-1)[i] = (up - down) / (2 * eps)
    return out


@pytest.mark.parametrize("p_norm", [1.0, 1.5, 3.0])
def test_lp_pool_finite_differences(p_norm):
    """Mixed signs: fastconv's Lp is ONNX's, (sum |x| ** p) ** (1 / p)."""
    x = _rng(14).standard_normal((1, 2, 5, 4))
    x[np.abs(x) < 0.05] = 0.3  # away from the kink at 0
    args = (2, 1, True)
    g = _rng(15).standard_normal(ref.lp_pool(x, p_norm, *args, padding=1).shape)
    gi = G.lp_pool2d(g, x, p_norm, *args, padding=1)
    expected = _numeric_grad(lambda a: ref.lp_pool(a, p_norm, *args, padding=1), x.copy(), g)
    np.testing.assert_allclose(gi, expected, rtol=1e-6, atol=1e-7)


def test_avg_pool_finite_differences():
    x = _rng(16).standard_normal((1, 1, 6, 5))
    kw = dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)
    g = _rng(17).standard_normal(ref.avg_pool(x, **kw).shape)
    gi = G.avg_pool2d(g, x, **kw)
    np.testing.assert_allclose(gi, _numeric_grad(lambda a: ref.avg_pool(a, **kw), x.copy(), g), rtol=1e-7,
                               atol=1e-8)


def test_lp_pool_zero_window_gives_zero():
    """A window of zeros: the norm's derivative is not finite there; the gradient is 0, not NaN."""
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 2:, 2:] = [[1.0, -2.0], [0.5, 0.0]]
    for p_norm in (0.5, 1.0, 2.0, 3.0, np.inf):
        gi = G.lp_pool2d(np.ones((1, 1, 2, 2)), x, p_norm, 2)
        assert np.isfinite(gi).all()
        assert (gi[0, 0, :2] == 0).all() and (gi[0, 0, :, :2] == 0).all() and gi[0, 0, 3, 3] == 0


# ---- max routing: ties, NaN, given indices -------------------------------------------------

def test_max_pool_ties_route_to_the_forward_index():
    x = np.ones((1, 2, 6, 6))  # every window is a tie
    x[0, 1, ::2, 1::2] = np.nan
    g = _rng(18).standard_normal((1, 2, 4, 4))
    gi = G.max_pool2d(g, x, 3, 2, 1, ceil_mode=True)
    _, idx = F.max_pool2d(x, 3, 2, 1, ceil_mode=True, return_indices=True)
    _, ref_idx = ref.max_pool(x, 3, 2, 1, ceil_mode=True, return_indices=True)
    np.testing.assert_array_equal(idx, ref_idx)
    expected = np.zeros((2, 36))
    for c in range(2):
        np.add.at(expected[c], ref_idx[0, c].reshape(-1), g[0, c].reshape(-1))
    np.testing.assert_allclose(gi[0].reshape(2, 36), expected, rtol=1e-15)
    np.testing.assert_array_equal(gi, _torch_grad(lambda t: TF.max_pool2d(t, 3, 2, 1, ceil_mode=True), x, g))
    gl = G.max_pool2d(_cl(g), _cl(x), 3, 2, 1, ceil_mode=True, channels_last=True)
    np.testing.assert_array_equal(_cf(gl), gi)  # the same indices in either layout


@pytest.mark.parametrize("channels", [16, 20, 37])
def test_max_pool_channels_last_in_channel_blocks(channels):
    """Channels-last max pooling gradients run per image and block of 16 channels
    (cpu/pool/max_grad.py): whole and partial blocks, ties included, route as torch's and as
    the channels-first call."""
    x = np.maximum(_rng(30).integers(-2, 3, (2, channels, 9, 8)), 0).astype(np.float64)
    g = _rng(31).standard_normal(ref.max_pool(x, 3, 2, 1, 1, True).shape)
    gi = G.max_pool2d(g, x, 3, 2, 1, ceil_mode=True)
    np.testing.assert_array_equal(_cf(G.max_pool2d(_cl(g), _cl(x), 3, 2, 1, ceil_mode=True, channels_last=True)), gi)
    np.testing.assert_allclose(gi, _torch_grad(lambda t: TF.max_pool2d(t, 3, 2, 1, ceil_mode=True), x, g), **TORCH64)
    ga = _rng(32).standard_normal((2, channels, 4, 3))
    gai = G.adaptive_max_pool2d(ga, x, (4, 3))
    np.testing.assert_array_equal(_cf(G.adaptive_max_pool2d(_cl(ga), _cl(x), (4, 3), channels_last=True)), gai)
    np.testing.assert_allclose(gai, _torch_grad(lambda t: TF.adaptive_max_pool2d(t, (4, 3)), x, ga), **TORCH64)


def test_max_pool_given_indices():
    x = _rng().standard_normal((2, 3, 7, 7))
    _, idx = F.max_pool2d(x, 3, 2, return_indices=True)
    g = _rng(19).standard_normal(idx.shape)
    np.testing.assert_array_equal(G.max_pool2d(g, x, 3, 2, indices=idx), G.max_pool2d(g, x, 3, 2))
    # another valid choice (the window's first position) routes there instead
    first = idx.copy()
    first[..., 0, 0] = 0
    gi = G.max_pool2d(g, x, 3, 2, indices=first)
    np.testing.assert_array_equal(gi[:, :, 0, 0], g[:, :, 0, 0])
    _, aidx = F.adaptive_max_pool2d(x, (3, 2), return_indices=True)
    ga = _rng(20).standard_normal(aidx.shape)
    np.testing.assert_array_equal(G.adaptive_max_pool2d(ga, x, (3, 2), indices=aidx),
                                  G.adaptive_max_pool2d(ga, x, (3, 2)))


def test_unbatched():
    x = _rng().standard_normal((3, 7, 6))
    g = _rng(21).standard_normal((3, 3, 3))
    np.testing.assert_array_equal(G.max_pool2d(g, x, 2), G.max_pool2d(g[None], x[None], 2)[0])
    np.testing.assert_array_equal(G.avg_pool2d(g, x, 2), G.avg_pool2d(g[None], x[None], 2)[0])


def test_empty_batch():
    x = np.zeros((0, 2, 6, 6), np.float32)
    for gi in (G.max_pool2d(np.zeros((0, 2, 3, 3), np.float32), x, 2),
               G.adaptive_avg_pool2d(np.zeros((0, 2, 2, 2), np.float32), x, 2)):
        assert gi.shape == x.shape and gi.dtype == x.dtype


# ---- windows: unfold / fold / max_unpool ---------------------------------------------------

@pytest.mark.parametrize("geometry", [dict(kernel_size=(2, 3), stride=1, padding=1),
                                      dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2))],
                         ids=str)
def test_unfold_fold_adjoint(geometry):
    x = _rng().standard_normal((2, 3, 6, 7))
    cols = ref.unfold(x, **geometry)
    g = _rng(22).standard_normal(cols.shape)
    gi = G.unfold(g, x.shape, **geometry)
    _adjoint(cols, g, x, gi)
    np.testing.assert_allclose(gi, _torch_grad(lambda t: TF.unfold(t, **geometry), x, g), **TORCH64)
    # fold's gradient is unfold: <fold(c), h> == <c, fold_grad(h)>
    h = _rng(23).standard_normal(x.shape)
    gc = G.fold(h, x.shape[2:], **geometry)
    _adjoint(ref.fold(g, x.shape[2:], **geometry), h, g, gc)
    np.testing.assert_allclose(gc, _torch_grad(lambda t: TF.fold(t, x.shape[2:], **geometry), g, h), **TORCH64)


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_max_unpool(nd):
    x = _rng().standard_normal((2, 2) + (6, 4, 6)[:nd])
    values, idx = getattr(F, f"max_pool{nd}d")(x, 2, return_indices=True)
    out = getattr(F, f"max_unpool{nd}d")(values, idx, 2)
    h = _rng(24).standard_normal(out.shape)
    gi = getattr(G, f"max_unpool{nd}d")(h, idx, 2)
    _adjoint(ref.max_unpool(values, idx, 2), h, values, gi)
    tfn = getattr(TF, f"max_unpool{nd}d")
    np.testing.assert_array_equal(gi, _torch_grad(lambda t: tfn(t, torch.tensor(idx), 2), values, h))


# ---- determinism ---------------------------------------------------------------------------

def test_bitwise_across_runs_and_threads():
    x = _rng().standard_normal((4, 8, 20, 20)).astype(np.float32)
    calls = [
        lambda: G.avg_pool2d(_rng(25).standard_normal((4, 8, 10, 10)).astype(np.float32), x, 3, 2, 1),
        lambda: G.max_pool2d(_rng(25).standard_normal((4, 8, 10, 10)).astype(np.float32), x, 3, 2, 1),
        lambda: G.max_pool2d(_rng(25).standard_normal((4, 10, 10, 20)).astype(np.float32),
                             _rng(26).standard_normal((4, 20, 20, 20)).astype(np.float32), 3, 2, 1,
                             channels_last=True),
        lambda: G.adaptive_avg_pool2d(_rng(25).standard_normal((4, 7, 6, 8)).astype(np.float32), _cl(x), (7, 6),
                                      channels_last=True),
        lambda: G.lp_pool2d(_rng(25).standard_normal((4, 8, 10, 10)).astype(np.float32), x, 3.0, 3, 2,
                            padding=1),
    ]
    old = numba.get_num_threads()
    try:
        for call in calls:
            numba.set_num_threads(min(2, old))
            first = call()
            np.testing.assert_array_equal(first, call())
            numba.set_num_threads(1)
            np.testing.assert_array_equal(first, call())
    finally:
        numba.set_num_threads(old)


def test_repeated_calls_run_the_call_plan():
    """A pooling gradient seen before runs its CallPlan: new values give their own results
    (max pooling's indices given or found, Lp's forward output, unbatched input, both
    layouts), as a fresh call does, and given indices are checked on every call."""
    def grads(x, g, g1, cl):
        idx = F.max_pool2d(x, 3, 2, 1, return_indices=True, channels_last=cl)[1]
        return [G.max_pool2d(g, x, 3, 2, 1, indices=idx, channels_last=cl), G.max_pool2d(g, x, 3, 2, 1, channels_last=cl),
                G.avg_pool2d(g, x, 3, 2, 1, False, False, channels_last=cl),
                G.lp_pool2d(g, x, 3.0, 3, 2, padding=1, channels_last=cl),
                G.adaptive_max_pool2d(g1, x, 2, channels_last=cl), G.adaptive_avg_pool2d(g1, x, 2, channels_last=cl),
                G.max_pool2d(g[0], x[0], 3, 2, 1, channels_last=cl)]

    for cl in (False, True):
        calls = []
        for seed in (1, 2, 1):
            x = _rng(seed).standard_normal((2, 3, 7, 6))
            g, g1 = _rng(seed + 9).standard_normal((2, 3, 4, 3)), _rng(seed + 19).standard_normal((2, 3, 2, 2))
            if cl:
                x, g, g1 = _cl(x), _cl(g), _cl(g1)
            calls.append(grads(x, g, g1, cl))
            F.clear_caches()
            fresh = grads(x, g, g1, cl)
            assert all(a.tobytes() == b.tobytes() for a, b in zip(calls[-1], fresh))
        assert all(a.tobytes() == b.tobytes() for a, b in zip(calls[0], calls[2]))
        assert not any(np.array_equal(a, b) for a, b in zip(calls[0], calls[1]))
    x = np.zeros((1, 2, 6, 6))
    G.max_pool2d(np.zeros((1, 2, 3, 3)), x, 2, indices=F.max_pool2d(x, 2, return_indices=True)[1])
    with pytest.raises(ValueError, match=r"max_pool2d: indices\[0, 0, 0, 1\]=0 is not a position"):
        G.max_pool2d(np.zeros((1, 2, 3, 3)), x, 2, indices=np.zeros((1, 2, 3, 3), np.int64))


# ---- errors ---------------------------------------------------------------------------------

def test_errors():
    x = np.zeros((1, 2, 6, 6))
    with pytest.raises(ValueError, match=r"max_pool2d: grad_output has shape \(1, 2, 2, 2\).*\(1, 2, 3, 3\)"):
        G.max_pool2d(np.zeros((1, 2, 2, 2)), x, 2)
    with pytest.raises(ValueError, match="adaptive_avg_pool2d: grad_output has shape"):
        G.adaptive_avg_pool2d(np.zeros((1, 2, 3, 3)), x, 2)
    with pytest.raises(TypeError, match="grad_output has dtype float32 but input has dtype float64"):
        G.avg_pool2d(np.zeros((1, 2, 3, 3), np.float32), x, 2)
    with pytest.raises(TypeError, match="input has dtype int32"):
        G.max_pool2d(np.zeros((1, 2, 3, 3), np.int32), x.astype(np.int32), 2)
    with pytest.raises(ValueError, match=r"max_pool2d: indices\[0, 0, 0, 1\]=0 is not a position"):
        G.max_pool2d(np.zeros((1, 2, 3, 3)), x, 2, indices=np.zeros((1, 2, 3, 3), np.int64))
    with pytest.raises(ValueError, match=r"adaptive_max_pool2d: indices\[0, 0, 0, 1\]=0 is not a position"):
        G.adaptive_max_pool2d(np.zeros((1, 2, 3, 3)), x, 3, indices=np.zeros((1, 2, 3, 3), np.int64))
    with pytest.raises(TypeError, match="indices has dtype float64"):
        G.max_pool2d(np.zeros((1, 2, 3, 3)), x, 2, indices=np.zeros((1, 2, 3, 3)))
    with pytest.raises(ValueError, match="indices has shape"):
        G.adaptive_max_pool2d(np.zeros((1, 2, 3, 3)), x, 3, indices=np.zeros((1, 2, 2, 2), np.int64))
    with pytest.raises(ValueError, match="input must have 4 dims"):
        G.avg_pool2d(np.zeros((1, 2, 3, 3)), np.zeros((6, 6)), 2)
    with pytest.raises(ValueError, match="spatial_pyramid_pool: grad_output has shape"):
        G.spatial_pyramid_pool(np.zeros((1, 9)), x, (1, 2))
    with pytest.raises(ValueError, match=r"max_unpool2d: indices\[0, 0, 0, 0\]=99 is outside"):
        G.max_unpool2d(np.zeros((1, 2, 6, 6)), np.full((1, 2, 3, 3), 99), 2)
    with pytest.raises(ValueError, match="max_unpool2d: grad_output has shape"):
        G.max_unpool2d(np.zeros((1, 2, 5, 5)), np.zeros((1, 2, 3, 3), np.int64), 2)
    with pytest.raises(ValueError, match="unfold: grad_output has shape"):
        G.unfold(np.zeros((1, 8, 20)), (1, 2, 6, 6), 2)
    with pytest.raises(ValueError, match="fold: grad_output has shape"):
        G.fold(np.zeros((1, 2, 5, 5)), (6, 6), 2)
    with pytest.raises(ValueError, match="unknown algo='nope'"):
        G.avg_pool2d(np.zeros((1, 2, 3, 3)), x, 2, algo="nope")


def test_algorithms_and_algo():
    assert F.algorithms("grad.avg_pool2d", (1, 2, 6, 6), kernel_size=2) == ["gather"]
    assert F.algorithms("grad.adaptive_max_pool1d", (1, 2, 9), output_size=4) == ["gather"]
    x = _rng().standard_normal((1, 2, 6, 6))
    g = _rng(27).standard_normal((1, 2, 3, 3))
    np.testing.assert_array_equal(G.max_pool2d(g, x, 2, algo="gather"), G.max_pool2d(g, x, 2))


def test_inputs_are_not_modified():
    x = _rng().standard_normal((1, 2, 6, 6))
    g = _rng(26).standard_normal((1, 2, 3, 3))
    keep_x, keep_g = x.copy(), g.copy()
    for fn in (G.max_pool2d, G.avg_pool2d):
        fn(g, x, 2)
    G.lp_pool2d(g, x, 3.0, 2)
    np.testing.assert_array_equal(x, keep_x)
    np.testing.assert_array_equal(g, keep_g)


def _window_cells(n, o, k, s, d, pad, adaptive):
    """The input cells output ``o`` of one dim reads, from the definition."""
    if adaptive:
        return set(range(o * n // k, -(-(o + 1) * n // k)))
    return {o * s - pad + j * d for j in range(k)} & set(range(n))


@pytest.mark.parametrize("case", [
    dict(op="max_pool2d", shape=(1, 2, 5, 7), kernel=3, stride=2, padding=1, dilation=1, ceil_mode=True),
    dict(op="max_pool2d", shape=(1, 1, 6, 6), kernel=2, stride=1, padding=1, dilation=3, ceil_mode=False),
    dict(op="max_pool1d", shape=(2, 1, 9), kernel=3, stride=3, padding=1, dilation=2, ceil_mode=True),
    dict(op="max_pool3d", shape=(1, 1, 3, 4, 5), kernel=2, stride=(1, 2, 2), padding=(0, 1, 1), dilation=1,
         ceil_mode=False),
    dict(op="adaptive_max_pool2d", shape=(1, 2, 7, 5), output_size=(3, 2)),
], ids=lambda c: c["op"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_every_index_inside_its_window_is_accepted_and_every_other_refused(case, channels_last):
    """The index check (kernels.pool_reach.first_stray_index over output_spans) against the
    windows' definition: each output's index set, one at a time, to every value from -2 to
    past the plane, in either layout."""
    nd = len(case["shape"]) - 2
    x = np.random.default_rng(0).standard_normal(case["shape"])
    adaptive = case["op"].startswith("adaptive")
    layout = dict(channels_last=channels_last)
    xs = np.ascontiguousarray(np.moveaxis(x, 1, -1)) if channels_last else x
    if adaptive:
        args = (case["output_size"],)
        _, idx = getattr(F, case["op"])(xs, *args, return_indices=True, **layout)
        per_dim = [(o, None) for o in case["output_size"]]
    else:
        args = (case["kernel"], case["stride"], case["padding"], case["dilation"], case["ceil_mode"])
        _, idx = getattr(F, case["op"])(xs, *args, return_indices=True, **layout)
        per_dim = list(zip(*(np.broadcast_to(np.asarray(v, dtype=object), (nd,)) for v in args[:4])))
    grad = getattr(G, case["op"])
    in_size = case["shape"][2:]
    plane = int(np.prod(in_size))
    g = np.ones(idx.shape)
    out_size = idx.shape[1:-1] if channels_last else idx.shape[2:]
    for q in np.ndindex(*idx.shape):
        o = q[1:-1] if channels_last else q[2:]
        inside = set()
        cells = []
        for n, oo, pd, on in zip(in_size, o, per_dim, out_size):
            if adaptive:
                cells.append(_window_cells(n, oo, on, None, None, None, True))
            else:
                k, s, p, d = pd
                cells.append(_window_cells(n, oo, k, s, d, p, False))
        for pos in np.ndindex(*in_size):
            if all(i in c for i, c in zip(pos, cells)):
                inside.add(int(np.ravel_multi_index(pos, in_size)))
        for v in range(-2, plane + 2):
            bad = idx.copy()
            bad[q] = v
            if v == -1 or v in inside:
                grad(g, xs, *args, indices=bad, **layout)
            else:
                with pytest.raises(ValueError, match="is not a position"):
                    grad(g, xs, *args, indices=bad, **layout)
