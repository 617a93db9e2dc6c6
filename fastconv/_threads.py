"""fastconv's thread runtime: Numba's TBB threading layer, started before any kernel loads.

Why TBB and not Numba's default (GNU OpenMP), measured on the 2-core project machine
(``python -m bench.runtimes``; README "Threads" has the figures):

- **fork**: GNU OpenMP cannot run in a child made by ``fork`` once the parent ran a
  parallel region; Numba then kills the child with SIGTERM. TBB stops its workers before
  ``fork`` and starts them again in both processes, so a child runs kernels in parallel.
- **busy cores**: a passive OpenMP worker woken on a core that another process holds
  waits for the scheduler's tick; spinning workers keep their core on small layers but
  collapsed to whole ticks in some runs (a 0.7 ms layer at 4.8-12.8 ms), and always under
  heavier load. TBB's workers spin briefly, then sleep, and its parallel loop is
  work-stealing: the calling thread takes over the chunks a late worker has not started
  (kernels ask for several chunks per thread through :func:`balanced`), so a call runs
  at about one core's speed there (2x its quiet time) and never waits for a tick.
- **PyTorch in the same process**: PyTorch's libgomp is the same soname as the system
  one, so whichever loads first serves both, with the wait policy of whoever loaded it.
  TBB is a runtime of fastconv's own: importing torch before or after fastconv changes
  nothing, and fastconv no longer sets ``OMP_WAIT_POLICY``, which reached PyTorch too.
  PyTorch's OpenMP workers still spin after each of its ops, beside fastconv's workers: a
  converted model, which alternates the two, is where that costs, and importing
  ``fastconv.torch`` holds PyTorch's intra-op pool to one thread (``fastconv/torch/_threads.py``).
- **several Python threads**: TBB (like OpenMP, unlike Numba's workqueue) runs parallel
  kernels launched from several threads at once.

The wheel of the ``tbb`` package puts ``libtbb.so.12`` into the environment's ``lib/``,
which is not on the dynamic loader's path in a virtual environment, so Numba's TBB
layer fails to import there. :func:`start` loads the library by its path first.

A user who set ``NUMBA_THREADING_LAYER`` keeps that layer. When TBB cannot load, Numba's
default layer runs instead, with a warning, with the former OpenMP settings: passive
waiting unless the user chose a wait policy, and after ``fork`` the child runs its
kernels on one thread instead of being killed.
"""

from __future__ import annotations

import ctypes
import os
import warnings

import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

# Variables by which a user chooses how OpenMP workers wait; if any is set, it is theirs.
WAIT_POLICY_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")

# Chunks per thread that a balanced parallel loop is cut into: enough for the calling
# thread to take over a preempted worker's share, few enough that the schedule costs
# nothing next to a task.
CHUNKS_PER_THREAD = 4


def _tbb_library() -> str | None:
    """Path of the ``libtbb.so.12`` that the ``tbb`` package installed, or None."""
    import importlib.metadata as metadata

    try:
        files = metadata.files("tbb") or ()
    except metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.name == "libtbb.so.12":
            path = str(f.locate())
            if os.path.exists(path):
                return os.path.realpath(path)
    return None


def _load_tbb() -> str | None:
    """Make Numba's TBB layer importable; None when it is, else the reason it is not."""
    path = _tbb_library()
    try:
        if path is not None:
            ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
        from numba.np.ufunc import tbbpool  # noqa: F401
    except (ImportError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}" + ("" if path else " (the tbb package is not installed)")
    return None


def _omp_after_fork_in_child() -> None:
    """Let a forked child run OpenMP kernels on one thread instead of being killed.

    Numba's OpenMP layer terminates a child whose parent started its threads (GNU libgomp
    is not fork-safe); ``launch_threads`` records the caller as the parent, and a team of
    one thread never touches the parent's worker pool.
    """
    from numba.np.ufunc import omppool

    ctypes.CFUNCTYPE(None, ctypes.c_int)(omppool.launch_threads)(1)
    numba.set_num_threads(1)


def start() -> str:
    """Start Numba's worker threads on fastconv's runtime; return a line saying which."""
    try:
        return f"{numba.threading_layer()} layer, already running"
    except ValueError:
        pass
    reason = None
    if os.environ.get("NUMBA_THREADING_LAYER") or numba.config.THREADING_LAYER != "default":
        how = "chosen by the user"
    else:
        reason = _load_tbb()
        if reason is None:
            numba.config.THREADING_LAYER = "tbb"
            how = "fastconv's default"
        elif any(name in os.environ for name in WAIT_POLICY_VARIABLES):
            how = "the user's OpenMP wait policy"
        else:
            os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
            how = "OMP_WAIT_POLICY=PASSIVE set by fastconv"
    numba.get_num_threads()
    layer = numba.threading_layer()
    if layer == "omp":
        os.register_at_fork(after_in_child=_omp_after_fork_in_child)
    if reason is not None:
        warnings.warn(f"fastconv: Numba's TBB threading layer is unavailable ({reason}); running on the "
                      f"'{layer}' layer, which is slower on busy cores and runs one thread after fork. "
                      "Install the 'tbb' package to fix this.", RuntimeWarning, stacklevel=3)
        how += f"; TBB unavailable: {reason}"
    return f"{layer} layer ({how})"


@intrinsic
def _swap_chunksize(typingctx, size):
    """Set the calling thread's parallel chunk size; return the previous one.

    Numba's own ``set_parallel_chunksize`` overload calls through a ctypes pointer, which
    keeps a kernel out of the on-disk cache; this calls the runtime by symbol name, as
    Numba's parfor lowering does.
    """
    if not isinstance(size, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        uintp = ir.IntType(types.uintp.bitwidth)
        get = cgutils.get_or_insert_function(builder.module, ir.FunctionType(uintp, []), "get_parallel_chunksize")
        put = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [uintp]),
                                             "set_parallel_chunksize")
        old = builder.call(get, [])
        builder.call(put, [context.cast(builder, args[0], signature.args[0], types.uintp)])
        return old

    return types.uintp(size), codegen


@intrinsic
def _thread_count(typingctx):
    def codegen(context, builder, signature, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(types.intp.bitwidth), []),
                                            "get_num_threads")
        return builder.call(fn, [])

    return types.intp(), codegen


@numba.njit(inline="always")  # inlined into cached kernels; needs no cache of its own
def balanced(n_tasks):
    """Before a ``prange`` over ``n_tasks``: cut it into CHUNKS_PER_THREAD chunks per thread.

    Returns the previous chunk size, for :func:`restore` after the loop. Numba's default
    is one equal chunk per thread, which leaves a thread waiting for a worker that another
    process preempted.
    """
    threads = _thread_count()
    return _swap_chunksize(max(1, -(-n_tasks // (threads * CHUNKS_PER_THREAD))))


@numba.njit(inline="always")  # inlined into cached kernels; needs no cache of its own
def restore(previous):
    _swap_chunksize(previous)
