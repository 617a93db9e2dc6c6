"""The window family of the op registry (fastconv.testing.registry): one small call of
unfold, fold, max_unpool2d and fractional_max_pool2d (``window_samples``, tagged
``every_op``), the cases the window tests run (``window_cases``) and the calls that must
fail (window_errors.py)."""

from __future__ import annotations

from functools import partial

import numpy as np

from .. import reference
from .op_sample import OpSample, op_sample
from .registry import OpInfo, register_op
from .window_errors import ERRORS


def window_samples() -> list[OpSample]:
    """One small call of each window op, tagged ``window``."""
    s = op_sample
    return [
        s("unfold", (1, 2, 5, 6), kernel_size=(2, 3), stride=1, padding=1,
          geometry=("kernel_size", "stride", "padding"), huge=(("padding", 10**5),), tags={"window"}),
        s("fold", (1, 2 * 4, 12), output_size=(4, 5), kernel_size=2, stride=1,
          geometry=("kernel_size", "stride"), tags={"window"}),
        s("max_unpool2d", (1, 2, 6, 6), kernel_size=2, geometry=("kernel_size",), tags={"window"}),
        s("fractional_max_pool2d", (1, 2, 9, 9), kernel_size=2, output_size=4, seed=0, tags={"window"}),
    ]


# ---- the window tests' cases (tests/test_windows.py) -------------------------------------
#
# OpSamples the tests run in each of their dtypes (the sample's dtype is nominal). Tags:
# ``vs_reference`` (any rank, per-side pads, "same"/"full"/"valid"), ``vs_torch`` (what
# PyTorch's functional form takes: 2-D unfold and fold, every unpool and fractional case).


def _case(op, shape, *tags, **kwargs) -> OpSample:
    return OpSample(op, (tuple(shape),), tuple(sorted(kwargs.items())), "float64", tags=frozenset({"window", *tags}))


def unfold_cases() -> list[OpSample]:
    def c(tag, shape, k, s, p, d):
        return _case("unfold", shape, tag, kernel_size=k, stride=s, padding=p, dilation=d)
    ref, torch = "vs_reference", "vs_torch"
    return [
        c(ref, (2, 3, 9), 3, 2, 1, 1),
        c(ref, (1, 2, 7), (2,), 1, ((2, 0),), 3),
        c(ref, (2, 3, 7, 8), (2, 3), (1, 2), 1, (2, 1)),
        c(ref, (1, 2, 5, 6), 3, 2, "same", 1),
        c(ref, (1, 1, 4, 5), (1, 2), 3, ((0, 2), (1, 0)), 1),
        c(ref, (2, 2, 6, 5), 2, 1, "full", 2),
        c(ref, (1, 3, 5, 5), 5, 1, "valid", 1),
        c(ref, (1, 2, 4, 5, 6), (2, 2, 3), (1, 2, 2), 1, 1),
        c(ref, (2, 1, 5, 4, 4), 2, (2, 1, 1), ((1, 0), (0, 1), (1, 1)), (2, 1, 1)),
        c(torch, (2, 3, 7, 8), (2, 3), (1, 2), 1, (2, 1)),
        c(torch, (1, 2, 6, 5), 3, 2, (1, 0), 1),
        c(torch, (3, 1, 5, 5), 1, 1, 0, 1),
        c(torch, (1, 2, 9, 4), (4, 2), (3, 1), (2, 1), (2, 3)),
    ]


