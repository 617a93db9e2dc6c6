"""Max pooling of integers (int8, uint8, int16, int32, int64): exact, indices included.

Quantized networks pool integers, and ONNX MaxPool takes int8/uint8. Every integer dtype
runs a few shapes (each dtype compiles its own kernels, only when such an array arrives),
with values spanning the dtype's whole range: int64 values beyond 2**53 would not survive
a float64 round trip, so exactness is tested, not assumed. Padded cells hold the dtype's
minimum; a window wholly in padding gives that minimum and index -1 (the float rule with
-inf mapped to the minimum). Average and Lp pooling of integers raise TypeError.
The GPU kernels get the same cases in tests/test_cuda.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import fastconv as F
from fastconv import reference as ref
from fastconv.spec.pool import AdaptivePoolSpec, PoolSpec, resolve_adaptive_pool, resolve_pool
from fastconv.testing.registry import error_inputs, samples

torch.set_num_threads(1)

INT_DTYPES = [np.int8, np.uint8, np.int16, np.int32, np.int64]
IDS = [np.dtype(d).name for d in INT_DTYPES]


def full_range(rng, shape, dtype, ties=False):
    """Values over the whole range of ``dtype``, its minimum and maximum included (or, with
    ``ties``, a few distinct values so that equal maxima occur)."""
    info = np.iinfo(dtype)
    if ties:
        choices = np.array([info.min, info.min + 1, 0 if info.min < 0 else 1, info.max - 1, info.max], dtype)
        return rng.choice(choices, shape)
    x = rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
    flat = x.reshape(-1)
    flat[:2] = info.min, info.max
    rng.shuffle(flat)
    return x


def to_cl(x):
    return np.ascontiguousarray(np.moveaxis(x, 1, -1))


def from_cl(y):
    return tuple(from_cl(v) for v in y) if isinstance(y, tuple) else np.moveaxis(y, -1, 1)


def assert_exact(got, expected, dtype, what=""):
    if isinstance(expected, tuple):
        assert isinstance(got, tuple) and len(got) == len(expected), what
        assert got[1].dtype == np.int64, what
        np.testing.assert_array_equal(got[1], expected[1], err_msg=f"{what} indices")
        got, expected = got[0], expected[0]
    assert got.dtype == np.dtype(dtype), f"{what}: dtype {got.dtype}"
    np.testing.assert_array_equal(got, expected, err_msg=what)


WINDOWS = [(c.shapes[0], *(c.args[n] for n in ("kernel_size", "stride", "padding", "dilation", "ceil_mode")))
           for c in samples(family="pool", tags={"integer"})]


@pytest.mark.parametrize("dtype", INT_DTYPES, ids=IDS)
@pytest.mark.parametrize("case", WINDOWS, ids=lambda c: "x".join(map(str, c[0])) + f"-k{c[1]}s{c[2]}")
def test_max_pool_integers_exact(case, dtype, rng):
    """Values and indices equal PyTorch's and the reference's, both layouts, view and copy."""
    shape, k, s, p, d, ceil = case
    nd = len(shape) - 2
    fn = getattr(F, f"max_pool{nd}d")
    for ties in (False, True):
        x = full_range(rng, shape, dtype, ties)
        expected = ref.max_pool(x, k, s, p, d, ceil, return_indices=True)
        got = fn(x, k, s, p, d, ceil, True)
        assert_exact(got, expected, dtype, f"max ties={ties}")
        ty, ti = getattr(TF, f"max_pool{nd}d")(torch.from_numpy(x), k, s, p, d, ceil, True)
        assert_exact(got, (ty.numpy(), ti.numpy()), dtype, "vs torch")
        assert_exact(from_cl(fn(to_cl(x), k, s, p, d, ceil, True, channels_last=True)), expected, dtype, "nhwc")
        assert_exact(fn(x, k, s, p, d, ceil), expected[0], dtype, "no indices")
        view = np.swapaxes(np.swapaxes(x, 0, 1).copy(), 0, 1)  # non-contiguous, read-only
        view.flags.writeable = False
        assert_exact(fn(view, k, s, p, d, ceil, True), expected, dtype, "strided read-only view")


@pytest.mark.parametrize("dtype", INT_DTYPES, ids=IDS)
def test_max_pool_integer_windows_in_padding(dtype, rng):
    """Pads beyond PyTorch's limits: a window wholly in padding gives the dtype's minimum and
    index -1 (floats: -inf and -1); padded cells never win, even over the minimum itself."""
    info = np.iinfo(dtype)
    x = full_range(rng, (1, 2, 5), dtype)
    y, i = F.max_pool1d(x, 2, 1, ((3, 0),), return_indices=True)
    assert (y[..., :2] == info.min).all() and (i[..., :2] == -1).all() and (i[..., 2:] >= 0).all()
    assert_exact((y, i), ref.max_pool(x, 2, 1, ((3, 0),), return_indices=True), dtype, "wholly padded")
    assert_exact(from_cl(F.max_pool1d(to_cl(x), 2, 1, ((3, 0),), return_indices=True, channels_last=True)),
                 (y, i), dtype, "wholly padded nhwc")
    low = np.full((1, 1, 3, 3), info.min, dtype)
    y, i = F.max_pool2d(low, 3, 1, 1, return_indices=True)
    assert (y == info.min).all() and (i >= 0).all()  # a window of minima reports an in-input tap
    assert_exact((y, i), ref.max_pool(low, 3, 1, 1, return_indices=True), dtype, "all minima")
    assert_exact((y, i), tuple(t.numpy() for t in TF.max_pool2d(torch.from_numpy(low), 3, 1, 1, return_indices=True)),
                 dtype, "all minima vs torch")


@pytest.mark.parametrize("dtype", INT_DTYPES, ids=IDS)
def test_adaptive_global_pyramid_and_unpool_integers(dtype, rng):
    x = full_range(rng, (2, 3, 7, 9), dtype)
    for out in ((3, 4), (7, 3), 1):
        expected = ref.adaptive_max_pool(x, out, True)
        assert_exact(F.adaptive_max_pool2d(x, out, True), expected, dtype, f"adaptive {out}")
        assert_exact(from_cl(F.adaptive_max_pool2d(to_cl(x), out, True, channels_last=True)), expected, dtype,
                     f"adaptive {out} nhwc")
    x1 = full_range(rng, (1, 2, 11), dtype)
    assert_exact(F.adaptive_max_pool1d(x1, 4, True), ref.adaptive_max_pool(x1, 4, True), dtype, "adaptive 1d")
    x3 = full_range(rng, (1, 2, 3, 4, 5), dtype)
    assert_exact(F.adaptive_max_pool3d(x3, (2, 3, 2), True), ref.adaptive_max_pool(x3, (2, 3, 2), True), dtype,
                 "adaptive 3d")
    assert_exact(F.global_max_pool(x), ref.global_max_pool(x), dtype, "global")
    assert_exact(F.global_max_pool(to_cl(x), channels_last=True), to_cl(ref.global_max_pool(x)), dtype,
                 "global nhwc")
    assert_exact(F.spatial_pyramid_pool(x, (1, 2, 4)), ref.spatial_pyramid_pool(x, (1, 2, 4)), dtype, "pyramid")
    assert_exact(F.spatial_pyramid_pool(to_cl(x), (1, 3), channels_last=True), ref.spatial_pyramid_pool(x, (1, 3)),
                 dtype, "pyramid nhwc")
    for xs, fn, unpool in ((x, F.max_pool2d, F.max_unpool2d), (x1, F.max_pool1d, F.max_unpool1d)):
        y, i = fn(xs, 2, return_indices=True)
        got = unpool(y, i, 2, output_size=xs.shape[2:])
        expected = np.zeros_like(xs).reshape(*xs.shape[:2], -1)  # each value at its index, zeros elsewhere
        np.put_along_axis(expected, i.reshape(*i.shape[:2], -1), y.reshape(*y.shape[:2], -1), -1)
        assert_exact(got, expected.reshape(xs.shape), dtype, f"max_unpool{xs.ndim - 2}d")


def test_int64_beyond_float64_precision():
    """int64 maxima that float64 cannot tell apart (2**62 + 1 vs 2**62) are told apart."""
    big = np.array([[[2**62, 2**62 + 1, 2**62 - 1, -(2**63), 2**63 - 2, 2**63 - 1]]], np.int64)
    y, i = F.max_pool1d(big, 3, return_indices=True)
    np.testing.assert_array_equal(y, [[[2**62 + 1, 2**63 - 1]]])
    np.testing.assert_array_equal(i, [[[1, 5]]])
    y, i = F.adaptive_max_pool1d(big, 2, True)
    np.testing.assert_array_equal(y, [[[2**62 + 1, 2**63 - 1]]])
    np.testing.assert_array_equal(i, [[[1, 5]]])
    np.testing.assert_array_equal(F.global_max_pool(big[..., :3]), [[[2**62 + 1]]])
    assert ref.max_pool(big, 3).dtype == np.int64 and ref.max_pool(big, 3)[0, 0, 0] == 2**62 + 1


@pytest.mark.parametrize("e", error_inputs(family="pool", tags={"integer"}), ids=str)
def test_average_and_lp_pooling_of_integers_raise(e):
    with pytest.raises(e.error, match=e.match):
        e.call(F)


@pytest.mark.parametrize("dtype", INT_DTYPES, ids=IDS)
def test_integer_specs_print_and_parse(dtype):
    name = np.dtype(dtype).name
    spec = resolve_pool("max_pool2d", "max", 2, (1, 3, 8, 8), 3, 2, 1, return_indices=True, dtype=name)
    assert spec.name().endswith("_" + {"int8": "i8", "uint8": "u8", "int16": "i16", "int32": "i32",
                                       "int64": "i64"}[name])
    assert PoolSpec.parse(spec.name()) == spec
    assert spec.min_bytes == (3 * 64 + 3 * 16) * np.dtype(dtype).itemsize + 3 * 16 * 8
    adaptive = resolve_adaptive_pool("adaptive_max_pool2d", "max", 2, (1, 3, 8, 8), 2, dtype=name)
    assert AdaptivePoolSpec.parse(adaptive.name()) == adaptive
    with pytest.raises(ValueError, match=rf"avg_pool2d: dtype='{name}' is not supported"):
        resolve_pool("avg_pool2d", "avg", 2, (1, 3, 8, 8), 3, dtype=name)
    assert F.algorithms("max_pool2d", (1, 3, 8, 8), kernel_size=3, dtype=name) == ["direct"]
