"""fastconv's functional API on torch tensors: the arguments of the NumPy ops, tensors in
and out, differentiable, traceable by torch.compile.

Memory: a CPU tensor is read in place and the result is a tensor over fastconv's output
array (no copy either way). A 4-D or 5-D tensor in channels_last memory format is handed
to the kernels as the channels-last array it is (``channels_last=True`` on a permuted
view) and its result comes back in channels_last format; any other stride pattern
reaches the kernels as a strided array. No copy is made here; the kernels' own layout
conversions (README, "Layout conversions inside a call") are the only ones.
depthwise_conv2d and pointwise_conv2d are built from the conv2d op; separable_conv2d is
its own op on fastconv's separable kernels.

In plain eager mode the functions call each op's kernel function under a thin
autograd.Function instead of the registered op (see _eager.py for when and why).
"""

from __future__ import annotations

import functools
import numbers

import torch

from . import _conv_ops, _eager, _pool_ops, _separable_ops, _window_ops
from ._args import encode_padding, ints, optional_ints

__all__ = [
    "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "depthwise_conv2d", "pointwise_conv2d", "separable_conv2d",
    "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d",
    "lp_pool1d", "lp_pool2d", "lp_pool3d",
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
    "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d",
    "global_avg_pool", "global_max_pool", "spatial_pyramid_pool",
    "unfold", "fold", "max_unpool1d", "max_unpool2d", "max_unpool3d", "fractional_max_pool2d",
]

_FORMATS = {2: torch.channels_last, 3: torch.channels_last_3d}


def _check_tensor(op, name, value):
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(value).__name__}")


def _prepare(op, input, nd, channels_last):
    """(input as the op takes it, channels_last flag, was unbatched, was permuted).

    Unbatched input gets a batch dim of one; a channels_last-format tensor becomes its
    channels-last view."""
    x, cl, unbatched, permuted = _layout(op, input, nd, channels_last)
    return (x.movedim(1, -1) if permuted else x), cl, unbatched, permuted


def _layout(op, input, nd, channels_last):
    """As :func:`_prepare`, but a channels_last-format tensor stays as it is, ``permuted``
    (the eager path moves its axes on the array, see _tensors)."""
    _check_tensor(op, "input", input)
    unbatched = input.dim() == nd + 1
    if unbatched:
        input = input.unsqueeze(0)
    fmt = _FORMATS.get(nd)
    if channels_last or fmt is None or input.dim() != nd + 2 or input.is_contiguous() \
            or not input.is_contiguous(memory_format=fmt):
        return input, bool(channels_last), unbatched, False
    return input, True, unbatched, True


def _call(op, tensors, *args):
    """``op(*args)``. When none of ``tensors`` can carry a gradient (and torch.compile is not
    tracing), the call goes below torch's autograd kernel for Python-registered formulas,
    whose wrapper costs about 9 us a call here (a tiny layer's whole kernel time)."""
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors) \
            or torch.compiler.is_compiling():
        return op(*args)
    with torch._C._AutoDispatchBelowAutograd():
        return op(*args)


def _remembered(encode, *args):
    """``encode(*args)``, remembered for hashable arguments: a model calls each layer with
    the same ones every step. The lists returned are shared; the ops only read them.
    torch.compile traces the encoding itself (it distrusts caches it cannot see into)."""
    if torch.compiler.is_compiling():
        return encode(*args)
    return _cached(encode, *args)


def _cached(encode, *args):
    """:func:`_remembered` where torch.compile is known not to be tracing (the eager path)."""
    try:
        return _remembered_call(encode, *args)
    except TypeError:  # an unhashable argument (a list), or a bad one: encode says which
        return encode(*args)


@functools.lru_cache(maxsize=4096, typed=True)
def _remembered_call(encode, *args):
    return encode(*args)


