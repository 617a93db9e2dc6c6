"""The one place that sets numba.cuda options, and the cache of kernel specialisations.

Every GPU kernel is built by a *factory* decorated with :func:`specialised`: the factory
takes only static parameters (kernel size, stride/dilation where they size a shared
tile, tile shape, dtype, layout), closes over them so Numba sees compile-time
constants (shared-array sizes, fully unrolled register tiles), and returns a
:class:`Kernel`. The factory is memoized on those parameters, so each specialisation
is built once per process; its name spells them, e.g.
``conv2d_direct_nchw_k3x3_s1x1_d1x1_t8x16x32_c8_f32``.

Options, set here and nowhere else:

- an explicit signature per kernel (``Kernel.argtypes``): a call with other types
  fails loudly instead of compiling a silent new specialisation;
- ``fastmath=False``: IEEE arithmetic, NaN propagates (max pooling must see NaN), no
  flush-to-zero, no reassociation;
- ``launch_bounds=(threads,)`` -- or ``(threads, min_blocks)`` where a factory asks for
  several resident blocks per SM -- on a real GPU: ptxas allocates registers for the
  block size the kernel is launched with (the simulator takes no such option);
- no on-disk cache: the kernels are closures over their static parameters, and
  Numba's cache cannot key closures; the in-process cache below is what is kept;
- every launch is queued on the caller's current stream (:mod:`fastconv.cuda.streams`).

:func:`compile_options` is also what ``tools/gpu_static.py`` passes to
``numba.cuda.compile_ptx``, so the PTX it checks is the PTX that runs.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
from numba import config, cuda, types

from .streams import current_stream

SIMULATOR = bool(config.ENABLE_CUDASIM)

# float16 is stored as float16 and computed in float32; float64 computes in float64.
# Integer dtypes (max pooling only) are stored and computed in themselves, exactly.
_INTS = ("int8", "uint8", "int16", "int32", "int64")
STORE = {"float16": types.float16, "float32": types.float32, "float64": types.float64}
STORE.update({name: getattr(types, name) for name in _INTS})
WORK = {"float16": types.float32, "float32": types.float32, "float64": types.float64}
WORK.update({name: getattr(types, name) for name in _INTS})
WORK_NP = {"float16": np.float32, "float32": np.float32, "float64": np.float64}
WORK_NP.update({name: getattr(np, name) for name in _INTS})
SUFFIX = {"float16": "f16", "float32": "f32", "float64": "f64", "int8": "i8", "uint8": "u8", "int16": "i16",
          "int32": "i32", "int64": "i64"}


def lowest(dtype: str):
    """What a max starts from (and a window with no tap in the input gives): -inf, or an
    integer dtype's minimum."""
    return int(np.iinfo(dtype).min) if dtype in _INTS else -math.inf

i64 = types.int64
f32 = types.float32


def array(dtype, ndim: int):
    """The Numba type of a C-contiguous device array of ``dtype`` (a name or a Numba type)."""
    if isinstance(dtype, str):
        dtype = STORE[dtype]
    return types.Array(dtype, ndim, "C")


def layout_name(nd: int, channels_last: bool) -> str:
    return {1: ("ncw", "nwc"), 2: ("nchw", "nhwc"), 3: ("ncdhw", "ndhwc")}[nd][int(channels_last)]


def dims(values) -> str:
    return "x".join(str(v) for v in values)


def compile_options(kernel: Kernel) -> dict:
    """Options for cuda.jit / compile_ptx on real hardware."""
    bounds = (kernel.threads, kernel.min_blocks) if kernel.min_blocks > 1 else (kernel.threads,)
    return dict(fastmath=False, launch_bounds=bounds)


class Kernel:
    """One specialisation: its name, Python source function, signature, block size,
    static shared memory and (optionally) the resident blocks per SM its registers
    must allow. ``kernel[blocks](*args)`` launches it on the current stream."""

    def __init__(self, name: str, py_func: Callable, argtypes: tuple, threads: int, shared_bytes: int,
                 min_blocks: int = 1):
        py_func.__name__ = py_func.__qualname__ = name
        self.name = name
        self.py_func = py_func
        self.argtypes = tuple(argtypes)
        self.threads = int(threads)
        self.shared_bytes = int(shared_bytes)
        self.min_blocks = int(min_blocks)

    @functools.cached_property
    def dispatcher(self):
        if SIMULATOR:
            return cuda.jit(self.argtypes_signature(), fastmath=False)(self.py_func)
        return cuda.jit(self.argtypes_signature(), **compile_options(self))(self.py_func)

    def argtypes_signature(self):
        return types.void(*self.argtypes)

    def __getitem__(self, grid):
        """``kernel[blocks]`` or ``kernel[blocks, threads]`` (threads <= the launch bound), configured
        for the current stream."""
        blocks, threads = grid if isinstance(grid, tuple) else (grid, self.threads)
        if blocks < 1 or not 1 <= threads <= self.threads:
            raise ValueError(f"{self.name}: launch with {blocks} blocks of {threads} threads")
        return self.dispatcher[int(blocks), int(threads), current_stream()]

    def __repr__(self):
        return f"Kernel({self.name}, {self.threads} threads, {self.shared_bytes} B shared)"


BUILT: dict[str, Kernel] = {}


def specialised(factory):
    """Memoize a kernel factory on its static parameters (all hashable)."""

    @functools.cache
    @functools.wraps(factory)
    def build(*key):
        kernel = factory(*key)
        BUILT[kernel.name] = kernel
        return kernel

    return build


class Launch:
    """A kernel and its grid, as a host wrapper launches it (also read by tools/).

    ``threads`` may be below the kernel's launch bound only for grid-stride kernels,
    whose work does not depend on the block size (small inputs launch small blocks).
    """

    def __init__(self, kernel: Kernel, blocks: int, what: str = "", threads: int | None = None):
        self.kernel = kernel
        self.blocks = max(int(blocks), 1)
        self.threads = kernel.threads if threads is None else int(threads)
        self.what = what

    def __call__(self, *args):
        self.kernel[self.blocks, self.threads](*args)

    def __repr__(self):
        return f"Launch({self.kernel.name}, blocks={self.blocks}, threads={self.threads})"


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def grid_stride_blocks(total: int, threads: int, cap: int = 1 << 16) -> int:
    """Blocks for an elementwise grid-stride kernel over ``total`` items."""
    return max(1, min(ceil_div(total, threads), cap))


def elementwise(kernel: Kernel, total: int, what: str = "") -> Launch:
    """A grid-stride launch over ``total`` items; tiny inputs get one small block."""
    threads = min(kernel.threads, max(32, ceil_div(total, 32) * 32))
    return Launch(kernel, grid_stride_blocks(total, threads), what, threads)


def pow2_at_least(n: int, cap: int) -> int:
    """The smallest power of two >= n, at most cap: tile extents follow the problem's size."""
    p = 1
    while p < n and p < cap:
        p *= 2
    return p
