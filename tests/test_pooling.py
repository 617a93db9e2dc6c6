"""Pooling on the CPU against the NumPy reference and torch.nn.functional.

torch is the oracle wherever it has an answer (values and exact int64 indices);
beyond it (per-side pads, large pads, avg/lp dilation, lp padding, "same" with a
stride) the reference is. Shapes are small, and every kernel sees only C-contiguous
float32/float64 arrays, so each compiles at most twice.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import fastconv as F
from fastconv import reference as ref
from fastconv.spec.pool import resolve_adaptive_pool
from fastconv.testing import workloads
from fastconv.testing.registry import error_inputs, samples
from fastconv.testing.tolerances import assert_close

torch.set_num_threads(1)

DTYPES = [np.float64, np.float32]


# ---- helpers -------------------------------------------------------------------------

def randn(rng, shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


def ties(rng, shape, dtype=np.float64):
    """Small integers: many equal maxima, so the tie rule is tested."""
    return rng.integers(-2, 3, shape).astype(dtype)


def tt(x):
    return torch.from_numpy(np.ascontiguousarray(x))


def tn(y):
    return y.numpy().astype(np.float64)


def to_cl(x):
    return np.ascontiguousarray(np.moveaxis(x, 1, -1))


def from_cl(y):
    return np.moveaxis(y, -1, 1)


def family(mode):
    return "pool_lp" if mode == "lp" else "pool"


def call_cl(fn, x, *args, **kw):
    """Run fn in channels-last layout and return channels-first results."""
    out = fn(to_cl(x), *args, channels_last=True, **kw)
    if isinstance(out, tuple):
        return tuple(from_cl(o) for o in out)
    return from_cl(out)


def assert_same(a, b):
    """Bitwise-identical results (NaN equal), for layout and view invariance."""
    if isinstance(a, tuple):
        assert isinstance(b, tuple) and len(a) == len(b)
        for u, v in zip(a, b):
            assert_same(u, v)
        return
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a, b)


def _args(case, *names):
    """The sample's keyword arguments ``names``, in that order."""
    return tuple(case.args[n] for n in names)


AVG_ARGS = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override")

POOL = {("max", n): getattr(F, f"max_pool{n}d") for n in (1, 2, 3)}
POOL.update({("avg", n): getattr(F, f"avg_pool{n}d") for n in (1, 2, 3)})
POOL.update({("lp", n): getattr(F, f"lp_pool{n}d") for n in (1, 2, 3)})
TORCH_POOL = {("max", n): getattr(TF, f"max_pool{n}d") for n in (1, 2, 3)}
TORCH_POOL.update({("avg", n): getattr(TF, f"avg_pool{n}d") for n in (1, 2, 3)})
TORCH_POOL.update({("lp", n): getattr(TF, f"lp_pool{n}d") for n in (1, 2, 3)})


# ---- max pooling ---------------------------------------------------------------------

MAX_CASES = samples(family="pool", tags={"vs_torch", "max"})


def _case_id(case):
    a, shape = case.args, case.shapes[0]
    return (f"{len(shape) - 2}d-{'x'.join(map(str, shape))}-k{a['kernel_size']}-s{a['stride']}-p{a['padding']}"
            f"-d{a['dilation']}{'-ceil' if a['ceil_mode'] else ''}")


@pytest.mark.parametrize("data", ["randn", "ties"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", MAX_CASES, ids=_case_id)
def test_max_pool_vs_torch_and_reference(case, dtype, data, rng):
    shape, (k, s, p, d, ceil) = case.shapes[0], _args(case, "kernel_size", "stride", "padding", "dilation", "ceil_mode")
    nd = len(shape) - 2
    x = (randn if data == "randn" else ties)(rng, shape, dtype)
    x_before = x.copy()
    y, idx = POOL["max", nd](x, k, s, p, d, ceil, True)
    assert y.dtype == dtype and idx.dtype == np.int64
    tp = 0 if p == "valid" else p
    ty, ti = TORCH_POOL["max", nd](tt(x), k, s if s is not None else None, tp, d, ceil, True)
    assert_close(y, tn(ty), "pool", dtype, what="max vs torch")
    np.testing.assert_array_equal(idx, ti.numpy())
    ry, ri = ref.max_pool(x, k, s, p, d, ceil, return_indices=True)
    assert_close(y, ry, "pool", dtype, what="max vs reference")
    np.testing.assert_array_equal(idx, ri)
    assert_same(POOL["max", nd](x, k, s, p, d, ceil), y)          # without indices
    np.testing.assert_array_equal(x, x_before)


@pytest.mark.parametrize("case", MAX_CASES, ids=_case_id)
def test_max_pool_channels_last(case, rng):
    shape, (k, s, p, d, ceil) = case.shapes[0], _args(case, "kernel_size", "stride", "padding", "dilation", "ceil_mode")
    nd = len(shape) - 2
    x = ties(rng, shape, np.float32)
    expected = POOL["max", nd](x, k, s, p, d, ceil, True)
    assert_same(call_cl(POOL["max", nd], x, k, s, p, d, ceil, True), expected)


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_max_pool_nan_propagates_like_torch(nd, rng):
    shape = (2, 3) + (6,) * nd
    x = randn(rng, shape, np.float32)
    flat = x.reshape(2, 3, -1)
    flat[0, 0, [1, 4]] = np.nan          # two NaNs, possibly in one window
    flat[1, 2, :] = np.nan               # a whole plane of NaN
    flat[0, 1, -1] = np.nan              # one NaN in the last window
    y, idx = POOL["max", nd](x, 3, 2, 1, return_indices=True)
    ty, ti = TORCH_POOL["max", nd](tt(x), 3, 2, 1, return_indices=True)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ty.numpy()))
    assert np.isnan(y).any()
    assert_close(y, tn(ty), "pool", np.float32)
    np.testing.assert_array_equal(idx, ti.numpy())
    ry, ri = ref.max_pool(x, 3, 2, 1, return_indices=True)
    np.testing.assert_array_equal(idx, ri)
    assert_same(call_cl(POOL["max", nd], x, 3, 2, 1, return_indices=True), (y, idx))


