"""conv1d-3d and conv_transpose1d-3d as ``fastconv::`` ops, with their gradients.

Each forward op runs fastconv's NumPy or CUDA kernel on the tensors' memory. Its autograd
formula calls three further ops that run fastconv.grad (input, weight and bias
gradients), so torch.compile traces the backward as ops too. A fused activation's
backward masks the incoming gradient with the saved output (relu: output > 0; relu6:
0 < output < 6); nothing else is saved but the input and the weight.

The schemas pack the integers and flags into one ``int[] geometry`` and the rest into
one ``str[] options`` (layouts below): torch's autograd wrapper re-reads the op's schema
once per argument on every call (``torch._library.utils.fill_defaults``), so its cost
grows with the square of the argument count; with the 13 separate arguments of the
Python signature a tiny conv2d cost about 20 us more per call with gradients here.

- conv: ``geometry = stride (nd) + per-side pads (2 nd) + dilation (nd) + [groups,
  channels_last]``, ``options = [padding_name, padding_mode, algo, activation,
  repr(padding_value)]`` (repr is exact for a float);
- conv_transpose: ``geometry = stride + pads + output_padding + dilation + [groups,
  channels_last]`` followed by ``output_size`` (nd ints) when one was given,
  ``options = [padding_name, algo, activation]``.
"""

from __future__ import annotations

import numpy as np
import torch

import fastconv
import fastconv.grad as grad

from ._args import pairs
from ._library import define
from ._tensors import as_array, as_tensor, fake_array, numpy_dtype, run


def conv_geometry(stride, pads, dilation, groups, channels_last):
    """The conv ops' packed ``geometry`` (see the module docstring)."""
    return [*stride, *pads, *dilation, groups, int(channels_last)]


def transpose_geometry(stride, pads, output_padding, dilation, groups, channels_last, output_size):
    """The transposed conv ops' packed ``geometry`` (see the module docstring)."""
    return [*stride, *pads, *output_padding, *dilation, groups, int(channels_last), *output_size]


def _conv_kwargs(nd, geometry, options):
    """fastconv's keyword arguments (but activation) of a packed conv call."""
    return dict(stride=tuple(geometry[:nd]), padding=options[0] or pairs(geometry[nd:3 * nd]),
                dilation=tuple(geometry[3 * nd:4 * nd]), groups=geometry[4 * nd],
                channels_last=bool(geometry[4 * nd + 1]), padding_mode=options[1], padding_value=float(options[4]),
                algo=options[2])


def _transpose_kwargs(nd, geometry, options):
    """fastconv's keyword arguments (but activation and output_size) of a packed transposed call."""
    return dict(stride=tuple(geometry[:nd]), padding=options[0] or pairs(geometry[nd:3 * nd]),
                output_padding=tuple(geometry[3 * nd:4 * nd]), dilation=tuple(geometry[4 * nd:5 * nd]),
                groups=geometry[5 * nd], channels_last=bool(geometry[5 * nd + 1]), algo=options[1])


def _empty(tensor):
    """An uninitialised NumPy array of the tensor's shape and dtype (never touched: the
    fake kernels run fastconv on zero-batch input, which reads no weight)."""
    return None if tensor is None else np.empty(tuple(tensor.shape), numpy_dtype(tensor))


def activation_grad(grad_output, output, activation):
    """The gradient through a fused activation, from the op's output."""
    if activation == "relu":
        return torch.where(output > 0, grad_output, 0)
    if activation == "relu6":
        return torch.where((output > 0) & (output < 6), grad_output, 0)
    return grad_output


def _grad_ops(name, input_grad_fn, weight_grad_fn, kwargs_of):
    """The input- and weight-gradient ops of a conv family member; ``kwargs_of(geometry,
    options)`` gives fastconv.grad's keyword arguments."""
    def input_grad(input_size, weight, grad_output, geometry, options):
        arrays = (as_array(weight), as_array(grad_output))
        out = run(weight, input_grad_fn, tuple(input_size), *arrays, **kwargs_of(geometry, options))
        return as_tensor(out, arrays)

    def weight_grad(input, weight_size, grad_output, geometry, options):
        arrays = (as_array(input), as_array(grad_output))
        out = run(input, weight_grad_fn, arrays[0], tuple(weight_size), arrays[1], **kwargs_of(geometry, options))
        return as_tensor(out, arrays)

    args = "int[] geometry, str[] options"
    return (define(f"{name}_input_grad(int[] input_size, Tensor weight, Tensor grad_output, {args}) -> Tensor",
                   input_grad, lambda input_size, weight, *a: weight.new_empty(input_size)),
            define(f"{name}_weight_grad(Tensor input, int[] weight_size, Tensor grad_output, {args}) -> Tensor",
                   weight_grad, lambda input, weight_size, *a: input.new_empty(weight_size)))


def _backward(ctx, grad_output, input_grad_op, weight_grad_op):
    """(input, weight, bias) gradients of a conv family call whose context ``ctx`` holds."""
    input, weight, output = ctx.saved_tensors
    g = activation_grad(grad_output, output, ctx.activation)
    gi = gw = gb = None
    if ctx.needs_input_grad[0]:
        gi = input_grad_op(list(input.shape), weight, g, ctx.geometry, ctx.options)
    if ctx.needs_input_grad[1]:
        gw = weight_grad_op(input, list(weight.shape), g, ctx.geometry, ctx.options)
    if ctx.needs_input_grad[2]:
        gb = bias_grad_op(g, ctx.channels_last)
    return gi, gw, gb


