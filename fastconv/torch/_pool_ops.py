"""Pooling as ``fastconv::`` ops: max, average, Lp, adaptive, global and spatial-pyramid
pooling, each with a ``<name>_grad`` op running fastconv.grad.

Max pooling ops always return their indices (the public functions drop them unless asked):
the backward routes each gradient through them instead of searching the windows again.
Each op saves its input (the gradient functions take it) and, for max pooling, the indices.
The eager path's max pooling gradients take those indices as the forward kernel's own
(fastconv.grad.pool.max_pool_from_forward: not checked again); the gradient ops check
theirs, which a caller may pass.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import torch

import fastconv
import fastconv.grad as grad
from fastconv.grad.pool import adaptive_max_pool_from_forward, max_pool_from_forward

from ._args import compact, padding_arg
from ._eager import applier, first_order
from ._library import define
from ._tensors import as_array, as_tensor, fake_array, run


def _define_pool(name, args_schema, forward, gradient, *, indices, gradient_from_forward=None):
    """Define ``fastconv::<name>(input, <args>, channels_last)`` and its gradient op.

    ``forward(x, *args, channels_last)`` and ``gradient(grad_output, x, indices, *args,
    channels_last)`` call fastconv on arrays; with ``indices`` the forward returns
    (values, indices), and ``gradient_from_forward`` (as ``gradient``) is the eager
    path's, for the indices its own forward saved."""
    args = f", {args_schema}" if args_schema else ""

    def impl(input, *a):
        arrays = (as_array(input),)
        out = run(input, forward, arrays[0], *a[:-1], channels_last=a[-1])
        return tuple(as_tensor(o, arrays) for o in out) if indices else as_tensor(out, arrays)

    def fake(input, *a):
        out = forward(fake_array(input), *a[:-1], channels_last=a[-1])
        if indices:
            return (input.new_empty((input.shape[0], *out[0].shape[1:])),
                    input.new_empty((input.shape[0], *out[1].shape[1:]), dtype=torch.int64))
        return input.new_empty((input.shape[0], *out.shape[1:]))

    def grad_impl(grad_output, input, idx, *a, channels_last, gradient=gradient):
        arrays = (as_array(grad_output), as_array(input), as_array(idx))
        return as_tensor(run(input, gradient, *arrays, *a, channels_last=channels_last), arrays)

    grad_op = define(
        f"{name}_grad(Tensor grad_output, Tensor input, Tensor? indices{args}, *, bool channels_last) -> Tensor",
        grad_impl, lambda grad_output, input, *a, **k: input.new_empty(input.shape))

    def setup(ctx, inputs, output):
        ctx.args, ctx.channels_last = inputs[1:-1], inputs[-1]
        ctx.save_for_backward(inputs[0], output[1] if indices else None)

    def backward(ctx, grad_output, *_):
        input, idx = ctx.saved_tensors
        gi = grad_op(grad_output, input, idx, *ctx.args, channels_last=ctx.channels_last)
        return (gi,) + (None,) * (len(ctx.args) + 1)

    returns = "(Tensor, Tensor)" if indices else "Tensor"
    op = define(f"{name}(Tensor input{args}, bool channels_last) -> {returns}", impl, fake,
                backward=backward, setup_context=setup)
    eager_grad = grad_impl if gradient_from_forward is None else functools.partial(grad_impl,
                                                                                    gradient=gradient_from_forward)
    _POOLS[op] = _Pool(impl, eager_grad, indices)
    return op


class _Pool(NamedTuple):
    """A pooling op's kernel functions on tensors, for the eager path."""

    impl: Callable
    grad_impl: Callable  # given the indices its impl returned, when it returns them
    indices: bool


_POOLS = {}  # op -> _Pool


class _Eager(torch.autograd.Function):
    """The pooling ops' eager path (_eager.py): the op's own kernel and gradient functions,
    without the dispatcher."""

    @staticmethod
    def forward(ctx, input, pool, args):
        out = pool.impl(input, *args)
        ctx.pool, ctx.args = pool, args
        ctx.save_for_backward(input, out[1] if pool.indices else None)
        return out

    @staticmethod
    @first_order
    def backward(ctx, grad_output, *_):
        input, idx = ctx.saved_tensors
        return ctx.pool.grad_impl(grad_output, input, idx, *ctx.args[:-1], channels_last=ctx.args[-1]), None, None


_apply = applier(_Eager)


def eager(op, input, args, record):
    """``op(input, *args)`` on the eager path; ``record``: autograd records it (see _eager.route)."""
    pool = _POOLS[op]
    if record:
        return _apply(input, pool, args)
    return pool.impl(input, *args)


def window(kernel, stride, pads, dilation, *flags):
    """The window ops' packed ``int[] window`` (a tuple, hashable): kernel, stride, per-side pads (all
    zeros with a padding name) and dilation, nd ints each but the pads (2 nd), then the
    op's flags (max, Lp: ceil_mode; avg: ceil_mode, count_include_pad, divisor_override
    or 0). One argument instead of six: torch's autograd wrapper re-reads the
    schema once per argument on each call (see _conv_ops)."""
    return (*kernel, *stride, *pads, *dilation, *(int(f) for f in flags))


def _unpack(nd, w, padding_name):
    """(kernel, stride, padding, dilation, flags) of a packed window, each per-dim value in
    its cheapest form (_args.compact), remembered: a model pools with the same few windows."""
    try:
        return _unpacked(nd, w, padding_name)
    except TypeError:  # a list, as the ops receive it
        return _unpacked(nd, tuple(w), padding_name)


@functools.lru_cache(maxsize=1024)
def _unpacked(nd, w, padding_name):
    return (compact(w[:nd]), compact(w[nd:2 * nd]), padding_arg(padding_name, w[2 * nd:4 * nd]),
            compact(w[4 * nd:5 * nd]), w[5 * nd:])


