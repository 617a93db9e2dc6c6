"""Calls too small to gain from a second thread run on the calling thread alone.

A Numba parallel loop on the TBB layer wakes a sleeping worker and joins it: on an idle
machine that costs more than a tiny call's whole work (quiet, one process, medians of 400
calls: a 1x2x6x6 conv2d 27 us on one thread against 56 us on two; a bare parallel loop
about 7 us), and the calling thread then waits for a worker that has nothing left to do.
Up to about 1 MFLOP the 3x3, depthwise and pooling kernels run as fast on one thread as on
two, and above it two threads pull ahead (3x3 at 3.6 MFLOP: 53 against 43 us), so a call
whose work is under SERIAL_FLOPS and its bytes under SERIAL_BYTES runs with Numba's thread
count set to one for the calling thread only (Numba's count is per thread: other Python
threads and Dask tasks keep theirs), and restored after it, also when it raises.

Results do not change: every kernel's sums are in an order fixed by the problem, never by
the thread count (tests/test_small_calls.py and the gradients' determinism tests).
"""

from __future__ import annotations

import functools

# Work below which a call runs on one thread: spec.flops (conv: 2 * MACs; pooling: one per
# window tap) and spec.min_bytes (input, output and weight). The bytes keep memory-bound
# calls with few FLOPs on two threads: a 2x2 max pool of 1x64x56x56 (0.2 MFLOP, 1 MB) takes
# 95 us on one thread against 54 on two channels-first, 38 against 27 channels-last (one
# process, medians of 1000 calls over 50 inputs, load 0.9); 1x16x28x28 (63 kB) 12 either way.
SERIAL_FLOPS = 500_000
SERIAL_BYTES = 64 * 1024


def serial(spec) -> bool:
    """Whether a call resolved to ``spec`` runs on one thread."""
    flops, nbytes = getattr(spec, "flops", None), getattr(spec, "min_bytes", None)
    return flops is not None and nbytes is not None and flops < SERIAL_FLOPS and nbytes < SERIAL_BYTES


def on_one_thread(run):
    """``run`` with Numba's thread count set to one for the calling thread during each call.

    Numba's private setter is used: the public ``numba.set_num_threads`` checks its
    argument and the runtime on every call (2.4 us here against 0.6 for the pair below).
    The runtime is running by then: a plan is made after its kernels' module loaded.
    """
    from numba.np.ufunc import parallel

    parallel._launch_threads()
    get, put = parallel._get_num_threads, parallel._set_num_threads

    @functools.wraps(run)
    def one_thread(*arrays):
        threads = get()
        if threads == 1:
            return run(*arrays)
        put(1)
        try:
            return run(*arrays)
        finally:
            put(threads)

    return one_thread
