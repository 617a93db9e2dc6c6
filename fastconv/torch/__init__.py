"""fastconv on PyTorch tensors (needs torch; ``import fastconv`` never imports this).

``fastconv.torch.conv2d(...)`` and every other functional op: the NumPy ops' arguments,
torch tensors in and out, registered as ``torch.ops.fastconv.*`` with fake kernels and
autograd through fastconv.grad, so ``torch.compile(fullgraph=True)`` traces them.
``fastconv.torch.nn``: torch.nn's conv and pooling layers on fastconv's kernels;
``fastconv.torch.convert(module)`` swaps them into an existing model.
"""

from . import nn
from .convert import convert
from .functional import *  # noqa: F403
from .functional import __all__ as _functional

__all__ = ["convert", "nn", *_functional]
