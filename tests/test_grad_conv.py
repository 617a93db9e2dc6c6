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
from fastconv.cpu.conv.weight_grad.operands import working_ndhwc
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
    reduction_x = taps * spec.out_per_group + fold
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


# ---- corners the registry lacks: output_padding a whole stride past the input -------------

OUTPUT_PADDING_PAST = [
    sample("conv_transpose2d", (2, 4, 5, 4), (4, 3, 3, 2), stride=1, dilation=2, output_padding=1, padding=1),
    sample("conv_transpose1d", (1, 2, 6), (2, 4, 3), stride=2, dilation=3, output_padding=2, padding=((0, 2),)),
]


@pytest.mark.parametrize("s", OUTPUT_PADDING_PAST, ids=str)
def test_output_padding_past_the_stride(s, rng):
    """output_padding >= stride (allowed while below dilation): the adjoint forward conv gives rows
    past the transposed conv's input, which the input gradient drops and the weight gradient never reads."""
    x, w, g = _arrays(s, rng)
    want = _torch_grads(s, x, w, g)
    for got, expected in zip(_grads(s, x, w, g), want):
        assert _relative(got, expected) <= 1e-10


# ---- the depthwise input gradient's own paths --------------------------------------------

DEPTHWISE_INPUT_PATHS = [  # stride 1: the flipped forward conv; strided or over-padded: the row-owning kernel
    sample("conv2d", (2, 6, 9, 8), (6, 1, 3, 3), groups=6, padding=1),
    sample("conv2d", (2, 6, 9, 10), (6, 1, 3, 3), groups=6, stride=2, padding=1),
    sample("conv2d", (1, 5, 11, 9), (5, 1, 3, 3), groups=5, stride=(2, 3), dilation=2, padding=((2, 0), (1, 2))),
    sample("conv2d", (1, 4, 5, 5), (4, 1, 3, 3), groups=4, padding=3),
    sample("conv1d", (2, 4, 13), (4, 1, 5), groups=4, stride=3, padding=2),
    sample("conv3d", (1, 3, 5, 6, 7), (3, 1, 3, 3, 3), groups=3, stride=2, padding=1),
    # channels-last pixels summing 1, 2 and 4 taps, and 3 or 6 (the general loop); 37 channels: a part vector
    sample("conv2d", (2, 37, 12, 11), (37, 1, 3, 3), groups=37, stride=2, padding=1),
    sample("conv2d", (1, 37, 9, 10), (37, 1, 3, 3), groups=37, stride=(2, 1), padding=1),
    sample("conv2d", (1, 20, 13, 12), (20, 1, 5, 5), groups=20, stride=2, padding=2),
]


@pytest.mark.parametrize("channels_last", [False, True], ids=["first", "last"])
@pytest.mark.parametrize("s", DEPTHWISE_INPUT_PATHS, ids=str)
def test_depthwise_gradients_both_layouts(s, channels_last, rng):
    x, w, g = _arrays(s, rng)
    want = _torch_grads(s, x, w, g)
    for got, expected in zip(_grads(s, x, w, g, channels_last=channels_last), want):
        assert _relative(got, expected) <= 1e-10


# ---- stride-1 layers: the direct kernel packing the swapped, flipped weight itself ---------

SWAPPED_DIRECT = [  # every one takes cpu.conv.input_grad's swapped direct path (asserted)
    sample("conv2d", (2, 8, 9, 10), (12, 8, 3, 3), padding=1),
    sample("conv2d", (2, 8, 6, 5), (40, 8, 3, 3), padding=1, dtype="float32"),  # 40 = a block of 32 and 8 lanes
    sample("conv2d", (3, 80, 6, 7), (36, 40, 3, 3), groups=2),  # each group's 40 gradient channels: 2 blocks
    sample("conv2d", (2, 6, 11, 10), (8, 3, 3, 3), groups=2, dilation=3, padding=((1, 4), (2, 0))),
    sample("conv2d", (2, 16, 11, 9), (8, 16, 3, 5), padding=(1, 2), dtype="float16"),
    sample("conv2d", (2, 6, 7, 8), (12, 1, 3, 3), groups=6, padding=1),  # depthwise, multiplier 2
    sample("conv2d", (2, 70, 5, 4), (96, 70, 3, 3), padding=1, dtype="float32"),
    sample("conv1d", (2, 5, 17), (7, 5, 7), padding=3),
    sample("conv3d", (1, 4, 5, 6, 5), (6, 4, 3, 3, 3), padding=1, dtype="float32"),
    sample("conv2d", (2, 512, 4, 4), (512, 512, 3, 3), padding=1, dtype="float32"),
]
SWAPPED_STRIDED = [  # the transposed conv's phases, those of 1x2, 2x1 and 2x2 taps by the swapped direct kernel
    sample("conv2d", (2, 40, 7, 7), (36, 40, 3, 3), stride=2, padding=1),
    sample("conv2d", (2, 16, 8, 9), (24, 16, 3, 3), stride=2, padding=1, dtype="float32"),
]


@pytest.mark.parametrize("channels_last", [False, True], ids=["first", "last"])
@pytest.mark.parametrize("s", SWAPPED_STRIDED, ids=str)
def test_swapped_direct_strided_input_grad(s, channels_last, rng):
    from fastconv.cpu.conv.transpose.phases import _swapped_groups
    from fastconv.spec.adjoint import adjoint_transpose_spec

    spec = s.spec().with_(channels_last=channels_last)
    adj = adjoint_transpose_spec(spec, spec.pads, spec.in_size, spec.channels_last, spec.dtype)
    assert sum(pos is not None for pos in _swapped_groups(adj).pos) == 3
    dtype = np.dtype(s.dtype)
    x, w, g = _arrays(s, rng, dtype)
    want = _torch_grads(s, x, w, g)[0]
    got = _grads(s, x, w, g, channels_last=channels_last)[0]
    if dtype == np.float64:
        assert _relative(got, want) <= 1e-10
    else:
        assert np.all(np.abs(got.astype(np.float64) - want) <= _rounding_bound(s, x, w, g, dtype)[0] + 1e-30)


