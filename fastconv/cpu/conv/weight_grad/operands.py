"""The operands of a weight-gradient kernel, in the working layout.

The weight gradient of ``out[o] = sum_t x_padded[o * stride + t * dilation] * w[t]`` is
``dw[t] = sum_o grad_output[o] * x_padded[o * stride + t * dilation]``: the kernels read
the padded input exactly as the forward conv does (every padding mode, constant value
included), and grad_output, both channels-last, 3-D-lifted, C-contiguous, working dtype.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from ...._arrays import working_dtype
from ...._workspace import chunks, workspace_limit
from ....kernels.geometry import Geometry3, geometry3
from ....kernels.padding_index import source_index
from ..._jit import parallel_kernel
from ...layout import as_working, channels_last_5d, padded_input

TRANSPOSE_PIXELS = 2048  # output pixels per task of pad_ncdhw_to_ndhwc (whole rows)
TRANSPOSE_CHANNELS = 16  # channels per pass over a task's pixels


@parallel_kernel
def pad_ncdhw_to_ndhwc(x, map_d, map_h, map_w, fill, out):
    """out[n, d, h, w, c] = x[n, c, map_d[d], map_h[h], map_w[w]], or fill where a map is -1:
    layout.pad_ndhwc for a channels-first source. A task owns whole rows of about
    TRANSPOSE_PIXELS pixels and fills them TRANSPOSE_CHANNELS channels at a time, so each pass
    reads that many source rows as streams and writes whole cache lines (one task per row,
    channel by channel, took 1.5-2x the time with the source out of cache); fewer channels
    than that go channel by channel along each row."""
    n_img, dp, hp, wp, c_n = out.shape
    rows = max(1, min(hp, TRANSPOSE_PIXELS // max(wp, 1)))
    hb = (hp + rows - 1) // rows
    for t in prange(n_img * dp * hb):
        n = t // (dp * hb)
        r = t - n * (dp * hb)
        d = r // hb
        h0 = (r - d * hb) * rows
        sd = map_d[d]
        for c0 in range(0, c_n, TRANSPOSE_CHANNELS):
            c1 = min(c0 + TRANSPOSE_CHANNELS, c_n)
            for h in range(h0, min(h0 + rows, hp)):
                sh = map_h[h]
                row = out[n, d, h]
                if sd < 0 or sh < 0:
                    for w in range(wp):
                        for c in range(c0, c1):
                            row[w, c] = fill
                elif c_n < TRANSPOSE_CHANNELS:
                    for c in range(c_n):
                        src = x[n, c, sd, sh]
                        for w in range(wp):
                            sw = map_w[w]
                            row[w, c] = fill if sw < 0 else src[sw]
                else:
                    src = x[n, :, sd, sh]
                    for w in range(wp):
                        sw = map_w[w]
                        if sw < 0:
                            for c in range(c0, c1):
                                row[w, c] = fill
                        else:
                            for c in range(c0, c1):
                                row[w, c] = src[c, sw]


def working_ndhwc(x, nd, channels_last, pads3, mode, value, dtype):
    """The padded (N, Dp, Hp, Wp, C) working copy of a batched array in the user's layout."""
    if channels_last:
        x5 = channels_last_5d(x, nd, True)
        if all(p == (0, 0) for p in pads3) and x5.dtype == dtype and x5.flags.c_contiguous:
            return x5
        return padded_input(x5, Geometry3(x5.shape[1:4], (), (), (), pads3, ()), mode, value, dtype)
    x5 = x[(slice(None), slice(None)) + (None,) * (3 - nd)]
    maps = [source_index(n, b, e, mode) for n, (b, e) in zip(x5.shape[2:], pads3)]
    out = np.empty((x5.shape[0], *(len(m) for m in maps), x5.shape[1]), dtype)
    pad_ncdhw_to_ndhwc(as_working(x5, dtype), maps[0], maps[1], maps[2], dtype.type(value), out)
    return out


def weight_grad_chunks(spec, x, grad_output, share: float = 1.0):
    """(padded input (n, Dp, Hp, Wp, C), grad_output (n, OD, OH, OW, K)) in the working layout
    and dtype, for consecutive chunks of images whose two copies fit in ``share`` of the
    workspace cap (a single image larger than that is a chunk by itself). grad_output may have fewer
    output positions than ``spec.out_size`` (a transposed conv's weight gradient,
    output_padding >= stride): the kernels run over its own extent."""
    dtype = working_dtype(np.dtype(spec.dtype))
    geom = geometry3(spec)
    padded = math.prod(n + b + e for n, (b, e) in zip(geom.in_size, geom.pads))
    g_pixels = math.prod(grad_output.shape[1:])  # K * output pixels
    per_image = (padded * spec.in_channels + g_pixels) * dtype.itemsize
    for n0, n1 in chunks(spec.batch, per_image, int(workspace_limit() * share)):
        xp = working_ndhwc(x[n0:n1], spec.nd, spec.channels_last, geom.pads, spec.padding_mode,
                           spec.padding_value, dtype)
        g5 = working_ndhwc(grad_output[n0:n1], spec.nd, spec.channels_last, ((0, 0),) * 3, "zeros", 0.0, dtype)
        yield xp, g5


def weight_from_working(w5, spec):
    """(K, KD, KH, KW, Cg) working array -> (K, Cg, *kernel) in the spec's dtype."""
    k, cg = w5.shape[0], w5.shape[-1]
    w = np.moveaxis(w5, -1, 1).reshape(k, cg, *spec.kernel)
    return np.ascontiguousarray(w, dtype=np.dtype(spec.dtype))
