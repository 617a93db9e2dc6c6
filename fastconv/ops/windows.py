"""Window ops shaped like torch.nn.functional: unfold (im2col), fold (col2im),
max_unpool1d/2d/3d and fractional_max_pool2d.

Argument order follows API.md. Note that it differs from PyTorch for ``unfold`` and
``fold``, whose trailing positional arguments in PyTorch are ``dilation, padding,
stride``: pass them by keyword when porting code.

Dimensionality: ``unfold`` takes it from ``kernel_size`` (or ``stride``/``dilation``)
when that is a sequence, else from the input (``input.ndim - 2``); an unbatched input
therefore needs a tuple ``kernel_size``. ``fold`` takes it from ``output_size`` or
``kernel_size`` when either is a sequence, else 2 (as PyTorch).

CUDA arrays are accepted and returned as the same kind of array, but run on the CPU
kernels (copied to the host and back): there are no GPU kernels for these ops yet.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .._args import int_tuple, padding_pairs, resolve_pads, window_out_size
from .._arrays import check_float, check_pool_dtype, is_cuda_array, shape_of, to_host
from ._call import batched, execute

__all__ = [
    "fold",
    "fractional_max_pool2d",
    "max_unpool1d",
    "max_unpool2d",
    "max_unpool3d",
    "unfold",
]

from ..spec import names
from ..spec.names import AXES as _AXES


@dataclass(frozen=True)
class WindowSpec:
    """One window-op call, resolved.

    ``image`` is the large spatial size and ``grid`` the window-position grid:
    unfold image -> grid, fold grid -> image, max_unpool grid -> image,
    fractional_max_pool2d image -> grid. ``pads`` are (begin, end) per spatial dim.
    """

    op: str
    nd: int
    batch: int
    channels: int
    image: tuple
    grid: tuple
    kernel: tuple
    stride: tuple
    dilation: tuple
    pads: tuple
    return_indices: bool = False
    dtype: str = "float32"

    @property
    def taps(self) -> int:
        return math.prod(self.kernel)

    @property
    def input_shape(self) -> tuple:
        if self.op == "unfold" or self.op.startswith("fractional"):
            return (self.batch, self.channels, *self.image)
        if self.op == "fold":
            return (self.batch, self.channels * self.taps, math.prod(self.grid))
        return (self.batch, self.channels, *self.grid)

    @property
    def output_shape(self) -> tuple:
        if self.op == "unfold":
            return (self.batch, self.channels * self.taps, math.prod(self.grid))
        if self.op.startswith("fractional"):
            return (self.batch, self.channels, *self.grid)
        return (self.batch, self.channels, *self.image)

    def name(self) -> str:
        axes = _AXES[self.nd]
        parts = [f"{self.op}{'' if self.op[-2:] in ('1d', '2d', '3d') else f'{self.nd}d'}",
                 f"mb{self.batch}", f"c{self.channels}",
                 "".join(f"i{a}{n}" for a, n in zip(axes, self.image)),
                 "".join(f"g{a}{n}" for a, n in zip(axes, self.grid)),
                 "".join(f"k{a}{n}" for a, n in zip(axes, self.kernel))]
        if any(s != 1 for s in self.stride):
            parts.append("s" + "".join(f"{a}{n}" for a, n in zip(axes, self.stride)))
        if any(d != 1 for d in self.dilation):
            parts.append("d" + "".join(f"{a}{n}" for a, n in zip(axes, self.dilation)))
        if any(p != (0, 0) for p in self.pads):
            parts.append("p" + "".join(
                f"{a}{b}" if b == e else f"{a}{b}.{e}" for a, (b, e) in zip(axes, self.pads)))
        if self.dtype != "float32":
            parts.append(names.DTYPE_TOKENS[self.dtype])
        return "_".join(parts)

    __str__ = name


# ---- shared front-end pieces -----------------------------------------------------------

def _check_array(op, name, x):
    if is_cuda_array(x) and not isinstance(x, np.ndarray):
        raise TypeError(
            f"{op}: {name} is a CUDA array, but {op} has CPU kernels only (GPU kernels cover the "
            f"convolution and pooling ops); pass a numpy.ndarray"
        )
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{op}: {name} must be a numpy.ndarray, got {type(x).__name__}")


def _batched(op, name, x, nd, layout):
    """(batched input, was_unbatched) after checking the array kind and its ndim."""
    _check_array(op, name, x)
    shape = tuple(shape_of(x))
    if len(shape) not in (nd + 1, nd + 2):
        raise ValueError(
            f"{op}: {name} must have {nd + 2} dims {layout} or {nd + 1} (unbatched), got shape {shape}"
        )
    _, xb, unbatched = batched(op, x, nd, None)
    return xb, unbatched


def _is_seq(value):
    return isinstance(value, Sequence) and not isinstance(value, str)


def _run(family, spec, x_user, arrays, unbatched, empty):
    return execute(family, "cpu", spec, "auto", x_user, arrays, unbatched, empty)


def _spatial(op, name, image):
    if any(n < 1 for n in image):
        raise ValueError(f"{op}: {name} spatial size {tuple(image)} has an empty dimension")


# ---- unfold / fold -------------------------------------------------------------------

def _unfold_nd(x, kernel_size, stride, dilation):
    for value in (kernel_size, stride, dilation):
        if _is_seq(value) and 1 <= len(value) <= 3:
            return len(value)
    _check_array("unfold", "input", x)
    nd = len(shape_of(x)) - 2
    if nd not in (1, 2, 3):
        raise ValueError(
            f"unfold: input must have 3, 4 or 5 dims (N, C, *spatial), got shape {tuple(shape_of(x))}; "
            f"for unbatched input give kernel_size as a tuple of 1 to 3 ints"
        )
    return nd


def unfold(input, kernel_size, stride=1, padding=0, dilation=1):
    """Sliding local blocks (im2col): (N, C, *spatial) -> (N, C * prod(kernel_size), L).

    Row ``c * prod(kernel_size) + tap`` (taps row-major over the kernel dims) holds
    channel ``c`` under that tap for each of the L blocks (row-major over the block
    grid), exactly as ``torch.nn.functional.unfold``; 1-D, 2-D and 3-D. Padding cells
    read as zero. ``padding``: an int, one int per dim, (begin, end) pairs, "valid",
    "same" or "full".

    >>> import numpy as np, fastconv as F
    >>> F.unfold(np.arange(4.0).reshape(1, 1, 4), 2)
    array([[[0., 1., 2.],
            [1., 2., 3.]]])
    """
    op = "unfold"
    nd = _unfold_nd(input, kernel_size, stride, dilation)
    x, unbatched = _batched(op, "input", input, nd, ("N", "C", *(a.upper() for a in _AXES[nd])))
    dtype = check_float(op, "input", input)
    kernel = int_tuple(op, "kernel_size", kernel_size, nd)
    stride = int_tuple(op, "stride", stride, nd)
    dilation = int_tuple(op, "dilation", dilation, nd)
    shape = tuple(shape_of(x))
    image = tuple(int(n) for n in shape[2:])
    _spatial(op, "input", image)
    pads = resolve_pads(op, padding, image, kernel, stride, dilation)
    grid = window_out_size(op, image, kernel, stride, dilation, pads)
    spec = WindowSpec(op, nd, int(shape[0]), int(shape[1]), image, grid, kernel, stride,
                      dilation, pads, dtype=dtype.name)
    return _run("unfold", spec, input, (x,), unbatched, lambda: np.empty(spec.output_shape, dtype))


def fold(columns, output_size, kernel_size, stride=1, padding=0, dilation=1):
    """Sum sliding local blocks back into an image (col2im): (N, C * prod(kernel_size), L)
    -> (N, C, *output_size); entries landing on one pixel add up, as
    ``torch.nn.functional.fold``. The inverse layout of :func:`unfold`; padding cells
    are dropped. 1-D, 2-D and 3-D (the dimensionality is ``len(output_size)`` or
    ``len(kernel_size)``, else 2).

    >>> import numpy as np, fastconv as F
    >>> F.fold(np.ones((1, 2, 3)), (4,), (2,))[0, 0]
    array([1., 2., 2., 1.])
    """
    op = "fold"
    nd = next((len(v) for v in (output_size, kernel_size) if _is_seq(v)), 2)
    if nd not in (1, 2, 3):
        raise ValueError(f"fold: output_size={output_size!r} must have 1, 2 or 3 entries")
    cols, unbatched = _batched(op, "columns", columns, 1, "(N, C*prod(kernel_size), L)")
    dtype = check_float(op, "columns", columns)
    image = int_tuple(op, "output_size", output_size, nd)
    kernel = int_tuple(op, "kernel_size", kernel_size, nd)
    stride = int_tuple(op, "stride", stride, nd)
    dilation = int_tuple(op, "dilation", dilation, nd)
    pads = resolve_pads(op, padding, image, kernel, stride, dilation)
    grid = window_out_size(op, image, kernel, stride, dilation, pads)
    batch, rows, length = (int(v) for v in shape_of(cols))
    taps = math.prod(kernel)
    if rows % taps:
        raise ValueError(
            f"fold: columns.shape[{1 - unbatched}]={rows} is not divisible by "
            f"prod(kernel_size)={taps} (kernel_size {kernel})"
        )
    if length != math.prod(grid):
        raise ValueError(
            f"fold: columns.shape[{2 - unbatched}]={length} blocks, but output_size {image}, "
            f"kernel_size {kernel}, stride {stride}, padding {pads} and dilation {dilation} "
            f"give {' * '.join(map(str, grid))} = {math.prod(grid)} blocks"
        )
    spec = WindowSpec(op, nd, batch, rows // taps, image, grid, kernel, stride, dilation, pads,
                      dtype=dtype.name)
    return _run("fold", spec, columns, (cols,), unbatched, lambda: np.zeros(spec.output_shape, dtype))


# ---- max_unpool ----------------------------------------------------------------------

def _unpool_pads(op, padding, grid, kernel, stride):
    pads = padding_pairs(op, padding, len(grid))
    if pads == "valid":
        return ((0, 0),) * len(grid)
    if pads == "full":
        return tuple((k - 1, k - 1) for k in kernel)
    if pads == "same":  # the inverse of SAME pooling of an input of size grid * stride
        same = []
        for k, s in zip(kernel, stride):
            total = k - s
            same.append((total // 2, total - total // 2) if total >= 0 else (0, total))
        return tuple(same)
    return pads


def unpool_spec(op, nd, input, indices, kernel_size, stride, padding, output_size):
    """(spec, batched input, batched int indices, was_unbatched, dtype) of a max_unpool call,
    after every check but the indices' range (the kernel's); shared with its gradient."""
    layout = ("N", "C", *(a.upper() for a in _AXES[nd]))
    x, unbatched = _batched(op, "input", input, nd, layout)
    dtype = check_pool_dtype(op, "input", input, integers=True)
    _check_array(op, "indices", indices)
    ind = to_host(indices)
    if ind.dtype.kind not in "iu":
        raise TypeError(f"{op}: indices has dtype {ind.dtype}; expected an integer dtype (int64, "
                        f"as max_pool{nd}d(..., return_indices=True) gives)")
    if tuple(ind.shape) != tuple(shape_of(input)):
        raise ValueError(f"{op}: indices has shape {tuple(ind.shape)} but input has shape "
                         f"{tuple(shape_of(input))}; they must match")
    if unbatched:
        ind = ind.reshape((1, *ind.shape))
    kernel = int_tuple(op, "kernel_size", kernel_size, nd)
    empty_stride = stride is None or (_is_seq(stride) and len(stride) == 0)
    stride = kernel if empty_stride else int_tuple(op, "stride", stride, nd)
    shape = tuple(int(v) for v in shape_of(x))
    grid = shape[2:]
    pads = _unpool_pads(op, padding, grid, kernel, stride)
    default = tuple((g - 1) * s + k - b - e for g, s, k, (b, e) in zip(grid, stride, kernel, pads))
    if output_size is None:
        image = default
        if any(o < 0 for o in image):
            raise ValueError(f"{op}: padding {pads} leaves a negative output size {image} "
                             f"(input {grid}, kernel_size {kernel}, stride {stride})")
    else:
        size = output_size
        if _is_seq(size) and len(size) == nd + 2:
            size = tuple(size)[2:]
        if _is_seq(size) and len(size) not in (1, nd):
            raise ValueError(f"{op}: output_size={output_size!r} must have {nd} or {nd + 2} entries")
        image = int_tuple(op, "output_size", size, nd, minimum=0)
        for axis, (o, d, s) in enumerate(zip(image, default, stride)):
            if not d - s < o < d + s:
                raise ValueError(
                    f"{op}: output_size={output_size!r} is invalid in spatial dim {axis}: expected a "
                    f"size strictly between {d - s} and {d + s} (default {d})"
                )
    spec = WindowSpec(op, nd, shape[0], shape[1], image, grid, kernel, stride, (1,) * nd, pads,
                      dtype=dtype.name)
    return spec, x, ind, unbatched, dtype


def _max_unpool(op, nd, input, indices, kernel_size, stride, padding, output_size):
    spec, x, ind, unbatched, dtype = unpool_spec(op, nd, input, indices, kernel_size, stride, padding, output_size)
    return _run("max_unpool", spec, input, (x, ind), unbatched,
                lambda: np.zeros(spec.output_shape, dtype))


def max_unpool1d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    """Partial inverse of max_pool1d: zeros with ``input`` written at ``indices``.

    ``indices`` are flat over each channel's output plane (as max_pool1d returns them);
    one outside the plane raises ValueError. Output size (in - 1) * stride + kernel -
    begin - end unless ``output_size`` (nd or nd + 2 entries) picks another.
    ``padding`` is the pooling's: int, tuple, (begin, end) pairs, "valid", "full"
    (kernel - 1 each side) or "same" (output in * stride).
    """
    return _max_unpool("max_unpool1d", 1, input, indices, kernel_size, stride, padding, output_size)


def max_unpool2d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    """Partial inverse of max_pool2d; indices flat over each (H, W) plane. See max_unpool1d."""
    return _max_unpool("max_unpool2d", 2, input, indices, kernel_size, stride, padding, output_size)


def max_unpool3d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    """Partial inverse of max_pool3d; indices flat over each (D, H, W) volume. See max_unpool1d."""
    return _max_unpool("max_unpool3d", 3, input, indices, kernel_size, stride, padding, output_size)


# ---- fractional max pooling ------------------------------------------------------------

def fractional_starts(samples, in_size: int, out_size: int, kernel: int) -> np.ndarray:
    """Window starts (..., out_size) int64, ATen's generate_intervals, vectorised.

    alpha = (in - k) / (out - 1); start_i = int((i + u) * alpha) - int(u * alpha) for
    i < out - 1, and the last start is in - k. All arithmetic in ``samples``' float dtype,
    as ATen does in the input's scalar type (float16 rounds after every operation).
    """
    u = np.asarray(samples)
    t = u.dtype.type
    starts = np.empty(u.shape + (out_size,), np.int64)
    if out_size > 1:
        alpha = t(in_size - kernel) / t(out_size - 1)
        i = np.arange(out_size - 1).astype(u.dtype)
        with np.errstate(invalid="ignore", over="ignore"):
            first = (u * alpha).astype(np.int64)
            starts[..., :-1] = ((i + u[..., None]) * alpha).astype(np.int64) - first[..., None]
    if out_size > 0:
        starts[..., -1] = in_size - kernel
    return starts


def _ratio(op, output_ratio):
    if isinstance(output_ratio, numbers.Real) and not isinstance(output_ratio, bool):
        ratio = (float(output_ratio),) * 2
    elif _is_seq(output_ratio) and len(output_ratio) in (1, 2) and all(
            isinstance(r, numbers.Real) and not isinstance(r, bool) for r in output_ratio):
        ratio = tuple(float(r) for r in output_ratio) * (3 - len(output_ratio))
        ratio = ratio[:2]
    else:
        raise ValueError(f"{op}: output_ratio={output_ratio!r} must be a number or a pair of numbers")
    if not all(0 < r <= 1 for r in ratio):
        raise ValueError(f"{op}: output_ratio={output_ratio!r} must lie in (0, 1]")
    return ratio


def fractional_max_pool2d(input, kernel_size, output_size=None, output_ratio=None,
                          return_indices=False, seed=None, *, _random_samples=None):
    """Fractional max pooling (Graham, 2014) with PyTorch's window rule.

    Window starts per plane follow ATen's generate_intervals from two samples u in
    [0, 1) per (image, channel): ``[..., 0]`` drives the width, ``[..., 1]`` the height.
    The samples are ``np.random.default_rng(seed).random((N, C, 2))`` cast to the input
    dtype, or ``_random_samples`` (shape (N', C, 2), N' >= N), as PyTorch's keyword, so
    the same samples give PyTorch's result. ``output_size`` wins over ``output_ratio``
    (size = int(in * ratio)). ``return_indices=True`` returns (values, int64 indices
    flat over each (H, W) plane). A NaN in a window wins (the last one).
    """
    op = "fractional_max_pool2d"
    x, unbatched = _batched(op, "input", input, 2, ("N", "C", "H", "W"))
    dtype = check_float(op, "input", input)
    kernel = int_tuple(op, "kernel_size", kernel_size, 2)
    batch, channels, h, w = (int(v) for v in shape_of(x))
    _spatial(op, "input", (h, w))
    if output_size is not None:
        grid = int_tuple(op, "output_size", output_size, 2, minimum=0)
    elif output_ratio is not None:
        ratio = _ratio(op, output_ratio)
        grid = (int(h * ratio[0]), int(w * ratio[1]))
    else:
        raise ValueError(f"{op}: give output_size or output_ratio (both are None)")
    for axis, (o, k, n) in enumerate(zip(grid, kernel, (h, w))):
        if o + k - 1 > n:
            raise ValueError(
                f"{op}: kernel_size {kernel} and output size {grid} do not fit input {(h, w)} in "
                f"spatial dim {axis}: expected output + kernel - 1 <= {n}"
            )
    if _random_samples is not None:
        if seed is not None:
            raise ValueError(f"{op}: give seed or _random_samples, not both")
        samples = np.asarray(to_host(_random_samples))
        if samples.ndim != 3 or samples.shape[0] < batch or samples.shape[1:] != (channels, 2):
            raise ValueError(
                f"{op}: _random_samples has shape {samples.shape}; expected (N, C, 2) = "
                f"({batch}, {channels}, 2) (a larger N is allowed)"
            )
        if samples.dtype.kind != "f":
            raise TypeError(f"{op}: _random_samples has dtype {samples.dtype}; expected a float dtype")
        samples = samples[:batch].astype(dtype)
        if samples.size and not (np.all(samples >= 0) and np.all(samples <= 1)):
            raise ValueError(f"{op}: _random_samples must lie in [0, 1]")
    else:
        try:
            rng = np.random.default_rng(seed)
        except (ValueError, TypeError) as e:
            raise type(e)(f"{op}: seed={seed!r} must be None, a non-negative int or a NumPy seed "
                          f"({e})") from None
        samples = rng.random((batch, channels, 2)).astype(dtype)
    starts_w = fractional_starts(samples[..., 0], w, grid[1], kernel[1])
    starts_h = fractional_starts(samples[..., 1], h, grid[0], kernel[0])
    for name, starts, n, k in (("height", starts_h, h, kernel[0]), ("width", starts_w, w, kernel[1])):
        if starts.size and (starts.min() < 0 or starts.max() > n - k):
            raise ValueError(f"{op}: _random_samples give {name} windows outside the input "
                             f"(starts must lie in [0, {n - k}])")
    spec = WindowSpec(op, 2, batch, channels, (h, w), grid, kernel, (1, 1), (1, 1), ((0, 0),) * 2,
                      return_indices=bool(return_indices), dtype=dtype.name)

    def empty():
        values = np.empty(spec.output_shape, dtype)
        return (values, np.empty(spec.output_shape, np.int64)) if return_indices else values

    return _run("fractional_max_pool", spec, input, (x, starts_h, starts_w), unbatched, empty)
