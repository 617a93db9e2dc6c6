"""The separable family of the op registry (fastconv.testing.registry): one call per
separable algorithm (``separable_samples``, tagged ``every_op``) and the cases the
separable tests run (``separable_cases``)."""

from __future__ import annotations

from .. import reference
from .op_sample import OpSample, op_sample
from .registry import OpInfo, register_op


def separable_samples() -> list[OpSample]:
    """One call per separable algorithm, tagged ``separable``."""
    s = op_sample
    return [
        s("separable_conv2d", (1, 7, 7, 4), (4, 1, 3, 3), (6, 4, 1, 1), padding=1, algo="fused",
          channels_last=True, geometry=("stride", "padding", "dilation"), huge=(("padding", 10**5),),
          tags={"separable", "channels_last"}),
        s("separable_conv2d", (1, 4, 7, 7), (4, 1, 3, 3), (6, 4, 1, 1), padding=1, algo="composed",
          geometry=("stride", "padding", "dilation"), huge=(("padding", 10**5),), tags={"separable"}),
    ]


def separable_cases() -> list[OpSample]:
    """The separable tests' cases (tests/test_separable.py), run in several dtypes, layouts
    and algorithms: arrays input, depthwise weight (C*M, 1, k, k), pointwise weight
    (K, C*M, 1, 1). Tagged ``vs_torch``, ``multiplier`` (M > 1) and ``padding_mode`` (not
    zeros): both leave the fused kernel out; ``plain`` and ``awkward`` (stride 2, odd sizes,
    channel and tile tails) name the one case a test takes."""
    def c(n, ch, h, w, k, ks, stride, padding, dilation, m, mode, *tags):
        tags = {"separable", "vs_torch", *tags} | ({"multiplier"} if m > 1 else set()) | (
            {"padding_mode"} if mode != "zeros" else set())
        return OpSample("separable_conv2d", ((n, ch, h, w), (ch * m, 1, ks, ks), (k, ch * m, 1, 1)),
                        tuple(sorted(dict(stride=stride, padding=padding, dilation=dilation,
                                          padding_mode=mode).items())), "float64", tags=frozenset(tags))
    return [
        c(2, 4, 9, 8, 5, 3, 1, 1, 1, 1, "zeros", "plain"),
        c(1, 17, 13, 17, 33, 3, 2, 1, 1, 1, "zeros", "awkward"),  # stride 2, odd sizes, channel and tile tails
        c(1, 40, 7, 7, 70, 3, 1, 2, 2, 1, "zeros"),  # dilation, K over two vectors
        c(1, 3, 5, 3, 1, 5, 1, 2, 1, 1, "zeros"),  # map narrower than the window, one output channel
        c(2, 32, 12, 12, 16, 3, 1, ((0, 2), (1, 0)), 1, 1, "zeros"),  # per-side pads
        c(1, 96, 6, 10, 24, 3, 2, "same", 1, 1, "zeros"),
        c(1, 8, 6, 6, 8, 3, 1, 3, 1, 1, "zeros"),  # pads beyond the window: whole rows of zeros
        c(1, 24, 1, 9, 7, 3, 1, 1, 1, 1, "zeros"),  # a single row
        c(3, 16, 11, 5, 12, 1, 1, 0, 1, 1, "zeros"),  # 1x1 depthwise
        c(1, 6, 8, 8, 10, 3, 1, 1, 1, 2, "zeros"),  # multiplier 2: composed
        c(1, 6, 8, 8, 10, 3, 1, 1, 1, 1, "reflect"),  # composed
    ]


register_op(OpInfo("separable_conv2d", "separable", samples=lambda: separable_samples() + separable_cases(),
                   reference=reference.separable_conv))
