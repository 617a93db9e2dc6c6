"""The direct kernel's packed input, in a buffer kept between calls by each Python thread.

A fresh packed input costs a page fault per 4 KiB on every call: with the output beside
it, glibc hands the top of its heap back to the system when the two are freed, and
takes it again on the next call (1x64x56x56 channels-last 3x3: 392 faults a call, about
0.5 ms of a 3.4 ms one-thread call here). Buffers up to KEEP_BYTES are kept, one per
Python thread (calls on other threads run at the same time); larger ones are allocated
for the call, where the faults weigh less against the work and NumPy asks for huge pages.
"""

from __future__ import annotations

import math
import threading

import numpy as np

KEEP_BYTES = 16 << 20
_LOCAL = threading.local()


def packing_buffer(shape: tuple, dtype) -> np.ndarray:
    """An uninitialised C-contiguous array of ``shape`` and ``dtype``, this thread's kept
    buffer when it fits KEEP_BYTES: the caller writes every element before reading it and
    drops it before its next call."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > KEEP_BYTES:
        return np.empty(shape, dtype)
    buf = getattr(_LOCAL, "buf", None)
    if buf is None or buf.size < nbytes:
        buf = _LOCAL.buf = np.empty(nbytes, np.uint8)
    return buf[:nbytes].view(dtype).reshape(shape)
