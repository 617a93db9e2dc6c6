"""im2col + GEMM convolution on the CPU.

A Numba kernel copies the receptive fields of a chunk of output pixels into a column
matrix (G, rows, KD*KH*KW*C/G); :func:`fastconv.cpu.blas.gemm` multiplies it by the packed weight; a
Numba epilogue adds bias and the activation. Columns are built in chunks of output
rows that fit in half the workspace cap. (1x1 convolutions have their own
algorithm, "gemm", in conv/gemm.py, which needs no columns.)
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ..._arrays import working_dtype
from ..._workspace import chunks, workspace_limit
from ...dispatch import register
from ...kernels.element_index import pixel_position
from ...kernels.geometry import geometry3
from .._jit import parallel_kernel
from ..blas import gemm
from ..layout import bias_activation_rows
from ..weights import pack_conv_weight
from .driver import run_on_padded_chunks


@parallel_kernel
def im2col_ndhwc(xp, row0, od_n, oh_n, ow_n, kd_n, kh_n, kw_n, sd, sh, sw, dd, dh, dw, cols):
    """cols[g, r, tap*Cg + c] = receptive field of output pixel row0 + r (flat over n, od, oh, ow)."""
    groups, n_rows, _ = cols.shape
    cg = xp.shape[4] // groups
    for r in prange(n_rows):
        p = row0 + r
        n, od, oh, ow = pixel_position(p, od_n, oh_n, ow_n)
        for kd in range(kd_n):
            for kh in range(kh_n):
                for kw in range(kw_n):
                    src = xp[n, od * sd + kd * dd, oh * sh + kh * dh, ow * sw + kw * dw]
                    base = ((kd * kh_n + kh) * kw_n + kw) * cg
                    for g in range(groups):
                        for c in range(cg):
                            cols[g, r, base + c] = src[g * cg + c]


def _gemm_weight(weight, spec, dtype):
    """(G, KD*KH*KW*Cg, Kg) from the packed (G, KD, KH, KW, Cg, Kg) weight."""
    wpk = pack_conv_weight(weight, spec, dtype)
    return wpk.reshape(spec.groups, -1, spec.out_per_group)


@register("conv", "cpu", "im2col", note="im2col columns (Numba) + GEMM on fastconv's threads, chunked")
def conv_im2col(spec, x, weight, bias):
    dtype = working_dtype(np.dtype(spec.dtype))
    wmat = _gemm_weight(weight, spec, dtype)
    geom = geometry3(spec)
    groups, kg = spec.groups, spec.out_per_group
    taps_c = wmat.shape[1]

    def call(xp, out, b, act):
        rows = out.reshape(-1, spec.out_channels)
        budget = workspace_limit() // 2
        step = max(1, budget // max(groups * taps_c * dtype.itemsize, 1))
        buffer = np.empty(groups * min(step, rows.shape[0]) * taps_c, dtype)  # one chunk's columns, reused
        for r0, r1 in chunks(rows.shape[0], groups * taps_c * dtype.itemsize, budget):
            cols = buffer[:groups * (r1 - r0) * taps_c].reshape(groups, r1 - r0, taps_c)
            im2col_ndhwc(xp, r0, *geom.out_size, *geom.kernel, *geom.stride, *geom.dilation, cols)
            for g in range(groups):
                gemm(cols[g], wmat[g], rows[r0:r1, g * kg:(g + 1) * kg])
            if bias is not None or act:
                bias_activation_rows(rows[r0:r1], b, act)

    return run_on_padded_chunks(spec, x, bias, call, share=0.5)
