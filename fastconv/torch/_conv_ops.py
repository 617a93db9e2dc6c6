"""conv1d-3d and conv_transpose1d-3d as ``fastconv::`` ops, with their gradients.

Each forward op runs fastconv's NumPy or CUDA kernel on the tensors' memory. Its autograd
formula calls three further ops that run fastconv.grad (input, weight and bias
gradients), so torch.compile traces the backward as ops too. A fused activation's
backward masks the incoming gradient with the saved output (relu: output > 0; relu6:
0 < output < 6); nothing else is saved but the input and the weight.
"""

from __future__ import annotations

import numpy as np
import torch

import fastconv
import fastconv.grad as grad

from ._args import decode_padding, optional, pairs
from ._library import define
from ._tensors import NUMPY_DTYPES, as_array, as_tensor, fake_array, run

_CONV_ARGS = ("int[] stride, int[] padding, str padding_name, int[] dilation, int groups, str padding_mode, "
              "float padding_value, str algo")
_TRANSPOSE_ARGS = ("int[] stride, int[] padding, str padding_name, int[] output_padding, int groups, "
                   "int[] dilation, str algo")


def _conv_kwargs(stride, padding, padding_name, dilation, groups, padding_mode, padding_value, algo):
    return dict(stride=tuple(stride), padding=decode_padding(padding, padding_name), dilation=tuple(dilation),
                groups=groups, padding_mode=padding_mode, padding_value=padding_value, algo=algo)


def _transpose_kwargs(stride, padding, padding_name, output_padding, groups, dilation, algo):
    return dict(stride=tuple(stride), padding=decode_padding(padding, padding_name),
                output_padding=tuple(output_padding), groups=groups, dilation=tuple(dilation), algo=algo)


def _empty(tensor):
    """An uninitialised NumPy array of the tensor's shape and dtype (never touched: the
    fake kernels run fastconv on zero-batch input, which reads no weight)."""
    return np.empty(tuple(tensor.shape), NUMPY_DTYPES[tensor.dtype])


def activation_grad(grad_output, output, activation):
    """The gradient through a fused activation, from the op's output."""
    if activation == "relu":
        return torch.where(output > 0, grad_output, 0)
    if activation == "relu6":
        return torch.where((output > 0) & (output < 6), grad_output, 0)
    return grad_output


