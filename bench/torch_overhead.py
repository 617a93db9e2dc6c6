"""Per-call overhead of the PyTorch bridge on tiny layers (issue 13, target: at most 15 us
over the bare NumPy call, median).

Three ops on 1x2x6x6 float32 input: conv2d (3x3 kernel, padding 1, no bias), max_pool2d
(2x2) and separable_conv2d (3x3 depthwise, 1x1 to 3 channels, padding 1); conv2d also on
the input in channels_last memory format, whose bare call is the NumPy op on the
channels-last array (``channels_last=True``). For each, rows:

- forward: the bare NumPy call (max pooling with indices: the bridge's op always returns
  them); ``fastconv.torch.<op>`` on the eager path (the default in eager mode) and on the
  registered ops (``_eager.disabled()``, the path torch.compile traces), each without and
  with ``requires_grad`` on every input (autograd then records a node);
- backward: the bare fastconv.grad calls the backward makes (separable: the depthwise
  recomputation too), against ``torch.autograd.grad`` of the recorded call on each path
  (``retain_graph``: the same graph every call, so only the backward is timed).

Two more rows measure the registration itself: the conv kernel as a ``torch.library.custom_op``
and as a ``torch.library.Library`` define/impl op, each with a trivial autograd formula.

Rows are timed interleaved (each round runs every row in turn), so load that comes and goes
on a shared machine reaches them alike; each row reports the median per call, its
interquartile range, and the median's excess over its bare row.
Run: ``python -m bench.torch_overhead [rounds]``.
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import time

import torch

import fastconv
import fastconv.grad as G
import fastconv.torch as FT
from fastconv.torch import _eager
from fastconv.torch._tensors import as_array, as_tensor

ROUNDS = 40
CALLS = 250  # per row and round


def _time_rows(rows, rounds):
    """{name: per-call seconds} of each ``rows`` callable, interleaved round by round."""
    times = {name: [] for name in rows}
    for fn in rows.values():
        for _ in range(50):
            fn()
    clock = time.perf_counter
    for _ in range(rounds):
        for name, fn in rows.items():
            samples = times[name]
            for _ in range(CALLS):
                t0 = clock()
                fn()
                samples.append(clock() - t0)
    return times


def _ops(fn):
    def on_ops():
        with _eager.disabled():
            return fn()
    return on_ops


def _backward_of(make, inputs, path):
    """``torch.autograd.grad`` of one recorded ``make()`` on ``path``, rerun on the same graph."""
    with _eager.disabled() if path == "ops" else contextlib.nullcontext():
        y = make()
    g = torch.ones_like(y)
    return lambda: torch.autograd.grad(y, inputs, g, retain_graph=True)


def _kernel(input, weight):
    arrays = (as_array(input), as_array(weight))
    return as_tensor(fastconv.conv2d(arrays[0], arrays[1], None, padding=1), arrays)


def _registration_rows(x, w):
    """The conv kernel as a custom_op and as a Library define/impl op (trivial autograd)."""
    @torch.library.custom_op("fastconv_bench::conv", mutates_args=())
    def by_custom_op(input: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return _kernel(input, weight)

    by_custom_op.register_fake(lambda input, weight: input.new_empty((1, 3, 6, 6)))
    lib = torch.library.Library("fastconv_bench2", "DEF")
    lib.define("conv(Tensor input, Tensor weight) -> Tensor")
    lib.impl("conv", _kernel, "CPU")
    torch.library.register_fake("fastconv_bench2::conv", lambda input, weight: input.new_empty((1, 3, 6, 6)),
                                lib=lib)
    for op in ("fastconv_bench::conv", "fastconv_bench2::conv"):
        torch.library.register_autograd(op, lambda ctx, g: (g, None), setup_context=lambda ctx, inputs, output: None)
    custom, library = torch.ops.fastconv_bench.conv.default, torch.ops.fastconv_bench2.conv.default
    xg = x.detach().requires_grad_()
    return {"conv2d": {"custom_op, no grad": lambda: custom(x, w), "custom_op, requires_grad": lambda: custom(xg, w),
                       "Library op, no grad": lambda: library(x, w),
                       "Library op, requires_grad": lambda: library(xg, w)}}, lib


def _op_rows(name, bare, bridged, tensors, bare_backward):
    """forward and backward rows of one op (see the module docstring)."""
    grads = [t.detach().requires_grad_() for t in tensors]
    forward = {"forward: bare NumPy": bare,
               "forward: eager, no grad": lambda: bridged(*tensors),
               "forward: eager, requires_grad": lambda: bridged(*grads),
               "forward: ops, no grad": _ops(lambda: bridged(*tensors)),
               "forward: ops, requires_grad": _ops(lambda: bridged(*grads))}
    backward = {"backward: bare fastconv.grad": bare_backward,
                "backward: eager": _backward_of(lambda: bridged(*grads), grads, "eager"),
                "backward: ops": _backward_of(lambda: bridged(*grads), grads, "ops")}
    return {name: {**forward, **backward}}


def main(rounds=ROUNDS):
    torch.manual_seed(0)
    x, w = torch.randn(1, 2, 6, 6), torch.randn(3, 2, 3, 3)
    dw, pw = torch.randn(2, 1, 3, 3), torch.randn(3, 2, 1, 1)
    xn, wn, dwn, pwn = x.numpy(), w.numpy(), dw.numpy(), pw.numpy()
    g_conv = torch.ones(1, 3, 6, 6).numpy()
    _, idx = fastconv.max_pool2d(xn, 2, return_indices=True)
    g_pool = torch.ones(1, 2, 3, 3).numpy()

    def separable_backward():
        hidden = fastconv.conv2d(xn, dwn, None, 1, 1, 1, 2)
        G.conv2d_weight(hidden, pwn.shape, g_conv)
        gh = G.conv2d_input(hidden.shape, pwn, g_conv)
        G.conv2d_input(xn.shape, dwn, gh, 1, 1, 1, 2)
        G.conv2d_weight(xn, dwn.shape, gh, 1, 1, 1, 2)

    groups, lib = _registration_rows(x, w)
    groups["conv2d"].update(_op_rows(
        "conv2d", lambda: fastconv.conv2d(xn, wn, None, padding=1), lambda x, w: FT.conv2d(x, w, padding=1), (x, w),
        lambda: (G.conv2d_input(xn.shape, wn, g_conv, padding=1), G.conv2d_weight(xn, wn.shape, g_conv, padding=1)),
    )["conv2d"])
    xcl = x.contiguous(memory_format=torch.channels_last)
    xcln, g_cl = xcl.numpy(force=True).transpose(0, 2, 3, 1), torch.ones(1, 6, 6, 3).numpy()
    groups.update(_op_rows(
        "conv2d channels_last", lambda: fastconv.conv2d(xcln, wn, None, padding=1, channels_last=True),
        lambda x, w: FT.conv2d(x, w, padding=1), (xcl, w),
        lambda: (G.conv2d_input(xcln.shape, wn, g_cl, padding=1, channels_last=True),
                 G.conv2d_weight(xcln, wn.shape, g_cl, padding=1, channels_last=True)),
    ))
    groups.update(_op_rows("max_pool2d", lambda: fastconv.max_pool2d(xn, 2, return_indices=True),
                           lambda x: FT.max_pool2d(x, 2), (x,), lambda: G.max_pool2d(g_pool, xn, 2, indices=idx)))
    groups.update(_op_rows("separable_conv2d", lambda: fastconv.separable_conv2d(xn, dwn, pwn, None, padding=1),
                           lambda x, dw, pw: FT.separable_conv2d(x, dw, pw, padding=1), (x, dw, pw),
                           separable_backward))
    flat = {(op, row): fn for op, rows in groups.items() for row, fn in rows.items()}
    times = _time_rows(flat, rounds)
    print(f"{rounds} rounds x {CALLS} calls per row, interleaved; torch {torch.__version__}, "
          f"{torch.get_num_threads()} torch threads\n")
    print("| op | call | median us | IQR us | over bare us |\n|---|---|---:|---:|---:|")
    for (op, row), samples in times.items():
        median = statistics.median(samples) * 1e6
        q1, _, q3 = (q * 1e6 for q in statistics.quantiles(samples, n=4))
        base = "backward: bare fastconv.grad" if row.startswith("backward") else "forward: bare NumPy"
        over = "" if row == base else f"{median - statistics.median(times[op, base]) * 1e6:.1f}"
        print(f"| {op} | {row} | {median:.1f} | {q1:.1f}-{q3:.1f} | {over} |")
    del lib


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else ROUNDS)