def _register_conv(nd):
    fn = getattr(fastconv, f"conv{nd}d")
    name = f"conv{nd}d"
    input_grad_op, weight_grad_op = _grad_ops(
        name, getattr(grad, f"conv{nd}d_input"), getattr(grad, f"conv{nd}d_weight"),
        lambda geometry, options: _conv_kwargs(nd, geometry, options))

    def conv(input, weight, bias, geometry, options):
        arrays = (as_array(input), as_array(weight), as_array(bias))
        out = run(input, fn, *arrays, activation=options[3] or None, **_conv_kwargs(nd, geometry, options))
        return as_tensor(out, arrays)

    def fake(input, weight, bias, geometry, options):
        out = fn(fake_array(input), _empty(weight), _empty(bias), activation=options[3] or None,
                 **_conv_kwargs(nd, geometry, options))
        return input.new_empty((input.shape[0], *out.shape[1:]))

    def setup(ctx, inputs, output):
        input, weight, _bias, ctx.geometry, ctx.options = inputs
        ctx.activation, ctx.channels_last = ctx.options[3], bool(ctx.geometry[4 * nd + 1])
        ctx.save_for_backward(input, weight, output if ctx.activation else None)

    def backward(ctx, grad_output):
        return (*_backward(ctx, grad_output, input_grad_op, weight_grad_op), None, None)

    return define(f"{name}(Tensor input, Tensor weight, Tensor? bias, int[] geometry, str[] options) -> Tensor",
                  conv, fake, backward=backward, setup_context=setup)


def _register_transpose(nd):
    fn = getattr(fastconv, f"conv_transpose{nd}d")
    name = f"conv_transpose{nd}d"
    input_grad_op, weight_grad_op = _grad_ops(
        name, getattr(grad, f"conv_transpose{nd}d_input"), getattr(grad, f"conv_transpose{nd}d_weight"),
        lambda geometry, options: _transpose_kwargs(nd, geometry, options))
    output_size_at = 5 * nd + 2

    def transpose(input, weight, bias, geometry, options):
        arrays = (as_array(input), as_array(weight), as_array(bias))
        out = run(input, fn, *arrays, activation=options[2] or None,
                  output_size=tuple(geometry[output_size_at:]) or None, **_transpose_kwargs(nd, geometry, options))
        return as_tensor(out, arrays)

    def fake(input, weight, bias, geometry, options):
        out = fn(fake_array(input), _empty(weight), _empty(bias), activation=options[2] or None,
                 output_size=tuple(geometry[output_size_at:]) or None, **_transpose_kwargs(nd, geometry, options))
        return input.new_empty((input.shape[0], *out.shape[1:]))

    def setup(ctx, inputs, output):
        input, weight, _bias, geometry, ctx.options = inputs
        ctx.channels_last = bool(geometry[5 * nd + 1])
        geometry = list(geometry[:output_size_at])
        if len(inputs[3]) > output_size_at:  # the gradients take the output_padding output_size chose
            geometry[3 * nd:4 * nd] = _output_padding(nd, input, weight, output, geometry, ctx.options[0],
                                                      ctx.channels_last)
        ctx.geometry = geometry
        ctx.activation = ctx.options[2]
        ctx.save_for_backward(input, weight, output if ctx.activation else None)

    def backward(ctx, grad_output):
        return (*_backward(ctx, grad_output, input_grad_op, weight_grad_op), None, None)

    return define(f"{name}(Tensor input, Tensor weight, Tensor? bias, int[] geometry, str[] options) -> Tensor",
                  transpose, fake, backward=backward, setup_context=setup)


def _output_padding(nd, input, weight, output, geometry, padding_name, channels_last):
    """The output_padding that an ``output_size`` call chose, from its output's size."""
    if padding_name:
        return [0] * nd  # "same", "valid", "full" fix the output size themselves
    axes = range(1, nd + 1) if channels_last else range(2, nd + 2)
    stride, pads, dilation = geometry[:nd], geometry[nd:3 * nd], geometry[4 * nd:5 * nd]
    return [output.shape[a] - ((input.shape[a] - 1) * stride[i] - pads[2 * i] - pads[2 * i + 1]
                               + dilation[i] * (weight.shape[2 + i] - 1) + 1)
            for i, a in enumerate(axes)]


def _bias_grad(grad_output, channels_last):
    arrays = (as_array(grad_output),)
    return as_tensor(run(grad_output, grad.conv_bias, arrays[0], channels_last=channels_last), arrays)


def _bias_grad_fake(grad_output, channels_last):
    return grad_output.new_empty((grad_output.shape[-1 if channels_last else 1],))


bias_grad_op = define("conv_bias_grad(Tensor grad_output, bool channels_last) -> Tensor", _bias_grad,
                      _bias_grad_fake)

CONV = {nd: _register_conv(nd) for nd in (1, 2, 3)}
CONV_TRANSPOSE = {nd: _register_transpose(nd) for nd in (1, 2, 3)}
