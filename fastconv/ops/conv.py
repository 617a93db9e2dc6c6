"""conv1d/2d/3d, conv_transpose1d/2d/3d and the depthwise, pointwise and separable
shortcuts, shaped like torch.nn.functional."""

from __future__ import annotations

import numpy as np

from .._arrays import check_array, check_same_dtype, shape_of
from ..dispatch import choose
from ..spec.conv import resolve_conv
from ..spec.separable import SeparablePair
from ._call import CallPlan, batched, call_plan, check_output, choose_cached, execute, remember
from ._spec_cache import DTYPE_NAMES, Uncacheable, cached_spec, flag_key, key_of


def _host_key(op, input, weight, bias, algo, activation, channels_last, device, args):
    """The key of a call on NumPy arrays, from which a previous call's checks and dispatch
    follow: every array's type, shape and dtype and every other argument (see
    _spec_cache.key_of); None when the call is not of that kind."""
    if device not in (None, "cpu") or type(input) is not np.ndarray or type(weight) is not np.ndarray:
        return None
    if bias is None:
        b = None
    elif type(bias) is np.ndarray:
        b = (bias.shape, bias.dtype)
    else:
        return None
    try:
        return ("conv call", op, input.shape, input.dtype, weight.shape, weight.dtype, b, key_of(algo),
                key_of(activation),
                flag_key(channels_last), device, *(key_of(v) for v in args.values()))
    except Uncacheable:
        return None


def _resolve(op, nd, input, weight, bias, activation, channels_last, device, args):
    """(backend, batched input, was_unbatched, spec) of a checked conv call."""
    backend, x, unbatched = batched(op, input, nd, device, (("weight", weight), ("bias", bias)))
    dtype = check_same_dtype(op, input=input, weight=weight, bias=bias)
    spec = _spec(op, shape_of(x), weight, bias, activation, channels_last, DTYPE_NAMES[dtype], args)
    return backend, x, unbatched, spec


def _spec(op, x_shape, weight, bias, activation, channels_last, dtype_name, args):
    """The resolved spec of a call on input of ``x_shape`` (batched) whose arrays are checked."""
    w_shape = shape_of(weight)
    b_shape = None if bias is None else shape_of(bias)
    return cached_spec(
        lambda: (op, x_shape, w_shape, b_shape, key_of(activation), flag_key(channels_last), dtype_name,
                 *(key_of(v) for v in args.values())),
        resolve_conv, op, x_shape, w_shape, bias_shape=b_shape, activation=activation,
        channels_last=channels_last, dtype=dtype_name, **args,
    )


def _run(family, op, nd, input, weight, bias, algo, activation, channels_last, device, **args):
    """Resolve (or find the resolved spec of) a conv or transposed-conv call and run it;
    ``args`` are resolve_conv's geometry arguments (stride, padding, ...).

    A NumPy call seen before (same key, see _host_key) goes straight to the kernel that
    served it: its checks passed then and depend on nothing the key leaves out. Errors
    and empty batches are never kept."""
    key = _host_key(op, input, weight, bias, algo, activation, channels_last, device, args)
    if key is not None:
        plan = call_plan(key)
        if plan is not None:
            return plan.run(input, weight, bias)

    backend, x, unbatched, spec = _resolve(op, nd, input, weight, bias, activation, channels_last, device, args)
    if key is None or backend != "cpu" or spec.batch == 0:
        return execute(family, backend, spec, algo, input, (x, weight, bias), unbatched,
                       lambda: np.empty(spec.output_shape, spec.dtype))
    check_output(op, spec.output_shape, spec.dtype)
    impl = choose_cached(family, backend, spec, algo)
    plan = CallPlan(spec, impl, _host_runner(spec, impl.fn, unbatched))
    result = plan.run(input, weight, bias)
    remember(key, plan)
    return result


def _host_runner(spec, fn, unbatched):
    """``run(input, weight, bias)`` of a conv call on NumPy arrays resolved to ``spec``."""
    if not unbatched:
        return lambda x, weight, bias: fn(spec, x, weight, bias)
    batched_shape = spec.input_shape

    def run(x, weight, bias):
        out = fn(spec, x.reshape(batched_shape), weight, bias)
        return out.reshape(out.shape[1:])

    return run


def _conv(op, nd, input, weight, bias, stride, padding, dilation, groups, padding_mode,
          padding_value, algo, activation, channels_last, device):
    return _run("conv", op, nd, input, weight, bias, algo, activation, channels_last, device, stride=stride,
                padding=padding, dilation=dilation, groups=groups, padding_mode=padding_mode,
                padding_value=padding_value)


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
    channels = _depthwise_checked(op, input, depthwise_weight, channels_last)
    pw = _pointwise_weight(op, pointwise_weight)
    geometry = {"stride": stride, "padding": padding, "dilation": dilation, "groups": channels,
                "padding_mode": kw.get("padding_mode", "zeros"), "padding_value": kw.get("padding_value", 0.0)}
    backend, x, unbatched, d = _resolve("conv2d", 2, input, depthwise_weight, depthwise_bias, None,
                                        channels_last, kw.get("device"), geometry)
    for name, arr in (("pointwise_weight", pw), ("bias", bias)):
        check_array(op, name, arr, backend)
    check_same_dtype(op, input=input, pointwise_weight=pw, bias=bias)
    pair = SeparablePair(d, _spec("conv2d", d.output_shape, pw, bias, activation, channels_last, d.dtype, {}))
    check_output(op, pair.pointwise.output_shape, d.dtype)
    impl = choose("separable", backend, pair, algo)
    if d.batch == 0:
        return np.empty(pair.pointwise.output_shape, d.dtype)
    out = impl.fn(pair, x, depthwise_weight, depthwise_bias, pw, bias)
    return out.reshape(out.shape[1:]) if unbatched else out