@pytest.mark.parametrize("channels_last", [False, True], ids=["first", "last"])
@pytest.mark.parametrize("s", SWAPPED_DIRECT, ids=str)
def test_swapped_direct_input_grad(s, channels_last, rng):
    """Against torch: float64 to 1e-10, float32 and float16 within the rounding bound; grad_output
    non-contiguous, the weight read-only, neither modified."""
    from fastconv.cpu.conv.input_grad import _swapped_direct

    spec = s.spec()
    assert _swapped_direct(spec.with_(channels_last=channels_last)) is not None
    dtype = np.dtype(s.dtype)
    x, w, g = _arrays(s, rng, dtype)
    want = _torch_grads(s, x, w, g)[0]
    size = x.shape
    if channels_last:
        g, size = np.moveaxis(g, 1, -1), np.moveaxis(x, 1, -1).shape
    g_view, w_kept, g_kept = _strided_copy(g), w.copy(), g.copy()
    w.flags.writeable = False
    got = getattr(G, f"conv{s.nd}d_input")(size, w, g_view, channels_last=channels_last, **_args(s))
    assert got.dtype == dtype and np.array_equal(w, w_kept) and np.array_equal(g_view, g_kept)
    got = np.moveaxis(got, -1, 1) if channels_last else got
    if dtype == np.float64:
        assert _relative(got, want) <= 1e-10
    else:
        bound = _rounding_bound(s, x, w, np.moveaxis(g_kept, -1, 1) if channels_last else g_kept, dtype)[0]
        assert np.all(np.abs(got.astype(np.float64) - want) <= bound + 1e-30)


@pytest.mark.parametrize("where", ["corner", "centre"])
@pytest.mark.parametrize("s", [SWAPPED_DIRECT[0], SWAPPED_DIRECT[-1]], ids=str)
def test_swapped_direct_nonfinite_weight(s, where, rng):
    """A NaN or inf weight would meet the direct kernel's zero padding, where the transposed conv has no
    term: such weights take the transposed conv (checked on the weight first when it is the smaller, as in
    the first sample, or on the result after, as in the second), and land where torch puts them."""
    x, w, g = _arrays(s, rng)
    tap = (0, 0) if where == "corner" else (1, 1)
    w[1, 2][tap] = np.inf
    w[0, 0][tap] = np.nan
    want = _torch_grads(s, x, w, g)[0]
    got = G.conv2d_input(x.shape, w, g, **_args(s))
    assert np.array_equal(np.isnan(got), np.isnan(want)) and np.array_equal(np.isinf(got), np.isinf(want))
    finite = np.isfinite(want)
    assert _relative(got[finite], want[finite]) <= 1e-10


SWAPPED_BANDED = [  # dilated past the input's reach at most taps: the swapped conv's banded plan
    sample("conv2d", (2, 8, 9, 10), (6, 8, 3, 3), padding=6, dilation=6),
    sample("conv2d", (1, 8, 9, 9), (6, 4, 3, 3), groups=2, padding=(5, 6), dilation=(5, 6), dtype="float32"),
]


@pytest.mark.parametrize("channels_last", [False, True], ids=["first", "last"])
@pytest.mark.parametrize("s", SWAPPED_BANDED, ids=str)
def test_swapped_banded_input_grad(s, channels_last, rng):
    """Against torch (float64 to 1e-10, float32 within the rounding bound), the weight read-only and
    untouched; a NaN and an inf weight land where torch puts them (the transposed conv's fallback)."""
    from fastconv.cpu.conv.direct.run import direct_plan
    from fastconv.cpu.conv.input_grad import BANDED_MAX_READ_SHARE, _swapped_direct
    from fastconv.dispatch import read_share

    spec = s.spec().with_(channels_last=channels_last)
    swapped = _swapped_direct(spec)
    assert read_share(spec) <= BANDED_MAX_READ_SHARE and direct_plan(swapped).banded is not None
    dtype = np.dtype(s.dtype)
    x, w, g = _arrays(s, rng, dtype)
    w_kept = w.copy()
    w.flags.writeable = False
    want = _torch_grads(s, x, w, g)[0]
    got = _grads(s, x, w, g, channels_last=channels_last)[0]
    assert got.dtype == dtype and np.array_equal(w, w_kept)
    if dtype == np.float64:
        assert _relative(got, want) <= 1e-10
    else:
        assert np.all(np.abs(got.astype(np.float64) - want) <= _rounding_bound(s, x, w, g, dtype)[0] + 1e-30)
    w = w_kept
    w[1, 2, 0, 0] = np.inf
    w[0, 0, 1, 1] = np.nan
    want = _torch_grads(s, x, w, g)[0]
    got = _grads(s, x, w, g, channels_last=channels_last)[0]
    assert np.array_equal(np.isnan(got), np.isnan(want)) and np.array_equal(np.isinf(got), np.isinf(want))


def _strided_copy(a):
    """``a`` as a non-contiguous view of the same shape and values."""
    wide = np.zeros((*a.shape[:-1], 2 * a.shape[-1]), a.dtype)
    wide[..., ::2] = a
    return wide[..., ::2]


