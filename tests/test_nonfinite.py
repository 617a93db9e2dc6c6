"""NaN and inf land exactly where the math puts them, in every algorithm and every pooling kernel.

Each case takes a sample from the registry the other tests use (fastconv.testing.conv_samples),
so new ops and algorithms get these cases too, puts NaN, +inf or -inf in its input, weight or
bias, and compares the NaN / +inf / -inf masks of every CPU algorithm that can serve it with
the NumPy reference and PyTorch (finite entries must agree to the usual tolerance too).

The math, as PyTorch and the reference compute it:
- an output is non-finite only through the terms it has: a transposed conv has a term
  x[i] * w[k] only for real input pixels (no zeros between them or around them); a forward
  conv with zero padding multiplies its padded zeros by the weight (0 * inf is NaN there);
- x = inf times a zero weight is NaN (a real term, whatever its weight);
- +inf and -inf meeting in one sum give NaN.
The GPU kernels get the same cases in tests/test_cuda.py (run under the simulator).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
import torch_oracle

import fastconv as F
from fastconv import reference as ref
from fastconv.cpu.conv.transpose.phases import phase_plan
from fastconv.dispatch import capable
from fastconv.spec.conv import resolve_conv
from fastconv.testing.conv_samples import ConvSample, conv_samples
from fastconv.testing.tolerances import assert_close

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NaN/inf arithmetic, on purpose

OPS = {f"conv{n}d": getattr(F, f"conv{n}d") for n in (1, 2, 3)}
OPS.update({f"conv_transpose{n}d": getattr(F, f"conv_transpose{n}d") for n in (1, 2, 3)})

# where the non-finite values go: (array, values)
PATTERNS = [("input", (np.inf,)), ("input", (np.nan,)), ("input", (np.inf, -np.inf)), ("weight", (np.inf,)),
            ("weight", (-np.inf, np.nan)), ("bias", (np.nan, -np.inf))]


def masks(y):
    y = np.asarray(y, np.float64)
    return np.isnan(y), np.isposinf(y), np.isneginf(y)


def assert_same_nonfinite(got, expected, family, dtype, what):
    """Same NaN, +inf and -inf masks; the finite entries close."""
    got = np.asarray(got)
    assert got.shape == expected.shape, what
    for name, a, b in zip(("NaN", "+inf", "-inf"), masks(got), masks(expected)):
        if not np.array_equal(a, b):
            raise AssertionError(f"{what}: {name} at {int(a.sum())} places, expected {int(b.sum())} "
                                 f"(first differing index {np.argwhere(a != b)[0].tolist()})")
    finite = np.isfinite(expected)
    assert_close(np.where(finite, got, 0), np.where(finite, expected, 0), family, dtype, 50.0, what)


def with_nonfinite(arrays, where, values, rng):
    """Copies of (x, w, b) with ``values`` put at random places of the array named ``where``."""
    x, w, b = (None if a is None else a.copy() for a in arrays)
    target = {"input": x, "weight": w, "bias": b}[where]
    if target is None:
        return None
    flat = target.reshape(-1)
    at = rng.choice(flat.size, min(len(values), flat.size), replace=False)
    flat[at] = values[:len(at)]
    return x, w, b


def zero_some(w, rng):
    """A weight with about a quarter of its entries exactly 0: inf * 0 must still give NaN."""
    w = w.copy()
    w.reshape(-1)[rng.random(w.size) < 0.25] = 0
    return w


def conv_reference(s: ConvSample, x, w, b):
    a = s.args
    with np.errstate(invalid="ignore", over="ignore"):
        if s.transposed:
            return ref.conv_transpose(x, w, b, stride=a.get("stride", 1), padding=a.get("padding", 0),
                                      output_padding=a.get("output_padding", 0), groups=a.get("groups", 1),
                                      dilation=a.get("dilation", 1), activation=a.get("activation"))
        return ref.conv(x, w, b, stride=a.get("stride", 1), padding=a.get("padding", 0),
                        dilation=a.get("dilation", 1), groups=a.get("groups", 1),
                        padding_mode=a.get("padding_mode", "zeros"), padding_value=a.get("padding_value", 0.0),
                        activation=a.get("activation"))


def conv_torch(s: ConvSample, x, w, b):
    with np.errstate(invalid="ignore", over="ignore"):
        return (torch_oracle.conv_transpose if s.transposed else torch_oracle.conv)(s.spec(), x, w, b)


SAMPLES = conv_samples()
CASES = [(s, a, False) for s in SAMPLES for a in capable("conv_transpose" if s.transposed else "conv", "cpu", s.spec())]
CASES += [(s, a, True) for s in SAMPLES if s.transposed
          for a in capable("conv_transpose", "cpu", s.spec(channels_last=True))]


@pytest.mark.parametrize("s, algo, channels_last", CASES,
                         ids=[f"{s}-{a}{'-nhwc' if cl else ''}" for s, a, cl in CASES])
def test_conv_nonfinite_placement(s, algo, channels_last, rng):
    """Every algorithm puts NaN/inf where the reference and PyTorch do, for non-finite input,
    weight and bias, with zero weights among the taps."""
    x, w, b = s.arrays(rng)
    w = zero_some(w, rng)
    for where, values in PATTERNS:
        arrays = with_nonfinite((x, w, b), where, values, rng)
        if arrays is None:
            continue
        xx, ww, bb = arrays
        expected = conv_reference(s, xx, ww, bb)
        oracle = conv_torch(s, xx, ww, bb)
        what = f"{s} algo={algo} {where}={values}"
        if oracle is not None:
            for a, o in zip(masks(expected), masks(oracle)):
                np.testing.assert_array_equal(a, o, err_msg=f"reference vs torch: {what}")
        xin = np.ascontiguousarray(np.moveaxis(xx, 1, -1)) if channels_last else xx
        with np.errstate(invalid="ignore", over="ignore"):
            got = OPS[s.op](xin, ww, bb, algo=algo, channels_last=channels_last, **s.args)
        if channels_last:
            got = np.moveaxis(got, -1, 1)
        assert_same_nonfinite(got, expected, "conv", s.dtype, what)


@pytest.mark.parametrize("value, nan, inf", [(np.inf, 0, 16), (np.nan, 16, 0)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_transposed_issue_example(value, nan, inf, channels_last):
    """Issue 11: the default ("phases") gave 20 NaN and 16 inf for one inf input (36 NaN for one NaN)."""
    x = np.zeros((1, 1, 6, 6), np.float32)
    x[0, 0, 2, 3] = value
    w = np.ones((1, 1, 4, 4), np.float32)
    expected = TF.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(w), stride=2, padding=1).numpy()
    assert (np.isnan(expected).sum(), np.isinf(expected).sum()) == (nan, inf)
    for algo in F.algorithms("conv_transpose2d", x.shape, w.shape, stride=2, padding=1) + ["auto"]:
        xin = np.ascontiguousarray(np.moveaxis(x, 1, -1)) if channels_last else x
        y = F.conv_transpose2d(xin, w, stride=2, padding=1, algo=algo, channels_last=channels_last)
        y = np.moveaxis(y, -1, 1) if channels_last else y
        assert_same_nonfinite(y, expected.astype(np.float64), "conv", np.float32, f"algo={algo}")


@pytest.mark.parametrize("channels_last", [False, True])
def test_transposed_checks_the_output_when_it_is_the_smaller(channels_last, rng):
    """A weight larger than the output: "phases" looks at its output first and recomputes exactly only
    when that holds NaN or inf (both sides of that choice: tests/test_nonfinite's samples mostly check
    the operands first)."""
    x = rng.standard_normal((1, 16, 2, 3))
    w = zero_some(rng.standard_normal((16, 4, 3, 3)), rng)  # 576 weights, 4 * 5 * 7 = 140 outputs
    for xx, ww in ((x, w), *(with_nonfinite((x, w, None), where, values, rng)[:2] for where, values in PATTERNS[:5])):
        expected = conv_reference(ConvSample("conv_transpose2d", x.shape, w.shape, (("stride", 2),)), xx, ww, None)
        oracle = TF.conv_transpose2d(torch.from_numpy(xx), torch.from_numpy(ww), stride=2).numpy()
        for a, o in zip(masks(expected), masks(oracle)):
            np.testing.assert_array_equal(a, o)
        xin = np.ascontiguousarray(np.moveaxis(xx, 1, -1)) if channels_last else xx
        for algo in ("phases", "direct"):
            with np.errstate(invalid="ignore"):
                got = F.conv_transpose2d(xin, ww, stride=2, algo=algo, channels_last=channels_last)
            got = np.moveaxis(got, -1, 1) if channels_last else got
            assert_same_nonfinite(got, expected, "conv", np.float64, f"{algo}")


@pytest.mark.parametrize("channels_last", [False, True])
def test_transposed_unpadded_phases_check_nothing(channels_last, rng):
    """Kernel = stride, no padding (U-Net's 2x2 stride 2): no phase's forward conv reads a zero, so
    "phases" runs no check at all, and NaN and inf still land where the definition puts them (both
    layouts: the channels-last stacked 1x1 kernel with its weight packed from the transposed one)."""
    x = rng.standard_normal((2, 32, 3, 5))
    w = zero_some(rng.standard_normal((32, 32, 2, 2)), rng)
    spec = resolve_conv("conv_transpose2d", x.shape, w.shape, stride=2, channels_last=False, dtype="float64")
    assert not phase_plan(spec).padded
    assert not phase_plan(resolve_conv("conv_transpose2d", x.shape, w.shape, stride=2, padding=1,
                                       dtype="float64")).padded  # padding only crops the output
    assert phase_plan(resolve_conv("conv_transpose2d", x.shape, (32, 32, 4, 4), stride=2, padding=1,
                                   dtype="float64")).padded  # DCGAN's: a phase's taps pass the input's edge
    for xx, ww in ((x, w), *(with_nonfinite((x, w, None), where, values, rng)[:2] for where, values in PATTERNS[:5])):
        expected = ref.conv_transpose(xx, ww, None, stride=2)
        oracle = TF.conv_transpose2d(torch.from_numpy(xx), torch.from_numpy(ww), stride=2).numpy()
        for a, o in zip(masks(expected), masks(oracle)):
            np.testing.assert_array_equal(a, o)
        xin = np.ascontiguousarray(np.moveaxis(xx, 1, -1)) if channels_last else xx
        for algo in ("phases", "auto"):
            with np.errstate(invalid="ignore"):
                got = F.conv_transpose2d(xin, ww, stride=2, algo=algo, channels_last=channels_last)
            got = np.moveaxis(got, -1, 1) if channels_last else got
            assert_same_nonfinite(got, expected, "conv", np.float64, algo)


SEPARABLE = [((1, 8, 9, 10), 3, 1, 1), ((2, 32, 7, 8), 3, 2, 1), ((1, 16, 8, 8), 5, 1, 2)]


@pytest.mark.parametrize("case", SEPARABLE, ids=lambda c: "x".join(map(str, c[0])) + f"-k{c[1]}s{c[2]}p{c[3]}")
def test_separable_nonfinite_placement(case, rng):
    """fused and composed separable convs, both layouts, against depthwise-then-pointwise in
    the reference and PyTorch."""
    shape, k, stride, pad = case
    c = shape[1]
    x = rng.standard_normal(shape).astype(np.float32)
    dw = zero_some(rng.standard_normal((c, 1, k, k)).astype(np.float32), rng)
    pw = rng.standard_normal((12, c, 1, 1)).astype(np.float32)
    b = rng.standard_normal(12).astype(np.float32)
    for where, values in PATTERNS[:5]:
        xx, ww, _ = with_nonfinite((x, dw, None), where, values, rng)
        with np.errstate(invalid="ignore"):
            expected = ref.separable_conv(xx, ww, pw, b, stride, pad)
        # padding as zeros in the input (torch_oracle's way): PyTorch's own float32 depthwise kernel skips
        # the padded taps, so a NaN/inf weight misses them there, unlike its float64 and ungrouped paths
        padded = TF.pad(torch.from_numpy(xx), [pad] * 4)
        hidden = TF.conv2d(padded, torch.from_numpy(ww), stride=stride, groups=c)
        oracle = TF.conv2d(hidden, torch.from_numpy(pw), torch.from_numpy(b)).numpy()
        for a, o in zip(masks(expected), masks(oracle)):
            np.testing.assert_array_equal(a, o, err_msg=f"reference vs torch {where}={values}")
        for algo in ("fused", "composed", "auto"):
            for cl in (False, True):
                xin = np.ascontiguousarray(np.moveaxis(xx, 1, -1)) if cl else xx
                try:
                    with np.errstate(invalid="ignore"):
                        got = F.separable_conv2d(xin, ww, pw, b, stride, pad, algo=algo, channels_last=cl)
                except ValueError as e:  # fused serves channels-last input only
                    assert algo == "fused" and not cl and "fused" in str(e)
                    continue
                got = np.moveaxis(got, -1, 1) if cl else got
                assert_same_nonfinite(got, expected, "conv", np.float32, f"{algo} cl={cl} {where}={values}")


# ---- pooling -------------------------------------------------------------------------

# (shape, kernel, stride, padding, dilation, ceil_mode)
WINDOWS = [
    ((2, 3, 11), 3, 2, 1, 1, False),
    ((1, 4, 7, 9), 3, 2, 1, 1, True),
    ((1, 3, 8, 7), (2, 3), (2, 1), ((1, 0), (0, 2)), (2, 1), False),
    ((1, 20, 6, 6), 2, 2, 0, 1, False),
    ((1, 2, 4, 5, 6), (2, 3, 2), (1, 2, 2), (0, 1, 1), 1, True),
]
POOL_PATTERNS = [(np.inf,), (np.nan,), (np.inf, -np.inf), (-np.inf,), (np.nan, np.inf, -np.inf)]


def _with_values(x, values, rng):
    x = x.copy()
    flat = x.reshape(-1)
    flat[rng.choice(flat.size, len(values), replace=False)] = values
    return x


def _torch_limits(k, p):
    ks = (k,) if isinstance(k, int) else k
    return isinstance(p, int) and 2 * p <= min(ks)



def _channels_first(y, channels_last):
    """A result (or a tuple of results) back in (N, C, *spatial) order."""
    if isinstance(y, tuple):
        return tuple(_channels_first(v, channels_last) for v in y)
    return np.moveaxis(y, -1, 1) if channels_last else y

@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", WINDOWS, ids=lambda c: "x".join(map(str, c[0])) + f"-k{c[1]}s{c[2]}")
def test_window_pooling_nonfinite(case, dtype, rng):
    """max (values and indices), avg (both divisor rules) and Lp (p = 1, 2, 3, 1.5, inf),
    both layouts, against the reference and, within its limits, PyTorch."""
    shape, k, s, p, d, ceil = case
    nd = len(shape) - 2
    base = rng.standard_normal(shape).astype(dtype)
    for values in POOL_PATTERNS:
        x = _with_values(base, values, rng)
        for cl in (False, True):
            xin = np.ascontiguousarray(np.moveaxis(x, 1, -1)) if cl else x

            got, idx = _channels_first(getattr(F, f"max_pool{nd}d")(xin, k, s, p, d, ceil, True, channels_last=cl), cl)
            expected, eidx = ref.max_pool(x, k, s, p, d, ceil, return_indices=True)
            assert_same_nonfinite(got, expected, "pool", dtype, f"max {values} cl={cl}")
            np.testing.assert_array_equal(idx, eidx, err_msg=f"max indices {values}")
            if _torch_limits(k, p):
                ty, ti = getattr(TF, f"max_pool{nd}d")(torch.from_numpy(x), k, s, p, d, ceil, True)
                assert_same_nonfinite(got, ty.numpy().astype(np.float64), "pool", dtype, f"max vs torch {values}")
                np.testing.assert_array_equal(idx, ti.numpy())
            for include in (True, False):
                got = _channels_first(getattr(F, f"avg_pool{nd}d")(xin, k, s, p, ceil, include, dilation=d, channels_last=cl), cl)
                with np.errstate(invalid="ignore"):
                    expected = ref.avg_pool(x, k, s, p, ceil, include, dilation=d)
                assert_same_nonfinite(got, expected, "pool", dtype, f"avg include={include} {values} cl={cl}")
                if _torch_limits(k, p) and d == 1:
                    ty = getattr(TF, f"avg_pool{nd}d")(torch.from_numpy(x), k, s, p, ceil, include).numpy()
                    assert_same_nonfinite(got, ty.astype(np.float64), "pool", dtype, f"avg vs torch {values}")
            for norm in (1.0, 2.0, 3.0, 1.5, np.inf):
                got = _channels_first(getattr(F, f"lp_pool{nd}d")(xin, norm, k, s, ceil, padding=p, dilation=d,
                                                        channels_last=cl), cl)
                with np.errstate(invalid="ignore", over="ignore"):
                    expected = ref.lp_pool(x, norm, k, s, ceil, padding=p, dilation=d)
                assert_same_nonfinite(got, expected, "pool_lp", dtype, f"lp{norm} {values} cl={cl}")


@pytest.mark.parametrize("shape, out", [((2, 3, 9, 7), (4, 3)), ((1, 5, 6, 8), (3, 4)), ((1, 20, 5, 6), 1),
                                        ((2, 3, 10), 3), ((1, 2, 4, 5, 6), (2, 3, 4))])
def test_adaptive_global_and_pyramid_pooling_nonfinite(shape, out, rng):
    nd = len(shape) - 2
    base = rng.standard_normal(shape)
    for values in POOL_PATTERNS:
        x = _with_values(base, values, rng)
        for cl in (False, True):
            xin = np.ascontiguousarray(np.moveaxis(x, 1, -1)) if cl else x

            got, idx = _channels_first(getattr(F, f"adaptive_max_pool{nd}d")(xin, out, True, channels_last=cl), cl)
            expected, eidx = ref.adaptive_max_pool(x, out, True)
            assert_same_nonfinite(got, expected, "pool", np.float64, f"adaptive max {values}")
            np.testing.assert_array_equal(idx, eidx)
            ty, ti = getattr(TF, f"adaptive_max_pool{nd}d")(torch.from_numpy(x), out, True)
            assert_same_nonfinite(got, ty.numpy(), "pool", np.float64, f"adaptive max vs torch {values}")
            np.testing.assert_array_equal(idx, ti.numpy())
            with np.errstate(invalid="ignore"):
                expected = ref.adaptive_avg_pool(x, out)
            got = _channels_first(getattr(F, f"adaptive_avg_pool{nd}d")(xin, out, channels_last=cl), cl)
            assert_same_nonfinite(got, expected, "pool", np.float64, f"adaptive avg {values}")
            ty = getattr(TF, f"adaptive_avg_pool{nd}d")(torch.from_numpy(x), out).numpy()
            assert_same_nonfinite(got, ty, "pool", np.float64, f"adaptive avg vs torch {values}")
            with np.errstate(invalid="ignore"):
                assert_same_nonfinite(_channels_first(F.global_avg_pool(xin, channels_last=cl), cl), ref.global_avg_pool(x),
                                      "pool", np.float64, f"global avg {values}")
                assert_same_nonfinite(_channels_first(F.global_max_pool(xin, channels_last=cl), cl), ref.global_max_pool(x),
                                      "pool", np.float64, f"global max {values}")
                if nd == 2:
                    for mode in ("max", "avg"):
                        assert_same_nonfinite(F.spatial_pyramid_pool(xin, (1, 2, 3), mode, channels_last=cl),
                                              ref.spatial_pyramid_pool(x, (1, 2, 3), mode), "pool", np.float64,
                                              f"pyramid {mode} {values}")


def test_window_ops_nonfinite(rng):
    """unfold copies, fold sums (+inf and -inf meeting give NaN), max_unpool places, fractional max pooling
    lets NaN win, as PyTorch."""
    x = _with_values(rng.standard_normal((2, 3, 7, 8)), (np.inf, -np.inf, np.nan), rng)
    cols = F.unfold(x, 3, 2, 1)
    expected = TF.unfold(torch.from_numpy(x), 3, padding=1, stride=2).numpy()
    assert_same_nonfinite(cols, expected, "pool", np.float64, "unfold")
    c = _with_values(rng.standard_normal((2, 27, 16)), (np.inf, -np.inf, np.nan, np.inf), rng)
    with np.errstate(invalid="ignore"):
        got = F.fold(c, (7, 8), 3, 2, 1)
    expected = TF.fold(torch.from_numpy(c), (7, 8), 3, padding=1, stride=2).numpy()
    assert_same_nonfinite(got, expected, "pool", np.float64, "fold")
    y, i = F.max_pool2d(x, 2, return_indices=True)
    got = F.max_unpool2d(y, i, 2, output_size=x.shape[2:])
    expected = TF.max_unpool2d(torch.from_numpy(y), torch.from_numpy(i), 2, output_size=x.shape[2:]).numpy()
    assert_same_nonfinite(got, expected, "pool", np.float64, "max_unpool")
    y, i = F.fractional_max_pool2d(x, 2, output_size=(4, 5), return_indices=True, seed=3)
    assert np.isnan(y).sum() >= 1 and np.isposinf(y).sum() >= 1
    np.testing.assert_array_equal(np.take_along_axis(x.reshape(2, 3, -1), i.reshape(2, 3, -1), -1).reshape(y.shape),
                                  y)
