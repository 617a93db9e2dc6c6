"""conv1d-3d and conv_transpose1d-3d as ``fastconv::`` ops, with their gradients.

Each forward op runs fastconv's NumPy or CUDA kernel on the tensors' memory. Its autograd
formula calls three further ops that run fastconv.grad (input, weight and bias
gradients), so torch.compile traces the backward as ops too. A fused activation's
backward masks the incoming gradient with the saved output (relu: output > 0; relu6:
0 < output < 6); nothing else is saved but the input and the weight.

Both the ops and their eager twin (``_Eager``, see _eager.py) run a :class:`ConvCall`: the
ops decode it from their schema arguments on every call, the eager path keeps it with
the call's encoding (functional._remembered), so both make the same fastconv calls.

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

import functools
from typing import NamedTuple

import numpy as np
import torch

import fastconv
import fastconv.grad as grad

from ..ops.conv import prepared
from ._args import compact, padding_arg
from ._eager import applier, first_order
from ._library import define
from ._tensors import as_array, as_tensor, channels_last_shape, fake_array, like_parameter, numpy_dtype, run


def conv_geometry(stride, pads, dilation, groups, channels_last):
    """The conv ops' packed ``geometry`` (see the module docstring)."""
    return [*stride, *pads, *dilation, groups, int(channels_last)]


def transpose_geometry(stride, pads, output_padding, dilation, groups, channels_last, output_size):
    """The transposed conv ops' packed ``geometry`` (see the module docstring)."""
    return [*stride, *pads, *output_padding, *dilation, groups, int(channels_last), *output_size]


def _conv_kwargs(nd, geometry, options):
    """fastconv's keyword arguments (but activation) of a packed conv call."""
    return dict(stride=compact(geometry[:nd]), padding=padding_arg(options[0], geometry[nd:3 * nd]),
                dilation=compact(geometry[3 * nd:4 * nd]), groups=geometry[4 * nd],
                channels_last=bool(geometry[4 * nd + 1]), padding_mode=options[1], padding_value=float(options[4]),
                algo=options[2])


def _transpose_kwargs(nd, geometry, options):
    """fastconv's keyword arguments (but activation and output_size) of a packed transposed call."""
    return dict(stride=compact(geometry[:nd]), padding=padding_arg(options[0], geometry[nd:3 * nd]),
                output_padding=compact(geometry[3 * nd:4 * nd]), dilation=compact(geometry[4 * nd:5 * nd]),
                groups=geometry[5 * nd], channels_last=bool(geometry[5 * nd + 1]), algo=options[1])


class ConvCall(NamedTuple):
    """A conv family call decoded from its packed (geometry, options): fastconv's keyword
    arguments for the forward function and for the gradient functions. The ops decode it
    on every call; the eager path keeps it with the call's encoding."""

    transposed: bool
    nd: int
    geometry: list
    options: list
    forward: dict
    grads: dict  # a transposed call with output_size: output_padding is found per call (_output_padding)
    activation: str  # "" for none
    output_size: bool  # a transposed call given output_size
    run: object = None  # the eager path's forward on CPU arrays: fastconv.ops.conv.prepared (see run_forward)


def conv_call(nd, geometry, options):
    grads = _conv_kwargs(nd, geometry, options)
    return ConvCall(False, nd, geometry, options, {**grads, "activation": options[3] or None}, grads, options[3],
                    False)


def transpose_call(nd, geometry, options):
    grads = _transpose_kwargs(nd, geometry, options)
    output_size = tuple(geometry[5 * nd + 2:])
    return ConvCall(True, nd, geometry, options,
                    {**grads, "activation": options[2] or None, "output_size": output_size or None}, grads,
                    options[2], bool(output_size))


# (transposed, nd) -> (forward, input gradient, weight gradient) functions of fastconv
FUNCTIONS = {(t, nd): (getattr(fastconv, f"{name}{nd}d"), getattr(grad, f"{name}{nd}d_input"),
                       getattr(grad, f"{name}{nd}d_weight"))
             for t, name in ((False, "conv"), (True, "conv_transpose")) for nd in (1, 2, 3)}
BACKWARD = {nd: getattr(grad, f"conv{nd}d_backward") for nd in (1, 2, 3)}


