"""Argument handling shared by fastconv.dask's conv and pooling front ends."""

from __future__ import annotations

import numpy as np
from dask.array import Array


def check_input(op: str, input, nd: int, channels_last: bool, device=None):
    """(batched dask input, was_unbatched) after checking the input's kind and rank."""
    if not isinstance(input, Array):
        raise TypeError(f"{op}: input must be a dask.array.Array, got {type(input).__name__} "
                        f"(use fastconv.{op} for in-memory arrays)")
    if device not in (None, "cpu"):
        raise ValueError(f"{op}: device={device!r} is not supported by fastconv.dask; expected None or 'cpu'")
    if any(np.isnan(c) for dim in input.chunks for c in dim):
        raise ValueError(f"{op}: input has unknown chunk sizes {input.chunks}; call input.compute_chunk_sizes() first")
    if input.ndim == nd + 1:
        return input[None], True
    if input.ndim != nd + 2:
        layout = "(N, *spatial, C)" if channels_last else "(N, C, *spatial)"
        raise ValueError(f"{op}: input must have {nd + 2} dims {layout} (batched) or {nd + 1} (unbatched), "
                         f"got shape {input.shape}")
    return input, False


def check_numpy(op: str, **arrays):
    for name, a in arrays.items():
        if a is not None and not isinstance(a, np.ndarray):
            raise TypeError(f"{op}: {name} must be a numpy.ndarray (weights stay in memory), got {type(a).__name__}")


def probe(x):
    """A zero-batch NumPy stand-in for ``x``: the in-memory op checks every argument on it
    and returns the output's shape, at no cost."""
    return np.empty((0, *x.shape[1:]), x.dtype)


def channel_axis(nd: int, channels_last: bool) -> int:
    return nd + 1 if channels_last else 1


def spatial_axes(nd: int, channels_last: bool) -> tuple:
    return tuple(range(1, nd + 1)) if channels_last else tuple(range(2, nd + 2))


def merge_channels(x, nd: int, channels_last: bool):
    """``x`` with its channel axis in one chunk."""
    axis = channel_axis(nd, channels_last)
    return x if len(x.chunks[axis]) == 1 else x.rechunk({axis: -1})


def unbatch(result, unbatched: bool):
    if not unbatched:
        return result
    if isinstance(result, tuple):
        return tuple(r[0] for r in result)
    return result[0]


def crop_to(out, blocks, axes):
    """``out`` cut to each block's size along ``axes`` (a local call may give more)."""
    cut = [slice(None)] * out.ndim
    for axis in axes:
        if out.shape[axis] != blocks[axis].size:
            cut[axis] = slice(0, blocks[axis].size)
    return out[tuple(cut)]
