"""Convolutions on dask arrays: each output chunk is the in-memory fastconv op on the
input region that chunk reads (halo.py), padded at the array's outer edges only.

Channels: a convolution mixes every input channel of a group into each output, so an
input whose channel axis is split over several chunks is first rechunked to one channel
chunk (``input.rechunk({channel_axis: -1})``), and the output has one channel chunk.
Batch chunks map one to one onto output chunks; spatial output chunks follow the input's
(see halo.py for where they start).

Results: every output chunk runs the same algorithm as the in-memory call with the same
``algo``, and each algorithm sums an output's products in an order fixed by the layer, not
by the call's extent or thread count (the direct kernel's plain and banded plans included:
cpu/conv/direct/banded.py), so they agree bitwise; with ``algo="auto"`` a chunk may get a
different algorithm than the whole array would (the choice depends on the shape), and
then they agree to rounding only. Pin ``algo`` where bitwise equality matters.
"""

from __future__ import annotations

import threading

import numpy as np

from .. import ops
from ..spec.conv import resolve_conv
from . import halo
from ._front import check_input, check_numpy, crop_to, merge_channels, probe, spatial_axes, unbatch
from ._graph import blocked, resolve_threads

__all__ = ["conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
           "depthwise_conv2d", "separable_conv2d"]

_GATHERED = ("reflect", "replicate", "circular", "symmetric")
BAND_ROWS = 128  # output rows per band of a single-channel filter (see _Banded)


_LOCAL = threading.local()


def _scratch(shape, dtype):
    """An uninitialised array, kept for the next task of this thread (same shape and
    dtype, as most chunks are): fresh pages cost a fault each, about as much as the
    depthwise kernel's own work on them. Only _Banded uses it, for the bands it hands
    to conv2d, which returns a new array and keeps no reference to its input."""
    buf = getattr(_LOCAL, "bands", None)
    if buf is None or buf.shape != shape or buf.dtype != dtype:
        _LOCAL.bands = None
        buf = _LOCAL.bands = np.empty(shape, dtype)
    return buf


