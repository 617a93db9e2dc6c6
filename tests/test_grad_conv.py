"""fastconv.grad's convolution gradients (input, weight, bias; conv and transposed conv).

Ground truth: adjointness against the NumPy reference in float64 (exact up to rounding:
<conv(x, w), g> == <x, conv_input(g)> == <w, conv_weight(x, g)>), torch.autograd on the
same call (float64 to 1e-10; float32/float16 within a rounding bound, see
``_rounding_bound``), finite differences on one tiny case; then determinism, layouts,
algo selection and errors. Configurations come from the sample registry.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import fastconv
import fastconv.grad as G
from fastconv import reference as ref
from fastconv.testing.conv_samples import conv_samples, sample

torch.set_num_threads(1)

SAMPLES = conv_samples()
_TORCH_MODE = {"zeros": "constant", "constant": "constant", "reflect": "reflect", "replicate": "replicate",
               "circular": "circular"}


def _args(s, **changes):
    """The sample's geometry arguments as the gradient functions take them (no activation)."""
    a = {k: v for k, v in s.args.items() if k != "activation"}
    a.update(changes)
    return a


def _forward(s, x, w, **changes):
    fn = ref.conv_transpose if s.transposed else ref.conv
    return fn(x, w, None, **_args(s, **changes))


def _grads(s, x, w, g, channels_last=False, **kw):
    """(input grad, weight grad) from fastconv.grad, channels-first in and out."""
    prefix = f"conv_transpose{s.nd}d" if s.transposed else f"conv{s.nd}d"
    size = x.shape
    if channels_last:
        x, g = np.moveaxis(x, 1, -1), np.moveaxis(g, 1, -1)
        size = x.shape
    gi = getattr(G, f"{prefix}_input")(size, w, g, channels_last=channels_last, **_args(s), **kw)
    gw = getattr(G, f"{prefix}_weight")(x, w.shape, g, channels_last=channels_last, **_args(s), **kw)
    return (np.moveaxis(gi, -1, 1) if channels_last else gi), gw


def _arrays(s, rng, dtype=np.float64):
    x = rng.standard_normal(s.input_shape).astype(dtype)
    w = rng.standard_normal(s.weight_shape).astype(dtype)
    g = rng.standard_normal(_forward(s, x, w).shape).astype(dtype)
    return x, w, g


# ---- adjointness against the NumPy reference ---------------------------------------------

@pytest.mark.parametrize("s", SAMPLES, ids=str)
def test_adjoint_identities(s, rng):
    """Both gradients are the adjoints of the reference forward, in float64. Constant padding
    makes the forward affine in x: the identity holds for its linear part, conv(x) - conv(0)."""
    x, w, g = _arrays(s, rng)
    gi, gw = _grads(s, x, w, g)
    y = _forward(s, x, w)
    y_linear = y - _forward(s, np.zeros_like(x), w)
    assert gi.shape == x.shape and gw.shape == w.shape
    assert gi.dtype == gw.dtype == np.float64
    scale = np.sum(np.abs(y) * np.abs(g)) + 1e-300
    assert abs(np.sum(y_linear * g) - np.sum(x * gi)) <= 1e-12 * scale
    assert abs(np.sum(y * g) - np.sum(w * gw)) <= 1e-12 * scale


def test_finite_differences(rng):
    """A tiny reflect-padded, strided, dilated case: central differences of <conv(x, w), g>."""
    s = sample("conv2d", (1, 2, 5, 4), (2, 2, 2, 3), stride=(2, 1), dilation=(1, 2), padding=((1, 2), (3, 0)),
               padding_mode="reflect")
    x, w, g = _arrays(s, rng)
    gi, gw = _grads(s, x, w, g)
    h = 1e-6
    for arr, grad, loss in ((x, gi, lambda v: np.sum(_forward(s, v, w) * g)),
                            (w, gw, lambda v: np.sum(_forward(s, x, v) * g))):
        fd = np.empty_like(arr)
        for i in np.ndindex(arr.shape):
            up, down = arr.copy(), arr.copy()
            up[i] += h
            down[i] -= h
            fd[i] = (loss(up) - loss(down)) / (2 * h)
        np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-7)


# ---- torch.autograd ----------------------------------------------------------------------

