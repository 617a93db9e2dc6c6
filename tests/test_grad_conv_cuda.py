"""fastconv.grad's convolution gradients on the numba.cuda kernels.

Runs on a real GPU and, without one, under Numba's CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/test_grad_conv_cuda.py``), like
tests/test_cuda.py. Device arrays in, device arrays out; checked by adjointness against
the NumPy reference in float64, against the CPU's float64 gradients in float32/float16
(tolerances as tests/test_grad_conv.py derives them: here the bound's L is generous since
the shapes are tiny), for bitwise repeatability, and for the same errors. Tiny shapes:
the simulator runs every GPU thread as a Python thread.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from numba import cuda

import fastconv
import fastconv.grad as G
from fastconv import dispatch
from fastconv import reference as ref
from fastconv.cuda import conv_weight_grad_gemm as wgemm
from fastconv.cuda.conv_weight_grad_depthwise import Plan, depthwise_weight_grad
from fastconv.dispatch import choose
from fastconv.testing.conv_samples import sample

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not cuda.is_available(), reason="no CUDA GPU and NUMBA_ENABLE_CUDASIM is not set"),
]

CASES = [
    sample("conv2d", (2, 3, 5, 4), (4, 3, 3, 2), stride=(2, 1), padding=1),
    sample("conv2d", (1, 4, 5, 5), (4, 1, 3, 3), groups=4, padding=2, padding_mode="reflect", tags={"depthwise"}),
    sample("conv2d", (1, 3, 4, 5), (2, 3, 3, 3), padding=((3, 1), (0, 4)), padding_mode="symmetric"),
    sample("conv2d", (1, 3, 4, 4), (2, 3, 2, 2), padding=1, padding_mode="constant", padding_value=-1.5),
    sample("conv1d", (1, 4, 7), (6, 2, 3), groups=2, padding=((2, 1),), padding_mode="circular", dilation=2),
    sample("conv1d", (2, 2, 9), (3, 2, 2), stride=3, padding="same", padding_mode="replicate"),
    sample("conv3d", (1, 2, 3, 4, 3), (2, 2, 2, 3, 2), stride=(1, 2, 1), padding=(1, 0, 1)),
    sample("conv_transpose2d", (1, 4, 3, 3), (4, 2, 3, 3), stride=2, padding=1, output_padding=1, groups=2),
    sample("conv_transpose1d", (1, 2, 6), (2, 4, 3), stride=2, dilation=3, output_padding=2, padding=((0, 2),)),
]

# The depthwise kernels (cuda/conv_weight_grad_depthwise.py, cuda/conv_input_grad_depthwise.py):
# strided, dilated, multiplier 2, 3-D with constant padding, stride 1 (the flipped forward conv).
DEPTHWISE = [
    sample("conv2d", (2, 4, 5, 6), (4, 1, 3, 3), groups=4, stride=2, padding=1, dilation=(1, 2), tags={"depthwise"}),
    sample("conv1d", (1, 3, 9), (6, 1, 3), groups=3, stride=2, padding=((2, 1),), tags={"depthwise"}),
    sample("conv3d", (1, 2, 3, 4, 5), (2, 1, 2, 3, 2), groups=2, stride=(1, 2, 2), padding=(0, 1, 3),
           padding_mode="constant", padding_value=0.5, tags={"depthwise"}),
    sample("conv2d", (1, 3, 5, 4), (3, 1, 3, 3), groups=3, padding="same", tags={"depthwise"}),
]


def _fn(s, which):
    return getattr(G, f"{'conv_transpose' if s.transposed else 'conv'}{s.nd}d_{which}")


def _args(s):
    return {k: v for k, v in s.args.items() if k != "activation"}


def _forward(s, x, w):
    return (ref.conv_transpose if s.transposed else ref.conv)(x, w, None, **_args(s))


def _on_device(s, x, w, g, channels_last=False, algos=("auto", "auto")):
    """(input grad, weight grad) computed on the device, back as NumPy (checked to come back as device arrays)."""
    if channels_last:
        x, g = np.ascontiguousarray(np.moveaxis(x, 1, -1)), np.ascontiguousarray(np.moveaxis(g, 1, -1))
    gi = _fn(s, "input")(x.shape, cuda.to_device(w), cuda.to_device(g), channels_last=channels_last,
                         algo=algos[0], **_args(s))
    gw = _fn(s, "weight")(cuda.to_device(x), w.shape, cuda.to_device(g), channels_last=channels_last,
                          algo=algos[1], **_args(s))
    assert hasattr(gi, "copy_to_host") and hasattr(gw, "copy_to_host")
    gi, gw = gi.copy_to_host(), gw.copy_to_host()
    return (np.moveaxis(gi, -1, 1) if channels_last else gi), gw


def _arrays(s, rng, dtype):
    x = rng.standard_normal(s.input_shape).astype(dtype)
    w = rng.standard_normal(s.weight_shape).astype(dtype)
    g = rng.standard_normal(_forward(s, x, w).shape).astype(dtype)
    return x, w, g


@pytest.mark.parametrize("s", CASES + DEPTHWISE, ids=str)
def test_adjoint_identities_float64(s, rng):
    x, w, g = _arrays(s, rng, np.float64)
    gi, gw = _on_device(s, x, w, g)
    y = _forward(s, x, w)
    y_linear = y - _forward(s, np.zeros_like(x), w)
    scale = np.sum(np.abs(y) * np.abs(g))
    assert abs(np.sum(y_linear * g) - np.sum(x * gi)) <= 1e-12 * scale
    assert abs(np.sum(y * g) - np.sum(w * gw)) <= 1e-12 * scale


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", [np.float16, np.float32], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("s", CASES[:2] + CASES[-2:-1], ids=str)
def test_low_precision_and_layouts(s, dtype, channels_last, rng):
    """Within L * eps32 of the exact gradient relative to the absolute-value sum (L <= 64 terms
    per element here), plus one float16 rounding."""
    x, w, g = _arrays(s, rng, dtype)
    exact = _on_host64(s, x, w, g)
    pv = {"padding_value": abs(s.args["padding_value"])} if "padding_value" in s.args else {}
    bounds = _on_host64(s, np.abs(x), np.abs(w), np.abs(g), **pv)
    for got, want, bound in zip(_on_device(s, x, w, g, channels_last), exact, bounds):
        assert got.dtype == dtype
        tol = 64 * np.finfo(np.float32).eps * bound
        if dtype == np.float16:
            tol += np.finfo(np.float16).eps * np.abs(want)
        assert np.all(np.abs(got - want) <= tol + 1e-30)


def _on_host64(s, x, w, g, **changes):
    a = dict(_args(s), **changes)
    x, w, g = (v.astype(np.float64) for v in (x, w, g))
    return _fn(s, "input")(x.shape, w, g, **a), _fn(s, "weight")(x, w.shape, g, **a)


def test_bitwise_repeatable(rng):
    s = CASES[1]
    x, w, g = _arrays(s, rng, np.float32)
    first = _on_device(s, x, w, g)
    for a, b in zip(_on_device(s, x, w, g), first):
        assert a.tobytes() == b.tobytes()


def test_bias_algorithms_and_errors(rng):
    g = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    got = G.conv_bias(cuda.to_device(g))
    assert hasattr(got, "copy_to_host")
    np.testing.assert_allclose(got.copy_to_host(), g.sum(axis=(0, 2, 3)), rtol=1e-5)
    assert fastconv.algorithms("conv2d_weight", (1, 4, 5, 5), (4, 1, 3, 3), groups=4, backend="cuda") == [
        "direct", "depthwise", "im2col", "tiled"]
    assert fastconv.algorithms("conv2d_input", (1, 4, 5, 5), (4, 1, 3, 3), groups=4, backend="cuda") == [
        "adjoint", "depthwise"]
    assert fastconv.algorithms("conv2d_input", (1, 4, 5, 5), (8, 1, 3, 3), groups=4, backend="cuda") == ["adjoint"]
    assert fastconv.algorithms("conv2d_input", (1, 4, 5, 5), (4, 1, 3, 3), groups=4, padding_mode="reflect",
                               padding=1, backend="cuda") == ["adjoint"]
    with pytest.raises(ValueError, match=r"conv2d_weight: grad_output has shape \(1, 2, 5, 5\)"):
        G.conv2d_weight(cuda.to_device(np.zeros((1, 3, 4, 4), np.float32)), (2, 3, 3, 3),
                        cuda.to_device(np.zeros((1, 2, 5, 5), np.float32)))
    # a NumPy weight with a device grad_output is copied in, as the forward ops do
    w, gd = rng.standard_normal((2, 3, 3, 3)).astype(np.float32), rng.standard_normal((1, 2, 2, 2)).astype(np.float32)
    mixed = G.conv2d_input((1, 3, 4, 4), w, cuda.to_device(gd)).copy_to_host()
    np.testing.assert_array_equal(mixed, G.conv2d_input((1, 3, 4, 4), cuda.to_device(w), cuda.to_device(gd))
                                  .copy_to_host())


# ---- the depthwise kernels -------------------------------------------------------------------

def _torch_grads(s, x, w, g):
    """torch.autograd's (input, weight) gradients in float64 (zeros or constant padding)."""
    spec = s.spec()
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    wt = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    flat = [v for b, e in reversed(spec.pads) for v in (b, e)]
    padded = TF.pad(xt, flat, value=spec.padding_value)
    y = getattr(TF, f"conv{s.nd}d")(padded, wt, stride=spec.stride, dilation=spec.dilation, groups=spec.groups)
    y.backward(torch.tensor(g, dtype=torch.float64))
    return xt.grad.numpy(), wt.grad.numpy()


