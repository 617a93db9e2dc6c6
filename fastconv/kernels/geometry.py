"""A spec's geometry lifted to three spatial dims, so one kernel serves 1-D, 2-D and 3-D."""

from __future__ import annotations

from typing import NamedTuple


class Geometry3(NamedTuple):
    in_size: tuple
    kernel: tuple
    stride: tuple
    dilation: tuple
    pads: tuple
    out_size: tuple


def lift3(values, fill):
    """``values`` with ``fill`` prepended up to three entries: (5,) -> (fill, fill, 5)."""
    return (fill,) * (3 - len(values)) + tuple(values)


def geometry3(spec) -> Geometry3:
    return Geometry3(
        lift3(spec.in_size, 1), lift3(spec.kernel, 1), lift3(spec.stride, 1),
        lift3(spec.dilation, 1), lift3(spec.pads, (0, 0)), lift3(spec.out_size, 1),
    )
