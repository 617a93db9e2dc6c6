"""Pooling shaped like torch.nn.functional: max, average, Lp, adaptive, global and
spatial-pyramid pooling over 1-D, 2-D and 3-D inputs.

Beyond PyTorch (as ONNX allows): ``padding`` also takes per-dim ``(begin, end)`` pairs,
``"same"`` (output ``ceil(in / stride)``, the odd pad at the end), ``"valid"`` and
``"full"``; pads may be any size; ``avg_pool*`` and ``lp_pool*`` take ``dilation=`` and
``padding=``. Padded cells never win a max and never add to a sum.

Max pooling (window, adaptive, global, pyramid) also takes int8, uint8, int16, int32 and
int64 input, computed exactly in its dtype: padded cells hold the dtype's minimum, and a
window wholly in padding gives that minimum with index -1 (floats: -inf). Average and Lp
pooling of integers raise TypeError.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .._args import check_flag, is_int
from .._arrays import check_pool_dtype, like_input, shape_of, to_host
from ..spec.pool import resolve_adaptive_pool, resolve_pool
from ._call import DTYPE_NAMES, _as_kind, batched, call_plan, check_output, execute, host_key, host_plan, remember
from ._memory_format import as_channels_first, stored_channels_last

__all__ = [
    "max_pool1d", "max_pool2d", "max_pool3d",
    "avg_pool1d", "avg_pool2d", "avg_pool3d",
    "lp_pool1d", "lp_pool2d", "lp_pool3d",
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
    "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d",
    "global_avg_pool", "global_max_pool", "spatial_pyramid_pool",
]


def _input_dtype(op, mode, input):
    """The input's dtype: float16/32/64, and for max pooling the integer dtypes too (exact)."""
    if isinstance(input, np.ndarray) and input.dtype in DTYPE_NAMES:
        return input.dtype
    return check_pool_dtype(op, "input", input, integers=mode == "max")


def _empty(spec, dtype, with_indices):
    def build():
        values = np.empty(spec.output_shape, dtype)
        if with_indices:
            return values, np.empty(spec.output_shape, np.int64)
        return values

    return build


def _pool(op, mode, nd, input, kernel_size, stride, padding, dilation, ceil_mode,
          channels_last, device, *, count_include_pad=True, divisor_override=None,
          norm_type=2.0, return_indices=False):
    """Resolve a window-pooling call and run it; a NumPy call seen before runs its
    CallPlan (ops/_call.py) and nothing else. Channels-first input stored channels-last
    runs the channels-last kernels (ops/_memory_format.py)."""
    if channels_last is False and type(input) is np.ndarray and not input.flags.c_contiguous:
        stored = stored_channels_last(input, nd)
        if stored is not None:
            return as_channels_first(_pool(op, mode, nd, stored, kernel_size, stride, padding, dilation, ceil_mode,
                                           True, device, count_include_pad=count_include_pad,
                                           divisor_override=divisor_override, norm_type=norm_type,
                                           return_indices=return_indices))
    key = host_key(op, (mode, kernel_size, stride, padding, dilation, ceil_mode, channels_last, device,
                        count_include_pad, divisor_override, norm_type, return_indices), input)
    if key is not None:
        plan = call_plan(key)
        if plan is not None:
            return plan.run(input)
    channels_last = check_flag(op, "channels_last", channels_last)
    backend, x, unbatched = batched(op, input, nd, device)
    dtype = _input_dtype(op, mode, input)
    if isinstance(norm_type, bool) or not isinstance(norm_type, numbers.Real):
        raise TypeError(f"{op}: norm_type must be a positive number, got {type(norm_type).__name__}")
    if divisor_override is not None and (isinstance(divisor_override, bool)
                                         or not is_int(divisor_override)):
        raise TypeError(f"{op}: divisor_override={divisor_override!r} must be a positive int or None")
    ceil_mode = check_flag(op, "ceil_mode", ceil_mode)
    count_include_pad = check_flag(op, "count_include_pad", count_include_pad)
    return_indices = check_flag(op, "return_indices", return_indices)
    spec = resolve_pool(op, mode, nd, tuple(shape_of(x)), kernel_size, stride, padding, dilation,
                        ceil_mode=ceil_mode, count_include_pad=count_include_pad,
                        divisor_override=divisor_override, norm_type=norm_type,
                        return_indices=return_indices, channels_last=channels_last,
                        dtype=DTYPE_NAMES.get(dtype) or dtype.name)
    return _finish(key, "pool", op, backend, spec, dtype, input, x, unbatched)


