"""Pooling on dask arrays: max, average and Lp windows (1-3-D) chunk by chunk, each
output chunk the in-memory op on the region its windows read, with the pooling padding
applied at the array's outer edges only; global average and max pooling as Dask
reductions. Channel and batch chunks map one to one (pooling never mixes channels)."""

from __future__ import annotations

import numpy as np

from .. import ops
from ..spec.pool import resolve_pool
from . import halo
from ._front import check_input, crop_to, probe, spatial_axes, unbatch
from ._graph import blocked, resolve_threads

__all__ = [
    "max_pool1d", "max_pool2d", "max_pool3d",
    "avg_pool1d", "avg_pool2d", "avg_pool3d",
    "lp_pool1d", "lp_pool2d", "lp_pool3d",
    "global_avg_pool", "global_max_pool",
]


class _PoolRun:
    """One output chunk of a window pool: the in-memory op on the chunk's region."""

    def __init__(self, fn, args, kwargs, spatial, mode, in_size, dtype, return_indices, nd):
        self.fn, self.args, self.kwargs, self.spatial = fn, args, kwargs, spatial
        self.mode, self.in_size, self.dtype, self.return_indices, self.nd = mode, in_size, dtype, return_indices, nd

    def __call__(self, region, blocks):
        if region is None:  # every window of the chunk lies wholly in padding
            shape = tuple(b.size for b in blocks)
            fill = -np.inf if self.mode == "max" else 0.0
            values = np.full(shape, fill, self.dtype)
            return (values, np.full(shape, -1, np.int64)) if self.return_indices else values
        padding = tuple(blocks[a].pads for a in self.spatial)
        out = self.fn(region, *self.args, padding=padding, **self.kwargs)
        if not self.return_indices:
            return crop_to(out, blocks, self.spatial)
        values, indices = out
        local = tuple(region.shape[a] for a in self.spatial)
        origin = tuple(blocks[a].origin for a in self.spatial)
        found = indices >= 0
        coords = np.unravel_index(np.where(found, indices, 0), local)
        flat = np.ravel_multi_index(tuple(c + o for c, o in zip(coords, origin)), self.in_size)
        return crop_to(values, blocks, self.spatial), crop_to(np.where(found, flat, -1), blocks, self.spatial)


def _pool(op, mode, nd, input, kernel_size, stride, padding, dilation, ceil_mode, channels_last, device, threads, *,
          fn_args=(), fn_kwargs, spec_kwargs):
    x, unbatched = check_input(op, input, nd, channels_last, device)
    threads = resolve_threads(op, threads)
    fn = getattr(ops.pooling, op)
    kwargs = dict(fn_kwargs, stride=stride, dilation=dilation, ceil_mode=ceil_mode, channels_last=channels_last)
    fn(probe(x), *fn_args, kernel_size, padding=padding, device=device, **kwargs)  # checks every argument
    spec = resolve_pool(op, mode, nd, x.shape, kernel_size, stride, padding, dilation, ceil_mode=bool(ceil_mode),
                        channels_last=bool(channels_last), dtype=x.dtype.name, **spec_kwargs)
    spatial = spatial_axes(nd, channels_last)
    plans = [halo.identity_axis(c) for c in x.chunks]
    for i, a in enumerate(spatial):
        plans[a] = halo.window_axis(x.chunks[a], spec.in_size[i], spec.kernel[i], spec.stride[i], spec.dilation[i],
                                    spec.pads[i], spec.out_size[i], max_end_pad=spec.pads[i][1])
    return_indices = bool(spec.return_indices)
    run = _PoolRun(fn, (*fn_args, kernel_size), kwargs, spatial, mode, spec.in_size, x.dtype, return_indices, nd)
    token = (op, fn_args, kernel_size, spec.pads, kwargs, threads)
    outputs = (x.dtype, np.dtype(np.int64)) if return_indices else None
    return unbatch(blocked(op, x, plans, run, x.dtype, threads, token, outputs=outputs), unbatched)


def _max(op, nd, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, channels_last, device,
         threads):
    return _pool(op, "max", nd, input, kernel_size, stride, padding, dilation, ceil_mode, channels_last, device,
                 threads, fn_kwargs={"return_indices": return_indices},
                 spec_kwargs={"return_indices": bool(return_indices)})


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False, *,
               channels_last=False, device=None, threads="default"):
    """1-D max pooling of a dask input, as :func:`fastconv.max_pool1d`; indices are flat
    over each channel's whole (unchunked) spatial plane, as in memory."""
    return _max("max_pool1d", 1, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices,
                channels_last, device, threads)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False, *,
               channels_last=False, device=None, threads="default"):
    """2-D max pooling of a dask input, as :func:`fastconv.max_pool2d`; indices are flat
    over each channel's whole (unchunked) spatial plane, as in memory."""
    return _max("max_pool2d", 2, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices,
                channels_last, device, threads)


