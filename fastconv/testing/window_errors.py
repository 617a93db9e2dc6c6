"""Window-op calls that must fail, each with its exception and a pattern of its message
(the registry's ``error_inputs`` of unfold, fold, max_unpool and fractional_max_pool2d;
fastconv.testing.window_samples registers them). A test runs ``e.call(fastconv)`` under
``pytest.raises(e.error, match=e.match)``.
"""

from __future__ import annotations

import numpy as np

from .registry import ErrorInput

X = np.zeros((1, 2, 4, 4), np.float32)  # unfold's input
V = np.zeros((1, 2, 3, 3), np.float32)  # max_unpool's values, with indices:
GOOD = np.zeros(V.shape, np.int64)
BEYOND = GOOD.copy()
BEYOND[0, 1, 2, 0] = 36
NEGATIVE = GOOD.copy()
NEGATIVE[0, 1, 2, 0] = -1
FRACTIONAL = np.zeros((1, 3, 9, 9), np.float32)


def error_input(op, call, error, match) -> ErrorInput:
    """Named by its message pattern."""
    return ErrorInput(op, match, call, error, match)


ERRORS = [
    error_input("unfold", lambda F: F.unfold(np.zeros((1, 2, 4, 4), np.int64), 2), TypeError,
                "unfold: input has dtype int64"),
    error_input("unfold", lambda F: F.unfold([[[1.0, 2.0]]], 1), TypeError, "unfold: input must be a numpy.ndarray"),
    error_input("unfold", lambda F: F.unfold(X, 5), ValueError, "kernel extent 5"),
    error_input("unfold", lambda F: F.unfold(X, 2, stride=0), ValueError, "stride=0"),
    error_input("unfold", lambda F: F.unfold(X, 2, dilation=(1, 0)), ValueError, "dilation"),
    error_input("unfold", lambda F: F.unfold(X, 2.5), TypeError, "kernel_size"),
    error_input("unfold", lambda F: F.unfold(X, 2, padding="middle"), ValueError, "padding='middle'"),
    error_input("unfold", lambda F: F.unfold(X, 2, padding=-1), ValueError, "padding.*negative"),
    error_input("unfold", lambda F: F.unfold(X[0, 0], (2, 2, 2)), ValueError, "input must have 5 dims"),
    error_input("unfold", lambda F: F.unfold(np.zeros((2, 2), np.float32), 1), ValueError,
                "input must have 3, 4 or 5 dims"),
    error_input("fold", lambda F: F.fold(np.zeros((1, 13, 16), np.float32), (5, 5), 2), ValueError,
                r"fold: columns.shape\[1\]=13 is not divisible by prod\(kernel_size\)=4"),
    error_input("fold", lambda F: F.fold(np.zeros((1, 12, 15), np.float32), (5, 5), 2), ValueError,
                r"columns.shape\[2\]=15 blocks.*4 \* 4 = 16 blocks"),
    error_input("fold", lambda F: F.fold(np.zeros((13, 16), np.float32), (5, 5), 2), ValueError,
                r"columns.shape\[0\]=13"),
    error_input("fold", lambda F: F.fold(np.zeros((1, 1, 12, 16), np.float32), (5, 5), 2), ValueError,
                "columns must have 3 dims"),
    error_input("fold", lambda F: F.fold(np.zeros((1, 12, 16), np.int32), (5, 5), 2), TypeError,
                "fold: columns has dtype int32"),
    error_input("fold", lambda F: F.fold(np.zeros((1, 12, 16), np.float32), (5, 0), 2), ValueError, "output_size"),
    error_input("fold", lambda F: F.fold(np.zeros((1, 9, 1), np.float32), (2, 2), 3), ValueError, "kernel extent 3"),
    error_input("max_unpool2d", lambda F: F.max_unpool2d(V, BEYOND, 2), ValueError,
                r"max_unpool2d: indices\[0, 1, 2, 0\]=36 is outside the output plane of 36"),
    error_input("max_unpool2d", lambda F: F.max_unpool2d(V, NEGATIVE, 2), ValueError, r"indices\[0, 1, 2, 0\]=-1"),
    error_input("max_unpool1d", lambda F: F.max_unpool1d(np.ones((1, 1, 4), np.float32),
                                                         np.array([[[10, 0, 0, 0]]]), 2, output_size=(9,)),
                ValueError, r"indices\[0, 0, 0\]=10"),
    error_input("max_unpool2d", lambda F: F.max_unpool2d(V, GOOD.astype(np.float32), 2), TypeError,
                "max_unpool2d: indices has dtype float32"),
    error_input("max_unpool2d", lambda F: F.max_unpool2d(V, GOOD[:, :, 0], 2), ValueError,
                r"indices has shape \(1, 2, 3\)"),
    # integer input is accepted (tests/test_integer_pooling.py), bool is not
    error_input("max_unpool2d", lambda F: F.max_unpool2d(GOOD > 0, GOOD, 2), TypeError,
                "max_unpool2d: input has dtype bool; expected float16, float32, float64, int8"),
    error_input("max_unpool2d", lambda F: F.max_unpool2d(V, GOOD, 2, output_size=(9, 6)), ValueError,
                r"output_size=\(9, 6\) is invalid in spatial dim 0.*between 4 and 8"),
    error_input("max_unpool2d", lambda F: F.max_unpool2d(V, GOOD, 2, output_size=(6, 6, 6)), ValueError,
                "output_size=.*must have 2 or 4 entries"),
    error_input("max_unpool2d", lambda F: F.max_unpool2d(V, GOOD.tolist(), 2), TypeError,
                "indices must be a numpy.ndarray"),
    error_input("fractional_max_pool2d", lambda F: F.fractional_max_pool2d(FRACTIONAL, 2), ValueError,
                "give output_size or output_ratio"),
    error_input("fractional_max_pool2d", lambda F: F.fractional_max_pool2d(FRACTIONAL, 3, 8), ValueError,
                r"kernel_size \(3, 3\) and output size \(8, 8\) do not fit input \(9, 9\)"),
    error_input("fractional_max_pool2d",
                lambda F: F.fractional_max_pool2d(FRACTIONAL, 3, 3, _random_samples=np.zeros((1, 2, 2))),
                ValueError, r"_random_samples has shape \(1, 2, 2\)"),
    error_input("fractional_max_pool2d",
                lambda F: F.fractional_max_pool2d(FRACTIONAL, 3, 3, seed=1, _random_samples=np.zeros((1, 3, 2))),
                ValueError, "seed or _random_samples, not both"),
    error_input("fractional_max_pool2d",
                lambda F: F.fractional_max_pool2d(FRACTIONAL, 3, 3, _random_samples=np.full((1, 3, 2), 1.5)),
                ValueError, r"_random_samples must lie in \[0, 1\]"),
    error_input("fractional_max_pool2d", lambda F: F.fractional_max_pool2d(FRACTIONAL, 3, output_ratio=1.5),
                ValueError, "output_ratio=1.5"),
    error_input("fractional_max_pool2d", lambda F: F.fractional_max_pool2d(np.zeros((1, 1, 4, 4), np.int64), 2, 2),
                TypeError, "fractional_max_pool2d: input has dtype int64"),
    error_input("fractional_max_pool2d",
                lambda F: F.fractional_max_pool2d(np.zeros((1, 1, 1, 4, 4), np.float32), 2, 2), ValueError,
                "input must have 4 dims"),
]
