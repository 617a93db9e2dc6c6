"""The ``fastconv`` operator namespace and how an op joins it.

Ops are defined with ``torch.library.Library`` define/impl rather than the
``torch.library.custom_op`` decorator: measured on a tiny layer (bench/torch_overhead.py),
the decorator's Python wrapper costs about 3 us more per call, and both take the same
``register_fake`` and ``register_autograd``.
"""

from __future__ import annotations

import torch

LIBRARY = torch.library.Library("fastconv", "DEF")


def define(schema: str, impl, fake, *, backward=None, setup_context=None):
    """Define ``fastconv::<name>`` from its schema, with one implementation for CPU and CUDA
    tensors, a fake (meta) kernel and its autograd formula; the op's default overload
    (called without the packet's overload lookup). An op given no ``backward`` (the
    gradient ops) raises when differentiated: fastconv has no second derivatives."""
    name = schema.split("(", 1)[0]
    LIBRARY.define(schema)
    LIBRARY.impl(name, impl, "CPU")
    LIBRARY.impl(name, impl, "CUDA")
    qualname = f"fastconv::{name}"
    torch.library.register_fake(qualname, fake, lib=LIBRARY)
    torch.library.register_autograd(qualname, backward or _no_double_backward(qualname), setup_context=setup_context,
                                    lib=LIBRARY)
    return getattr(torch.ops.fastconv, name).default


def _no_double_backward(qualname):
    def backward(ctx, *grads):
        raise NotImplementedError(f"{qualname}: the gradient of a gradient (double backward) is not implemented")

    return backward
