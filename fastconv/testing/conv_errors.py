"""Convolution calls that must fail, each with its exception and a pattern of its message
(the registry's ``error_inputs`` of the conv ops; fastconv.testing.conv_samples registers
them). A test runs ``e.call(fastconv)`` under ``pytest.raises(e.error, match=e.match)``.
"""

from __future__ import annotations

import numpy as np

from .registry import error_input

X = np.zeros((1, 4, 6, 6), np.float32)
W = np.zeros((2, 4, 3, 3), np.float32)
WT = np.zeros((4, 2, 3, 3), np.float32)


ERRORS = [
    error_input(
        "conv2d",
        "wrong ndim",
        lambda F: F.conv2d(np.zeros((4, 6), np.float32), W),
        ValueError,
        r"conv2d: input must have 4 dims",
    ),
    error_input("conv2d", "weight ndim", lambda F: F.conv2d(X, W[0]), ValueError, r"conv2d: weight must have 4 dims"),
    error_input(
        "conv2d",
        "channel mismatch",
        lambda F: F.conv2d(X, np.zeros((2, 3, 3, 3), np.float32)),
        ValueError,
        r"input has 4 channels but weight expects 3 \(weight.shape\[1\]=3 \* groups=1\)",
    ),
    error_input(
        "conv2d",
        "groups mismatch",
        lambda F: F.conv2d(X, np.zeros((2, 2, 3, 3), np.float32), groups=3),
        ValueError,
        r"input channels 4 are not divisible by groups=3",
    ),
    error_input(
        "conv2d",
        "out channels vs groups",
        lambda F: F.conv2d(X, np.zeros((3, 2, 3, 3), np.float32), groups=2),
        ValueError,
        r"weight.shape\[0\]=3 output channels are not divisible by groups=2",
    ),
    error_input(
        "conv2d",
        "bias length",
        lambda F: F.conv2d(X, W, np.zeros(3, np.float32)),
        ValueError,
        r"bias must have shape \(2,\)",
    ),
    error_input("conv2d", "zero stride", lambda F: F.conv2d(X, W, stride=0), ValueError, r"stride=0 must be >= 1"),
    error_input(
        "conv2d",
        "negative dilation",
        lambda F: F.conv2d(X, W, dilation=(1, -1)),
        ValueError,
        r"dilation=\(1, -1\) must be >= 1",
    ),
    error_input("conv2d", "stride type", lambda F: F.conv2d(X, W, stride=1.5), TypeError, r"stride must be an int"),
    error_input(
        "conv2d",
        "stride length",
        lambda F: F.conv2d(X, W, stride=(1, 2, 3)),
        ValueError,
        r"stride=\(1, 2, 3\) must be an int",
    ),
    error_input(
        "conv2d",
        "negative padding",
        lambda F: F.conv2d(X, W, padding=-1),
        ValueError,
        r"padding=-1 must not be negative",
    ),
    error_input(
        "conv2d",
        "padding word",
        lambda F: F.conv2d(X, W, padding="half"),
        ValueError,
        r"padding='half' is not a padding word",
    ),
    error_input(
        "conv2d",
        "padding pairs",
        lambda F: F.conv2d(X, W, padding=((1, 2, 3), 1)),
        ValueError,
        r"must be an int or a \(begin, end\)",
    ),
    error_input(
        "conv2d",
        "kernel too large",
        lambda F: F.conv2d(X, np.zeros((2, 4, 9, 3), np.float32)),
        ValueError,
        r"kernel extent 9 .* larger than the padded input 6",
    ),
    error_input(
        "conv2d",
        "dilated kernel too large",
        lambda F: F.conv2d(X, W, dilation=4),
        ValueError,
        r"kernel extent 9 \(kernel 3, dilation 4\)",
    ),
    error_input(
        "conv2d",
        "padding mode",
        lambda F: F.conv2d(X, W, padding_mode="mirror"),
        ValueError,
        r"padding_mode='mirror' is not supported",
    ),
    error_input(
        "conv2d",
        "algo unknown",
        lambda F: F.conv2d(X, W, algo="winograd"),
        ValueError,
        r"unknown algo='winograd' on cpu; the ones that can serve this call: direct, im2col",
    ),
    error_input(
        "conv2d",
        "algo cannot serve",
        lambda F: F.conv2d(X, W, algo="depthwise"),
        ValueError,
        r"algo='depthwise' cannot serve this call \(groups must equal input channels.*\); the ones that can: direct",
    ),
    error_input(
        "conv_transpose2d",
        "algo transposed",
        lambda F: F.conv_transpose2d(X, WT, algo="im2col"),
        ValueError,
        r"the ones that can serve this call: direct",
    ),
    error_input(
        "conv2d",
        "activation",
        lambda F: F.conv2d(X, W, activation="gelu"),
        ValueError,
        r"activation='gelu' is not supported",
    ),
    error_input(
        "conv2d",
        "mixed dtypes",
        lambda F: F.conv2d(X, W.astype(np.float64)),
        TypeError,
        r"weight has dtype float64 but input has dtype float32",
    ),
    error_input(
        "conv2d", "bias dtype", lambda F: F.conv2d(X, W, np.zeros(2, np.float16)), TypeError, r"bias has dtype float16"
    ),
    error_input(
        "conv2d",
        "integer dtype",
        lambda F: F.conv2d(X.astype(np.int32), W.astype(np.int32)),
        TypeError,
        r"input has dtype int32; expected float16, float32 or float64",
    ),
    error_input(
        "conv2d", "not an array", lambda F: F.conv2d(X.tolist(), W), TypeError, r"input must be a numpy.ndarray"
    ),
    error_input(
        "conv2d", "device", lambda F: F.conv2d(X, W, device="tpu"), ValueError, r"device='tpu' is not supported"
    ),
    error_input(
        "conv_transpose2d",
        "output_padding too large",
        lambda F: F.conv_transpose2d(X, WT, stride=2, output_padding=2),
        ValueError,
        r"output_padding=2 in spatial dim 0 must be smaller than stride \(2\) or dilation \(1\)",
    ),
    error_input(
        "conv_transpose2d",
        "transposed channels",
        lambda F: F.conv_transpose2d(X, np.zeros((3, 2, 3, 3), np.float32)),
        ValueError,
        r"input has 4 channels but weight expects 3 \(weight.shape\[0\]\)",
    ),
    error_input(
        "conv_transpose2d",
        "output_size unreachable",
        lambda F: F.conv_transpose2d(X, WT, stride=2, output_size=(20, 20)),
        ValueError,
        r"output_size \(20, 20\) is not reachable in spatial dim 0",
    ),
    error_input(
        "conv_transpose2d",
        "output_size with same",
        lambda F: F.conv_transpose2d(X, WT, stride=2, padding="same", output_size=(12, 12)),
        ValueError,
        r"give output_size or padding='same', not both",
    ),
    error_input(
        "conv_transpose2d",
        "crop everything",
        lambda F: F.conv_transpose2d(X, WT, padding=9),
        ValueError,
        r"crops the whole output",
    ),
    error_input(
        "depthwise_conv2d",
        "depthwise weight",
        lambda F: F.depthwise_conv2d(X, np.zeros((4, 2, 3, 3), np.float32)),
        ValueError,
        r"depthwise_conv2d: weight must have shape \(C\*M, 1, kh, kw\) with C=4",
    ),
    error_input(
        "pointwise_conv2d",
        "pointwise weight",
        lambda F: F.pointwise_conv2d(X, W),
        ValueError,
        r"pointwise_conv2d: weight must have shape",
    ),
    error_input("conv2d", "groups type", lambda F: F.conv2d(X, W, groups=1.0), TypeError, r"groups must be an int"),
]
