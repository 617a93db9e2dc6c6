"""fastconv.algorithms(op, ...): which algorithms can serve a call, from the dispatch table."""

from __future__ import annotations

import re

from .dispatch import capable, implementations
from .spec.conv import resolve_conv
from .spec.pool import resolve_adaptive_pool, resolve_pool

_POOL = re.compile(r"(max|avg|lp)_pool([123])d")
_ADAPTIVE = re.compile(r"adaptive_(max|avg)_pool([123])d")
_WINDOWS = {"unfold": "unfold", "fold": "fold", "max_unpool1d": "max_unpool", "max_unpool2d": "max_unpool",
            "max_unpool3d": "max_unpool", "fractional_max_pool2d": "fractional_max_pool"}


def algorithms(op: str, input_shape=None, weight_shape=None, *, backend: str = "cpu", **args) -> list[str]:
    """Names of the algorithms that can serve ``op`` on ``backend`` with these shapes and arguments.

    Convolutions take the weight shape and conv arguments, and so do their gradients
    (``"conv2d_input"``, ``"conv2d_weight"``, ``"conv_transpose2d_weight"``...: the forward
    call's input and weight shapes); pooling ops take their own arguments (``kernel_size=``,
    ``stride=``, ``output_size=`` ...).

    >>> import fastconv
    >>> fastconv.algorithms("conv2d", (1, 32, 56, 56), (32, 1, 3, 3), groups=32, padding=1)
    ['direct', 'im2col', 'depthwise']
    >>> fastconv.algorithms("max_pool2d", (1, 64, 112, 112), kernel_size=3, stride=2, padding=1)
    ['direct']

    ``"grad.<op>"`` asks for the gradient op ``fastconv.grad.<op>`` of a pooling op (its
    ``algo=``), with the forward call's shapes and arguments:

    >>> fastconv.algorithms("grad.max_pool2d", (1, 64, 112, 112), kernel_size=3, stride=2, padding=1)
    ['gather']
    """
    if backend not in ("cpu", "cuda"):
        raise ValueError(f"algorithms: backend={backend!r} is not supported; expected 'cpu' or 'cuda'")
    if op in ("depthwise_conv2d", "pointwise_conv2d", "separable_conv2d"):
        raise ValueError(f"algorithms: ask for 'conv2d' with the {op} weight and groups")
    if op in _WINDOWS:
        return list(implementations(_WINDOWS[op], backend))
    if input_shape is None:
        raise ValueError(f"algorithms: {op} needs input_shape")
    if m := re.fullmatch(r"((?:conv|conv_transpose)[123]d)_(input|weight)", op):
        if weight_shape is None:
            raise ValueError(f"algorithms: {op} needs weight_shape (the forward call's)")
        from .grad.conv import weight_grad_spec

        spec = resolve_conv(m.group(1), input_shape, weight_shape, **args)
        if m.group(2) == "input":
            return capable("conv_input_grad", backend, spec)
        return capable("conv_weight_grad", backend, weight_grad_spec(spec))
    if m := re.fullmatch(r"(conv|conv_transpose)([123])d", op):
        if weight_shape is None:
            raise ValueError(f"algorithms: {op} needs weight_shape")
        return capable(m.group(1), backend, resolve_conv(op, input_shape, weight_shape, **args))
    pool_op = op.removeprefix("grad.")
    suffix = "_grad" if pool_op != op else ""
    if m := _POOL.fullmatch(pool_op):
        kernel_size = args.pop("kernel_size", weight_shape)
        spec = resolve_pool(pool_op, m.group(1), int(m.group(2)), input_shape, kernel_size, **args)
        return capable("pool" + suffix, backend, spec)
    if m := _ADAPTIVE.fullmatch(pool_op):
        spec = resolve_adaptive_pool(pool_op, m.group(1), int(m.group(2)), input_shape, args.pop("output_size"),
                                     **args)
        return capable("adaptive_pool" + suffix, backend, spec)
    raise ValueError(
        f"algorithms: unknown op {op!r}; expected conv1d..3d, conv_transpose1d..3d (or their _input/_weight "
        f"gradients), max/avg/lp_pool1d..3d, adaptive_max/avg_pool1d..3d (or grad. and one of these pooling ops) "
        f"or a windows op"
    )
