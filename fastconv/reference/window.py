"""The one sliding-window primitive, padding, and padding resolution (plain NumPy).

Large pads: ``np.pad`` applies its modes repeatedly, so any pad size is valid.
Checked numerically (see tests/test_reference.py::test_np_pad_large_is_periodic):
for an axis of length n and position p (p < 0 or p >= n are pad cells)
  reflect    -> x[m], m = p mod 2(n-1), m = 2(n-1) - m if m >= n   (period 2(n-1); n == 1 repeats x[0])
  symmetric  -> x[m], m = p mod 2n,     m = 2n - 1 - m if m >= n    (period 2n)
  circular   -> x[p mod n]                                          (period n)
  replicate  -> x[clip(p, 0, n-1)]
A negative pad crops that side instead (used by conv_transpose).
"""

import math

import numpy as np

_NP_MODES = {"zeros": "constant", "constant": "constant", "reflect": "reflect",
             "replicate": "edge", "circular": "wrap", "symmetric": "symmetric"}


def ntuple(v, nd, name="argument"):
    """An int or a sequence of nd ints -> tuple of nd Python ints."""
    if isinstance(v, (int, np.integer)):
        return (int(v),) * nd
    t = tuple(int(a) for a in v)
    if len(t) == 1:
        t = t * nd
    if len(t) != nd:
        raise ValueError(f"{name}={v!r}: expected an int or {nd} ints")
    return t


def sliding_windows(xpad, kernel, stride, dilation):
    """View (N, C, *out, *kernel) of an already padded (N, C, *spatial) array."""
    nd = xpad.ndim - 2
    k, s, d = ntuple(kernel, nd), ntuple(stride, nd), ntuple(dilation, nd)
    span = tuple(dd * (kk - 1) + 1 for kk, dd in zip(k, d))
    v = np.lib.stride_tricks.sliding_window_view(xpad, span, axis=tuple(range(2, 2 + nd)))
    return v[(slice(None), slice(None)) + tuple(slice(None, None, ss) for ss in s)
             + tuple(slice(None, None, dd) for dd in d)]


def pad(x, pads, mode="zeros", value=0.0):
    """Pad the spatial dims of (N, C, *spatial) by ((begin, end), ...); negative crops."""
    if mode not in _NP_MODES:
        raise ValueError(f"padding_mode={mode!r}: expected one of {sorted(_NP_MODES)}")
    crop = tuple(slice(max(-b, 0), n - max(-e, 0)) for (b, e), n in zip(pads, x.shape[2:]))
    x = x[(slice(None), slice(None)) + crop]
    width = [(0, 0), (0, 0)] + [(max(b, 0), max(e, 0)) for b, e in pads]
    if mode in ("zeros", "constant"):
        return np.pad(x, width, mode="constant", constant_values=0.0 if mode == "zeros" else value)
    return np.pad(x, width, mode=_NP_MODES[mode])


def resolve_padding(padding, in_size, kernel, stride=1, dilation=1):
    """Padding spec -> tuple of (begin, end) per spatial dim (forward conv / pooling)."""
    nd = len(in_size)
    k, s, d = ntuple(kernel, nd), ntuple(stride, nd), ntuple(dilation, nd)
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * nd
        if padding == "full":
            return tuple((dd * (kk - 1),) * 2 for kk, dd in zip(k, d))
        if padding == "same":
            pads = []
            for n, kk, ss, dd in zip(in_size, k, s, d):
                total = max((math.ceil(n / ss) - 1) * ss + dd * (kk - 1) + 1 - n, 0)
                pads.append((total // 2, total - total // 2))
            return tuple(pads)
        raise ValueError(f"padding={padding!r}: expected 'valid', 'same' or 'full'")
    if isinstance(padding, (int, np.integer)):
        return ((int(padding),) * 2,) * nd
    items = tuple(padding)
    if len(items) == nd and all(not isinstance(p, (int, np.integer)) for p in items):
        pairs = tuple(tuple(int(a) for a in p) for p in items)
        if any(len(p) != 2 for p in pairs):
            raise ValueError(f"padding={padding!r}: pairs must be (begin, end)")
        return pairs
    return tuple((p, p) for p in ntuple(items, nd, "padding"))
