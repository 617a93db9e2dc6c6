"""One table of implementations, keyed by (op family, backend, algorithm).

Op families: "conv", "conv_transpose", "pool" (max/avg/lp windows), "adaptive_pool",
"separable" (depthwise then pointwise in one kernel; spec.conv.SeparablePair).
Backends register on import of their modules; those are imported lazily, the first
time a (family, backend) pair is asked for, so ``import fastconv`` stays cheap.
``algo="auto"`` is decided in :func:`auto_algorithm`, and nowhere else.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

BACKENDS = ("cpu", "cuda")

# Pointwise weights up to this size (bytes) take the fused separable kernel (auto_algorithm).
SEPARABLE_FUSED_WEIGHT_BYTES = 8 * 1024

_MODULES = {
    ("conv", "cpu"): ("fastconv.cpu.conv_direct", "fastconv.cpu.conv_im2col", "fastconv.cpu.conv_depthwise",
                      "fastconv.cpu.conv_gemm", "fastconv.cpu.conv_taps"),
    ("conv_transpose", "cpu"): ("fastconv.cpu.conv_transpose", "fastconv.cpu.conv_transpose_phases"),
    ("separable", "cpu"): ("fastconv.cpu.conv_separable", "fastconv.cpu.conv_separable_nhwc"),
    ("pool", "cpu"): ("fastconv.cpu.pool_window",),
    ("adaptive_pool", "cpu"): ("fastconv.cpu.pool_adaptive",),
    ("unfold", "cpu"): ("fastconv.cpu.windows",),
    ("fold", "cpu"): ("fastconv.cpu.windows",),
    ("max_unpool", "cpu"): ("fastconv.cpu.windows",),
    ("fractional_max_pool", "cpu"): ("fastconv.cpu.windows",),
    ("conv", "cuda"): ("fastconv.cuda",),
    ("conv_transpose", "cuda"): ("fastconv.cuda",),
    ("pool", "cuda"): ("fastconv.cuda",),
    ("adaptive_pool", "cuda"): ("fastconv.cuda",),
}


@dataclass(frozen=True)
class Implementation:
    family: str
    backend: str
    algo: str
    fn: Callable
    supports: Callable  # spec -> None when it can serve, else a reason string
    note: str = ""


_TABLE: dict[tuple[str, str, str], Implementation] = {}
_LOADED: set[tuple[str, str]] = set()


def register(family: str, backend: str, algo: str, *, supports=None, note: str = ""):
    """Decorator: ``fn(spec, x, weight, bias)`` (conv) or ``fn(spec, x)`` (pooling)."""

    def deco(fn):
        _TABLE[(family, backend, algo)] = Implementation(
            family, backend, algo, fn, supports or (lambda spec: None), note
        )
        return fn

    return deco


def _load(family: str, backend: str) -> None:
    if (family, backend) in _LOADED:
        return
    for module in _MODULES[(family, backend)]:
        importlib.import_module(module)
    _LOADED.add((family, backend))


def implementations(family: str, backend: str) -> dict[str, Implementation]:
    _load(family, backend)
    return {a: impl for (f, b, a), impl in _TABLE.items() if f == family and b == backend}


def capable(family: str, backend: str, spec) -> list[str]:
    """Algorithms that can serve ``spec`` on ``backend``, in registration order."""
    return [a for a, impl in implementations(family, backend).items() if impl.supports(spec) is None]


def auto_algorithm(family: str, backend: str, spec, names: list[str]) -> str:
    """The algo="auto" rule, per call, from the spec alone (cheap).

    Depthwise layers: the depthwise kernel; 1x1 layers: one BLAS GEMM; ungrouped 2-D and
    3-D layers whose dilated kernel spans 12 or more rows (DeepLab's ASPP rates 6-18):
    with zeros padding "taps" (im2col over only the taps that read the input), else
    im2col, 1.2-1.8x faster there than the direct kernel, whose reads then spread over
    distant rows. taps against im2col and direct on ASPP's 512->256 3x3 convs on 33x33
    (single-threaded CPU time, both layouts): 1.2x faster than im2col (1.03-1.08x than
    direct) at rate 6, 1.5x and 2.0x faster than im2col at rates 12 and 18; on the dilated
    residual blocks (rates 2 and 4 on 28x28, spans 4 and 8, few taps in padding) 1.3-1.5x
    slower than direct single-threaded, but 1.13-1.27x faster with 2 threads in the
    committed benchmark (reports/latest.md, both layouts), so every ungrouped dilated
    2-D/3-D layer with zeros padding takes taps (1-D TCN layers stay direct: taps ran
    3-5x slower there). With 2 threads (bench.run --quick, load
    average 1.3) ASPP ran at 1.06-1.32x PyTorch's time channels-last (im2col 1.6-2.4x) and
    0.48-1.18x channels-first (im2col 1.0-1.24x). Under heavier load its 9-17 OpenBLAS calls
    per layer stalled (0.1-0.7 s; see conv_taps). Every other convolution: the register-tiled direct
    kernel, faster than im2col on every such layer timed (ResNet-50 3x3 and 7x7, dilated
    residual blocks, ResNeXt-style groups of 4 and 8 channels, 1-D at dilations 1-256,
    3-D), by 1.05-5x.

    Separable convolutions (channels-last, zeros padding, multiplier 1): the fused kernel
    while the pointwise weight fits SEPARABLE_FUSED_WEIGHT_BYTES, else the depthwise and
    pointwise ops in turn ("composed"). The fused kernel's 1x1 runs on the direct
    kernel's tiles, slower than OpenBLAS's GEMM once the reduction is long; measured at
    2 threads, fastconv / PyTorch dw+pw (dw_vs_standard separable layers, 3x3, quiet
    machine): 32 channels at 112x112 fused 0.42, composed 1.19 (the composed op runs
    well over its parts' sum there); 64 channels 0.99 / 0.90; 128-728 channels 0.50-1.26
    fused against 0.40-0.73 composed.

    Transposed convolutions on the CPU: the phase decomposition (one forward conv per
    output phase), 2-14x faster than the gather kernel on every layer timed (DCGAN 4x4
    stride 2, U-Net 2x2 stride 2, FCN 3x3 stride 2, both layouts).
    """
    if family == "conv_transpose":
        return "phases" if "phases" in names else names[0]
    if family == "separable":
        pw = spec.pointwise
        fits = pw.in_channels * pw.out_channels * pw.itemsize <= SEPARABLE_FUSED_WEIGHT_BYTES
        return "fused" if "fused" in names and fits else "composed"
    if family != "conv":
        return names[0]
    ordered = []
    if spec.is_depthwise:
        ordered.append("depthwise")
    if spec.is_pointwise:
        ordered.append("gemm")
    if spec.groups == 1 and spec.nd >= 2 and max(spec.dilation) > 1:
        ordered.append("taps")
    if spec.groups == 1 and max([(k - 1) * d for k, d in zip(spec.kernel[:-1], spec.dilation[:-1])] + [0]) >= 12:
        ordered.append("im2col")
    ordered += ["direct", "im2col", "gemm"]
    return next(name for name in ordered + names if name in names)


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
