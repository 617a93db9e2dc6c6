"""The im2col weight gradient's long pixel sums, columns built in cache (one group).

blas.gemm_sum cuts a long pixel sum into pieces, one GEMM per thread, over columns built
beforehand for every pixel: ResNet-50's 56x56 3x3 layer writes 7 MB of columns to memory
and reads them back. Here each piece (fixed by the length, as in gemm_sum) builds its
columns STEP pixels at a time into its own buffer, which stays in cache, and adds each
step's product into its own partial (beta = 1); the caller adds the partials in piece
order. Pieces and steps follow from the shapes alone: the result is bitwise the same on
any number of threads.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ...._threads import balanced, restore
from ..._jit import parallel_kernel
from ...blas import NO_TRANS, ROW_MAJOR, TRANS, _dgemm, _sgemm
from .columns import pixel_columns


@parallel_kernel
def fused_pieces(x, p0, length, pieces, step, od_n, oh_n, ow_n, kd_n, kh_n, kw_n, sd, sh, sw, dd, dh, dw, map_d,
                 map_h, map_w, fill, cols, pc, pa, lda, pp, m):
    """partial[j] (m, n) += grad_output^T @ columns over piece j of pixels p0 .. p0 + length.

    ``pa`` is the address of grad_output's (pixels, lda) rows, ``pp`` that of the zeroed
    (pieces, m, n) partials, ``pc`` that of ``cols`` (pieces, step, n), the pieces' column
    buffers; the caller holds them alive and OpenBLAS to one thread.
    """
    n = cols.shape[2]
    size = cols.itemsize
    xf = x.reshape(-1)
    shape = x.shape[1:]
    previous = balanced(pieces)
    for j in prange(pieces):
        lo = j * length // pieces
        hi = (j + 1) * length // pieces
        cf = cols[j].reshape(-1)
        for r0 in range(lo, hi, step):
            r1 = min(r0 + step, hi)
            for r in range(r0, r1):
                pixel_columns(xf, shape, p0 + r, od_n, oh_n, ow_n, kd_n, kh_n, kw_n, sd, sh, sw, dd, dh, dw, map_d,
                              map_h, map_w, fill, cf, (r - r0) * n, 1, 0)
            oa = pa + (p0 + r0) * lda * size
            ob = pc + j * step * n * size
            oc = pp + j * m * n * size
            if size == 4:
                _sgemm(ROW_MAJOR, TRANS, NO_TRANS, m, n, r1 - r0, np.float32(1.0), oa, lda, ob, n, np.float32(1.0),
                       oc, n)
            else:
                _dgemm(ROW_MAJOR, TRANS, NO_TRANS, m, n, r1 - r0, 1.0, oa, lda, ob, n, 1.0, oc, n)
    restore(previous)