def fold_cases() -> list[OpSample]:
    """Fold calls; the input is the columns an unfold of the output size gives."""
    def c(tag, n, ch, osz, k, s, p, d):
        rows, length = reference.unfold(np.zeros((1, ch, *osz)), k, s, p, d).shape[1:]
        return _case("fold", (n, rows, length), tag, output_size=osz, kernel_size=k, stride=s, padding=p,
                     dilation=d)
    ref, torch = "vs_reference", "vs_torch"
    return [
        c(ref, 2, 3, (9,), 3, 2, 1, 1),
        c(ref, 1, 2, (7,), 2, 1, ((2, 0),), 3),
        c(ref, 2, 3, (7, 8), (2, 3), (1, 2), 1, (2, 1)),
        c(ref, 1, 2, (5, 6), 3, 2, "same", 1),
        c(ref, 1, 1, (4, 5), (1, 2), 3, ((0, 2), (1, 0)), 1),
        c(ref, 2, 2, (6, 5), 2, 1, "full", 2),
        c(ref, 1, 3, (5, 5), 5, 1, "valid", 1),
        c(ref, 1, 2, (4, 5, 6), (2, 2, 3), (1, 2, 2), 1, 1),
        c(ref, 2, 1, (5, 4, 4), 2, (2, 1, 1), ((1, 0), (0, 1), (1, 1)), (2, 1, 1)),
        c(torch, 2, 3, (7, 8), (2, 3), (1, 2), 1, (2, 1)),
        c(torch, 1, 2, (6, 5), 3, 2, (1, 0), 1),
        c(torch, 2, 2, (5, 5), 3, 1, 1, 1),
        c(torch, 1, 2, (9, 4), (4, 2), (3, 1), (2, 1), (2, 3)),
    ]


def unpool_cases() -> list[OpSample]:
    """max_unpool of a max pooling of the input (OpSample.call pools it first); a stride
    below the kernel gives repeated indices."""
    def c(shape, k, s, p, osz):
        return _case(f"max_unpool{len(shape) - 2}d", shape, "vs_torch", kernel_size=k, stride=s, padding=p,
                     output_size=osz)
    return [
        c((2, 3, 10), 2, None, 0, None),
        c((1, 2, 9), 3, 2, 1, None),
        c((1, 2, 9), 2, 2, 0, (9,)),
        c((2, 3, 8, 8), 2, None, 0, None),
        c((2, 3, 8, 9), 2, None, 0, (8, 9)),
        c((1, 2, 9, 7), (3, 2), (2, 1), (1, 0), None),
        c((2, 1, 9, 9), 2, 2, 0, (1, 1, 9, 9)),
        c((1, 2, 4, 6, 6), 2, None, 0, None),
        c((1, 2, 5, 6, 7), 2, None, 0, (5, 6, 7)),
        c((1, 1, 6, 7, 5), (3, 2, 2), (2, 1, 2), (1, 0, 1), (6, 7, 5)),
    ]


def fractional_cases() -> list[OpSample]:
    def c(shape, k, osz, ratio):
        return _case("fractional_max_pool2d", shape, "vs_torch", kernel_size=k, output_size=osz, output_ratio=ratio)
    return [
        c((2, 3, 9, 11), (2, 3), (4, 5), None),
        c((1, 2, 10, 10), 3, None, (0.5, 0.7)),
        c((1, 2, 7, 8), 1, (7, 3), None),
        c((2, 2, 6, 9), 2, (5, 1), None),
        c((1, 1, 13, 5), (3, 2), None, 0.5),
    ]


def window_cases() -> list[OpSample]:
    return unfold_cases() + fold_cases() + unpool_cases() + fractional_cases()


_REFERENCE = {"unfold": reference.unfold, "fold": reference.fold, "max_unpool1d": reference.max_unpool,
              "max_unpool2d": reference.max_unpool, "max_unpool3d": reference.max_unpool,
              "fractional_max_pool2d": reference.fractional_max_pool2d}


def _op_samples(op: str) -> list:
    return [s for s in window_samples() + window_cases() if s.op == op]


def _op_errors(op: str) -> list:
    return [e for e in ERRORS if e.op == op]


for _op, _ref in _REFERENCE.items():
    register_op(OpInfo(_op, "window", samples=partial(_op_samples, _op), error_inputs=partial(_op_errors, _op),
                       reference=_ref))
