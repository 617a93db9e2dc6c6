"""1x1 convolutions in both layouts: the direct kernel's in-place path
(fastconv/cpu/conv/direct/pointwise.py) and the GEMM, against the NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest

import fastconv as F
from fastconv import reference as ref
from fastconv.dispatch import capable
from fastconv.testing.conv_samples import conv_samples
from fastconv.testing.tolerances import assert_close

OPS = {f"conv{n}d": getattr(F, f"conv{n}d") for n in (1, 2, 3)}
POINTWISE = [s for s in conv_samples() if not s.transposed and s.spec().is_pointwise]
CASES = [(s, a, cl) for s in POINTWISE for a in ("direct", "gemm") if a in capable("conv", "cpu", s.spec())
         for cl in (False, True)]


def _expected(s, x, w, b):
    a = s.args
    return ref.conv(x, w, b, stride=a.get("stride", 1), groups=a.get("groups", 1), activation=a.get("activation"))


def _scale(s):
    return max(1.0, np.sqrt(np.prod(s.weight_shape[1:])))


@pytest.mark.parametrize("s, algo, channels_last", CASES,
                         ids=[f"{s}-{a}-{'nhwc' if cl else 'nchw'}" for s, a, cl in CASES])
def test_pointwise_layouts(s, algo, channels_last, rng):
    x, w, b = s.arrays(rng)
    expected = _expected(s, x, w, b)
    xin = np.ascontiguousarray(np.moveaxis(x, 1, -1)) if channels_last else x
    before = xin.copy()
    got = OPS[s.op](xin, w, b, algo=algo, channels_last=channels_last, **s.args)
    np.testing.assert_array_equal(xin, before)
    assert got.dtype == x.dtype
    if channels_last:
        got = np.moveaxis(got, -1, 1)
    assert_close(got, expected, "conv", s.dtype, _scale(s), what=f"{s} algo={algo}")


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("algo", ["direct", "gemm"])
def test_pointwise_non_contiguous_input(algo, channels_last, rng):
    """A strided view of a larger array (every other image column) is read correctly."""
    big = rng.standard_normal((2, 19, 6, 22)).astype(np.float32)
    x = big[:, :, :, ::2]
    w = rng.standard_normal((35, 19, 1, 1)).astype(np.float32)
    b = rng.standard_normal(35).astype(np.float32)
    expected = ref.conv(x.astype(np.float64), w, b, activation="relu6")
    xin = np.moveaxis(x, 1, -1) if channels_last else x
    got = F.conv2d(xin, w, b, algo=algo, activation="relu6", channels_last=channels_last)
    if channels_last:
        got = np.moveaxis(got, -1, 1)
    assert_close(got, expected, "conv", "float32", np.sqrt(19), what=f"non-contiguous {algo}")


@pytest.mark.parametrize("algo", ["direct", "gemm"])
def test_pointwise_one_input_channel(algo, rng):
    """C = 1 channels-last: consecutive pixels are consecutive elements (the strided tile with pitch 1)."""
    x = rng.standard_normal((2, 1, 5, 16)).astype(np.float32)
    w = rng.standard_normal((20, 1, 1, 1)).astype(np.float32)
    expected = ref.conv(x.astype(np.float64), w)
    got = np.moveaxis(F.conv2d(np.moveaxis(x, 1, -1).copy(), w, algo=algo, channels_last=True), -1, 1)
    assert_close(got, expected, "conv", "float32", 1.0, what=f"one input channel {algo}")


@pytest.mark.parametrize("algo, kernel", [("direct", 1), ("gemm", 1), ("direct", 3)])
def test_read_only_input_and_weight(algo, kernel, rng):
    """Read-only arrays (np.load(mmap_mode="r"), broadcast views) are accepted: the direct
    kernels read the input in place (1x1 channels-last) and the weight as given."""
    x = rng.standard_normal((1, 6, 7, 20)).astype(np.float32)
    w = rng.standard_normal((40, 20, kernel, kernel)).astype(np.float32)
    expected = ref.conv(np.moveaxis(x, -1, 1).astype(np.float64), w, padding=kernel // 2)
    x.setflags(write=False)
    w.setflags(write=False)
    got = F.conv2d(x, w, padding=kernel // 2, algo=algo, channels_last=True)
    assert_close(np.moveaxis(got, -1, 1), expected, "conv", "float32", np.sqrt(20 * kernel * kernel),
                 what=f"read-only {algo} {kernel}x{kernel}")


def test_pointwise_weight_packed_by_tasks(rng):
    """A weight above pointwise_rows.PREPACK_BYTES: each task packs the passes it uses, runs of up to
    PACKING_RUN_BYTES of input; a bias and relu, ragged channel blocks (K = 600)."""
    from fastconv.cpu.conv.direct.pointwise_rows import PREPACK_BYTES

    x = rng.standard_normal((2, 13, 23, 512)).astype(np.float32)
    w = rng.standard_normal((600, 512, 1, 1)).astype(np.float32)
    b = rng.standard_normal(600).astype(np.float32)
    assert w.nbytes > PREPACK_BYTES
    got = F.conv2d(x, w, b, activation="relu", channels_last=True)
    expected = ref.conv(np.moveaxis(x, -1, 1).astype(np.float64), w, b, activation="relu")
    assert_close(np.moveaxis(got, -1, 1), expected, "conv", "float32", np.sqrt(512), what="packed by tasks")
