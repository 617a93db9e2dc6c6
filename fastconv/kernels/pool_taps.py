"""Which window taps of a pooling output fall inside the input: helpers shared by the
channels-first and channels-last kernels (and the GPU ones)."""

from __future__ import annotations

import numpy as np
from numba.extending import overload
from numba.np.numpy_support import as_dtype

from .inline import inline_helper


def lowest(a):
    """What a padded cell holds in a max over ``a``'s dtype (and a window with no tap in the
    input gives): -inf for floats, the dtype's minimum for integers (exact integer pooling)."""
    dt = np.asarray(a).dtype
    return dt.type(np.iinfo(dt).min) if dt.kind in "iu" else dt.type(-np.inf)


@overload(lowest, inline="always")
def _lowest(a):
    dt = as_dtype(a.dtype)
    value = dt.type(np.iinfo(dt).min) if dt.kind in "iu" else dt.type(-np.inf)
    return lambda a: value


@inline_helper
def span(start, step, n_in, count):
    """The j in [lo, hi), 0 <= j < count, whose position start + j * step lies in [0, n_in).

    Taps of a window (start = its first position, step = dilation) or output columns
    reached by one tap (start = the tap's offset, step = stride).
    """
    if start >= 0 and start + (count - 1) * step < n_in:  # all inside: no division
        return 0, count
    lo = 0 if start >= 0 else (step - 1 - start) // step
    hi = min(count, (n_in - start + step - 1) // step)
    return lo, max(lo, hi)


@inline_helper
def taps_within(start, k_n, dil, lo, hi):
    """How many of the taps start + j * dil (0 <= j < k_n) lie in [lo, hi)."""
    count = 0
    for j in range(k_n):
        pos = start + j * dil
        if pos >= lo and pos < hi:
            count += 1
    return count


@inline_helper
def avg_divisor(start, k_n, dil, pad_begin, pad_end, n_in, include_pad):
    """Taps of one dim that count in a mean: within the padded input, or within the input."""
    if include_pad:
        return taps_within(start, k_n, dil, -pad_begin, n_in + pad_end)
    return taps_within(start, k_n, dil, 0, n_in)


@inline_helper
def next_tap(kd, kh, kw, h_lo, h_hi, w_lo, w_hi):
    """The tap after (kd, kh, kw) in (kd, kh, kw) order within a window's in-input box."""
    kw += 1
    if kw == w_hi:
        kw = w_lo
        kh += 1
        if kh == h_hi:
            kh = h_lo
            kd += 1
    return kd, kh, kw
