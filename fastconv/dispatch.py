"""One table of implementations, keyed by (op family, backend, algorithm).

Op families: "conv", "conv_transpose", "pool" (max/avg/lp windows), "adaptive_pool".
Backends register on import of their modules; those are imported lazily, the first
time a (family, backend) pair is asked for, so ``import fastconv`` stays cheap.
``algo="auto"`` is decided in :func:`auto_algorithm`, and nowhere else.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

BACKENDS = ("cpu", "cuda")

_MODULES = {
    ("conv", "cpu"): ("fastconv.cpu.conv_direct", "fastconv.cpu.conv_im2col", "fastconv.cpu.conv_depthwise",
                      "fastconv.cpu.conv_gemm"),
    ("conv_transpose", "cpu"): ("fastconv.cpu.conv_transpose",),
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
    """The algo="auto" rule, per call, from the spec alone (cheap)."""
    if family != "conv":
        return names[0]
    ordered = []
    if spec.is_depthwise:
        ordered.append("depthwise")
    if spec.is_pointwise:
        ordered.append("gemm")
    if spec.groups == 1 and spec.in_per_group * _taps(spec) >= 64:
        ordered.append("im2col")
    if spec.groups > 1 and spec.in_per_group < 16 and spec.out_per_group < 16:
        ordered.append("im2col")
    ordered += ["direct", "im2col", "gemm"]
    return next(name for name in ordered + names if name in names)


def _taps(spec) -> int:
    total = 1
    for k in spec.kernel:
        total *= k
    return total


def choose(family: str, backend: str, spec, algo: str = "auto") -> Implementation:
    table = implementations(family, backend)
    names = capable(family, backend, spec)
    op = spec.op
    if not names:
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
            f"{', '.join(names)}"
        )
    return table[algo]
