"""Reference convolutions: window view + one einsum, float64 throughout."""

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

    Forward conv of the stride-zero-inserted input with the flipped, in/out-swapped
    kernel, padded d(k-1) - begin left and d(k-1) - end + output_padding right."""
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
    z = np.zeros((n, c) + tuple((i - 1) * ss + 1 for i, ss in zip(ins, s)))
    z[(slice(None), slice(None)) + tuple(slice(None, None, ss) for ss in s)] = x
    wf = w.reshape(g, c // g, w.shape[1], *kk).swapaxes(1, 2)         # (G, K/G, C/G, *k)
    wf = np.flip(wf, axis=tuple(range(3, 3 + nd))).reshape(g * w.shape[1], c // g, *kk)
    fpads = tuple((dd * (k - 1) - bb, dd * (k - 1) - e + o)
                  for k, dd, (bb, e), o in zip(kk, d, pads, op))
    return conv(z, wf, b, 1, fpads, d, g, activation=activation)


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