@pytest.mark.parametrize("channels_last", [False, True], ids=["first", "last"])
def test_repeated_depthwise_weight_grad(channels_last, rng):
    """A repeated call on C-contiguous arrays runs the register-tiled kernel bound in its call plan,
    reading the arrays in place; one on non-contiguous arrays of the same shapes takes the full path."""
    s = sample("conv2d", (2, 20, 9, 11), (20, 1, 3, 3), groups=20, padding=1)
    x, w, g = _arrays(s, rng)
    want = _torch_grads(s, x, w, g)[1]
    if channels_last:
        x, g = np.ascontiguousarray(np.moveaxis(x, 1, -1)), np.ascontiguousarray(np.moveaxis(g, 1, -1))
    for xa, ga in ((x, g), (x, g), (_strided_copy(x), _strided_copy(g))):
        got = G.conv2d_weight(xa, w.shape, ga, padding=1, groups=20, channels_last=channels_last)
        assert _relative(got, want) <= 1e-10


# ---- layouts, bias, shapes ---------------------------------------------------------------

LAYOUT_SAMPLES = [s for s in SAMPLES if "channels_last" in s.tags]  # the registry's layout set


@pytest.mark.parametrize("s", LAYOUT_SAMPLES, ids=str)
def test_channels_last(s, rng):
    x, w, g = _arrays(s, rng)
    first = _grads(s, x, w, g)
    last = _grads(s, x, w, g, channels_last=True)
    for a, b in zip(last, first):
        assert _relative(a, b) <= 1e-12


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("channels_last", [False, True])
def test_conv_bias(dtype, channels_last, rng):
    g = rng.standard_normal((3, 5, 4, 6)).astype(dtype)
    got = G.conv_bias(np.moveaxis(g, 1, -1) if channels_last else g, channels_last=channels_last)
    want = g.astype(np.float64).sum(axis=(0, 2, 3))
    assert got.dtype == dtype and got.shape == (5,)
    bound = 24 * np.finfo(np.float32 if dtype != np.float64 else dtype).eps * np.abs(g.astype(np.float64)).sum((0, 2, 3))
    if dtype == np.float16:
        bound += np.finfo(np.float16).eps * np.abs(want)
    assert np.all(np.abs(got - want) <= bound)


def test_unbatched_zero_batch_and_untouched_inputs(rng):
    s = sample("conv2d", (1, 4, 6, 5), (6, 2, 3, 3), groups=2, padding=1, padding_mode="replicate")
    x, w, g = _arrays(s, rng)
    gi, gw = _grads(s, x, w, g)
    for a in (x, w, g):
        a.setflags(write=False)
    ui = G.conv2d_input(x.shape[1:], w, g[0], padding=1, groups=2, padding_mode="replicate")
    uw = G.conv2d_weight(x[0], w.shape, g[0], padding=1, groups=2, padding_mode="replicate")
    np.testing.assert_array_equal(ui, gi[0])
    np.testing.assert_array_equal(uw, gw)
    # non-contiguous grad_output: a view of a larger array
    big = np.zeros((1, 6, 12, 5))
    big[:, :, ::2] = g
    np.testing.assert_array_equal(G.conv2d_input(x.shape, w, big[:, :, ::2], padding=1, groups=2,
                                                 padding_mode="replicate"), gi)
    empty_x, empty_g = np.zeros((0, 4, 6, 5)), np.zeros((0, 6, 6, 5))
    assert G.conv2d_input(empty_x.shape, w, empty_g, padding=1, groups=2).shape == empty_x.shape
    assert not G.conv2d_weight(empty_x, w.shape, empty_g, padding=1, groups=2).any()


REPEATED = [
    sample("conv2d", (2, 4, 6, 5), (6, 4, 1, 1), stride=2),
    sample("conv_transpose2d", (2, 4, 4, 5), (4, 3, 3, 3), stride=2, padding=1),
]


@pytest.mark.parametrize("s", REPEATED, ids=str)
def test_repeated_calls_run_the_call_plan(s, rng):
    """A NumPy call seen before runs its CallPlan: batched and unbatched, the transposed conv's
    weight gradient reading (grad_output, input) in the kernel's order, the same results as
    the first call; a bad call raises every time."""
    x, w, g = _arrays(s, rng)
    fresh = [_grads(s, x, w, g), _grads(s, x[:1], w, g[:1])]
    for _ in range(2):
        assert all(a.tobytes() == b.tobytes() for a, b in zip(_grads(s, x, w, g), fresh[0]))
        prefix = f"conv_transpose{s.nd}d" if s.transposed else f"conv{s.nd}d"
        ui = getattr(G, f"{prefix}_input")(x.shape[1:], w, g[0], **_args(s))
        uw = getattr(G, f"{prefix}_weight")(x[0], w.shape, g[0], **_args(s))
        assert ui.tobytes() == fresh[1][0][0].tobytes() and uw.tobytes() == fresh[1][1].tobytes()
        with pytest.raises(ValueError, match="grad_output has shape"):
            getattr(G, f"{prefix}_weight")(x, w.shape, g[:, :, 1:], **_args(s))


# ---- algorithms and determinism ----------------------------------------------------------

