"""The separable family on the CPU (spec.separable.SeparablePair): "composed", the depthwise
convolution then the pointwise one, each through the conv family's own algo="auto"
choice; the fused channels-last kernel is in conv/separable/fused.py."""

from __future__ import annotations

from ....dispatch import choose, register


@register("separable", "cpu", "composed",
          note="the depthwise conv, then the pointwise conv on its output, each with its auto algorithm")
def separable_composed(pair, x, dw_weight, dw_bias, pw_weight, pw_bias):
    d, p = pair
    hidden = choose("conv", "cpu", d, "auto").fn(d, x, dw_weight, dw_bias)
    return choose("conv", "cpu", p, "auto").fn(p, hidden, pw_weight, pw_bias)
