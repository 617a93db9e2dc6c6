"""Gradients of the convolutions: input, weight and bias (see fastconv.grad).

Each function resolves the forward call it differentiates with the forward's own spec
machinery (spec.conv.resolve_conv), so padding in every form, strides, dilations and
groups give the very geometry the forward used, then checks grad_output against that
call's output shape and dispatches: "conv_input_grad" (the adjoint convolution through
the forward kernels) and "conv_weight_grad" (reductions over batch and space). A call on
NumPy arrays seen before runs its CallPlan (ops/_call.py) and nothing else, as the
forward ops do: a 1x1 layer's gradient is a 0.1 ms GEMM, beside ~50 us of resolving.
A transposed conv's weight gradient is the weight gradient of the forward conv that
reads its grad_output with the same geometry, so the same kernels serve both.
conv<N>d_backward returns a conv's gradients in one call (aten.convolution_backward's order),
bitwise the separate calls; its call plan runs a depthwise layer's two in one pass (channels-last
stride 1, channels-first strided).
"""

from __future__ import annotations

import numpy as np

from .._args import is_int
from .._arrays import backend_of, check_array, check_float, check_same_dtype, like_input, shape_of, to_host
from .._small_calls import on_one_thread, serial
from ..ops._call import (
    DTYPE_NAMES,
    CallPlan,
    _as_kind,
    batched,
    call_plan,
    check_output,
    execute,
    host_key,
    host_plan,
    remember,
)
from ..spec.conv import resolve_conv

__all__ = [
    "conv1d_input", "conv2d_input", "conv3d_input",
    "conv1d_weight", "conv2d_weight", "conv3d_weight",
    "conv_bias",
    "conv1d_backward", "conv2d_backward", "conv3d_backward",
    "conv_transpose1d_input", "conv_transpose2d_input", "conv_transpose3d_input",
    "conv_transpose1d_weight", "conv_transpose2d_weight", "conv_transpose3d_weight",
]


def _shape_arg(op, name, value, ndims):
    """``value`` (input_size or weight_size) as a tuple of ``ndims`` ints >= 0 (one fewer: unbatched
    input_size), else ValueError/TypeError naming it."""
    try:
        shape = tuple(value)
    except TypeError:
        raise TypeError(f"{op}: {name} must be a shape (a tuple of ints), got {type(value).__name__}") from None
    if not all(is_int(v) and v >= 0 for v in shape):
        raise TypeError(f"{op}: {name}={value!r} must be a tuple of non-negative ints")
    if len(shape) not in ndims:
        raise ValueError(f"{op}: {name}={shape} has {len(shape)} entries; expected "
                         f"{' or '.join(map(str, ndims))}")
    return tuple(int(v) for v in shape)


def _check_grad_output(op, grad_shape, spec, what):
    if tuple(grad_shape) != tuple(spec.output_shape):
        raise ValueError(f"{op}: grad_output has shape {tuple(grad_shape)} but the forward {spec.op} of {what} "
                         f"gives output {tuple(spec.output_shape)}")


def _zeros(shape, dtype):
    return lambda: np.zeros(shape, dtype)


def _input_grad(op, fwd_op, nd, input_size, weight, grad_output, channels_last, algo, args):
    """Input gradient of the forward ``fwd_op`` (conv or transposed conv)."""
    key = host_key(op, (input_size, channels_last, algo, *args.values()), grad_output, weight)
    if key is not None:
        plan = call_plan(key)
        if plan is not None:
            return plan.run(grad_output, weight)
    backend, g, unbatched = batched(op, grad_output, nd, None, (("weight", weight),))
    dtype = check_same_dtype(op, grad_output=grad_output, weight=weight)
    size = _shape_arg(op, "input_size", input_size, (nd + 1,) if unbatched else (nd + 2,))
    if unbatched:
        size = (1, *size)
    spec = resolve_conv(fwd_op, size, shape_of(weight), channels_last=channels_last, dtype=DTYPE_NAMES[dtype],
                        **args)
    _check_grad_output(op, shape_of(g), spec, f"input_size {size} and weight {tuple(shape_of(weight))}")
    check_output(op, spec.input_shape, dtype)
    empty = _zeros(spec.input_shape, dtype)
    if key is None or backend != "cpu":
        return execute("conv_input_grad", backend, spec, algo, grad_output, (g, weight), unbatched, empty)
    plan = host_plan("conv_input_grad", spec, algo, (shape_of(g) if unbatched else None,), unbatched, empty)
    result = plan.run(grad_output, weight)
    remember(key, plan)
    return result


