"""The direct kernel restricted per output region to the taps that read the input
(fastconv/cpu/conv/direct/banded.py): every case asserts that its plan is banded, then
checks both layouts against the reference (and PyTorch); NaN weights and non-zero padding
values take the plain kernel, or, on layers dilated TAPS_OUTER_DILATION or more, the banded
kernel over a padded copy. The cases band wherever the cost model finds any banding
cheaper (GAIN raised), so small shapes cover what large layers band."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from test_conv import OPS, check, reference_result, torch_result

from fastconv import clear_caches
from fastconv.cpu.conv.direct import banded
from fastconv.cpu.conv.direct.run import direct_plan, padded_plan
from fastconv.testing.conv_samples import sample


@pytest.fixture(autouse=True)
def band_whenever_cheaper(monkeypatch):
    clear_caches()
    monkeypatch.setattr(banded, "GAIN", 1.0)
    yield
    clear_caches()

CASES = [
    sample("conv2d", (2, 6, 17, 15), (10, 6, 3, 3), dilation=6, padding=6),  # ASPP-like: 3x3 regions
    sample("conv2d", (1, 5, 33, 33), (40, 5, 3, 3), dilation=18, padding=18, dtype="float32"),  # 2 channel blocks
    sample("conv2d", (1, 4, 19, 21), (6, 4, 3, 3), dilation=8, padding=8, dtype="float16"),
    sample("conv2d", (2, 4, 33, 29), (7, 4, 3, 3), stride=2, dilation=(8, 6), padding=((14, 2), (1, 12))),
    sample("conv2d", (1, 3, 21, 22), (5, 3, 3, 5), dilation=(6, 4), padding="same", activation="relu"),
    sample("conv2d", (1, 6, 16, 18), (8, 3, 3, 3), dilation=7, padding=9, groups=2, activation="relu6"),
    sample("conv2d", (1, 3, 12, 12), (4, 3, 3, 3), dilation=2, padding=30),  # outer regions: bias alone
    sample("conv2d", (1, 3, 25, 23), (4, 3, 3, 3), dilation=6, padding=6, padding_mode="constant",
           padding_value=0.0, dtype="float32"),
    sample("conv1d", (2, 8, 300), (10, 8, 3), dilation=128, padding=((256, 0),)),  # causal TCN
    sample("conv1d", (1, 4, 90), (6, 4, 5), stride=3, dilation=16, padding=64, dtype="float32"),
    sample("conv3d", (1, 4, 9, 10, 11), (5, 4, 3, 3, 3), dilation=4, padding=4),
    sample("conv3d", (1, 3, 8, 9, 7), (4, 3, 3, 3, 3), dilation=(3, 4, 2), padding=(3, 4, 2), dtype="float32"),
]


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("s", CASES, ids=str)
def test_banded_plans_match_reference(s, channels_last, rng):
    assert direct_plan(s.spec(channels_last)).banded is not None
    check(s, rng, "direct", channels_last=channels_last)


@pytest.mark.parametrize("s", CASES[:2] + CASES[8:9] + CASES[10:11], ids=str)
def test_banded_plans_match_torch(s, rng):
    x, w, b, expected = check(s, rng, "direct")
    np.testing.assert_allclose(expected, torch_result(s, x, w, b), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_non_contiguous_input_untouched_and_the_same_on_one_and_two_threads(channels_last, rng):
    base = rng.standard_normal((3, 8, 35, 34))
    x = base[::2, ::2, 1:, ::-1]
    if channels_last:
        x = np.moveaxis(x, 1, -1)
    x.setflags(write=False)
    w = np.asfortranarray(rng.standard_normal((9, 4, 3, 3)))
    before = x.copy()
    args = dict(padding=12, dilation=12, algo="direct", channels_last=channels_last)
    got = []
    for threads in (1, 2):
        previous = numba.get_num_threads()
        numba.set_num_threads(threads)
        try:
            got.append(OPS["conv2d"](x, w, **args))
        finally:
            numba.set_num_threads(previous)
    np.testing.assert_array_equal(got[0], got[1])
    s = sample("conv2d", (2, 4, 34, 34), (9, 4, 3, 3), bias=False, padding=12, dilation=12)
    assert direct_plan(s.spec(channels_last)).banded is not None
    xc = np.moveaxis(x, -1, 1) if channels_last else x
    out = np.moveaxis(got[0], -1, 1) if channels_last else got[0]
    np.testing.assert_allclose(out, reference_result(s, xc, w, None), rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("dilation", [2, 6])
def test_nan_weight_meets_the_padding_it_would_skip(dilation):
    """0 * NaN is NaN: a NaN at tap (0, 0) reaches every output, also those whose tap (0, 0)
    reads padding, which the banded plan skips (the plain kernel runs instead, or at rate 6
    the banded kernel over a zero-padded copy)."""
    x = np.ones((1, 3, 17, 15))
    w = np.ones((4, 3, 3, 3))
    w[1, 2, 0, 0] = np.nan
    got = OPS["conv2d"](x, w, padding=dilation, dilation=dilation, algo="direct")
    assert np.isnan(got[:, 1]).all() and not np.isnan(got[:, [0, 2, 3]]).any()
    assert (padded_plan(sample("conv2d", x.shape, w.shape, padding=dilation, dilation=dilation).spec())
            is None) == (dilation < banded.TAPS_OUTER_DILATION)


def test_non_zero_padding_value_is_not_banded(rng):
    s = sample("conv2d", (1, 3, 17, 15), (4, 3, 3, 3), dilation=3, padding=3, padding_mode="constant",
               padding_value=1.5)
    assert direct_plan(s.spec()).banded is None and padded_plan(s.spec()) is None
    check(s, rng, "direct")


PADDED_CASES = [
    sample("conv2d", (2, 6, 17, 15), (10, 6, 3, 3), dilation=6, padding=6, padding_mode="constant",
           padding_value=1.5),
    sample("conv2d", (1, 4, 19, 21), (6, 4, 3, 3), dilation=(4, 8), padding=((5, 3), (8, 9)),
           padding_mode="reflect", dtype="float16"),
    sample("conv2d", (1, 6, 16, 18), (8, 3, 3, 3), stride=2, dilation=5, padding=7, groups=2,
           padding_mode="circular", activation="relu", dtype="float32"),
    sample("conv2d", (2, 8, 21, 40), (10, 8, 3, 3), dilation=(4, 16), padding=(4, 20), padding_mode="replicate"),
    sample("conv3d", (1, 3, 8, 9, 7), (4, 3, 3, 3, 3), dilation=(1, 4, 2), padding=(1, 4, 2),
           padding_mode="symmetric", dtype="float32"),
]


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("s", PADDED_CASES, ids=str)
def test_other_padding_modes_of_rate_4_and_more_read_a_padded_copy(s, channels_last, rng):
    assert direct_plan(s.spec(channels_last)).banded is None
    assert padded_plan(s.spec(channels_last)) is not None
    check(s, rng, "direct", channels_last=channels_last)


@pytest.mark.parametrize("s", [
    sample("conv1d", (2, 8, 40), (10, 8, 3), dilation=16, padding=20, padding_mode="replicate"),
    sample("conv1d", (1, 64, 600), (64, 64, 3), dilation=64, padding=((128, 0),), dtype="float32"),  # causal TCN
    sample("conv2d", (1, 8, 9, 40), (6, 8, 1, 3), dilation=(1, 8), padding=(0, 8), padding_mode="reflect"),
], ids=str)
def test_one_dim_windows_keep_the_plain_order(s, rng):
    """A window with one dim past 1 (TCN's dilated causal convs) is never taps outer: no padded
    copy, and banded only under GAIN, channels outer, bitwise the plain kernel's sums."""
    from fastconv.cpu.conv.direct.banded import taps_outer
    from fastconv.kernels.geometry import geometry3

    assert not taps_outer(geometry3(s.spec()))
    assert padded_plan(s.spec()) is None
    check(s, rng, "direct")


@pytest.mark.parametrize("shape, weight, dilation, padding", [((1, 256, 28, 28), (256, 256, 3, 3), 4, 4),
                                                              ((1, 512, 33, 33), (256, 512, 3, 3), 6, 6),
                                                              ((1, 16, 40, 40), (8, 16, 3, 3), 6, 0)])
def test_layers_of_rate_4_and_more_are_always_banded(shape, weight, dilation, padding):
    """Taps outer, one rule for every such layer: also where banding saves little or, without
    padding, nothing (a Dask block inside the array)."""
    plan = direct_plan(sample("conv2d", shape, weight, dilation=dilation, padding=padding, dtype="float32").spec())
    assert plan.banded is not None
    assert (plan.banded.regions.shape[0] == 1) == (padding == 0)


@pytest.mark.parametrize("shape, weight, dilation", [((1, 256, 28, 28), (256, 256, 3, 3), 2),
                                                     ((1, 64, 56, 56), (64, 64, 3, 3), 1)])
def test_layers_with_little_padding_keep_the_plain_plan(shape, weight, dilation, monkeypatch):
    monkeypatch.setattr(banded, "GAIN", 0.8)
    assert direct_plan(sample("conv2d", shape, weight, dilation=dilation, padding=dilation,
                              dtype="float32").spec()).banded is None


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cg, taps, kg", [(5, 9, 20), (17, 27, 3), (40, 1, 33), (3, 3, 64)])
def test_weight_block_packed_taps_outer(dtype, cg, taps, kg, rng):
    """pack_weight_block_taps_outer: block kb of group g, rows (tap, channel), the channels past
    the group's zero; odd channel counts leave steps past whole vectors, T = 1 is the weight's order."""
    from numba import njit

    from fastconv.cpu.conv.direct.tiled import tile_shape
    from fastconv.cpu.vector.fma_tile import REVISION, pack_weight_block_taps_outer

    shape = tile_shape(kg, dtype)
    v, lanes, revision = shape.v, shape.lanes, REVISION

    @njit
    def pack(w, g, kb, t_n, out):
        pack_weight_block_taps_outer(w, g, kb, t_n, out, v, lanes, revision)

    w = rng.standard_normal((2, kg, cg * taps)).astype(dtype)
    for g in range(2):
        for kb in range(-(-kg // v)):
            out = np.full(cg * taps * v, np.nan, dtype)
            pack(w, g, kb, taps, out)
            block = np.zeros((v, cg, taps), dtype)
            rows = w[g, kb * v:(kb + 1) * v].reshape(-1, cg, taps)
            block[:rows.shape[0]] = rows
            np.testing.assert_array_equal(out.reshape(taps, cg, v), block.transpose(2, 1, 0))
