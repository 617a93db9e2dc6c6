"""Gradients of every op (``fastconv.grad``), named and ordered as ``torch.nn.grad``.

conv.py: convolutions and transposed convolutions (input, weight, bias; a conv's three in one call,
conv<N>d_backward, as aten.convolution_backward);
pool.py: max/avg/Lp, adaptive and global pooling, spatial pyramid pooling, unfold/fold
and max_unpool. Each accepts every argument of its forward op; see ../shared/API.md
("Gradients").
"""

from . import conv as _conv
from . import pool as _pool
from .conv import *  # noqa: F403
from .pool import *  # noqa: F403

__all__ = _conv.__all__ + _pool.__all__
