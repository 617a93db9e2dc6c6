"""Operands of the 1x1 gradient GEMMs (input_grad_gemm.py, weight_grad/gemm.py): which
pixels a strided 1x1 conv reads, and the chunks of images whose copies fit the workspace cap.

A 1x1 layer without padding is a matrix product per image, ``y (K, P) = W (K, C) @ x (C, P)``
(P the output pixels), so each gradient is one GEMM too, in the user's layout: no padded
working copy, im2col columns or transpose. Operands are read in place when they are
C-contiguous in the working dtype, else copied by chunks of images.
"""

from __future__ import annotations

from ..._workspace import chunks, workspace_limit


def pointwise(spec):
    return None if spec.is_pointwise else "kernel must be 1x1 with no padding (pointwise)"


def image_chunks(batch, arrays, pixels, dtype):
    """Chunks of images: the whole batch when every array (None: a temporary) is read in place,
    else chunks whose copies fit the workspace cap. ``arrays``: (array, channels) pairs."""
    copied = sum(channels for a, channels in arrays
                 if a is None or not (a.dtype == dtype and a.flags.c_contiguous))
    if not copied:
        return [(0, batch)]
    return chunks(batch, copied * pixels * dtype.itemsize, workspace_limit())


def strided_pixels(spec, size):
    """Index of the pixels that a 1x1 conv with ``spec``'s stride reads for ``size`` output
    pixels, in the spec's layout."""
    spatial = tuple(slice(0, o * s, s) for o, s in zip(size, spec.stride))
    return (slice(None), *spatial, slice(None)) if spec.channels_last else (slice(None), slice(None), *spatial)
