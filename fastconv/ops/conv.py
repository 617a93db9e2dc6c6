"""conv1d/2d/3d, conv_transpose1d/2d/3d and the depthwise, pointwise and separable
shortcuts, shaped like torch.nn.functional."""

from __future__ import annotations

import functools
import inspect

import numpy as np

from .._arrays import check_array, check_same_dtype, shape_of
from ..dispatch import choose
from ..spec.conv import resolve_conv
from ..spec.separable import SeparablePair
from ._call import DTYPE_NAMES, batched, call_plan, check_output, execute, host_key, host_plan, plain_types, remember
from ._memory_format import as_channels_first, stored_channels_last


def _host_key(op, input, weight, bias, args):
    """The call-plan key of a conv call on NumPy arrays (ops/_call.host_key, unrolled for
    the three arrays of the most frequent call), or None."""
    if type(input) is not np.ndarray or type(weight) is not np.ndarray:
        return None
    if bias is None:
        b = None
    elif type(bias) is np.ndarray:
        b = bias.shape, bias.dtype
    else:
        return None
    types = plain_types(args)
    return None if types is None else (op, args, types, input.shape, input.dtype, weight.shape, weight.dtype, b)


def _resolve(op, nd, input, weight, bias, activation, channels_last, device, args):
    """(backend, batched input, was_unbatched, spec) of a checked conv call."""
    backend, x, unbatched = batched(op, input, nd, device, (("weight", weight), ("bias", bias)))
    dtype = check_same_dtype(op, input=input, weight=weight, bias=bias)
    spec = _spec(op, shape_of(x), weight, bias, activation, channels_last, DTYPE_NAMES[dtype], args)
    return backend, x, unbatched, spec


def _spec(op, x_shape, weight, bias, activation, channels_last, dtype_name, args):
    """The resolved spec of a call on input of ``x_shape`` (batched) whose arrays are checked."""
    return resolve_conv(op, x_shape, shape_of(weight), bias_shape=None if bias is None else shape_of(bias),
                        activation=activation, channels_last=channels_last, dtype=dtype_name, **args)


def _run(family, op, nd, input, weight, bias, algo, activation, channels_last, device, **args):
    """Resolve a conv or transposed-conv call and run it; ``args`` are resolve_conv's
    geometry arguments (stride, padding, ...). A NumPy call seen before runs its
    CallPlan (ops/_call.py) and nothing else. Channels-first input stored channels-last
    runs the channels-last kernels (ops/_memory_format.py)."""
    if channels_last is False and type(input) is np.ndarray and not input.flags.c_contiguous:
        stored = stored_channels_last(input, nd)
        if stored is not None:
            return as_channels_first(_run(family, op, nd, stored, weight, bias, algo, activation, True, device,
                                          **args))
    key = _host_key(op, input, weight, bias, (algo, activation, channels_last, device, *args.values()))
    if key is not None:
        plan = call_plan(key)
        if plan is not None:
            return plan.run(input, weight, bias)

    backend, x, unbatched, spec = _resolve(op, nd, input, weight, bias, activation, channels_last, device, args)
    empty = lambda: np.empty(spec.output_shape, spec.dtype)  # noqa: E731
    if key is None or backend != "cpu":
        return execute(family, backend, spec, algo, input, (x, weight, bias), unbatched, empty)
    check_output(op, spec.output_shape, spec.dtype)
    plan = host_plan(family, spec, algo, (spec.input_shape if unbatched else None, None, None), unbatched, empty)
    result = plan.run(input, weight, bias)
    remember(key, plan)
    return result


# The geometry arguments of each family, in the order _run puts them in a call-plan key.
_GEOMETRY = {"conv": ("stride", "padding", "dilation", "groups", "padding_mode", "padding_value"),
             "conv_transpose": ("stride", "padding", "output_padding", "groups", "dilation", "output_size")}


def _conv(op, nd, input, weight, bias, stride, padding, dilation, groups, padding_mode,
          padding_value, algo, activation, channels_last, device):
    return _run("conv", op, nd, input, weight, bias, algo, activation, channels_last, device, stride=stride,
                padding=padding, dilation=dilation, groups=groups, padding_mode=padding_mode,
                padding_value=padding_value)