@pytest.mark.parametrize("s", DEPTHWISE, ids=str)
def test_depthwise_kernels_match_torch_float64(s, rng):
    """auto takes the depthwise weight kernel, and the depthwise input kernel where the CPU
    takes its own (strided layers; stride 1: the flipped forward conv, as on the CPU)."""
    spec = s.spec()
    assert choose("conv_weight_grad", "cuda", spec).algo == "depthwise"
    strided = any(v > 1 for v in spec.stride)
    assert choose("conv_input_grad", "cuda", spec).algo == ("depthwise" if strided and spec.out_per_group == 1
                                                            else "adjoint")
    x, w, g = _arrays(s, rng, np.float64)
    for got, want in zip(_on_device(s, x, w, g), _torch_grads(s, x, w, g)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12 * np.abs(want).max())


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", [np.float16, np.float32], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("s", DEPTHWISE[:1] + DEPTHWISE[2:3], ids=str)
def test_depthwise_low_precision_and_layouts(s, dtype, channels_last, rng):
    """As test_low_precision_and_layouts: float16 is stored, summed in float32, rounded once."""
    x, w, g = _arrays(s, rng, dtype)
    exact = _on_host64(s, x, w, g)
    bounds = _on_host64(s, np.abs(x), np.abs(w), np.abs(g), padding_value=abs(s.spec().padding_value))
    for got, want, bound in zip(_on_device(s, x, w, g, channels_last), exact, bounds):
        assert got.dtype == dtype
        tol = 64 * np.finfo(np.float32).eps * bound
        if dtype == np.float16:
            tol += np.finfo(np.float16).eps * np.abs(want)
        assert np.all(np.abs(got - want) <= tol + 1e-30)


