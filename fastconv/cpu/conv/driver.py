"""The loop every padded-input CPU conv kernel runs in: chunks of images, each padded
into the working layout, then the kernel writes its slice of the working output; and
:class:`ChunkedOutput`, which keeps working outputs to one chunk of images."""

from __future__ import annotations

import math

import numpy as np

from ..._arrays import working_dtype
from ...kernels.activation import ACTIVATION_CODES
from ...kernels.geometry import geometry3
from ..layout import bias_vector, channels_last_5d, image_chunks, padded_image_bytes, padded_input


class ChunkedOutput:
    """The user's output, and for each chunk of images the array a kernel writes.

    When the kernel writes the user's layout and dtype, that is the output's own slice;
    otherwise (float16 computed in float32, a channels-last kernel for a channels-first
    caller) a working array for the chunk alone, stored into the output after the kernel,
    so that no output-sized working copy exists: its bytes per image count in the chunk
    size (:attr:`bytes_per_image`), within the workspace cap.
    """

    def __init__(self, spec, dtype, kernel_channels_last: bool):
        self.spec, self.dtype, self.kernel_channels_last = spec, np.dtype(dtype), kernel_channels_last
        self.out = np.empty(spec.output_shape, spec.dtype)
        self.direct = self.dtype == self.out.dtype and kernel_channels_last == spec.channels_last
        geom = geometry3(spec)
        self._image = ((*geom.out_size, spec.out_channels) if kernel_channels_last
                       else (spec.out_channels, *geom.out_size))
        self.bytes_per_image = 0 if self.direct else math.prod(self._image) * self.dtype.itemsize

    def chunk(self, n0: int, n1: int) -> np.ndarray:
        """The C-contiguous array the kernel writes for images n0..n1 (5-D (N, D, H, W, K) or
        (N, K, D, H, W) for a working array)."""
        if self.direct:
            return self.out[n0:n1]
        return np.empty((n1 - n0, *self._image), self.dtype)

    def store(self, n0: int, n1: int, work: np.ndarray) -> None:
        if self.direct:
            return
        if self.kernel_channels_last != self.spec.channels_last:
            work = np.moveaxis(work, -1, 1) if self.kernel_channels_last else np.moveaxis(work, 1, -1)
        np.copyto(self.out[n0:n1], work.reshape(self.out[n0:n1].shape), casting="unsafe")


def run_on_padded_chunks(spec, x, bias, kernel_call, share: float = 1.0):
    """Call ``kernel_call(xp, out_chunk, bias, act)`` per image chunk (``out_chunk``
    channels-last, in the working dtype); return the result. The padded copy and the
    chunk's working output (when the user's layout or dtype differs) fit ``share`` of
    the workspace cap, one chunk alive at a time."""
    dtype = working_dtype(np.dtype(spec.dtype))
    geom = geometry3(spec)
    x5 = channels_last_5d(x, spec.nd, spec.channels_last)
    result = ChunkedOutput(spec, dtype, True)
    b = bias_vector(bias, spec, dtype)
    act = ACTIVATION_CODES[spec.activation]
    for n0, n1 in image_chunks(spec, padded_image_bytes(spec, dtype) + result.bytes_per_image, share):
        xp = padded_input(x5[n0:n1], geom, spec.padding_mode, spec.padding_value, dtype)
        out = result.chunk(n0, n1)
        kernel_call(xp, out.reshape((n1 - n0, *geom.out_size, spec.out_channels)), b, act)
        xp = None  # the next chunk's copy is not allocated while this one lives
        result.store(n0, n1, out)
        out = None
    return result.out