def _conv_encoding(op, nd, stride, padding, dilation, groups, padding_mode, padding_value, algo, activation,
                   channels_last):
    """(geometry, options) of a conv call (see _conv_ops)."""
    pads, name = encode_padding(op, padding, nd)
    geometry = _conv_ops.conv_geometry(ints(op, "stride", stride, nd), pads or [0] * (2 * nd),
                                       ints(op, "dilation", dilation, nd), _int(op, "groups", groups), channels_last)
    if isinstance(padding_value, bool) or not isinstance(padding_value, numbers.Real):
        raise TypeError(f"{op}: padding_value must be a number, got {padding_value!r}")
    return geometry, [name, padding_mode, algo, activation or "", repr(float(padding_value))]


def _transpose_encoding(op, nd, stride, padding, output_padding, groups, dilation, algo, activation, channels_last,
                        output_size):
    """(geometry, options) of a transposed conv call (see _conv_ops)."""
    pads, name = encode_padding(op, padding, nd)
    geometry = _conv_ops.transpose_geometry(
        ints(op, "stride", stride, nd), pads or [0] * (2 * nd), ints(op, "output_padding", output_padding, nd),
        ints(op, "dilation", dilation, nd), _int(op, "groups", groups), channels_last,
        optional_ints(op, "output_size", output_size, nd))
    return geometry, [name, algo, activation or ""]


def _conv_call(op, nd, *args):
    """The ConvCall of a conv call (its encoding decoded once, for the eager path)."""
    return _conv_ops.with_prepared_forward(_conv_ops.conv_call(nd, *_conv_encoding(op, nd, *args)))


def _transpose_call(op, nd, *args):
    """The ConvCall of a transposed conv call (as _conv_call)."""
    return _conv_ops.with_prepared_forward(_conv_ops.transpose_call(nd, *_transpose_encoding(op, nd, *args)))


def _int(op, name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{op}: {name} must be an int, got {value!r}")
    return int(value)


def _finish(out, unbatched, permuted):
    if permuted:
        out = out.movedim(-1, 1)
    return out.squeeze(0) if unbatched else out


# ---- convolution -------------------------------------------------------------------------

def _conv(op, nd, input, weight, bias, stride, padding, dilation, groups, padding_mode, padding_value, algo,
          activation, channels_last):
    _check_tensor(op, "weight", weight)
    x, cl, unbatched, permuted = _layout(op, input, nd, channels_last)
    args = (op, nd, stride, padding, dilation, groups, padding_mode, padding_value, algo, activation, cl)
    record = _eager.route(x, weight, bias)
    if record is not None:
        call = _cached(_conv_call, *args)
        out = _conv_ops.apply_eager(x, weight, bias, call, permuted) if record else \
            _conv_ops.run_forward(call, x, weight, bias, permuted)
        return out.squeeze(0) if unbatched else out
    if permuted:
        x = x.movedim(1, -1)
    out = _call(_conv_ops.CONV[nd], (x, weight, bias), x, weight, bias, *_remembered(_conv_encoding, *args))
    return _finish(out, unbatched, permuted)


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, padding_mode="zeros",
           padding_value=0.0, algo="auto", activation=None, channels_last=False):
    """fastconv.conv1d on tensors."""
    return _conv("conv1d", 1, input, weight, bias, stride, padding, dilation, groups, padding_mode, padding_value,
                 algo, activation, channels_last)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, padding_mode="zeros",
           padding_value=0.0, algo="auto", activation=None, channels_last=False):
    """fastconv.conv2d on tensors."""
    return _conv("conv2d", 2, input, weight, bias, stride, padding, dilation, groups, padding_mode, padding_value,
                 algo, activation, channels_last)


def conv3d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, padding_mode="zeros",
           padding_value=0.0, algo="auto", activation=None, channels_last=False):
    """fastconv.conv3d on tensors."""
    return _conv("conv3d", 3, input, weight, bias, stride, padding, dilation, groups, padding_mode, padding_value,
                 algo, activation, channels_last)


