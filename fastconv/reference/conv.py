"""Reference convolutions, float64 throughout: forward conv as a window view + one einsum,
transposed conv as its scatter definition (one einsum per tap)."""

import numpy as np

from .window import ntuple, pad, resolve_padding, sliding_windows


def f64(a):
    return None if a is None else np.asarray(a, dtype=np.float64)


def activate(y, activation):
    if activation is None:
        return y
    if activation == "relu":
        return np.maximum(y, 0.0)
    if activation == "relu6":
        return np.clip(y, 0.0, 6.0)
    raise ValueError(f"activation={activation!r}: expected None, 'relu' or 'relu6'")


def conv(x, w, b=None, stride=1, padding=0, dilation=1, groups=1,
         padding_mode="zeros", padding_value=0.0, activation=None):
    """x (N, C, *spatial), w (K, C/groups, *kernel) -> (N, K, *out) float64."""
    x, w, b = f64(x), f64(w), f64(b)
    nd, g = x.ndim - 2, groups
    (n, c), (k, kk) = x.shape[:2], (w.shape[0], w.shape[2:])
    if w.ndim != x.ndim or c != w.shape[1] * g or k % g:
        raise ValueError(f"conv: x {x.shape}, w {w.shape}, groups={g} do not match")
    s, d = ntuple(stride, nd, "stride"), ntuple(dilation, nd, "dilation")
    pads = resolve_padding(padding, x.shape[2:], kk, s, d)
    win = sliding_windows(pad(x, pads, padding_mode, padding_value), kk, s, d)
    out = win.shape[2:2 + nd]
    sp, kp = "xyz"[:nd], "ijk"[:nd]
    y = np.einsum(f"ngc{sp}{kp},goc{kp}->ngo{sp}", win.reshape(n, g, c // g, *out, *kk),
                  w.reshape(g, k // g, c // g, *kk), optimize=True).reshape(n, k, *out)
    if b is not None:
        y = y + b.reshape((1, k) + (1,) * nd)
    return activate(y, activation)


def transpose_padding(padding, in_size, kernel, stride, dilation, output_padding=0):
    """(begin, end) cropped from the full transposed output (size (n-1)s + d(k-1) + 1 + output_padding).

    "same" (ONNX SAME_UPPER for ConvTranspose): output size n * s, output_padding
    included in the total; a negative total extends the end (a negative crop).
    """
    if isinstance(padding, str) and padding == "same":
        pads = []
        ops = ntuple(output_padding, len(in_size), "output_padding")
        for n, k, s, d, o in zip(in_size, kernel, stride, dilation, ops):
            total = (n - 1) * s + d * (k - 1) + 1 + o - n * s
            pads.append((total // 2, total - total // 2) if total >= 0 else (0, total))
        return tuple(pads)
    return resolve_padding(padding, in_size, kernel, stride, dilation)


def conv_transpose(x, w, b=None, stride=1, padding=0, output_padding=0, groups=1,
                   dilation=1, activation=None, output_size=None):
    """x (N, C, *spatial), w (C, K/groups, *kernel) -> (N, K, *out) float64.

    The scatter form, term by term as the definition reads: input pixel i and tap k add
    x[i] * w[k] to full output position i * s + k * d (full size (n-1)s + d(k-1) + 1), one
    einsum over channels per tap; then (begin, end) is cropped from the full output (a
    negative end extends it) and output_padding zeros are appended. Only real input
    pixels meet the weights: no zero is inserted between them, so a non-finite weight
    reaches exactly the outputs its tap reaches (as in PyTorch)."""
    x, w = f64(x), f64(w)
    nd, g = x.ndim - 2, groups
    n, c = x.shape[:2]
    kk, ins = w.shape[2:], x.shape[2:]
    if w.ndim != x.ndim or w.shape[0] != c or c % g:
        raise ValueError(f"conv_transpose: x {x.shape}, w {w.shape}, groups={g} do not match")
    s, d = ntuple(stride, nd, "stride"), ntuple(dilation, nd, "dilation")
    pads = transpose_padding(padding, ins, kk, s, d, 0 if output_size is not None else output_padding)
    if output_size is not None:
        base = [(i - 1) * ss + dd * (k - 1) + 1 - bb - e
                for i, k, ss, dd, (bb, e) in zip(ins, kk, s, d, pads)]
        op = tuple(t - m for t, m in zip(tuple(output_size)[-nd:], base))
        if any(o < 0 for o in op):
            raise ValueError(f"output_size={output_size!r}: smallest possible is {base}")
    else:
        op = ntuple(output_padding, nd, "output_padding")
    kg = w.shape[1]
    full = tuple((i - 1) * ss + dd * (k - 1) + 1 for i, k, ss, dd in zip(ins, kk, s, d))
    y = np.zeros((n, g, kg) + full)
    sp = "xyz"[:nd]
    xg, wg = x.reshape(n, g, c // g, *ins), w.reshape(g, c // g, kg, *kk)
    for tap in np.ndindex(*kk):
        part = np.einsum(f"ngc{sp},gco->ngo{sp}", xg, wg[(slice(None),) * 3 + tap])
        at = tuple(slice(t * dd, t * dd + (i - 1) * ss + 1, ss) for t, dd, i, ss in zip(tap, d, ins, s))
        y[(slice(None),) * 3 + at] += part
    y = y.reshape((n, g * kg) + full)
    out_size = tuple(f - bb - e + o for f, (bb, e), o in zip(full, pads, op))
    out = np.zeros((n, g * kg) + out_size)
    src, dst = [slice(None)] * 2, [slice(None)] * 2
    for f, (bb, _), m in zip(full, pads, out_size):
        lo, hi = max(bb, 0), min(f, bb + m)
        src.append(slice(lo, max(lo, hi)))
        dst.append(slice(lo - bb, max(lo, hi) - bb))
    out[tuple(dst)] = y[tuple(src)]
    if b is not None:
        out = out + f64(b).reshape((1, g * kg) + (1,) * nd)
    return activate(out, activation)


def depthwise_conv(x, w, b=None, stride=1, padding=0, dilation=1, **kw):
    """w (C*M, 1, *kernel): conv with groups = C."""
    return conv(x, w, b, stride, padding, dilation, groups=np.shape(x)[1], **kw)


def pointwise_conv(x, w, b=None, **kw):
    """w (K, C, 1, ...) or (K, C)."""
    w = f64(w)
    if w.ndim == 2:
        w = w.reshape(w.shape + (1,) * (np.ndim(x) - 2))
    return conv(x, w, b, **kw)


def separable_conv(x, dw, pw, bias=None, stride=1, padding=0, dilation=1,
                   depthwise_bias=None, activation=None, **kw):
    """Depthwise (with depthwise_bias) then 1x1 conv with bias; activation at the end."""
    y = depthwise_conv(x, dw, depthwise_bias, stride, padding, dilation, **kw)
    return pointwise_conv(y, pw, bias, activation=activation)
