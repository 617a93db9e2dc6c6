"""Per-call overhead of the PyTorch bridge on a tiny layer (issue 13, target: at most 15 us
over the bare NumPy kernel call, median).

Each row is the median of many calls on 1x2x6x6 float32 input: the bare ``fastconv.conv2d``
(3x3 kernel, padding 1) on NumPy arrays, also with padding as the bridge passes it; the bare
``max_pool2d`` with indices (the bridge's op always returns them); the same conv kernel
registered with ``torch.library.custom_op`` and with ``torch.library.Library`` define/impl
(as fastconv.torch does), each with a trivial autograd formula; the public
``fastconv.torch.conv2d`` and ``max_pool2d`` (argument encoding included). Each bridged
call is timed without and with ``requires_grad`` (autograd records a node).
Run: ``python -m bench.torch_overhead``.
"""

from __future__ import annotations

import statistics
import time

import torch

import fastconv
import fastconv.torch as FT
from fastconv.torch._tensors import as_array, as_tensor

CALLS = 20000


def _median_us(fn, calls=CALLS):
    for _ in range(200):
        fn()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def _kernel(input, weight):
    arrays = (as_array(input), as_array(weight))
    return as_tensor(fastconv.conv2d(arrays[0], arrays[1], None, padding=1), arrays)


def main():
    x = torch.randn(1, 2, 6, 6)
    w = torch.randn(3, 2, 3, 3)
    xn, wn = x.numpy(), w.numpy()

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
    via_library = torch.ops.fastconv_bench2.conv.default
    via_custom_op = torch.ops.fastconv_bench.conv.default

    bare = _median_us(lambda: fastconv.conv2d(xn, wn, None, padding=1))
    pool_bare = _median_us(lambda: fastconv.max_pool2d(xn, 2, return_indices=True))
    rows = [("bare fastconv.conv2d (NumPy)", bare, None),
            ("bare, padding as the bridge passes it (pairs)",
             _median_us(lambda: fastconv.conv2d(xn, wn, None, (1, 1), ((1, 1), (1, 1)), (1, 1), 1)), None)]
    for grad in (False, True):
        x.requires_grad_(grad)
        tag = " (requires_grad)" if grad else ""
        for name, fn in (("custom_op", lambda: via_custom_op(x, w)), ("Library define/impl", lambda: via_library(x, w)),
                         ("fastconv.torch.conv2d", lambda: FT.conv2d(x, w, padding=1)),
                         ("fastconv.torch.max_pool2d (bare: max_pool2d)", lambda: FT.max_pool2d(x, 2))):
            t = _median_us(fn)
            rows.append((name + tag, t, t - (pool_bare if "max_pool" in name else bare)))
    rows.insert(2, ("bare fastconv.max_pool2d (NumPy, with indices)", pool_bare, None))
    print("| call | median us | over bare |\n|---|---:|---:|")
    for name, t, over in rows:
        print(f"| {name} | {t:.1f} | {'' if over is None else f'{over:.1f}'} |")


if __name__ == "__main__":
    main()
