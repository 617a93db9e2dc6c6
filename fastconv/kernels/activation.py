"""The activations fused into the convolution kernels' epilogue, by code."""

from __future__ import annotations

from .inline import inline_helper

ACTIVATION_CODES = {None: 0, "relu": 1, "relu6": 2}


@inline_helper
def activate(v, act):
    if act >= 1 and v < 0:
        v = 0.0
    if act == 2 and v > 6:
        v = 6.0
    return v
