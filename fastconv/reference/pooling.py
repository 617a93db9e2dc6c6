"""Reference pooling (float64).

Shape rule (PyTorch): out = floor or ceil((n + b + e - d(k-1) - 1) / s) + 1; with ceil_mode
the last window is dropped if it starts at or beyond n + b, i.e. in the right padding.
Max: pad cells are -inf and never win; a NaN in the window gives NaN. Integer input stays in
its dtype (exact), pad cells holding the dtype's minimum. Indices are flat
over each channel's unpadded plane: the first tap equal to the max in row-major scan
order, or for a NaN window the LAST NaN (PyTorch CPU: `val > max || isnan(val)`).
"""

import math
from functools import reduce

import numpy as np

from .conv import f64
from .window import ntuple, pad, resolve_padding, sliding_windows


def pool_geometry(in_size, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """-> kernel, stride, dilation, pads ((b, e), ...), out size; stride None -> kernel."""
    nd = len(in_size)
    k = ntuple(kernel_size, nd, "kernel_size")
    empty = stride is None or (not isinstance(stride, (int, np.integer)) and len(stride) == 0)
    s = k if empty else ntuple(stride, nd, "stride")
    d = ntuple(dilation, nd, "dilation")
    pads = resolve_padding(padding, in_size, k, s, d)
    out = []
    for n, kk, ss, dd, (b, e) in zip(in_size, k, s, d, pads):
        num = n + b + e - dd * (kk - 1) - 1
        o = (-(-num // ss) if ceil_mode else num // ss) + 1
        if ceil_mode and (o - 1) * ss >= n + b:
            o -= 1
        if o < 1:
            raise ValueError(f"pooling: window {kk} (dilation {dd}) does not fit input {n} + pads {(b, e)}")
        out.append(o)
    return k, s, d, pads, tuple(out)


def pool_windows(a, geom, fill):
    """Windows (N, C, *out, *kernel) of `a` padded with `fill` (extended right if ceil_mode needs)."""
    k, s, d, pads, out = geom
    ext = tuple((b, max(e, (o - 1) * ss + dd * (kk - 1) + 1 - n - b))
                for n, kk, ss, dd, (b, e), o in zip(a.shape[2:], k, s, d, pads, out))
    v = sliding_windows(pad(a, ext, "constant", fill), k, s, d)
    return v[(slice(None), slice(None)) + tuple(slice(0, o) for o in out)]


def tap_count(in_size, geom, lo_hi):
    """(*out) number of taps per window whose position lies in lo_hi(n, b, e) = [lo, hi) per dim."""
    k, s, d, pads, out = geom
    counts = []
    for n, kk, ss, dd, (b, e), o in zip(in_size, k, s, d, pads, out):
        lo, hi = lo_hi(n, b, e)
        pos = np.arange(o)[:, None] * ss - b + np.arange(kk)[None, :] * dd
        counts.append(((pos >= lo) & (pos < hi)).sum(1))
    return reduce(np.multiply.outer, counts)


def pick_index(vals, idx, y):
    """vals, idx (..., T); y (...) = max of vals. Flat index of the winning tap (-1: none)."""
    vals, idx = np.broadcast_arrays(vals, idx)
    nan = np.isnan(y)[..., None]
    hit = np.where(nan, np.isnan(vals), (vals == y[..., None]) & (idx >= 0))
    first = hit.argmax(-1)
    last = hit.shape[-1] - 1 - hit[..., ::-1].argmax(-1)
    pos = np.where(nan[..., 0], last, first)
    return np.take_along_axis(idx, pos[..., None], -1)[..., 0].astype(np.int64)


def _max_input(x):
    """(array, padding value) for max pooling: integers as they are, anything else float64."""
    x = np.asarray(x)
    if x.dtype.kind in "iu":
        return x, np.iinfo(x.dtype).min
    return f64(x), -np.inf


def _flat(win, nd):
    return win.reshape(win.shape[:win.ndim - nd] + (math.prod(win.shape[win.ndim - nd:]),))


def max_pool(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
             return_indices=False):
    x, lowest = _max_input(x)
    nd = x.ndim - 2
    geom = pool_geometry(x.shape[2:], kernel_size, stride, padding, dilation, ceil_mode)
    win = _flat(pool_windows(x, geom, lowest), nd)
    y = win.max(-1)
    if not return_indices:
        return y
    plane = np.arange(math.prod(x.shape[2:]), dtype=np.int64).reshape((1, 1) + x.shape[2:])
    return y, pick_index(win, _flat(pool_windows(plane, geom, -1), nd), y)


def avg_pool(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
             divisor_override=None, dilation=1):
    """Divisor: taps in [-b, n+e) (count_include_pad) or in [0, n); a window with no
    counted tap gives 0 (only possible with pads beyond PyTorch's limits)."""
    x = f64(x)
    nd = x.ndim - 2
    geom = pool_geometry(x.shape[2:], kernel_size, stride, padding, dilation, ceil_mode)
    total = pool_windows(x, geom, 0.0).sum(axis=tuple(range(-nd, 0)))
    if divisor_override:
        return total / divisor_override
    rng = (lambda n, b, e: (-b, n + e)) if count_include_pad else (lambda n, b, e: (0, n))
    div = tap_count(x.shape[2:], geom, rng)
    return np.where(div > 0, total / np.maximum(div, 1), 0.0)


def lp_pool(x, norm_type, kernel_size, stride=None, ceil_mode=False, padding=0, dilation=1):
    """(sum over taps inside the input of |x|**p) ** (1/p), the Lp norm as ONNX LpPool
    defines it (PyTorch raises x itself to the power p); p = +-inf: max / min of |x|."""
    x, p = f64(x), float(norm_type)
    args = (kernel_size, stride, padding, dilation, ceil_mode)
    if math.isinf(p):
        return max_pool(np.abs(x), *args) if p > 0 else -max_pool(-np.abs(x), *args)
    geom = pool_geometry(x.shape[2:], *args[:4], ceil_mode)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        total = pool_windows(np.abs(x) ** p, geom, 0.0).sum(axis=tuple(range(-(x.ndim - 2), 0)))
        return total ** (1.0 / p)


def adaptive_bounds(n, o):
    """Window i of an adaptive pool spans [floor(i n / o), ceil((i+1) n / o))."""
    return [slice(i * n // o, -(-(i + 1) * n // o)) for i in range(o)]


def _adaptive(x, output_size, mode, return_indices=False):
    x = _max_input(x)[0] if mode == "max" else f64(x)
    n = x.shape[2:]
    osz = ntuple(output_size, len(n), "output_size") if isinstance(output_size, (int, np.integer)) \
        else tuple(m if o is None else int(o) for o, m in zip(output_size, n))
    bounds = [adaptive_bounds(m, o) for m, o in zip(n, osz)]
    plane = np.arange(math.prod(n), dtype=np.int64).reshape(n)
    y = np.empty(x.shape[:2] + osz, x.dtype)
    idx = np.empty(x.shape[:2] + osz, dtype=np.int64)
    for pos in np.ndindex(*osz):
        sl = tuple(b[i] for b, i in zip(bounds, pos))
        block = x[(slice(None), slice(None)) + sl]
        block = block.reshape(x.shape[:2] + (math.prod(block.shape[2:]),))
        y[(...,) + pos] = block.max(-1) if mode == "max" else block.mean(-1)
        if return_indices:
            idx[(...,) + pos] = pick_index(block, plane[sl].reshape(-1), y[(...,) + pos])
    return (y, idx) if return_indices else y


def adaptive_avg_pool(x, output_size):
    return _adaptive(x, output_size, "avg")


def adaptive_max_pool(x, output_size, return_indices=False):
    return _adaptive(x, output_size, "max", return_indices)


def global_avg_pool(x):
    x = f64(x)
    return x.mean(axis=tuple(range(2, x.ndim)), keepdims=True)


def global_max_pool(x):
    x = _max_input(x)[0]
    return x.max(axis=tuple(range(2, x.ndim)), keepdims=True)


def spatial_pyramid_pool(x, levels=(1, 2, 4), mode="max"):
    """(N, C * sum(l ** nd)): per level adaptive pool flattened (C, l, ..) per sample, concatenated."""
    if mode not in ("max", "avg"):
        raise ValueError(f"mode={mode!r}: expected 'max' or 'avg'")
    flat = [_adaptive(x, lv, mode) for lv in levels]
    return np.concatenate([f.reshape(f.shape[0], math.prod(f.shape[1:])) for f in flat], axis=1)
