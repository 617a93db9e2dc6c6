"""Bad arguments raise ValueError/TypeError whose message names the argument."""

from __future__ import annotations

import numpy as np
import pytest

import fastconv as F

X = np.zeros((1, 4, 6, 6), np.float32)
W = np.zeros((2, 4, 3, 3), np.float32)
WT = np.zeros((4, 2, 3, 3), np.float32)

CASES = [
    ("wrong ndim", lambda: F.conv2d(np.zeros((4, 6), np.float32), W), ValueError, r"conv2d: input must have 4 dims"),
    ("weight ndim", lambda: F.conv2d(X, W[0]), ValueError, r"conv2d: weight must have 4 dims"),
    ("channel mismatch", lambda: F.conv2d(X, np.zeros((2, 3, 3, 3), np.float32)), ValueError,
     r"input has 4 channels but weight expects 3 \(weight.shape\[1\]=3 \* groups=1\)"),
    ("groups mismatch", lambda: F.conv2d(X, np.zeros((2, 2, 3, 3), np.float32), groups=3), ValueError,
     r"input channels 4 are not divisible by groups=3"),
    ("out channels vs groups", lambda: F.conv2d(X, np.zeros((3, 2, 3, 3), np.float32), groups=2), ValueError,
     r"weight.shape\[0\]=3 output channels are not divisible by groups=2"),
    ("bias length", lambda: F.conv2d(X, W, np.zeros(3, np.float32)), ValueError, r"bias must have shape \(2,\)"),
    ("zero stride", lambda: F.conv2d(X, W, stride=0), ValueError, r"stride=0 must be >= 1"),
    ("negative dilation", lambda: F.conv2d(X, W, dilation=(1, -1)), ValueError, r"dilation=\(1, -1\) must be >= 1"),
    ("stride type", lambda: F.conv2d(X, W, stride=1.5), TypeError, r"stride must be an int"),
    ("stride length", lambda: F.conv2d(X, W, stride=(1, 2, 3)), ValueError, r"stride=\(1, 2, 3\) must be an int"),
    ("negative padding", lambda: F.conv2d(X, W, padding=-1), ValueError, r"padding=-1 must not be negative"),
    ("padding word", lambda: F.conv2d(X, W, padding="half"), ValueError, r"padding='half' is not a padding word"),
    ("padding pairs", lambda: F.conv2d(X, W, padding=((1, 2, 3), 1)), ValueError, r"must be an int or a \(begin, end\)"),
    ("kernel too large", lambda: F.conv2d(X, np.zeros((2, 4, 9, 3), np.float32)), ValueError,
     r"kernel extent 9 .* larger than the padded input 6"),
    ("dilated kernel too large", lambda: F.conv2d(X, W, dilation=4), ValueError, r"kernel extent 9 \(kernel 3, dilation 4\)"),
    ("padding mode", lambda: F.conv2d(X, W, padding_mode="mirror"), ValueError, r"padding_mode='mirror' is not supported"),
    ("algo unknown", lambda: F.conv2d(X, W, algo="winograd"), ValueError,
     r"unknown algo='winograd' on cpu; the ones that can serve this call: direct, im2col"),
    ("algo cannot serve", lambda: F.conv2d(X, W, algo="depthwise"), ValueError,
     r"algo='depthwise' cannot serve this call \(groups must equal input channels.*\); the ones that can: direct"),
    ("algo transposed", lambda: F.conv_transpose2d(X, WT, algo="im2col"), ValueError, r"the ones that can serve this call: direct"),
    ("activation", lambda: F.conv2d(X, W, activation="gelu"), ValueError, r"activation='gelu' is not supported"),
    ("mixed dtypes", lambda: F.conv2d(X, W.astype(np.float64)), TypeError,
     r"weight has dtype float64 but input has dtype float32"),
    ("bias dtype", lambda: F.conv2d(X, W, np.zeros(2, np.float16)), TypeError, r"bias has dtype float16"),
    ("integer dtype", lambda: F.conv2d(X.astype(np.int32), W.astype(np.int32)), TypeError,
     r"input has dtype int32; expected float16, float32 or float64"),
    ("not an array", lambda: F.conv2d(X.tolist(), W), TypeError, r"input must be a numpy.ndarray"),
    ("device", lambda: F.conv2d(X, W, device="tpu"), ValueError, r"device='tpu' is not supported"),
    ("output_padding too large", lambda: F.conv_transpose2d(X, WT, stride=2, output_padding=2), ValueError,
     r"output_padding=2 in spatial dim 0 must be smaller than stride \(2\) or dilation \(1\)"),
    ("transposed channels", lambda: F.conv_transpose2d(X, np.zeros((3, 2, 3, 3), np.float32)), ValueError,
     r"input has 4 channels but weight expects 3 \(weight.shape\[0\]\)"),
    ("output_size unreachable", lambda: F.conv_transpose2d(X, WT, stride=2, output_size=(20, 20)), ValueError,
     r"output_size \(20, 20\) is not reachable in spatial dim 0"),
    ("output_size with same", lambda: F.conv_transpose2d(X, WT, stride=2, padding="same", output_size=(12, 12)),
     ValueError, r"give output_size or padding='same', not both"),
    ("crop everything", lambda: F.conv_transpose2d(X, WT, padding=9), ValueError, r"crops the whole output"),
    ("depthwise weight", lambda: F.depthwise_conv2d(X, np.zeros((4, 2, 3, 3), np.float32)), ValueError,
     r"depthwise_conv2d: weight must have shape \(C\*M, 1, kh, kw\) with C=4"),
    ("pointwise weight", lambda: F.pointwise_conv2d(X, W), ValueError, r"pointwise_conv2d: weight must have shape"),
    ("groups type", lambda: F.conv2d(X, W, groups=1.0), TypeError, r"groups must be an int"),
]


@pytest.mark.parametrize("name, call, error, pattern", CASES, ids=[c[0] for c in CASES])
def test_error_inputs(name, call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()


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
