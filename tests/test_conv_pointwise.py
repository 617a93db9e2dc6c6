"""1x1 convolutions in both layouts: the direct kernel's in-place path
(fastconv/cpu/conv/direct/pointwise.py) and the GEMM, against the NumPy reference."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import torch

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


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
def test_pointwise_reduction_blocks(dtype, rng):
    """C/G channels whose packed weight block exceeds L1 are reduced in blocks, every tile call after
    the first adding into the output (fma_tile's ACT_ACCUMULATE): groups, a stride, a non-contiguous
    input, ragged channel blocks (K/G = 35), bias and relu6 on the last block only; 1 and 2 threads
    give the same bits. Against the NumPy reference and PyTorch."""
    from fastconv.cpu.conv.direct.pointwise_rows import reduction_blocks, rows_plan
    from fastconv.spec.conv import resolve_conv

    big = rng.standard_normal((2, 9, 11, 2 * 600)).astype(dtype)
    x = big[:, :, :, ::2]  # (2, 9, 11, 600): channels every other element
    w = rng.standard_normal((70, 300, 1, 1)).astype(dtype)
    b = rng.standard_normal(70).astype(dtype)
    spec = resolve_conv("conv2d", x.shape, w.shape, stride=(1, 2), groups=2, channels_last=True, dtype=dtype)
    plan = rows_plan(spec)
    assert reduction_blocks(300, plan.shape.v, plan.dtype.itemsize) > 1
    before = x.copy()
    results = []
    previous = numba.get_num_threads()
    try:
        for threads in (1, 2):
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            results.append(F.conv2d(x, w, b, stride=(1, 2), groups=2, activation="relu6", algo="direct",
                                      channels_last=True))
    finally:
        numba.set_num_threads(previous)
    np.testing.assert_array_equal(x, before)
    np.testing.assert_array_equal(results[0], results[1])
    got = np.moveaxis(results[0], -1, 1)
    assert got.dtype == np.dtype(dtype)
    x64, w64, b64 = (a.astype(np.float64) for a in (np.moveaxis(x, -1, 1), w, b))
    expected = ref.conv(x64, w64, b64, stride=(1, 2), groups=2, activation="relu6")
    assert_close(got, expected, "conv", dtype, np.sqrt(300), what="reduction blocks")
    if dtype != "float16":
        theirs = torch.nn.functional.conv2d(torch.from_numpy(x64), torch.from_numpy(w64), torch.from_numpy(b64),
                                            stride=(1, 2), groups=2).clamp(0, 6).numpy()
        assert_close(got, theirs, "conv", dtype, np.sqrt(300), what="reduction blocks against torch")


def test_auto_weight_heavy_channels_first_takes_direct(rng):
    """algo="auto" on channels-first 1x1 layers: the direct kernel where the weight has at least
    dispatch.POINTWISE_DIRECT_WEIGHT elements and four times the input's (ResNet-50's 7x7 2048->512,
    its strided 14x14 1024->2048), the GEMM for other weights that large (the same weight on a 28x28
    input, U-Net's stacked transposed phases); smaller weights the direct kernel with
    dispatch.POINTWISE_ROWS_MIN_CHANNELS channels per group either side, else the GEMM; the auto result
    against the NumPy reference, with a bias and relu."""
    from fastconv.dispatch import POINTWISE_DIRECT_WEIGHT, choose
    from fastconv.spec.conv import resolve_conv

    def chosen(x_shape, w_shape, **kw):
        return choose("conv", "cpu", resolve_conv("conv2d", x_shape, w_shape, **kw)).algo

    assert 512 * 2048 >= POINTWISE_DIRECT_WEIGHT
    assert chosen((1, 2048, 7, 7), (512, 2048, 1, 1)) == "direct"
    assert chosen((1, 1024, 14, 14), (2048, 1024, 1, 1), stride=2) == "direct"
    assert chosen((1, 2048, 28, 28), (512, 2048, 1, 1)) == "gemm"  # the input is the larger operand
    assert chosen((1, 1024, 28, 28), (2048, 1024, 1, 1)) == "gemm"  # the weight 2.6 times the input
    assert chosen((1, 64, 7, 7), (128, 64, 1, 1)) == "direct"  # a small weight: the 1x1 row kernel
    assert chosen((1, 16, 56, 56), (96, 16, 1, 1)) == "gemm"  # ... but not with few channels either side
    assert chosen((1, 144, 56, 56), (24, 144, 1, 1)) == "gemm"
    assert chosen((1, 7, 7, 2048), (512, 2048, 1, 1), channels_last=True) == "direct"

    x = rng.standard_normal((1, 2048, 5, 7)).astype(np.float32)
    w = rng.standard_normal((300, 2048, 1, 1)).astype(np.float32)
    b = rng.standard_normal(300).astype(np.float32)
    assert chosen(x.shape, w.shape) == "direct"
    expected = ref.conv(x.astype(np.float64), w, b, activation="relu")
    got = F.conv2d(x, w, b, activation="relu")
    assert_close(got, expected, "conv", "float32", np.sqrt(2048), what="auto, weight-heavy channels-first 1x1")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_pointwise_block_tasks(dtype, rng):
    """Fewer rows than pointwise_rows.SERIAL_PACK_ROWS in CHUNKS_PER_THREAD channel blocks per thread
    or more: one task per block over every row, each packing its own block (no packing before the
    tiles); groups, ragged blocks (K/G = 250), bias and relu6; 1 and 2 threads give the same bits,
    the input and weight are not written. Against the NumPy reference and PyTorch."""
    from fastconv.cpu.conv.direct import pointwise_rows as rows
    from fastconv.spec.conv import resolve_conv

    x = rng.standard_normal((1, 7, 9, 128)).astype(dtype)
    w = rng.standard_normal((500, 64, 1, 1)).astype(dtype)
    b = rng.standard_normal(500).astype(dtype)
    spec = resolve_conv("conv2d", x.shape, w.shape, groups=2, channels_last=True, dtype=dtype)
    plan = rows.rows_plan(spec)
    assert plan.rows < rows.SERIAL_PACK_ROWS and x.nbytes <= rows.PACKING_RUN_BYTES
    assert -(-250 // plan.shape.v) >= rows.CHUNKS_PER_THREAD * 2
    before = x.copy(), w.copy()
    results = []
    previous = numba.get_num_threads()
    try:
        for threads in (1, 2):
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            results.append(F.conv2d(x, w, b, groups=2, activation="relu6", algo="direct", channels_last=True))
    finally:
        numba.set_num_threads(previous)
    np.testing.assert_array_equal(x, before[0])
    np.testing.assert_array_equal(w, before[1])
    np.testing.assert_array_equal(results[0], results[1])
    got = np.moveaxis(results[0], -1, 1)
    x64, w64, b64 = (a.astype(np.float64) for a in (np.moveaxis(x, -1, 1), w, b))
    expected = ref.conv(x64, w64, b64, groups=2, activation="relu6")
    assert_close(got, expected, "conv", dtype, np.sqrt(64), what="block tasks")
    theirs = torch.nn.functional.conv2d(torch.from_numpy(x64), torch.from_numpy(w64), torch.from_numpy(b64),
                                        groups=2).clamp(0, 6).numpy()
    assert_close(got, theirs, "conv", dtype, np.sqrt(64), what="block tasks against torch")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_pointwise_rows_channels_first(dtype, rng):
    """Channels-first 1x1 layers on the 1x1 row kernel (conv/direct/pointwise_rows.py), reading the
    planes in place: odd planes (tails of every tile width), two images, groups with ragged channel
    blocks (K/G = 35), a stride, a non-contiguous input, a sum over C/G longer than one L1 block (never
    cut channels-first), bias and relu6; 1 and 2 threads give the same bits; the input and weight are
    not written. Against the NumPy reference and PyTorch."""
    from fastconv.cpu.conv.direct import pointwise_rows as rows
    from fastconv.spec.conv import resolve_conv

    cases = [((2, 64, 13, 11), (70, 32, 1, 1), 1, 2), ((1, 40, 17, 23), (96, 40, 1, 1), 2, 1),
             ((3, 600, 5, 3), (50, 600, 1, 1), 1, 1)]
    for x_shape, w_shape, stride, groups in cases:
        big = rng.standard_normal((*x_shape[:3], 2 * x_shape[3])).astype(dtype)
        x = big[..., ::2]  # non-contiguous: every other column
        w = rng.standard_normal(w_shape).astype(dtype)
        b = rng.standard_normal(w_shape[0]).astype(dtype)
        spec = resolve_conv("conv2d", x.shape, w.shape, stride=stride, groups=groups, dtype=dtype)
        plan = rows.rows_plan(spec)
        assert rows.supports_rows(spec) and plan.xpix == 1 and plan.c_blocks == 1
        before = x.copy(), w.copy()
        results = []
        previous = numba.get_num_threads()
        try:
            for threads in (1, 2):
                numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
                results.append(F.conv2d(x, w, b, stride=stride, groups=groups, activation="relu6", algo="direct"))
        finally:
            numba.set_num_threads(previous)
        np.testing.assert_array_equal(x, before[0])
        np.testing.assert_array_equal(w, before[1])
        np.testing.assert_array_equal(results[0], results[1])
        assert results[0].dtype == np.dtype(dtype)
        x64, w64, b64 = (a.astype(np.float64) for a in (x, w, b))
        expected = ref.conv(x64, w64, b64, stride=stride, groups=groups, activation="relu6")
        scale = np.sqrt(w_shape[1])
        assert_close(results[0], expected, "conv", dtype, scale, what=f"channels-first rows {x_shape}")
        theirs = torch.nn.functional.conv2d(torch.from_numpy(x64), torch.from_numpy(w64), torch.from_numpy(b64),
                                            stride=stride, groups=groups).clamp(0, 6).numpy()
        assert_close(results[0], theirs, "conv", dtype, scale, what=f"channels-first rows {x_shape} against torch")
