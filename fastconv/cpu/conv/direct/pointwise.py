"""The register tiles of channels-last 1x1 convolutions: one-row tiles whose pixels are C
input elements apart (:func:`strided_shape`), run by conv/direct/pointwise_rows.py and by
the fused separable kernel (conv/separable/fused.py).

Measured on MobileNetV2/ResNet-50 1x1 layers channels-last, single thread: reading the
input in place with these tiles took 0.46-1.12x the time of packing it row-planar for
the direct kernel's tiles (geometric mean 0.75-0.83); channels-first input stays on the
row-planar path (each reduction step a plane apart: 1.1-1.3x slower in place).
"""

from __future__ import annotations

from ..._jit import simd
from .tiled import TileShape


def strided_shape(shape: TileShape) -> TileShape:
    """One-row tiles narrow enough that the accumulators, the weight vectors and every
    pixel's broadcast fit the vector registers together: LLVM schedules a strided tile's
    loads ahead of its FMAs (9 pixels x 2 vectors on AVX-512; 14 spilled and ran 2x slower)."""
    n_vec = shape.n_vec
    p = (simd().registers - n_vec - 1) // (n_vec + 1)
    widths = sorted({p, (p + 1) // 2, 4, 2, 1}, reverse=True)
    return shape._replace(shapes=tuple((1, w) for w in widths if w <= p))
