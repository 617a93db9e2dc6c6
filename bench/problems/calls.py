"""From a problem's resolved spec to calls: fastconv's and PyTorch's arguments, and which
fastconv algorithms can serve it (asked of fastconv's dispatch table)."""

from __future__ import annotations

from .base import Unsupported


def torch_layout_ok(nd: int, layout: str):
    if layout == "nhwc" and nd == 1:
        raise Unsupported("PyTorch has no channels_last memory format for 3-D (N, C, W) tensors")


def pads_arg(pads):
    """Per-side pads as the simplest argument fastconv and PyTorch both read."""
    if all(b == e for b, e in pads):
        return tuple(b for b, _ in pads)
    return tuple(tuple(p) for p in pads)


def torch_pad(pads):
    """F.pad's argument (last dim first) for per-side pads."""
    out = []
    for b, e in reversed(pads):
        out += [b, e]
    return out


def capable_algos(family: str, spec) -> list[str]:
    from fastconv.dispatch import capable

    return list(capable(family, "cpu", spec))


def auto_algo(family: str, spec) -> str | None:
    from fastconv.dispatch import choose

    try:
        return choose(family, "cpu", spec, "auto").algo
    except ValueError:
        return None
