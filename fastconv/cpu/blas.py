"""GEMM on fastconv's own threads: NumPy's OpenBLAS, one thread per task, inside a TBB loop.

OpenBLAS's own thread pool is a second runtime beside fastconv's (TBB, see
:mod:`fastconv._threads`): its workers poll for a while after each call, and when another
process holds a core, a call waits for whole scheduler ticks (8-32 ms for a 0.05 ms 1x1
layer, measured on the 2-core project machine). Here the product is cut into blocks along
its larger side, and each task of a Numba parallel loop runs one block through
``cblas_?gemm`` with OpenBLAS held to one thread, so one work-stealing pool owns the cores.

The ``cblas_?gemm`` of the OpenBLAS that NumPy loaded is found among the process's
mapped libraries and bound to an LLVM symbol name, so the kernels that call it stay in
Numba's on-disk cache. Every integer is passed as 64 bits: right for an ILP64 build
(NumPy's), and for an LP64 one too, since each integer argument takes a full register
or stack slot on x86-64 and AArch64. Where no OpenBLAS is found, :func:`gemm` runs
``np.matmul`` instead.

While a call runs, OpenBLAS's process-wide thread count is 1 (saved and restored around
the outermost call): a BLAS call that another Python thread makes meanwhile runs on one
thread. OpenBLAS's ``openblas_set_num_threads_local`` is no way out: it sets the same
global.
"""

from __future__ import annotations

import ctypes
import threading

import numpy as np
from llvmlite import binding as llvm
from llvmlite import ir
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from .._threads import balanced, restore
from ._jit import parallel_kernel

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112

# Blocks are at least this many columns (or rows) wide: narrower ones repack the other
# operand for too little work.
MIN_BLOCK = 32
# Below this many multiply-adds a product runs as one block on the calling thread.
SERIAL_MACS = 1 << 17
# A product is cut into one block per thread, and into more (up to four per thread, for
# balance when a core is busy) only while each keeps this many multiply-adds: every
# OpenBLAS call packs its operands again, 10-20 us measured on 0.05-0.5 ms products.
BLOCK_MACS = 1 << 23

# gemm_sum cuts a long inner dimension into pieces of at least this many products per
# output element (the pieces' partial products are then added: a few adds per output
# element against this many multiply-adds), and into at most MAX_PIECES.
MIN_PIECE = 1024
MAX_PIECES = 8

_SYMBOLS = {"s": "fastconv_cblas_sgemm", "d": "fastconv_cblas_dgemm"}