def run_forward(call, input, weight, bias, permuted=False):
    """``call``'s forward on tensors; ``permuted``: the input is a channels_last-format tensor
    that ``call`` takes channels-last (see _tensors), and so is the result. A CPU call runs
    ``call.run`` where the eager path prepared one (the same function and arguments)."""
    arrays = (as_array(input, permuted), as_array(weight), None if bias is None else as_array(bias))
    if input.is_cuda:
        return as_tensor(run(input, FUNCTIONS[call.transposed, call.nd][0], *arrays, **call.forward), arrays,
                         permuted)
    if call.run is not None:
        return as_tensor(call.run(*arrays), arrays, permuted)
    return as_tensor(FUNCTIONS[call.transposed, call.nd][0](*arrays, **call.forward), arrays, permuted)


def with_prepared_forward(call):
    """``call`` with its ``run`` (fastconv.ops.conv.prepared), for the eager path, which keeps its calls."""
    return call._replace(run=prepared(FUNCTIONS[call.transposed, call.nd][0], **call.forward))


def run_input_grad(fn, input_size, weight, grad_output, kwargs, permuted=False):
    arrays = (as_array(weight), as_array(grad_output, permuted))
    if weight.is_cuda:
        return as_tensor(run(weight, fn, tuple(input_size), *arrays, **kwargs), arrays, permuted)
    return as_tensor(fn(tuple(input_size), *arrays, **kwargs), arrays, permuted)


def run_backward(nd, input, weight, grad_output, kwargs, permuted=False):
    """A conv's input and weight gradients in one ``fastconv.grad.conv{nd}d_backward`` call
    (on a repeated call, one pass over grad_output where a kernel does both; CPU tensors)."""
    arrays = (as_array(grad_output, permuted), as_array(input, permuted), as_array(weight))
    gi, gw, _ = BACKWARD[nd](*arrays, output_mask=(True, True, False), **kwargs)
    return as_tensor(gi, arrays, permuted), as_tensor(gw, arrays)


def run_weight_grad(fn, input, weight_size, grad_output, kwargs, permuted=False):
    arrays = (as_array(input, permuted), as_array(grad_output, permuted))
    if input.is_cuda:
        return as_tensor(run(input, fn, arrays[0], tuple(weight_size), arrays[1], **kwargs), arrays)
    return as_tensor(fn(arrays[0], tuple(weight_size), arrays[1], **kwargs), arrays)


def empty_array(tensor):
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


def _grad_ops(name, decode, fns):
    """The input- and weight-gradient ops of a conv family member; ``decode(geometry,
    options)`` gives its ConvCall."""
    _, input_grad_fn, weight_grad_fn = fns

    def input_grad(input_size, weight, grad_output, geometry, options):
        return run_input_grad(input_grad_fn, input_size, weight, grad_output, decode(geometry, options).grads)

    def weight_grad(input, weight_size, grad_output, geometry, options):
        return run_weight_grad(weight_grad_fn, input, weight_size, grad_output, decode(geometry, options).grads)

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


def _grad_geometry(call, input, weight, output):
    """The packed geometry the gradients of ``call`` take: a transposed call given
    output_size becomes the call with the output_padding that output_size chose."""
    if not call.transposed:
        return call.geometry
    nd = call.nd
    geometry = list(call.geometry[:5 * nd + 2])
    if call.output_size:
        geometry[3 * nd:4 * nd] = _output_padding(nd, input, weight, output, geometry, call.options[0],
                                                  call.grads["channels_last"])
    return geometry


GRAD_OPS = {}  # (transposed, nd) -> (input gradient op, weight gradient op)


def _register(transposed, nd):
    name = f"conv_transpose{nd}d" if transposed else f"conv{nd}d"
    decode = functools.partial(transpose_call if transposed else conv_call, nd)
    fns = FUNCTIONS[transposed, nd]
    input_grad_op, weight_grad_op = GRAD_OPS[transposed, nd] = _grad_ops(name, decode, fns)

    def impl(input, weight, bias, geometry, options):
        return run_forward(decode(geometry, options), input, weight, bias)

    def fake(input, weight, bias, geometry, options):
        out = fns[0](fake_array(input), empty_array(weight), empty_array(bias), **decode(geometry, options).forward)
        return input.new_empty((input.shape[0], *out.shape[1:]))

    def setup(ctx, inputs, output):
        input, weight, _bias, geometry, ctx.options = inputs
        call = decode(geometry, ctx.options)
        ctx.activation, ctx.channels_last = call.activation, call.grads["channels_last"]
        ctx.geometry = _grad_geometry(call, input, weight, output)
        ctx.save_for_backward(input, weight, output if ctx.activation else None)

    def backward(ctx, grad_output):
        return (*_backward(ctx, grad_output, input_grad_op, weight_grad_op), None, None)

    return define(f"{name}(Tensor input, Tensor weight, Tensor? bias, int[] geometry, str[] options) -> Tensor",
                  impl, fake, backward=backward, setup_context=setup)