def test_algorithms_and_algo_choice(rng):
    dw = dict(groups=8, padding=1)
    assert fastconv.algorithms("conv2d_weight", (2, 8, 9, 9), (8, 1, 3, 3), **dw) == ["direct", "im2col", "depthwise",
                                                                                  "tiled"]
    assert fastconv.algorithms("conv2d_weight", (2, 8, 9, 9), (8, 4, 3, 3), groups=2) == ["direct", "im2col", "tiled"]
    assert fastconv.algorithms("conv_transpose2d_input", (2, 8, 9, 9), (8, 4, 3, 3), stride=2) == ["adjoint"]
    x, g = rng.standard_normal((2, 8, 9, 9)), rng.standard_normal((2, 8, 9, 9))
    want = _torch_grads(sample("conv2d", x.shape, (8, 1, 3, 3), **dw), x, np.zeros((8, 1, 3, 3)), g)[1]
    for algo in ("direct", "im2col", "depthwise", "auto"):
        assert _relative(G.conv2d_weight(x, (8, 1, 3, 3), g, algo=algo, **dw), want) <= 1e-12
    with pytest.raises(ValueError, match="algo='depthwise' cannot serve.*the ones that can: direct"):
        G.conv2d_weight(x, (8, 4, 3, 3), g, groups=2, padding=1, algo="depthwise")
    with pytest.raises(ValueError, match="unknown algo='winograd'"):
        G.conv2d_input(x.shape, np.zeros((8, 1, 3, 3)), g, padding=1, groups=8, algo="winograd")


IM2COL_COLUMNS = [
    # channels-first rows 48 or more wide: (c, tap) columns, row borders through the padding maps
    sample("conv2d", (2, 3, 5, 50), (4, 3, 3, 3), padding=(1, 3), dilation=(1, 3), padding_mode="reflect"),
    sample("conv1d", (2, 4, 60), (6, 2, 5), padding=3, groups=2, padding_mode="circular"),
    # narrower rows: pixel columns from a channels-last copy, one image at a time; a few
    # channels, one group: whole window rows where they lie inside the input
    sample("conv2d", (2, 4, 7, 9), (6, 4, 2, 3), stride=2, padding=(1, 2), padding_mode="replicate"),
    sample("conv3d", (2, 3, 4, 5, 6), (4, 3, 2, 3, 3), stride=(1, 1, 2), padding=1, padding_mode="constant",
           padding_value=0.5),
    # a gradient large enough for cache-sized column chunks (several per image)
    sample("conv2d", (1, 64, 20, 50), (64, 64, 3, 3), padding=1),
    # channels-last, a pixel sum long enough for pieces: columns built per piece (fused.py)
    sample("conv2d", (1, 32, 46, 46), (64, 32, 3, 3), padding=1, padding_mode="reflect"),
]


@pytest.mark.parametrize("s", IM2COL_COLUMNS, ids=str)
def test_im2col_weight_grad_columns(s, rng):
    """Every way the im2col weight gradient builds its columns, both layouts, against torch."""
    x, w, g = _arrays(s, rng)
    want = _torch_grads(s, x, w, g)[1]
    fn = getattr(G, f"conv{s.nd}d_weight")
    for cl in (False, True):
        xa, ga = (np.moveaxis(x, 1, -1), np.moveaxis(g, 1, -1)) if cl else (x, g)
        assert _relative(fn(xa, w.shape, ga, channels_last=cl, algo="im2col", **_args(s)), want) <= 1e-12


def test_pointwise_algorithms_agree(rng):
    """1x1 layers: auto takes the GEMMs in the user's layout; every algorithm gives torch's gradients."""
    pw = dict(stride=2, groups=2)
    assert fastconv.algorithms("conv2d_input", (2, 8, 9, 9), (6, 4, 1, 1), **pw) == ["adjoint", "gemm"]
    assert fastconv.algorithms("conv2d_weight", (2, 8, 9, 9), (6, 4, 1, 1), **pw) == ["direct", "im2col", "gemm",
                                                                                  "tiled"]
    assert fastconv.algorithms("conv2d_input", (2, 8, 9, 9), (6, 8, 3, 3)) == ["adjoint", "columns"]
    s = sample("conv2d", (2, 8, 9, 9), (6, 4, 1, 1), **pw)
    x, w, g = _arrays(s, rng)
    want = _torch_grads(s, x, w, g)
    for algo in ("adjoint", "gemm", "auto"):
        assert _relative(G.conv2d_input(x.shape, w, g, algo=algo, **pw), want[0]) <= 1e-12
    for algo in ("direct", "gemm", "auto"):
        assert _relative(G.conv2d_weight(x, w.shape, g, algo=algo, **pw), want[1]) <= 1e-12
    with pytest.raises(ValueError, match="algo='gemm' cannot serve.*1x1"):
        G.conv2d_weight(x, (6, 4, 3, 3), np.zeros((2, 6, 4, 4)), algo="gemm", **pw)


