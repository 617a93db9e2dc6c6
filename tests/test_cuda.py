"""The numba.cuda kernels against the NumPy reference (and torch where it has an answer).

Runs unchanged on a real GPU and, without one, under Numba's CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/test_cuda.py``). The module sets
nothing globally; it skips only when neither a GPU nor the simulator is available.
Each case runs with Numba device arrays (the result must come back as a device
array), with NumPy input and ``device="cuda"`` (the result comes back as NumPy), and
on a real GPU with CuPy arrays when CuPy is installed. Shapes are tiny: the simulator
runs every GPU thread as a Python thread.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from numba import config, cuda

import fastconv as F
from fastconv import reference as ref
from fastconv.dispatch import capable
from fastconv.testing.conv_samples import conv_samples, curated, drawn, sample
from fastconv.testing.tolerances import assert_close

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not cuda.is_available(), reason="no CUDA GPU and NUMBA_ENABLE_CUDASIM is not set"),
]

SIMULATOR = bool(config.ENABLE_CUDASIM)
try:  # CuPy arrays only on a real GPU
    import cupy

    HAVE_CUPY = not SIMULATOR and cupy.cuda.runtime.getDeviceCount() > 0
except Exception:  # noqa: BLE001  (ImportError, or CuPy without a driver)
    cupy = None
    HAVE_CUPY = False

try:
    import torch
    import torch.nn.functional as TF

    torch.set_num_threads(1)
except ImportError:
    torch = TF = None

KINDS = ["device", "numpy"] + (["cupy"] if HAVE_CUPY else [])


# ---- running on the device -----------------------------------------------------------

def _is_numba_device(a) -> bool:
    """A Numba device array (the simulator's arrays included)."""
    return getattr(type(a), "__cuda_ndarray__", False) is True and hasattr(a, "copy_to_host")


def _to_kind(a, kind):
    if not isinstance(a, np.ndarray) or kind == "numpy":
        return a
    if kind == "device":
        return cuda.to_device(a)
    return cupy.asarray(a)


def _back(out, kind):
    """The result as NumPy, after checking it came back as the kind that went in."""
    if isinstance(out, tuple):
        return tuple(_back(o, kind) for o in out)
    if kind == "numpy":
        assert isinstance(out, np.ndarray), f"NumPy input with device='cuda' returned {type(out).__name__}"
        return out
    if kind == "device":
        assert _is_numba_device(out), f"a Numba device array in returned {type(out).__name__}"
        return out.copy_to_host()
    assert isinstance(out, cupy.ndarray), f"a CuPy array in returned {type(out).__name__}"
    return cupy.asnumpy(out)


def on_gpu(kind, fn, *arrays, **kw):
    """fn(*arrays, **kw) with the NumPy arrays among the arguments as ``kind``; returns NumPy results."""
    if kind == "numpy":
        kw = dict(kw, device="cuda")
    return _back(fn(*(_to_kind(a, kind) for a in arrays), **kw), kind)


def to_cl(x):
    return np.ascontiguousarray(np.moveaxis(x, 1, -1))


def from_cl(y):
    if isinstance(y, tuple):
        return tuple(from_cl(v) for v in y)
    return np.moveaxis(y, -1, 1)


def kind_for(i: int) -> str:
    return KINDS[i % len(KINDS)]


# ---- convolution ---------------------------------------------------------------------

CONV = {f"conv{n}d": getattr(F, f"conv{n}d") for n in (1, 2, 3)}
CONV.update({f"conv_transpose{n}d": getattr(F, f"conv_transpose{n}d") for n in (1, 2, 3)})


def conv_reference(s, x, w, b):
    a = s.args
    if s.transposed:
        return ref.conv_transpose(x, w, b, stride=a.get("stride", 1), padding=a.get("padding", 0),
                                  output_padding=a.get("output_padding", 0), groups=a.get("groups", 1),
                                  dilation=a.get("dilation", 1), activation=a.get("activation"))
    return ref.conv(x, w, b, stride=a.get("stride", 1), padding=a.get("padding", 0), dilation=a.get("dilation", 1),
                    groups=a.get("groups", 1), padding_mode=a.get("padding_mode", "zeros"),
                    padding_value=a.get("padding_value", 0.0), activation=a.get("activation"))


def torch_conv(s, x, w, b):
    """torch.nn.functional's answer (float64) for zero-padded calls, else None."""
    if torch is None or s.args.get("padding_mode", "zeros") != "zeros" or s.args.get("activation"):
        return None
    spec = s.spec()
    t = [None if a is None else torch.from_numpy(np.asarray(a, np.float64)) for a in (x, w, b)]
    if s.transposed:
        if any(b_ != e for b_, e in spec.pads) or any(b_ < 0 or e < 0 for b_, e in spec.pads):
            return None
        fn = getattr(TF, f"conv_transpose{s.nd}d")
        return fn(*t, stride=spec.stride, padding=tuple(b_ for b_, _ in spec.pads),
                  output_padding=spec.output_padding, groups=spec.groups, dilation=spec.dilation).numpy()
    xt = TF.pad(t[0], [v for b_, e in reversed(spec.pads) for v in (b_, e)])
    fn = getattr(TF, f"conv{s.nd}d")
    return fn(xt, t[1], t[2], stride=spec.stride, dilation=spec.dilation, groups=spec.groups).numpy()


def conv_scale(s) -> float:
    w = s.weight_shape
    return max(1.0, math.sqrt(np.prod(w[1:]) * (s.args.get("groups", 1) if s.transposed else 1)))


def check_conv(s, algo, kind, rng, channels_last=False):
    x, w, b = s.arrays(rng)
    expected = conv_reference(s, x, w, b)
    xin = to_cl(x) if channels_last else x
    got = on_gpu(kind, CONV[s.op], xin, w, b, algo=algo, channels_last=channels_last, **s.args)
    assert got.dtype == x.dtype
    if channels_last:
        got = from_cl(got)
    what = f"{s} algo={algo} kind={kind} channels_last={channels_last}"
    assert_close(got, expected, "conv", s.dtype, conv_scale(s), what=what)
    oracle = torch_conv(s, x, w, b)
    if oracle is not None:
        assert_close(got, oracle, "conv", s.dtype, conv_scale(s), what=what + " vs torch")


def gpu_algos(s):
    family = "conv_transpose" if s.transposed else "conv"
    return capable(family, "cuda", s.spec())


# Every curated sample with every GPU algorithm that can serve it, the input kinds taking
# turns; the default algorithm with both kinds; a seeded draw sized by FASTCONV_NUM_CASES.
# The simulator runs each GPU thread as a Python thread: there, samples with more than
# SIM_MAX_OUTPUTS output elements (the CPU kernels' tile and vector-width corners: wide
# depthwise maps, 960 channels, long 1x1 rows; a minute or more each when simulated) are
# left to the CPU suite; a real GPU runs them all.
SIM_MAX_OUTPUTS = 2048
CURATED = [s for s in curated() if not SIMULATOR or math.prod(s.spec().output_shape) <= SIM_MAX_OUTPUTS]
DRAWN = drawn(int(os.environ.get("FASTCONV_NUM_CASES", "8")), seed=7)
CONV_CASES = []
for i, s in enumerate(CURATED + DRAWN):
    algos = gpu_algos(s)
    for j, algo in enumerate(algos):
        CONV_CASES.append((s, algo, kind_for(i + j)))
    if len(algos) == 1:  # every sample sees every input kind
        CONV_CASES += [(s, algos[0], kind_for(i + j)) for j in range(1, len(KINDS))]


@pytest.mark.parametrize("s, algo, kind", CONV_CASES, ids=[f"{s}-{a}-{k}" for s, a, k in CONV_CASES])
def test_conv_matches_reference(s, algo, kind, rng):
    check_conv(s, algo, kind, rng)


CL_CASES = [s for s in CURATED if "channels_last" in s.tags]  # the registry's layout samples, as on the CPU


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("s", CL_CASES, ids=str)
def test_conv_channels_last(s, kind, rng):
    check_conv(s, "auto", kind, rng, channels_last=True)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("activation", ["relu", "relu6"])
def test_conv_dtypes_and_fused_activation(dtype, activation, rng):
    for algo in ("direct", "im2col"):
        s = sample("conv2d", (2, 5, 6, 7), (4, 5, 3, 3), dtype=dtype, padding=1, activation=activation)
        check_conv(s, algo, "device", rng)
    s = sample("conv_transpose2d", (1, 3, 4, 4), (3, 2, 3, 3), dtype=dtype, stride=2, activation=activation)
    check_conv(s, "direct", "device", rng, channels_last=True)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_depthwise_multiplier_every_dtype(dtype, rng):
    s = sample("conv2d", (1, 3, 7, 6), (6, 1, 3, 3), dtype=dtype, groups=3, padding=1, stride=(2, 1),
               dilation=(1, 2))
    check_conv(s, "depthwise", "device", rng)
    check_conv(s, "depthwise", "numpy", rng, channels_last=True)


def test_shortcuts_on_device(rng):
    x = rng.standard_normal((1, 4, 6, 6)).astype(np.float32)
    dw = rng.standard_normal((8, 1, 3, 3)).astype(np.float32)
    pw = rng.standard_normal((5, 8, 1, 1)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    got = on_gpu("device", F.separable_conv2d, x, dw, pw, b, padding=1, activation="relu")
    assert_close(got, ref.separable_conv(x, dw, pw, b, padding=1, activation="relu"), "conv", "float32", 6.0)
    got = on_gpu("numpy", F.pointwise_conv2d, x, pw[:, :4], b)
    assert_close(got, ref.pointwise_conv(x, pw[:, :4], b), "conv", "float32", 2.0)


def test_noncontiguous_and_unbatched_device_input(rng):
    x = rng.standard_normal((2, 3, 6, 10)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    xd = cuda.to_device(x)[:, :, :, ::2]  # a strided view
    got = F.conv2d(xd, cuda.to_device(w), padding=1)
    assert _is_numba_device(got)
    assert_close(got.copy_to_host(), ref.conv(x[:, :, :, ::2], w, padding=1), "conv", "float32", 5.0)
    got = F.conv2d(cuda.to_device(x[0]), cuda.to_device(w), padding=1, algo="im2col")
    assert _is_numba_device(got) and got.shape == (4, 6, 10)
    assert_close(got.copy_to_host(), ref.conv(x[:1], w, padding=1)[0], "conv", "float32", 5.0)


def test_numpy_channels_last_storage_on_device(rng):
    """A NumPy (N, C, H, W) array stored channels-last, sent with device="cuda", runs the
    channels-last kernels there and comes back channels-last in memory, as on the CPU."""
    x = rng.standard_normal((2, 6, 7, 4)).astype(np.float32).transpose(0, 3, 1, 2)
    w = rng.standard_normal((5, 4, 3, 3)).astype(np.float32)
    got = F.conv2d(x, w, padding=1, device="cuda")
    assert isinstance(got, np.ndarray) and np.moveaxis(got, 1, -1).flags.c_contiguous
    assert_close(got, ref.conv(np.ascontiguousarray(x), w, padding=1), "conv", "float32", 5.0)
    pooled = F.max_pool2d(x, 3, 2, 1, device="cuda")
    np.testing.assert_array_equal(pooled, F.max_pool2d(np.ascontiguousarray(x), 3, 2, 1))


def test_zero_batch_on_device():
    x = cuda.to_device(np.zeros((0, 3, 5, 5), np.float32))
    got = F.conv2d(x, cuda.to_device(np.ones((2, 3, 3, 3), np.float32)))
    assert _is_numba_device(got) and got.shape == (0, 2, 3, 3)


def test_im2col_in_row_chunks(rng):
    """A tiny workspace cap forces several column chunks through the GEMM."""
    s = sample("conv2d", (2, 3, 7, 6), (5, 3, 3, 3), dtype="float32", padding=1, stride=(1, 2))
    previous = F.set_workspace_limit(3 * 27 * 4 * 8 * 2)  # 8 rows per chunk
    try:
        check_conv(s, "im2col", "device", rng)
    finally:
        F.set_workspace_limit(previous)


def test_im2col_split_k(rng):
    """Few output rows and a long reduction: the GEMM splits K and a second kernel adds the
    partial sums in a fixed order (the result is deterministic)."""
    from fastconv.cuda.conv_im2col import GemmPlan

    s = sample("conv2d", (1, 32, 3, 3), (6, 32, 3, 3), dtype="float32", padding=1, activation="relu")
    assert GemmPlan(s.spec(), 9).splits == 4
    check_conv(s, "im2col", "device", rng)
    x, w, b = s.arrays(rng)
    first = on_gpu("numpy", F.conv2d, x, w, b, padding=1, algo="im2col")
    np.testing.assert_array_equal(first, on_gpu("numpy", F.conv2d, x, w, b, padding=1, algo="im2col"))


def test_algorithms_lists_cuda_kernels():
    names = F.algorithms("conv2d", (1, 8, 8, 8), (8, 1, 3, 3), groups=8, backend="cuda")
    assert set(names) == {"direct", "im2col", "depthwise"}
    from fastconv.dispatch import implementations

    assert "Numba GEMM" in implementations("conv", "cuda")["im2col"].note


# ---- pooling -------------------------------------------------------------------------

def _pool_fn(mode, nd):
    return getattr(F, f"{mode}_pool{nd}d")


def _data(rng, shape, dtype, ties=False, nans=False):
    x = (rng.integers(-2, 3, shape) if ties else rng.standard_normal(shape)).astype(dtype)
    if nans:
        flat = x.reshape(-1)
        flat[rng.choice(flat.size, max(1, flat.size // 15), replace=False)] = np.nan
    return x


def _compare(got, expected, family, dtype, what):
    if isinstance(expected, tuple):
        values, indices = got
        assert indices.dtype == np.int64, what
        np.testing.assert_array_equal(indices, expected[1], err_msg=what + " indices")
        got, expected = values, expected[0]
    tol = dict(rtol=2e-3, atol=2e-3) if dtype == np.float16 else None
    if tol:
        np.testing.assert_allclose(got.astype(np.float64), expected, equal_nan=True, err_msg=what, **tol)
    else:
        nan = np.isnan(expected)
        np.testing.assert_array_equal(np.isnan(got), nan, err_msg=what + " NaN positions")
        assert_close(np.where(nan, 0, got), np.where(nan, 0, expected), family, dtype, what=what)


# (shape, kernel, stride, padding, dilation, ceil_mode)
WINDOWS = [
    ((2, 3, 11), 3, 2, 1, 1, False),
    ((1, 2, 9), 4, 3, 2, 2, True),
    ((2, 3, 7, 6), 3, 2, 1, 1, False),
    ((1, 2, 5, 6), 2, 2, 1, 1, True),
    ((1, 2, 7, 7), (3, 2), (2, 1), ((1, 0), (0, 1)), (2, 1), True),
    ((1, 2, 6, 7), 3, 2, "same", 1, False),
    ((1, 2, 4, 5, 5), (2, 3, 2), (1, 2, 2), (0, 1, 1), (1, 1, 2), True),
]


def _win_id(case):
    shape, k, s, p, d, ceil = case
    return f"{len(shape) - 2}d-{'x'.join(map(str, shape))}-k{k}-s{s}-p{p}-d{d}{'-ceil' if ceil else ''}"


POOL_CASES = []
for i, case in enumerate(WINDOWS):
    for j, (mode, extra) in enumerate([("max", dict(return_indices=True)), ("max", {}),
                                        ("avg", dict(count_include_pad=True)), ("avg", dict(count_include_pad=False)),
                                        ("lp", dict(norm_type=2.0)), ("lp", dict(norm_type=1.5))]):
        POOL_CASES.append((case, mode, extra, [np.float32, np.float64][(i + j) % 2], kind_for(i + j)))


@pytest.mark.parametrize("case, mode, extra, dtype, kind", POOL_CASES,
                         ids=[f"{_win_id(c)}-{m}-{'-'.join(f'{k}{v}' for k, v in e.items())}-{np.dtype(d).name}-{k_}"
                              for c, m, e, d, k_ in POOL_CASES])
def test_window_pooling(case, mode, extra, dtype, kind, rng):
    shape, k, s, p, d, ceil = case
    nd = len(shape) - 2
    extra = dict(extra)
    if mode == "lp":
        p_norm = extra.pop("norm_type")
        x = _data(rng, shape, dtype)  # negative values too: the norm takes |x|
        got = on_gpu(kind, F.__dict__[f"lp_pool{nd}d"], x, p_norm, k, s, ceil, padding=p, dilation=d)
        expected = ref.lp_pool(x, p_norm, k, s, ceil, padding=p, dilation=d)
        _compare(got, expected, "pool_lp", dtype, f"lp{p_norm}")
        return
    x = _data(rng, shape, dtype, ties=(mode == "max"), nans=(mode == "max" and nd == 2))
    if mode == "max":
        got = on_gpu(kind, _pool_fn("max", nd), x, k, s, p, d, ceil, **extra)
        expected = ref.max_pool(x, k, s, p, d, ceil, **extra)
        if torch is not None and isinstance(p, int) and not extra and 2 * p <= (k if isinstance(k, int) else min(k)):
            oracle = getattr(TF, f"max_pool{nd}d")(torch.from_numpy(x), k, s, p, d, ceil).numpy()
            np.testing.assert_array_equal(got, oracle)
    else:
        got = on_gpu(kind, _pool_fn("avg", nd), x, k, s, p, ceil, dilation=d, **extra)
        expected = ref.avg_pool(x, k, s, p, ceil, dilation=d, **extra)
    _compare(got, expected, "pool", dtype, f"{mode} {extra}")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64], ids=lambda d: np.dtype(d).name)
def test_pooling_channels_last_and_dtypes(dtype, kind, rng):
    x = _data(rng, (2, 3, 7, 6), dtype, ties=True)
    got = from_cl(on_gpu(kind, F.max_pool2d, to_cl(x), 3, 2, 1, return_indices=True, channels_last=True))
    _compare(got, ref.max_pool(x, 3, 2, 1, return_indices=True), "pool", dtype, "max cl")
    got = from_cl(on_gpu(kind, F.avg_pool2d, to_cl(x), 3, 2, 1, True, False, 5, channels_last=True))
    _compare(got, ref.avg_pool(x, 3, 2, 1, True, False, 5), "pool", dtype, "avg cl divisor")
    got = from_cl(on_gpu(kind, F.lp_pool2d, to_cl(np.abs(x)), math.inf, 2, channels_last=True))
    _compare(got, ref.lp_pool(np.abs(x), math.inf, 2), "pool_lp", dtype, "lp inf cl")
    got = from_cl(on_gpu(kind, F.adaptive_max_pool2d, to_cl(x), (3, 4), True, channels_last=True))
    _compare(got, ref.adaptive_max_pool(x, (3, 4), True), "pool", dtype, "adaptive max cl")


ADAPTIVE = [((2, 3, 11), 4), ((1, 2, 7, 9), (3, 4)), ((1, 2, 9, 8), (None, 3)), ((1, 2, 5, 6, 7), (2, 3, 2)),
            ((2, 3, 9, 8), 1), ((1, 2, 3, 4, 5), 1)]


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("case", ADAPTIVE, ids=lambda c: f"{'x'.join(map(str, c[0]))}-o{c[1]}")
def test_adaptive_pooling(case, mode, rng):
    shape, out = case
    nd = len(shape) - 2
    for i, dtype in enumerate((np.float32, np.float64)):
        kind = kind_for(i + len(shape))
        x = _data(rng, shape, dtype, ties=mode == "max", nans=mode == "max" and i == 1)
        fn = getattr(F, f"adaptive_{mode}_pool{nd}d")
        if mode == "max":
            got = on_gpu(kind, fn, x, out, True)
            expected = ref.adaptive_max_pool(x, out, True)
        else:
            got = on_gpu(kind, fn, x, out)
            expected = ref.adaptive_avg_pool(x, out)
        _compare(got, expected, "pool", dtype, f"adaptive {mode}")
        if torch is not None and mode == "max" and i == 0:
            t = getattr(TF, f"adaptive_max_pool{nd}d")(torch.from_numpy(x), out, True)
            np.testing.assert_array_equal(got[1], t[1].numpy())


@pytest.mark.parametrize("kind", KINDS)
def test_global_and_pyramid_pooling(kind, rng):
    x = _data(rng, (2, 3, 13, 11), np.float32)
    _compare(on_gpu(kind, F.global_avg_pool, x), ref.global_avg_pool(x), "pool", np.float32, "global avg")
    _compare(on_gpu(kind, F.global_max_pool, x), ref.global_max_pool(x), "pool", np.float32, "global max")
    got = on_gpu(kind, F.spatial_pyramid_pool, x, (1, 2), "avg")
    _compare(got, ref.spatial_pyramid_pool(x, (1, 2), "avg"), "pool", np.float32, "spp")
    got = on_gpu(kind, F.spatial_pyramid_pool, to_cl(x), (1, 3), "max", channels_last=True)
    _compare(got, ref.spatial_pyramid_pool(x, (1, 3), "max"), "pool", np.float32, "spp channels_last")
    got = from_cl(on_gpu(kind, F.global_avg_pool, to_cl(x), channels_last=True))
    _compare(got, ref.global_avg_pool(x), "pool", np.float32, "global avg cl")


def test_max_pool_nan_and_window_rules(rng):
    """A NaN wins and a later NaN takes the index; ties go to the first tap; -inf windows
    report their first tap (all under the warp kernel's split-window reduction too)."""
    x = np.full((1, 1, 6, 8), 1.0, np.float32)
    x[0, 0, 1, 1] = x[0, 0, 4, 5] = np.nan
    y = np.full((1, 1, 6, 8), -np.inf, np.float32)
    for kind in KINDS[:2]:
        got = on_gpu(kind, F.max_pool2d, x, 3, 3, return_indices=True)
        _compare(got, ref.max_pool(x, 3, 3, return_indices=True), "pool", np.float32, "nan windows")
        got = on_gpu(kind, F.adaptive_max_pool2d, x, 1, True)
        assert np.isnan(got[0]).all() and got[1].item() == 4 * 8 + 5
        got = on_gpu(kind, F.adaptive_max_pool2d, np.ones_like(x), 1, True)
        assert got[1].item() == 0
        got = on_gpu(kind, F.adaptive_max_pool2d, y, (2, 1), True)
        np.testing.assert_array_equal(got[1].ravel(), [0, 3 * 8])


def test_windows_past_the_padded_end(rng):
    """ceil_mode windows running past the padded end (issue 11): PyTorch's shapes and values."""
    x = rng.standard_normal((2, 2, 1, 17)).astype(np.float32)
    kw = dict(stride=3, padding=(1, 2), ceil_mode=True)
    for i, include in enumerate((True, False)):
        got = on_gpu(kind_for(i), F.avg_pool2d, x, 5, count_include_pad=include, **kw)
        assert got.shape == (2, 2, 1, 7)
        _compare(got, ref.avg_pool(x, 5, count_include_pad=include, **kw), "pool", np.float32, "avg past end")
    x = rng.standard_normal((2, 2, 17, 4))
    kw = dict(stride=3, padding=(1, 2), dilation=(1, 2), ceil_mode=True, return_indices=True)
    got = on_gpu(KINDS[0], F.max_pool2d, x, (3, 5), **kw)
    assert got[0].shape == (2, 2, 6, 1)
    _compare(got, ref.max_pool(x, (3, 5), **kw), "pool", np.float64, "max past end")
    if torch is not None:
        np.testing.assert_array_equal(got[1], TF.max_pool2d(torch.from_numpy(x), (3, 5), **kw)[1].numpy())


def test_lp_pool_of_negative_input_is_the_norm():
    """(sum |x|**p) ** (1/p) for odd and fractional p (issue 11), every kind of p."""
    x = np.array([[[-1.0, -2.0, 3.0, 1.0, -0.5, -4.0]]], np.float32)
    for i, p in enumerate((1.0, 3.0, 1.5, 2.0)):
        got = on_gpu(kind_for(i), F.lp_pool1d, x, p, 2)
        expected = (np.abs(x.astype(np.float64)).reshape(1, 1, 3, 2) ** p).sum(-1) ** (1 / p)
        _compare(got, expected, "pool_lp", np.float32, f"lp{p}")
        _compare(got, ref.lp_pool(x, p, 2), "pool_lp", np.float32, f"lp{p} ref")


# ---- non-finite values (the CPU side: tests/test_nonfinite.py) ----------------------------

def _nonfinite_samples():
    """Registry samples small enough for the simulator: the float64 transposed ones that are
    grouped, dilated, 1-D, 3-D or channels-last, and one forward sample per GPU algorithm
    (direct with padding and dilation, depthwise, 1x1 gemm, im2col)."""
    small = [s for s in curated() if math.prod(s.spec().output_shape) <= 600]
    corners = {"grouped", "dilated", "1d", "3d", "channels_last"}
    chosen = [s for s in small if s.transposed and "float64" in s.tags and s.tags & corners]
    for algo in ("direct", "depthwise", "gemm", "im2col"):
        chosen += [next(s for s in small if not s.transposed and algo in gpu_algos(s)
                        and (algo != "direct" or s.args.get("dilation", 1) != 1))]
    return chosen


NONFINITE_CASES = [(s, a) for s in _nonfinite_samples() for a in gpu_algos(s)]


# NaN/inf arithmetic warns from the simulator's threads, outside np.errstate
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("s, algo", NONFINITE_CASES, ids=[f"{s}-{a}" for s, a in NONFINITE_CASES])
def test_conv_nonfinite_placement(s, algo, rng):
    """NaN/inf in input, weight or bias land where the reference and PyTorch put them (issue 11)."""
    from test_nonfinite import PATTERNS, assert_same_nonfinite, conv_reference, with_nonfinite, zero_some

    x, w, b = s.arrays(rng)
    w = zero_some(w, rng)
    for i, (where, values) in enumerate(PATTERNS):
        arrays = with_nonfinite((x, w, b), where, values, rng)
        if arrays is None:
            continue
        expected = conv_reference(s, *arrays)
        with np.errstate(invalid="ignore", over="ignore"):
            got = on_gpu(kind_for(i), CONV[s.op], *arrays, algo=algo, **s.args)
        assert_same_nonfinite(got, expected, "conv", s.dtype, f"{s} algo={algo} {where}={values}")


# NaN/inf arithmetic warns from the simulator's threads, outside np.errstate
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_pooling_nonfinite_placement(rng):
    """max (indices too), avg, Lp (p = 1, 1.5, inf), adaptive and global pooling with NaN, +inf and -inf."""
    from test_nonfinite import POOL_PATTERNS, assert_same_nonfinite

    base = rng.standard_normal((1, 3, 6, 7))
    for i, values in enumerate(POOL_PATTERNS):
        x = base.copy()
        x.reshape(-1)[rng.choice(x.size, len(values), replace=False)] = values
        kind = kind_for(i)
        got = on_gpu(kind, F.max_pool2d, x, 3, 2, 1, 1, True, True)
        expected = ref.max_pool(x, 3, 2, 1, 1, True, return_indices=True)
        assert_same_nonfinite(got[0], expected[0], "pool", np.float64, f"max {values}")
        np.testing.assert_array_equal(got[1], expected[1])
        with np.errstate(invalid="ignore", over="ignore"):
            for include in (True, False):
                got = on_gpu(kind, F.avg_pool2d, x, 3, 2, 1, True, include)
                assert_same_nonfinite(got, ref.avg_pool(x, 3, 2, 1, True, include), "pool", np.float64,
                                      f"avg {values}")
            for p in (1.0, 1.5, math.inf):
                got = on_gpu(kind, F.lp_pool2d, x, p, 2, padding=1)
                assert_same_nonfinite(got, ref.lp_pool(x, p, 2, padding=1), "pool_lp", np.float64,
                                      f"lp{p} {values}")
            got = on_gpu(kind, F.adaptive_max_pool2d, x, (4, 3), True)
            expected = ref.adaptive_max_pool(x, (4, 3), True)
            assert_same_nonfinite(got[0], expected[0], "pool", np.float64, f"adaptive max {values}")
            np.testing.assert_array_equal(got[1], expected[1])
            assert_same_nonfinite(on_gpu(kind, F.adaptive_avg_pool2d, x, (4, 3)), ref.adaptive_avg_pool(x, (4, 3)),
                                  "pool", np.float64, f"adaptive avg {values}")
            assert_same_nonfinite(on_gpu(kind, F.global_avg_pool, x), ref.global_avg_pool(x), "pool", np.float64,
                                  f"global avg {values}")
            assert_same_nonfinite(on_gpu(kind, F.global_max_pool, x), ref.global_max_pool(x), "pool", np.float64,
                                  f"global max {values}")


# ---- integer max pooling (the CPU side: tests/test_integer_pooling.py) ---------------------

@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.int32, np.int64], ids=lambda d: np.dtype(d).name)
def test_integer_max_pooling(dtype, rng):
    """Exact values and indices in the input's integer dtype: window (both layouts, a window
    wholly in padding), adaptive (thread and warp kernels), global and pyramid max pooling."""
    from test_integer_pooling import assert_exact, full_range

    info = np.iinfo(dtype)
    x = full_range(rng, (1, 2, 5, 6), dtype, ties=True)
    for i, cl in enumerate((False, True)):
        xin = to_cl(x) if cl else x
        got = on_gpu(kind_for(i), F.max_pool2d, xin, 3, 2, 1, 1, True, True, channels_last=cl)
        assert_exact(from_cl(got) if cl else got, ref.max_pool(x, 3, 2, 1, 1, True, return_indices=True), dtype,
                     f"max cl={cl}")
    got = on_gpu(KINDS[0], F.max_pool1d, x[0], 2, 1, ((3, 0),), return_indices=True)
    assert (got[0][..., :2] == info.min).all() and (got[1][..., :2] == -1).all()
    assert_exact(got, ref.max_pool(x[0], 2, 1, ((3, 0),), return_indices=True), dtype, "wholly padded")
    big = full_range(rng, (1, 2, 9, 8), dtype)
    for i, out in enumerate(((2, 3), 1)):  # 1: a channels-first mean window of 72 taps, the warp kernel
        got = on_gpu(kind_for(i), F.adaptive_max_pool2d, big, out, True)
        assert_exact(got, ref.adaptive_max_pool(big, out, True), dtype, f"adaptive {out}")
    assert_exact(on_gpu(KINDS[0], F.global_max_pool, x), ref.global_max_pool(x), dtype, "global")
    assert_exact(on_gpu(KINDS[0], F.spatial_pyramid_pool, x, (1, 2)), ref.spatial_pyramid_pool(x, (1, 2)), dtype,
                 "pyramid")
    with pytest.raises(TypeError, match=r"avg_pool2d: input has dtype .*; expected float16, float32 or float64"):
        on_gpu(KINDS[0], F.avg_pool2d, x, 2)


def test_conv_samples_registry_is_shared():
    """The GPU cases come from the registry the CPU tests use."""
    names = {str(s) for s in conv_samples()}
    assert {str(s) for s in CURATED} <= names
