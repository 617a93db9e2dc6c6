"""fastconv.grad.conv<N>d_backward: both gradients in one call (aten.convolution_backward's order).

Each result must be bitwise what the separate calls (conv<N>d_input, conv<N>d_weight, conv_bias)
return, on the first call (the separate calls) and on repeated ones (the call plan: the one-pass
kernels of cpu/conv/depthwise_backward.py for depthwise layers); ground truth against
the NumPy reference (adjointness, float64) and torch.autograd.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import fastconv.grad as G
from fastconv import reference as ref
from fastconv.cpu.conv.depthwise_backward import backward_plan
from fastconv.spec.conv import resolve_conv
from fastconv.testing.conv_samples import sample
from fastconv.testing.tolerances import tolerance

torch.set_num_threads(1)

FUSED = [  # channels-last: the one-pass kernel (asserted)
    sample("conv2d", (2, 37, 12, 11), (37, 1, 3, 3), groups=37, padding=1),  # a part vector of channels
    sample("conv2d", (1, 144, 30, 40), (144, 1, 3, 3), groups=144, padding=1, dtype="float32"),  # strips x blocks
    sample("conv2d", (1, 20, 13, 12), (20, 1, 5, 5), groups=20, padding=2),
    sample("conv2d", (1, 24, 15, 16), (24, 1, 3, 3), groups=24, padding=2, dilation=2, dtype="float32"),
    sample("conv2d", (2, 8, 9, 10), (8, 1, 3, 3), groups=8, padding=((0, 2), (2, 0))),  # one-sided pads
    sample("conv2d", (3, 5, 2, 3), (5, 1, 3, 3), groups=5, padding=1),  # every pixel a border pixel
    sample("conv1d", (2, 16, 17), (16, 1, 5), groups=16, padding=2),
    sample("conv3d", (1, 8, 3, 6, 7), (8, 1, 1, 3, 3), groups=8, padding=(0, 1, 1), dtype="float32"),
]
STRIDED = [  # the one-pass kernels where _one_pass says
    sample("conv2d", (2, 12, 9, 10), (12, 1, 3, 3), groups=12, stride=2, padding=1),
    sample("conv2d", (2, 70, 24, 23), (70, 1, 3, 3), groups=70, stride=2, padding=1, dtype="float32"),  # odd width,
    # tasks of several channels, on two threads
    sample("conv2d", (2, 8, 10, 9), (8, 1, 3, 3), groups=8, stride=(2, 1), padding=(1, 3)),  # an output wider
    # than the input
    sample("conv2d", (1, 6, 8, 10), (6, 1, 3, 3), groups=6, stride=3, padding=1),  # stride 3 along the row
    sample("conv2d", (1, 5, 9, 12), (5, 1, 3, 3), groups=5, stride=2, padding=(1, 2)),  # an even column pad
    sample("conv2d", (2, 3, 7, 4), (3, 1, 3, 3), groups=3, stride=2),  # no column with all three taps
    sample("conv2d", (1, 3, 4, 70), (3, 1, 3, 3), groups=3, stride=2, padding=1),  # rows too wide for the
    # phase planes (channels-first)
    sample("conv2d", (1, 2, 3, 67), (2, 1, 3, 3), groups=2, stride=2, padding=(0, 2)),
    sample("conv1d", (2, 16, 17), (16, 1, 3), groups=16, stride=2, padding=1),
    sample("conv3d", (1, 4, 5, 6, 7), (4, 1, 3, 3, 3), groups=4, stride=2, padding=1, dtype="float32"),
]
SEPARATE = [  # the two kernels one after the other (channels-last; both layouts where _one_pass says)
    sample("conv2d", (2, 6, 7, 8), (12, 1, 3, 3), groups=6, padding=1),  # multiplier 2
    sample("conv2d", (2, 8, 9, 8), (8, 1, 3, 3), groups=8, padding=1, padding_mode="reflect"),
    sample("conv2d", (1, 6, 8, 9), (6, 1, 3, 3), groups=6),  # an output smaller than the input
    sample("conv3d", (1, 4, 5, 6, 5), (4, 1, 3, 3, 3), groups=4, padding=1),
    sample("conv2d", (2, 8, 9, 10), (12, 8, 3, 3), padding=1, dtype="float32"),
]


def _one_pass(s, channels_last):
    """Whether the call plan runs a one-pass kernel: stride 1 (FUSED; channels-first also an output smaller
    than the input and 3-D, SEPARATE[2:4]), channels-last strided maps of depth 1, channels-first strided
    layers of stride 2 at most along the row."""
    if s in FUSED:
        return True
    if s in SEPARATE[2:4]:
        return not channels_last
    if s not in STRIDED:
        return False
    return s.nd < 3 if channels_last else np.broadcast_to(s.args.get("stride", 1), (s.nd,))[-1] <= 2


def _args(s):
    return {k: v for k, v in s.args.items() if k != "activation"}


def _arrays(s, rng, channels_last):
    dtype = np.dtype(s.dtype)
    x = rng.standard_normal(s.input_shape)
    w = rng.standard_normal(s.weight_shape)
    g = rng.standard_normal(ref.conv(x, w, None, **_args(s)).shape)
    if channels_last:
        x, g = np.moveaxis(x, 1, -1), np.moveaxis(g, 1, -1)
    return tuple(np.ascontiguousarray(a, dtype) for a in (x, w, g))


def _separate(s, x, w, g, channels_last):
    nd = s.nd
    gi = getattr(G, f"conv{nd}d_input")(x.shape, w, g, channels_last=channels_last, **_args(s))
    gw = getattr(G, f"conv{nd}d_weight")(x, w.shape, g, channels_last=channels_last, **_args(s))
    return gi, gw, G.conv_bias(g, channels_last=channels_last)


def _backward(s, x, w, g, channels_last, **kw):
    return getattr(G, f"conv{s.nd}d_backward")(g, x, w, channels_last=channels_last, **_args(s), **kw)


def _same_bits(got, want):
    for a, b in zip(got, want):
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _channels_first(a, channels_last):
    return np.moveaxis(a, -1, 1) if channels_last else a


@pytest.mark.parametrize("channels_last", [False, True], ids=["first", "last"])
@pytest.mark.parametrize("s", FUSED + STRIDED + SEPARATE, ids=str)
def test_bitwise_the_separate_calls_and_correct(s, channels_last, rng):
    x, w, g = _arrays(s, rng, channels_last)
    spec = resolve_conv(f"conv{s.nd}d", x.shape, w.shape, channels_last=channels_last, dtype=s.dtype, **_args(s))
    assert (backward_plan(spec) is not None) == _one_pass(s, channels_last)
    want = _separate(s, x, w, g, channels_last)
    for _ in range(3):  # the first call, then the call plan
        _same_bits(_backward(s, x, w, g, channels_last, output_mask=(True, True, True)), want)
    gi, gw = _channels_first(want[0], channels_last).astype(np.float64), want[1].astype(np.float64)
    x64, w64, g64 = (_channels_first(a, cl).astype(np.float64) for a, cl in ((x, channels_last), (w, False),
                                                                               (g, channels_last)))
    y = ref.conv(x64, w64, None, **_args(s))
    scale = np.sum(np.abs(y) * np.abs(g64))
    if s.dtype == "float64" and s.args.get("padding_mode", "zeros") == "zeros":  # adjoint of the reference
        assert abs(np.sum(y * g64) - np.sum(x64 * gi)) <= 1e-12 * scale
        assert abs(np.sum(y * g64) - np.sum(w64 * gw)) <= 1e-12 * scale
    xt, wt = (torch.tensor(a, requires_grad=True) for a in (x64, w64))
    a = _args(s)
    if a.get("padding_mode", "zeros") != "zeros":
        xt_in = TF.pad(xt, [1] * 2 * s.nd, mode=a["padding_mode"])
        pad = 0
    else:
        xt_in, pad = xt, a.get("padding", 0)
        if isinstance(pad, tuple) and isinstance(pad[0], tuple):  # per-side pads: torch pads the input
            xt_in = TF.pad(xt, [p for pair in reversed(pad) for p in pair])
            pad = 0
    conv = getattr(TF, f"conv{s.nd}d")
    conv(xt_in, wt, None, a.get("stride", 1), pad, a.get("dilation", 1), a.get("groups", 1)).backward(
        torch.from_numpy(g64))
    rtol = tolerance("conv", s.dtype)["atol"]  # relative to the largest magnitude
    for got, expected in ((gi, xt.grad.numpy()), (gw, wt.grad.numpy())):
        assert np.max(np.abs(got - expected)) <= rtol * max(np.max(np.abs(expected)), 1e-300)


def test_output_mask_and_fallbacks(rng):
    """Masked gradients are None; non-contiguous arrays and a NaN weight on a repeated call of the fused
    layer take the separate calls (the NaN meets the padding's zeros, as in the forward)."""
    s = FUSED[0]
    x, w, g = _arrays(s, rng, True)
    want = _separate(s, x, w, g, True)
    for mask in ((True, False, False), (False, True, True), (False, False, False), (True, True, False)):
        for _ in range(2):
            got = _backward(s, x, w, g, True, output_mask=mask)
            assert [r is None for r in got] == [not m for m in mask]
            _same_bits([r for r in got if r is not None], [r for r, m in zip(want, mask) if m])
    strided = [np.repeat(a, 2, axis=-1)[..., ::2] for a in (x, g)]
    _same_bits(_backward(s, strided[0], w, strided[1], True)[:2], want[:2])
    w_nan = w.copy()
    w_nan[3, 0, 1, 1] = np.nan
    _same_bits(_backward(s, x, w_nan, g, True)[:2], _separate(s, x, w_nan, g, True)[:2])
    _same_bits(_backward(s, x[0], w, g[0], True)[:2],  # unbatched
               (G.conv2d_input(x[0].shape, w, g[0], padding=1, groups=37, channels_last=True),
                G.conv2d_weight(x[0], w.shape, g[0], padding=1, groups=37, channels_last=True)))
    s = STRIDED[0]  # strided: a non-contiguous input; a NaN weight (no padding zeros to meet) in the kernel
    for cl in (False, True):
        x, w, g = _arrays(s, rng, cl)
        for _ in range(2):
            _backward(s, x, w, g, cl)
        x_rev = x[:, ::-1] if cl else x[:, :, :, ::-1]
        _same_bits(_backward(s, x_rev, w, g, cl)[:2], _separate(s, x_rev, w, g, cl)[:2])
        _same_bits(_backward(s, x, w_nan[:12], g, cl)[:2], _separate(s, x, w_nan[:12], g, cl)[:2])


def _same_bits_across_threads(s, x, w, g, channels_last):
    """The backward on 1, 2, 2 and 1 threads gives the same bits each time."""
    old = numba.get_num_threads()
    try:
        runs = []
        for threads in (1, 2, 2, 1):
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            runs.append(_backward(s, x, w, g, channels_last)[:2])
    finally:
        numba.set_num_threads(old)
    for run in runs[1:]:
        _same_bits(run, runs[0])


@pytest.mark.parametrize(("s", "channels_last"), [(FUSED[1], True), (STRIDED[1], True), (STRIDED[1], False)],
                         ids=["last", "last-strided", "first-strided"])
def test_deterministic_across_threads(s, channels_last, rng):
    x, w, g = _arrays(s, rng, channels_last)
    _same_bits_across_threads(s, x, w, g, channels_last)


def test_errors(rng):
    s = FUSED[0]
    x, w, g = _arrays(s, rng, True)
    with pytest.raises(ValueError, match=r"conv2d_backward: output_mask=\(True, True\) must be three bools"):
        G.conv2d_backward(g, x, w, padding=1, groups=37, channels_last=True, output_mask=(True, True))
    with pytest.raises(TypeError, match="conv2d_backward: output_mask must be a sequence"):
        G.conv2d_backward(g, x, w, padding=1, groups=37, channels_last=True, output_mask=1)
    with pytest.raises(ValueError, match="grad_output has shape"):
        G.conv2d_backward(g[:, 1:], x, w, padding=1, groups=37, channels_last=True)
    with pytest.raises(ValueError, match="grad_output has shape"):  # the plan's key holds the shapes
        for _ in range(2):
            G.conv2d_backward(g[:, :, 1:], x, w, padding=1, groups=37, channels_last=True)


@pytest.mark.cuda
def test_cuda_arrays_take_the_two_kernels(rng):
    """Device arrays in, device arrays out: the two CUDA kernels (and the bias's), bitwise the separate calls.
    Under NUMBA_ENABLE_CUDASIM=1 without a GPU."""
    from numba import cuda

    if not cuda.is_available():
        pytest.skip("no CUDA GPU and NUMBA_ENABLE_CUDASIM is not set")
    s = sample("conv2d", (1, 3, 4, 5), (3, 1, 3, 3), groups=3, padding=1, dtype="float32")
    for channels_last in (False, True):
        x, w, g = (cuda.to_device(a) for a in _arrays(s, rng, channels_last))
        got = _backward(s, x, w, g, channels_last, output_mask=(True, True, True))
        want = _separate(s, x, w, g, channels_last)
        _same_bits([a.copy_to_host() for a in got], [a.copy_to_host() for a in want])


@pytest.mark.parametrize("s", [STRIDED[0], STRIDED[6]], ids=["phase-planes", "rows"])
def test_strided_channels_first_infinite_weight(s, rng):
    """An inf weight meets no padding zeros: only the input pixels its tap reaches are inf, as in PyTorch."""
    x, w, g = _arrays(s, rng, False)
    w[1, 0, 1, 0] = np.inf
    for _ in range(2):
        gi, gw, _ = _backward(s, x, w, g, False)
    _same_bits((gi, gw), _separate(s, x, w, g, False)[:2])
    xt = torch.tensor(x, requires_grad=True)
    a = _args(s)
    TF.conv2d(xt, torch.tensor(w), None, a["stride"], a.get("padding", 0), 1, a["groups"]).backward(torch.tensor(g))
    want = xt.grad.numpy()
    assert np.isinf(gi[:, 1]).any() and np.array_equal(np.isinf(gi), np.isinf(want))
    np.testing.assert_allclose(gi, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("s", [FUSED[1], FUSED[3], SEPARATE[2]], ids=["strips", "dilated", "smaller-output"])
def test_channels_first_stride1_deterministic_across_threads(s, rng):
    """The channels-first stride-1 one-pass kernel: bitwise the same on 1 and 2 threads, and a NaN weight
    takes the separate calls (it must meet the padding's zeros)."""
    x, w, g = _arrays(s, rng, False)
    _same_bits_across_threads(s, x, w, g, False)
    w_nan = w.copy()
    w_nan[1, 0, 0, 2] = np.nan
    _same_bits(_backward(s, x, w_nan, g, False)[:2], _separate(s, x, w_nan, g, False)[:2])