def _finish(key, family, op, backend, spec, dtype, input, x, unbatched):
    """Run a resolved pooling call; remember the CallPlan of a NumPy call under ``key``."""
    empty = _empty(spec, dtype, spec.return_indices)
    if key is None or backend != "cpu":
        return execute(family, backend, spec, "auto", input, (x,), unbatched, empty)
    check_output(op, spec.output_shape, dtype, 8 * bool(spec.return_indices))
    plan = host_plan(family, spec, "auto", (x.shape if unbatched else None,), unbatched, empty)
    result = plan.run(input)
    remember(key, plan)
    return result


# ---- max -----------------------------------------------------------------------------

def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False, *, channels_last=False, device=None):
    """1-D max pooling of (N, C, W) input; ``return_indices`` adds int64 flat indices."""
    return _pool("max_pool1d", "max", 1, input, kernel_size, stride, padding, dilation,
                 ceil_mode, channels_last, device, return_indices=return_indices)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False, *, channels_last=False, device=None):
    """2-D max pooling of (N, C, H, W) input.

    >>> import numpy as np, fastconv as F
    >>> x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    >>> F.max_pool2d(x, 2)[0, 0]
    array([[ 5.,  7.],
           [13., 15.]], dtype=float32)
    """
    return _pool("max_pool2d", "max", 2, input, kernel_size, stride, padding, dilation,
                 ceil_mode, channels_last, device, return_indices=return_indices)


def max_pool3d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False, *, channels_last=False, device=None):
    """3-D max pooling of (N, C, D, H, W) input."""
    return _pool("max_pool3d", "max", 3, input, kernel_size, stride, padding, dilation,
                 ceil_mode, channels_last, device, return_indices=return_indices)


# ---- average -------------------------------------------------------------------------

def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None, *, dilation=1,
               channels_last=False, device=None):
    """1-D average pooling of (N, C, W) input."""
    return _pool("avg_pool1d", "avg", 1, input, kernel_size, stride, padding, dilation,
                 ceil_mode, channels_last, device, count_include_pad=count_include_pad,
                 divisor_override=divisor_override)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None, *, dilation=1,
               channels_last=False, device=None):
    """2-D average pooling of (N, C, H, W) input.

    ``count_include_pad=True`` divides by the taps inside the padded input, ``False``
    by the taps inside the input; ``divisor_override`` replaces both.
    """
    return _pool("avg_pool2d", "avg", 2, input, kernel_size, stride, padding, dilation,
                 ceil_mode, channels_last, device, count_include_pad=count_include_pad,
                 divisor_override=divisor_override)


def avg_pool3d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None, *, dilation=1,
               channels_last=False, device=None):
    """3-D average pooling of (N, C, D, H, W) input."""
    return _pool("avg_pool3d", "avg", 3, input, kernel_size, stride, padding, dilation,
                 ceil_mode, channels_last, device, count_include_pad=count_include_pad,
                 divisor_override=divisor_override)


# ---- Lp ------------------------------------------------------------------------------

def lp_pool1d(input, norm_type, kernel_size, stride=None, ceil_mode=False, *, padding=0,
              dilation=1, channels_last=False, device=None):
    """1-D Lp pooling: (sum over the window of |x|**p) ** (1/p), as ONNX LpPool."""
    return _pool("lp_pool1d", "lp", 1, input, kernel_size, stride, padding, dilation,
                 ceil_mode, channels_last, device, norm_type=norm_type)


