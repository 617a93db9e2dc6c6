"""fastconv.dask: convolution and pooling on dask arrays larger than memory.

Every op takes a ``dask.array.Array`` input (NumPy weights and biases) and the same
arguments as the in-memory op of the same name, and returns a lazy dask array with
known chunks. Each output chunk is one task that runs the in-memory fastconv op on
exactly the input region the chunk reads, fetched from as many input chunks as its halo
reaches; padding and padding modes apply at the array's outer edges only. With the same
``algo`` and thread count a chunked result equals the in-memory one bitwise
(``global_avg_pool`` agrees to rounding: it is a chunked sum). A single-channel 2-D
filter with ``algo="auto"`` runs the depthwise kernel over row bands of each chunk
(conv.py, ``_Banded``), bitwise the in-memory ``algo="direct"`` result.

Threads: each task runs fastconv's Numba kernels on 1 thread by default, because Dask's
workers are the parallelism. ``set_threads(n)`` changes the default for arrays built
afterwards, and every op takes ``threads=`` (``None``: Numba's whole pool). Use Dask's
threaded scheduler on one machine and dask.distributed across machines; the README's
"Larger than memory" section has the measurements.

Needs ``dask[array]`` (``pip install fastconv[dask]``, which also brings
``distributed``); ``import fastconv`` never imports this package.
"""

from __future__ import annotations

try:
    import dask.array  # noqa: F401
except ImportError as err:  # pragma: no cover - the message is the point
    raise ImportError("fastconv.dask needs dask[array]: pip install 'fastconv[dask]'") from err

from ._graph import get_threads, set_threads
from .conv import (
    conv1d,
    conv2d,
    conv3d,
    conv_transpose1d,
    conv_transpose2d,
    conv_transpose3d,
    depthwise_conv2d,
    separable_conv2d,
)
from .pool import (
    avg_pool1d,
    avg_pool2d,
    avg_pool3d,
    global_avg_pool,
    global_max_pool,
    lp_pool1d,
    lp_pool2d,
    lp_pool3d,
    max_pool1d,
    max_pool2d,
    max_pool3d,
)

__all__ = [
    "avg_pool1d", "avg_pool2d", "avg_pool3d",
    "conv1d", "conv2d", "conv3d",
    "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "depthwise_conv2d", "get_threads",
    "global_avg_pool", "global_max_pool",
    "lp_pool1d", "lp_pool2d", "lp_pool3d",
    "max_pool1d", "max_pool2d", "max_pool3d",
    "separable_conv2d", "set_threads",
]
