"""The loop every padded-input CPU conv kernel runs in: chunks of images, each padded
into the working layout, then the kernel writes its slice of the working output."""

from __future__ import annotations

import numpy as np

from .._arrays import working_dtype
from .layout import (
    ACTIVATION_CODES,
    bias_vector,
    channels_last_5d,
    geometry3,
    image_chunks,
    output_from_working,
    padded_image_bytes,
    padded_input,
)


def run_on_padded_chunks(spec, x, bias, kernel_call, share: float = 1.0):
    """Call ``kernel_call(xp, out_chunk, bias, act, n0)`` per image chunk; return the result."""
    dtype = working_dtype(np.dtype(spec.dtype))
    geom = geometry3(spec)
    x5 = channels_last_5d(x, spec.nd, spec.channels_last)
    out = np.empty((spec.batch, *geom.out_size, spec.out_channels), dtype)
    b = bias_vector(bias, spec, dtype)
    act = ACTIVATION_CODES[spec.activation]
    for n0, n1 in image_chunks(spec, padded_image_bytes(spec, dtype), share):
        xp = padded_input(x5[n0:n1], geom, spec.padding_mode, spec.padding_value, dtype)
        kernel_call(xp, out[n0:n1], b, act)
    return output_from_working(out, spec, np.dtype(spec.dtype))