def lp_pool2d(input, norm_type, kernel_size, stride=None, ceil_mode=False, *, padding=0,
              dilation=1, channels_last=False, device=None):
    """2-D Lp pooling: (sum over the window of |x|**p) ** (1/p), the Lp norm as ONNX
    LpPool defines it.

    PyTorch takes the root of ``s = sum x**p`` instead (x, not |x|): the two agree for
    even p and for non-negative input; on negative input PyTorch gives negative values
    (p = 1) or NaN (other odd or fractional p), fastconv the norm. Padded cells add nothing.
    Windows clipped by ``ceil_mode`` sum their in-input taps (PyTorch instead rescales
    them by kernel size / taps); ``norm_type=inf`` is max |x|.
    """
    return _pool("lp_pool2d", "lp", 2, input, kernel_size, stride, padding, dilation,
                 ceil_mode, channels_last, device, norm_type=norm_type)


def lp_pool3d(input, norm_type, kernel_size, stride=None, ceil_mode=False, *, padding=0,
              dilation=1, channels_last=False, device=None):
    """3-D Lp pooling: (sum over the window of |x|**p) ** (1/p), as ONNX LpPool."""
    return _pool("lp_pool3d", "lp", 3, input, kernel_size, stride, padding, dilation,
                 ceil_mode, channels_last, device, norm_type=norm_type)


# ---- adaptive ------------------------------------------------------------------------

def _adaptive(op, mode, nd, input, output_size, return_indices, channels_last, device):
    if channels_last is False and type(input) is np.ndarray and not input.flags.c_contiguous:
        stored = stored_channels_last(input, nd)  # see _pool
        if stored is not None:
            return as_channels_first(_adaptive(op, mode, nd, stored, output_size, return_indices, True, device))
    key = host_key(op, (mode, output_size, return_indices, channels_last, device), input)
    if key is not None:
        plan = call_plan(key)
        if plan is not None:
            return plan.run(input)
    channels_last = check_flag(op, "channels_last", channels_last)
    return_indices = check_flag(op, "return_indices", return_indices)
    backend, x, unbatched = batched(op, input, nd, device)
    dtype = _input_dtype(op, mode, input)
    spec = resolve_adaptive_pool(op, mode, nd, tuple(shape_of(x)), output_size, return_indices=return_indices,
                                 channels_last=channels_last, dtype=DTYPE_NAMES.get(dtype) or dtype.name)
    return _finish(key, "adaptive_pool", op, backend, spec, dtype, input, x, unbatched)


def adaptive_avg_pool1d(input, output_size, *, channels_last=False, device=None):
    """Average over windows [floor(i n / o), ceil((i+1) n / o)) of (N, C, W) input."""
    return _adaptive("adaptive_avg_pool1d", "avg", 1, input, output_size, False,
                     channels_last, device)


def adaptive_avg_pool2d(input, output_size, *, channels_last=False, device=None):
    """Adaptive average pooling of (N, C, H, W) input; ``None`` in output_size keeps a dim."""
    return _adaptive("adaptive_avg_pool2d", "avg", 2, input, output_size, False,
                     channels_last, device)


def adaptive_avg_pool3d(input, output_size, *, channels_last=False, device=None):
    """Adaptive average pooling of (N, C, D, H, W) input."""
    return _adaptive("adaptive_avg_pool3d", "avg", 3, input, output_size, False,
                     channels_last, device)


def adaptive_max_pool1d(input, output_size, return_indices=False, *, channels_last=False,
                        device=None):
    """Adaptive max pooling of (N, C, W) input."""
    return _adaptive("adaptive_max_pool1d", "max", 1, input, output_size, return_indices,
                     channels_last, device)


def adaptive_max_pool2d(input, output_size, return_indices=False, *, channels_last=False,
                        device=None):
    """Adaptive max pooling of (N, C, H, W) input."""
    return _adaptive("adaptive_max_pool2d", "max", 2, input, output_size, return_indices,
                     channels_last, device)