def _weight_grad(op, fwd_op, nd, input, weight_size, grad_output, channels_last, algo, args):
    """Weight gradient of the forward ``fwd_op``; a transposed conv's through the forward conv
    that reads its grad_output (see the module docstring)."""
    key = host_key(op, (weight_size, channels_last, algo, *args.values()), input, grad_output)
    if key is not None:
        plan = call_plan(key)
        if plan is not None:
            return plan.run(input, grad_output)
    backend, x, unbatched = batched(op, input, nd, None, (("grad_output", grad_output),))
    dtype = check_same_dtype(op, input=input, grad_output=grad_output)
    wsize = _shape_arg(op, "weight_size", weight_size, (nd + 2,))
    spec = resolve_conv(fwd_op, shape_of(x), wsize, channels_last=channels_last, dtype=DTYPE_NAMES[dtype], **args)
    g = batched(op, grad_output, nd, None)[1] if unbatched else grad_output
    if unbatched and len(shape_of(grad_output)) != nd + 1:
        raise ValueError(f"{op}: grad_output has shape {tuple(shape_of(grad_output))} but input is unbatched "
                         f"({nd + 1} dims); expected {tuple(spec.output_shape[1:])}")
    _check_grad_output(op, shape_of(g), spec, f"input {tuple(shape_of(input))} and weight_size {wsize}")
    check_output(op, wsize, dtype)
    transposed = spec.transposed
    arrays = (g, x) if transposed else (x, g)
    spec = weight_grad_spec(spec)
    empty = _zeros(wsize, dtype)
    if key is None or backend != "cpu":
        return execute("conv_weight_grad", backend, spec, algo, arrays[0], arrays, False, empty)
    shapes = tuple(shape_of(a) if unbatched else None for a in arrays)
    plan = host_plan("conv_weight_grad", spec, algo, shapes, False, empty)
    if transposed:  # the kernel reads (grad_output, input)
        plan = plan._replace(run=lambda i, g, run=plan.run: run(g, i))
    result = plan.run(input, grad_output)
    remember(key, plan)
    return result


def weight_grad_spec(spec):
    """The forward conv whose weight gradient the "conv_weight_grad" kernels compute for ``spec``:
    ``spec`` itself, or for a transposed conv the forward conv that reads its output (grad_output)
    with the same geometry, the transposed conv's input taking the place of grad_output."""
    if not spec.transposed:
        return spec
    return resolve_conv(f"conv{spec.nd}d", spec.output_shape, spec.weight_shape, stride=spec.stride,
                        padding=spec.pads, dilation=spec.dilation, groups=spec.groups,
                        channels_last=spec.channels_last, dtype=spec.dtype)


def _conv_args(stride, padding, dilation, groups, padding_mode, padding_value):
    return dict(stride=stride, padding=padding, dilation=dilation, groups=groups, padding_mode=padding_mode,
                padding_value=padding_value)


def _transpose_args(stride, padding, output_padding, groups, dilation):
    return dict(stride=stride, padding=padding, output_padding=output_padding, groups=groups, dilation=dilation)


def conv1d_input(input_size, weight, grad_output, stride=1, padding=0, dilation=1, groups=1, *,
                 padding_mode="zeros", padding_value=0.0, channels_last=False, algo="auto"):
    """Gradient of conv1d w.r.t. its input, of shape ``input_size`` (as torch.nn.grad.conv1d_input)."""
    return _input_grad("conv1d_input", "conv1d", 1, input_size, weight, grad_output, channels_last, algo,
                       _conv_args(stride, padding, dilation, groups, padding_mode, padding_value))