DETERMINISM = [
    sample("conv2d", (2, 16, 14, 13), (24, 16, 3, 3), dtype="float32", stride=2, padding=1),
    sample("conv2d", (3, 40, 15, 16), (40, 1, 3, 3), dtype="float32", groups=40, padding="same",
           padding_mode="reflect"),
    sample("conv2d", (2, 24, 13, 12), (48, 1, 3, 3), dtype="float32", groups=24, stride=(1, 2), padding=1),
    sample("conv2d", (2, 24, 13, 12), (24, 1, 3, 3), dtype="float32", groups=24, stride=2, padding=1,
           tags={"channels_last"}),
    # the register-tiled depthwise weight gradients: several channel vectors (channels-last tasks),
    # rows longer than a vector with both borders (channels-first lanes)
    sample("conv2d", (2, 40, 9, 37), (40, 1, 3, 3), dtype="float32", groups=40, padding=1, tags={"channels_last"}),
    sample("conv2d", (1, 144, 30, 40), (144, 1, 3, 3), dtype="float32", groups=144, padding=1,
           tags={"channels_last"}),  # channels-last: strips of rows by two channel blocks, partial sums added
    sample("conv_transpose2d", (2, 12, 6, 7), (12, 8, 4, 4), dtype="float32", stride=2, padding=1),
    # 1x1 GEMMs large enough to be cut into blocks per thread (fastconv.cpu.blas.gemm), and
    # weight gradients whose pixel sum is cut into pieces (gemm_sum)
    sample("conv2d", (2, 64, 12, 12), (96, 64, 1, 1), dtype="float32", tags={"channels_last"}),
    sample("conv2d", (2, 16, 64, 48), (24, 16, 1, 1), dtype="float32", tags={"channels_last"}),
    sample("conv2d", (2, 64, 13, 12), (96, 32, 1, 1), dtype="float32", stride=(2, 1), groups=2,
           tags={"channels_last"}),
    # im2col weight gradients: channels-first columns of wide rows, their pixel sum cut into pieces
    sample("conv2d", (2, 8, 40, 52), (16, 8, 3, 3), dtype="float32", padding=1, tags={"channels_last"}),
    sample("conv2d", (1, 32, 46, 46), (64, 32, 3, 3), dtype="float32", padding=1, tags={"channels_last"}),
    # stride-1 input gradients by the direct kernel with the swapped weight: blocks of 32 channels cut
    # into ranges of segments (task_splits), grouped with a part block
    sample("conv2d", (8, 512, 4, 4), (512, 512, 3, 3), dtype="float32", padding=1, tags={"channels_last"}),
    sample("conv2d", (2, 80, 9, 9), (36, 40, 3, 3), dtype="float32", groups=2, padding=1, tags={"channels_last"}),
    sample("conv2d", (8, 256, 7, 7), (512, 256, 3, 3), dtype="float32", stride=2, padding=1, tags={"channels_last"}),
    # strided input gradients by the swapped-phases kernel (transpose/swapped_phases.py), a part channel block
    sample("conv2d", (4, 40, 8, 10), (64, 40, 3, 3), dtype="float32", stride=2, padding=1, tags={"channels_last"}),
]


@pytest.mark.parametrize("s", DETERMINISM, ids=str)
def test_bitwise_deterministic_across_runs_and_threads(s, rng):
    x, w, g = _arrays(s, rng, np.float32)
    layouts = (False, True) if "channels_last" in s.tags else (False,)
    old = numba.get_num_threads()
    try:
        runs = []
        for threads in (1, 2, 2, 1):
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            runs.append(sum((_grads(s, x, w, g, channels_last=cl) for cl in layouts), ()) + (G.conv_bias(g),))
    finally:
        numba.set_num_threads(old)
    for run in runs[1:]:
        for a, b in zip(run, runs[0]):
            assert a.tobytes() == b.tobytes()


# ---- the register-tiled weight gradient (algo "tiled") ------------------------------------

TILED = [
    # stems: 1-3 in-channels, window rows (kw, c) as the vector; out-channels off the tiles' 8 and 16
    sample("conv2d", (2, 3, 23, 20), (13, 3, 7, 7), stride=2, padding=3),
    sample("conv2d", (2, 1, 11, 12), (5, 1, 3, 3), stride=2, padding=1),
    sample("conv2d", (1, 2, 9, 10), (37, 2, 5, 3), stride=(1, 3), padding=(2, 1), dilation=(2, 1)),
    sample("conv2d", (2, 3, 6, 5), (4, 3, 3, 7), padding=(1, 4)),  # window rows wider than the input
    sample("conv2d", (2, 3, 19, 21), (70, 3, 5, 5), stride=2, padding=2),  # out-channel blocks, a short row tile
    # several in-channel vectors and remainders, out-channel blocks cut by the cache budget, pieces
    sample("conv2d", (1, 70, 6, 5), (35, 70, 3, 3), stride=2, padding=1),
    sample("conv2d", (2, 300, 5, 4), (40, 300, 3, 3), padding=1),
    sample("conv2d", (3, 8, 30, 31), (24, 8, 3, 3), padding=1),
    sample("conv2d", (2, 12, 9, 7), (9, 4, 3, 2), groups=3, stride=(2, 1), padding=(2, 0), dilation=(1, 2)),
    sample("conv2d", (2, 6, 8, 8), (6, 1, 3, 3), groups=6, padding=1),  # depthwise
    sample("conv2d", (2, 5, 7, 9), (3, 5, 2, 2), stride=3),  # stride past the window
    sample("conv1d", (2, 3, 40), (7, 3, 5), stride=2, padding=2),
    sample("conv1d", (1, 20, 17), (10, 10, 3), groups=2, padding=3, dilation=2),
    sample("conv3d", (2, 3, 5, 6, 7), (5, 3, 3, 3, 3), stride=(2, 1, 2), padding=1),
    sample("conv3d", (1, 8, 4, 5, 5), (6, 4, 2, 3, 3), groups=2, padding=(1, 0, 2), dilation=(2, 1, 1)),
    sample("conv2d", (2, 4, 7, 9), (6, 4, 2, 3), stride=2, padding=(1, 2), padding_mode="replicate"),
    sample("conv2d", (2, 3, 8, 9), (5, 3, 3, 3), padding=2, padding_mode="reflect"),
    sample("conv2d", (2, 6, 7, 6), (4, 3, 3, 3), groups=2, padding=2, padding_mode="circular"),
    sample("conv3d", (2, 3, 4, 5, 6), (4, 3, 2, 3, 3), stride=(1, 1, 2), padding=1, padding_mode="constant",
           padding_value=0.5),
    sample("conv2d", (2, 3, 6, 7), (4, 3, 3, 3), padding=1, padding_mode="constant", padding_value=0.0),
    sample("conv_transpose2d", (2, 6, 5, 4), (6, 4, 3, 3), stride=2, padding=1),
]


