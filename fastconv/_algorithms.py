"""fastconv.algorithms(op, **args): which algorithms can serve a call."""

from __future__ import annotations

import re

from .dispatch import capable
from .spec.conv import resolve_conv


def algorithms(op: str, input_shape, weight_shape=None, *, backend: str = "cpu", **args) -> list[str]:
    """Names of the algorithms that can serve ``op`` with these shapes and arguments.

    >>> import fastconv
    >>> fastconv.algorithms("conv2d", (1, 32, 56, 56), (32, 1, 3, 3), groups=32, padding=1)
    ['direct', 'im2col', 'depthwise']
    """
    m = re.fullmatch(r"(conv|conv_transpose)([123])d", op)
    if m is None:
        if op in ("depthwise_conv2d", "pointwise_conv2d", "separable_conv2d"):
            raise ValueError(f"algorithms: ask for 'conv2d' with the {op} weight and groups")
        return capable("pool" if "pool" in op and "adaptive" not in op else "adaptive_pool", backend, None) \
            if "pool" in op else _unknown(op)
    if weight_shape is None:
        raise ValueError(f"algorithms: {op} needs weight_shape")
    family = m.group(1)
    spec = resolve_conv(op, input_shape, weight_shape, **args)
    return capable(family, backend, spec)


def _unknown(op):
    raise ValueError(f"algorithms: unknown op {op!r}; expected conv1d..3d, conv_transpose1d..3d or a pooling op")
