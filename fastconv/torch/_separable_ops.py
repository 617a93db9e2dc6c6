"""separable_conv2d as one ``fastconv::`` op on fastconv's separable kernels (the fused
channels-last kernel wherever it serves), with its gradients.

The forward is ``fastconv.separable_conv2d``. Its fused kernel keeps the depthwise map in
an L2-sized block per task and never writes it out, so the map is not there to save:
the backward recomputes it (one depthwise conv, C * kh * kw multiply-adds per output
pixel beside the pointwise step's C * K) when the pointwise weight needs its gradient,
the only one that reads it. Saving it instead would cost an N x C x OH x OW tensor per
layer, and a second output the fused kernel does not have. The op saves the input, both
weights, the depthwise bias and, with an activation, its output.

Backward: the pointwise step's weight and bias gradients and the map's gradient (conv2d's
input gradient through the 1x1 weight), then the depthwise step's input, weight and bias
gradients from the map's gradient, all through fastconv.grad: on the ops path through the
conv2d gradient ops (so torch.compile traces them as ops), on the eager path (_eager.py)
through the same functions directly.

Schema: the depthwise conv2d's packed ``geometry`` and ``options`` (_conv_ops; groups is
the input's channel count, ``algo`` the separable op's own: "auto", "fused", "composed",
or any conv algorithm, which both steps then use).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

import fastconv
import fastconv.grad as grad

from . import _conv_ops
from ._conv_ops import ConvCall, activation_grad, conv_call, conv_geometry, empty_array
from ._eager import applier, first_order
from ._library import define
from ._tensors import as_array, as_tensor, fake_array, run

_SEPARABLE_ALGOS = ("auto", "fused", "composed")


class SeparableCall(NamedTuple):
    """A separable call decoded from its packed (geometry, options): fastconv.separable_conv2d's
    keyword arguments and the ConvCall of each step (for the recomputation and the gradients)."""

    forward: dict
    depthwise: ConvCall
    pointwise: ConvCall
    activation: str  # "" for none
    channels_last: bool


def separable_call(geometry, options):
    padding_name, padding_mode, algo, activation, padding_value = options
    step_algo = "auto" if algo in _SEPARABLE_ALGOS else algo
    depthwise = conv_call(2, geometry, [padding_name, padding_mode, step_algo, "", padding_value])
    channels_last = depthwise.grads["channels_last"]
    pointwise = conv_call(2, conv_geometry((1, 1), (0, 0, 0, 0), (1, 1), 1, channels_last),
                          ["", "zeros", step_algo, "", "0.0"])
    kwargs = depthwise.grads
    forward = dict(stride=kwargs["stride"], padding=kwargs["padding"], dilation=kwargs["dilation"],
                   padding_mode=padding_mode, padding_value=kwargs["padding_value"], channels_last=channels_last,
                   algo=algo, activation=activation or None)
    return SeparableCall(forward, depthwise, pointwise, activation, channels_last)


def run_forward(call, input, depthwise_weight, depthwise_bias, pointwise_weight, bias, permuted=False):
    """``call``'s forward on tensors; ``permuted`` as in _conv_ops.run_forward."""
    arrays = x, dw, db, pw, b = (as_array(input, permuted), as_array(depthwise_weight),
                                 None if depthwise_bias is None else as_array(depthwise_bias),
                                 as_array(pointwise_weight), None if bias is None else as_array(bias))
    if input.is_cuda:
        return as_tensor(run(input, fastconv.separable_conv2d, x, dw, pw, b, depthwise_bias=db, **call.forward),
                         arrays, permuted)
    return as_tensor(fastconv.separable_conv2d(x, dw, pw, b, depthwise_bias=db, **call.forward), arrays, permuted)


def _gradients(needs, saved, grad_output, call, steps):
    """(input, depthwise weight, depthwise bias, pointwise weight, bias) gradients. ``steps``
    runs one step: ``forward(step, x, w, b)``, ``input_grad(step, size, w, g)``,
    ``weight_grad(step, x, size, g)``, ``bias_grad(g, channels_last)`` (the ops, or their
    functions)."""
    input, dw, db, pw, output = saved
    forward, input_grad, weight_grad, bias_grad = steps
    g = activation_grad(grad_output, output, call.activation)
    gx = gdw = gdb = gpw = gb = None
    if needs[3]:
        gpw = weight_grad(call.pointwise, forward(call.depthwise, input, dw, db), pw.shape, g)
    if needs[4]:
        gb = bias_grad(g, call.channels_last)
    if needs[0] or needs[1] or needs[2]:
        n, *spatial = g.shape[:-1] if call.channels_last else (g.shape[0], *g.shape[2:])
        hidden_size = (n, *spatial, pw.shape[1]) if call.channels_last else (n, pw.shape[1], *spatial)
        gh = input_grad(call.pointwise, hidden_size, pw, g)
        gx = input_grad(call.depthwise, input.shape, dw, gh) if needs[0] else None
        gdw = weight_grad(call.depthwise, input, dw.shape, gh) if needs[1] else None
        gdb = bias_grad(gh, call.channels_last) if needs[2] else None
    return gx, gdw, gdb, gpw, gb


