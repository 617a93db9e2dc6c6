"""Channels-first arrays stored channels-last run the channels-last kernels (conv,
transposed conv, window and adaptive pooling; not yet the gradients, unfold or fold).

A PyTorch tensor in ``torch.channels_last`` (or ``channels_last_3d``) memory format
reaches NumPy (``.numpy()``) as an (N, C, *spatial) array whose channels are innermost in
memory. The channels-first kernels read it strided, or copy it first (the 1x1 GEMM path,
depthwise): 5-10x the time of the same call on the channels-last view (one thread: 1x1
56x56 256 -> 64 7.1 ms against 0.74, depthwise 56x56x144 1.67 against 0.24). Such a call
runs on that view with ``channels_last=True`` instead, and its result comes back as
PyTorch returns it: (N, K, *spatial) in shape, channels-last in memory (a transposed view
of the kernel's output). Its values are those of the channels-last call, which may differ
from the channels-first kernels' in the last bits.
"""

from __future__ import annotations

import numpy as np

# (N, C, *spatial) axes in channels-last order and back, by dims (also fastconv.torch's)
TO_CHANNELS_LAST = {4: (0, 2, 3, 1), 5: (0, 2, 3, 4, 1)}
TO_CHANNELS_FIRST = {4: (0, 3, 1, 2), 5: (0, 4, 1, 2, 3)}


def stored_channels_last(x, nd: int):
    """The channels-last view of ``x`` when it is a batched (N, C, *spatial) NumPy array of
    ``nd`` spatial dims whose memory is C-contiguous in (N, *spatial, C) order and not in its
    own; else None."""
    if type(x) is not np.ndarray or x.ndim != nd + 2 or nd == 1 or x.flags.c_contiguous:
        return None
    view = x.transpose(TO_CHANNELS_LAST[x.ndim])
    return view if view.flags.c_contiguous else None


def as_channels_first(result):
    """A channels-last kernel's result (or tuple of results) as (N, C, *spatial) views."""
    if isinstance(result, tuple):
        return tuple(as_channels_first(r) for r in result)
    return result.transpose(TO_CHANNELS_FIRST[result.ndim])
