"""The per-region tap GEMM ("taps", fastconv/cpu/conv/taps.py) beyond the shared sample loop:
its band arithmetic, channels-last, non-contiguous input, chunking, and undilated calls."""

from __future__ import annotations

import numpy as np
import pytest
from test_conv import OPS, check

import fastconv as F
from fastconv import reference as ref
from fastconv.cpu.conv import taps as conv_taps
from fastconv.dispatch import implementations
from fastconv.testing.conv_samples import conv_samples, sample
from fastconv.testing.tolerances import assert_close

SAMPLES = [s for s in conv_samples() if not s.transposed and s.args.get("padding_mode", "zeros") == "zeros"]
TAPS_SAMPLES = [s for s in SAMPLES if conv_taps._zeros_dilated(s.spec()) is None]


@pytest.mark.parametrize("in_n, k_n, s, d, pad, out_n", [
    (33, 3, 1, 18, 18, 33), (33, 3, 1, 6, 6, 33), (5, 3, 1, 7, 7, 5), (9, 3, 1, 4, 9, 19), (13, 3, 2, 6, 6, 7),
    (23, 3, 1, 8, 16, 23), (11, 2, 1, 5, 6, 13), (4, 5, 3, 2, 0, 1), (1, 3, 1, 1, 1, 1),
])
@pytest.mark.parametrize("min_band", [1, conv_taps.MIN_BAND, 100])
def test_bands_cover_outputs_and_every_tap_inside_the_input(in_n, k_n, s, d, pad, out_n, min_band):
    bands = conv_taps.tap_bands(in_n, k_n, s, d, pad, out_n, min_band)
    assert [b[0] for b in bands] == [0] + [b[1] for b in bands[:-1]] and bands[-1][1] == out_n
    for o0, o1, k0, k1 in bands:
        for o in range(o0, o1):
            inside = {k for k in range(k_n) if 0 <= o * s + k * d - pad < in_n}
            assert inside <= set(range(k0, k1))
            if min_band == 1:
                assert inside == set(range(k0, k1))


@pytest.mark.parametrize("s", TAPS_SAMPLES, ids=str)
def test_channels_last(s, rng):
    check(s, rng, "taps", channels_last=True)


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_undilated_samples_through_the_kernel(channels_last, rng):
    """supports() limits auto and the sample loop to dilated layers; the kernel itself serves any zeros pad."""
    fn = implementations("conv", "cpu")["taps"].fn
    for s in SAMPLES:
        if conv_taps._zeros_dilated(s.spec()) is None:
            continue
        x, w, b = s.arrays(rng)
        xin = np.ascontiguousarray(np.moveaxis(x, 1, -1)) if channels_last else x
        got = fn(s.spec(channels_last), xin, w, b)
        if channels_last:
            got = np.moveaxis(got, -1, 1)
        assert got.dtype == x.dtype
        expected = ref.conv(x, w, b, stride=s.args.get("stride", 1), padding=s.args.get("padding", 0),
                            dilation=s.args.get("dilation", 1),
                            groups=s.args.get("groups", 1), activation=s.args.get("activation"))
        assert_close(got, expected, "conv", s.dtype, max(1.0, np.sqrt(np.prod(w.shape[1:]))), what=str(s))


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_non_contiguous_read_only_and_untouched(channels_last, rng):
    base = rng.standard_normal((3, 8, 13, 12)).astype(np.float32)
    x = base[::2, ::2, 1:, ::-1]  # strided, offset, negative stride
    if channels_last:
        x = np.moveaxis(x, 1, -1)
    x.setflags(write=False)
    w = np.asfortranarray(rng.standard_normal((5, 4, 3, 3)).astype(np.float32))
    b = rng.standard_normal(5).astype(np.float32)
    before = (x.copy(), w.copy(), b.copy())
    got = F.conv2d(x, w, b, padding=5, dilation=(5, 4), stride=(2, 1), algo="taps", channels_last=channels_last,
                   activation="relu6")
    xc = np.moveaxis(x, -1, 1) if channels_last else x
    expected = ref.conv(xc, w, b, padding=5, dilation=(5, 4), stride=(2, 1), activation="relu6")
    assert_close(np.moveaxis(got, -1, 1) if channels_last else got, expected, "conv", "float32", 6)
    for arr, copy in zip((x, w, b), before):
        np.testing.assert_array_equal(arr, copy)


