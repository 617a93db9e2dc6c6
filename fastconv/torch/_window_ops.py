"""unfold, fold, max_unpool1d-3d and fractional_max_pool2d as ``fastconv::`` ops.

unfold and fold are each other's gradient (fastconv.grad.unfold / .fold); max_unpool's
input gradient is fastconv.grad.max_unpool*'s gather. fractional max pooling has no
fastconv.grad entry: its backward adds each gradient into the input at the returned
index with torch's scatter_add (overlapping windows may pick one element twice).
"""

from __future__ import annotations

import torch

import fastconv
import fastconv.grad as grad

from ._args import decode_padding, optional
from ._library import define
from ._tensors import as_array, as_tensor, fake_array, run

_WINDOW = "int[] kernel_size, int[] stride, int[] padding, str padding_name, int[] dilation"


def _geometry(k, s, p, pn, d):
    return tuple(k), tuple(s), decode_padding(p, pn), tuple(d)


def _run(fn, tensors, *args, **kwargs):
    arrays = tuple(as_array(t) for t in tensors)
    return arrays, run(tensors[0], fn, *arrays, *args, **kwargs)


# ---- unfold and fold ------------------------------------------------------------------

def _unfold(input, *geometry):
    arrays, out = _run(fastconv.unfold, (input,), *_geometry(*geometry))
    return as_tensor(out, arrays)


def _unfold_fake(input, *geometry):
    out = fastconv.unfold(fake_array(input), *_geometry(*geometry))
    return input.new_empty((input.shape[0], *out.shape[1:]))


def _unfold_grad(grad_output, input_size, *geometry):
    arrays, out = _run(grad.unfold, (grad_output,), tuple(input_size), *_geometry(*geometry))
    return as_tensor(out, arrays)


def _fold(columns, output_size, *geometry):
    arrays, out = _run(fastconv.fold, (columns,), tuple(output_size), *_geometry(*geometry))
    return as_tensor(out, arrays)


def _fold_fake(columns, output_size, *geometry):
    out = fastconv.fold(fake_array(columns), tuple(output_size), *_geometry(*geometry))
    return columns.new_empty((columns.shape[0], *out.shape[1:]))


def _fold_grad(grad_output, output_size, *geometry):
    arrays, out = _run(grad.fold, (grad_output,), tuple(output_size), *_geometry(*geometry))
    return as_tensor(out, arrays)


unfold_grad_op = define(f"unfold_grad(Tensor grad_output, int[] input_size, {_WINDOW}) -> Tensor", _unfold_grad,
                        lambda g, input_size, *a: g.new_empty(input_size))
fold_grad_op = define(f"fold_grad(Tensor grad_output, int[] output_size, {_WINDOW}) -> Tensor", _fold_grad,
                      lambda g, output_size, *a: g.new_empty(_fold_grad_shape(g, output_size, *a)))


def _fold_grad_shape(grad_output, output_size, *geometry):
    out = fastconv.unfold(fake_array(grad_output), *_geometry(*geometry))
    return (grad_output.shape[0], *out.shape[1:])


def _unfold_setup(ctx, inputs, output):
    ctx.input_size, ctx.geometry = list(inputs[0].shape), inputs[1:]


def _fold_setup(ctx, inputs, output):
    ctx.output_size, ctx.geometry = inputs[1], inputs[2:]


UNFOLD = define(f"unfold(Tensor input, {_WINDOW}) -> Tensor", _unfold, _unfold_fake,
                backward=lambda ctx, g: (unfold_grad_op(g, ctx.input_size, *ctx.geometry),) + (None,) * 5,
                setup_context=_unfold_setup)
FOLD = define(f"fold(Tensor columns, int[] output_size, {_WINDOW}) -> Tensor", _fold, _fold_fake,
              backward=lambda ctx, g: (fold_grad_op(g, ctx.output_size, *ctx.geometry),) + (None,) * 6,
              setup_context=_fold_setup)


# ---- max_unpool -----------------------------------------------------------------------

def _define_unpool(nd):
    fn, grad_fn = getattr(fastconv, f"max_unpool{nd}d"), getattr(grad, f"max_unpool{nd}d")

    def geometry(k, s, p, o):
        return tuple(k), optional(s), tuple(p), optional(o)

    def impl(input, indices, *a):
        arrays, out = _run(fn, (input, indices), *geometry(*a))
        return as_tensor(out, arrays)

    def fake(input, indices, *a):
        out = fn(fake_array(input), fake_array(indices), *geometry(*a))
        return input.new_empty((input.shape[0], *out.shape[1:]))

    def grad_impl(grad_output, indices, *a):
        arrays, out = _run(grad_fn, (grad_output, indices), *geometry(*a))
        return as_tensor(out, arrays)

    schema = "int[] kernel_size, int[] stride, int[] padding, int[] output_size"
    grad_op = define(f"max_unpool{nd}d_grad(Tensor grad_output, Tensor indices, {schema}) -> Tensor", grad_impl,
                     lambda g, indices, *a: g.new_empty(indices.shape))

    def setup(ctx, inputs, output):
        ctx.args = inputs[2:]
        ctx.save_for_backward(inputs[1])

    def backward(ctx, g):
        (indices,) = ctx.saved_tensors
        return (grad_op(g, indices, *ctx.args), None) + (None,) * len(ctx.args)

    return define(f"max_unpool{nd}d(Tensor input, Tensor indices, {schema}) -> Tensor", impl, fake,
                  backward=backward, setup_context=setup)


MAX_UNPOOL = {nd: _define_unpool(nd) for nd in (1, 2, 3)}


# ---- fractional max pooling -------------------------------------------------------------

def _fractional(input, kernel_size, output_size, output_ratio, seed):
    arrays, out = _run(fastconv.fractional_max_pool2d, (input,), tuple(kernel_size), optional(output_size),
                       optional(output_ratio), True, seed)
    return tuple(as_tensor(o, arrays) for o in out)


def _fractional_fake(input, kernel_size, output_size, output_ratio, seed):
    values, _ = fastconv.fractional_max_pool2d(fake_array(input), tuple(kernel_size), optional(output_size),
                                               optional(output_ratio), True, seed)
    shape = (input.shape[0], *values.shape[1:])
    return input.new_empty(shape), input.new_empty(shape, dtype=torch.int64)


def _fractional_setup(ctx, inputs, output):
    ctx.input_shape = inputs[0].shape
    ctx.save_for_backward(output[1])


def _fractional_backward(ctx, grad_output, _):
    (indices,) = ctx.saved_tensors
    n, c = grad_output.shape[:2]
    flat = grad_output.new_zeros((n, c, ctx.input_shape[-2] * ctx.input_shape[-1]))
    flat = flat.scatter_add(2, indices.reshape(n, c, -1), grad_output.reshape(n, c, -1))
    return flat.reshape(ctx.input_shape), None, None, None, None


FRACTIONAL_MAX_POOL2D = define(
    "fractional_max_pool2d(Tensor input, int[] kernel_size, int[] output_size, float[] output_ratio, int seed) "
    "-> (Tensor, Tensor)", _fractional, _fractional_fake, backward=_fractional_backward,
    setup_context=_fractional_setup)