def _op_steps():
    input_grad_op, weight_grad_op = _conv_ops.GRAD_OPS[False, 2]
    return (lambda step, x, w, b: _conv_ops.CONV[2](x, w, b, step.geometry, step.options),
            lambda step, size, w, g: input_grad_op(list(size), w, g, step.geometry, step.options),
            lambda step, x, size, g: weight_grad_op(x, list(size), g, step.geometry, step.options),
            _conv_ops.bias_grad_op)


_OP_STEPS = _op_steps()
_FUNCTION_STEPS = (
    _conv_ops.run_forward,
    lambda step, size, w, g: _conv_ops.run_input_grad(grad.conv2d_input, size, w, g, step.grads),
    lambda step, x, size, g: _conv_ops.run_weight_grad(grad.conv2d_weight, x, size, g, step.grads),
    _conv_ops.run_bias_grad,
)


def _impl(input, depthwise_weight, depthwise_bias, pointwise_weight, bias, geometry, options):
    return run_forward(separable_call(geometry, options), input, depthwise_weight, depthwise_bias, pointwise_weight,
                    bias)


def _fake(input, depthwise_weight, depthwise_bias, pointwise_weight, bias, geometry, options):
    out = fastconv.separable_conv2d(fake_array(input), empty_array(depthwise_weight), empty_array(pointwise_weight),
                                    empty_array(bias), depthwise_bias=empty_array(depthwise_bias),
                                    **separable_call(geometry, options).forward)
    return input.new_empty((input.shape[0], *out.shape[1:]))


def _setup(ctx, inputs, output):
    input, dw, db, pw, _bias, geometry, options = inputs
    ctx.call = separable_call(geometry, options)
    ctx.save_for_backward(input, dw, db, pw, output if ctx.call.activation else None)


def _backward(ctx, grad_output):
    return (*_gradients(ctx.needs_input_grad, ctx.saved_tensors, grad_output, ctx.call, _OP_STEPS), None, None)


SEPARABLE = define("separable_conv2d(Tensor input, Tensor depthwise_weight, Tensor? depthwise_bias, "
                   "Tensor pointwise_weight, Tensor? bias, int[] geometry, str[] options) -> Tensor",
                   _impl, _fake, backward=_backward, setup_context=_setup)


class _Eager(torch.autograd.Function):
    """The separable op's eager path (_eager.py); ``permuted`` as in run_forward."""

    @staticmethod
    def forward(ctx, input, depthwise_weight, depthwise_bias, pointwise_weight, bias, call, permuted):
        output = run_forward(call, input, depthwise_weight, depthwise_bias, pointwise_weight, bias, permuted)
        ctx.call, ctx.permuted = call, permuted
        ctx.save_for_backward(input, depthwise_weight, depthwise_bias, pointwise_weight,
                              output if call.activation else None)
        return output

    @staticmethod
    @first_order
    def backward(ctx, grad_output):
        saved = ctx.saved_tensors
        if ctx.permuted:  # the gradient steps take the channels-last views (a movedim is small beside them)
            input, dw, db, pw, output = saved
            saved = input.movedim(1, -1), dw, db, pw, None if output is None else output.movedim(1, -1)
            grad_output = grad_output.movedim(1, -1)
        gx, *grads = _gradients(ctx.needs_input_grad, saved, grad_output, ctx.call, _FUNCTION_STEPS)
        return (gx.movedim(-1, 1) if ctx.permuted and gx is not None else gx), *grads, None, None


_apply = applier(_Eager)


def eager(input, depthwise_weight, depthwise_bias, pointwise_weight, bias, call, permuted, record):
    """A separable call on the eager path; ``record``: autograd records it (see _eager.route)."""
    if record:
        return _apply(input, depthwise_weight, depthwise_bias, pointwise_weight, bias, call, permuted)
    return run_forward(call, input, depthwise_weight, depthwise_bias, pointwise_weight, bias, permuted)
