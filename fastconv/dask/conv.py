"""Convolutions on dask arrays: each output chunk is the in-memory fastconv op on the
input region that chunk reads (halo.py), padded at the array's outer edges only.

Channels: a convolution mixes every input channel of a group into each output, so an
input whose channel axis is split over several chunks is first rechunked to one channel
chunk (``input.rechunk({channel_axis: -1})``), and the output has one channel chunk.
Batch chunks map one to one onto output chunks; spatial output chunks follow the input's
(see halo.py for where they start).

Results: every output chunk runs the same kernel as the in-memory call with the same
``algo`` and thread count, so they agree bitwise; with ``algo="auto"`` a chunk may get a
different algorithm than the whole array would (the choice depends on the shape), and
then they agree to rounding only. Pin ``algo`` where bitwise equality matters.
"""

from __future__ import annotations

import numpy as np

from .. import ops
from ..spec.conv import resolve_conv
from . import halo
from ._front import check_input, check_numpy, crop_to, merge_channels, probe, spatial_axes, unbatch
from ._graph import blocked, resolve_threads

__all__ = ["conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
           "depthwise_conv2d", "separable_conv2d"]

_GATHERED = ("reflect", "replicate", "circular", "symmetric")


class _ConvRun:
    """One output chunk of a forward conv: the in-memory op on the chunk's region."""

    def __init__(self, fn, args, kwargs, spatial, padding_mode, padding_value, in_channels, channels_last, dtype):
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.spatial, self.padding_mode, self.padding_value = spatial, padding_mode, padding_value
        self.in_channels, self.channels_last, self.dtype = in_channels, channels_last, dtype

    def __call__(self, region, blocks):
        if region is None:  # some axis of this chunk lies wholly in (zeros/constant) padding
            sizes = [sum(p[2] - p[1] for p in blocks[a].pieces) + sum(blocks[a].pads) for a in self.spatial]
            batch = blocks[0].size
            shape = (batch, *sizes, self.in_channels) if self.channels_last else (batch, self.in_channels, *sizes)
            region = np.full(shape, self.padding_value, self.dtype)
            padding, mode = 0, "zeros"
        elif self.padding_mode in _GATHERED:
            padding, mode = 0, "zeros"  # the region is already padded (halo.window_axis gathered it)
        else:
            padding, mode = tuple(blocks[a].pads for a in self.spatial), self.padding_mode
        out = self.fn(region, *self.args, padding=padding, padding_mode=mode, padding_value=self.padding_value,
                      **self.kwargs)
        return crop_to(out, blocks, self.spatial)


def _forward(op, nd, fn, input, weight_args, spec_weight, stride, padding, dilation, groups, padding_mode,
             padding_value, channels_last, threads, call_kwargs, spec_bias=None, check=None):
    """Build a forward conv (conv*, depthwise, separable) over a dask input.

    ``fn(region, *weight_args, padding=..., padding_mode=..., padding_value=..., **call_kwargs)``
    is the in-memory op; ``spec_weight`` the weight whose window the halo follows;
    ``check(probe)`` runs the in-memory op on a zero-batch probe to check every argument."""
    x, unbatched = check_input(op, input, nd, channels_last, call_kwargs.get("device"))
    threads = resolve_threads(op, threads)
    out_probe = check(probe(x))
    c_axis = nd + 1 if channels_last else 1
    if groups == "channels":  # depthwise and separable: one group per input channel
        groups = x.shape[c_axis]
    conv_op = f"conv{nd}d"
    spec = resolve_conv(conv_op, x.shape, spec_weight.shape, stride=stride, padding=padding, dilation=dilation,
                        groups=groups, padding_mode=padding_mode, padding_value=padding_value,
                        channels_last=channels_last, dtype=x.dtype.name)
    x = merge_channels(x, nd, channels_last)
    spatial = spatial_axes(nd, channels_last)
    plans = [None] * x.ndim
    plans[0] = halo.identity_axis(x.chunks[0])
    plans[c_axis] = halo.merged_axis(x.chunks[c_axis], out_probe.shape[c_axis])
    for i, a in enumerate(spatial):
        plans[a] = halo.window_axis(x.chunks[a], spec.in_size[i], spec.kernel[i], spec.stride[i], spec.dilation[i],
                                    spec.pads[i], spec.out_size[i], mode=spec.padding_mode)
    kwargs = {k: v for k, v in call_kwargs.items() if k != "device"}
    run = _ConvRun(fn, weight_args, kwargs, spatial, spec.padding_mode, spec.padding_value, spec.in_channels,
                   channels_last, x.dtype)
    token = (op, weight_args, stride, spec.pads, dilation, groups, padding_mode, padding_value, kwargs, threads)
    out = blocked(op, x, plans, run, x.dtype, threads, token)
    return unbatch(out, unbatched)


