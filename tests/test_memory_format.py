"""Channels-first arrays stored channels-last (a torch.channels_last tensor's ``.numpy()``)
run the channels-last kernels and come back channels-last in memory, as PyTorch returns
them (fastconv/ops/_memory_format.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fastconv as F
from fastconv import reference as ref
from fastconv.ops import _memory_format

rng = np.random.default_rng(11)


def _stored_channels_last(*shape, dtype=np.float32):
    """An (N, C, *spatial) array whose memory is (N, *spatial, C)."""
    n, c, *spatial = shape
    a = rng.standard_normal((n, *spatial, c)).astype(dtype)
    return a.transpose(_memory_format.TO_CHANNELS_FIRST[a.ndim])


def _is_stored_channels_last(a):
    return a.transpose(_memory_format.TO_CHANNELS_LAST[a.ndim]).flags.c_contiguous


CONV_CASES = [
    ("3x3", (2, 8, 9, 10), (16, 8, 3, 3), dict(padding=1)),
    ("3x3 stride 2 dilation 2", (1, 6, 13, 11), (5, 6, 3, 3), dict(stride=2, padding=2, dilation=2)),
    ("depthwise", (2, 12, 10, 10), (12, 1, 3, 3), dict(padding=1, groups=12)),
    ("1x1", (2, 16, 7, 9), (24, 16, 1, 1), dict()),
    ("grouped reflect", (1, 8, 8, 8), (8, 2, 3, 3), dict(padding=1, groups=4, padding_mode="reflect")),
    ("3-D", (1, 4, 5, 6, 7), (6, 4, 3, 3, 3), dict(padding=1)),
]


@pytest.mark.parametrize("name, x_shape, w_shape, kw", CONV_CASES, ids=[c[0] for c in CONV_CASES])
def test_conv_on_channels_last_storage(name, x_shape, w_shape, kw):
    x = _stored_channels_last(*x_shape)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    before = x.copy()
    conv = F.conv2d if len(x_shape) == 4 else F.conv3d
    y = conv(x, w, b, **kw)
    np.testing.assert_array_equal(x, before)
    np.testing.assert_allclose(y, ref.conv(np.ascontiguousarray(x), w, b, **kw), rtol=1e-4, atol=1e-4)
    assert _is_stored_channels_last(y) and not y.flags.c_contiguous
    cl = conv(x.transpose(_memory_format.TO_CHANNELS_LAST[x.ndim]), w, b, channels_last=True, **kw)
    np.testing.assert_array_equal(y, cl.transpose(_memory_format.TO_CHANNELS_FIRST[cl.ndim]))


def test_conv_matches_torch_memory_format():
    x = _stored_channels_last(2, 8, 9, 9)
    w = rng.standard_normal((4, 8, 3, 3)).astype(np.float32)
    y = F.conv2d(x, w, padding=1)
    xt = torch.from_numpy(x)
    assert xt.is_contiguous(memory_format=torch.channels_last)
    yt = torch.nn.functional.conv2d(xt, torch.from_numpy(w), padding=1)
    assert yt.is_contiguous(memory_format=torch.channels_last)
    assert torch.from_numpy(y).is_contiguous(memory_format=torch.channels_last)
    np.testing.assert_allclose(y, yt.numpy(), rtol=1e-4, atol=1e-4)


def test_conv_transpose_on_channels_last_storage():
    x = _stored_channels_last(1, 6, 5, 7)
    w = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    y = F.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1)
    want = torch.nn.functional.conv_transpose2d(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(w),
                                                stride=2, padding=1, output_padding=1).numpy()
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4)
    assert _is_stored_channels_last(y)


@pytest.mark.parametrize("nd", [2, 3])
def test_max_pool_indices_on_channels_last_storage(nd):
    x = _stored_channels_last(2, 5, *(7,) * nd)
    pool = F.max_pool2d if nd == 2 else F.max_pool3d
    y, idx = pool(x, 3, 2, 1, return_indices=True)
    tpool = torch.nn.functional.max_pool2d if nd == 2 else torch.nn.functional.max_pool3d
    yt, it = tpool(torch.from_numpy(x), 3, 2, 1, return_indices=True)
    np.testing.assert_array_equal(y, yt.numpy())
    np.testing.assert_array_equal(idx, it.numpy())
    assert _is_stored_channels_last(y) and _is_stored_channels_last(idx)


def test_avg_pool_on_channels_last_storage():
    x = _stored_channels_last(2, 6, 9, 8, dtype=np.float64)
    y = F.avg_pool2d(x, 3, 2, 1, count_include_pad=False)
    want = torch.nn.functional.avg_pool2d(torch.from_numpy(x), 3, 2, 1, count_include_pad=False).numpy()
    np.testing.assert_allclose(y, want, rtol=1e-12)
    assert _is_stored_channels_last(y)


@pytest.mark.parametrize("mode", ["avg", "max"])
def test_adaptive_pool_on_channels_last_storage(mode):
    x = _stored_channels_last(2, 7, 9, 11)
    if mode == "avg":
        y = F.adaptive_avg_pool2d(x, (4, 3))
        want = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(x), (4, 3)).numpy()
        np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)
    else:
        y, idx = F.adaptive_max_pool2d(x, (4, 3), return_indices=True)
        yt, it = torch.nn.functional.adaptive_max_pool2d(torch.from_numpy(x), (4, 3), return_indices=True)
        np.testing.assert_array_equal(y, yt.numpy())
        np.testing.assert_array_equal(idx, it.numpy())
    assert _is_stored_channels_last(y)


def test_other_storage_unchanged():
    """Contiguous, other strided and unbatched arrays keep the channels-first kernels and a
    C-contiguous result."""
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    for x in (rng.standard_normal((1, 3, 8, 8)).astype(np.float32),
              rng.standard_normal((1, 3, 16, 8)).astype(np.float32)[:, :, ::2],
              rng.standard_normal((1, 8, 8, 3)).astype(np.float32).transpose(0, 3, 2, 1)):
        assert _memory_format.stored_channels_last(x, 2) is None
        y = F.conv2d(x, w, padding=1)
        assert y.flags.c_contiguous
        np.testing.assert_allclose(y, ref.conv(np.ascontiguousarray(x), w, padding=1), rtol=1e-4, atol=1e-4)
    unbatched = rng.standard_normal((8, 8, 3)).astype(np.float32).transpose(2, 0, 1)
    assert _memory_format.stored_channels_last(unbatched, 2) is None
    assert F.conv2d(unbatched, w, padding=1).flags.c_contiguous
