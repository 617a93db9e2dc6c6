"""Bad arguments raise ValueError/TypeError whose message names the argument."""

from __future__ import annotations

import numpy as np
import pytest

import fastconv as F
from fastconv.testing.registry import error_inputs

X = np.zeros((1, 4, 6, 6), np.float32)
W = np.zeros((2, 4, 3, 3), np.float32)
WT = np.zeros((4, 2, 3, 3), np.float32)

ERRORS = error_inputs(family="conv")


@pytest.mark.parametrize("e", ERRORS, ids=str)
def test_error_inputs(e):
    with pytest.raises(e.error, match=e.match):
        e.call(F)


def test_conv1d_and_3d_name_their_op():
    with pytest.raises(ValueError, match=r"conv1d: input must have 3 dims"):
        F.conv1d(X, W)
    with pytest.raises(ValueError, match=r"conv3d: input must have 5 dims"):
        F.conv3d(np.zeros((1, 2, 3), np.float32), np.zeros((1, 2, 1, 1, 1), np.float32))


def test_spec_cache_does_not_hide_errors_behind_equal_values():
    """Repeated calls reuse their resolved spec; values equal to a cached call's but of
    another type (1.0, True) still get the error an uncached call gives."""
    assert F.conv2d(X, W, stride=1, groups=1).shape == (1, 2, 4, 4)
    for _ in range(2):
        with pytest.raises(TypeError, match="groups must be an int"):
            F.conv2d(X, W, stride=1, groups=1.0)
        with pytest.raises(TypeError, match="stride"):
            F.conv2d(X, W, stride=True, groups=1)
        with pytest.raises(TypeError, match="channels_last"):
            F.conv2d(X, W, channels_last="yes")
    assert F.conv2d(X, W, stride=[2, 2]).shape == F.conv2d(X, W, stride=(2, 2)).shape == (1, 2, 2, 2)
    assert F.conv_transpose2d(X, WT, stride=2).shape == (1, 2, 13, 13)
    with pytest.raises(TypeError, match="output_padding"):
        F.conv_transpose2d(X, WT, stride=2, output_padding=1.0)


def test_repeated_calls_check_what_the_first_call_did_not_see():
    """A NumPy call seen before skips its checks and dispatch (ops/conv._host_key); a call
    that differs in any array's kind, dtype or shape, or in device or algo, is checked
    again, and a repeated unbatched call gives the unbatched result each time."""
    assert F.conv2d(X, W).shape == (1, 2, 4, 4)
    for _ in range(2):
        with pytest.raises(TypeError, match="bias has dtype float64"):
            F.conv2d(X, W, np.zeros(2, np.float64))
        with pytest.raises(TypeError, match="weight has dtype float64"):
            F.conv2d(X, W.astype(np.float64))
        with pytest.raises(TypeError, match="weight must be a numpy.ndarray"):
            F.conv2d(X, W.tolist())
        with pytest.raises(ValueError, match="device"):
            F.conv2d(X, W, device="tpu")
        with pytest.raises(ValueError, match="algo"):
            F.conv2d(X, W, algo="nope")
        with pytest.raises(ValueError, match="bias"):
            F.conv2d(X, W, np.zeros(3, np.float32))
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((4, 6, 6)).astype(np.float32), rng.standard_normal((2, 4, 3, 3)).astype(np.float32)
    first = F.conv2d(x, w, padding=1)
    again = F.conv2d(x, w, padding=1)
    assert first.shape == again.shape == (2, 6, 6)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_allclose(again, F.conv2d(x[None], w, padding=1)[0], rtol=1e-6)
    np.testing.assert_array_equal(F.conv2d(x[:, ::2], w, padding=1), F.conv2d(x[:, ::2].copy(), w, padding=1))
