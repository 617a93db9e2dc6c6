"""Pooling calls that must fail, each with its exception and a pattern of its message
(the registry's ``error_inputs`` of the pooling ops; fastconv.testing.pool_samples
registers them). A test runs ``e.call(fastconv)`` under ``pytest.raises(e.error, match=e.match)``.
"""

from __future__ import annotations

import numpy as np

from .registry import ErrorInput

X2 = np.zeros((1, 2, 6, 6), np.float32)
X1 = np.zeros((1, 2, 6), np.float32)


def error_input(op, call, error, match) -> ErrorInput:
    """Named by its message pattern."""
    return ErrorInput(op, match, call, error, match)


ERRORS = [
    error_input("max_pool2d", lambda F: F.max_pool2d(X2, 0), ValueError, r"max_pool2d: kernel_size=0 must be >= 1"),
    error_input("max_pool2d", lambda F: F.max_pool2d(X2, -2), ValueError, r"kernel_size=-2"),
    error_input(
        "max_pool2d",
        lambda F: F.max_pool2d(X2, (2, 2, 2)),
        ValueError,
        r"kernel_size=\(2, 2, 2\) must be an int or a sequence of 2 ints",
    ),
    error_input(
        "max_pool2d",
        lambda F: F.max_pool2d(X2, None),
        TypeError,
        r"max_pool2d: kernel_size must be an int .* got NoneType",
    ),
    error_input("max_pool2d", lambda F: F.max_pool2d(X2, 2.5), TypeError, r"kernel_size must be an int"),
    error_input(
        "avg_pool2d",
        lambda F: F.avg_pool2d(X2, 7),
        ValueError,
        r"avg_pool2d: kernel extent 7 .* larger than the padded input 6",
    ),
    error_input(
        "avg_pool2d",
        lambda F: F.avg_pool2d(X2, 8, 1, ceil_mode=True),
        ValueError,
        r"avg_pool2d: kernel extent 8 .* larger than the padded input 6 .* by 2 >= stride 1, so even ceil_mode",
    ),
    error_input("max_pool2d", lambda F: F.max_pool2d(X2, 2, 0), ValueError, r"max_pool2d: stride=0 must be >= 1"),
    error_input("max_pool2d", lambda F: F.max_pool2d(X2, 2, 1.5), TypeError, r"max_pool2d: stride must be an int"),
    error_input("max_pool2d", lambda F: F.max_pool2d(X2, 2, (1, 2, 3)), ValueError, r"stride=\(1, 2, 3\)"),
    error_input(
        "max_pool2d", lambda F: F.max_pool2d(X2, 2, 2, -1), ValueError, r"max_pool2d: padding=-1 must not be negative"
    ),
    error_input(
        "max_pool2d", lambda F: F.max_pool2d(X2, 2, 2, "middle"), ValueError, r"padding='middle' is not a padding word"
    ),
    error_input(
        "max_pool2d",
        lambda F: F.max_pool2d(X2, 2, 2, (1, 1, 1)),
        ValueError,
        r"padding=\(1, 1, 1\) has 3 entries .* 2 spatial dims",
    ),
    error_input("max_pool2d", lambda F: F.max_pool2d(X2, 2, 2, ((1, 2, 3), 1)), ValueError, r"\(begin, end\) pair"),
    error_input("max_pool2d", lambda F: F.max_pool2d(X2, 2, 2, 1.0), TypeError, r"max_pool2d: padding must be an int"),
    error_input("max_pool2d", lambda F: F.max_pool2d(X2, 2, dilation=0), ValueError, r"dilation=0 must be >= 1"),
    error_input(
        "avg_pool2d",
        lambda F: F.avg_pool2d(X2.astype(np.int32), 2),
        TypeError,
        r"avg_pool2d: input has dtype int32; expected float16, float32 or float64 \(integer input is accepted by "
        r"max_pool\*",
    ),
    error_input(
        "max_pool2d",
        lambda F: F.max_pool2d(X2.astype(np.uint32), 2),
        TypeError,
        r"max_pool2d: input has dtype uint32; expected float16, float32, float64, int8, uint8, int16, int32 or int64",
    ),
    error_input(
        "avg_pool1d",
        lambda F: F.avg_pool1d(X1.astype(np.complex64), 2),
        TypeError,
        r"avg_pool1d: input has dtype complex64",
    ),
    error_input(
        "adaptive_avg_pool2d", lambda F: F.adaptive_avg_pool2d(X2.astype(bool), 2), TypeError, r"input has dtype bool"
    ),
    error_input(
        "max_pool2d",
        lambda F: F.max_pool2d(X1[0], 2),
        ValueError,
        r"max_pool2d: input must have 4 dims \(batched\) or 3 \(unbatched\), got shape \(2, 6\)",
    ),
    error_input(
        "max_pool1d",
        lambda F: F.max_pool1d(X2, 2),
        ValueError,
        r"max_pool1d: input must have 3 dims .* got shape \(1, 2, 6, 6\)",
    ),
    error_input("max_pool3d", lambda F: F.max_pool3d(X2[0, 0], 2), ValueError, r"max_pool3d: input must have 5 dims"),
    error_input(
        "max_pool2d", lambda F: F.max_pool2d(X2.tolist(), 2), TypeError, r"max_pool2d: input must be a numpy.ndarray"
    ),
    error_input(
        "max_pool2d", lambda F: F.max_pool2d(X2, 2, device="tpu"), ValueError, r"device='tpu' is not supported"
    ),
    error_input(
        "max_pool2d",
        lambda F: F.max_pool2d(np.zeros((1, 2, 0, 4), np.float32), 1),
        ValueError,
        r"max_pool2d: input spatial size \(0, 4\) has an empty dimension",
    ),
    error_input(
        "max_pool2d",
        lambda F: F.max_pool2d(X2, 2, ceil_mode="yes"),
        TypeError,
        r"max_pool2d: ceil_mode='yes' must be a bool",
    ),
    error_input(
        "max_pool2d",
        lambda F: F.max_pool2d(X2, 2, return_indices=None),
        TypeError,
        r"return_indices=None must be a bool",
    ),
    error_input(
        "avg_pool2d",
        lambda F: F.avg_pool2d(X2, 2, count_include_pad="no"),
        TypeError,
        r"count_include_pad='no' must be a bool",
    ),
    error_input(
        "avg_pool2d",
        lambda F: F.avg_pool2d(X2, 2, divisor_override=0),
        ValueError,
        r"avg_pool2d: divisor_override=0 must be a positive int",
    ),
    error_input(
        "avg_pool2d",
        lambda F: F.avg_pool2d(X2, 2, divisor_override=1.5),
        TypeError,
        r"divisor_override=1.5 must be a positive int",
    ),
    error_input(
        "avg_pool2d",
        lambda F: F.avg_pool2d(X2, 2, channels_last=None),
        TypeError,
        r"avg_pool2d: channels_last=None must be a bool",
    ),
    error_input(
        "lp_pool2d", lambda F: F.lp_pool2d(X2, 0, 2), ValueError, r"lp_pool2d: norm_type=0 must be a positive number"
    ),
    error_input(
        "lp_pool2d", lambda F: F.lp_pool2d(X2, -1.5, 2), ValueError, r"norm_type=-1.5 must be a positive number"
    ),
    error_input(
        "lp_pool2d", lambda F: F.lp_pool2d(X2, float("nan"), 2), ValueError, r"norm_type=nan must be a positive number"
    ),
    error_input(
        "lp_pool2d",
        lambda F: F.lp_pool2d(X2, "2", 2),
        TypeError,
        r"lp_pool2d: norm_type must be a positive number, got str",
    ),
    error_input(
        "adaptive_avg_pool2d",
        lambda F: F.adaptive_avg_pool2d(X2, 0),
        ValueError,
        r"adaptive_avg_pool2d: output_size=0 must be >= 1",
    ),
    error_input(
        "adaptive_max_pool2d",
        lambda F: F.adaptive_max_pool2d(X2, (2, 2, 2)),
        ValueError,
        r"output_size=\(2, 2, 2\) must have 2 entries",
    ),
    error_input(
        "adaptive_max_pool2d",
        lambda F: F.adaptive_max_pool2d(X2, "2"),
        ValueError,
        r"output_size='2' must have 2 entries",
    ),
    error_input(
        "adaptive_max_pool2d", lambda F: F.adaptive_max_pool2d(X2, 2.0), TypeError, r"output_size must be an int"
    ),
    error_input(
        "adaptive_avg_pool1d",
        lambda F: F.adaptive_avg_pool1d(X2, 2),
        ValueError,
        r"adaptive_avg_pool1d: input must have 3 dims",
    ),
    error_input(
        "global_avg_pool",
        lambda F: F.global_avg_pool(X2[0, 0]),
        ValueError,
        r"global_avg_pool: input must have 3, 4 or 5 dims .* got shape \(6, 6\)",
    ),
    error_input(
        "global_max_pool",
        lambda F: F.global_max_pool(np.zeros((1, 1, 1, 1, 1, 1), np.float32)),
        ValueError,
        r"global_max_pool: input must have 3, 4 or 5 dims",
    ),
    error_input(
        "spatial_pyramid_pool",
        lambda F: F.spatial_pyramid_pool(X2, mode="median"),
        ValueError,
        r"spatial_pyramid_pool: mode='median' is not supported; expected 'max' or 'avg'",
    ),
    error_input(
        "spatial_pyramid_pool",
        lambda F: F.spatial_pyramid_pool(X2, levels=(1, 0)),
        ValueError,
        r"levels=\(1, 0\) must be a non-empty sequence of positive ints",
    ),
    error_input(
        "spatial_pyramid_pool",
        lambda F: F.spatial_pyramid_pool(X2, levels=()),
        ValueError,
        r"levels=\(\) must be a non-empty",
    ),
    error_input(
        "spatial_pyramid_pool",
        lambda F: F.spatial_pyramid_pool(X2, levels=1.5),
        TypeError,
        r"levels must be a sequence of positive ints, got float",
    ),
]

