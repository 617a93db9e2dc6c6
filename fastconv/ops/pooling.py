"""Pooling shaped like torch.nn.functional: max, average, Lp, adaptive, global and
spatial-pyramid pooling over 1-D, 2-D and 3-D inputs.

Beyond PyTorch (as ONNX allows): ``padding`` also takes per-dim ``(begin, end)`` pairs,
``"same"`` (output ``ceil(in / stride)``, the odd pad at the end), ``"valid"`` and
``"full"``; pads may be any size; ``avg_pool*`` and ``lp_pool*`` take ``dilation=`` and
``padding=``. Padded cells never win a max and never add to a sum.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .._args import check_flag, is_int
from .._arrays import like_input, shape_of, to_host
from ..dispatch import choose
from ..spec.pool import resolve_adaptive_pool, resolve_pool
from ._call import CallPlan, _as_kind, batched, call_plan, check_output, execute, remember
from ._spec_cache import DTYPE_NAMES, Uncacheable, cached_spec, input_dtype, key_of

__all__ = [
    "max_pool1d", "max_pool2d", "max_pool3d",
    "avg_pool1d", "avg_pool2d", "avg_pool3d",
    "lp_pool1d", "lp_pool2d", "lp_pool3d",
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
    "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d",
    "global_avg_pool", "global_max_pool", "spatial_pyramid_pool",
]


def _empty(spec, dtype, with_indices):
    def build():
        values = np.empty(spec.output_shape, dtype)
        if with_indices:
            return values, np.empty(spec.output_shape, np.int64)
        return values

    return build


# ---- repeated host calls ---------------------------------------------------------------
#
# A NumPy call whose input shape, dtype and arguments were seen before runs the runner
# kept for them: the spec, the implementation and the batch handling are looked up
# once, and argument checking is skipped (it passed on the first call). Arguments are
# keyed with their types, so 2, 2.0 and True stay apart; anything but plain values
# (see _spec_cache.key_of) takes the full path every time. Errors are never kept.

_PLAIN = frozenset({int, float, bool, str, type(None)})
_KEYABLE = _PLAIN | {tuple}


def _host_key(op, input, args):
    """The runner key of a NumPy call (``args``: every argument but the input that the
    result depends on), or None when the call must take the full path."""
    if type(input) is not np.ndarray:
        return None
    types = tuple(map(type, args))
    if not _KEYABLE.issuperset(types):
        return None
    if tuple in types:
        try:
            for value, kind in zip(args, types):
                if kind is tuple:
                    key_of(value)
        except Uncacheable:
            return None
    return "pool call", op, input.shape, input.dtype, args, types


def _host_runner(family, spec, unbatched, dtype, shape, op):
    """The CallPlan of a NumPy call resolved to ``spec`` on the CPU (``shape``: the
    batched input shape); its ``run(input)`` returns the result."""
    if spec.batch == 0:
        empty = _empty(spec, dtype, spec.return_indices)
        return CallPlan(spec, None, lambda x: empty())
    check_output(op, spec.output_shape, dtype, 8 * bool(spec.return_indices))
    impl = choose(family, "cpu", spec, "auto")
    fn = impl.fn
    if not unbatched:
        return CallPlan(spec, impl, lambda x: fn(spec, x))

    def run(x):
        result = fn(spec, x.reshape(shape))
        if isinstance(result, tuple):
            return tuple(r.reshape(r.shape[1:]) for r in result)
        return result.reshape(result.shape[1:])

    return CallPlan(spec, impl, run)


def _pool(op, mode, nd, input, kernel_size, stride, padding, dilation, ceil_mode,
          channels_last, device, *, count_include_pad=True, divisor_override=None,
          norm_type=2.0, return_indices=False):
    key = _host_key(op, input, (mode, kernel_size, stride, padding, dilation, ceil_mode, channels_last,
                                device, count_include_pad, divisor_override, norm_type, return_indices))
    if key is not None:
        plan = call_plan(key)
        if plan is not None:
            return plan.run(input)
    channels_last = check_flag(op, "channels_last", channels_last)
    backend, x, unbatched = batched(op, input, nd, device)
    dtype = input_dtype(op, input)
    if isinstance(norm_type, bool) or not isinstance(norm_type, numbers.Real):
        raise TypeError(f"{op}: norm_type must be a positive number, got {type(norm_type).__name__}")
    if divisor_override is not None and (isinstance(divisor_override, bool)
                                         or not is_int(divisor_override)):
        raise TypeError(f"{op}: divisor_override={divisor_override!r} must be a positive int or None")
    shape = tuple(shape_of(x))
    ceil_mode = check_flag(op, "ceil_mode", ceil_mode)
    count_include_pad = check_flag(op, "count_include_pad", count_include_pad)
    return_indices = check_flag(op, "return_indices", return_indices)
    name = DTYPE_NAMES[dtype]
    spec = cached_spec(
        lambda: (op, mode, nd, shape, key_of(kernel_size), key_of(stride), key_of(padding), key_of(dilation), ceil_mode,
                 count_include_pad, key_of(divisor_override), key_of(norm_type), return_indices,
                 channels_last, name),
        resolve_pool, op, mode, nd, shape, kernel_size, stride, padding, dilation,
        ceil_mode=ceil_mode, count_include_pad=count_include_pad,
        divisor_override=divisor_override, norm_type=norm_type,
        return_indices=return_indices, channels_last=channels_last, dtype=name,
    )
    if key is not None and backend == "cpu":
        plan = _host_runner("pool", spec, unbatched, dtype, shape, op)
        result = plan.run(input)
        remember(key, plan)
        return result
    return execute("pool", backend, spec, "auto", input, (x,), unbatched,
                   _empty(spec, dtype, spec.return_indices))


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
    """1-D power-average pooling: (sum over the window of x**p) ** (1/p)."""
    return _pool("lp_pool1d", "lp", 1, input, kernel_size, stride, padding, dilation,
                 ceil_mode, channels_last, device, norm_type=norm_type)


def lp_pool2d(input, norm_type, kernel_size, stride=None, ceil_mode=False, *, padding=0,
              dilation=1, channels_last=False, device=None):
    """2-D power-average pooling: (sum over the window of x**p) ** (1/p).

    Padded cells add nothing. Windows clipped by ``ceil_mode`` sum their in-input taps
    (PyTorch instead rescales them by kernel size / taps); ``norm_type=inf`` is max |x|.
    """
    return _pool("lp_pool2d", "lp", 2, input, kernel_size, stride, padding, dilation,
                 ceil_mode, channels_last, device, norm_type=norm_type)


def lp_pool3d(input, norm_type, kernel_size, stride=None, ceil_mode=False, *, padding=0,
              dilation=1, channels_last=False, device=None):
    """3-D power-average pooling: (sum over the window of x**p) ** (1/p)."""
    return _pool("lp_pool3d", "lp", 3, input, kernel_size, stride, padding, dilation,
                 ceil_mode, channels_last, device, norm_type=norm_type)


# ---- adaptive ------------------------------------------------------------------------

def _adaptive(op, mode, nd, input, output_size, return_indices, channels_last, device):
    key = _host_key(op, input, (mode, output_size, return_indices, channels_last, device))
    if key is not None:
        plan = call_plan(key)
        if plan is not None:
            return plan.run(input)
    channels_last = check_flag(op, "channels_last", channels_last)
    return_indices = check_flag(op, "return_indices", return_indices)
    backend, x, unbatched = batched(op, input, nd, device)
    dtype = input_dtype(op, input)
    shape = tuple(shape_of(x))
    name = DTYPE_NAMES[dtype]
    spec = cached_spec(lambda: (op, mode, nd, shape, key_of(output_size), return_indices, channels_last, name),
                 resolve_adaptive_pool, op, mode, nd, shape, output_size,
                 return_indices=return_indices, channels_last=channels_last, dtype=name)
    if key is not None and backend == "cpu":
        plan = _host_runner("adaptive_pool", spec, unbatched, dtype, shape, op)
        result = plan.run(input)
        remember(key, plan)
        return result
    return execute("adaptive_pool", backend, spec, "auto", input, (x,), unbatched,
                   _empty(spec, dtype, spec.return_indices))


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


def spatial_pyramid_pool(input, levels=(1, 2, 4), mode="max", *, channels_last=False,
                         device=None):
    """Adaptive pools to l x l (x l) for each level, flattened and concatenated: (N, C * sum(l**nd)).

    Each level's block is flattened in (C, l, ...) order, whatever the input layout,
    so the features do not depend on ``channels_last``.
    """
    op = "spatial_pyramid_pool"
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
