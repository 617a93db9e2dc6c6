"""Transposed convs whose phases run alone by the direct kernel packing the transposed weight itself
(its channel axes swapped, each phase's taps picked: fastconv/cpu/conv/transpose/phases.py,
direct.run.conv_direct_swapped): when it applies, and results against the NumPy reference (float64
to 1e-10)."""

from __future__ import annotations

import numpy as np
import pytest

import fastconv as F
from fastconv import reference as ref
from fastconv.cpu.conv.transpose.phases import _swapped_groups
from fastconv.spec.conv import resolve_conv
from fastconv.testing.tolerances import assert_close


def spec(input_shape, weight_shape, dtype="float32", **args):
    return resolve_conv(f"conv_transpose{len(input_shape) - 2}d", input_shape, weight_shape, dtype=dtype, **args)


def swapped(s) -> list:
    """Per phase group: whether it runs by the direct kernel from the transposed weight."""
    return [pos is not None for pos in _swapped_groups(s).pos]


def test_when_it_applies():
    assert swapped(spec((2, 64, 8, 8), (64, 32, 3, 3), padding=1)) == [True]
    assert swapped(spec((2, 8, 8, 8), (8, 6, 3, 3), padding=1, groups=2, dilation=2)) == [True]
    # ResNet's 3x3 stride-2 input gradient: 1x1 (one GEMM), 1x2, 2x1 and 2x2 sub-kernels
    assert swapped(spec((2, 64, 4, 4), (64, 32, 3, 3), stride=2, padding=1)) == [False, True, True, True]
    assert swapped(spec((1, 8, 1, 5), (8, 4, 3, 3), stride=(2, 1), padding=1)) == [True]  # one phase, 1 of 3 rows
    assert swapped(spec((1, 5, 5, 8), (8, 16, 1, 1), channels_last=True)) == [False]  # 1x1: rows
    assert swapped(spec((1, 8, 4, 4), (8, 3, 4, 4), stride=2, padding=1)) == [False]  # the union of the phases


CASES = [  # (input shape, weight shape, arguments)
    ((2, 8, 7, 9), (8, 12, 3, 3), dict(padding=1)),
    ((2, 40, 5, 6), (40, 36, 3, 3), dict(padding=(0, 2))),  # 36 output channels: a part block
    ((2, 6, 6, 7), (6, 4, 3, 3), dict(groups=2, dilation=2, padding=1)),
    ((1, 4, 11, 10), (4, 8, 3, 3), dict(padding=3)),  # the crop past the kernel's span: the input cropped
    ((2, 5, 6, 7), (5, 3, 2, 4), dict(output_padding=0, padding=(1, 0))),
    ((2, 40, 4, 5), (40, 36, 3, 3), dict(stride=2, padding=1)),  # the phases of a 3x3 stride-2 input gradient
    ((2, 6, 5, 4), (6, 4, 5, 3), dict(stride=(2, 3), padding=(2, 1), output_padding=1, groups=2)),
    ((1, 4, 5, 6), (4, 8, 3, 3), dict(stride=2, dilation=3, padding=2)),
    ((1, 8, 1, 5), (8, 4, 3, 3), dict(stride=(2, 1), padding=1)),
]


@pytest.mark.parametrize("activation", [None, "relu"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["first", "last"])
@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_against_reference(case, dtype, channels_last, activation, rng):
    x_shape, w_shape, args = case
    layout_shape = (x_shape[0], *x_shape[2:], x_shape[1]) if channels_last else x_shape
    assert any(swapped(spec(layout_shape, w_shape, dtype, channels_last=channels_last, **args)))
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[1] * args.get("groups", 1)).astype(dtype)
    expected = ref.conv_transpose(x, w, b, activation=activation, **args)
    xin = np.moveaxis(x, 1, -1) if channels_last else x[:, :, :, ::-1][:, :, :, ::-1]  # a view, not contiguous
    w.flags.writeable = False
    got = F.conv_transpose2d(xin, w, b, channels_last=channels_last, activation=activation, **args)
    assert got.dtype == np.dtype(dtype)
    got = np.moveaxis(got, -1, 1) if channels_last else got
    if dtype == "float64":
        assert np.max(np.abs(got - expected)) <= 1e-10 * np.max(np.abs(expected))
    else:
        assert_close(got, expected, "conv", dtype, np.sqrt(np.prod(w_shape[1:])))
