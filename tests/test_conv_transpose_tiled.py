"""Transposed conv's phases through the direct kernel (fastconv/cpu/conv/transpose/tiled.py): when it
applies, and what the sample sweep in test_conv.py does not reach (strided input, image chunks)."""

from __future__ import annotations

import numba
import numpy as np
import pytest

import fastconv as F
from fastconv import reference as ref
from fastconv.cpu.conv.transpose.tiled import channels_first, tiled_plan
from fastconv.spec.conv import resolve_conv
from fastconv.testing.tolerances import assert_close


def spec(input_shape, weight_shape, dtype="float32", **args):
    return resolve_conv(f"conv_transpose{len(input_shape) - 2}d", input_shape, weight_shape, dtype=dtype, **args)


def test_when_it_applies():
    threads = numba.get_num_threads()
    assert tiled_plan(spec((2, 64, 4, 4), (64, 32, 4, 4), stride=2, padding=1), threads) is not None  # DCGAN
    assert tiled_plan(spec((1, 32, 7, 7), (32, 16, 3, 3), stride=2, padding=1, output_padding=1), threads)  # FCN
    assert tiled_plan(spec((1, 32, 7, 7), (32, 16, 2, 2), stride=2), threads) is None  # 1x1 phases: one GEMM
    assert tiled_plan(spec((1, 32, 7, 7), (32, 16, 3, 3), stride=2, padding=1), threads) is None  # 13: odd output
    assert tiled_plan(spec((1, 32, 4, 4), (32, 8, 4, 4), stride=2, padding=1, groups=2), threads) is None
    # K % V: the swapped-phases kernel stores K channels of every pixel
    assert len(tiled_plan(spec((1, 32, 4, 4), (32, 12, 4, 4), stride=2, padding=1), threads).calls) == 4
    assert tiled_plan(spec((1, 32, 7, 7), (32, 12, 3, 3), stride=2, padding=1, output_padding=1), threads).swapped
    assert tiled_plan(spec((1, 8, 3, 4, 4), (8, 16, 2, 4, 4), stride=2, padding=1), threads) is None  # depth stride
    # DCGAN's phases too: one call of the swapped-phases kernel, no forward weights built
    assert sorted(np.diff(tiled_plan(spec((2, 64, 4, 4), (64, 32, 4, 4), stride=2, padding=1), threads).swapped.at)
                  // 64) == [4, 4, 4, 4]


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
def test_swapped_phases(dtype, channels_last, rng):
    """Phases of 1, 2 and 4 taps packed from the transposed weight: two channel blocks and a part one
    (K = 40 of V = 16 or 32), bias and relu, against the reference; weight read-only and untouched."""
    x = rng.standard_normal((2, 24, 5, 6)).astype(dtype)
    w = rng.standard_normal((24, 40, 3, 3)).astype(dtype)
    b = rng.standard_normal(40).astype(dtype)
    args = dict(stride=2, padding=1, output_padding=1)
    plan = tiled_plan(spec(x.shape, w.shape, dtype, **args), numba.get_num_threads())
    assert plan.swapped is not None and sorted(np.diff(plan.swapped.at) // 24) == [1, 2, 2, 4]
    w_kept = w.copy()
    w.flags.writeable = False
    _check(x, w, b, channels_last, activation="relu", **args)
    assert np.array_equal(w, w_kept)


def _check(x, w, b, channels_last, **args):
    expected = ref.conv_transpose(x, w, b, **args)
    xin = np.moveaxis(x, 1, -1) if channels_last else x
    got = F.conv_transpose2d(xin, w, b, channels_last=channels_last, algo="phases", **args)
    if channels_last:
        got = np.moveaxis(got, -1, 1)
    assert_close(got, expected, "conv", x.dtype.name, np.sqrt(np.prod(w.shape[1:])))
    return got


@pytest.mark.parametrize("channels_last", [False, True])
def test_threads_bitwise(channels_last, rng):
    """DCGAN-like (4x4 stride 2, three images, K = 20: a part channel block), bias and relu6: against the
    reference, and bitwise the same on one thread and on all."""
    x = rng.standard_normal((3, 40, 3, 5)).astype(np.float32)
    w = rng.standard_normal((40, 20, 4, 4)).astype(np.float32)
    b = rng.standard_normal(20).astype(np.float32)
    args = dict(stride=2, padding=1, activation="relu6")
    got = _check(x, w, b, channels_last, **args)
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        again = _check(x, w, b, channels_last, **args)
    finally:
        numba.set_num_threads(previous)
    assert np.array_equal(got, again)


@pytest.mark.parametrize("channels_last", [False, True])
def test_strided_input(channels_last, rng):
    """Input read through a view with gaps (every other channel and column); weight not C-contiguous."""
    big = rng.standard_normal((2, 10, 5, 9))
    x = big[:, ::2, :, ::2]
    w = np.asfortranarray(rng.standard_normal((5, 8, 4, 4)))
    b = rng.standard_normal(8)
    assert tiled_plan(spec((2, 5, 5, 5), w.shape, "float64", stride=2, padding=1), numba.get_num_threads())
    _check(x, w, b, channels_last, stride=2, padding=1)


@pytest.mark.parametrize("channels_last", [False, True])
def test_image_chunks(channels_last, rng):
    """A workspace cap under one packed image: one image per chunk."""
    x = rng.standard_normal((3, 6, 5, 4))
    w = rng.standard_normal((6, 8, 3, 3))
    b = rng.standard_normal(8)
    args = dict(stride=2, padding=1, output_padding=1)
    assert tiled_plan(spec((3, 6, 5, 4), w.shape, "float64", **args), numba.get_num_threads())
    previous = F.set_workspace_limit(1024)
    try:
        _check(x, w, b, channels_last, **args)
    finally:
        F.set_workspace_limit(previous)


@pytest.mark.parametrize("channels_last", [False, True])
def test_grouped_phases_partial_channel_block(channels_last, rng):
    """DCGAN-like: the two width phases as groups of one kernel call, 12 of 16 lanes valid."""
    x = rng.standard_normal((2, 5, 3, 4)).astype(np.float32)
    w = rng.standard_normal((5, 12, 4, 4)).astype(np.float32)
    b = rng.standard_normal(12).astype(np.float32)
    _check(x, w, b, channels_last, stride=2, padding=1, activation="relu")


@pytest.mark.parametrize("n, p, k", [(1, 1, 1), (2, 17, 5), (1, 40, 33), (3, 16, 16)])
def test_channels_first(n, p, k, rng):
    src = rng.standard_normal((n, p, k)).astype(np.float32)
    out = np.empty((n, k, p), np.float32)
    channels_first(src.reshape(-1), out.reshape(-1), n, p, k)
    np.testing.assert_array_equal(out, np.moveaxis(src, -1, 1))


@pytest.mark.parametrize("channels_last", [False, True])
def test_narrow_planes_short_tiles(channels_last, rng):
    """DCGAN's up2 in small (8x8 phase planes, two images, K = 40: a part channel block): tiles of at most
    SHORT_TILE_ROWS rows covering every pixel of each plane, against the reference, bitwise the same on one
    thread and on all."""
    from fastconv.cpu.conv.transpose.tiled import SHORT_TILE_ROWS

    x = rng.standard_normal((2, 24, 8, 8)).astype(np.float32)
    w = rng.standard_normal((24, 40, 4, 4)).astype(np.float32)
    b = rng.standard_normal(40).astype(np.float32)
    args = dict(stride=2, padding=1, activation="relu")
    plan = tiled_plan(spec(x.shape, w.shape, **args), numba.get_num_threads())
    for call in plan.calls:
        rows, cols, sels, _ = call.tiles.expand(plan.counts[1])
        shapes = [plan.shape.shapes[s] for s in sels]
        assert max(r for r, _ in shapes) <= SHORT_TILE_ROWS
        covered = {(row + i, col + j) for row, col, (r, s) in zip(rows, cols, shapes) for i in range(r) for j in range(s)}
        assert covered == {(i, j) for i in range(8) for j in range(8)}
    got = _check(x, w, b, channels_last, **args)
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        again = _check(x, w, b, channels_last, **args)
    finally:
        numba.set_num_threads(previous)
    assert np.array_equal(got, again)
