"""fastconv: hand-written convolution and pooling kernels for NumPy and CUDA arrays.

``import fastconv as F`` stands in for ``torch.nn.functional`` on NumPy arrays (CPU,
Numba-parallel kernels) and CUDA arrays (numba.cuda kernels).
"""

from . import arithmetic, filters
from ._algorithms import algorithms
from ._cache import clear_caches
from ._workspace import set_workspace_limit, workspace_limit
from .arithmetic import *  # noqa: F403  (conv_output_shape, conv_flops, conv_params, receptive_field)
from .ops import pooling as _pooling
from .ops import windows as _windows
from .ops.conv import (
    conv1d,
    conv2d,
    conv3d,
    conv_transpose1d,
    conv_transpose2d,
    conv_transpose3d,
    depthwise_conv2d,
    pointwise_conv2d,
    separable_conv2d,
)
from .ops.pooling import *  # noqa: F403  (max/avg/lp/adaptive/global/spatial-pyramid pooling)
from .ops.windows import *  # noqa: F403  (unfold, fold, max_unpool*, fractional_max_pool2d)
from .spec import AdaptivePoolSpec, ConvSpec, PoolSpec

__version__ = "0.1.0"

__all__ = [
    "filters",
    "AdaptivePoolSpec",
    "ConvSpec",
    "PoolSpec",
    "algorithms",
    "clear_caches",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "depthwise_conv2d",
    "pointwise_conv2d",
    "separable_conv2d",
    "set_workspace_limit",
    "workspace_limit",
]
__all__ += arithmetic.__all__ + _pooling.__all__ + _windows.__all__


def __getattr__(name):
    """``fastconv.grad`` loads on first use: its kernels' helpers import Numba, which
    ``import fastconv`` leaves for the first kernel call."""
    if name == "grad":
        import importlib

        return importlib.import_module(".grad", __name__)
    raise AttributeError(f"module 'fastconv' has no attribute {name!r}")
