"""Plain-NumPy float64 reference implementations: the ground truth for the tests.

Independent of the rest of fastconv (imports nothing outside this package) and of torch.
"""

from .conv import activate, conv, conv_transpose, depthwise_conv, pointwise_conv, separable_conv, transpose_padding
from .pooling import (
                   adaptive_avg_pool,
                   adaptive_bounds,
                   adaptive_max_pool,
                   avg_pool,
                   global_avg_pool,
                   global_max_pool,
                   lp_pool,
                   max_pool,
                   pick_index,
                   pool_geometry,
                   spatial_pyramid_pool,
)
from .window import ntuple, pad, resolve_padding, sliding_windows
from .windows import fold, fractional_intervals, fractional_max_pool2d, max_unpool, unfold

__all__ = [
    "activate", "adaptive_avg_pool", "adaptive_bounds", "adaptive_max_pool", "avg_pool",
    "conv", "conv_transpose", "depthwise_conv", "fold", "fractional_intervals",
    "fractional_max_pool2d", "global_avg_pool", "global_max_pool", "lp_pool", "max_pool",
    "max_unpool", "ntuple", "pad", "pick_index", "pointwise_conv", "pool_geometry",
    "resolve_padding", "separable_conv", "sliding_windows", "spatial_pyramid_pool",
    "transpose_padding", "unfold",
]