def conv2d_input(input_size, weight, grad_output, stride=1, padding=0, dilation=1, groups=1, *,
                 padding_mode="zeros", padding_value=0.0, channels_last=False, algo="auto"):
    """Gradient of conv2d w.r.t. its input, of shape ``input_size`` (as torch.nn.grad.conv2d_input).

    >>> import numpy as np, fastconv.grad as G
    >>> G.conv2d_input((1, 1, 3, 3), np.ones((1, 1, 2, 2)), np.ones((1, 1, 2, 2)))[0, 0]
    array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]])
    """
    return _input_grad("conv2d_input", "conv2d", 2, input_size, weight, grad_output, channels_last, algo,
                       _conv_args(stride, padding, dilation, groups, padding_mode, padding_value))


def conv3d_input(input_size, weight, grad_output, stride=1, padding=0, dilation=1, groups=1, *,
                 padding_mode="zeros", padding_value=0.0, channels_last=False, algo="auto"):
    """Gradient of conv3d w.r.t. its input, of shape ``input_size`` (as torch.nn.grad.conv3d_input)."""
    return _input_grad("conv3d_input", "conv3d", 3, input_size, weight, grad_output, channels_last, algo,
                       _conv_args(stride, padding, dilation, groups, padding_mode, padding_value))


def conv1d_weight(input, weight_size, grad_output, stride=1, padding=0, dilation=1, groups=1, *,
                  padding_mode="zeros", padding_value=0.0, channels_last=False, algo="auto"):
    """Gradient of conv1d w.r.t. its weight, of shape ``weight_size`` (as torch.nn.grad.conv1d_weight)."""
    return _weight_grad("conv1d_weight", "conv1d", 1, input, weight_size, grad_output, channels_last, algo,
                        _conv_args(stride, padding, dilation, groups, padding_mode, padding_value))


def conv2d_weight(input, weight_size, grad_output, stride=1, padding=0, dilation=1, groups=1, *,
                  padding_mode="zeros", padding_value=0.0, channels_last=False, algo="auto"):
    """Gradient of conv2d w.r.t. its weight, of shape ``weight_size`` (as torch.nn.grad.conv2d_weight)."""
    return _weight_grad("conv2d_weight", "conv2d", 2, input, weight_size, grad_output, channels_last, algo,
                        _conv_args(stride, padding, dilation, groups, padding_mode, padding_value))


def conv3d_weight(input, weight_size, grad_output, stride=1, padding=0, dilation=1, groups=1, *,
                  padding_mode="zeros", padding_value=0.0, channels_last=False, algo="auto"):
    """Gradient of conv3d w.r.t. its weight, of shape ``weight_size`` (as torch.nn.grad.conv3d_weight)."""
    return _weight_grad("conv3d_weight", "conv3d", 3, input, weight_size, grad_output, channels_last, algo,
                        _conv_args(stride, padding, dilation, groups, padding_mode, padding_value))


def _output_mask(op, value):
    """``output_mask`` as three bools (grad input, grad weight, grad bias), else TypeError/ValueError."""
    try:
        mask = tuple(value)
    except TypeError:
        raise TypeError(f"{op}: output_mask must be a sequence of three bools, got {type(value).__name__}") from None
    if len(mask) != 3 or not all(isinstance(m, (bool, np.bool_)) for m in mask):
        raise ValueError(f"{op}: output_mask={value!r} must be three bools (grad input, grad weight, grad bias)")
    return tuple(bool(m) for m in mask)