def _conv_transpose(op, nd, input, weight, bias, stride, padding, output_padding, groups, dilation, algo,
                    activation, channels_last, output_size):
    _check_tensor(op, "weight", weight)
    x, cl, unbatched, permuted = _layout(op, input, nd, channels_last)
    if output_size is not None and len(output_size) > nd:  # torch accepts (N, C, *spatial) too
        output_size = tuple(output_size)[-nd:]
    args = (op, nd, stride, padding, output_padding, groups, dilation, algo, activation, cl, output_size)
    record = _eager.route(x, weight, bias)
    if record is not None:
        call = _cached(_transpose_call, *args)
        out = _conv_ops.apply_eager(x, weight, bias, call, permuted) if record else \
            _conv_ops.run_forward(call, x, weight, bias, permuted)
        return out.squeeze(0) if unbatched else out
    if permuted:
        x = x.movedim(1, -1)
    out = _call(_conv_ops.CONV_TRANSPOSE[nd], (x, weight, bias), x, weight, bias,
                *_remembered(_transpose_encoding, *args))
    return _finish(out, unbatched, permuted)


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                     algo="auto", activation=None, channels_last=False, output_size=None):
    """fastconv.conv_transpose1d on tensors."""
    return _conv_transpose("conv_transpose1d", 1, input, weight, bias, stride, padding, output_padding, groups,
                           dilation, algo, activation, channels_last, output_size)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                     algo="auto", activation=None, channels_last=False, output_size=None):
    """fastconv.conv_transpose2d on tensors."""
    return _conv_transpose("conv_transpose2d", 2, input, weight, bias, stride, padding, output_padding, groups,
                           dilation, algo, activation, channels_last, output_size)


def conv_transpose3d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                     algo="auto", activation=None, channels_last=False, output_size=None):
    """fastconv.conv_transpose3d on tensors."""
    return _conv_transpose("conv_transpose3d", 3, input, weight, bias, stride, padding, output_padding, groups,
                           dilation, algo, activation, channels_last, output_size)


def depthwise_conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, **kw):
    """Depthwise conv2d (weight (C*M, 1, kh, kw)): conv2d with groups = C."""
    _check_tensor("depthwise_conv2d", "input", input)
    channels = input.shape[-1] if kw.get("channels_last") else input.shape[-3]
    return conv2d(input, weight, bias, stride, padding, dilation, channels, **kw)


def pointwise_conv2d(input, weight, bias=None, **kw):
    """1x1 conv2d; weight (K, C, 1, 1) or (K, C)."""
    _check_tensor("pointwise_conv2d", "weight", weight)
    if weight.dim() == 2:
        weight = weight[:, :, None, None]
    return conv2d(input, weight, bias, **kw)


def separable_conv2d(input, depthwise_weight, pointwise_weight, bias=None, stride=1, padding=0, dilation=1, *,
                     depthwise_bias=None, activation=None, padding_mode="zeros", padding_value=0.0, algo="auto",
                     channels_last=False):
    """fastconv.separable_conv2d on tensors, as one op: fastconv's separable kernels (the fused
    one on channels-last input), ``activation`` after the pointwise bias. The backward
    recomputes the depthwise map (see _separable_ops)."""
    op = "separable_conv2d"
    _check_tensor(op, "depthwise_weight", depthwise_weight)
    _check_tensor(op, "pointwise_weight", pointwise_weight)
    if pointwise_weight.dim() == 2:
        pointwise_weight = pointwise_weight[:, :, None, None]
    x, cl, unbatched, permuted = _layout(op, input, 2, channels_last)
    channels = x.shape[-1 if cl and not permuted else 1] if x.dim() == 4 else 0  # else fastconv names its dims
    args = (op, 2, stride, padding, dilation, channels, padding_mode, padding_value, algo, activation, cl)
    weights = (depthwise_weight, depthwise_bias, pointwise_weight, bias)
    record = _eager.route(x, *weights)
    if record is not None:
        out = _separable_ops.eager(x, *weights, _cached(_separable_call, *args), permuted, record)
        return out.squeeze(0) if unbatched else out
    tensors = (x.movedim(1, -1) if permuted else x, *weights)
    out = _call(_separable_ops.SEPARABLE, tensors, *tensors, *_remembered(_conv_encoding, *args))
    return _finish(out, unbatched, permuted)


