"""Moving data between the user's layout and the kernels' working layout.

CPU kernels see channels-last, 3-D-lifted, C-contiguous arrays in the working dtype
(float32 for float16/float32 input, float64 for float64): input (N, D, H, W, C),
output (N, OD, OH, OW, K). 1-D and 2-D calls are lifted with unit D (and H) axes, so
one kernel serves every dimensionality.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .._arrays import working_dtype
from .._workspace import chunks, workspace_limit
from ..kernels.activation import activate
from ..kernels.geometry import Geometry3, geometry3
from ..kernels.padding_index import source_index
from ._jit import parallel_kernel

# (N, C, *spatial) -> (N, *spatial, C) axes by ndim: np.moveaxis's own axis checks cost a tiny call several us
_CHANNELS_TO_END = {n: (0, *range(2, n), 1) for n in (3, 4, 5)}


def channels_last_5d(x, nd: int, channels_last: bool):
    """A (N, D, H, W, C) view of a batched input, without copying."""
    if not channels_last:
        x = x.transpose(_CHANNELS_TO_END[x.ndim])
    return x[(slice(None),) + (None,) * (3 - nd)]


def kernel_ready(a, dtype) -> bool:
    """Can a kernel whose signature takes C-contiguous, writeable arrays of ``dtype`` take
    ``a`` as it is (flattened without a copy)?"""
    return a.dtype == dtype and a.flags.c_contiguous and a.flags.writeable and a.flags.aligned


def kernel_array(a, dtype):
    """``a`` when kernel_ready, else a C-contiguous writeable copy in ``dtype``."""
    return a if kernel_ready(a, dtype) else np.array(a, dtype=dtype, order="C")


def as_working(x, dtype):
    """float16 becomes float32 (Numba has no CPU float16); others pass through."""
    return x.astype(working_dtype(x.dtype)) if x.dtype == np.float16 else x


@parallel_kernel
def pad_ndhwc(x, map_d, map_h, map_w, fill, out):
    """out[n, d, h, w, :] = x[n, map_d[d], map_h[h], map_w[w], :], or fill where a map is -1."""
    n_img, dp, hp, wp, c = out.shape
    for t in prange(n_img * dp * hp):
        n = t // (dp * hp)
        r = t - n * (dp * hp)
        d = r // hp
        h = r - d * hp
        sd = map_d[d]
        sh = map_h[h]
        for w in range(wp):
            sw = map_w[w]
            if sd < 0 or sh < 0 or sw < 0:
                for k in range(c):
                    out[n, d, h, w, k] = fill
            else:
                for k in range(c):
                    out[n, d, h, w, k] = x[n, sd, sh, sw, k]


def padded_input(x5, geom: Geometry3, mode: str, value: float, dtype) -> np.ndarray:
    """The padded working-layout copy of a (N, D, H, W, C) view, in the working dtype."""
    maps = [source_index(n, b, e, mode) for n, (b, e) in zip(geom.in_size, geom.pads)]
    shape = (x5.shape[0], *(len(m) for m in maps), x5.shape[4])
    out = np.empty(shape, dtype)
    pad_ndhwc(as_working(x5, dtype), maps[0], maps[1], maps[2], dtype.type(value), out)
    return out


def contiguous_channels_last(x5, dtype) -> np.ndarray:
    """A C-contiguous copy of a (N, D, H, W, C) view in the working dtype, in one parallel pass."""
    maps = [np.arange(n, dtype=np.int64) for n in x5.shape[1:4]]
    out = np.empty(x5.shape, dtype)
    pad_ndhwc(as_working(x5, dtype), maps[0], maps[1], maps[2], dtype.type(0), out)
    return out


def padded_image_bytes(spec, dtype) -> int:
    geom = geometry3(spec)
    elems = spec.in_channels
    for n, (b, e) in zip(geom.in_size, geom.pads):
        elems *= n + b + e
    return elems * dtype.itemsize


def image_chunks(spec, bytes_per_image: int, share: float = 1.0):
    """Chunks of images whose scratch fits in ``share`` of the workspace cap."""
    return chunks(spec.batch, bytes_per_image, int(workspace_limit() * share))


def bias_vector(bias, spec, dtype) -> np.ndarray:
    if bias is None:
        return np.zeros(spec.out_channels, dtype)
    return np.ascontiguousarray(bias, dtype=dtype)


def output_from_working(out5, spec, dtype):
    """(N, OD, OH, OW, K) working array to the user's layout and dtype."""
    out = out5.reshape((spec.batch, *spec.out_size, out5.shape[-1]))
    if not spec.channels_last:
        out = np.moveaxis(out, -1, 1)
    if out.dtype == dtype and out.flags.c_contiguous:
        return out
    result = np.empty(out.shape, dtype)
    np.copyto(result, out, casting="unsafe")
    return result


@parallel_kernel
def bias_activation_rows(rows, bias, act):
    """rows (R, K) += bias, then the activation; in place."""
    n_rows, k = rows.shape
    for r in prange(n_rows):
        for j in range(k):
            rows[r, j] = activate(rows[r, j] + bias[j], act)