MAX_POOL, AVG_POOL, LP_POOL, ADAPTIVE_AVG_POOL, ADAPTIVE_MAX_POOL = {}, {}, {}, {}, {}

for _nd in (1, 2, 3):
    def _max(x, w, pn, *, channels_last, nd=_nd, f=getattr(fastconv, f"max_pool{_nd}d")):
        k, s, p, d, (ceil,) = _unpack(nd, w, pn)
        return f(x, k, s, p, d, bool(ceil), True, channels_last=channels_last)

    def _max_grad(g, x, idx, w, pn, *, channels_last, nd=_nd, f=getattr(grad, f"max_pool{_nd}d")):
        k, s, p, d, (ceil,) = _unpack(nd, w, pn)
        return f(g, x, k, s, p, d, bool(ceil), indices=idx, channels_last=channels_last)

    def _max_grad_from_forward(g, x, idx, w, pn, *, channels_last, nd=_nd):
        k, s, p, d, (ceil,) = _unpack(nd, w, pn)
        return max_pool_from_forward(nd, g, x, k, s, p, d, bool(ceil), idx, channels_last)

    def _avg(x, w, pn, *, channels_last, nd=_nd, f=getattr(fastconv, f"avg_pool{_nd}d")):
        k, s, p, d, (ceil, cip, div) = _unpack(nd, w, pn)
        return f(x, k, s, p, bool(ceil), bool(cip), div or None, dilation=d, channels_last=channels_last)

    def _avg_grad(g, x, idx, w, pn, *, channels_last, nd=_nd, f=getattr(grad, f"avg_pool{_nd}d")):
        k, s, p, d, (ceil, cip, div) = _unpack(nd, w, pn)
        return f(g, x, k, s, p, bool(ceil), bool(cip), div or None, dilation=d, channels_last=channels_last)

    def _lp(x, n, w, pn, *, channels_last, nd=_nd, f=getattr(fastconv, f"lp_pool{_nd}d")):
        k, s, p, d, (ceil,) = _unpack(nd, w, pn)
        return f(x, n, k, s, bool(ceil), padding=p, dilation=d, channels_last=channels_last)

    def _lp_grad(g, x, idx, n, w, pn, *, channels_last, nd=_nd, f=getattr(grad, f"lp_pool{_nd}d")):
        k, s, p, d, (ceil,) = _unpack(nd, w, pn)
        return f(g, x, n, k, s, bool(ceil), padding=p, dilation=d, channels_last=channels_last)

    def _adaptive_avg(x, o, *, channels_last, f=getattr(fastconv, f"adaptive_avg_pool{_nd}d")):
        return f(x, tuple(o), channels_last=channels_last)

    def _adaptive_avg_grad(g, x, idx, o, *, channels_last, f=getattr(grad, f"adaptive_avg_pool{_nd}d")):
        return f(g, x, tuple(o), channels_last=channels_last)

    def _adaptive_max_grad_from_forward(g, x, idx, o, *, channels_last, nd=_nd):
        return adaptive_max_pool_from_forward(nd, g, x, tuple(o), idx, channels_last)

    def _adaptive_max(x, o, *, channels_last, f=getattr(fastconv, f"adaptive_max_pool{_nd}d")):
        return f(x, tuple(o), True, channels_last=channels_last)

    def _adaptive_max_grad(g, x, idx, o, *, channels_last, f=getattr(grad, f"adaptive_max_pool{_nd}d")):
        return f(g, x, tuple(o), indices=idx, channels_last=channels_last)

    MAX_POOL[_nd] = _define_pool(f"max_pool{_nd}d", "int[] window, str padding_name", _max, _max_grad,
                                 indices=True, gradient_from_forward=_max_grad_from_forward)
    AVG_POOL[_nd] = _define_pool(f"avg_pool{_nd}d", "int[] window, str padding_name", _avg, _avg_grad,
                                 indices=False)
    LP_POOL[_nd] = _define_pool(f"lp_pool{_nd}d", "float norm_type, int[] window, str padding_name", _lp, _lp_grad,
                                indices=False)
    ADAPTIVE_AVG_POOL[_nd] = _define_pool(f"adaptive_avg_pool{_nd}d", "int[] output_size", _adaptive_avg,
                                          _adaptive_avg_grad, indices=False)
    ADAPTIVE_MAX_POOL[_nd] = _define_pool(f"adaptive_max_pool{_nd}d", "int[] output_size", _adaptive_max,
                                          _adaptive_max_grad, indices=True,
                                          gradient_from_forward=_adaptive_max_grad_from_forward)

GLOBAL_AVG_POOL = _define_pool(
    "global_avg_pool", "", lambda x, *, channels_last: fastconv.global_avg_pool(x, channels_last=channels_last),
    lambda g, x, idx, *, channels_last: grad.global_avg_pool(g, x, channels_last=channels_last), indices=False)
GLOBAL_MAX_POOL = _define_pool(
    "global_max_pool", "", lambda x, *, channels_last: fastconv.global_max_pool(x, channels_last=channels_last),
    lambda g, x, idx, *, channels_last: grad.global_max_pool(g, x, channels_last=channels_last), indices=False)
SPATIAL_PYRAMID_POOL = _define_pool(
    "spatial_pyramid_pool", "int[] levels, str mode",
    lambda x, levels, mode, *, channels_last: fastconv.spatial_pyramid_pool(x, tuple(levels), mode,
                                                                            channels_last=channels_last),
    lambda g, x, idx, levels, mode, *, channels_last: grad.spatial_pyramid_pool(g, x, tuple(levels), mode,
                                                                                channels_last=channels_last),
    indices=False)
