"""fastconv on PyTorch tensors (needs torch; ``import fastconv`` never imports this).

``fastconv.torch.conv2d(...)`` and every other functional op: the NumPy ops' arguments,
torch tensors in and out, registered as ``torch.ops.fastconv.*`` with fake kernels and
autograd through fastconv.grad, so ``torch.compile(fullgraph=True)`` traces them.
``fastconv.torch.nn``: torch.nn's conv and pooling layers on fastconv's kernels;
``fastconv.torch.convert(module)`` swaps them into an existing model.

Importing it holds PyTorch's intra-op thread pool to one thread, so that fastconv's
runtime owns the cores and the two pools never fight over them (``_threads``; README,
"Threads"), unless ``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS`` is set.
"""

from . import _threads, nn  # noqa: F401  (_threads: PyTorch on one intra-op thread, see its docstring)
from .convert import convert
from .functional import *  # noqa: F403
from .functional import __all__ as _functional

__all__ = ["convert", "nn", *_functional]