@pytest.mark.parametrize("limit", [1024, 65536])  # a line per chunk; chunks of several regions
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_workspace_cap_chunks_lines(channels_last, limit, rng):
    s = sample("conv2d", (3, 4, 14, 13), (6, 4, 3, 3), dilation=4, padding=4, dtype="float32")  # 3x3 regions
    x, w, b = s.arrays(rng)
    xin = np.ascontiguousarray(np.moveaxis(x, 1, -1)) if channels_last else x
    expected = OPS["conv2d"](xin, w, b, algo="taps", channels_last=channels_last, **s.args)
    previous = F.set_workspace_limit(limit)
    try:
        got = OPS["conv2d"](xin, w, b, algo="taps", channels_last=channels_last, **s.args)
    finally:
        F.set_workspace_limit(previous)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_zero_batch():
    got = F.conv2d(np.zeros((0, 3, 9, 9), np.float32), np.zeros((4, 3, 3, 3), np.float32), padding=4, dilation=4,
                   algo="taps")
    assert got.shape == (0, 4, 9, 9)


def test_other_padding_modes_are_refused():
    with pytest.raises(ValueError, match="taps"):
        F.conv2d(np.zeros((1, 3, 9, 9)), np.zeros((4, 3, 3, 3)), padding=4, dilation=4, padding_mode="reflect",
                 algo="taps")


@pytest.mark.parametrize("size, kernel, stride, dilation, padding", [
    ((33, 33), (3, 3), 1, 18, 18), ((28, 28), (3, 3), 1, 2, 2), ((13, 9), (3, 5), 2, (3, 1), (4, 2)),
    ((7, 7, 7), (3, 3, 3), 1, 3, 3), ((5, 6), (2, 2), 1, 1, 0),
])
def test_read_share_counts_the_pairs_that_read_the_input(size, kernel, stride, dilation, padding):
    from fastconv.dispatch import read_share
    from fastconv.spec import resolve_conv

    spec = resolve_conv(f"conv{len(size)}d", (1, 2, *size), (2, 2, *kernel), stride=stride, padding=padding,
                        dilation=dilation)
    inside = total = 1
    for n, o, k, st, d, (p0, _) in zip(spec.in_size, spec.out_size, spec.kernel, spec.stride, spec.dilation,
                                       spec.pads):
        inside *= sum(0 <= y * st - p0 + t * d < n for y in range(o) for t in range(k))
        total *= o * k
    assert read_share(spec) == pytest.approx(inside / total)


@pytest.mark.parametrize("layer", ["res.d2", "res.d4", "aspp.d6", "aspp.d12", "aspp.d18", "aspp.d24", "aspp.d30",
                                   "os8.d24", "os8.d36"])
def test_auto_takes_the_direct_kernel_for_zero_padded_dilated_layers(layer):
    """Measured single-threaded (CPU time, both layouts): the direct kernel, skipping the padded
    taps region by region, beat taps or tied on ASPP's rates 6-36 on 33x33 and 65x65 maps
    except rate 24 on 33x33 (4-14% behind); other padding modes: im2col for long spans."""
    from fastconv.dispatch import IM2COL_MIN_SPAN, choose
    from fastconv.spec import resolve_conv

    shapes = {"res": ((1, 256, 28, 28), (256, 256, 3, 3)), "aspp": ((1, 512, 33, 33), (256, 512, 3, 3)),
              "os8": ((1, 256, 65, 65), (256, 256, 3, 3))}
    x, w = shapes[layer.split(".")[0]]
    d = int(layer.split(".d")[1])
    for channels_last in (False, True):
        shape = (x[0], *x[2:], x[1]) if channels_last else x
        spec = resolve_conv("conv2d", shape, w, padding=d, dilation=d, channels_last=channels_last)
        assert choose("conv", "cpu", spec, "auto").algo == "direct"
    reflect = resolve_conv("conv2d", x, w, padding=d, dilation=d, padding_mode="reflect")
    assert choose("conv", "cpu", reflect, "auto").algo == ("im2col" if 2 * d >= IM2COL_MIN_SPAN else "direct")