def _backward(op, nd, grad_output, input, weight, output_mask, channels_last, algo, args):
    """(grad input, grad weight, grad bias) of the forward conv<nd>d, each None where the mask says False:
    the separate calls (whose checks and errors they are), or on NumPy arrays seen before the call plan
    that a depthwise layer binds to the one-pass kernel where it applies (cpu/conv/depthwise_backward.py)."""
    mask = _output_mask(op, output_mask)
    bits = mask[0] + 2 * mask[1] + 4 * mask[2]
    key = host_key(op, (bits, channels_last, algo, *args.values()), grad_output, input, weight)
    if key is not None:
        plan = call_plan(key)
        if plan is not None:
            return plan.run(grad_output, input, weight)
    fwd = f"conv{nd}d"

    def separate(g, x, w):
        gi = _input_grad(f"{fwd}_input", fwd, nd, shape_of(x), w, g, channels_last, algo, args) if mask[0] else None
        gw = _weight_grad(f"{fwd}_weight", fwd, nd, x, shape_of(w), g, channels_last, algo, args) if mask[1] else None
        return gi, gw, conv_bias(g, channels_last=channels_last) if mask[2] else None

    result = separate(grad_output, input, weight)
    if key is None or len(shape_of(input)) != nd + 2:
        return result
    spec = resolve_conv(fwd, shape_of(input), shape_of(weight), channels_last=channels_last,
                        dtype=DTYPE_NAMES[input.dtype], **args)
    run = separate
    if mask[:2] == (True, True) and algo == "auto":
        from ..cpu.conv.depthwise_backward import backward_plan, run_backward

        fused = backward_plan(spec)
        if fused is not None:
            def run(g, x, w):
                both = run_backward(fused, g, x, w)
                if both is None:
                    return separate(g, x, w)
                return (*both, conv_bias(g, channels_last=channels_last) if mask[2] else None)

            if serial(spec):  # where each separate call would run on one thread
                run = on_one_thread(run)
    remember(key, CallPlan(spec, None, run))
    return result


def conv1d_backward(grad_output, input, weight, stride=1, padding=0, dilation=1, groups=1, *,
                    output_mask=(True, True, False), padding_mode="zeros", padding_value=0.0, channels_last=False,
                    algo="auto"):
    """conv1d's gradients in one call: see :func:`conv2d_backward`."""
    return _backward("conv1d_backward", 1, grad_output, input, weight, output_mask, channels_last, algo,
                     _conv_args(stride, padding, dilation, groups, padding_mode, padding_value))


def conv2d_backward(grad_output, input, weight, stride=1, padding=0, dilation=1, groups=1, *,
                    output_mask=(True, True, False), padding_mode="zeros", padding_value=0.0, channels_last=False,
                    algo="auto"):
    """The gradients of conv2d w.r.t. its input, weight and bias in one call, as
    ``aten.convolution_backward``: ``(grad_input, grad_weight, grad_bias)``, each None where
    ``output_mask`` (three bools, aten's order) says False.

    Arguments: ``grad_output``, then the forward's own (``conv2d(input, weight, ...)``, no bias
    needed), in the forward's layout (``channels_last``). Each result is bitwise what
    ``conv2d_input``, ``conv2d_weight`` and ``conv_bias`` return on the same arguments, and each
    call raises their errors. A repeated call on C-contiguous float32/float64 NumPy arrays of a
    depthwise layer with zeros padding (channels-last: stride 1, an output of the input's size;
    channels-first: stride 1 or strided) computes grad input and grad weight in one pass, each tile of
    grad_output read once; other layers, and CUDA arrays, run the two gradients' own kernels one
    after the other.

    >>> import numpy as np, fastconv.grad as G
    >>> gi, gw, gb = G.conv2d_backward(np.ones((1, 1, 2, 2)), np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2)))
    >>> gi[0, 0]
    array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]])
    >>> gw[0, 0], gb
    (array([[4., 4.],
           [4., 4.]]), None)
    """
    return _backward("conv2d_backward", 2, grad_output, input, weight, output_mask, channels_last, algo,
                     _conv_args(stride, padding, dilation, groups, padding_mode, padding_value))


def conv3d_backward(grad_output, input, weight, stride=1, padding=0, dilation=1, groups=1, *,
                    output_mask=(True, True, False), padding_mode="zeros", padding_value=0.0, channels_last=False,
                    algo="auto"):
    """conv3d's gradients in one call: see :func:`conv2d_backward`."""
    return _backward("conv3d_backward", 3, grad_output, input, weight, output_mask, channels_last, algo,
                     _conv_args(stride, padding, dilation, groups, padding_mode, padding_value))