# Averaging and Lp pooling refuse integer input (max pooling takes it: tests/test_integer_pooling.py)
_AVERAGING = {
    "avg_pool2d": lambda x: lambda F: F.avg_pool2d(x, 2),
    "avg_pool1d": lambda x: lambda F: F.avg_pool1d(x[0], 2),
    "lp_pool2d": lambda x: lambda F: F.lp_pool2d(x, 2, 2),
    "lp_pool3d": lambda x: lambda F: F.lp_pool3d(x[None], 2, 1),
    "adaptive_avg_pool2d": lambda x: lambda F: F.adaptive_avg_pool2d(x, 2),
    "global_avg_pool": lambda x: lambda F: F.global_avg_pool(x),
    "spatial_pyramid_pool": lambda x: lambda F: F.spatial_pyramid_pool(x, (1, 2), "avg"),
}
ERRORS += [
    ErrorInput(op, f"{op}-{dtype}", call(np.zeros((1, 2, 4, 4), dtype)), TypeError,
               rf"{op}: input has dtype {dtype}; expected float16, float32 or float64 "
               r"\(integer input is accepted by max_pool\*", frozenset({"integer"}))
    for dtype in ("int8", "uint8", "int16", "int32", "int64")
    for op, call in _AVERAGING.items()
]