def _output_padding(nd, input, weight, output, geometry, padding_name, channels_last):
    """The output_padding that an ``output_size`` call chose, from its output's size."""
    if padding_name:
        return [0] * nd  # "same", "valid", "full" fix the output size themselves
    axes = range(1, nd + 1) if channels_last else range(2, nd + 2)
    stride, pads, dilation = geometry[:nd], geometry[nd:3 * nd], geometry[4 * nd:5 * nd]
    return [output.shape[a] - ((input.shape[a] - 1) * stride[i] - pads[2 * i] - pads[2 * i + 1]
                               + dilation[i] * (weight.shape[2 + i] - 1) + 1)
            for i, a in enumerate(axes)]


def run_bias_grad(grad_output, channels_last, permuted=False):
    arrays = (as_array(grad_output, permuted),)
    return as_tensor(run(grad_output, grad.conv_bias, arrays[0], channels_last=channels_last), arrays)


def _bias_grad_fake(grad_output, channels_last):
    return grad_output.new_empty((grad_output.shape[-1 if channels_last else 1],))


bias_grad_op = define("conv_bias_grad(Tensor grad_output, bool channels_last) -> Tensor", run_bias_grad,
                      _bias_grad_fake)

CONV = {nd: _register(False, nd) for nd in (1, 2, 3)}
CONV_TRANSPOSE = {nd: _register(True, nd) for nd in (1, 2, 3)}


class _Eager(torch.autograd.Function):
    """The conv family's eager path (_eager.py): the ops' forward and gradient functions
    on a cached ConvCall, without the dispatcher; ``permuted`` as in run_forward."""

    @staticmethod
    def forward(ctx, input, weight, bias, call, permuted):
        output = run_forward(call, input, weight, bias, permuted)
        ctx.call, ctx.permuted = call, permuted
        if call.output_size:  # the gradients take the output_padding it chose
            x, y = (input.movedim(1, -1), output.movedim(1, -1)) if permuted else (input, output)
            ctx.call = call._replace(grads=transpose_call(call.nd, _grad_geometry(call, x, weight, y),
                                                          call.options).grads)
        if not ctx.needs_input_grad[1]:  # only the weight's gradient reads the input: a frozen layer keeps none
            ctx.input_size = input.shape
            input = None
        ctx.save_for_backward(input, weight, output if call.activation else None)
        return output

    @staticmethod
    @first_order
    def backward(ctx, grad_output):
        input, weight, output = ctx.saved_tensors
        call, needs, permuted = ctx.call, ctx.needs_input_grad, ctx.permuted
        g = activation_grad(grad_output, output, call.activation)
        _, input_grad_fn, weight_grad_fn = FUNCTIONS[call.transposed, call.nd]
        gi = gw = gb = None
        if needs[0] and needs[1] and not call.transposed and not input.is_cuda:
            gi, gw = run_backward(call.nd, input, weight, g, call.grads, permuted)
            gw = like_parameter(gw, weight)
        elif needs[0] or needs[1]:
            if needs[0]:
                size = ctx.input_size if input is None else input.shape
                size = channels_last_shape(size) if permuted else size
                gi = run_input_grad(input_grad_fn, size, weight, g, call.grads, permuted)
            if needs[1]:
                gw = run_weight_grad(weight_grad_fn, input, weight.shape, g, call.grads, permuted)
                gw = like_parameter(gw, weight)
        if needs[2]:
            gb = run_bias_grad(g, call.grads["channels_last"], permuted)
        return gi, gw, gb, None, None


# A conv family call on the eager path that autograd records (the caller asked _eager.route):
# apply_eager(input, weight, bias, call, permuted); one it does not record is run_forward.
apply_eager = applier(_Eager)
