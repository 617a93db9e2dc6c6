"""Scratch arrays whose first element starts a vector register's width of bytes: the tiles'
packed weights, read a whole vector at a time.

Numba aligns the arrays it allocates to 32 bytes. A 64-byte vector load from an address 32
bytes into a cache line reads two lines; on Intel cores each such split load takes two of
the load ports' slots (Ice Lake-SP, a tile's loop over weights 32 bytes off a line: 6.1
against 5.4 ns a step, one thread)."""

from __future__ import annotations

import numpy as np

from ...kernels.inline import inline_helper


@inline_helper
def aligned_empty(n, dtype, lanes):
    """An uninitialised 1-D array of ``n`` elements of ``dtype`` whose first element lies on a
    boundary of ``lanes`` elements (one vector; a power of two, the element size one too)."""
    buf = np.empty(n + lanes - 1, dtype)
    item = buf.itemsize
    skip = (-(buf.ctypes.data // item)) % lanes
    return buf[skip:skip + n]