def _separable_call(*args):
    return _separable_ops.separable_call(*_conv_encoding(*args))


# ---- pooling -------------------------------------------------------------------------------

def _pool(op, nd, table, input, channels_last, *args, indices=False):
    x, cl, unbatched, permuted = _prepare(op, input, nd, channels_last)
    out = _pooled(table[nd], x, *args, cl)
    if isinstance(out, tuple):
        values, idx = (_finish(o, unbatched, permuted) for o in out)
        return (values, idx) if indices else values
    return _finish(out, unbatched, permuted)


def _pooled(op, x, *args):
    """``op(x, *args)``, a pooling op, on the eager path when it can take it."""
    record = _eager.route(x)
    if record is not None:
        return _pool_ops.eager(op, x, args, record)
    return _call(op, (x,), x, *args)


def _window(op, nd, kernel_size, stride, padding, dilation, *flags):
    """(packed window, padding name) of a window pooling call (see _pool_ops.window)."""
    return _remembered(_window_encoding, op, nd, kernel_size, stride, padding, dilation, *flags)


def _window_encoding(op, nd, kernel_size, stride, padding, dilation, *flags):
    pads, name = encode_padding(op, padding, nd)
    kernel = ints(op, "kernel_size", kernel_size, nd)
    strides = optional_ints(op, "stride", stride, nd) or kernel  # None or [] is the kernel, as torch
    return _pool_ops.window(kernel, strides, pads or [0] * (2 * nd), ints(op, "dilation", dilation, nd),
                            *flags), name


def _max_pool(nd, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, channels_last):
    op = f"max_pool{nd}d"
    return _pool(op, nd, _pool_ops.MAX_POOL, input, channels_last,
                 *_window(op, nd, kernel_size, stride, padding, dilation, bool(ceil_mode)), indices=return_indices)


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False, *,
               channels_last=False):
    """fastconv.max_pool1d on tensors."""
    return _max_pool(1, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, channels_last)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False, *,
               channels_last=False):
    """fastconv.max_pool2d on tensors."""
    return _max_pool(2, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, channels_last)


def max_pool3d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False, *,
               channels_last=False):
    """fastconv.max_pool3d on tensors."""
    return _max_pool(3, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, channels_last)


def _avg_pool(nd, input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, dilation,
              channels_last):
    op = f"avg_pool{nd}d"
    if divisor_override is not None and (isinstance(divisor_override, bool) or divisor_override < 1):
        raise ValueError(f"{op}: divisor_override={divisor_override!r} must be a positive int or None")
    return _pool(op, nd, _pool_ops.AVG_POOL, input, channels_last,
                 *_window(op, nd, kernel_size, stride, padding, dilation, bool(ceil_mode), bool(count_include_pad),
                          divisor_override or 0))


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None, *, dilation=1, channels_last=False):
    """fastconv.avg_pool1d on tensors."""
    return _avg_pool(1, input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override,
                     dilation, channels_last)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None, *, dilation=1, channels_last=False):
    """fastconv.avg_pool2d on tensors."""
    return _avg_pool(2, input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override,
                     dilation, channels_last)


def avg_pool3d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None, *, dilation=1, channels_last=False):
    """fastconv.avg_pool3d on tensors."""
    return _avg_pool(3, input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override,
                     dilation, channels_last)


def _lp_pool(nd, input, norm_type, kernel_size, stride, ceil_mode, padding, dilation, channels_last):
    op = f"lp_pool{nd}d"
    return _pool(op, nd, _pool_ops.LP_POOL, input, channels_last, float(norm_type),
                 *_window(op, nd, kernel_size, stride, padding, dilation, bool(ceil_mode)))