# ---- average pooling -----------------------------------------------------------------

AVG_CASES = samples(family="pool", tags={"vs_torch", "avg"})


def _avg_id(case):
    shape, (k, s, p, ceil, cip, div) = case.shapes[0], _args(case, *AVG_ARGS)
    return (f"{len(shape) - 2}d-{'x'.join(map(str, shape))}-k{k}-s{s}-p{p}"
            f"{'-ceil' if ceil else ''}{'' if cip else '-excl'}{f'-div{div}' if div else ''}")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", AVG_CASES, ids=_avg_id)
def test_avg_pool_vs_torch_and_reference(case, dtype, rng):
    shape, (k, s, p, ceil, cip, div) = case.shapes[0], _args(case, *AVG_ARGS)
    nd = len(shape) - 2
    x = randn(rng, shape, dtype)
    y = POOL["avg", nd](x, k, s, p, ceil, cip, div)
    assert y.dtype == dtype
    targs = (tt(x), k, s, p, ceil, cip) + ((div,) if nd > 1 else ())
    if nd > 1 or div is None:
        assert_close(y, tn(TORCH_POOL["avg", nd](*targs)), "pool", dtype, what="avg vs torch")
    assert_close(y, ref.avg_pool(x, k, s, p, ceil, cip, div), "pool", dtype, what="avg vs reference")
    assert_same(call_cl(POOL["avg", nd], x, k, s, p, ceil, cip, div), y)


def test_avg_pool1d_divisor_override_reference_only(rng):
    x = randn(rng, (2, 3, 11))
    assert_close(F.avg_pool1d(x, 3, 2, 1, divisor_override=2), ref.avg_pool(x, 3, 2, 1, divisor_override=2),
                 "pool", np.float64)


# ---- Lp pooling ----------------------------------------------------------------------

LP_CASES = samples(family="pool", tags={"vs_torch", "lp"})


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", LP_CASES, ids=lambda c: "{}d-p{}-k{}-s{}".format(
    len(c.shapes[0]) - 2, *_args(c, "norm_type", "kernel_size", "stride")))
def test_lp_pool_vs_torch_and_reference(case, dtype, rng):
    shape, (p, k, s) = case.shapes[0], _args(case, "norm_type", "kernel_size", "stride")
    nd = len(shape) - 2
    x = randn(rng, shape, dtype)
    y = POOL["lp", nd](x, p, k, s)
    assert y.dtype == dtype
    # the Lp norm, (sum |x|**p) ** (1/p): torch computes it for non-negative input
    assert_close(y, tn(TORCH_POOL["lp", nd](tt(np.abs(x)), p, k, s)), "pool_lp", dtype, what="lp vs torch")
    assert_close(y, ref.lp_pool(x, p, k, s), "pool_lp", dtype, what="lp vs reference")
    assert_same(call_cl(POOL["lp", nd], x, p, k, s), y)


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_lp_pool_ceil_mode_sums_in_input_taps(nd, rng):
    """A window clipped by ceil_mode sums only its in-input taps (torch rescales it)."""
    x = np.abs(randn(rng, (1, 2) + (5,) * nd))
    y = POOL["lp", nd](x, 2, 2, ceil_mode=True)
    assert y.shape[2:] == (3,) * nd
    assert_close(y, ref.lp_pool(x, 2, 2, None, True), "pool_lp", np.float64)
    # windows fully inside the input agree with torch
    inner = (slice(None), slice(None)) + (slice(0, 2),) * nd
    assert_close(y[inner], tn(TORCH_POOL["lp", nd](tt(x), 2, 2, ceil_mode=True))[inner],
                 "pool_lp", np.float64)


@pytest.mark.parametrize("p", [1, 3, 1.5, 2.5])
def test_lp_pool_of_negative_input_is_the_norm(p):
    """(sum |x|**p) ** (1/p), as ONNX LpPool; torch takes the root of sum x**p, which is
    negative (p = 1) or NaN (odd or fractional p) on these windows."""
    x = np.array([[[-1.0, -2.0, 3.0, 1.0, -0.5, -4.0]]])
    expected = (np.abs(x).reshape(1, 1, 3, 2) ** p).sum(-1) ** (1 / p)
    for dtype in (np.float64, np.float32):
        y = F.lp_pool1d(x.astype(dtype), p, 2)
        assert np.isfinite(y).all() and (y > 0).all()
        assert_close(y, expected, "pool_lp", dtype)
        assert_close(F.lp_pool1d(to_cl(x).astype(dtype), p, 2, channels_last=True, padding=1),
                     ref.lp_pool(x, p, 2, padding=1).transpose(0, 2, 1), "pool_lp", dtype)
    assert_close(ref.lp_pool(x, p, 2), expected, "pool_lp", np.float64)
    assert_close(F.lp_pool1d(x, p, 2), tn(TF.lp_pool1d(tt(np.abs(x)), p, 2)), "pool_lp", np.float64)
    torch_y = tn(TF.lp_pool1d(tt(x), p, 2))
    assert (np.isnan(torch_y) | (torch_y < 0)).any()  # where PyTorch's definition differs


def test_lp_pool_inf_norm_is_max_abs(rng):
    x = randn(rng, (2, 3, 7, 8))
    assert_close(F.lp_pool2d(x, math.inf, 3, 2, padding=1), ref.lp_pool(x, math.inf, 3, 2, padding=1),
                 "pool_lp", np.float64)