def _tiled_weight(s, x, g, channels_last, **kw):
    fn = getattr(G, f"conv_transpose{s.nd}d_weight" if s.transposed else f"conv{s.nd}d_weight")
    if channels_last:
        x, g = np.moveaxis(x, 1, -1), np.moveaxis(g, 1, -1)  # non-contiguous views
    return fn(x, s.weight_shape, g, channels_last=channels_last, algo="tiled", **_args(s), **kw)


@pytest.mark.parametrize("channels_last", [False, True], ids=["first", "last"])
@pytest.mark.parametrize("s", TORCH_SAMPLES + TILED, ids=str)
def test_tiled_weight_grad_float64(s, channels_last, rng):
    """Every registry configuration and the tiles' corners, both layouts, against torch in float64."""
    x, w, g = _arrays(s, rng)
    want = _torch_grads(s, x, w, g)[1]
    assert _relative(_tiled_weight(s, x, g, channels_last), want) <= 1e-10


@pytest.mark.parametrize("s", [s for s in LOW_PRECISION if s.op.startswith("conv2d")][::2] + TILED[:9], ids=str)
def test_tiled_weight_grad_low_precision(s, rng):
    """float32 (and the registry's float16, widened to float32) within the rounding bound."""
    dtype = np.dtype(s.dtype if s.dtype != "float64" else "float32")
    x, w, g = _arrays(s, rng, dtype)
    want = _torch_grads(s, x, w, g)[1]
    bound = _rounding_bound(s, x, w, g, dtype)[1]
    for cl in (False, True):
        got = _tiled_weight(s, x, g, cl)
        assert got.dtype == dtype
        assert np.all(np.abs(got.astype(np.float64) - want) <= bound + 1e-30)


def test_tiled_weight_grad_strided_inputs_untouched(rng):
    """Sliced (non-contiguous) input and grad_output, read without being modified."""
    s = sample("conv2d", (2, 5, 9, 8), (7, 5, 3, 3), stride=2, padding=1)
    big = rng.standard_normal((2, 10, 9, 16))
    x = big[:, ::2, :, ::2]
    g = rng.standard_normal((2, 7, 5, 8))[..., ::2]
    before = (x.copy(), g.copy())
    want = _torch_grads(s, x, rng.standard_normal(s.weight_shape), g)[1]
    for cl in (False, True):
        assert _relative(_tiled_weight(s, x, g, cl), want) <= 1e-10
    assert np.array_equal(x, before[0]) and np.array_equal(g, before[1])


@pytest.mark.parametrize("s", [TILED[7], TILED[17]], ids=str)
def test_tiled_weight_grad_chunks_of_images(s, rng):
    """A workspace cap below one image's copies: one image per call of the kernel, each cutting its
    own images' pixel sum into pieces (4 over 3 images in one call, 2 per image here)."""
    x, w, g = _arrays(s, rng)
    want = _torch_grads(s, x, w, g)[1]
    previous = fastconv.set_workspace_limit(64)
    try:
        got = _tiled_weight(s, x, g, False)
    finally:
        fastconv.set_workspace_limit(previous)
    assert _relative(got, want) <= 1e-10


@pytest.mark.parametrize("s", [TILED[0], TILED[4], TILED[6], TILED[7], TILED[8], TILED[13]], ids=str)
def test_tiled_weight_grad_bitwise_across_threads(s, rng):
    """Blocks, chunks and pieces come from the shapes: 1 and 2 threads give the same bits."""
    x, w, g = _arrays(s, rng, np.float32)
    old = numba.get_num_threads()
    try:
        runs = []
        for threads in (1, 2, 1):
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            runs.append([_tiled_weight(s, x, g, cl).tobytes() for cl in (False, True)])
    finally:
        numba.set_num_threads(old)
    assert runs[0] == runs[1] == runs[2]



@pytest.mark.parametrize("s", TILED[5:9] + TILED[11:15] + TILED[-2:], ids=str)
def test_tiled_weight_grad_layouts_same_bits(s, rng):
    """Channels-first grad_output, read in place by the tiles (a channel stride of its plane), sums
    every product in the order of the channels-last copy: both layouts give the same bits, float32
    and float64, also on a channels-first grad_output not contiguous (copied first)."""
    for dtype in (np.float32, np.float64):
        x, w, g = _arrays(s, rng, dtype)
        last = _tiled_weight(s, x, g, True)
        assert _tiled_weight(s, x, g, False).tobytes() == last.tobytes()
        wide = np.zeros(g.shape[:-1] + (2 * g.shape[-1],), dtype)
        wide[..., ::2] = g
        assert _tiled_weight(s, x, wide[..., ::2], False).tobytes() == last.tobytes()


@pytest.mark.parametrize("channels", [3, 16, 37])
@pytest.mark.parametrize("mode", ["zeros", "reflect", "circular"])
def test_channels_first_to_padded_channels_last(channels, mode, rng):
    """The weight gradients' channels-first copy (rows of pixels by blocks of channels) is the
    padded array moved to channels-last."""
    x = rng.standard_normal((2, channels, 3, 9, 70)).astype(np.float32)
    pads = ((1, 1), (2, 1), (0, 3)) if mode != "zeros" else ((0, 0),) * 3
    got = working_ndhwc(x, 3, False, pads, mode, 0.0, np.dtype(np.float32))
    want = np.pad(x, ((0, 0), (0, 0), *pads), mode={"zeros": "constant", "reflect": "reflect",
                                                     "circular": "wrap"}[mode])
    assert np.array_equal(got, np.moveaxis(want, 1, -1))


