"""Workload suites (``fastconv/testing/workloads/*.json``, package data) and their layers as problems."""

from __future__ import annotations

import re

from fastconv.spec import resolve_adaptive_pool, resolve_conv, resolve_pool
from fastconv.testing import workloads
from fastconv.testing.workloads import suite_names

from .base import Problem
from .conv import ConvProblem, SeparableProblem
from .pool import AdaptivePoolProblem, GlobalPoolProblem, PoolProblem, PyramidPoolProblem

__all__ = ["load_suite", "problem_from_layer", "suite_about", "suite_names"]


def load_suite(suite: str, dtype: str = "float32") -> list[tuple[str, Problem]]:
    """[(layer name, problem)] of one suite, in file order."""
    return [(layer["name"], problem_from_layer(layer, dtype)) for layer in workloads.layers(suite)]


def suite_about(suite: str) -> str:
    return workloads.about(suite)


def problem_from_layer(layer: dict, dtype: str = "float32") -> Problem:
    """A problem from one workload entry (channels-first shapes, PyTorch weight layout)."""
    op = layer["op"]
    shape = tuple(layer["input"])
    if m := re.fullmatch(r"(conv|conv_transpose)([123])d", op):
        kw = dict(stride=layer.get("stride", 1), padding=_padding(layer.get("padding", 0)),
                  dilation=layer.get("dilation", 1) or 1, groups=layer.get("groups", 1) or 1, dtype=dtype)
        if m.group(1) == "conv_transpose":
            kw["output_padding"] = layer.get("output_padding", 0) or 0
        return ConvProblem(resolve_conv(op, shape, tuple(layer["weight"]), **kw))
    if op in ("depthwise_conv2d", "pointwise_conv2d"):
        w = tuple(layer["weight"])
        if op == "pointwise_conv2d" and len(w) == 2:
            w = (*w, 1, 1)
        groups = shape[1] if op == "depthwise_conv2d" else 1
        return ConvProblem(resolve_conv("conv2d", shape, w, stride=layer.get("stride", 1),
                                        padding=_padding(layer.get("padding", 0)),
                                        dilation=layer.get("dilation", 1) or 1, groups=groups, dtype=dtype))
    if op == "separable_conv2d":
        dw = resolve_conv("conv2d", shape, tuple(layer["depthwise_weight"]), stride=layer.get("stride", 1),
                          padding=_padding(layer.get("padding", 0)), dilation=layer.get("dilation", 1) or 1,
                          groups=shape[1], dtype=dtype)
        pw_w = tuple(layer["pointwise_weight"])
        if len(pw_w) == 2:
            pw_w = (*pw_w, 1, 1)
        pw = resolve_conv("conv2d", dw.output_shape, pw_w, dtype=dtype)
        return SeparableProblem(dw, pw)
    nd = len(shape) - 2
    if m := re.fullmatch(r"(max|avg|lp)_pool([123])d", op):
        mode = m.group(1)
        kw = dict(ceil_mode=bool(layer.get("ceil_mode", False)), dtype=dtype)
        if mode == "avg":
            kw["count_include_pad"] = layer.get("count_include_pad", True)
            kw["divisor_override"] = layer.get("divisor_override")
        if mode == "lp":
            kw["norm_type"] = layer.get("norm_type", 2.0)
        spec = resolve_pool(op, mode, int(m.group(2)), shape, layer["kernel_size"], layer.get("stride"),
                            _padding(layer.get("padding", 0)), layer.get("dilation", 1) or 1, **kw)
        return PoolProblem(spec)
    if m := re.fullmatch(r"adaptive_(max|avg)_pool([123])d", op):
        spec = resolve_adaptive_pool(op, m.group(1), int(m.group(2)), shape, layer["output_size"], dtype=dtype)
        return AdaptivePoolProblem(spec)
    if op in ("global_avg_pool", "global_max_pool"):
        mode = op.split("_")[1]
        return GlobalPoolProblem(resolve_adaptive_pool(op, mode, nd, shape, 1, dtype=dtype))
    if op == "spatial_pyramid_pool":
        levels = tuple(int(v) for v in layer.get("levels", (1, 2, 4)))
        mode = layer.get("mode", "max")
        spec = resolve_adaptive_pool(op, mode, nd, shape, levels[0], dtype=dtype)
        return PyramidPoolProblem(spec, levels)
    raise ValueError(f"problem_from_layer: unknown op {op!r} in layer {layer.get('name', layer)!r}")


def _padding(value):
    """Workload padding: an int, a list of ints, or a list of [begin, end] pairs."""
    if isinstance(value, list):
        return tuple(tuple(v) if isinstance(v, list) else v for v in value)
    return value