# ---- beyond torch: the reference alone -----------------------------------------------

BEYOND = samples(family="pool", tags={"beyond_torch"})


def _beyond_case(case):
    """(mode, input shape, keyword arguments) of a sample."""
    return case.op.split("_")[0], case.shapes[0], case.args


def _beyond_id(case):
    mode, shape, kw = _beyond_case(case)
    return f"{mode}{len(shape) - 2}d-" + "-".join(f"{k}={v}" for k, v in kw.items()).replace(" ", "")


def _ref_pool(mode, x, kw):
    kw = dict(kw)
    if mode == "max":
        return ref.max_pool(x, kw.pop("kernel_size"), return_indices=True, **kw)
    if mode == "avg":
        return ref.avg_pool(x, kw.pop("kernel_size"), **kw)
    return ref.lp_pool(np.abs(x), kw.pop("norm_type"), kw.pop("kernel_size"), **kw)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", BEYOND, ids=_beyond_id)
def test_beyond_torch_vs_reference(case, dtype, rng):
    mode, shape, kw = _beyond_case(case)
    nd = len(shape) - 2
    x = ties(rng, shape, dtype) if mode == "max" else randn(rng, shape, dtype)
    fn = POOL[mode, nd]
    if mode == "max":
        got = fn(x, return_indices=True, **kw)
    elif mode == "lp":
        got = fn(np.abs(x), **kw)
    else:
        got = fn(x, **kw)
    expected = _ref_pool(mode, x, kw)
    if mode == "max":
        assert_close(got[0], expected[0], "pool", dtype, what="values")
        np.testing.assert_array_equal(got[1], expected[1])
    else:
        assert_close(got, expected, family(mode), dtype)
    if kw.get("padding") == "same":
        stride = kw["stride"] if not isinstance(kw["stride"], int) else (kw["stride"],) * nd
        out = got[0].shape[2:] if mode == "max" else got.shape[2:]
        assert out == tuple(-(-n // s) for n, s in zip(shape[2:], stride))
    xin = np.abs(x) if mode == "lp" else x
    assert_same(call_cl(fn, xin, **({"return_indices": True} if mode == "max" else {}), **kw), got)


def test_window_wholly_in_padding_gives_minus_inf_and_index_minus_one():
    x = np.ones((1, 1, 3))
    y, idx = F.max_pool1d(x, 2, 1, padding=((3, 0),), return_indices=True)
    assert y[0, 0, 0] == -np.inf and idx[0, 0, 0] == -1
    assert F.avg_pool1d(x, 2, 1, padding=((3, 0),), count_include_pad=False)[0, 0, 0] == 0.0


# ---- adaptive, global, pyramid -------------------------------------------------------

def _adaptive_id(case):
    shape = case.shapes[0]
    return f"{len(shape) - 2}d-{'x'.join(map(str, shape))}-o{case.args['output_size']}"


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", samples(family="pool", tags={"vs_torch", "adaptive_avg"}), ids=_adaptive_id)
def test_adaptive_avg_pool(case, dtype, rng):
    shape, out = case.shapes[0], case.args["output_size"]
    nd = len(shape) - 2
    x = randn(rng, shape, dtype)
    fn = getattr(F, f"adaptive_avg_pool{nd}d")
    y = fn(x, out)
    assert y.dtype == dtype
    assert_close(y, tn(getattr(TF, f"adaptive_avg_pool{nd}d")(tt(x), out)), "pool", dtype, what="vs torch")
    assert_close(y, ref.adaptive_avg_pool(x, out), "pool", dtype, what="vs reference")
    assert_same(call_cl(fn, x, out), y)


@pytest.mark.parametrize("data", ["randn", "ties"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", samples(family="pool", tags={"vs_torch", "adaptive_max"}), ids=_adaptive_id)
def test_adaptive_max_pool(case, dtype, data, rng):
    shape, out = case.shapes[0], case.args["output_size"]
    nd = len(shape) - 2
    x = (randn if data == "randn" else ties)(rng, shape, dtype)
    fn = getattr(F, f"adaptive_max_pool{nd}d")
    y, idx = fn(x, out, True)
    assert y.dtype == dtype and idx.dtype == np.int64
    ty, ti = getattr(TF, f"adaptive_max_pool{nd}d")(tt(x), out, True)
    assert_close(y, tn(ty), "pool", dtype, what="vs torch")
    np.testing.assert_array_equal(idx, ti.numpy())
    ry, ri = ref.adaptive_max_pool(x, out, return_indices=True)
    assert_close(y, ry, "pool", dtype, what="vs reference")
    np.testing.assert_array_equal(idx, ri)
    assert_same(fn(x, out), y)
    assert_same(call_cl(fn, x, out, True), (y, idx))


def test_adaptive_max_pool_nan_like_torch(rng):
    x = randn(rng, (2, 3, 7, 9), np.float32)
    x[0, 0, 1, 1] = x[0, 0, 2, 2] = np.nan
    x[1, 2] = np.nan
    y, idx = F.adaptive_max_pool2d(x, (3, 4), True)
    ty, ti = TF.adaptive_max_pool2d(tt(x), (3, 4), True)
    assert_close(y, tn(ty), "pool", np.float32)
    np.testing.assert_array_equal(idx, ti.numpy())
    assert np.isnan(F.global_max_pool(x)[0, 0]).all()


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(2, 3, 17), (2, 3, 7, 9), (2, 70, 3, 3), (1, 2, 5, 7, 6), (2, 5, 2, 3),
                                   (17, 600, 3, 5)],
                         ids=lambda s: "x".join(map(str, s)))
def test_global_pools(shape, dtype, rng):
    nd = len(shape) - 2
    x = randn(rng, shape, dtype)
    for name, mode in (("global_avg_pool", "avg"), ("global_max_pool", "max")):
        y = getattr(F, name)(x)
        assert y.shape == shape[:2] + (1,) * nd and y.dtype == dtype
        assert_close(y, getattr(ref, name)(x), "pool", dtype, what=name)
        torch_fn = getattr(TF, f"adaptive_{mode}_pool{nd}d")
        assert_close(y, tn(torch_fn(tt(x), 1)), "pool", dtype, what=f"{name} vs torch")
        assert_same(call_cl(getattr(F, name), x), y)


def test_global_avg_channels_last_sums_like_channels_first_at_every_pixel_count(rng):
    """The channels-last kernel's partial sums take four pixels per pass, then one:
    every count of pixels per partial sum (and the tail past the last multiple of 8)."""
    for pixels in (*range(1, 20), 31, 32, 33, 40, 49, 57, 64, 65):
        x = randn(rng, (2, 37, 1, pixels), np.float32)
        y = F.global_avg_pool(x)
        assert_close(y, ref.global_avg_pool(x), "pool", np.float32, what=f"{pixels} pixels")
        assert_same(call_cl(F.global_avg_pool, x), y)


def test_global_avg_channels_first_parallel_above_its_bound(rng):
    """Channels-first global average runs in parallel from SERIAL_WORK / GLOBAL_AVG_NCHW_VISITS
    input elements (ResNet-50's 2048x7x7), serially below (512x7x7); both give the serial
    kernel's bits, on one thread and on two, and PyTorch's values."""
    import numba

    from fastconv.cpu.pool import adaptive, run

    for channels, parallel in ((2048, True), (512, False)):
        x = randn(rng, (1, channels, 7, 7), np.float32)
        plan = adaptive._plan(resolve_adaptive_pool("adaptive_avg_pool2d", "avg", 2, x.shape, 1))
        assert (plan.work >= run.SERIAL_WORK) == parallel
        serial = np.empty((1, channels, 1, 1, 1), np.float32)
        adaptive.global_avg_nchw.serial(x.reshape(1, channels, 1, 7, 7), serial)
        previous = numba.get_num_threads()
        try:
            for threads in (1, numba.config.NUMBA_NUM_THREADS):
                numba.set_num_threads(threads)
                F.clear_caches()
                assert_same(F.global_avg_pool(x), serial.reshape(1, channels, 1, 1))
        finally:
            numba.set_num_threads(previous)
        want = torch.from_numpy(x.astype(np.float64)).mean(dim=(2, 3), keepdim=True).numpy()
        assert_close(F.global_avg_pool(x), want, "pool", np.float32, what=f"{channels} channels")


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("shape,levels", [((2, 3, 13, 11), (1, 2, 4)), ((2, 3, 17), (1, 3)),
                                          ((1, 2, 5, 6, 7), (1, 2)), ((2, 3, 3, 3), 4)],
                         ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else str(v))
def test_spatial_pyramid_pool(shape, levels, mode, rng):
    nd = len(shape) - 2
    x = randn(rng, shape)
    y = F.spatial_pyramid_pool(x, levels, mode)
    lv = (levels,) if isinstance(levels, int) else levels
    assert y.shape == (shape[0], shape[1] * sum(v ** nd for v in lv))
    assert_close(y, ref.spatial_pyramid_pool(x, lv, mode), "pool", np.float64)
    torch_fn = getattr(TF, f"adaptive_{mode}_pool{nd}d")
    expected = torch.cat([torch_fn(tt(x), v).flatten(1) for v in lv], 1)
    assert_close(y, tn(expected), "pool", np.float64, what="vs torch")
    assert_same(F.spatial_pyramid_pool(to_cl(x), levels, mode, channels_last=True), y)
    y32 = F.spatial_pyramid_pool(x.astype(np.float32), levels, mode)
    assert y32.dtype == np.float32
    assert_close(y32, ref.spatial_pyramid_pool(x.astype(np.float32), lv, mode), "pool", np.float32)


# ---- arrays: dtypes, views, layouts, batches -----------------------------------------

# name -> (fn(x, **kw), reference(x), spatial dims); reference results are channels-first.
OPS = {
    "max_pool1d": (lambda x, **kw: F.max_pool1d(x, 3, 2, 1, return_indices=True, **kw),
                   lambda x: ref.max_pool(x, 3, 2, 1, return_indices=True), 1),
    "max_pool2d": (lambda x, **kw: F.max_pool2d(x, 3, 2, 1, ceil_mode=True, return_indices=True, **kw),
                   lambda x: ref.max_pool(x, 3, 2, 1, ceil_mode=True, return_indices=True), 2),
    "max_pool3d": (lambda x, **kw: F.max_pool3d(x, 2, 1, **kw), lambda x: ref.max_pool(x, 2, 1), 3),
    "avg_pool1d": (lambda x, **kw: F.avg_pool1d(x, 3, 2, 1, **kw), lambda x: ref.avg_pool(x, 3, 2, 1), 1),
    "avg_pool2d": (lambda x, **kw: F.avg_pool2d(x, 3, 2, 1, True, False, **kw),
                   lambda x: ref.avg_pool(x, 3, 2, 1, True, False), 2),
    "avg_pool3d": (lambda x, **kw: F.avg_pool3d(x, 2, 2, 1, **kw), lambda x: ref.avg_pool(x, 2, 2, 1), 3),
    "lp_pool1d": (lambda x, **kw: F.lp_pool1d(x, 2, 3, 2, **kw), lambda x: ref.lp_pool(x, 2, 3, 2), 1),
    "lp_pool2d": (lambda x, **kw: F.lp_pool2d(x, 2, 2, **kw), lambda x: ref.lp_pool(x, 2, 2), 2),
    "lp_pool3d": (lambda x, **kw: F.lp_pool3d(x, 1, 2, **kw), lambda x: ref.lp_pool(x, 1, 2), 3),
    "adaptive_avg_pool2d": (lambda x, **kw: F.adaptive_avg_pool2d(x, (3, 2), **kw),
                            lambda x: ref.adaptive_avg_pool(x, (3, 2)), 2),
    "adaptive_max_pool1d": (lambda x, **kw: F.adaptive_max_pool1d(x, 4, True, **kw),
                            lambda x: ref.adaptive_max_pool(x, 4, True), 1),
    "adaptive_max_pool3d": (lambda x, **kw: F.adaptive_max_pool3d(x, 2, **kw),
                            lambda x: ref.adaptive_max_pool(x, 2), 3),
    "global_avg_pool": (lambda x, **kw: F.global_avg_pool(x, **kw), ref.global_avg_pool, 2),
    "global_max_pool": (lambda x, **kw: F.global_max_pool(x, **kw), ref.global_max_pool, 3),
}
BATCHED_ONLY = ("global_avg_pool", "global_max_pool")


def _shape(nd):
    return (2, 3) + (9, 7, 6)[:nd] if nd < 3 else (2, 3, 5, 7, 6)


def _check_ref(got, expected, mode_family, dtype):
    if isinstance(expected, tuple):
        assert_close(got[0], expected[0], mode_family, dtype)
        np.testing.assert_array_equal(got[1], expected[1])
        assert got[1].dtype == np.int64
    else:
        assert_close(got, expected, mode_family, dtype)


def _fam(name):
    return "pool_lp" if name.startswith("lp") else "pool"


@pytest.mark.parametrize("name", OPS)
def test_float16_computed_in_float32(name, rng):
    fn, rfn, nd = OPS[name]
    x = randn(rng, _shape(nd), np.float16)
    if name.startswith("max") or name.startswith("adaptive_max"):
        x[0, 0].flat[3] = np.nan
    got = fn(x)
    values = got[0] if isinstance(got, tuple) else got
    assert values.dtype == np.float16
    _check_ref(got, rfn(x.astype(np.float64)), _fam(name), np.float16)
    assert_same(fn(to_cl(x), channels_last=True), tuple(to_cl(g) for g in got) if isinstance(got, tuple)
                else to_cl(got))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", OPS)
def test_non_contiguous_and_read_only_input(name, dtype, rng):
    fn, rfn, nd = OPS[name]
    base = randn(rng, (2, 6) + _shape(nd)[2:], dtype)
    strided = base[:, ::2]                          # channel stride 2
    expected = fn(np.ascontiguousarray(strided))
    _check_ref(expected, rfn(strided), _fam(name), dtype)
    assert_same(fn(strided), expected)
    swapped = np.swapaxes(np.ascontiguousarray(np.swapaxes(base, 0, 1)), 0, 1)[:, :3]  # (C, N) storage
    assert_same(fn(swapped), fn(np.ascontiguousarray(swapped)))
    frozen = np.ascontiguousarray(strided)
    frozen.setflags(write=False)
    assert_same(fn(frozen), expected)
    frozen_cl = to_cl(strided)
    frozen_cl.setflags(write=False)
    got_cl = fn(frozen_cl, channels_last=True)
    assert_same(got_cl, tuple(to_cl(e) for e in expected) if isinstance(expected, tuple) else to_cl(expected))
    reversed_view = base[:, :, ::-1]                # negative stride
    assert_same(fn(reversed_view), fn(np.ascontiguousarray(reversed_view)))
    np.testing.assert_array_equal(base, base.copy())


@pytest.mark.parametrize("name", OPS)
def test_input_not_modified(name, rng):
    fn, _, nd = OPS[name]
    for x in (randn(rng, _shape(nd), np.float32), to_cl(randn(rng, _shape(nd), np.float64))):
        before = x.copy()
        fn(x, channels_last=x.dtype == np.float64)
        np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("name", OPS)
def test_zero_batch(name, rng):
    fn, _, nd = OPS[name]
    x = randn(rng, _shape(nd), np.float32)
    full = fn(x)
    empty = fn(x[:0])
    for f, e in zip(full if isinstance(full, tuple) else (full,), empty if isinstance(empty, tuple) else (empty,)):
        assert e.shape == (0,) + f.shape[1:] and e.dtype == f.dtype
    empty_cl = fn(to_cl(x)[:0], channels_last=True)
    first = empty_cl[0] if isinstance(empty_cl, tuple) else empty_cl
    assert first.shape == (0,) + to_cl(full[0] if isinstance(full, tuple) else full).shape[1:]


@pytest.mark.parametrize("name", [n for n in OPS if n not in BATCHED_ONLY])
def test_unbatched_input(name, rng):
    fn, _, nd = OPS[name]
    x = randn(rng, _shape(nd), np.float64)
    batched = fn(x[:1])
    single = fn(x[0])
    if isinstance(batched, tuple):
        assert_same(single, tuple(b[0] for b in batched))
    else:
        assert_same(single, batched[0])
    single_cl = fn(to_cl(x)[0], channels_last=True)
    first = single_cl[0] if isinstance(single_cl, tuple) else single_cl
    assert_same(np.moveaxis(first, -1, 0), batched[0][0] if isinstance(batched, tuple) else batched[0])


@pytest.mark.parametrize("name", ["max_pool2d", "avg_pool1d", "adaptive_max_pool1d", "global_avg_pool"])
def test_small_workspace_runs_in_chunks(name, rng):
    fn, _, nd = OPS[name]
    x = randn(rng, (5, 3) + _shape(nd)[2:], np.float32)
    expected = fn(x)
    previous = F.set_workspace_limit(64)
    try:
        got = fn(x)
    finally:
        F.set_workspace_limit(previous)
    assert_same(got, expected)


def test_padding_forms_agree():
    x = np.random.default_rng(5).standard_normal((1, 2, 7, 9))
    a = F.max_pool2d(x, 3, 2, 1)
    assert_same(F.max_pool2d(x, 3, 2, (1, 1)), a)
    assert_same(F.max_pool2d(x, 3, 2, ((1, 1), (1, 1))), a)
    assert_same(F.max_pool2d(x, (3, 3), (2, 2), [1]), a)
    assert_same(F.max_pool2d(x, 3, 2, "valid"), F.max_pool2d(x, 3, 2, 0))
    assert_same(F.avg_pool2d(x, 3, 1, "same"), F.avg_pool2d(x, 3, 1, 1))
    assert_same(F.max_pool2d(x, 3, []), F.max_pool2d(x, 3, 3))


def test_algorithms_lists_the_cpu_pooling_kernels():
    assert F.algorithms("max_pool2d", (1, 3, 8, 8), kernel_size=3, stride=2, padding=1) == ["direct"]
    assert F.algorithms("adaptive_avg_pool2d", (1, 3, 8, 8), output_size=(2, 3)) == ["direct"]


# ---- workloads (scaled down) ---------------------------------------------------------

def _workload_layers():
    layers = workloads.layers("pooling")
    return [pytest.param(layer, id=layer["name"]) for layer in layers]


def _scaled(shape):
    n, c, *spatial = shape
    return (min(n, 2), min(c, 8), *(max(7, s // 4) for s in spatial))


@pytest.mark.parametrize("layer", _workload_layers())
def test_workload_layers_scaled_down(layer, rng):
    shape = _scaled(layer["input"])
    x = randn(rng, shape, np.float32)
    op = layer["op"]
    fn = getattr(F, op)
    if op.startswith(("max_pool", "avg_pool")):
        args = (layer["kernel_size"], layer["stride"], layer["padding"])
        got = fn(x, *args)
        expected = (ref.max_pool if op.startswith("max") else ref.avg_pool)(x, *args)
        torch_got = getattr(TF, op)(tt(x), *args)
    elif op.startswith("adaptive"):
        got = fn(x, layer["output_size"])
        expected = getattr(ref, op[:-2])(x, layer["output_size"])
        torch_got = getattr(TF, op)(tt(x), layer["output_size"])
    elif op == "spatial_pyramid_pool":
        got = fn(x, tuple(layer["levels"]))
        expected = ref.spatial_pyramid_pool(x, tuple(layer["levels"]))
        torch_got = torch.cat([TF.adaptive_max_pool2d(tt(x), v).flatten(1) for v in layer["levels"]], 1)
    else:
        got = fn(x)
        expected = getattr(ref, op)(x)
        torch_got = TF.adaptive_avg_pool2d(tt(x), 1)
    assert got.dtype == np.float32
    assert_close(got, expected, "pool", np.float32, what=layer["name"])
    assert_close(got, tn(torch_got), "pool", np.float32, what=f"{layer['name']} vs torch")


# ---- windows that run past the padded end (ceil_mode) ---------------------------------

def _torch_ceil_cases():
    """Every 1-D geometry (in n, kernel k, stride s, pad p <= k/2, dilation d) in a small
    range where the last ceil_mode window runs past the padded end, so that the padded
    input is shorter than the window extent or the last window is clipped by the end."""
    cases = []
    for n in range(1, 5):
        for k in range(1, 6):
            for s in range(1, 4):
                for p in range(0, k // 2 + 1):
                    for d in (1, 2):
                        extent = d * (k - 1) + 1
                        span = n + 2 * p - extent
                        if span < 0 or span % s:
                            cases.append((n, k, s, p, d))
    return cases


CEIL_CASES = _torch_ceil_cases()


def test_windows_past_the_padded_end_issue_calls(rng):
    """The two calls of issue 11 that PyTorch accepts: the window extent exceeds the padded input."""
    x = randn(rng, (2, 2, 1, 17))
    for include in (True, False):
        args = (5,), dict(stride=3, padding=(1, 2), ceil_mode=True, count_include_pad=include)
        y = F.avg_pool2d(x, *args[0], **args[1])
        assert y.shape == (2, 2, 1, 7)
        assert_close(y, tn(TF.avg_pool2d(tt(x), *args[0], **args[1])), "pool", np.float64, what="avg vs torch")
        assert_close(y, ref.avg_pool(x, *args[0], **args[1]), "pool", np.float64, what="avg vs reference")
        assert_same(call_cl(F.avg_pool2d, x, *args[0], **args[1]), y)
    x = randn(rng, (2, 2, 17, 4))
    kw = dict(stride=3, padding=(1, 2), dilation=(1, 2), ceil_mode=True, return_indices=True)
    y, i = F.max_pool2d(x, (3, 5), **kw)
    ty, ti = TF.max_pool2d(tt(x), (3, 5), **kw)
    assert y.shape == (2, 2, 6, 1)
    np.testing.assert_array_equal(y, tn(ty))
    np.testing.assert_array_equal(i, ti.numpy())
    ry, ri = ref.max_pool(x, (3, 5), **kw)
    np.testing.assert_array_equal(y, ry)
    np.testing.assert_array_equal(i, ri)
    assert_same(call_cl(F.max_pool2d, x, (3, 5), **kw), (y, i))


@pytest.mark.parametrize("mode", ["max", "avg_include", "avg_exclude"])
def test_windows_past_the_padded_end_match_torch(mode, rng):
    """Every small geometry whose ceil_mode windows run past the padded end: fastconv accepts
    exactly the calls PyTorch accepts, with its shape, values, divisors and indices (2-D, the
    geometry on H, a plain 3-wide W, both layouts)."""
    accepted = 0
    for n, k, s, p, d in CEIL_CASES:
        if mode != "max" and d > 1:
            continue
        x = randn(rng, (1, 3, n, 4))
        kw = dict(stride=(s, 1), padding=(p, 0), ceil_mode=True)
        if mode == "max":
            fn, tfn, kw = F.max_pool2d, TF.max_pool2d, dict(kw, dilation=(d, 1), return_indices=True)
        else:
            fn, tfn, kw = F.avg_pool2d, TF.avg_pool2d, dict(kw, count_include_pad=mode == "avg_include")
        try:
            expected = tfn(tt(x), (k, 3), **kw)
        except RuntimeError:
            with pytest.raises(ValueError, match=r"larger than the padded input .* even ceil_mode leaves no window"):
                fn(x, (k, 3), **kw)
            continue
        accepted += 1
        got = fn(x, (k, 3), **kw)
        if mode == "max":
            np.testing.assert_array_equal(got[0], tn(expected[0]))
            reference = ref.max_pool(x, (k, 3), **kw)
            np.testing.assert_array_equal(got[0], reference[0])
            np.testing.assert_array_equal(got[1], reference[1])
            # a window with no tap in the input (dilation steps over it) is -inf with index -1
            # (README); torch reports an index of some cell outside the window there
            empty = reference[1] == -1
            assert np.isneginf(got[0][empty]).all()
            np.testing.assert_array_equal(got[1][~empty], expected[1].numpy()[~empty])
        else:
            assert_close(got, tn(expected), "pool", np.float64, what=f"{(n, k, s, p)} vs torch")
            assert_close(got, ref.avg_pool(x, (k, 3), **kw), "pool", np.float64, what=f"{(n, k, s, p)} vs ref")
        assert_same(call_cl(fn, x, (k, 3), **kw), got)
    assert accepted > 20


# ---- errors --------------------------------------------------------------------------

ERRORS = error_inputs(family="pool", exclude={"integer"})  # integer input: tests/test_integer_pooling.py


@pytest.mark.parametrize("e", ERRORS, ids=str)
def test_errors(e):
    with pytest.raises(e.error, match=e.match):
        e.call(F)


def test_all_minus_inf_window_gives_its_first_position_like_torch():
    import torch

    x = np.full((1, 1, 4, 4), -np.inf)
    x[0, 0, 3, 3] = 1.0
    values, idx = F.max_pool2d(x, 2, return_indices=True)
    tv, ti = torch.nn.functional.max_pool2d(torch.from_numpy(x), 2, return_indices=True)
    np.testing.assert_array_equal(values, tv.numpy())
    np.testing.assert_array_equal(idx, ti.numpy())


# ---- kernel variants: serial and parallel, layouts, routes ---------------------------

# Calls whose kernels differ by layout and route (window, divisible adaptive, general
# adaptive, global); odd sizes, edge windows cut by ceil_mode, strides 1, 2 and 3.
VARIANT_CALLS = {
    "max2d-s2-ceil": (lambda x, **kw: F.max_pool2d(x, 3, 2, 1, ceil_mode=True, return_indices=True, **kw),
                      lambda x: ref.max_pool(x, 3, 2, 1, ceil_mode=True, return_indices=True)),
    "max2d-s1-d2": (lambda x, **kw: F.max_pool2d(x, 3, 1, 2, 2, **kw), lambda x: ref.max_pool(x, 3, 1, 2, 2)),
    "max2d-s3": (lambda x, **kw: F.max_pool2d(x, (2, 4), 3, return_indices=True, **kw),
                 lambda x: ref.max_pool(x, (2, 4), 3, return_indices=True)),
    "avg2d-excl-ceil": (lambda x, **kw: F.avg_pool2d(x, 3, 2, 1, True, False, **kw),
                        lambda x: ref.avg_pool(x, 3, 2, 1, True, False)),
    "avg2d-div": (lambda x, **kw: F.avg_pool2d(x, 2, 1, 1, divisor_override=3, **kw),
                  lambda x: ref.avg_pool(x, 2, 1, 1, divisor_override=3)),
    "lp2d-p3": (lambda x, **kw: F.lp_pool2d(np.abs(x), 3, 2, **kw), lambda x: ref.lp_pool(np.abs(x), 3, 2)),
    "adaptive-avg-divisible": (lambda x, **kw: F.adaptive_avg_pool2d(x, (3, 1), **kw),
                               lambda x: ref.adaptive_avg_pool(x, (3, 1))),
    "adaptive-max-general": (lambda x, **kw: F.adaptive_max_pool2d(x, (4, 5), True, **kw),
                             lambda x: ref.adaptive_max_pool(x, (4, 5), True)),
    "adaptive-avg-general": (lambda x, **kw: F.adaptive_avg_pool2d(x, (2, 4), **kw),
                             lambda x: ref.adaptive_avg_pool(x, (2, 4))),
    "global-avg": (lambda x, **kw: F.global_avg_pool(x, **kw), ref.global_avg_pool),
    "global-max": (lambda x, **kw: F.global_max_pool(x, **kw), ref.global_max_pool),
}


@pytest.fixture
def parallel_only(monkeypatch):
    """Every call takes the parallel kernels, however small."""
    from fastconv.cpu.pool import run as pool_run

    monkeypatch.setattr(pool_run, "SERIAL_WORK", 0)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", VARIANT_CALLS)
def test_parallel_kernels_match_reference_and_serial(name, dtype, rng, monkeypatch):
    from fastconv.cpu.pool import run as pool_run

    fn, rfn = VARIANT_CALLS[name]
    x = ties(rng, (3, 5, 9, 11), dtype) if "max" in name else randn(rng, (3, 5, 9, 11), dtype)
    x[1, 2, 4, 5] = np.nan if "max" in name else x[1, 2, 4, 5]
    monkeypatch.setattr(pool_run, "SERIAL_WORK", 1 << 62)
    serial = fn(x)
    serial_cl = fn(to_cl(x), channels_last=True)
    monkeypatch.setattr(pool_run, "SERIAL_WORK", 0)
    parallel = fn(x)
    _check_ref(parallel, rfn(x), "pool_lp" if name.startswith("lp") else "pool", dtype)
    assert_same(parallel, serial)
    cl = fn(to_cl(x), channels_last=True)
    assert_same(cl, serial_cl)
    assert_same(tuple(from_cl(c) for c in cl) if isinstance(cl, tuple) else from_cl(cl), parallel)


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("out", [3, 2, 1], ids=["divisible", "general", "global"])
def test_adaptive_max_minus_inf_windows_give_first_position_like_torch(out, channels_last):
    x = np.full((1, 2, 9, 9), -np.inf, np.float32)
    x[0, 1, 8, 8] = 1.0
    tv, ti = TF.adaptive_max_pool2d(tt(x), out, True)
    got = (call_cl(F.adaptive_max_pool2d, x, out, True) if channels_last
           else F.adaptive_max_pool2d(x, out, True))
    np.testing.assert_array_equal(got[0], tv.numpy())
    np.testing.assert_array_equal(got[1], ti.numpy())


@pytest.mark.parametrize("name", ["max2d-s2-ceil", "avg2d-excl-ceil", "adaptive-max-general", "global-avg"])
def test_parallel_kernels_read_views_and_float16(name, rng, parallel_only):
    fn, rfn = VARIANT_CALLS[name]
    base = randn(rng, (2, 10, 9, 11), np.float32)
    view = base[:, ::2, :, ::-1]
    _check_ref(fn(view), rfn(view), "pool", np.float32)
    half = view.astype(np.float16)
    got = fn(half)
    assert (got[0] if isinstance(got, tuple) else got).dtype == np.float16
    _check_ref(got, rfn(half.astype(np.float64)), "pool", np.float16)


def test_spec_cache_tells_equal_values_of_other_types_apart():
    x = np.zeros((1, 2, 6, 6), np.float32)
    assert F.max_pool2d(x, 2).shape == (1, 2, 3, 3)
    with pytest.raises(TypeError, match="kernel_size must be an int"):
        F.max_pool2d(x, 2.0)
    assert F.max_pool2d(x, 1).shape == (1, 2, 6, 6)
    with pytest.raises(TypeError):
        F.max_pool2d(x, True)
    assert F.max_pool2d(x, [2, 2]).shape == F.max_pool2d(x, (2, 2)).shape


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_adaptive_max_wide_windows_nan_and_ties_like_torch(channels_last, rng):
    """Windows wider than the channels-first kernel's four interleaved scans."""
    x = ties(rng, (2, 3, 11, 23), np.float32)
    x[0, 0, 1, [2, 7, 9]] = np.nan        # NaNs in different scans of one window
    x[0, 1, 4, 20] = np.nan
    x[1, 2, :, :] = np.float32(-0.0)      # signed zeros tie: the first one wins
    x[1, 2, 3, 5] = 0.0
    for out in ((2, 3), 1):
        tv, ti = TF.adaptive_max_pool2d(tt(x), out, True)
        got = (call_cl(F.adaptive_max_pool2d, x, out, True) if channels_last
               else F.adaptive_max_pool2d(x, out, True))
        np.testing.assert_array_equal(got[0], tv.numpy())
        np.testing.assert_array_equal(np.signbit(got[0]), np.signbit(tv.numpy()))
        np.testing.assert_array_equal(got[1], ti.numpy())


def test_repeated_calls_give_what_the_first_call_gave(rng):
    """The runner kept for a repeated NumPy call (shape, dtype and arguments seen
    before) tells apart what the full path tells apart: mode, layout, batch, types."""
    x = randn(rng, (2, 3, 9, 8), np.float32)
    calls = [
        lambda: F.spatial_pyramid_pool(x, (1, 2), "max"),
        lambda: F.spatial_pyramid_pool(x, (1, 2), "avg"),
        lambda: F.global_avg_pool(x),
        lambda: F.global_max_pool(x),
        lambda: F.max_pool2d(x, 3, 2, 1, return_indices=True),
        lambda: F.max_pool2d(x, 3, 2, 1),
        lambda: F.max_pool2d(x[0], 3, 2, 1, return_indices=True),
        lambda: F.avg_pool2d(x[:, :, ::2], (2, 2), 1, ((0, 1), (1, 0))),
        lambda: F.avg_pool2d(x.astype(np.float16), 2),
        lambda: F.lp_pool2d(np.abs(x), 2.0, 2),
        lambda: F.lp_pool2d(np.abs(x), 3, 2),
        lambda: F.adaptive_avg_pool2d(x[:0], 3),
        lambda: F.adaptive_max_pool2d(to_cl(x), (2, 3), True, channels_last=True),
    ]
    first = [call() for call in calls]
    for call, got in zip(calls, first):
        assert_same(call(), got)
    assert_close(first[1], ref.spatial_pyramid_pool(x, (1, 2), "avg"), "pool", np.float32)
    assert_close(first[10], ref.lp_pool(np.abs(x), 3, 2), "pool_lp", np.float32)
    assert first[11].shape == (0, 3, 3, 3)
    with pytest.raises(TypeError, match="kernel_size must be an int"):
        F.max_pool2d(x, 3.0, 2, 1)
    with pytest.raises(TypeError, match="ceil_mode=None must be a bool"):
        F.max_pool2d(x, 3, 2, 1, ceil_mode=None)