# ---- 1x1 layers, channels-last operands read in place --------------------------------------

POINTWISE = [
    # weight gradient tiles: vectors along K (in-channels within one vector), pixel sums cut into pieces
    sample("conv2d", (2, 16, 40, 30), (96, 16, 1, 1)),
    sample("conv2d", (1, 6, 23, 25), (40, 6, 1, 1)),
    # vector remainders, tile rows off the tiles' heights, groups, blocks of rows
    sample("conv2d", (2, 70, 9, 7), (37, 70, 1, 1)),
    sample("conv2d", (1, 60, 30, 20), (45, 20, 1, 1), groups=3),
    sample("conv2d", (1, 96, 7, 7), (60, 48, 1, 1), groups=2),
    sample("conv2d", (3, 130, 5, 6), (64, 130, 1, 1)),
    sample("conv1d", (2, 50, 300), (24, 50, 1)),
    sample("conv3d", (1, 12, 4, 9, 10), (20, 12, 1, 1, 1)),
    sample("conv_transpose2d", (2, 20, 18, 17), (20, 36, 1, 1)),
    sample("conv2d", (1, 64, 24, 24), (100, 64, 1, 1)),  # expanding past one vector: OpenBLAS
    # expanding, in-channels leaving more lanes empty than out-channels: vectors along K in float32 (16 or 8 lanes)
    sample("conv2d", (1, 40, 24, 24), (100, 40, 1, 1)),
    sample("conv2d", (2, 24, 13, 11), (144, 24, 1, 1)),
    # input gradient by the row kernel, its weight packed from the forward's (phase_packed), under 512 pixels
    sample("conv2d", (1, 64, 9, 11), (48, 64, 1, 1)),
]


def _pointwise_grads(s, x, w, g):
    """(input grad, weight grad) channels-first, from channels-last C-contiguous copies."""
    prefix = f"conv_transpose{s.nd}d" if s.transposed else f"conv{s.nd}d"
    xl, gl = np.ascontiguousarray(np.moveaxis(x, 1, -1)), np.ascontiguousarray(np.moveaxis(g, 1, -1))
    before = (xl.copy(), w.copy(), gl.copy())
    gi = getattr(G, f"{prefix}_input")(xl.shape, w, gl, channels_last=True, **_args(s))
    gw = getattr(G, f"{prefix}_weight")(xl, w.shape, gl, channels_last=True, **_args(s))
    assert all(np.array_equal(a, b) for a, b in zip((xl, w, gl), before))
    return np.moveaxis(gi, -1, 1), gw


@pytest.mark.parametrize("s", POINTWISE, ids=str)
def test_pointwise_channels_last_in_place(s, rng):
    """float64 to 1e-10 of torch; float32 within the rounding bound, and bitwise the same on 1
    and 2 threads (the tiles' pieces and blocks, the forward kernel's tasks, come from the shapes)."""
    x, w, g = _arrays(s, rng)
    for got, want in zip(_pointwise_grads(s, x, w, g), _torch_grads(s, x, w, g)):
        assert _relative(got, want) <= 1e-10
    x, w, g = (a.astype(np.float32) for a in (x, w, g))
    want = _torch_grads(s, x, w, g)
    bounds = _rounding_bound(s, x, w, g, np.float32)
    old = numba.get_num_threads()
    try:
        runs = []
        for threads in (1, 2):
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            runs.append(_pointwise_grads(s, x, w, g))
    finally:
        numba.set_num_threads(old)
    for got, expected, bound in zip(runs[0], want, bounds):
        assert got.dtype == np.float32
        assert np.all(np.abs(got.astype(np.float64) - expected) <= bound + 1e-30)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(*runs))



@pytest.mark.parametrize("s", [sample("conv2d", (2, 64, 9, 12), (48, 64, 1, 1)),
                               sample("conv2d", (1, 32, 14, 14), (96, 32, 1, 1))], ids=str)
def test_pointwise_channels_first_input_rows(s, rng):
    """Channels-first input gradients of small ungrouped layers by the row kernel on grad_output's planes:
    float64 to 1e-10 of torch; float32 within the rounding bound, bitwise the same on 1 and 2 threads."""
    x, w, g = _arrays(s, rng)
    assert _relative(G.conv2d_input(x.shape, w, g), _torch_grads(s, x, w, g)[0]) <= 1e-10
    x, w, g = (a.astype(np.float32) for a in (x, w, g))
    want, bound = _torch_grads(s, x, w, g)[0], _rounding_bound(s, x, w, g, np.float32)[0]
    old = numba.get_num_threads()
    try:
        runs = []
        for threads in (1, 2):
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            runs.append(G.conv2d_input(x.shape, w, g))
    finally:
        numba.set_num_threads(old)
    assert runs[0].dtype == np.float32 and runs[0].tobytes() == runs[1].tobytes()
    assert np.all(np.abs(runs[0].astype(np.float64) - want) <= bound + 1e-30)


POINTWISE_FIRST = [
    # channels-first expanding layers: grad_output read in place, chunks stopping at images' ends
    sample("conv2d", (3, 32, 7, 9), (128, 32, 1, 1)),
    sample("conv2d", (2, 32, 30, 40), (128, 32, 1, 1)),  # pieces cut inside images
    sample("conv2d", (2, 64, 9, 10), (256, 32, 1, 1), groups=2),
    sample("conv2d", (2, 32, 12, 10), (128, 32, 1, 1), stride=2),
    sample("conv1d", (2, 32, 150), (128, 32, 1)),
]