def _torch_forward(s, xt, wt, padding_value=None):
    """The sample's forward in torch (differentiable), or None where torch has no answer."""
    spec = s.spec()
    if s.transposed:
        fn = {1: TF.conv_transpose1d, 2: TF.conv_transpose2d, 3: TF.conv_transpose3d}[s.nd]
        y = fn(xt, wt, None, stride=spec.stride, groups=spec.groups, dilation=spec.dilation)
        for axis, ((b, _), m) in enumerate(zip(spec.pads, spec.out_size)):
            dim = 2 + axis
            y = y.narrow(dim, b, min(m, y.shape[dim] - b))
            if y.shape[dim] < m:  # output_padding past the full output: zeros
                pad = [0, 0] * (s.nd - 1 - axis) + [0, m - y.shape[dim]]
                y = TF.pad(y, pad)
        return y
    mode = spec.padding_mode
    if mode not in _TORCH_MODE:
        return None
    for n, (b, e) in zip(spec.in_size, spec.pads):
        if mode == "reflect" and max(b, e) >= n or mode == "circular" and max(b, e) > n:
            return None
    if any(p != (0, 0) for p in spec.pads):
        flat = [v for b, e in reversed(spec.pads) for v in (b, e)]
        value = spec.padding_value if padding_value is None else padding_value
        kwargs = {"value": value} if mode in ("zeros", "constant") else {}
        xt = TF.pad(xt, flat, mode=_TORCH_MODE[mode], **kwargs)
    fn = {1: TF.conv1d, 2: TF.conv2d, 3: TF.conv3d}[s.nd]
    return fn(xt, wt, None, stride=spec.stride, dilation=spec.dilation, groups=spec.groups)


def _torch_grads(s, x, w, g, padding_value=None):
    xt = torch.tensor(np.asarray(x, np.float64), requires_grad=True)
    wt = torch.tensor(np.asarray(w, np.float64), requires_grad=True)
    y = _torch_forward(s, xt, wt, padding_value)
    if y is None:
        return None
    y.backward(torch.from_numpy(np.asarray(g, np.float64)))
    return xt.grad.numpy(), wt.grad.numpy()


TORCH_SAMPLES = [s for s in SAMPLES if _torch_forward(s, torch.zeros(s.input_shape, dtype=torch.float64),
                                                      torch.zeros(s.weight_shape, dtype=torch.float64)) is not None]


def _relative(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)) if b.size else 0.0


@pytest.mark.parametrize("s", TORCH_SAMPLES, ids=str)
def test_matches_torch_autograd_float64(s, rng):
    x, w, g = _arrays(s, rng)
    want = _torch_grads(s, x, w, g)
    for got, expected in zip(_grads(s, x, w, g), want):
        assert _relative(got, expected) <= 1e-10


def _rounding_bound(s, x, w, g, dtype):
    """Per-element bounds on |fastconv - exact| for (input grad, weight grad) in ``dtype``.

    Each gradient element is a sum of L products of exactly representable operands (x, w, g
    are given in ``dtype``); summed in float32 in any order its error is at most
    L * eps32 * (the same sum over absolute values), which torch computes in float64 on
    |x|, |w|, |g| (and |padding_value|). L: the weight gradient sums over batch and output
    pixels; the input gradient over taps and a group's out-channels, plus the padded cells
    folded onto one pixel. float16 results are then rounded once: + eps16 * |exact|.
    """
    spec = s.spec()
    abs_grads = _torch_grads(s, np.abs(x), np.abs(w), np.abs(g), abs(spec.padding_value))
    fold = math.prod(-(-(n + b + e) // n) for n, (b, e) in zip(spec.in_size, spec.pads))
    taps = math.prod(spec.kernel)
    reduction_x = taps * (spec.out_per_group if not s.transposed else spec.out_per_group) + fold
    pixels = spec.in_size if s.transposed else spec.out_size
    reduction_w = spec.batch * math.prod(pixels)
    eps32 = np.finfo(np.float32).eps
    bounds = [L * eps32 * a for L, a in zip((reduction_x, reduction_w), abs_grads)]
    if dtype == np.float16:
        bounds = [b + np.finfo(np.float16).eps * a for b, a in zip(bounds, abs_grads)]
    return bounds


LOW_PRECISION = [s for s in TORCH_SAMPLES if s.dtype != "float64"]


@pytest.mark.parametrize("s", LOW_PRECISION, ids=str)
def test_matches_torch_autograd_low_precision(s, rng):
    dtype = np.dtype(s.dtype)
    x, w, g = _arrays(s, rng, dtype)
    want = _torch_grads(s, x, w, g)
    bounds = _rounding_bound(s, x, w, g, dtype)
    for got, expected, bound in zip(_grads(s, x, w, g), want, bounds):
        assert got.dtype == dtype
        assert np.all(np.abs(got.astype(np.float64) - expected) <= bound + 1e-30)