def test_depthwise_weight_grad_same_bits_for_every_split(rng):
    """The pixel segments and their sum order follow from the layer alone: one block along the
    pixels, two, or one per segment (4 here) give the same bits, run after run."""
    s = sample("conv2d", (3, 4, 9, 8), (8, 1, 3, 3), groups=4, stride=(1, 2), padding=1)
    spec = s.spec().with_(dtype="float32")
    x, w, g = _arrays(s, rng, np.float32)
    xd, gd = cuda.to_device(x), cuda.to_device(g)
    assert Plan(spec, (1, 9, 4), 1000).blocks == 4
    runs = [depthwise_weight_grad(spec, xd, gd, splits).copy_to_host() for splits in (1, 2, 4, 1)]
    assert all(r.tobytes() == runs[0].tobytes() for r in runs[1:])
    exact = G.conv2d_weight(x.astype(np.float64), w.shape, g.astype(np.float64), stride=(1, 2), padding=1, groups=4)
    np.testing.assert_allclose(runs[0], exact, rtol=1e-4, atol=1e-4)


# ---- the GEMM kernels (cuda/conv_weight_grad_gemm.py, cuda/conv_input_grad_gemm.py) -----------

# 1x1 grouped (input "gemm", weight "gemm"), 1x1 strided (weight "gemm" through im2col columns,
# input the adjoint), a 3x3 with padding and a 3-D layer (weight "im2col").
GEMM = [
    sample("conv2d", (2, 4, 3, 3), (6, 2, 1, 1), groups=2),
    sample("conv2d", (1, 4, 5, 5), (3, 4, 1, 1), stride=2),
    sample("conv2d", (2, 3, 5, 4), (4, 3, 3, 2), stride=(2, 1), padding=1),
    sample("conv3d", (1, 2, 3, 4, 3), (2, 2, 2, 3, 2), stride=(1, 2, 1), padding=(1, 0, 1)),
]