def _register(nd):
    fn = getattr(fastconv, f"conv{nd}d")
    tfn = getattr(fastconv, f"conv_transpose{nd}d")
    input_grad_fn = getattr(grad, f"conv{nd}d_input")
    weight_grad_fn = getattr(grad, f"conv{nd}d_weight")
    tinput_grad_fn = getattr(grad, f"conv_transpose{nd}d_input")
    tweight_grad_fn = getattr(grad, f"conv_transpose{nd}d_weight")

    # ---- conv ------------------------------------------------------------------------
    def conv(input, weight, bias, stride, padding, padding_name, dilation, groups, padding_mode, padding_value, algo,
             activation, channels_last):
        arrays = (as_array(input), as_array(weight), as_array(bias))
        out = run(input, fn, *arrays, tuple(stride), padding_name or pairs(padding), tuple(dilation), groups,
                  padding_mode=padding_mode, padding_value=padding_value, algo=algo, activation=activation or None,
                  channels_last=channels_last)
        return as_tensor(out, arrays)

    def conv_fake(input, weight, bias, *args):
        *geometry, activation, channels_last = args
        b = None if bias is None else _empty(bias)
        out = fn(fake_array(input), _empty(weight), b, activation=activation or None, channels_last=channels_last,
                 **_conv_kwargs(*geometry))
        return input.new_empty((input.shape[0], *out.shape[1:]))

    def input_grad(input_size, weight, grad_output, *geometry, channels_last):
        arrays = (as_array(weight), as_array(grad_output))
        out = run(weight, input_grad_fn, tuple(input_size), *arrays, channels_last=channels_last,
                  **_conv_kwargs(*geometry))
        return as_tensor(out, arrays)

    def weight_grad(input, weight_size, grad_output, *geometry, channels_last):
        arrays = (as_array(input), as_array(grad_output))
        out = run(input, weight_grad_fn, arrays[0], tuple(weight_size), arrays[1], channels_last=channels_last,
                  **_conv_kwargs(*geometry))
        return as_tensor(out, arrays)

    name = f"conv{nd}d"
    input_grad_op = define(
        f"{name}_input_grad(int[] input_size, Tensor weight, Tensor grad_output, {_CONV_ARGS}, *, "
        "bool channels_last) -> Tensor",
        input_grad, lambda input_size, weight, *a, **k: weight.new_empty(input_size))
    weight_grad_op = define(
        f"{name}_weight_grad(Tensor input, int[] weight_size, Tensor grad_output, {_CONV_ARGS}, *, "
        "bool channels_last) -> Tensor",
        weight_grad, lambda input, weight_size, *a, **k: input.new_empty(weight_size))

    def conv_setup(ctx, inputs, output):
        input, weight, _bias, *geometry, ctx.activation, ctx.channels_last = inputs
        ctx.geometry = geometry
        ctx.save_for_backward(input, weight, output if ctx.activation else None)

    def conv_backward(ctx, grad_output):
        input, weight, output = ctx.saved_tensors
        g = activation_grad(grad_output, output, ctx.activation)
        gi = gw = gb = None
        if ctx.needs_input_grad[0]:
            gi = input_grad_op(list(input.shape), weight, g, *ctx.geometry, channels_last=ctx.channels_last)
        if ctx.needs_input_grad[1]:
            gw = weight_grad_op(input, list(weight.shape), g, *ctx.geometry, channels_last=ctx.channels_last)
        if ctx.needs_input_grad[2]:
            gb = bias_grad_op(g, channels_last=ctx.channels_last)
        return (gi, gw, gb) + (None,) * (len(ctx.geometry) + 2)

    conv_op = define(
        f"{name}(Tensor input, Tensor weight, Tensor? bias, {_CONV_ARGS}, str activation, "
        "bool channels_last) -> Tensor",
        conv, conv_fake, backward=conv_backward, setup_context=conv_setup)

    # ---- transposed conv -------------------------------------------------------------
    def transpose(input, weight, bias, stride, padding, padding_name, output_padding, groups, dilation, algo,
                  activation, channels_last, output_size):
        arrays = (as_array(input), as_array(weight), as_array(bias))
        out = run(input, tfn, *arrays, tuple(stride), padding_name or pairs(padding), tuple(output_padding), groups,
                  tuple(dilation), algo=algo, activation=activation or None, channels_last=channels_last,
                  output_size=optional(output_size))
        return as_tensor(out, arrays)

    def transpose_fake(input, weight, bias, *args):
        *geometry, activation, channels_last, output_size = args
        b = None if bias is None else _empty(bias)
        out = tfn(fake_array(input), _empty(weight), b, activation=activation or None, channels_last=channels_last,
                  output_size=optional(output_size), **_transpose_kwargs(*geometry))
        return input.new_empty((input.shape[0], *out.shape[1:]))

    def tinput_grad(input_size, weight, grad_output, *geometry, channels_last):
        arrays = (as_array(weight), as_array(grad_output))
        out = run(weight, tinput_grad_fn, tuple(input_size), *arrays, channels_last=channels_last,
                  **_transpose_kwargs(*geometry))
        return as_tensor(out, arrays)

    def tweight_grad(input, weight_size, grad_output, *geometry, channels_last):
        arrays = (as_array(input), as_array(grad_output))
        out = run(input, tweight_grad_fn, arrays[0], tuple(weight_size), arrays[1], channels_last=channels_last,
                  **_transpose_kwargs(*geometry))
        return as_tensor(out, arrays)

    tname = f"conv_transpose{nd}d"
    tinput_grad_op = define(
        f"{tname}_input_grad(int[] input_size, Tensor weight, Tensor grad_output, {_TRANSPOSE_ARGS}, *, "
        "bool channels_last) -> Tensor",
        tinput_grad, lambda input_size, weight, *a, **k: weight.new_empty(input_size))
    tweight_grad_op = define(
        f"{tname}_weight_grad(Tensor input, int[] weight_size, Tensor grad_output, {_TRANSPOSE_ARGS}, *, "
        "bool channels_last) -> Tensor",
        tweight_grad, lambda input, weight_size, *a, **k: input.new_empty(weight_size))

    def transpose_setup(ctx, inputs, output):
        input, weight, _bias, *geometry, ctx.activation, ctx.channels_last, output_size = inputs
        if output_size:
            geometry[3] = _output_padding(nd, input, weight, output, geometry, ctx.channels_last)
        ctx.geometry = geometry
        ctx.save_for_backward(input, weight, output if ctx.activation else None)

    def transpose_backward(ctx, grad_output):
        input, weight, output = ctx.saved_tensors
        g = activation_grad(grad_output, output, ctx.activation)
        gi = gw = gb = None
        if ctx.needs_input_grad[0]:
            gi = tinput_grad_op(list(input.shape), weight, g, *ctx.geometry, channels_last=ctx.channels_last)
        if ctx.needs_input_grad[1]:
            gw = tweight_grad_op(input, list(weight.shape), g, *ctx.geometry, channels_last=ctx.channels_last)
        if ctx.needs_input_grad[2]:
            gb = bias_grad_op(g, channels_last=ctx.channels_last)
        return (gi, gw, gb) + (None,) * (len(ctx.geometry) + 3)

    transpose_op = define(
        f"{tname}(Tensor input, Tensor weight, Tensor? bias, {_TRANSPOSE_ARGS}, str activation, "
        "bool channels_last, int[] output_size) -> Tensor",
        transpose, transpose_fake, backward=transpose_backward, setup_context=transpose_setup)
    return conv_op, transpose_op


def _output_padding(nd, input, weight, output, geometry, channels_last):
    """The output_padding that an ``output_size`` call chose, from its output's size (the
    gradient functions take output_padding only)."""
    stride, padding, padding_name, _, _, dilation, _ = geometry
    if padding_name:
        return [0] * nd  # "same", "valid", "full" fix the output size themselves
    axes = range(1, nd + 1) if channels_last else range(2, nd + 2)
    return [output.shape[a] - ((input.shape[a] - 1) * stride[i] - padding[2 * i] - padding[2 * i + 1]
                               + dilation[i] * (weight.shape[2 + i] - 1) + 1)
            for i, a in enumerate(axes)]


def _bias_grad(grad_output, *, channels_last):
    arrays = (as_array(grad_output),)
    return as_tensor(run(grad_output, grad.conv_bias, arrays[0], channels_last=channels_last), arrays)


def _bias_grad_fake(grad_output, *, channels_last):
    return grad_output.new_empty((grad_output.shape[-1 if channels_last else 1],))


bias_grad_op = define("conv_bias_grad(Tensor grad_output, *, bool channels_last) -> Tensor", _bias_grad,
                      _bias_grad_fake)

CONV = {}
CONV_TRANSPOSE = {}
for _nd in (1, 2, 3):
    CONV[_nd], CONV_TRANSPOSE[_nd] = _register(_nd)
