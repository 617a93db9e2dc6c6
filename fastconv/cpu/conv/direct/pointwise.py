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

WIDE_VECTORS = 4  # accumulator vectors per pixel of wide_strided_shape's tiles
WIDE_PIXELS = 6  # ... and its widest tile


def strided_shape(shape: TileShape) -> TileShape:
    """One-row tiles narrow enough that the accumulators, the weight vectors and every
    pixel's broadcast fit the vector registers together: LLVM schedules a strided tile's
    loads ahead of its FMAs (9 pixels x 2 vectors on AVX-512; 14 spilled and ran 2x slower)."""
    n_vec = shape.n_vec
    p = (simd().registers - n_vec - 1) // (n_vec + 1)
    widths = sorted({p, (p + 1) // 2, 4, 2, 1}, reverse=True)
    return shape._replace(shapes=tuple((1, w) for w in widths if w <= p))


def wide_strided_shape(shape: TileShape) -> TileShape | None:
    """Tiles of WIDE_VECTORS vectors of channels by up to WIDE_PIXELS pixels where the target has
    32 vector registers, else None: per reduction step 24 FMAs for 10 loads (strided_shape's 9x2:
    18 for 11), and each input pixel read once per 64 channels, not 32. The broadcasts no longer
    all fit beside the accumulators; LLVM keeps them few. U-Net's stacked 2x2 stride 2 channels-last
    (1024->2048 at 28x28, 512->1024 at 56x56, 256->512 at 112x112; one thread, in-process A/B, host
    loaded, medians of 15-40 calls per round): 6 pixels 0.76-1.00x the 9x2 tiles' time, 5 pixels 0.76-1.12x,
    7 pixels 0.98-1.05x."""
    if simd().registers < 32:
        return None
    widths = sorted({WIDE_PIXELS, (WIDE_PIXELS + 1) // 2, 4, 2, 1}, reverse=True)
    return shape._replace(shapes=tuple((1, w) for w in widths), v=WIDE_VECTORS * shape.lanes)
