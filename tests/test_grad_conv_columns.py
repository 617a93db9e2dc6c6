"""The input gradient as columns folded back (algo "columns", cpu/conv/input_grad_columns.py):
against torch.autograd in float64 and within a rounding bound in float32/float16, both
layouts, bands of output rows and chunks of images, bitwise across thread counts, and the
dispatch rule that gives it to layers of few input channels."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from test_grad_conv import _args, _arrays, _relative, _rounding_bound, _torch_grads

import fastconv
import fastconv.grad as G
from fastconv.cpu.conv import input_grad_columns
from fastconv.testing.conv_samples import sample

COLUMNS = [
    sample("conv2d", (2, 3, 23, 20), (13, 3, 7, 7), stride=2, padding=3),  # a stem, odd sizes
    sample("conv2d", (1, 1, 11, 12), (5, 1, 3, 3), stride=2, padding=1),
    sample("conv2d", (2, 4, 9, 10), (6, 2, 3, 3), groups=2, stride=(2, 1), padding=((1, 0), (2, 1)), dilation=2),
    sample("conv2d", (1, 3, 8, 9), (4, 3, 3, 2), padding="same", dilation=(2, 3)),
    sample("conv2d", (1, 2, 6, 5), (3, 2, 3, 3), padding="full"),
    sample("conv2d", (2, 3, 7, 6), (5, 3, 2, 2), stride=3),  # stride past the window: input pixels no tap reads
    sample("conv2d", (2, 3, 6, 7), (4, 3, 3, 3), padding=1, padding_mode="constant", padding_value=0.5),
    sample("conv1d", (2, 3, 40), (7, 3, 5), stride=2, padding=2),
    sample("conv1d", (1, 2, 17), (4, 2, 3), padding=3, dilation=4),
    sample("conv3d", (2, 3, 5, 6, 7), (5, 3, 3, 3, 3), stride=(2, 1, 2), padding=1),
    sample("conv3d", (1, 2, 4, 5, 5), (3, 2, 2, 3, 1), padding=(1, 0, 2), dilation=(2, 1, 1)),
]


def _input_grad(s, w, g, channels_last=False, algo="columns"):
    fn = getattr(G, f"conv{s.nd}d_input")
    if channels_last:
        size = tuple(np.moveaxis(np.empty(s.input_shape, np.int8), 1, -1).shape)
        got = fn(size, w, np.moveaxis(g, 1, -1), channels_last=True, algo=algo, **_args(s))  # a strided view
        return np.moveaxis(got, -1, 1)
    return fn(s.input_shape, w, g, algo=algo, **_args(s))


@pytest.mark.parametrize("channels_last", [False, True], ids=["first", "last"])
@pytest.mark.parametrize("s", COLUMNS, ids=str)
def test_matches_torch_float64(s, channels_last, rng):
    x, w, g = _arrays(s, rng)
    w0, g0 = w.copy(), g.copy()
    want = _torch_grads(s, x, w, g)[0]
    got = _input_grad(s, w, g, channels_last)
    assert got.dtype == np.float64
    assert _relative(got, want) <= 1e-10
    assert np.array_equal(w, w0) and np.array_equal(g, g0)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("s", COLUMNS[:3] + COLUMNS[-2:], ids=str)
def test_low_precision_within_rounding(s, dtype, rng):
    x, w, g = _arrays(s, rng, np.dtype(dtype))
    spec = sample(s.op, s.input_shape, s.weight_shape, dtype=dtype, **s.args)
    bound = _rounding_bound(spec, x, w, g, np.dtype(dtype))[0]
    want = _torch_grads(s, x, w, g)[0]
    for channels_last in (False, True):
        got = _input_grad(spec, w, g, channels_last)
        assert got.dtype == np.dtype(dtype)
        assert np.all(np.abs(got.astype(np.float64) - want) <= bound + 1e-30)


@pytest.mark.parametrize("s", [COLUMNS[0], COLUMNS[2], COLUMNS[9]], ids=str)
def test_bands_and_image_chunks(s, monkeypatch, rng):
    """Columns cut into bands of one or a few output rows, one image at a time."""
    x, w, g = _arrays(s, rng)
    want = _torch_grads(s, x, w, g)[0]
    for band_bytes in (1, 3 * 8 * s.weight_shape[1] * np.prod(s.weight_shape[2:]) * 4):
        monkeypatch.setattr(input_grad_columns, "BAND_BYTES", int(band_bytes))
        fastconv.clear_caches()
        for channels_last in (False, True):
            assert _relative(_input_grad(s, w, g, channels_last), want) <= 1e-10


def test_bitwise_across_threads(rng):
    s = sample("conv2d", (3, 3, 40, 37), (16, 3, 7, 7), dtype="float32", stride=2, padding=3)
    _, w, g = _arrays(s, rng, np.float32)
    old = numba.get_num_threads()
    try:
        runs = []
        for threads in (1, 2, 2, 1):
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            runs.append([_input_grad(s, w, g, cl).tobytes() for cl in (False, True)])
    finally:
        numba.set_num_threads(old)
    assert all(run == runs[0] for run in runs)


def test_dispatch_gives_it_to_few_input_channels(rng):
    stem = ((1, 3, 32, 32), (8, 3, 7, 7))
    assert "columns" in fastconv.algorithms("conv2d_input", *stem, stride=2, padding=3)
    assert "columns" not in fastconv.algorithms("conv2d_input", *stem, padding=3, padding_mode="reflect")
    assert "columns" not in fastconv.algorithms("conv_transpose2d_input", (1, 3, 8, 8), (3, 4, 3, 3))
    assert "columns" not in fastconv.algorithms("conv2d_input", (1, 3, 8, 8), (4, 3, 1, 1))
    from fastconv.dispatch import choose as chosen
    assert chosen("conv_input_grad", "cpu", sample("conv2d", *stem, stride=2, padding=3).spec()).algo == "columns"
    for many in (sample("conv2d", (1, 8, 16, 16), (8, 8, 3, 3), padding=1),  # more channels
                 sample("conv2d", (1, 4, 16, 16), (8, 2, 3, 3), groups=2, padding=1),  # grouped
                 sample("conv2d", (1, 3, 16, 16), (8, 3, 3, 3), padding=1, padding_mode="reflect")):
        assert chosen("conv_input_grad", "cpu", many.spec()).algo != "columns"
    w, g = rng.standard_normal((8, 3, 3, 3)), rng.standard_normal((1, 8, 16, 16))
    with pytest.raises(ValueError, match="algo='columns' cannot serve.*padding_mode"):
        G.conv2d_input((1, 3, 16, 16), w, g, padding=1, padding_mode="reflect", algo="columns")