def _conv(op, nd, input, weight, bias, stride, padding, dilation, groups, padding_mode, padding_value, algo,
          activation, channels_last, device, threads):
    check_numpy(op, weight=weight, bias=bias)
    fn = getattr(ops.conv, op)
    call = {"stride": stride, "dilation": dilation, "groups": groups, "algo": algo, "activation": activation,
            "channels_last": channels_last, "device": device}

    def check(p):
        return fn(p, weight, bias, padding=padding, padding_mode=padding_mode, padding_value=padding_value, **call)

    return _forward(op, nd, fn, input, (weight, bias), weight, stride, padding, dilation, groups, padding_mode,
                    padding_value, channels_last, threads, call, check=check)


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, padding_mode="zeros",
           padding_value=0.0, algo="auto", activation=None, channels_last=False, device=None, threads="default"):
    """1-D convolution of a dask (N, C, W) input; arguments as :func:`fastconv.conv1d`.

    ``threads``: Numba threads per Dask task (default :func:`get_threads`, 1). Channels in
    several chunks are merged into one chunk first; see the module docstring."""
    return _conv("conv1d", 1, input, weight, bias, stride, padding, dilation, groups, padding_mode, padding_value,
                 algo, activation, channels_last, device, threads)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, padding_mode="zeros",
           padding_value=0.0, algo="auto", activation=None, channels_last=False, device=None, threads="default"):
    """2-D convolution of a dask (N, C, H, W) input; arguments as :func:`fastconv.conv2d`.

    Lazy: returns a dask array with known chunks. Each output chunk reads exactly the
    input region it needs, from as many input chunks as that takes; ``padding_mode``
    applies at the array's outer edges only. Channels in several chunks are merged into
    one chunk first (a conv mixes them); batch chunks map one to one. ``threads``: Numba
    threads per Dask task (default :func:`get_threads`, 1).

    >>> import numpy as np, dask.array as da, fastconv.dask as fd
    >>> x = da.ones((1, 1, 6, 6), chunks=(1, 1, 3, 3), dtype=np.float32)
    >>> fd.conv2d(x, np.ones((1, 1, 3, 3), np.float32), padding=1).compute()[0, 0, :2]
    array([[4., 6., 6., 6., 6., 4.],
           [6., 9., 9., 9., 9., 6.]], dtype=float32)
    """
    return _conv("conv2d", 2, input, weight, bias, stride, padding, dilation, groups, padding_mode, padding_value,
                 algo, activation, channels_last, device, threads)


def conv3d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, padding_mode="zeros",
           padding_value=0.0, algo="auto", activation=None, channels_last=False, device=None, threads="default"):
    """3-D convolution of a dask (N, C, D, H, W) input; arguments as :func:`fastconv.conv3d`.

    ``threads``: Numba threads per Dask task (default :func:`get_threads`, 1). Channels in
    several chunks are merged into one chunk first; see the module docstring."""
    return _conv("conv3d", 3, input, weight, bias, stride, padding, dilation, groups, padding_mode, padding_value,
                 algo, activation, channels_last, device, threads)


def depthwise_conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, *, padding_mode="zeros",
                     padding_value=0.0, algo="auto", activation=None, channels_last=False, device=None,
                     threads="default"):
    """Depthwise 2-D convolution of a dask input; weight (C*M, 1, kh, kw), as
    :func:`fastconv.depthwise_conv2d`. Channels in several chunks are merged first."""
    op = "depthwise_conv2d"
    check_numpy(op, weight=weight, bias=bias)
    fn = ops.conv.depthwise_conv2d
    call = {"stride": stride, "dilation": dilation, "algo": algo, "activation": activation,
            "channels_last": channels_last, "device": device}

    def check(p):
        return fn(p, weight, bias, padding=padding, padding_mode=padding_mode, padding_value=padding_value, **call)

    return _forward(op, 2, fn, input, (weight, bias), weight, stride, padding, dilation, "channels", padding_mode,
                    padding_value, channels_last, threads, call, check=check)


