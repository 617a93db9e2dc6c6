"""One table of implementations, keyed by (op family, backend, algorithm).

Op families: "conv", "conv_transpose", "pool" (max/avg/lp windows), "adaptive_pool",
"separable" (depthwise then pointwise in one kernel; spec.separable.SeparablePair),
"pool_grad" and "adaptive_pool_grad" (their input gradients, on the forward's spec),
"conv_input_grad" and "conv_weight_grad" (fastconv.grad; the spec is the forward call's).
Backends register on import of their modules; those are imported lazily, the first
time a (family, backend) pair is asked for, so ``import fastconv`` stays cheap.
``algo="auto"`` is decided in :func:`auto_algorithm`, and nowhere else.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass

# Pointwise weights up to this size (bytes) take the fused separable kernel (auto_algorithm): channels-last
# dw_vs_standard, one thread, thread CPU time, host loaded, the fused kernel with wide tiles against the composed
# ops (their 1x1 now the row kernel, not OpenBLAS as when this was 8 KiB): 64 and 128 channels 0.76-0.90x the
# time, 256 0.79-1.02x, 512 0.97-1.08x.
SEPARABLE_FUSED_WEIGHT_BYTES = 256 * 1024
# Ungrouped layers whose dilated kernel spans this many rows or more take im2col when taps
# cannot serve them (padding modes other than zeros): the direct kernel's reads spread.
IM2COL_MIN_SPAN = 12
# Channels-first weight gradients with fewer in-channels than this take im2col, not "tiled": the
# tiled kernel's channels-last copy of grad_output costs more there than its sums save (ResNet-18's
# stem, batch 8: 9.8 ms against 7.7, one thread; with 64 in-channels 4.5 against 7.2). On the CPU,
# not where the tiled kernel sums whole window rows (width > 1, row dilation 1): its row tiles,
# out-channels by row elements, outrun im2col's GEMM copy included (one thread: ResNet-50's stem
# 3.69 against 2.67 ms, batch 8 30.2 against 29.3; MobileNetV2's 0.70 against 0.61; 8 in-channels
# 3x3 at 112x112 1.06 against 0.77; a small 64x64 stem 0.13 against 0.17).
TILED_MIN_CHANNELS_FIRST = 16
# Ungrouped layers of at most this many input channels take their input gradient as columns
# folded back (cpu/conv/input_grad_columns.py): the adjoint conv has only these channels to
# vectorise over. One thread, host loaded, ms adjoint -> columns: ResNet-50's stem 6.6 -> 5.8
# channels-first, 6.6 -> 6.4 channels-last; MobileNetV2's 1.74 -> 0.72 and 1.50 -> 1.09; C3D's
# conv1 101 -> 60 and 91 -> 67. From 8 channels the adjoint is faster (3x3 at 112x112: 1.5 / 2.7).
INPUT_GRAD_COLUMNS_MAX_CHANNELS = 4
# Channels-first 1x1 layers whose weight has at least this many elements, and at least four times as
# many as the input, take the direct kernel, not the GEMM: each OpenBLAS block packs its share of the
# large weight again, where the direct kernel packs the small input once and each task one block of the
# weight. fastconv / PyTorch, each in its own process, quiet (the committed run at f62fb16), gemm against
# direct: ResNet-50's 7x7 512->2048 1.13 / 0.97, 2048->512 1.17 / 0.98, 1024->2048 stride 2 1.08 / 0.96.
# One thread, CPU time, auto before / after this rule (host shared, load 9-10): 0.83, 0.90, 0.91. Where
# the weight is only 2-3 times the input the GEMM stays: ResNet-50's 14x14 1024->512 (1.13 / 1.08, but
# 0.97 on one thread) and U-Net's 2x2 stride-2 transposed 1024->512 at 28x28, whose four phases are
# one 1024->2048 1x1 conv (one thread: 26.7-28.6 ms on the GEMM, 31.1-31.3 on the direct kernel). The direct
# kernel now runs channels-first 1x1 layers on its 1x1 row kernel, reading the planes in place (one thread, thread
# CPU time, three processes each, against the row-planar kernel: l4.down 3.65-4.02 to 3.16-3.24 ms, l4.1x1b
# 1.64-2.03 to 1.58-1.66).
POINTWISE_DIRECT_WEIGHT = 1 << 19
# Smaller channels-first 1x1 layers take the direct kernel (its 1x1 row kernel, conv/direct/pointwise_rows.py,
# reading the planes in place) where both channel counts per group are at least this. One thread, thread CPU
# time, medians of 25-300 calls, the better of two processes each (host shared, load 9-10), gemm against
# direct (PyTorch) in us: MobileNetV2's b6.expand 155 / 112 (136), b10.expand 228 / 184 (256), b4.project
# 238 / 114 (167), conv_last 536 / 442 (672); ResNet-50's l1.1x1c 1662 / 1284 (1611), l2.1x1a 2667 / 2340
# (2636), l2.down 3074 / 2485 (2753), l4.1x1b 1717 / 1361 (1803). With fewer channels the transposing stores
# of its channels-first tiles outweigh the sums: b0.pw (32->16) 362 / 403, b1.expand (16->96) 839 / 1394,
# b2.expand (24->144) 327 / 365; at 32 either side (pw.c32.112) 503 / 558.
POINTWISE_ROWS_MIN_CHANNELS = 32


def read_share(spec) -> float:
    """Share of a convolution's (output pixel, tap) pairs whose input lies inside the input."""
    share = 1.0
    for n, o, k, s, d, (p0, _) in zip(spec.in_size, spec.out_size, spec.kernel, spec.stride, spec.dilation,
                                      spec.pads):
        inside = 0
        for t in range(k):
            # outputs y with 0 <= y*s - p0 + t*d < n
            lo = max(0, -(-(p0 - t * d) // s))
            hi = min(o, (n - 1 + p0 - t * d) // s + 1)
            inside += max(0, hi - lo)
        share *= inside / max(k * o, 1)
    return share

_MODULES = {
    ("conv", "cpu"): ("fastconv.cpu.conv.direct.run", "fastconv.cpu.conv.im2col", "fastconv.cpu.conv.depthwise.run",
                      "fastconv.cpu.conv.gemm", "fastconv.cpu.conv.taps"),
    ("conv_transpose", "cpu"): ("fastconv.cpu.conv.transpose.direct", "fastconv.cpu.conv.transpose.phases"),
    ("conv_input_grad", "cpu"): ("fastconv.cpu.conv.input_grad", "fastconv.cpu.conv.input_grad_gemm",
                                "fastconv.cpu.conv.input_grad_columns"),
    ("conv_weight_grad", "cpu"): ("fastconv.cpu.conv.weight_grad.direct", "fastconv.cpu.conv.weight_grad.im2col",
                                     "fastconv.cpu.conv.weight_grad.depthwise", "fastconv.cpu.conv.weight_grad.gemm",
                                     "fastconv.cpu.conv.weight_grad.tiled"),
    ("separable", "cpu"): ("fastconv.cpu.conv.separable.composed", "fastconv.cpu.conv.separable.fused"),
    ("pool", "cpu"): ("fastconv.cpu.pool.window",),
    ("adaptive_pool", "cpu"): ("fastconv.cpu.pool.adaptive",),
    ("pool_grad", "cpu"): ("fastconv.cpu.pool.gather_grad",),
    ("adaptive_pool_grad", "cpu"): ("fastconv.cpu.pool.gather_grad",),
    ("unfold", "cpu"): ("fastconv.cpu.windows",),
    ("fold", "cpu"): ("fastconv.cpu.windows",),
    ("max_unpool", "cpu"): ("fastconv.cpu.windows",),
    ("fractional_max_pool", "cpu"): ("fastconv.cpu.windows",),
    ("conv", "cuda"): ("fastconv.cuda",),
    ("conv_transpose", "cuda"): ("fastconv.cuda",),
    ("conv_input_grad", "cuda"): ("fastconv.cuda",),
    ("conv_weight_grad", "cuda"): ("fastconv.cuda",),
    ("pool", "cuda"): ("fastconv.cuda",),
    ("adaptive_pool", "cuda"): ("fastconv.cuda",),
    ("pool_grad", "cuda"): ("fastconv.cuda",),
    ("adaptive_pool_grad", "cuda"): ("fastconv.cuda",),
}


@dataclass(frozen=True)
class Implementation:
    family: str
    backend: str
    algo: str
    fn: Callable
    supports: Callable  # spec -> None when it can serve, else a reason string
    note: str = ""
    # spec -> (run, held): run(*arrays) is fn(spec, *arrays) with the spec's plan made once,
    # held that plan (ops/_call.py keeps both in a repeated call's CallPlan); None: fn as is
    bind: Callable | None = None


_TABLE: dict[tuple[str, str, str], Implementation] = {}
_LOADED: set[tuple[str, str]] = set()
_ORDERED: dict[tuple[str, str], dict[str, Implementation]] = {}  # implementations(), kept per family


def register(family: str, backend: str, algo: str, *, supports=None, note: str = "", bind=None):
    """Decorator: ``fn(spec, x, weight, bias)`` (conv) or ``fn(spec, x)`` (pooling);
    ``bind``: see :class:`Implementation`."""

    def deco(fn):
        _TABLE[(family, backend, algo)] = Implementation(
            family, backend, algo, fn, supports or (lambda spec: None), note, bind
        )
        _ORDERED.clear()
        return fn

    return deco


def _load(family: str, backend: str) -> None:
    if (family, backend) in _LOADED:
        return
    for module in _MODULES[(family, backend)]:
        importlib.import_module(module)
    _LOADED.add((family, backend))


def implementations(family: str, backend: str) -> dict[str, Implementation]:
    """The family's implementations on ``backend`` in the order of its _MODULES entry (then of
    registration within a module), whichever module a caller happened to import first."""
    table = _ORDERED.get((family, backend))
    if table is None:
        _load(family, backend)
        modules = _MODULES[(family, backend)]
        found = [impl for (f, b, _), impl in _TABLE.items() if f == family and b == backend]
        found.sort(key=lambda impl: modules.index(impl.fn.__module__) if impl.fn.__module__ in modules
                   else len(modules))
        table = _ORDERED[(family, backend)] = {impl.algo: impl for impl in found}
    return table


def capable(family: str, backend: str, spec) -> list[str]:
    """Algorithms that can serve ``spec`` on ``backend``, in the order of :func:`implementations`."""
    return [a for a, impl in implementations(family, backend).items() if impl.supports(spec) is None]


def auto_algorithm(family: str, backend: str, spec, names: list[str]) -> str:
    """The algo="auto" rule, per call, from the spec alone (cheap). The measurements
    behind each rule are in reports/auto_algorithm.md.

    - Convolutions: depthwise layers take the depthwise kernel; 1x1 layers the direct kernel
      channels-last, and channels-first where both channel counts per group are at least
      POINTWISE_ROWS_MIN_CHANNELS, but one GEMM where the weight is large (POINTWISE_DIRECT_WEIGHT)
      and less than four times the input; the GEMM on the other channels-first 1x1 layers.
      Dilated layers with zeros padding: the direct kernel too (it skips the taps that read
      padding, region by region; "taps", the same through GEMMs, is never chosen); with another padding mode,
      im2col once the dilated kernel spans IM2COL_MIN_SPAN rows. Every other
      convolution: the register-tiled direct kernel.
    - Separable convolutions (channels-last, zeros padding, multiplier 1): the fused
      kernel while the pointwise weight fits SEPARABLE_FUSED_WEIGHT_BYTES, else the
      depthwise and pointwise ops in turn ("composed").
    - Weight gradients: the depthwise kernel wherever a group has one input channel; 1x1 layers
      GEMMs in the user's layout; channels-first ungrouped layers with fewer than
      TILED_MIN_CHANNELS_FIRST in-channels (stems) one GEMM over im2col columns, but on the CPU
      where the tiled kernel sums whole window rows; the rest the register-tiled kernel
      ("tiled"). Input gradients: 1x1 stride-1 layers one GEMM; ungrouped layers of at most
      INPUT_GRAD_COLUMNS_MAX_CHANNELS input channels columns folded back;
      depthwise layers (multiplier 1, zeros or constant padding) that the flipped forward
      depthwise conv cannot serve (strided) the depthwise gather kernel where a backend
      registers one (the GPU; the CPU's adjoint calls its own); the rest the adjoint
      convolution.
    - Transposed convolutions: the phase decomposition where it can serve.
    - Anything else: the first capable implementation.
    """
    if family == "conv_transpose":
        return "phases" if "phases" in names else names[0]
    if family == "conv_weight_grad":
        rows = backend == "cpu" and spec.kernel[-1] > 1 and spec.dilation[-1] == 1
        few = spec.groups == 1 and not spec.channels_last and spec.in_channels < TILED_MIN_CHANNELS_FIRST and not rows
        preferred = ("depthwise" if "depthwise" in names else "gemm" if "gemm" in names
                     else "im2col" if few or "tiled" not in names else "tiled")
        return preferred if preferred in names else names[0]
    if family == "conv_input_grad":
        if "depthwise" in names and not _flips(spec):
            return "depthwise"
        if "columns" in names and spec.groups == 1 and spec.in_channels <= INPUT_GRAD_COLUMNS_MAX_CHANNELS:
            return "columns"
        return next(name for name in ("gemm", "adjoint", *names) if name in names)
    if family == "separable":
        pw = spec.pointwise
        fits = pw.in_channels * pw.out_channels * pw.itemsize <= SEPARABLE_FUSED_WEIGHT_BYTES
        return "fused" if "fused" in names and fits else "composed"
    if family != "conv":
        return names[0]
    ordered = []
    if spec.is_depthwise:
        ordered.append("depthwise")
    if spec.is_pointwise and not spec.channels_last and not _pointwise_direct(spec):
        ordered.append("gemm")
    span = max([(k - 1) * d for k, d in zip(spec.kernel[:-1], spec.dilation[:-1])] + [0])
    if spec.groups == 1 and span >= IM2COL_MIN_SPAN and "taps" not in names:
        ordered.append("im2col")
    ordered += ["direct", "im2col", "gemm"]
    return next(name for name in ordered + names if name in names)


def _pointwise_direct(spec) -> bool:
    """Whether a channels-first 1x1 layer takes the direct kernel: a weight of POINTWISE_DIRECT_WEIGHT elements
    or more where weight_heavy, a smaller one with POINTWISE_ROWS_MIN_CHANNELS per group either side."""
    if spec.out_channels * spec.in_per_group >= POINTWISE_DIRECT_WEIGHT:
        return weight_heavy(spec)
    return min(spec.in_per_group, spec.out_per_group) >= POINTWISE_ROWS_MIN_CHANNELS


def weight_heavy(spec) -> bool:
    """Whether a 1x1 layer's weight is at least POINTWISE_DIRECT_WEIGHT elements and four times its input."""
    weight = spec.out_channels * spec.in_per_group
    return weight >= POINTWISE_DIRECT_WEIGHT and weight >= 4 * spec.batch * spec.in_channels * math.prod(spec.in_size)


def _flips(spec) -> bool:
    """Whether the adjoint runs a depthwise layer's input gradient as the flipped forward conv."""
    from .spec.adjoint import flipped_conv_spec

    return flipped_conv_spec(spec) is not None


def choose(family: str, backend: str, spec, algo: str = "auto") -> Implementation:
    table = implementations(family, backend)
    names = capable(family, backend, spec)
    op = spec.op
    if not names and (algo == "auto" or algo not in table):
        raise ValueError(f"{op}: no {backend} implementation can serve {spec.name()}")
    if algo == "auto":
        return table[auto_algorithm(family, backend, spec, names)]
    if not isinstance(algo, str):
        raise TypeError(f"{op}: algo must be a string, got {type(algo).__name__}")
    if algo not in table:
        raise ValueError(
            f"{op}: unknown algo={algo!r} on {backend}; the ones that can serve this call: "
            f"{', '.join(names)}"
        )
    reason = table[algo].supports(spec)
    if reason is not None:
        raise ValueError(
            f"{op}: algo={algo!r} cannot serve this call ({reason}); the ones that can: "
            f"{', '.join(names) or 'none'}"
        )
    return table[algo]