def adaptive_max_pool3d(input, output_size, return_indices=False, *, channels_last=False,
                        device=None):
    """Adaptive max pooling of (N, C, D, H, W) input."""
    return _adaptive("adaptive_max_pool3d", "max", 3, input, output_size, return_indices,
                     channels_last, device)


# ---- global and pyramid --------------------------------------------------------------

def _spatial_dims(op, input) -> int:
    """Spatial dims of a batched (N, C, *spatial) input with 1 to 3 spatial dims."""
    shape = shape_of(input)
    if len(shape) not in (3, 4, 5):
        raise ValueError(
            f"{op}: input must have 3, 4 or 5 dims (N, C, *spatial) with 1 to 3 spatial "
            f"dims, got shape {tuple(shape)}"
        )
    return len(shape) - 2


def global_avg_pool(input, *, channels_last=False, device=None):
    """Mean over every spatial dim of a batched input, keeping them as size 1: (N, C, 1, ...)."""
    op = "global_avg_pool"
    nd = _spatial_dims(op, input)
    return _adaptive(op, "avg", nd, input, 1, False, channels_last, device)


def global_max_pool(input, *, channels_last=False, device=None):
    """Max over every spatial dim of a batched input, keeping them as size 1: (N, C, 1, ...)."""
    op = "global_max_pool"
    nd = _spatial_dims(op, input)
    return _adaptive(op, "max", nd, input, 1, False, channels_last, device)


def pyramid_args(op, input, levels, mode, channels_last):
    """(nd, levels as a tuple, channels_last) of a spatial_pyramid_pool call, checked; shared
    with its gradient."""
    nd = _spatial_dims(op, input)
    if mode not in ("max", "avg"):
        raise ValueError(f"{op}: mode={mode!r} is not supported; expected 'max' or 'avg'")
    channels_last = check_flag(op, "channels_last", channels_last)
    if is_int(levels):
        levels = (levels,)
    try:
        levels = tuple(levels)
    except TypeError:
        raise TypeError(f"{op}: levels must be a sequence of positive ints, "
                        f"got {type(levels).__name__}") from None
    if not levels or not all(is_int(lv) and lv >= 1 for lv in levels):
        raise ValueError(f"{op}: levels={levels!r} must be a non-empty sequence of positive ints")
    return nd, levels, channels_last


def spatial_pyramid_pool(input, levels=(1, 2, 4), mode="max", *, channels_last=False,
                         device=None):
    """Adaptive pools to l x l (x l) for each level, flattened and concatenated: (N, C * sum(l**nd)).

    Each level's block is flattened in (C, l, ...) order, whatever the input layout,
    so the features do not depend on ``channels_last``.
    """
    op = "spatial_pyramid_pool"
    nd, levels, channels_last = pyramid_args(op, input, levels, mode, channels_last)
    x = input
    if isinstance(input, np.ndarray) and device in (None, "cpu") and not channels_last:
        # one channels-last copy serves every level (else each level would transpose)
        x, channels_last = np.ascontiguousarray(np.moveaxis(input, 1, -1)), True
    if not isinstance(input, np.ndarray):  # device input: levels stay on the device
        from ..cuda.concat import concat_levels

        parts = [_adaptive(op, mode, nd, x, int(lv), False, channels_last, device) for lv in levels]
        return _as_kind(concat_levels(parts, channels_last), input)
    parts = [to_host(_adaptive(op, mode, nd, x, int(lv), False, channels_last, device)) for lv in levels]
    n, c = parts[0].shape[0], parts[0].shape[-1 if channels_last else 1]
    cells = [math.prod(y.shape[1:-1] if channels_last else y.shape[2:]) for y in parts]
    out = np.empty((n, c * sum(cells)), parts[0].dtype)
    col = 0
    for y, k in zip(parts, cells):  # each level straight into its (C, cells) block
        src = y.reshape(n, k, c).transpose(0, 2, 1) if channels_last else y.reshape(n, c, k)
        np.copyto(out[:, col:col + c * k].reshape(n, c, k), src)
        col += c * k
    return like_input(out, input)