def prepared(fn, **kwargs):
    """``functools.partial(fn, **kwargs)`` for a conv or transposed conv function of this
    module (``fn(input, weight, bias)``), with the arguments' part of its call-plan key
    computed once: a repeated call on NumPy arrays looks its CallPlan up by the arrays'
    shapes and dtypes alone, skipping the front's argument handling (a few us of a tiny
    layer's call; the PyTorch bridge calls each layer through one). Any other call, and a
    first one, takes ``fn`` itself: the same key, results and errors."""
    op = fn.__name__
    family = "conv_transpose" if op.startswith("conv_transpose") else "conv"
    call = functools.partial(fn, **kwargs)
    try:
        bound = inspect.signature(fn).bind(None, None, **kwargs)
    except TypeError:
        return call  # fn raises it, naming the argument
    bound.apply_defaults()
    a = bound.arguments
    cl = a["channels_last"]
    args = (a["algo"], a["activation"], cl, a["device"], *(a[name] for name in _GEOMETRY[family]))
    types = plain_types(args)
    if types is None:
        return call

    def run(input, weight, bias=None):
        if type(input) is np.ndarray and type(weight) is np.ndarray and (cl is not False or input.flags.c_contiguous):
            if bias is None:
                b = None
            elif type(bias) is np.ndarray:
                b = bias.shape, bias.dtype
            else:
                return call(input, weight, bias)
            plan = call_plan((op, args, types, input.shape, input.dtype, weight.shape, weight.dtype, b))
            if plan is not None:
                return plan.run(input, weight, bias)
        return call(input, weight, bias)

    return run


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
           padding_mode="zeros", padding_value=0.0, algo="auto", activation=None,
           channels_last=False, device=None):
    """1-D convolution of (N, C, W) input with (K, C/groups, kw) weight."""
    return _conv("conv1d", 1, input, weight, bias, stride, padding, dilation, groups,
                 padding_mode, padding_value, algo, activation, channels_last, device)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
           padding_mode="zeros", padding_value=0.0, algo="auto", activation=None,
           channels_last=False, device=None):
    """2-D convolution of (N, C, H, W) input with (K, C/groups, kh, kw) weight.

    >>> import numpy as np, fastconv as F
    >>> x = np.ones((1, 1, 4, 4), np.float32)
    >>> F.conv2d(x, np.ones((1, 1, 3, 3), np.float32), padding=1)[0, 0]
    array([[4., 6., 6., 4.],
           [6., 9., 9., 6.],
           [6., 9., 9., 6.],
           [4., 6., 6., 4.]], dtype=float32)
    """
    return _conv("conv2d", 2, input, weight, bias, stride, padding, dilation, groups,
                 padding_mode, padding_value, algo, activation, channels_last, device)


def conv3d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
           padding_mode="zeros", padding_value=0.0, algo="auto", activation=None,
           channels_last=False, device=None):
    """3-D convolution of (N, C, D, H, W) input with (K, C/groups, kd, kh, kw) weight."""
    return _conv("conv3d", 3, input, weight, bias, stride, padding, dilation, groups,
                 padding_mode, padding_value, algo, activation, channels_last, device)


def _conv_transpose(op, nd, input, weight, bias, stride, padding, output_padding, groups,
                    dilation, algo, activation, channels_last, device, output_size):
    return _run("conv_transpose", op, nd, input, weight, bias, algo, activation, channels_last, device,
                stride=stride, padding=padding, output_padding=output_padding, groups=groups,
                dilation=dilation, output_size=output_size)


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1, *, algo="auto", activation=None, channels_last=False,
                     device=None, output_size=None):
    """1-D transposed convolution; weight (C, K/groups, kw)."""
    return _conv_transpose("conv_transpose1d", 1, input, weight, bias, stride, padding,
                           output_padding, groups, dilation, algo, activation, channels_last,
                           device, output_size)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1, *, algo="auto", activation=None, channels_last=False,
                     device=None, output_size=None):
    """2-D transposed convolution; weight (C, K/groups, kh, kw)."""
    return _conv_transpose("conv_transpose2d", 2, input, weight, bias, stride, padding,
                           output_padding, groups, dilation, algo, activation, channels_last,
                           device, output_size)


def conv_transpose3d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1, *, algo="auto", activation=None, channels_last=False,
                     device=None, output_size=None):
    """3-D transposed convolution; weight (C, K/groups, kd, kh, kw)."""
    return _conv_transpose("conv_transpose3d", 3, input, weight, bias, stride, padding,
                           output_padding, groups, dilation, algo, activation, channels_last,
                           device, output_size)


def _channels(op, input, channels_last):
    shape = shape_of(input)
    if len(shape) not in (3, 4):
        raise ValueError(f"{op}: input must have 4 dims (N, C, H, W) or 3 (unbatched), got shape {tuple(shape)}")
    return shape[-1] if channels_last else shape[-3]


def _depthwise_checked(op, input, weight, channels_last):
    """The input's channel count, after checking the depthwise weight's shape against it."""
    channels = _channels(op, input, channels_last)
    wshape = shape_of(weight)
    if len(wshape) != 4 or wshape[1] != 1 or wshape[0] % max(channels, 1):
        raise ValueError(
            f"{op}: weight must have shape (C*M, 1, kh, kw) with C={channels} input "
            f"channels, got {tuple(wshape)}"
        )
    return channels