def max_pool3d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False, *,
               channels_last=False, device=None, threads="default"):
    """3-D max pooling of a dask input, as :func:`fastconv.max_pool3d`."""
    return _max("max_pool3d", 3, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices,
                channels_last, device, threads)


def _avg(op, nd, input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, dilation,
         channels_last, device, threads):
    return _pool(op, "avg", nd, input, kernel_size, stride, padding, dilation, ceil_mode, channels_last, device,
                 threads, fn_kwargs={"count_include_pad": count_include_pad, "divisor_override": divisor_override},
                 spec_kwargs={"count_include_pad": bool(count_include_pad), "divisor_override": divisor_override})


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None, *, dilation=1, channels_last=False, device=None, threads="default"):
    """1-D average pooling of a dask input, as :func:`fastconv.avg_pool1d`."""
    return _avg("avg_pool1d", 1, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                divisor_override, dilation, channels_last, device, threads)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None, *, dilation=1, channels_last=False, device=None, threads="default"):
    """2-D average pooling of a dask input, as :func:`fastconv.avg_pool2d`."""
    return _avg("avg_pool2d", 2, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                divisor_override, dilation, channels_last, device, threads)


def avg_pool3d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None, *, dilation=1, channels_last=False, device=None, threads="default"):
    """3-D average pooling of a dask input, as :func:`fastconv.avg_pool3d`."""
    return _avg("avg_pool3d", 3, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                divisor_override, dilation, channels_last, device, threads)


def _lp(op, nd, input, norm_type, kernel_size, stride, ceil_mode, padding, dilation, channels_last, device,
        threads):
    return _pool(op, "lp", nd, input, kernel_size, stride, padding, dilation, ceil_mode, channels_last, device,
                 threads, fn_args=(norm_type,), fn_kwargs={}, spec_kwargs={"norm_type": norm_type})


def lp_pool1d(input, norm_type, kernel_size, stride=None, ceil_mode=False, *, padding=0, dilation=1,
              channels_last=False, device=None, threads="default"):
    """1-D power-average pooling of a dask input, as :func:`fastconv.lp_pool1d`."""
    return _lp("lp_pool1d", 1, input, norm_type, kernel_size, stride, ceil_mode, padding, dilation, channels_last,
               device, threads)


def lp_pool2d(input, norm_type, kernel_size, stride=None, ceil_mode=False, *, padding=0, dilation=1,
              channels_last=False, device=None, threads="default"):
    """2-D power-average pooling of a dask input, as :func:`fastconv.lp_pool2d`."""
    return _lp("lp_pool2d", 2, input, norm_type, kernel_size, stride, ceil_mode, padding, dilation, channels_last,
               device, threads)


def lp_pool3d(input, norm_type, kernel_size, stride=None, ceil_mode=False, *, padding=0, dilation=1,
              channels_last=False, device=None, threads="default"):
    """3-D power-average pooling of a dask input, as :func:`fastconv.lp_pool3d`."""
    return _lp("lp_pool3d", 3, input, norm_type, kernel_size, stride, ceil_mode, padding, dilation, channels_last,
               device, threads)


# ---- global --------------------------------------------------------------------------------


def _global(op, input, channels_last, device):
    if not hasattr(input, "dask") or not hasattr(input, "chunks"):
        raise TypeError(f"{op}: input must be a dask.array.Array, got {type(input).__name__}")
    if input.ndim not in (3, 4, 5):
        raise ValueError(f"{op}: input must have 3, 4 or 5 dims (N, C, *spatial) with 1 to 3 spatial dims, "
                         f"got shape {input.shape}")
    nd = input.ndim - 2
    getattr(ops.pooling, op)(probe(input), channels_last=channels_last, device=device)  # checks every argument
    x, _ = check_input(op, input, nd, channels_last, device)
    return x, spatial_axes(nd, bool(channels_last))


def global_avg_pool(input, *, channels_last=False, device=None):
    """Mean over every spatial dim of a batched dask input, keeping them as size 1.

    A Dask reduction: each chunk sums in float64, the partial sums are added in a tree
    and divided once, then cast to the input's dtype. The chunked sum runs in a
    different order than the in-memory kernel's, so the two agree to rounding, not
    bitwise (the float64 partial sums make this one the more accurate)."""
    x, axes = _global("global_avg_pool", input, channels_last, device)
    count = int(np.prod([x.shape[a] for a in axes]))
    total = x.sum(axis=axes, dtype=np.float64, keepdims=True)
    return (total / count).astype(x.dtype)


def global_max_pool(input, *, channels_last=False, device=None):
    """Max over every spatial dim of a batched dask input, keeping them as size 1; a Dask
    reduction, bitwise equal to the in-memory call (a NaN wins)."""
    x, axes = _global("global_max_pool", input, channels_last, device)
    return x.max(axis=axes, keepdims=True)