def _gemm_algos(spec):
    """(input algo, weight algo): the GEMM kernels that serve ``spec``, as the GPU's auto rule picks
    them (weight: "tiled", the implicit GEMM, but for channels-first stems; the CPU's takes "tiled"
    for those too where its kernel sums whole window rows)."""
    stride1 = all(v == 1 for v in spec.stride)
    few = not spec.channels_last and spec.in_channels < dispatch.TILED_MIN_CHANNELS_FIRST
    return ("gemm" if spec.is_pointwise and stride1 else "adjoint",
            "gemm" if spec.is_pointwise else "im2col" if few else "tiled")


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("s", GEMM, ids=str)
def test_gemm_kernels_float64(s, channels_last, rng):
    """auto picks the GEMM kernels where the CPU's rule does; float64 against torch.autograd to
    1e-10 and exact by adjointness."""
    spec = s.spec().with_(channels_last=channels_last)
    algos = _gemm_algos(spec)
    assert (choose("conv_input_grad", "cuda", spec).algo, choose("conv_weight_grad", "cuda", spec).algo) == algos
    assert (choose("conv_input_grad", "cpu", spec).algo == "gemm") == spec.is_pointwise
    rows = spec.kernel[-1] > 1 and spec.dilation[-1] == 1  # the CPU's tiled kernel sums window rows
    assert choose("conv_weight_grad", "cpu", spec).algo == ("tiled" if algos[1] == "im2col" and rows else algos[1])
    x, w, g = _arrays(s, rng, np.float64)
    gi, gw = _on_device(s, x, w, g, channels_last, algos)
    for got, want in zip((gi, gw), _torch_grads(s, x, w, g)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12 * np.abs(want).max())
    y = _forward(s, x, w)
    scale = np.sum(np.abs(y) * np.abs(g))
    assert abs(np.sum(y * g) - np.sum(x * gi)) <= 1e-12 * scale
    assert abs(np.sum(y * g) - np.sum(w * gw)) <= 1e-12 * scale


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", [np.float16, np.float32], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("s", GEMM[:1] + GEMM[2:3], ids=str)
def test_gemm_kernels_low_precision(s, dtype, channels_last, rng):
    """As test_low_precision_and_layouts: float16 is stored, summed in float32, rounded once."""
    x, w, g = _arrays(s, rng, dtype)
    exact = _on_host64(s, x, w, g)
    bounds = _on_host64(s, np.abs(x), np.abs(w), np.abs(g))
    for got, want, bound in zip(_on_device(s, x, w, g, channels_last, _gemm_algos(s.spec().with_(channels_last=channels_last))), exact, bounds):
        assert got.dtype == dtype
        tol = 64 * np.finfo(np.float32).eps * bound
        if dtype == np.float16:
            tol += np.finfo(np.float16).eps * np.abs(want)
        assert np.all(np.abs(got - want) <= tol + 1e-30)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("s", CASES, ids=str)
def test_tiled_weight_grad_float64(s, channels_last, rng):
    """algo "tiled" (the GEMM gathering its columns from the working input, no column buffer) on
    every padding mode, dilation, group count, 1-D to 3-D and transposed layer: float64 exact by
    adjointness, to 1e-10 of the CPU's float64 gradient (tested against torch in
    tests/test_grad_conv.py), and bitwise the im2col algo's result (the same GEMM, the same order)."""
    x, w, g = _arrays(s, rng, np.float64)
    gw = _on_device(s, x, w, g, channels_last, ("auto", "tiled"))[1]
    y = _forward(s, x, w)
    assert abs(np.sum(y * g) - np.sum(w * gw)) <= 1e-12 * np.sum(np.abs(y) * np.abs(g))
    np.testing.assert_allclose(gw, _on_host64(s, x, w, g)[1], rtol=1e-10, atol=1e-12 * np.abs(gw).max())
    assert gw.tobytes() == _on_device(s, x, w, g, channels_last, ("auto", "im2col"))[1].tobytes()


@pytest.mark.parametrize("algo", ["gemm", "im2col", "tiled"])
def test_weight_grad_gemm_same_bits_for_every_split(algo, rng):
    """The pixel segments (3 here) follow from the layer alone, and are added in order: one
    pass over all of them, or a pass per segment (a workspace cap too small for more), give
    the same bits."""
    s = sample("conv2d", (3, 2, 8, 8), (3, 2, 1, 1)) if algo == "gemm" else \
        sample("conv2d", (3, 1, 8, 8), (2, 1, 2, 2), padding=((1, 0), (0, 1)))
    spec = s.spec().with_(dtype="float32")
    x, w, g = _arrays(s, rng, np.float32)
    xd, gd = cuda.to_device(x), cuda.to_device(g)
    plan = wgemm.Plan(spec, spec.out_size)
    assert (plan.n_seg, plan.pass_segs, plan.direct) == (3, 3, algo == "gemm")
    implicit = algo == "tiled"
    runs = [wgemm.weight_grad_gemm(spec, xd, gd, implicit).copy_to_host() for _ in range(2)]
    previous = fastconv.set_workspace_limit(1)
    try:
        assert wgemm.Plan(spec, spec.out_size, implicit).pass_segs == 1
        runs.append(wgemm.weight_grad_gemm(spec, xd, gd, implicit).copy_to_host())
    finally:
        fastconv.set_workspace_limit(previous)
    assert all(r.tobytes() == runs[0].tobytes() for r in runs[1:])
    exact = G.conv2d_weight(x.astype(np.float64), w.shape, g.astype(np.float64), **_args(s))
    np.testing.assert_allclose(runs[0], exact, rtol=1e-5, atol=1e-5)
