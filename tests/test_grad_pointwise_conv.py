"""1x1 gradients through the forward's row kernel: the channels-first weight gradient as the forward 1x1
conv (cpu/conv/weight_grad/pointwise_conv.py), and strided layers' input gradients as their stride-1
twins' spread over the pixels they read (cpu/conv/input_grad_gemm.py's dense_spec): against
torch.autograd in float64, within a rounding bound in float32, bitwise across thread counts, inputs
untouched, and the rule that gives the weight gradient the layers."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from test_grad_conv import _args, _arrays, _relative, _rounding_bound, _torch_grads

import fastconv.grad as G
from fastconv.cpu.conv import input_grad_gemm
from fastconv.cpu.conv.weight_grad import pointwise_conv
from fastconv.testing.conv_samples import sample

POINTWISE_CONV = [
    sample("conv2d", (1, 64, 9, 10), (96, 64, 1, 1)),
    sample("conv2d", (2, 130, 9, 11), (128, 130, 1, 1), stride=2),  # a strided copy, images added in order
    sample("conv1d", (1, 80, 37), (64, 80, 1)),
    sample("conv_transpose2d", (1, 64, 6, 7), (64, 80, 1, 1)),  # the forward conv reading its input
]


def test_rule():
    assert pointwise_conv.conv_takes(64, 384, 196) and pointwise_conv.conv_takes(512, 128, 784)
    assert not pointwise_conv.conv_takes(256, 128, 3136) and not pointwise_conv.conv_takes(64, 64, 3136)
    assert not pointwise_conv.conv_takes(32, 32, 12544) and not pointwise_conv.conv_takes(24, 144, 196)


@pytest.mark.parametrize("s", POINTWISE_CONV, ids=str)
def test_pointwise_conv_weight_grad(s, rng, monkeypatch):
    calls = []
    run = pointwise_conv.conv_weight_grad
    monkeypatch.setattr("fastconv.cpu.conv.weight_grad.gemm.conv_weight_grad",
                        lambda *a: calls.append(1) or run(*a))
    prefix = f"conv_transpose{s.nd}d" if s.transposed else f"conv{s.nd}d"
    fn = getattr(G, f"{prefix}_weight")
    x, w, g = _arrays(s, rng)
    assert _relative(fn(x, w.shape, g, **_args(s)), _torch_grads(s, x, w, g)[1]) <= 1e-10
    assert calls
    x, w, g = (a.astype(np.float32) for a in (x, w, g))
    before = (x.copy(), g.copy())
    want = _torch_grads(s, x, w, g)[1]
    bound = _rounding_bound(s, x, w, g, np.float32)[1]
    old = numba.get_num_threads()
    try:
        runs = []
        for threads in (1, 2, 1):
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            runs.append(fn(x, w.shape, g, **_args(s)))
    finally:
        numba.set_num_threads(old)
    assert runs[0].dtype == np.float32 and all(r.tobytes() == runs[0].tobytes() for r in runs[1:])
    assert np.all(np.abs(runs[0].astype(np.float64) - want) <= bound + 1e-30)
    assert np.array_equal(x, before[0]) and np.array_equal(g, before[1])


STRIDED = [
    sample("conv2d", (1, 64, 46, 45), (32, 64, 1, 1), stride=2, tags={"channels_last"}),  # 529 pixels: rows
    sample("conv2d", (2, 64, 10, 12), (48, 64, 1, 1), stride=2, tags={"channels_last"}),  # packed rows plan
    sample("conv2d", (1, 32, 28, 27), (64, 32, 1, 1), stride=2),  # channels-first, 196 pixels
]


@pytest.mark.parametrize("s", STRIDED, ids=str)
def test_strided_input_grad_dense(s, rng, monkeypatch):
    cl = "channels_last" in s.tags
    dense = []
    run = input_grad_gemm.conv_input_grad_gemm
    monkeypatch.setattr(input_grad_gemm, "conv_input_grad_gemm",
                        lambda spec, *a: dense.append(spec.stride) or run(spec, *a))

    def grad(x, w, g):
        if not cl:
            return G.conv2d_input(x.shape, w, g, **_args(s))
        xl, gl = np.ascontiguousarray(np.moveaxis(x, 1, -1)), np.ascontiguousarray(np.moveaxis(g, 1, -1))
        return np.moveaxis(G.conv2d_input(xl.shape, w, gl, channels_last=True, **_args(s)), -1, 1)

    x, w, g = _arrays(s, rng)
    assert _relative(grad(x, w, g), _torch_grads(s, x, w, g)[0]) <= 1e-10
    assert (1, 1) in dense
    x, w, g = (a.astype(np.float32) for a in (x, w, g))
    before = (w.copy(), g.copy())
    want, bound = _torch_grads(s, x, w, g)[0], _rounding_bound(s, x, w, g, np.float32)[0]
    old = numba.get_num_threads()
    try:
        runs = []
        for threads in (1, 2, 1):
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            runs.append(grad(x, w, g))
    finally:
        numba.set_num_threads(old)
    assert runs[0].dtype == np.float32 and all(r.tobytes() == runs[0].tobytes() for r in runs[1:])
    assert np.all(np.abs(runs[0].astype(np.float64) - want) <= bound + 1e-30)
    assert np.array_equal(w, before[0]) and np.array_equal(g, before[1])