class _Banded:
    """A single-channel 2-D filter (1 input channel, 1 output channel, groups 1) as
    fastconv's depthwise kernel over row bands of the chunk.

    The direct kernel vectorises over output channels and so runs one channel at a
    fraction of its width (about 330 MPixel/s on one thread here, 3x3); the depthwise
    kernel vectorises along rows (about 3.4 GPixel/s). The in-memory conv2d offers
    "depthwise" only for groups == channels > 1, so with ``algo="auto"`` each task cuts
    its padded region into bands of BAND_ROWS output rows (with their halo rows), stacks
    them as channels and runs ``conv2d(bands, weight repeated, groups=bands,
    algo="depthwise")``; the bands' outputs, in order, are the chunk's output rows. Each
    output is the same sum of the same taps in the same order as the direct kernel's,
    then the bias and the activation as the direct kernel applies them (tests/test_dask.py
    checks bitwise equality with ``algo="direct"`` in memory)."""

    def __init__(self, weight, bias, stride, dilation, activation, channels_last, fill):
        self.weight, self.bias, self.activation = weight, bias, activation
        self.stride, self.dilation, self.channels_last, self.fill = stride, dilation, channels_last, fill

    def __call__(self, tiles, size, pads, out_size):
        """``tiles``: (array (N, h, w), first row, first column) pieces that tile the real
        input region of ``size`` (rows, columns); ``pads``: the region's (begin, end) pads."""
        first = tiles[0][0]
        n, dtype = first.shape[0], first.dtype
        h, w = size
        (pt, _), (pl, _) = pads
        ho, wo = out_size
        (sh, sw), (dh, dw) = self.stride, self.dilation
        kh, kw = self.weight.shape[2:]
        wp = (wo - 1) * sw + dw * (kw - 1) + 1
        bands = max(2, -(-ho // BAND_ROWS))
        rows = -(-ho // bands)
        hb = (rows - 1) * sh + dh * (kh - 1) + 1
        buf = _scratch((n, bands, hb, wp), dtype)
        cols = min(w, wp - pl)
        buf[..., :pl] = self.fill
        buf[..., pl + cols:] = self.fill
        for r in range(bands):
            p0 = r * rows * sh  # the band's first row, in padded coordinates
            lo, hi = max(p0, pt), min(p0 + hb, pt + h)
            if hi <= lo:
                buf[:, r, :, pl:pl + cols] = self.fill
                continue
            buf[:, r, :lo - p0, pl:pl + cols] = self.fill
            buf[:, r, hi - p0:, pl:pl + cols] = self.fill
            for tile, r0, c0 in tiles:
                a, b = max(lo - pt, r0), min(hi - pt, r0 + tile.shape[1])
                c1 = min(c0 + tile.shape[2], cols)
                if a < b and c0 < c1:
                    buf[:, r, a + pt - p0:b + pt - p0, pl + c0:pl + c1] = tile[:, a - r0:b - r0, :c1 - c0]
        weight = np.repeat(self.weight, bands, axis=0)
        out = ops.conv.conv2d(buf, weight, None, self.stride, 0, self.dilation, bands, algo="depthwise")
        out = out.reshape(n, bands * rows, wo)[:, :ho]
        # bias and activation after the sum, as the direct kernel applies them (the depthwise
        # kernel starts its sums from the bias, which rounds differently)
        if self.bias is not None:
            out += self.bias[0]
        if self.activation is not None:
            out[out < 0] = 0
            if self.activation == "relu6":
                out[out > 6] = 6
        return out[..., None] if self.channels_last else out[:, None]


class _ConvRun:
    """One output chunk of a forward conv: the in-memory op on the chunk's region."""

    def __init__(self, fn, args, kwargs, spatial, padding_mode, padding_value, in_channels, channels_last, dtype,
                 banded=None):
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.spatial, self.padding_mode, self.padding_value = spatial, padding_mode, padding_value
        self.in_channels, self.channels_last, self.dtype = in_channels, channels_last, dtype
        self.banded = banded

    def takes_parts(self, blocks):
        """Can this chunk be built from its input pieces without assembling them first?
        (single-channel filters with zeros/constant padding: the pieces go straight into
        the bands, one copy fewer)"""
        return self.banded is not None and self.padding_mode not in _GATHERED

    def from_parts(self, parts, blocks):
        h_axis, w_axis = self.spatial
        grid = parts[0] if self.channels_last else parts[0][0]
        starts = [np.concatenate([[0], np.cumsum([p[2] - p[1] for p in blocks[a].pieces])]) for a in self.spatial]
        tiles = []
        for i, row in enumerate(grid):
            for j, piece in enumerate(row):
                tile = piece[0] if self.channels_last else piece  # channels-last: [channel chunk]
                tile = tile[..., 0] if self.channels_last else tile[:, 0]
                tiles.append((tile, int(starts[0][i]), int(starts[1][j])))
        pads = (blocks[h_axis].pads, blocks[w_axis].pads)
        size = (int(starts[0][-1]), int(starts[1][-1]))
        return self.banded(tiles, size, pads, (blocks[h_axis].size, blocks[w_axis].size))

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
        if self.banded is not None:
            pads = ((0, 0),) * 2 if padding == 0 else padding
            x = region[..., 0] if self.channels_last else region[:, 0]
            return self.banded([(x, 0, 0)], x.shape[1:], pads, tuple(blocks[a].size for a in self.spatial))
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
    banded = None
    if (op == "conv2d" and kwargs.get("algo") == "auto" and spec.in_channels == 1 and spec.out_channels == 1
            and spec.groups == 1 and not (x.dtype == np.float16 and weight_args[1] is not None)):
        # (float16 with a bias: the direct kernel adds the bias before rounding to float16)
        banded = _Banded(weight_args[0], weight_args[1], spec.stride, spec.dilation, kwargs.get("activation"),
                         channels_last, spec.padding_value if spec.padding_mode == "constant" else 0.0)
    run = _ConvRun(fn, weight_args, kwargs, spatial, spec.padding_mode, spec.padding_value, spec.in_channels,
                   channels_last, x.dtype, banded)
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