def _openblas() -> ctypes.CDLL | None:
    """The OpenBLAS library NumPy has loaded (read from /proc/self/maps), or None."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            return ctypes.CDLL(path)
        except OSError:
            continue
    return None


def _find(lib, names):
    for name in names:
        fn = getattr(lib, name, None)
        if fn is not None:
            return fn
    return None


class _Library:
    """The bound OpenBLAS: gemm symbols registered with LLVM, and its thread count."""

    def __init__(self):
        self.lib = _openblas()
        self.ok = False
        if self.lib is None:
            return
        gemms = {p: _find(self.lib, (f"scipy_cblas_{p}gemm64_", f"cblas_{p}gemm64_", f"cblas_{p}gemm"))
                 for p in _SYMBOLS}
        self.get = _find(self.lib, ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_",
                                    "openblas_get_num_threads"))
        self.set = _find(self.lib, ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_",
                                    "openblas_set_num_threads"))
        if None in gemms.values() or self.get is None or self.set is None:
            return
        for p, fn in gemms.items():
            llvm.add_symbol(_SYMBOLS[p], ctypes.cast(fn, ctypes.c_void_p).value)
        self.get.restype = ctypes.c_int
        self.set.argtypes = [ctypes.c_int]
        self.lock = threading.Lock()
        self.depth = 0
        self.saved = 1
        self.ok = True

    def __enter__(self):
        with self.lock:
            if self.depth == 0:
                self.saved = self.get()
                if self.saved != 1:
                    self.set(1)
            self.depth += 1

    def __exit__(self, *exc):
        with self.lock:
            self.depth -= 1
            if self.depth == 0 and self.saved != 1:
                self.set(self.saved)


LIBRARY = _Library()


def _declare_gemm(prefix):
    @intrinsic
    def call(typingctx, order, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
        real = types.float32 if prefix == "s" else types.float64
        sig = types.void(*(types.int64,) * 6, real, types.intp, types.int64, types.intp, types.int64, real,
                         types.intp, types.int64)

        def codegen(context, builder, signature, args):
            i64 = ir.IntType(64)
            flt = context.get_value_type(real)
            fnty = ir.FunctionType(ir.VoidType(), [i64] * 6 + [flt, i64, i64, i64, i64, flt, i64, i64])
            fn = cgutils.get_or_insert_function(builder.module, fnty, _SYMBOLS[prefix])
            cast = [context.cast(builder, v, t, s) for v, t, s in zip(args, signature.args, sig.args)]
            builder.call(fn, cast)
            return context.get_dummy_value()

        return sig, codegen

    return call


_sgemm = _declare_gemm("s")
_dgemm = _declare_gemm("d")


@parallel_kernel
def _gemm_blocks(pa, pb, pc, size, batch, m, n, k, lda, ldb, ldc, sa, sb, sc, ta, tb, by_cols, blocks, beta):
    """c[i] (m, n) = a[i] (m, k) @ b[i] (k, n) + beta * c[i] for i < batch; task = (image, block).

    pa, pb, pc are the addresses of the matrices' first elements (the caller keeps the arrays
    alive), ``size`` their itemsize (4: float32, 8: float64). Offsets and leading dimensions
    count elements; ``ta`` / ``tb`` say that a / b are stored transposed (row-major (k, m) /
    (n, k)). Only integers cross the call: Numba types them faster than arrays.
    """
    span = n if by_cols else m
    total = batch * blocks
    previous = balanced(total)
    for t in prange(total):
        i = t // blocks
        j = t - i * blocks
        lo = j * span // blocks
        hi = (j + 1) * span // blocks
        oa, ob, oc = i * sa, i * sb, i * sc
        mm, nn = m, n
        if by_cols:
            ob += lo * ldb if tb else lo
            oc += lo
            nn = hi - lo
        else:
            oa += lo if ta else lo * lda
            oc += lo * ldc
            mm = hi - lo
        trans_a = TRANS if ta else NO_TRANS
        trans_b = TRANS if tb else NO_TRANS
        if size == 4:
            _sgemm(ROW_MAJOR, trans_a, trans_b, mm, nn, k, np.float32(1.0), pa + oa * size, lda, pb + ob * size, ldb,
                   np.float32(beta), pc + oc * size, ldc)
        else:
            _dgemm(ROW_MAJOR, trans_a, trans_b, mm, nn, k, 1.0, pa + oa * size, lda, pb + ob * size, ldb, beta,
                   pc + oc * size, ldc)
    restore(previous)


@parallel_kernel
def _gemm_pieces(pa, pb, pp, size, m, n, k, lda, ldb, ta, tb, pieces):
    """partial[j] (m, n) = a[:, lo:hi] @ b[lo:hi, :] for piece j < pieces of the inner
    dimension (lo = j * k // pieces); ``pp`` the address of the (pieces, m, n) C-contiguous
    partials. Addresses, ``size``, ``ta`` / ``tb`` as in :func:`_gemm_blocks`."""
    previous = balanced(pieces)
    for j in prange(pieces):
        lo = j * k // pieces
        hi = (j + 1) * k // pieces
        oa = lo * lda if ta else lo
        ob = lo if tb else lo * ldb
        oc = j * m * n
        trans_a = TRANS if ta else NO_TRANS
        trans_b = TRANS if tb else NO_TRANS
        if size == 4:
            _sgemm(ROW_MAJOR, trans_a, trans_b, m, n, hi - lo, np.float32(1.0), pa + oa * size, lda, pb + ob * size,
                   ldb, np.float32(0.0), pp + oc * size, n)
        else:
            _dgemm(ROW_MAJOR, trans_a, trans_b, m, n, hi - lo, 1.0, pa + oa * size, lda, pb + ob * size, ldb, 0.0,
                   pp + oc * size, n)
    restore(previous)


def _operand(x):
    """(leading dimension, transposed?) of a 2-D or batched operand, or None (no unit stride)."""
    s = x.strides[-2:]
    item = x.itemsize
    rows, cols = x.shape[-2:]
    if s[1] == item and (rows == 1 or s[0] >= cols * item) and s[0] % item == 0:
        return s[0] // item if rows > 1 else max(cols, 1), False
    if s[0] == item and (cols == 1 or s[1] >= rows * item) and s[1] % item == 0:
        return s[1] // item if cols > 1 else max(rows, 1), True
    return None


def gemm(a, b, out, accumulate: bool = False, threads: int | None = None):
    """``out = a @ b`` (``out += a @ b`` when ``accumulate``), on fastconv's threads.

    ``a`` (…, M, K), ``b`` (…, K, N) and ``out`` (…, M, N) share a float32 or float64
    dtype; a leading batch axis is optional on each (a missing one broadcasts). Each
    matrix needs a unit stride along one of its last two axes (a transposed view
    qualifies); ``out`` along its last. Anything else runs through ``np.matmul``.
    """
    m, n = out.shape[-2:]
    k = a.shape[-1]
    batch = out.shape[0] if out.ndim == 3 else 1
    fa, fb, fc = _operand(a), _operand(b), _operand(out)
    usable = (LIBRARY.ok and a.dtype == b.dtype == out.dtype and out.dtype in (np.float32, np.float64)
              and fa and fb and fc and not fc[1] and min(m, n, k, batch) > 0
              and all(x.ndim == 2 or (x.ndim == 3 and x.shape[0] in (1, batch) and x.strides[0] >= 0)
                      for x in (a, b))
              and (out.ndim == 2 or (out.ndim == 3 and (batch == 1 or out.strides[0] >= m * fc[0] * out.itemsize))))
    if not usable:
        if accumulate:
            out += np.matmul(a, b)
        else:
            np.matmul(a, b, out=out)
        return out
    by_cols = n >= m
    span = n if by_cols else m
    macs = m * n * k * batch
    if macs < SERIAL_MACS:
        blocks = 1
    else:
        import numba

        threads = threads or numba.get_num_threads()
        tasks = min(max(macs // BLOCK_MACS, threads), 4 * threads)
        blocks = max(1, min(span // MIN_BLOCK, -(-tasks // batch)))

    def batch_stride(x):
        return x.strides[0] // x.itemsize if x.ndim == 3 and x.shape[0] > 1 else 0

    with LIBRARY:
        _gemm_blocks(a.ctypes.data, b.ctypes.data, out.ctypes.data, out.itemsize, batch, m, n, k, fa[0], fb[0],
                     fc[0], batch_stride(a), batch_stride(b), batch_stride(out), fa[1], fb[1], by_cols, blocks,
                     1.0 if accumulate else 0.0)
    return out


def gemm_sum(a, b, out, accumulate: bool = False):
    """``out = a @ b`` (``out += a @ b`` when ``accumulate``) for 2-D operands whose inner
    dimension is long and whose output is small (a weight gradient: a sum over pixels).

    :func:`gemm` splits only the output, which such a product cannot feed to every thread
    (a 32 x 16 output is one block). Here the inner dimension is cut into pieces, a count
    fixed by the shapes alone (never the thread count, so the result is bitwise the same
    on any number of threads): each piece's product runs on one thread into its own
    partial, and the partials are added into ``out`` in piece order. A product too small
    or too short to cut runs through :func:`gemm`.
    """
    m, n = out.shape
    k = a.shape[-1]
    pieces = 1
    while pieces < MAX_PIECES and k // (2 * pieces) >= MIN_PIECE:
        pieces *= 2  # a power of two: the pieces share 1, 2, 4 or 8 threads evenly
    fa, fb = _operand(a), _operand(b)
    usable = (LIBRARY.ok and a.ndim == b.ndim == 2 and a.dtype == b.dtype == out.dtype
              and out.dtype in (np.float32, np.float64) and fa and fb and min(m, n) > 0)
    if pieces == 1 or m * n * k < SERIAL_MACS or not usable:
        # blocks counted for MAX_PIECES threads, never the actual count: OpenBLAS does not promise
        # a block's sums are the same at another width (a (24 x 49) @ (49 x 144) product in 1 or
        # 2 column blocks differed in the last bit)
        return gemm(a, b, out, accumulate, threads=MAX_PIECES)
    partials = np.empty((pieces, m, n), out.dtype)
    with LIBRARY:
        _gemm_pieces(a.ctypes.data, b.ctypes.data, partials.ctypes.data, out.itemsize, m, n, k, fa[0], fb[0],
                     fa[1], fb[1], pieces)
    if not accumulate:
        out[...] = partials[0]
    for j in range(0 if accumulate else 1, pieces):
        out += partials[j]
    return out