def conv_transpose1d_input(input_size, weight, grad_output, stride=1, padding=0, output_padding=0, groups=1,
                           dilation=1, *, channels_last=False, algo="auto"):
    """Gradient of conv_transpose1d w.r.t. its input: the forward conv1d of grad_output."""
    return _input_grad("conv_transpose1d_input", "conv_transpose1d", 1, input_size, weight, grad_output,
                       channels_last, algo, _transpose_args(stride, padding, output_padding, groups, dilation))


def conv_transpose2d_input(input_size, weight, grad_output, stride=1, padding=0, output_padding=0, groups=1,
                           dilation=1, *, channels_last=False, algo="auto"):
    """Gradient of conv_transpose2d w.r.t. its input: the forward conv2d of grad_output."""
    return _input_grad("conv_transpose2d_input", "conv_transpose2d", 2, input_size, weight, grad_output,
                       channels_last, algo, _transpose_args(stride, padding, output_padding, groups, dilation))


def conv_transpose3d_input(input_size, weight, grad_output, stride=1, padding=0, output_padding=0, groups=1,
                           dilation=1, *, channels_last=False, algo="auto"):
    """Gradient of conv_transpose3d w.r.t. its input: the forward conv3d of grad_output."""
    return _input_grad("conv_transpose3d_input", "conv_transpose3d", 3, input_size, weight, grad_output,
                       channels_last, algo, _transpose_args(stride, padding, output_padding, groups, dilation))


def conv_transpose1d_weight(input, weight_size, grad_output, stride=1, padding=0, output_padding=0, groups=1,
                            dilation=1, *, channels_last=False, algo="auto"):
    """Gradient of conv_transpose1d w.r.t. its weight (C, K/groups, kw)."""
    return _weight_grad("conv_transpose1d_weight", "conv_transpose1d", 1, input, weight_size, grad_output,
                        channels_last, algo, _transpose_args(stride, padding, output_padding, groups, dilation))


def conv_transpose2d_weight(input, weight_size, grad_output, stride=1, padding=0, output_padding=0, groups=1,
                            dilation=1, *, channels_last=False, algo="auto"):
    """Gradient of conv_transpose2d w.r.t. its weight (C, K/groups, kh, kw)."""
    return _weight_grad("conv_transpose2d_weight", "conv_transpose2d", 2, input, weight_size, grad_output,
                        channels_last, algo, _transpose_args(stride, padding, output_padding, groups, dilation))


def conv_transpose3d_weight(input, weight_size, grad_output, stride=1, padding=0, output_padding=0, groups=1,
                            dilation=1, *, channels_last=False, algo="auto"):
    """Gradient of conv_transpose3d w.r.t. its weight (C, K/groups, kd, kh, kw)."""
    return _weight_grad("conv_transpose3d_weight", "conv_transpose3d", 3, input, weight_size, grad_output,
                        channels_last, algo, _transpose_args(stride, padding, output_padding, groups, dilation))


def conv_bias(grad_output, *, channels_last=False):
    """Gradient of any conv's bias: grad_output summed over batch and space, one value per
    channel. NumPy's pairwise sum runs on one thread, in a fixed order; a CUDA array is summed
    on the device (fastconv.cuda.bias_grad, a fixed order too, on the current stream); float16
    sums in float32."""
    op = "conv_bias"
    backend = backend_of(op, grad_output, None)
    dtype = check_float(op, "grad_output", grad_output)
    shape = shape_of(grad_output)
    if len(shape) not in (3, 4, 5):
        raise ValueError(f"{op}: grad_output must have 3 to 5 dims (N, C, *spatial), got shape {tuple(shape)}")
    check_array(op, "grad_output", grad_output, backend)
    if backend == "cuda":
        from ..cuda.bias_grad import bias_grad
        from ..cuda.streams import as_device, unbound

        return _as_kind(unbound(bias_grad(as_device(grad_output), bool(channels_last))), grad_output)
    g = to_host(grad_output)
    axes = tuple(range(g.ndim - 1)) if channels_last else (0, *range(2, g.ndim))
    total = g.sum(axis=axes, dtype=np.float32 if dtype == np.float16 else dtype).astype(dtype)
    return like_input(total, grad_output)
