"""fastconv.ops.conv.prepared: a conv call whose arguments' part of the call-plan key is
computed once (the PyTorch bridge's eager forward). Same results bit for bit, same plan,
same errors as the function itself, on every path (first call, repeated call, strided
input, bias, transposed with output_size)."""

import numpy as np
import pytest

import fastconv
from fastconv._cache import CACHE
from fastconv.ops.conv import prepared

RNG = np.random.default_rng(7)
X = RNG.standard_normal((1, 2, 6, 6)).astype(np.float32)
W = RNG.standard_normal((3, 2, 3, 3)).astype(np.float32)
B = RNG.standard_normal(3).astype(np.float32)
CONV_ARGS = dict(stride=1, padding=1, dilation=1, groups=1, channels_last=False, padding_mode="zeros",
                 padding_value=0.0, algo="auto", activation=None)


@pytest.mark.parametrize("bias", [None, B])
@pytest.mark.parametrize("channels_last", [False, True])
def test_prepared_conv_matches_and_reuses_the_plan(bias, channels_last):
    x = np.ascontiguousarray(X.transpose(0, 2, 3, 1)) if channels_last else X
    kwargs = {**CONV_ARGS, "channels_last": channels_last}
    run = prepared(fastconv.conv2d, **kwargs)
    x0, w0 = x.copy(), W.copy()
    first = run(x, W, bias)  # a first call takes the front, which makes the plan
    expected = fastconv.conv2d(x, W, bias, **kwargs)
    entries = len(CACHE)
    again = run(x, W, bias)
    assert len(CACHE) == entries  # the front's plan, under the same key
    np.testing.assert_array_equal(first, expected)
    np.testing.assert_array_equal(again, expected)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(W, w0)


def test_prepared_conv_strided_input_takes_the_front():
    stored_last = np.ascontiguousarray(X.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)  # NCHW view of NHWC memory
    run = prepared(fastconv.conv2d, **CONV_ARGS)
    for _ in range(2):
        np.testing.assert_array_equal(run(stored_last, W), fastconv.conv2d(X, W, **CONV_ARGS))


def test_prepared_conv_transpose_with_output_size():
    w = RNG.standard_normal((2, 3, 3, 3)).astype(np.float32)
    kwargs = dict(stride=2, padding=1, output_padding=0, groups=1, dilation=1, channels_last=False, algo="auto",
                  activation=None, output_size=(12, 12))
    run = prepared(fastconv.conv_transpose2d, **kwargs)
    expected = fastconv.conv_transpose2d(X, w, None, **kwargs)
    assert expected.shape == (1, 3, 12, 12)
    for _ in range(2):
        np.testing.assert_array_equal(run(X, w, None), expected)


def test_prepared_conv_raises_the_function_errors_every_time():
    run = prepared(fastconv.conv2d, **CONV_ARGS)
    run(X, W)
    for _ in range(2):
        with pytest.raises(TypeError, match="dtype"):
            run(X, W.astype(np.float64))
        with pytest.raises(ValueError, match="conv2d"):
            run(X, RNG.standard_normal((3, 4, 3, 3)).astype(np.float32))
        with pytest.raises(TypeError, match="numpy"):
            run(X, W, list(B))
    with pytest.raises(TypeError):
        prepared(fastconv.conv2d, strid=1)(X, W)  # a misspelt keyword: the function's own error


def test_prepared_keeps_argument_types_apart():
    """2.0 must not find the plan of 2 (the key holds each argument's type)."""
    as_float = prepared(fastconv.conv2d, **{**CONV_ARGS, "padding": 1.0})
    with pytest.raises((TypeError, ValueError)):
        fastconv.conv2d(X, W, **{**CONV_ARGS, "padding": 1.0})
    prepared(fastconv.conv2d, **CONV_ARGS)(X, W)
    with pytest.raises((TypeError, ValueError)):
        as_float(X, W)