def separable_conv2d(input, depthwise_weight, pointwise_weight, bias=None, stride=1, padding=0, dilation=1, *,
                     depthwise_bias=None, activation=None, padding_mode="zeros", padding_value=0.0, algo="auto",
                     channels_last=False, device=None, threads="default"):
    """Depthwise then pointwise convolution of a dask input, as
    :func:`fastconv.separable_conv2d`; the halo is the depthwise step's. Channels in
    several chunks are merged first."""
    op = "separable_conv2d"
    check_numpy(op, depthwise_weight=depthwise_weight, pointwise_weight=pointwise_weight, bias=bias,
                depthwise_bias=depthwise_bias)
    fn = ops.conv.separable_conv2d
    call = {"stride": stride, "dilation": dilation, "depthwise_bias": depthwise_bias, "activation": activation,
            "algo": algo, "channels_last": channels_last, "device": device}

    def check(p):
        return fn(p, depthwise_weight, pointwise_weight, bias, padding=padding, padding_mode=padding_mode,
                  padding_value=padding_value, **call)

    return _forward(op, 2, fn, input, (depthwise_weight, pointwise_weight, bias), depthwise_weight, stride, padding,
                    dilation, "channels", padding_mode, padding_value, channels_last, threads, call, check=check)


# ---- transposed ----------------------------------------------------------------------------


class _TransposedRun:
    """One output chunk of a transposed conv: the in-memory op on the inputs that reach
    the chunk, its full output cropped to the chunk."""

    def __init__(self, fn, weight, bias, kwargs, spatial):
        self.fn, self.weight, self.bias, self.kwargs, self.spatial = fn, weight, bias, kwargs, spatial

    def __call__(self, region, blocks):
        pads = tuple(blocks[a].pads for a in self.spatial)
        output_padding = tuple(blocks[a].output_padding for a in self.spatial)
        out = self.fn(region, self.weight, self.bias, padding=pads, output_padding=output_padding, **self.kwargs)
        return crop_to(out, blocks, self.spatial)


def _conv_transpose(op, nd, input, weight, bias, stride, padding, output_padding, groups, dilation, algo,
                    activation, channels_last, device, output_size, threads):
    check_numpy(op, weight=weight, bias=bias)
    x, unbatched = check_input(op, input, nd, channels_last, device)
    threads = resolve_threads(op, threads)
    fn = getattr(ops.conv, op)
    call = {"stride": stride, "groups": groups, "dilation": dilation, "algo": algo, "activation": activation,
            "channels_last": channels_last}
    out_probe = fn(probe(x), weight, bias, padding=padding, output_padding=output_padding, device=device,
                   output_size=output_size, **call)
    spec = resolve_conv(op, x.shape, weight.shape, stride=stride, padding=padding, dilation=dilation, groups=groups,
                        output_padding=output_padding, output_size=output_size, channels_last=channels_last)
    x = merge_channels(x, nd, channels_last)
    spatial = spatial_axes(nd, channels_last)
    plans = [None] * x.ndim
    plans[0] = halo.identity_axis(x.chunks[0])
    c_axis = nd + 1 if channels_last else 1
    plans[c_axis] = halo.merged_axis(x.chunks[c_axis], out_probe.shape[c_axis])
    for i, a in enumerate(spatial):
        plans[a] = halo.transposed_axis(x.chunks[a], spec.in_size[i], spec.kernel[i], spec.stride[i],
                                        spec.dilation[i], spec.pads[i], spec.out_size[i])
    run = _TransposedRun(fn, weight, bias, call, spatial)
    token = (op, weight, bias, spec.pads, spec.out_size, call, threads)
    return unbatch(blocked(op, x, plans, run, x.dtype, threads, token), unbatched)


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                     algo="auto", activation=None, channels_last=False, device=None, output_size=None,
                     threads="default"):
    """1-D transposed convolution of a dask input; arguments as :func:`fastconv.conv_transpose1d`."""
    return _conv_transpose("conv_transpose1d", 1, input, weight, bias, stride, padding, output_padding, groups,
                           dilation, algo, activation, channels_last, device, output_size, threads)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                     algo="auto", activation=None, channels_last=False, device=None, output_size=None,
                     threads="default"):
    """2-D transposed convolution of a dask input; arguments as :func:`fastconv.conv_transpose2d`.

    Each output chunk reads the input positions whose contributions reach it and crops
    its local output; channels in several chunks are merged first."""
    return _conv_transpose("conv_transpose2d", 2, input, weight, bias, stride, padding, output_padding, groups,
                           dilation, algo, activation, channels_last, device, output_size, threads)


def conv_transpose3d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                     algo="auto", activation=None, channels_last=False, device=None, output_size=None,
                     threads="default"):
    """3-D transposed convolution of a dask input; arguments as :func:`fastconv.conv_transpose3d`."""
    return _conv_transpose("conv_transpose3d", 3, input, weight, bias, stride, padding, output_padding, groups,
                           dilation, algo, activation, channels_last, device, output_size, threads)