@pytest.mark.parametrize("s", POINTWISE_FIRST, ids=str)
def test_pointwise_channels_first_tiles(s, rng):
    """float64 to 1e-10 of torch; float32 within the rounding bound and bitwise the same on 1 and 2
    threads; inputs untouched."""
    x, w, g = _arrays(s, rng)
    fn = getattr(G, f"conv{s.nd}d_weight")
    assert _relative(fn(x, w.shape, g, **_args(s)), _torch_grads(s, x, w, g)[1]) <= 1e-10
    x, w, g = (a.astype(np.float32) for a in (x, w, g))
    before = (x.copy(), g.copy())
    want = _torch_grads(s, x, w, g)[1]
    bound = _rounding_bound(s, x, w, g, np.float32)[1]
    old = numba.get_num_threads()
    try:
        runs = []
        for threads in (1, 2):
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            runs.append(fn(x, w.shape, g, **_args(s)))
    finally:
        numba.set_num_threads(old)
    assert runs[0].dtype == np.float32 and runs[0].tobytes() == runs[1].tobytes()
    assert np.all(np.abs(runs[0].astype(np.float64) - want) <= bound + 1e-30)
    assert np.array_equal(x, before[0]) and np.array_equal(g, before[1])

# ---- errors ------------------------------------------------------------------------------

def test_errors_name_the_argument(rng):
    x, w = np.zeros((1, 4, 6, 6)), np.zeros((3, 4, 3, 3))
    g = np.zeros((1, 3, 4, 4))
    with pytest.raises(ValueError, match=r"conv2d_input: grad_output has shape \(1, 3, 5, 5\).*gives output "
                                         r"\(1, 3, 4, 4\)"):
        G.conv2d_input(x.shape, w, np.zeros((1, 3, 5, 5)))
    with pytest.raises(ValueError, match=r"conv2d_weight: grad_output has shape \(1, 3, 6, 6\)"):
        G.conv2d_weight(x, w.shape, np.zeros((1, 3, 6, 6)))
    with pytest.raises(ValueError, match=r"conv2d_input: input_size=\(4, 6\) has 2 entries; expected 4"):
        G.conv2d_input((4, 6), w, g)
    with pytest.raises(ValueError, match=r"conv2d_weight: weight_size=\(3, 4, 3\) has 3 entries; expected 4"):
        G.conv2d_weight(x, (3, 4, 3), g)
    with pytest.raises(ValueError, match="input has 4 channels but weight expects 6"):
        G.conv2d_weight(x, (3, 3, 3, 3), g, groups=2)
    with pytest.raises(TypeError, match="conv2d_input: weight has dtype float32 but grad_output has dtype float64"):
        G.conv2d_input(x.shape, w.astype(np.float32), g)
    with pytest.raises(TypeError, match="conv2d_input: input_size=.* must be a tuple of non-negative ints"):
        G.conv2d_input((1, 4, 6.5, 6), w, g)
    with pytest.raises(ValueError, match=r"conv_transpose2d_weight: grad_output has shape \(1, 4, 6, 6\)"):
        G.conv_transpose2d_weight(g, (3, 4, 3, 3), np.zeros((1, 4, 6, 6)), stride=2)
    with pytest.raises(ValueError, match="conv_bias: grad_output must have 3 to 5 dims"):
        G.conv_bias(np.zeros((3, 4)))


# ---- API surface ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", [f"conv{n}d_{w}" for n in (1, 2, 3) for w in ("input", "weight")])
def test_positional_order_is_torch_nn_grad(name):
    import inspect

    def positional(fn):
        return [p.name for p in inspect.signature(fn).parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]

    theirs = positional(getattr(torch.nn.grad, name))
    assert positional(getattr(G, name))[:len(theirs)] == theirs
    assert name in G.__all__


def test_docstring_examples():
    import doctest

    import fastconv.grad.conv

    assert doctest.testmod(fastconv.grad.conv, optionflags=doctest.NORMALIZE_WHITESPACE).failed == 0


CHUNKED = [
    sample("conv2d", (5, 6, 9, 8), (4, 3, 3, 3), groups=2, stride=2, padding=2, padding_mode="circular"),
    sample("conv2d", (5, 8, 9, 8), (8, 1, 3, 3), groups=8, padding=1, padding_mode="reflect"),
    sample("conv2d", (5, 3, 9, 8), (4, 3, 3, 3), padding="same", padding_mode="replicate"),
    sample("conv_transpose2d", (5, 4, 4, 5), (4, 3, 3, 3), stride=2, padding=1),
]


@pytest.mark.parametrize("s", CHUNKED, ids=str)
def test_workspace_chunks_images(s, rng):
    """A workspace cap below one image's working copies: one image per chunk. The direct, tiled
    (its pixel sum in one piece here) and depthwise kernels continue each sum across chunks and
    the input gradient's images are independent, so those results are bitwise those of one
    chunk; the GEMM's sums are split by chunk, so im2col agrees to rounding."""
    x, w, g = _arrays(s, rng, np.float32)
    whole = _grads(s, x, w, g)
    previous = fastconv.set_workspace_limit(64)
    try:
        chunked = _grads(s, x, w, g)
    finally:
        fastconv.set_workspace_limit(previous)
    algo = fastconv.algorithms(s.op + "_weight", s.input_shape, s.weight_shape, **_args(s))
    assert chunked[0].tobytes() == whole[0].tobytes()
    if s.args.get("groups", 1) == 1:  # auto takes tiled, its pixel sum cut into pieces per chunk
        assert "im2col" in algo
        assert _relative(chunked[1], whole[1]) <= 1e-6
    else:
        assert chunked[1].tobytes() == whole[1].tobytes()