def _pointwise_weight(op, weight):
    """The pointwise weight as (K, C, 1, 1), from (K, C, 1, 1) or (K, C)."""
    wshape = shape_of(weight)
    if len(wshape) == 2:
        return weight.reshape(*wshape, 1, 1)
    if len(wshape) != 4 or tuple(wshape[2:]) != (1, 1):
        raise ValueError(f"{op}: weight must have shape (K, C, 1, 1) or (K, C), got {tuple(wshape)}")
    return weight


def depthwise_conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, **kw):
    """Depthwise 2-D convolution: weight (C*M, 1, kh, kw), M the channel multiplier."""
    channels = _depthwise_checked("depthwise_conv2d", input, weight, kw.get("channels_last", False))
    return conv2d(input, weight, bias, stride, padding, dilation, channels, **kw)


def pointwise_conv2d(input, weight, bias=None, **kw):
    """1x1 convolution: weight (K, C, 1, 1) or (K, C)."""
    return conv2d(input, _pointwise_weight("pointwise_conv2d", weight), bias, **kw)


_SEPARABLE_KEYWORDS = {"padding_mode", "padding_value", "algo", "channels_last", "device"}
_SEPARABLE_ALGOS = ("auto", "fused", "composed")


def separable_conv2d(input, depthwise_weight, pointwise_weight, bias=None, stride=1, padding=0,
                     dilation=1, *, depthwise_bias=None, activation=None, **kw):
    """Depthwise then pointwise convolution; ``activation`` applies after the pointwise bias.

    On NumPy input, algo "auto", "fused" or "composed" is a choice in the separable family
    of the dispatch table (both steps in one kernel, or one after the other); any other
    algo, and other arrays, run the two ops one after the other, each with ``algo``."""
    algo = kw.get("algo", "auto")
    if algo in _SEPARABLE_ALGOS and isinstance(input, np.ndarray) and kw.get("device") in (None, "cpu") \
            and set(kw) <= _SEPARABLE_KEYWORDS:
        return _separable_table(input, depthwise_weight, pointwise_weight, bias, stride, padding, dilation,
                                depthwise_bias, activation, algo, kw)
    if algo == "fused":
        raise ValueError("separable_conv2d: algo='fused' serves NumPy input on the CPU only; "
                         "use algo='composed' or 'auto' here")
    if algo == "composed":  # the two ops one after the other, each choosing its own kernel
        kw = {**kw, "algo": "auto"}
    hidden = depthwise_conv2d(input, depthwise_weight, depthwise_bias, stride, padding, dilation, **kw)
    kw = {k: v for k, v in kw.items() if k not in ("padding_mode", "padding_value")}
    return pointwise_conv2d(hidden, pointwise_weight, bias, activation=activation, **kw)


def _separable_table(input, depthwise_weight, pointwise_weight, bias, stride, padding, dilation, depthwise_bias,
                     activation, algo, kw):
    """separable_conv2d on NumPy arrays through the separable family of the dispatch table."""
    op, channels_last = "separable_conv2d", kw.get("channels_last", False)
    padding_mode, padding_value = kw.get("padding_mode", "zeros"), kw.get("padding_value", 0.0)
    arrays = (input, depthwise_weight, depthwise_bias, pointwise_weight, bias)  # the kernel's order
    key = host_key(op, (stride, padding, dilation, activation, algo, channels_last, padding_mode, padding_value,
                        kw.get("device")), *arrays)
    if key is not None:
        plan = call_plan(key)
        if plan is not None:
            return plan.run(*arrays)
    channels = _depthwise_checked(op, input, depthwise_weight, channels_last)
    pw = _pointwise_weight(op, pointwise_weight)
    geometry = {"stride": stride, "padding": padding, "dilation": dilation, "groups": channels,
                "padding_mode": padding_mode, "padding_value": padding_value}
    backend, x, unbatched, d = _resolve("conv2d", 2, input, depthwise_weight, depthwise_bias, None,
                                        channels_last, kw.get("device"), geometry)
    for name, arr in (("pointwise_weight", pw), ("bias", bias)):
        check_array(op, name, arr, backend)
    check_same_dtype(op, input=input, pointwise_weight=pw, bias=bias)
    pair = SeparablePair(d, _spec("conv2d", d.output_shape, pw, bias, activation, channels_last, d.dtype, {}))
    check_output(op, pair.pointwise.output_shape, d.dtype)
    if d.batch == 0:
        choose("separable", backend, pair, algo)  # a bad algo raises here too
        return np.empty(pair.pointwise.output_shape, d.dtype)
    pw_shape = None if pw is pointwise_weight else pw.shape
    plan = host_plan("separable", pair, algo, (x.shape if unbatched else None, None, None, pw_shape, None),
                     unbatched)
    result = plan.run(*arrays)
    if key is not None:
        remember(key, plan)
    return result
