"""Canonical problem names -> problems: ``parse(p.name()) == p``.

Convolution, separable and pooling names are the library's spec names, read by
``ConvSpec.parse``, ``SeparablePair.parse``, ``PoolSpec.parse`` and
``AdaptivePoolSpec.parse``. The composite problems that have no spec of their own
(global and spatial pyramid pooling) are read here, with the library's token reader (:mod:`fastconv.spec.names`).
"""

from __future__ import annotations

import re

from fastconv.spec import AdaptivePoolSpec, ConvSpec, PoolSpec, SeparablePair, names, resolve_adaptive_pool

from .backward import ConvBackwardProblem
from .base import Problem
from .conv import ConvProblem, SeparableProblem
from .pool import AdaptivePoolProblem, GlobalPoolProblem, PoolProblem, PyramidPoolProblem


def parse(text: str) -> Problem:
    """The problem a canonical name describes: ``parse(p.name()) == p``."""
    if text.startswith("backward_conv"):
        return ConvBackwardProblem(ConvSpec.parse(text[len("backward_"):]))
    if re.match(r"conv(_transpose)?[123]d_", text):
        return ConvProblem(ConvSpec.parse(text))
    if text.startswith("separable_conv2d_"):
        return SeparableProblem(*SeparablePair.parse(text))
    if re.match(r"(max|avg|lp)_pool[123]d", text):
        return PoolProblem(PoolSpec.parse(text))
    if re.match(r"adaptive_(max|avg)_pool[123]d", text):
        return AdaptivePoolProblem(AdaptivePoolSpec.parse(text))
    if m := re.match(r"global_(max|avg)_pool([123])d_", text):
        return _global(text, m.group(1), int(m.group(2)), text[m.end():])
    if m := re.match(r"spatial_pyramid_pool([123])d_", text):
        return _pyramid(text, int(m.group(1)), text[m.end():])
    raise ValueError(f"parse: {text!r} is not a problem name (conv*, separable_conv2d_*, *_pool*)")


def _shape(f: dict, channels: int) -> tuple:
    return (f.get("mb", 1), channels, *f["in"])


def _global(text: str, mode: str, nd: int, rest: str) -> GlobalPoolProblem:
    """``global_<mode>_pool<N>d_mb<N>_c<C>_i<sizes>[_f64]``."""
    where = f"parse: {text!r}"
    f = names.read(where, rest, nd, ("mb", "c", "in", "dtype"))
    names.require(where, f, "c", "in")
    spec = resolve_adaptive_pool(f"global_{mode}_pool", mode, nd, _shape(f, f["c"]), 1,
                                 dtype=f.get("dtype", "float32"))
    return GlobalPoolProblem(spec)


def _pyramid(text: str, nd: int, rest: str) -> PyramidPoolProblem:
    """``spatial_pyramid_pool<N>d_mb<N>_c<C>_i<sizes>_l<levels, dot-separated>[_avg][_f64]``."""
    where = f"parse: {text!r}"
    f = names.read(where, rest, nd, ("mb", "c", "in", "dtype"),
                   (("levels", r"l(\d+(?:\.\d+)*)", lambda m: tuple(int(v) for v in m.group(1).split("."))),
                    ("mode", r"max|avg", lambda m: m.group(0))))
    names.require(where, f, "c", "in", "levels", forms={"levels": "l<levels>"})
    levels = f["levels"]
    spec = resolve_adaptive_pool("spatial_pyramid_pool", f.get("mode", "max"), nd, _shape(f, f["c"]), levels[0],
                                 dtype=f.get("dtype", "float32"))
    return PyramidPoolProblem(spec, levels)
