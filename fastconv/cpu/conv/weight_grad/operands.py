"""The operands of a weight-gradient kernel, in the working layout.

The weight gradient of ``out[o] = sum_t x_padded[o * stride + t * dilation] * w[t]`` is
``dw[t] = sum_o grad_output[o] * x_padded[o * stride + t * dilation]``: the kernels read
the padded input exactly as the forward conv does (every padding mode, constant value
included), and grad_output, both channels-last, 3-D-lifted, C-contiguous, working dtype.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ...._arrays import working_dtype
from ....kernels.geometry import Geometry3, geometry3
from ....kernels.padding_index import source_index
from ..._jit import parallel_kernel
from ...layout import as_working, channels_last_5d, padded_input


@parallel_kernel
def pad_ncdhw_to_ndhwc(x, map_d, map_h, map_w, fill, out):
    """out[n, d, h, w, c] = x[n, c, map_d[d], map_h[h], map_w[w]], or fill where a map is -1:
    layout.pad_ndhwc for a channels-first source. One task per output row (n, d, h), read
    along W per channel, so the source streams; the row written (Wp x C) stays in L1."""
    n_img, dp, hp, wp, c_n = out.shape
    for t in prange(n_img * dp * hp):
        n = t // (dp * hp)
        r = t - n * (dp * hp)
        d = r // hp
        h = r - d * hp
        sd = map_d[d]
        sh = map_h[h]
        row = out[n, d, h]
        if sd < 0 or sh < 0:
            for w in range(wp):
                for c in range(c_n):
                    row[w, c] = fill
            continue
        for c in range(c_n):
            src = x[n, c, sd, sh]
            for w in range(wp):
                sw = map_w[w]
                row[w, c] = fill if sw < 0 else src[sw]


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


def weight_grad_operands(spec, x, grad_output):
    """(padded input (N, Dp, Hp, Wp, C), grad_output (N, OD, OH, OW, K), working dtype) of a
    forward conv ``spec``. grad_output may have fewer output positions than ``spec.out_size``
    (a transposed conv's weight gradient, output_padding >= stride): the kernels run over its
    own extent."""
    dtype = working_dtype(np.dtype(spec.dtype))
    geom = geometry3(spec)
    xp = working_ndhwc(x, spec.nd, spec.channels_last, geom.pads, spec.padding_mode, spec.padding_value, dtype)
    g5 = working_ndhwc(grad_output, spec.nd, spec.channels_last, ((0, 0),) * 3, "zeros", 0.0, dtype)
    return xp, g5, dtype


def weight_from_working(w5, spec):
    """(K, KD, KH, KW, Cg) working array -> (K, Cg, *kernel) in the spec's dtype."""
    k, cg = w5.shape[0], w5.shape[-1]
    w = np.moveaxis(w5, -1, 1).reshape(k, cg, *spec.kernel)
    return np.ascontiguousarray(w, dtype=np.dtype(spec.dtype))