def lp_pool1d(input, norm_type, kernel_size, stride=None, ceil_mode=False, *, padding=0, dilation=1,
              channels_last=False):
    """fastconv.lp_pool1d on tensors (the Lp norm of each window; see README)."""
    return _lp_pool(1, input, norm_type, kernel_size, stride, ceil_mode, padding, dilation, channels_last)


def lp_pool2d(input, norm_type, kernel_size, stride=None, ceil_mode=False, *, padding=0, dilation=1,
              channels_last=False):
    """fastconv.lp_pool2d on tensors (the Lp norm of each window; see README)."""
    return _lp_pool(2, input, norm_type, kernel_size, stride, ceil_mode, padding, dilation, channels_last)


def lp_pool3d(input, norm_type, kernel_size, stride=None, ceil_mode=False, *, padding=0, dilation=1,
              channels_last=False):
    """fastconv.lp_pool3d on tensors (the Lp norm of each window; see README)."""
    return _lp_pool(3, input, norm_type, kernel_size, stride, ceil_mode, padding, dilation, channels_last)


def _output_size(op, input, output_size, nd, channels_last):
    """torch's adaptive output_size (None keeps that dim's input size) as nd ints."""
    sizes = [output_size] * nd if not isinstance(output_size, (tuple, list)) else list(output_size)
    spatial = input.shape[-nd - 1:-1] if channels_last else input.shape[-nd:]
    return ints(op, "output_size", [n if s is None else s for s, n in zip(sizes, spatial)], nd) \
        if len(sizes) == nd else ints(op, "output_size", sizes, nd)


def adaptive_avg_pool1d(input, output_size, *, channels_last=False):
    """fastconv.adaptive_avg_pool1d on tensors."""
    sizes = _output_size("adaptive_avg_pool1d", input, output_size, 1, channels_last)
    return _pool("adaptive_avg_pool1d", 1, _pool_ops.ADAPTIVE_AVG_POOL, input, channels_last, sizes)


def adaptive_avg_pool2d(input, output_size, *, channels_last=False):
    """fastconv.adaptive_avg_pool2d on tensors."""
    sizes = _output_size("adaptive_avg_pool2d", input, output_size, 2, channels_last)
    return _pool("adaptive_avg_pool2d", 2, _pool_ops.ADAPTIVE_AVG_POOL, input, channels_last, sizes)


def adaptive_avg_pool3d(input, output_size, *, channels_last=False):
    """fastconv.adaptive_avg_pool3d on tensors."""
    sizes = _output_size("adaptive_avg_pool3d", input, output_size, 3, channels_last)
    return _pool("adaptive_avg_pool3d", 3, _pool_ops.ADAPTIVE_AVG_POOL, input, channels_last, sizes)


def adaptive_max_pool1d(input, output_size, return_indices=False, *, channels_last=False):
    """fastconv.adaptive_max_pool1d on tensors."""
    sizes = _output_size("adaptive_max_pool1d", input, output_size, 1, channels_last)
    return _pool("adaptive_max_pool1d", 1, _pool_ops.ADAPTIVE_MAX_POOL, input, channels_last, sizes,
                 indices=return_indices)


def adaptive_max_pool2d(input, output_size, return_indices=False, *, channels_last=False):
    """fastconv.adaptive_max_pool2d on tensors."""
    sizes = _output_size("adaptive_max_pool2d", input, output_size, 2, channels_last)
    return _pool("adaptive_max_pool2d", 2, _pool_ops.ADAPTIVE_MAX_POOL, input, channels_last, sizes,
                 indices=return_indices)


def adaptive_max_pool3d(input, output_size, return_indices=False, *, channels_last=False):
    """fastconv.adaptive_max_pool3d on tensors."""
    sizes = _output_size("adaptive_max_pool3d", input, output_size, 3, channels_last)
    return _pool("adaptive_max_pool3d", 3, _pool_ops.ADAPTIVE_MAX_POOL, input, channels_last, sizes,
                 indices=return_indices)


def global_avg_pool(input, *, channels_last=False):
    """fastconv.global_avg_pool on tensors: (N, C, 1, ...)."""
    _check_tensor("global_avg_pool", "input", input)
    return _pooled(_pool_ops.GLOBAL_AVG_POOL, input, bool(channels_last))


