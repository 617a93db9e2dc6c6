"""The direct kernel reading channels-last input in place (conv/direct/in_place.py, its tile
vector/channels_last_tile.py): which layers take it, and its sums (taps outer, channels inner)
against the reference and PyTorch, padded copy or not, every tile shape, any thread count.
Two geometries compile here (16 input channels, stride 1, then 2)."""

from __future__ import annotations

import numba
import numpy as np
import pytest

import fastconv as F
from fastconv import reference as ref
from fastconv.testing.tolerances import assert_close


def _last(a):
    return np.ascontiguousarray(np.moveaxis(a, 1, -1))


def _plan(x_shape, w_shape, channels_last=True, dtype="float32", **kwargs):
    from fastconv.cpu.conv.direct.run import direct_plan
    from fastconv.spec.conv import resolve_conv

    if channels_last:
        x_shape = (x_shape[0], *x_shape[2:], x_shape[1])
    spec = resolve_conv("conv2d" if len(x_shape) == 4 else "conv3d", x_shape, w_shape, dtype=dtype,
                        channels_last=channels_last, **kwargs)
    return direct_plan(spec).in_place


def test_which_layers_read_in_place():
    assert _plan((1, 16, 8, 8), (20, 16, 3, 3), padding=1) is not None
    assert _plan((1, 16, 8, 8), (20, 16, 3, 3), dtype="float16", stride=2) is not None
    assert _plan((1, 16, 8, 8), (20, 16, 3, 3), dilation=2) is None
    assert _plan((1, 16, 8, 8), (20, 16, 3, 3), channels_last=False, padding=1) is None
    assert _plan((1, 12, 8, 8), (20, 12, 3, 3), padding=1) is None  # channels not whole vectors
    assert _plan((1, 32, 8, 8), (20, 16, 3, 3), groups=2, padding=1) is None
    assert _plan((1, 16, 8, 8), (20, 16, 5, 5), padding=2) is None
    assert _plan((1, 16, 8, 8), (20, 16, 3, 3), dtype="float64") is None
    assert _plan((1, 16, 4, 8, 8), (20, 16, 1, 3, 3)) is None


CASES = [
    # rows of 19 (overlapping 14- and 7-pixel tiles), bias and relu, zeros padding
    ((2, 16, 9, 19), (20, 16, 3, 3), dict(padding=1, activation="relu")),
    # a plane of 3 x 5: multi-row tiles; no padding: the input read as it is
    ((1, 16, 5, 7), (20, 16, 3, 3), {}),
    # stride 2, reflect padding, a 2 x 3 kernel, 40 channels: a full block and a partial one
    ((2, 16, 13, 17), (40, 16, 2, 3), dict(stride=2, padding=(1, 2), padding_mode="reflect")),
]


@pytest.mark.parametrize("x_shape, w_shape, kwargs", CASES, ids=str)
def test_in_place_matches_reference_and_torch(x_shape, w_shape, kwargs, rng):
    torch = pytest.importorskip("torch")
    assert _plan(x_shape, w_shape, **kwargs) is not None
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    got = F.conv2d(_last(x), w, b, algo="direct", channels_last=True, **kwargs)
    want = np.moveaxis(ref.conv(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), **kwargs), 1, -1)
    reach = np.sqrt(np.prod(w_shape[1:]))
    assert_close(got, want, "conv", "float32", reach, what=str(kwargs))
    mode = kwargs.get("padding_mode", "zeros")
    if mode == "zeros" and kwargs.get("activation") is None:
        t = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b),
                                       stride=kwargs.get("stride", 1), padding=kwargs.get("padding", 0),
                                       dilation=kwargs.get("dilation", 1))
        assert_close(got, np.moveaxis(t.numpy(), 1, -1), "conv", "float32", reach, what="torch")
    # a strided view of the input (copied) and the contiguous one agree bitwise
    wide = np.zeros((*x_shape[:3], 2 * x_shape[3]), np.float32)
    wide[..., ::2] = x
    view = np.moveaxis(wide, 1, -1)[:, :, ::2]
    assert np.array_equal(F.conv2d(view, w, b, algo="direct", channels_last=True, **kwargs), got)


def test_in_place_bitwise_across_threads_and_images(rng):
    x = rng.standard_normal((3, 9, 19, 16)).astype(np.float32)
    w = rng.standard_normal((20, 16, 3, 3)).astype(np.float32)
    previous = numba.get_num_threads()
    try:
        results = []
        for threads in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            numba.set_num_threads(threads)
            results.append(F.conv2d(x, w, padding=1, algo="direct", channels_last=True))
    finally:
        numba.set_num_threads(previous)
    assert all(np.array_equal(r, results[0]) for r in results)
    one = F.conv2d(x[1:2], w, padding=1, algo="direct", channels_last=True)
    assert np.array_equal(one, results[0][1:2])
