"""Channels-last transposed convs whose phases are one stacked 1x1 conv (U-Net's 2x2 stride 2):
the 1x1 kernel writes each phase's outputs straight into their interleaved places
(conv/direct/pointwise_rows.depth_to_space_plan); where a channel block would straddle two
phases, or the rows' last tiles would be narrow, the stacked result is copied into place. Channels-first, the
GEMM reads the stacked weight as a transposed view (phases._stacked_gemm). Against the NumPy reference and PyTorch."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import torch

import fastconv as F
from fastconv import reference as ref
from fastconv.cpu.conv.direct.pointwise_rows import depth_to_space_plan, rows_plan
from fastconv.cpu.conv.transpose.phases import _stacked_gemm, phase_plan
from fastconv.spec.conv import resolve_conv
from fastconv.testing.tolerances import assert_close

# (input NC*, weight, stride): rows shorter than a tile, odd widths, 1-D and 3-D, unequal strides
CASES = [
    ((1, 64, 7, 9), (64, 32, 2, 2), 2),
    ((2, 32, 5, 13), (32, 64, 2, 2), 2),
    ((3, 48, 1, 3), (48, 32, 2, 2), 2),
    ((2, 32, 6, 10), (32, 32, 2, 3), (2, 3)),
    ((3, 48, 11), (48, 32, 3), 3),
    ((2, 16, 3, 4, 5), (16, 32, 2, 2, 2), 2),
    ((1, 64, 20, 28), (64, 64, 2, 2), 2),
    ((1, 320, 3, 18), (320, 32, 2, 2), 2),  # C above a packed block's L1 share: the reduction in blocks
]


def _forward_and_plan(x_shape, w_shape, stride, dtype):
    nd = len(x_shape) - 2
    tspec = resolve_conv(f"conv_transpose{nd}d", (x_shape[0], *x_shape[2:], x_shape[1]), w_shape, stride=stride,
                         channels_last=True, dtype=dtype)
    fspec = phase_plan(tspec).groups[0].spec
    return depth_to_space_plan(fspec, tspec.stride, tspec.output_shape)


def _torch(x, w, b, stride, activation):
    nd = x.ndim - 2
    got = getattr(torch.nn.functional, f"conv_transpose{nd}d")(torch.from_numpy(x), torch.from_numpy(w),
                                                                torch.from_numpy(b), stride=stride)
    return got.clamp(0, 6 if activation == "relu6" else None).numpy() if activation else got.numpy()


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
@pytest.mark.parametrize("x_shape, w_shape, stride", CASES, ids=[f"{x}-{w}-s{s}" for x, w, s in CASES])
def test_interleaved_write(x_shape, w_shape, stride, dtype, rng):
    nd = len(x_shape) - 2
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[1]).astype(dtype)
    activation = "relu6" if nd == 2 else None
    xin = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    before = xin.copy()
    got = np.moveaxis(getattr(F, f"conv_transpose{nd}d")(xin, w, b, stride=stride, activation=activation,
                                                          channels_last=True), -1, 1)
    np.testing.assert_array_equal(xin, before)
    assert got.dtype == np.dtype(dtype)
    scale = np.sqrt(x_shape[1])
    expected = ref.conv_transpose(x, w, b, stride=stride, activation=activation)
    assert_close(got, expected, "conv", dtype, scale)
    if dtype != "float16":
        assert_close(got, _torch(x, w, b, stride, activation), "conv", dtype, scale, what="against torch")


def test_when_it_applies():
    assert _forward_and_plan((1, 64, 7, 9), (64, 32, 2, 2), 2, "float32") is not None
    assert _forward_and_plan((2, 16, 3, 4, 5), (16, 32, 2, 2, 2), 2, "float32") is not None
    v = rows_plan(resolve_conv("conv2d", (1, 4, 4, 16), (64, 16, 1, 1), channels_last=True, dtype="float32")).shape.v
    # K = 16 and V = 32 (AVX-512) or 16: a block of V channels straddles two phases unless V divides K
    assert (_forward_and_plan((2, 16, 4, 5), (16, 16, 2, 2), 2, "float32") is not None) == (16 % v == 0)
    assert _forward_and_plan((1, 16, 6, 6), (16, 32, 4, 4), 2, "float32") is None  # 2x2 sub-kernels, not 1x1
    # rows whose last tiles are narrow keep the copy: 3 pixels; 28 pixels of 1024 channels are written in
    # place, the reduction cut into blocks whose packed weights fit L1
    assert _forward_and_plan((3, 48, 1, 3), (48, 32, 2, 2), 2, "float32") is None
    assert _forward_and_plan((1, 1024, 28, 28), (1024, 512, 2, 2), 2, "float32") is not None
    assert _forward_and_plan((1, 512, 56, 56), (512, 256, 2, 2), 2, "float32") is not None


def test_non_contiguous_input_and_threads(rng):
    """Every other channel and column of a larger array; 1 and 2 threads give the same bits."""
    big = rng.standard_normal((2, 9, 12, 128)).astype(np.float32)
    x = big[:, :, ::2, ::2]
    w = rng.standard_normal((64, 32, 2, 2)).astype(np.float32)
    b = rng.standard_normal(32).astype(np.float32)
    results = []
    previous = numba.get_num_threads()
    try:
        for threads in (1, 2):
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            results.append(F.conv_transpose2d(x, w, b, stride=2, channels_last=True))
    finally:
        numba.set_num_threads(previous)
    np.testing.assert_array_equal(results[0], results[1])
    expected = ref.conv_transpose(np.moveaxis(x, -1, 1).astype(np.float64), w, b, stride=2)
    assert_close(np.moveaxis(results[0], -1, 1), expected, "conv", "float32", np.sqrt(64))


def test_weight_strided_read_only_float64(rng):
    """The weight packed straight from the user's transposed weight: a strided, read-only view of a
    larger array is read as it is and left unchanged; float64 (blocks of fewer channels) to 1e-10."""
    big = rng.standard_normal((64, 2, 64, 2, 2))
    w = big[:, 1, ::2]  # (64, 32, 2, 2), not contiguous
    w.flags.writeable = False
    before = w.copy()
    x = rng.standard_normal((2, 5, 9, 64))
    b = rng.standard_normal(32)
    assert _forward_and_plan((2, 64, 5, 9), (64, 32, 2, 2), 2, "float64") is not None
    got = F.conv_transpose2d(x, w, b, stride=2, channels_last=True)
    np.testing.assert_array_equal(w, before)
    expected = ref.conv_transpose(np.moveaxis(x, -1, 1), np.ascontiguousarray(w), b, stride=2)
    np.testing.assert_allclose(np.moveaxis(got, -1, 1), expected, rtol=1e-10, atol=1e-10 * np.abs(expected).max())


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
def test_channels_first_gemm_reads_the_stacked_weight_transposed(dtype, rng):
    """Channels-first 2x2 stride 2 through the GEMM, its stacked weight a transposed view of phase_rows'
    (C, P * K): a strided, read-only weight left unchanged; 1 and 2 threads the same bits; against the
    reference and PyTorch."""
    x = rng.standard_normal((2, 96, 6, 7)).astype(dtype)
    big = rng.standard_normal((96, 2, 48, 2, 2)).astype(dtype)
    w = big[:, 0]
    w.flags.writeable = False
    before = w.copy()
    b = rng.standard_normal(48).astype(dtype)
    tspec = resolve_conv("conv_transpose2d", x.shape, w.shape, stride=2, has_bias=True, dtype=dtype)
    assert _stacked_gemm(tspec, phase_plan(tspec))
    results = []
    previous = numba.get_num_threads()
    try:
        for threads in (1, 2):
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            results.append(F.conv_transpose2d(x, w, b, stride=2))
    finally:
        numba.set_num_threads(previous)
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(w, before)
    assert results[0].dtype == np.dtype(dtype)
    expected = ref.conv_transpose(x, np.ascontiguousarray(w), b, stride=2)
    assert_close(results[0], expected, "conv", dtype, np.sqrt(96))
    if dtype != "float16":
        assert_close(results[0], _torch(x, np.ascontiguousarray(w), b, 2, None), "conv", dtype, np.sqrt(96),
                     what="against torch")


def test_wide_tiles_where_blocks_fit_the_phases():
    from fastconv.cpu._jit import simd
    from fastconv.cpu.conv.direct.pointwise import WIDE_PIXELS, WIDE_VECTORS

    wide = _forward_and_plan((2, 32, 5, 13), (32, 64, 2, 2), 2, "float32")  # K = 64: 4 vectors of floats
    narrow = _forward_and_plan((1, 64, 7, 9), (64, 32, 2, 2), 2, "float32")  # K = 32: a wide block straddles
    if simd().registers >= 32:
        assert (wide.shape.v, int(wide.widths[0])) == (WIDE_VECTORS * wide.shape.lanes, WIDE_PIXELS)
        assert narrow.shape.v == 2 * narrow.shape.lanes


def test_wide_rows_plan_where_it_applies():
    from fastconv.cpu._jit import simd

    def v_of(x_shape, w_shape, channels_last=True):
        return rows_plan(resolve_conv("conv2d", x_shape, w_shape, channels_last=channels_last, dtype="float32")).shape

    wide = simd().registers >= 32
    shape = v_of((1, 56, 56, 256), (128, 256, 1, 1))
    assert shape.v == (4 if wide else 2) * shape.lanes
    for args in [((1, 14, 14, 96), (96, 96, 1, 1)),  # 96 channels: a wide block would be partial
                 ((1, 14, 14, 64), (384, 64, 1, 1)),  # 12 blocks of 32 run as block tasks on two threads, 6 not
                 ((1, 256, 8, 8), (128, 256, 1, 1), False)]:  # channels-first
        shape = v_of(*args)
        assert shape.v == 2 * shape.lanes
