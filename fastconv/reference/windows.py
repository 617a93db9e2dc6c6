"""Reference im2col (unfold), col2im (fold), max_unpool and fractional max pooling."""

import math

import numpy as np

from .conv import f64
from .pooling import pick_index
from .window import ntuple, pad, resolve_padding, sliding_windows


def unfold(x, kernel_size, stride=1, padding=0, dilation=1):
    """(N, C, *spatial) -> (N, C * prod(kernel), L): rows channel-major, then kernel taps."""
    x = f64(x)
    nd = x.ndim - 2
    k, s, d = (ntuple(v, nd, nm) for v, nm in
               ((kernel_size, "kernel_size"), (stride, "stride"), (dilation, "dilation")))
    win = sliding_windows(pad(x, resolve_padding(padding, x.shape[2:], k, s, d)), k, s, d)
    perm = (0, 1) + tuple(range(2 + nd, 2 + 2 * nd)) + tuple(range(2, 2 + nd))
    return win.transpose(perm).reshape(x.shape[0], x.shape[1] * math.prod(k), math.prod(win.shape[2:2 + nd]))


def fold(cols, output_size, kernel_size, stride=1, padding=0, dilation=1):
    """(N, C * prod(kernel), L) -> (N, C, *output_size), overlapping taps summed."""
    cols = f64(cols)
    seqs = [v for v in (output_size, kernel_size) if not isinstance(v, (int, np.integer))]
    nd = len(seqs[0]) if seqs else 2
    osz, k, s, d = (ntuple(v, nd, nm) for v, nm in ((output_size, "output_size"),
                    (kernel_size, "kernel_size"), (stride, "stride"), (dilation, "dilation")))
    pads = resolve_padding(padding, osz, k, s, d)
    full = tuple(o + b + e for o, (b, e) in zip(osz, pads))
    out = tuple((f - dd * (kk - 1) - 1) // ss + 1 for f, kk, ss, dd in zip(full, k, s, d))
    n, ck, length = cols.shape
    if ck % math.prod(k) or length != math.prod(out):
        raise ValueError(f"fold: columns {cols.shape} do not match kernel {k} and {out} blocks")
    blocks = cols.reshape((n, ck // math.prod(k)) + k + out)
    y = np.zeros((n, ck // math.prod(k)) + full)
    for tap in np.ndindex(*k):
        sl = tuple(slice(t * dd, t * dd + ss * (o - 1) + 1, ss) for t, dd, ss, o in zip(tap, d, s, out))
        y[(slice(None), slice(None)) + sl] += blocks[(slice(None), slice(None)) + tap]
    return y[(slice(None), slice(None)) + tuple(slice(b, b + o) for o, (b, _) in zip(osz, pads))]


def max_unpool(x, indices, kernel_size, stride=None, padding=0, output_size=None):
    """Zeros with x scattered to the flat per-plane indices (a repeated index: last wins)."""
    x, ind = f64(x), np.asarray(indices, dtype=np.int64)
    nd = x.ndim - 2
    k = ntuple(kernel_size, nd, "kernel_size")
    s = k if stride is None else ntuple(stride, nd, "stride")
    if output_size is None:
        pads = resolve_padding(padding, x.shape[2:], k, s, 1)
        osz = tuple((i - 1) * ss - b - e + kk for i, ss, kk, (b, e) in zip(x.shape[2:], s, k, pads))
    else:
        osz = tuple(int(o) for o in output_size)[-nd:]
    n, c = x.shape[:2]
    flat = ind.reshape(n, c, math.prod(ind.shape[2:]))
    if flat.size and (flat.min() < 0 or flat.max() >= math.prod(osz)):
        raise ValueError(f"max_unpool: indices must lie in [0, {math.prod(osz)}) for output {osz}")
    y = np.zeros((n, c, math.prod(osz)))
    np.put_along_axis(y, flat, x.reshape(flat.shape), axis=-1)
    return y.reshape((n, c) + osz)


def fractional_intervals(u, n, o, k):
    """ATen generate_intervals: window starts, in the arithmetic of u's dtype."""
    t = type(u)
    alpha = t(n - k) / t(o - 1) if o > 1 else t(0)
    return [int((t(i) + u) * alpha) - int(u * alpha) for i in range(o - 1)] + [n - k]


def fractional_max_pool2d(x, kernel_size, output_size=None, output_ratio=None,
                          return_indices=False, random_samples=None, seed=None):
    """random_samples (N, C, 2) in [0, 1): [..., 0] drives width, [..., 1] height (ATen);
    interval arithmetic in the input's float dtype as ATen does; values/argmax in float64."""
    xin = np.asarray(x)
    dt = xin.dtype if xin.dtype in (np.float16, np.float32, np.float64) else np.dtype(np.float64)
    x = f64(xin)
    n, c, h, w = x.shape
    kh, kw = ntuple(kernel_size, 2, "kernel_size")
    if output_size is not None:
        oh, ow = ntuple(output_size, 2, "output_size")
    elif output_ratio is not None:
        r = (output_ratio,) * 2 if isinstance(output_ratio, (int, float)) else tuple(output_ratio)
        oh, ow = int(h * r[0]), int(w * r[1])
    else:
        raise ValueError("fractional_max_pool2d: give output_size or output_ratio")
    if oh < 1 or ow < 1 or oh + kh - 1 > h or ow + kw - 1 > w:
        raise ValueError(f"fractional_max_pool2d: output {(oh, ow)} with kernel {(kh, kw)} "
                         f"does not fit input {(h, w)}")
    if random_samples is None:
        random_samples = np.random.default_rng(seed).random((n, c, 2))
    samples = np.asarray(random_samples).astype(dt)
    plane = np.arange(h * w, dtype=np.int64).reshape(h, w)
    y = np.empty((n, c, oh, ow))
    idx = np.empty((n, c, oh, ow), dtype=np.int64)
    for b, ch in np.ndindex(n, c):
        rows = np.add.outer(fractional_intervals(samples[b, ch, 1], h, oh, kh), np.arange(kh))
        cols = np.add.outer(fractional_intervals(samples[b, ch, 0], w, ow, kw), np.arange(kw))
        sel = (rows[:, None, :, None], cols[None, :, None, :])          # (oh, ow, kh, kw)
        vals = x[b, ch][sel].reshape(oh, ow, -1)
        y[b, ch] = vals.max(-1)
        idx[b, ch] = pick_index(vals, plane[sel].reshape(oh, ow, -1), y[b, ch])
    return (y, idx) if return_indices else y
