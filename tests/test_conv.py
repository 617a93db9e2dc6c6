"""Convolution and transposed convolution on the CPU, against the NumPy reference and PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch_oracle

import fastconv as F
from fastconv import reference as ref
from fastconv.testing.conv_samples import ConvSample, conv_samples, sample, workload_layers
from fastconv.testing.registry import samples
from fastconv.testing.tolerances import assert_close

OPS = {f"conv{n}d": getattr(F, f"conv{n}d") for n in (1, 2, 3)}
OPS.update({f"conv_transpose{n}d": getattr(F, f"conv_transpose{n}d") for n in (1, 2, 3)})

SAMPLES = conv_samples()
WORKLOAD_SAMPLES = [s for suite in ("resnet50", "mobilenet_v2", "dilated", "transposed", "sequence_1d", "video_3d")
                    for s in workload_layers(suite)]


def reference_result(s: ConvSample, x, w, b):
    a = s.args
    if s.transposed:
        return ref.conv_transpose(x, w, b, stride=a.get("stride", 1), padding=a.get("padding", 0),
                                  output_padding=a.get("output_padding", 0), groups=a.get("groups", 1),
                                  dilation=a.get("dilation", 1), activation=a.get("activation"))
    return ref.conv(x, w, b, stride=a.get("stride", 1), padding=a.get("padding", 0), dilation=a.get("dilation", 1),
                    groups=a.get("groups", 1), padding_mode=a.get("padding_mode", "zeros"),
                    padding_value=a.get("padding_value", 0.0), activation=a.get("activation"))


def torch_result(s: ConvSample, x, w, b):
    spec = s.spec()
    return (torch_oracle.conv_transpose if s.transposed else torch_oracle.conv)(spec, x, w, b)


def algos_for(s: ConvSample):
    family = "conv_transpose" if s.transposed else "conv"
    from fastconv.dispatch import capable

    return capable(family, "cpu", s.spec())


def scale(s: ConvSample) -> float:
    """atol grows with the number of terms in each output sum."""
    w = s.weight_shape
    return max(1.0, np.sqrt(np.prod(w[1:]) * (s.args.get("groups", 1) if s.transposed else 1)))


def check(s: ConvSample, rng, algo="auto", channels_last=False):
    x, w, b = s.arrays(rng)
    expected = reference_result(s, x, w, b)
    xin = np.ascontiguousarray(np.moveaxis(x, 1, -1)) if channels_last else x
    got = OPS[s.op](xin, w, b, algo=algo, channels_last=channels_last, **s.args)
    assert got.dtype == x.dtype
    if channels_last:
        got = np.moveaxis(got, -1, 1)
    assert_close(got, expected, "conv", s.dtype, scale(s), what=f"{s} algo={algo}")
    return x, w, b, expected


CASES = [(s, a) for s in SAMPLES for a in algos_for(s)]


@pytest.mark.parametrize("s, algo", CASES, ids=[f"{s}-{a}" for s, a in CASES])
def test_matches_reference_and_torch(s, algo, rng):
    """Every sample through every algorithm that serves it, against the reference (which
    tests/test_reference.py checks against PyTorch once per sample)."""
    check(s, rng, algo)


@pytest.mark.parametrize("s", WORKLOAD_SAMPLES, ids=[next(t for t in s.tags if ":" in t) for s in WORKLOAD_SAMPLES])
def test_real_layers_scaled_down(s, rng):
    x, w, b, expected = check(s, rng)
    oracle = torch_result(s, x, w, b)
    np.testing.assert_allclose(expected, oracle, rtol=1e-9, atol=1e-9)


LAYOUT_SAMPLES = samples(family="conv", tags={"channels_last"})


@pytest.mark.parametrize("s", LAYOUT_SAMPLES, ids=str)
def test_channels_last(s, rng):
    check(s, rng, channels_last=True)


TRANSPOSED_LAYOUT_CASES = [(s, a) for s in SAMPLES if s.transposed for a in algos_for(s)]


@pytest.mark.parametrize("s, algo", TRANSPOSED_LAYOUT_CASES, ids=[f"{s}-{a}" for s, a in TRANSPOSED_LAYOUT_CASES])
def test_transposed_channels_last(s, algo, rng):
    check(s, rng, algo, channels_last=True)


@pytest.mark.parametrize("channels_last", [False, True])
def test_transposed_phases_one_conv_per_phase(channels_last, monkeypatch, rng):
    """Few-channel layers run their phases as one conv over the union window; check the per-phase path too."""
    from fastconv.cpu.conv.transpose import phases as conv_transpose_phases

    monkeypatch.setattr(conv_transpose_phases, "UNION_CHANNELS", 0)
    conv_transpose_phases.phase_plan.cache_clear()
    try:
        for s in SAMPLES:
            if s.transposed:
                check(s, rng, "phases", channels_last=channels_last)
    finally:
        conv_transpose_phases.phase_plan.cache_clear()


def test_transposed_matches_input_gradient(rng):
    """conv_transpose is the adjoint of conv: torch.nn.grad.conv*_input is an independent oracle."""
    for s in [sample("conv_transpose2d", (2, 6, 5, 4), (6, 2, 3, 3), stride=2, padding=1, groups=3, dilation=2,
                     bias=False),
              sample("conv_transpose1d", (1, 4, 7), (4, 3, 4), stride=3, padding=2, bias=False),
              sample("conv_transpose3d", (1, 2, 3, 3, 4), (2, 2, 2, 3, 2), stride=(1, 2, 2), padding=1, bias=False)]:
        x, w, _ = s.arrays(rng)
        spec = s.spec()
        got = OPS[s.op](x, w, **s.args)
        # conv_input(input_size, weight, grad_output): our input plays grad_output.
        forward_spec = spec.with_(in_channels=spec.out_channels, out_channels=spec.in_channels,
                                  in_size=spec.out_size, out_size=spec.in_size)
        expected = torch_oracle.conv_input_grad(forward_spec, x, w)
        assert_close(got, expected, "conv", s.dtype, scale(s))


def test_output_size_chooses_output_padding(rng):
    x = rng.standard_normal((1, 2, 5, 5))
    w = rng.standard_normal((2, 3, 3, 3))
    got = F.conv_transpose2d(x, w, stride=3, padding=1, output_size=(14, 15))
    assert got.shape == (1, 3, 14, 15)
    expected = ref.conv_transpose(x, w, stride=3, padding=1, output_padding=(1, 2))
    assert_close(got, expected, "conv", "float64")


@pytest.mark.parametrize("algo", ["direct", "im2col"])
def test_non_contiguous_read_only_and_untouched(algo, rng):
    base = rng.standard_normal((3, 8, 11, 10)).astype(np.float32)
    x = base[::2, ::2, 1:, ::-1]  # strided, offset, negative stride
    x.setflags(write=False)
    w = rng.standard_normal((5, 4, 3, 3)).astype(np.float32)
    w_view = np.asfortranarray(w)
    b = rng.standard_normal(5).astype(np.float32)
    before = (x.copy(), w.copy(), b.copy())
    got = F.conv2d(x, w_view, b, padding=1, stride=(2, 1), algo=algo)
    assert_close(got, ref.conv(x, w, b, padding=1, stride=(2, 1)), "conv", "float32", 6)
    for arr, copy in zip((x, w, b), before):
        np.testing.assert_array_equal(arr, copy)


def test_transposed_non_contiguous_input(rng):
    x = rng.standard_normal((2, 6, 5, 7))[:, ::2].transpose(0, 1, 3, 2)
    w = rng.standard_normal((3, 2, 3, 3))
    got = F.conv_transpose2d(x, w, stride=2, padding=1)
    assert_close(got, ref.conv_transpose(x, w, stride=2, padding=1), "conv", "float64")


# Output sizes by hand, kernel 3, padding 1, stride 1: conv (n + 2 - 3) + 1 = n; transposed (n - 1) - 2 + 3 = n.
@pytest.mark.parametrize("op, x_shape, w_shape, expected", [
    ("conv2d", (0, 3, 5, 6), (4, 3, 3, 3), (0, 4, 5, 6)),
    ("conv1d", (0, 2, 9), (4, 2, 3), (0, 4, 9)),
    ("conv_transpose2d", (0, 3, 5, 6), (3, 4, 3, 3), (0, 4, 5, 6)),
])
def test_zero_batch(op, x_shape, w_shape, expected):
    x = np.zeros(x_shape, np.float32)
    w = np.zeros(w_shape, np.float32)
    got = OPS[op](x, w, padding=1)
    assert got.shape == expected and got.dtype == np.float32


def test_unbatched_input(rng):
    x = rng.standard_normal((3, 6, 7))
    w = rng.standard_normal((4, 3, 3, 3))
    got = F.conv2d(x, w, padding=1)
    assert got.shape == (4, 6, 7)
    assert_close(got, ref.conv(x[None], w, padding=1)[0], "conv", "float64")


def test_depthwise_pointwise_separable(rng):
    x = rng.standard_normal((2, 4, 9, 8)).astype(np.float32)
    dw = rng.standard_normal((8, 1, 3, 3)).astype(np.float32)
    pw = rng.standard_normal((5, 8, 1, 1)).astype(np.float32)
    db = rng.standard_normal(8).astype(np.float32)
    pb = rng.standard_normal(5).astype(np.float32)
    assert_close(F.depthwise_conv2d(x, dw, db, stride=2, padding=1),
                 ref.conv(x, dw, db, stride=2, padding=1, groups=4), "conv", "float32", 3)
    assert_close(F.pointwise_conv2d(x, pw[:4, :4], None),
                 ref.conv(x, pw[:4, :4]), "conv", "float32", 3)
    assert_close(F.pointwise_conv2d(x, pw[:4, :4, 0, 0]), ref.conv(x, pw[:4, :4]), "conv", "float32", 3)
    got = F.separable_conv2d(x, dw, pw, pb, padding=1, depthwise_bias=db, activation="relu6")
    expected = ref.separable_conv(x, dw, pw, pb, padding=1, depthwise_bias=db, activation="relu6")
    assert_close(got, expected, "conv", "float32", 6)


def test_float16_result_dtype(rng):
    x = rng.integers(-3, 4, (1, 4, 6, 6)).astype(np.float16)
    w = rng.integers(-2, 3, (2, 4, 3, 3)).astype(np.float16)
    got = F.conv2d(x, w, padding=1)
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got.astype(np.float64), ref.conv(x, w, padding=1))  # small integers: exact


def test_padding_modes_beyond_input_match_numpy_pad(rng):
    """Any pad size works in every mode: checked against np.pad directly, not only the reference."""
    x = rng.standard_normal((1, 1, 3, 4))
    ident = np.ones((1, 1, 1, 1))
    for mode, np_mode in [("reflect", "reflect"), ("circular", "wrap"), ("symmetric", "symmetric"),
                          ("replicate", "edge")]:
        got = F.conv2d(x, ident, padding=((7, 2), (1, 9)), padding_mode=mode)
        expected = np.pad(x, ((0, 0), (0, 0), (7, 2), (1, 9)), mode=np_mode)
        np.testing.assert_array_equal(got, expected, err_msg=mode)


def test_algorithms_lists_what_can_serve():
    assert F.algorithms("conv2d", (1, 32, 56, 56), (32, 1, 3, 3), groups=32, padding=1) == \
        ["direct", "im2col", "depthwise"]
    assert F.algorithms("conv2d", (1, 32, 56, 56), (64, 32, 3, 3), padding=1) == ["direct", "im2col"]
    assert F.algorithms("conv_transpose2d", (1, 8, 5, 5), (8, 4, 3, 3), stride=2) == ["direct", "phases"]
    assert F.algorithms("conv2d", (1, 8, 5, 5), (4, 8, 1, 1), stride=2) == ["direct", "im2col", "gemm"]


def test_workspace_cap_forces_chunking_without_changing_results(rng):
    x = rng.standard_normal((3, 4, 10, 9)).astype(np.float32)
    w = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    expected = F.conv2d(x, w, padding=1, algo="im2col")
    previous = F.set_workspace_limit(4096)  # smaller than one padded image: chunks of rows and images
    try:
        for algo in ("im2col", "direct"):
            np.testing.assert_allclose(F.conv2d(x, w, padding=1, algo=algo), expected, rtol=1e-5, atol=1e-5)
    finally:
        F.set_workspace_limit(previous)


# --- the direct kernel's register tiles (fastconv/cpu/conv/direct/tiled.py) -----------------------------


def _tile_extents(spec):
    """(plan, first row, rows, first column, columns) of every register tile the direct kernel runs."""
    from fastconv.cpu.conv.direct.run import direct_plan

    plan = direct_plan(spec)
    shapes = np.array(plan.shape.shapes)
    row, col, sel, _ = plan.tiles.expand(spec.out_size[-2] if spec.nd > 1 else 1)
    return plan, row, shapes[sel, 0], col, shapes[sel, 1]


def _coverage(rows_n, ow, row, rows, col, cols):
    covered = np.zeros((rows_n, ow), int)
    for r0, r, c0, c in zip(row, rows, col, cols):
        covered[r0:r0 + r, c0:c0 + c] += 1
    return covered


AVX512, AVX2 = (64, 32), (32, 16)  # fastconv.cpu._jit.Simd: vector bytes, vector registers


def _overlapping_width(dtype, out_per_group, in_per_group, taps, registers=None):
    """A row width the direct kernel covers with an overlapping last tile under the tile
    shapes of ``registers`` (the host's by default), or None: with AVX2's tile widths 6, 4,
    3, 2, 1 every row is covered exactly, with AVX-512's 14, 7, 4, 2, 1 a row of 10 is not."""
    from fastconv.cpu.conv.direct.tiled import L1_BYTES, group_tiles, tile_shape

    shape = tile_shape(out_per_group, dtype, registers)
    streams_l2 = in_per_group * taps * shape.v * np.dtype(dtype).itemsize > L1_BYTES
    for ow in range(2, 64):
        tiles = group_tiles(ow, 1, shape.shapes, shape.n_vec, streams_l2)[0]
        ends = [col + shape.shapes[i][1] for _, col, i in tiles]
        if any(end > col for end, (_, col, _) in zip(ends, tiles[1:])):
            return ow
    return None


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("registers", [AVX512, AVX2], ids=["avx512", "avx2"])
def test_direct_tile_plans_of_both_vector_widths(registers, dtype):
    """The direct kernel's tilings of the planes below as an AVX-512 and an AVX2 CPU plan
    them, whatever the host: AVX-512's tiles leave a row width whose last tile overlaps the
    one before, AVX2's none; either way every pixel is covered and no tile leaves the plane."""
    from fastconv.cpu.conv.direct.tiled import L1_BYTES, plane_tiles, tile_shape

    shape = tile_shape(37, dtype, registers)
    overlap = _overlapping_width(dtype, 37, 3, 9, registers)
    assert (overlap is not None) == (registers == AVX512)
    streams_l2 = 3 * 9 * shape.v * np.dtype(dtype).itemsize > L1_BYTES
    for oh, ow in [(1, overlap or 10), (9, 17), (9, 5), (9, 3), (9, 1)]:
        row, col, sel, _ = plane_tiles(1, oh, ow, shape, streams_l2).expand(oh)
        rows, cols = np.array(shape.shapes)[sel].T
        covered = _coverage(oh, ow, row, rows, col, cols)
        assert (col >= 0).all() and (col + cols <= ow).all() and covered.min() >= 1, (oh, ow)
        if oh == 1:
            assert (covered.max() >= 2) == (overlap is not None), ow


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("oh, ow", [(1, "overlap"), (9, 17), (9, 5), (9, 3), (9, 1)])
def test_direct_register_tiles(oh, ow, channels_last, dtype, rng):
    """The host's kernel on rows covered with an overlapping last tile (one output row of a
    width that overlaps on this CPU, else on AVX-512), a mix of multi-row and one-row tiles
    (9 x 17), and planes narrower than its widest tile (5, 3 and 1 columns), with a
    partial block of output channels (37 per group), two groups, bias and relu6;
    against the reference."""
    host_overlap = _overlapping_width(dtype, 37, 3, 9)
    if ow == "overlap":
        ow = host_overlap or _overlapping_width(dtype, 37, 3, 9, AVX512)
    s = sample("conv2d", (2, 6, oh, ow), (74, 3, 3, 3), dtype=dtype, groups=2, padding=1, activation="relu6")
    plan, row, rows, col, cols = _tile_extents(s.spec())
    covered = _coverage(oh, ow, row, rows, col, cols)
    assert (col >= 0).all() and covered.min() >= 1 and covered.shape == (oh, ow)
    widest = max(c for _, c in plan.shape.shapes)
    if oh == 1 and ow == host_overlap:
        assert covered.max() >= 2  # recomputed pixels: the last tile starts inside the one before
    if ow < widest:
        assert (cols <= ow).all()
    check(s, rng, "direct", channels_last)


def test_direct_tiles_cover_every_output_pixel():
    """For every plane up to 40 x 40 the tiles cover each output pixel and stay inside the plane
    (under AVX-512's and AVX2's tile shapes, whatever the host)."""
    from fastconv.cpu.conv.direct.tiled import plane_tiles, tile_shape

    for registers, dtype, k in [(AVX512, "float32", 64), (AVX512, "float32", 5), (AVX512, "float64", 64),
                                (AVX2, "float32", 64), (AVX2, "float64", 5)]:
        shape = tile_shape(k, dtype, registers)
        for oh in (1, 2, 5, 7, 40):
            for ow in range(1, 41):
                for streams_l2 in (False, True):
                    t_row, t_col, t_sel, _ = plane_tiles(2, oh, ow, shape, streams_l2).expand(oh)  # two depths
                    rows, cols = np.array(shape.shapes)[t_sel].T
                    assert (t_row // oh == (t_row + rows - 1) // oh).all()  # no tile spans two depths
                    assert (t_col + cols <= ow).all()
                    assert _coverage(2 * oh, ow, t_row, rows, t_col, cols).min() >= 1, (dtype, oh, ow)


@pytest.mark.parametrize("channels", [5, 9, 16])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_direct_packs_few_rows_in_pieces(channels, channels_last, rng):
    """Fewer rows than PACK_TASKS are packed in pieces (of channels, or of the row when a
    channels-last row is read along C): 1-D and 2-row inputs, strided (two phases) and causal,
    the same on one and two threads, against the reference."""
    import numba

    cases = [sample("conv1d", (1, channels, 301), (6, channels, 3), stride=2, dilation=4, padding=((8, 0),)),
             sample("conv2d", (2, channels, 1, 37), (4, channels, 1, 3), padding=(0, 5), padding_mode="constant",
                    padding_value=0.5)]
    for s in cases:
        x, w, b, _ = check(s, rng, "direct", channels_last)
        xin = np.ascontiguousarray(np.moveaxis(x, 1, -1)) if channels_last else x
        got = []
        for threads in (1, 2):
            previous = numba.get_num_threads()
            numba.set_num_threads(threads)
            try:
                got.append(OPS[s.op](xin, w, b, algo="direct", channels_last=channels_last, **s.args))
            finally:
                numba.set_num_threads(previous)
        np.testing.assert_array_equal(got[0], got[1])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_direct_packing_matches_its_maps(dtype, rng):
    """pack_row_planar against its definition in NumPy: out[n, d, h, c, ph, j] is x at the maps'
    (depth, row, column), the padding value where a map says -1 and zero where it says -2.
    Channels-last rows of whole vectors of channels and a tail (20, 37), rows not a multiple of
    the vector (wq), strides 1 and 2, constant and reflect padding, rows of padding, a few rows
    packed in pieces, and inputs whose pixels or channels are not adjacent (a strided view,
    channels-first) through the scalar paths."""
    from fastconv.cpu.conv.direct.run import direct_plan
    from fastconv.cpu.conv.direct.tiled import pack_row_planar

    cases = [(s_, sample("conv2d", (2, c, h, w), (8, c, kh, 3), dtype=dtype, **args))
             for c in (20, 37) for h, w, kh, args in [
                 (9, 37, 3, dict(padding=1)),
                 (7, 23, 3, dict(stride=2, padding=2, padding_mode="constant", padding_value=0.5)),
                 (5, 19, 3, dict(stride=(1, 2), padding=1, padding_mode="reflect")),
                 (1, 41, 1, dict(padding=(0, 3)))]
             for s_ in ("contiguous", "pixels_apart", "channels_first")]
    for layout, s in cases:
        spec = s.spec()
        plan = direct_plan(spec)
        x, _, _ = s.arrays(rng)
        x5 = np.moveaxis(x, 1, -1)[:, None]  # (N, 1, H, W, C)
        if layout == "contiguous":
            x5 = np.ascontiguousarray(x5)
        elif layout == "pixels_apart":
            x5 = np.repeat(x5, 2, axis=3)[:, :, :, ::2]
        fill = np.dtype(dtype).type(spec.padding_value)
        out = np.full((x.shape[0], *plan.packed_shape), np.nan, dtype)
        pack_row_planar(x5, *plan.maps, fill, out)
        map_d, map_h, map_w = plan.maps
        d, h, w = np.ix_(map_d, map_h, map_w.reshape(-1))
        expected = x5[:, np.maximum(d, 0), np.maximum(h, 0), np.maximum(w, 0)]  # (N, Dp, Hp, SW * WQ, C)
        expected = np.where(((d < 0) | (h < 0) | (w < 0))[None, ..., None], fill, expected)
        expected = np.where((w == -2)[None, ..., None], 0, expected)
        expected = np.moveaxis(expected, -1, 3).reshape(out.shape)
        np.testing.assert_array_equal(out, expected, err_msg=f"{spec} {layout}")


def test_direct_packed_input_buffer_kept_per_thread(rng):
    """The packed input lives in a buffer each Python thread keeps between calls
    (conv/direct/scratch.py): calls of other shapes and dtypes in turn, and calls on two
    threads at once, each get their own results; the kept buffer is not the output."""
    import threading

    from fastconv.cpu.conv.direct import scratch

    cases = [sample("conv2d", (2, 7, 12, 11), (9, 7, 3, 3), padding=1, dtype="float64"),
             sample("conv2d", (1, 3, 5, 6), (4, 3, 3, 3), stride=2, padding=1),
             sample("conv2d", (1, 20, 17, 19), (33, 20, 3, 3), padding=(1, 2))]
    arrays = [s.arrays(rng) for s in cases]
    expected = [reference_result(s, *a) for s, a in zip(cases, arrays)]

    def run(results, order):
        for i in order:
            channels_last = i % 2 == 1
            x, w, b = arrays[i]
            xin = np.ascontiguousarray(np.moveaxis(x, 1, -1)) if channels_last else x
            got = OPS["conv2d"](xin, w, b, algo="direct", channels_last=channels_last, **cases[i].args)
            results.append((i, np.moveaxis(got, -1, 1) if channels_last else got))

    ours = []
    run(ours, [2, 0, 1, 2, 1])
    kept = scratch._LOCAL.buf
    assert not any(np.shares_memory(kept, got) for _, got in ours)
    theirs = [[] for _ in range(2)]
    workers = [threading.Thread(target=run, args=(theirs[k], [0, 1, 2, 0, 2, 1] * 3)) for k in range(2)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    for i, got in ours + theirs[0] + theirs[1]:
        assert_close(got, expected[i], "conv", cases[i].dtype, scale(cases[i]), what=str(cases[i]))


# --- the depthwise kernels (fastconv/cpu/conv/depthwise/) ----------------------------------------------

DEPTHWISE_SAMPLES = [s for s in SAMPLES if not s.transposed and s.spec().is_depthwise]


@pytest.mark.parametrize("s", DEPTHWISE_SAMPLES, ids=str)
def test_depthwise_channels_last(s, rng):
    """Every depthwise sample through the channels-last kernel (the channels-first one runs
    in test_matches_reference_and_torch)."""
    check(s, rng, "depthwise", channels_last=True)


@pytest.mark.parametrize("s", DEPTHWISE_SAMPLES, ids=str)
def test_depthwise_channels_first_row_path(s, rng, monkeypatch):
    """Every depthwise sample through the channels-first row kernel (flat runs of rows, clipped top
    and bottom rows, border columns), which small planes otherwise skip for the scratch-plane path."""
    import fastconv.cpu.conv.depthwise.run as cd

    monkeypatch.setattr(cd, "SMALL_PLANE_COLUMNS", 0)
    cd.depthwise_plan.cache_clear()
    try:
        check(s, rng, "depthwise")
    finally:
        cd.depthwise_plan.cache_clear()


SMALL_PLANE_STRIDED = [
    sample("conv2d", (1, 5, 13, 11), (5, 1, 3, 3), groups=5, stride=2, dilation=2, padding=(3, 1)),
    sample("conv2d", (2, 3, 12, 14), (6, 1, 3, 3), groups=3, stride=2, padding=1, activation="relu6"),
    sample("conv2d", (1, 4, 11, 10), (4, 1, 2, 4), groups=4, stride=3, padding=((2, 0), (1, 2)), dtype="float32"),
]


@pytest.mark.parametrize("s", SMALL_PLANE_STRIDED, ids=str)
def test_depthwise_channels_first_small_plane_strided(s, rng, monkeypatch):
    """Strided small planes in phase planes (stride x stride of them, each tap one fixed offset):
    odd and even padding, dilation, a multiplier, a window wider than high."""
    import fastconv.cpu.conv.depthwise.run as cd

    monkeypatch.setattr(cd, "SMALL_PLANE_COLUMNS", 1000)
    cd.depthwise_plan.cache_clear()
    try:
        assert cd.depthwise_plan(s.spec()).small[0]
        check(s, rng, "depthwise")
    finally:
        cd.depthwise_plan.cache_clear()


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_depthwise_non_contiguous_read_only_inputs(channels_last, rng):
    base = rng.standard_normal((3, 11, 10, 12)).astype(np.float32)
    x = base[::2, 1:, ::-1, 1:] if channels_last else base[::2, ::2, 1:, ::-1]  # (2, 10, 9, 11) / (2, 6, 9, 12)
    x.setflags(write=False)
    c = x.shape[-1] if channels_last else x.shape[1]
    w = rng.standard_normal((2 * c, 1, 3, 3)).astype(np.float32)
    b = rng.standard_normal(2 * c).astype(np.float32)
    w.setflags(write=False)
    b.setflags(write=False)
    before = (x.copy(), w.copy(), b.copy())
    got = F.conv2d(x, w, b, padding=1, stride=(1, 2), groups=c, algo="depthwise", channels_last=channels_last,
                   activation="relu")
    xc = np.moveaxis(x, -1, 1) if channels_last else x
    expected = ref.conv(xc, w, b, padding=1, stride=(1, 2), groups=c, activation="relu")
    assert_close(np.moveaxis(got, -1, 1) if channels_last else got, expected, "conv", "float32", 3)
    for arr, copy in zip((x, w, b), before):
        np.testing.assert_array_equal(arr, copy)


def _guarded(shape, dtype):
    """A C-contiguous writeable array whose last element ends a page followed by an unreadable page
    (a read or write past the end crashes); None where mprotect is not available."""
    import ctypes
    import ctypes.util
    import mmap

    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    page = mmap.PAGESIZE
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    pages = -(-nbytes // page)
    buf = mmap.mmap(-1, (pages + 1) * page)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    if libc.mprotect(ctypes.c_void_p(addr + pages * page), ctypes.c_size_t(page), 0) != 0:  # PROT_NONE
        return None, buf
    start = pages * page - nbytes
    return np.frombuffer(buf, dtype, count=int(np.prod(shape)), offset=start).reshape(shape), buf


@pytest.mark.parametrize("dtype, c", [("float32", 37), ("float32", 48), ("float64", 13)])
def test_depthwise_channels_last_input_ends_at_last_channel(dtype, c, rng):
    """The vector tile's last loads (the bottom-right pixel's last channels, masked when C is not a
    multiple of the vector) end exactly at the input's last element, which ends a readable page."""
    x, buf = _guarded((1, 6, 11, c), dtype)
    if x is None:
        pytest.skip("mprotect not available")
    x[...] = rng.standard_normal(x.shape)
    w = rng.standard_normal((c, 1, 3, 3)).astype(dtype)
    b = rng.standard_normal(c).astype(dtype)
    got = F.conv2d(x, w, b, groups=c, algo="depthwise", channels_last=True)  # no padding: all pixels interior
    expected = ref.conv(np.moveaxis(x, -1, 1), w, b, groups=c)
    assert_close(np.moveaxis(got, -1, 1), expected, "conv", dtype, 3)
    del x
    buf.close()


@pytest.mark.parametrize("mode", ["zeros", "reflect"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_depthwise_chunks_within_workspace(mode, channels_last, rng):
    """float16 input (copied to float32) and padded copies come in chunks of images under a small cap."""
    x = rng.integers(-3, 4, (5, 4, 6, 7)).astype(np.float16)
    w = rng.integers(-2, 3, (4, 1, 3, 3)).astype(np.float16)
    expected = ref.conv(x, w, padding=1, groups=4, padding_mode=mode)
    xin = np.ascontiguousarray(np.moveaxis(x, 1, -1)) if channels_last else x
    previous = F.set_workspace_limit(1024)  # under two images
    try:
        got = F.conv2d(xin, w, padding=1, groups=4, padding_mode=mode, algo="depthwise", channels_last=channels_last)
    finally:
        F.set_workspace_limit(previous)
    assert got.dtype == np.float16
    np.testing.assert_array_equal((np.moveaxis(got, -1, 1) if channels_last else got).astype(np.float64), expected)
