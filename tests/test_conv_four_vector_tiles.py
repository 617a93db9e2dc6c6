"""The direct kernel's channels-last float32 tiles of four vectors (tiled.tile_shape): their plans
cover every output pixel, and their sums are bitwise those of the channels-first tiles of two
vectors (the same products added in the same order), forward and through the swapped input
gradient, against the reference."""

from __future__ import annotations

import numpy as np
import pytest

import fastconv as F
import fastconv.grad as G
from fastconv import reference as ref
from fastconv.testing.conv_samples import sample
from fastconv.testing.tolerances import assert_close

AVX512, AVX2 = (64, 32), (32, 16)  # fastconv.cpu._jit.Simd: vector bytes, vector registers


def _last(a):
    return np.ascontiguousarray(np.moveaxis(a, 1, -1))


def test_four_vector_shapes_and_their_plans():
    from fastconv.cpu.conv.direct.tiled import plane_tiles, tile_shape

    assert tile_shape(64, "float32", AVX512, channels_last=True).v == 64
    assert tile_shape(49, "float32", AVX512, channels_last=True).v == 64
    for k, dtype, registers in [(48, "float32", AVX512), (65, "float32", AVX512), (64, "float32", AVX2),
                                (32, "float64", AVX512)]:
        assert tile_shape(k, dtype, registers, channels_last=True) == tile_shape(k, dtype, registers)
    shape = tile_shape(64, "float32", AVX512, channels_last=True)
    assert max(r * s for r, s in shape.shapes) * shape.n_vec + shape.n_vec + 1 <= 32  # no spills
    for oh in (1, 2, 5, 7, 40):
        for ow in range(1, 41):
            for streams_l2 in (False, True):
                t_row, t_col, t_sel, _ = plane_tiles(1, oh, ow, shape, streams_l2).expand(oh)
                rows, cols = np.array(shape.shapes)[t_sel].T
                covered = np.zeros((oh, ow), int)
                for r0, r, c0, c in zip(t_row, rows, t_col, cols):
                    covered[r0:r0 + r, c0:c0 + c] += 1
                assert (t_col + cols <= ow).all() and covered.min() >= 1, (oh, ow)


@pytest.mark.parametrize("s", [
    # a partial block (60 of 64 channels) in two groups, rows of 10 (overlapping tiles), bias and relu6
    sample("conv2d", (2, 6, 9, 10), (120, 3, 3, 3), dtype="float32", groups=2, padding=1, activation="relu6"),
    # full blocks, strided, rows of 17 (15 input channels: 16 would read the input in place, taps outer)
    sample("conv2d", (1, 15, 11, 34), (64, 15, 3, 3), dtype="float32", stride=(1, 2), padding=1),
], ids=str)
def test_four_vector_tiles_match_channels_first(s, rng):
    from fastconv.cpu.conv.direct.run import direct_plan

    assert direct_plan(s.spec(channels_last=True)).shape.v == 64
    x, w, b = s.arrays(rng)
    first = F.conv2d(x, w, b, algo="direct", **s.args)
    last = F.conv2d(_last(x), w, b, algo="direct", channels_last=True, **s.args)
    assert np.array_equal(np.moveaxis(last, -1, 1), first)
    expected = ref.conv(x, w, b, **s.args)
    assert_close(last, np.moveaxis(expected, 1, -1), "conv", "float32", np.sqrt(np.prod(w.shape[1:])), what=str(s))


def test_four_vector_tiles_swapped_input_grad(rng):
    """The input gradient of a layer of 64 input channels runs the direct kernel with 64 output
    channels on grad_output, packing the weight swapped: channels-last bitwise as channels-first."""
    x = rng.standard_normal((1, 64, 7, 9)).astype(np.float32)
    w = rng.standard_normal((8, 64, 3, 3)).astype(np.float32)
    g = rng.standard_normal((1, 8, 7, 9)).astype(np.float32)
    first = G.conv2d_input(x.shape, w, g, padding=1)
    last = G.conv2d_input((1, 7, 9, 64), w, _last(g), padding=1, channels_last=True)
    assert np.array_equal(np.moveaxis(last, -1, 1), first)
    want = ref.conv_transpose(g, w, padding=1)  # the adjoint of the stride-1 conv
    assert_close(last, np.moveaxis(want, 1, -1), "conv", "float32", np.sqrt(8 * 9), what="input grad")