def global_max_pool(input, *, channels_last=False):
    """fastconv.global_max_pool on tensors: (N, C, 1, ...)."""
    _check_tensor("global_max_pool", "input", input)
    return _pooled(_pool_ops.GLOBAL_MAX_POOL, input, bool(channels_last))


def spatial_pyramid_pool(input, levels=(1, 2, 4), mode="max", *, channels_last=False):
    """fastconv.spatial_pyramid_pool on tensors: (N, C * sum(l ** nd))."""
    _check_tensor("spatial_pyramid_pool", "input", input)
    return _pooled(_pool_ops.SPATIAL_PYRAMID_POOL, input, ints("spatial_pyramid_pool", "levels", levels, 1),
                 mode, bool(channels_last))


# ---- windows -------------------------------------------------------------------------------

def unfold(input, kernel_size, stride=1, padding=0, dilation=1):
    """fastconv.unfold on tensors (API.md's argument order: stride before padding and dilation)."""
    _check_tensor("unfold", "input", input)
    nd = input.dim() - 2
    pads, name = encode_padding("unfold", padding, nd)
    return _window_ops.UNFOLD(input, ints("unfold", "kernel_size", kernel_size, nd),
                              ints("unfold", "stride", stride, nd), pads, name,
                              ints("unfold", "dilation", dilation, nd))


def fold(columns, output_size, kernel_size, stride=1, padding=0, dilation=1):
    """fastconv.fold on tensors (API.md's argument order)."""
    _check_tensor("fold", "columns", columns)
    nd = len(output_size) if isinstance(output_size, (tuple, list)) else \
        (len(kernel_size) if isinstance(kernel_size, (tuple, list)) else 2)
    pads, name = encode_padding("fold", padding, nd)
    return _window_ops.FOLD(columns, ints("fold", "output_size", output_size, nd),
                            ints("fold", "kernel_size", kernel_size, nd), ints("fold", "stride", stride, nd), pads,
                            name, ints("fold", "dilation", dilation, nd))


def _max_unpool(nd, input, indices, kernel_size, stride, padding, output_size):
    op = f"max_unpool{nd}d"
    _check_tensor(op, "input", input)
    _check_tensor(op, "indices", indices)
    return _window_ops.MAX_UNPOOL[nd](input, indices, ints(op, "kernel_size", kernel_size, nd),
                                      optional_ints(op, "stride", stride, nd), ints(op, "padding", padding, nd),
                                      optional_ints(op, "output_size", output_size, nd))


def max_unpool1d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    """fastconv.max_unpool1d on tensors."""
    return _max_unpool(1, input, indices, kernel_size, stride, padding, output_size)


def max_unpool2d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    """fastconv.max_unpool2d on tensors."""
    return _max_unpool(2, input, indices, kernel_size, stride, padding, output_size)


def max_unpool3d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    """fastconv.max_unpool3d on tensors."""
    return _max_unpool(3, input, indices, kernel_size, stride, padding, output_size)


def fractional_max_pool2d(input, kernel_size, output_size=None, output_ratio=None, return_indices=False, seed=None):
    """fastconv.fractional_max_pool2d on tensors. Without ``seed`` one is drawn from torch's
    generator, so ``torch.manual_seed`` makes the windows repeatable."""
    op = "fractional_max_pool2d"
    _check_tensor(op, "input", input)
    if seed is None:
        seed = int(torch.randint(0, 2**31 - 1, ()).item())
    ratio = [] if output_ratio is None else [float(r) for r in
                                             (output_ratio if isinstance(output_ratio, (tuple, list))
                                              else (output_ratio, output_ratio))]
    values, idx = _window_ops.FRACTIONAL_MAX_POOL2D(input, ints(op, "kernel_size", kernel_size, 2),
                                                    optional_ints(op, "output_size", output_size, 2), ratio, int(seed))
    return (values, idx) if return_indices else values
