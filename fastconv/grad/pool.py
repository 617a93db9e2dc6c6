"""Gradients of pooling and the window ops (see fastconv.grad): the gradient of the loss
with respect to the input, given ``grad_output`` (its gradient with respect to the
output) and the forward call's arguments.

Each resolves its geometry with the forward's own spec (fastconv.spec.pool), so output
sizes, pads and ceil_mode windows are the forward's, and runs a gather kernel: each
input element sums, in a fixed order, the outputs whose windows contain it, so results
are bitwise the same on every run and thread count. Max pooling routes each output's
gradient to the index the forward returns (``indices=``, else computed with the forward
kernel), ties and NaN included; Lp pooling differentiates the forward's ONNX LpPool,
(sum over the window of |x| ** p) ** (1 / p), taking 0 where the derivative is not
finite (a window whose sum is 0, an element x = 0 with p < 1); p = inf routes to the
first max |x| as max pooling does. Global max pooling routes to the first maximum
(PyTorch's ``amax`` would share the gradient among ties).

``unfold`` and ``fold`` are each other's gradient; ``max_unpool*``'s gradient gathers
``grad_output`` at the indices.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from .._args import check_flag, int_tuple, is_int, resolve_pads, window_out_size
from .._arrays import check_array, check_same_dtype, is_cuda_array, shape_of, to_host
from .._cache import cached_plan
from .._small_calls import on_one_thread, serial
from ..dispatch import choose
from ..kernels.geometry import lift3
from ..kernels.pool_reach import adaptive_reaches, first_stray_index, output_spans, window_reaches
from ..ops import pooling as forward
from ..ops import windows as forward_windows
from ..ops._call import CallPlan, _as_kind, batched, call_plan, check_output, execute, host_key, remember
from ..spec.pool import resolve_adaptive_pool, resolve_pool

__all__ = [
    "max_pool1d", "max_pool2d", "max_pool3d",
    "avg_pool1d", "avg_pool2d", "avg_pool3d",
    "lp_pool1d", "lp_pool2d", "lp_pool3d",
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
    "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d",
    "global_avg_pool", "global_max_pool", "spatial_pyramid_pool",
    "unfold", "fold",
    "max_unpool1d", "max_unpool2d", "max_unpool3d",
]


# ---- shared front-end pieces -------------------------------------------------------------

def _batched_pair(op, nd, grad_output, input, indices):
    """(backend, batched input, was_unbatched, dtype) after checking both arrays."""
    backend, x, unbatched = batched(op, input, nd, None, (("grad_output", grad_output), ("indices", indices)))
    dtype = check_same_dtype(op, input=input, grad_output=grad_output)
    return backend, x, unbatched, dtype


def _matching(op, name, array, spec_shape, unbatched):
    """``array`` (grad_output or indices) batched, after checking it has the forward output's shape."""
    expected = tuple(spec_shape[1:]) if unbatched else tuple(spec_shape)
    shape = tuple(shape_of(array))
    if shape != expected:
        raise ValueError(f"{op}: {name} has shape {shape}, but the forward call's output has shape {expected}")
    if not unbatched:
        return array
    return array.reshape((1, *shape)) if isinstance(array, np.ndarray) else batched(op, array, len(shape) - 1,
                                                                                      None)[1]


def _indices(op, name, indices, spec, unbatched, adaptive, checked=True):
    """User indices, batched, checked: an integer array of the output's shape whose every
    entry is -1 or a position inside its output's window (the gather reads only there).
    ``checked=False``: indices the forward kernel itself returned (the PyTorch bridge's
    saved ones), whose positions are not searched again."""
    idx = _matching(op, name, indices, spec.output_shape, unbatched)
    host = to_host(idx)
    if host.dtype.kind not in "iu":
        raise TypeError(f"{op}: {name} has dtype {host.dtype}; expected int64, as the forward's "
                        f"return_indices=True gives")
    host = np.ascontiguousarray(host, np.int64)
    if not checked:
        return idx if idx.dtype == np.int64 else _like(host, idx)
    stray = first_stray_index(host.reshape(-1), spec.channels_last, spec.channels, *lift3(spec.in_size, 1),
                              *lift3(spec.out_size, 1), *_output_spans(spec, adaptive))
    if stray >= 0:
        where = np.unravel_index(stray, host.shape)[unbatched:]
        raise ValueError(f"{op}: {name}[{', '.join(map(str, where))}]={int(host.reshape(-1)[stray])} is not a "
                         f"position inside that output's window of the input (spatial size {spec.in_size}); "
                         f"expected the indices the forward call returns")
    return idx if idx.dtype == np.int64 else _like(host, idx)


@cached_plan
def _output_spans(spec, adaptive):
    """The per-dim (first, last, step) spans of ``spec``'s output windows, lifted to 3-D."""
    reaches = adaptive_reaches(spec) if adaptive else window_reaches(spec)
    return tuple(a for r, o in zip(reaches, lift3(spec.out_size, 1)) for a in output_spans(r, o))


def _like(host, x):
    if isinstance(x, np.ndarray):
        return host
    from ..cuda import streams

    return streams.to_device(host)


def _converted(x, dtype, absolute=False):
    """``x`` as ``dtype`` (of absolute values if ``absolute``), as the same kind of array:
    computed on the device for a CUDA array (fastconv.cuda.cast), with no host round trip."""
    if isinstance(x, np.ndarray):
        return (np.abs(x) if absolute else x).astype(dtype, copy=False)
    from ..cuda.cast import converted
    from ..cuda.streams import as_device

    return converted(as_device(x), dtype, absolute)


def _zeros_like_input(spec, dtype):
    return lambda: np.zeros(spec.input_shape, dtype)


# ---- max, average, Lp --------------------------------------------------------------------

def _window(op, mode, nd, grad_output, input, kernel_size, stride, padding, dilation, ceil_mode,
            channels_last, algo, *, count_include_pad=True, divisor_override=None, norm_type=2.0,
            indices=None, checked=True):
    key = host_key(op, (mode, kernel_size, stride, padding, dilation, ceil_mode, channels_last, algo, count_include_pad,
                        divisor_override, norm_type, checked), input, grad_output, indices)
    if key is not None:
        plan = call_plan(key)
        if plan is not None:
            return plan.run(grad_output, input, indices)
    channels_last = check_flag(op, "channels_last", channels_last)
    ceil_mode = check_flag(op, "ceil_mode", ceil_mode)
    count_include_pad = check_flag(op, "count_include_pad", count_include_pad)
    backend, x, unbatched, dtype = _batched_pair(op, nd, grad_output, input, indices)
    spec = resolve_pool(op, mode, nd, tuple(shape_of(x)), kernel_size, stride, padding, dilation,
                        ceil_mode=ceil_mode, count_include_pad=count_include_pad,
                        divisor_override=divisor_override, norm_type=norm_type,
                        channels_last=channels_last, dtype=dtype.name)
    g = _matching(op, "grad_output", grad_output, spec.output_shape, unbatched)
    geometry = (spec.kernel, spec.stride, spec.pads, spec.dilation, ceil_mode)
    operands = functools.partial(_window_operands, op, mode, nd, spec, geometry, checked, unbatched)
    return _run("pool_grad", key, backend, spec, algo, operands, unbatched, grad_output, g, input, x,
                indices)


def _window_operands(op, mode, nd, spec, geometry, checked, unbatched, x, indices):
    """(indices, forward output, input) that the gather kernel of ``mode`` reads besides
    the gradient, from the batched input ``x`` and the user's ``indices``."""
    if mode == "max":
        if indices is not None:
            return _indices(op, "indices", indices, spec, unbatched, False, checked), None, None
        return _max_indices(nd, x, geometry, spec.channels_last), None, None
    if mode != "lp":
        return None, None, None
    dtype = np.dtype(spec.dtype)
    if math.isinf(spec.norm_type):  # routes like max pooling of |x| (same tie and NaN rule)
        return _max_indices(nd, _converted(x, dtype, absolute=True), geometry, spec.channels_last), None, x
    xw = _converted(x, np.float32) if dtype == np.float16 else x  # the forward output in the working dtype
    kernel, stride, pads, dilation, ceil_mode = geometry
    y = getattr(forward, f"lp_pool{nd}d")(xw, spec.norm_type, kernel, stride, ceil_mode, padding=pads,
                                           dilation=dilation, channels_last=spec.channels_last)
    return None, y, x


def _run(family, key, backend, spec, algo, operands, unbatched, grad_output, g, input, x, indices):
    """The gradient of a checked call: ``operands(x, indices)`` gives the gather kernel's
    arrays beside ``g``. A call on NumPy arrays with a plain ``key`` keeps its CallPlan
    (ops/_call.py), which the next such call runs and nothing else: only the indices'
    values and the forward outputs depend on more than the key."""
    if key is None or backend != "cpu" or not spec.batch:
        arrays = operands(x, indices) if spec.batch else ()
        return execute(family, backend, spec, algo, input, (g, *arrays), unbatched, _zeros_like_input(spec, g.dtype))
    check_output(spec.op, spec.input_shape, g.dtype)
    impl = choose(family, "cpu", spec, algo)
    in_shape, out_shape = spec.input_shape, spec.output_shape

    def run(grad_output, input, indices):
        if unbatched:
            grad_output, input = grad_output.reshape(out_shape), input.reshape(in_shape)
        result = impl.fn(spec, grad_output, *operands(input, indices))
        return result.reshape(result.shape[1:]) if unbatched else result

    if serial(spec):
        run = on_one_thread(run)
    plan = CallPlan(spec, impl, run)
    result = run(grad_output, input, indices)
    remember(key, plan)
    return result


def _max_indices(nd, x, geometry, channels_last):
    """The forward max pooling's indices for batched ``x``."""
    kernel, stride, pads, dilation, ceil_mode = geometry
    return getattr(forward, f"max_pool{nd}d")(x, kernel, stride, pads, dilation, ceil_mode, True,
                                              channels_last=channels_last)[1]


def max_pool1d(grad_output, input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, *,
               indices=None, channels_last=False, algo="auto"):
    """Gradient of max_pool1d with respect to its input: each output's gradient goes to the
    element whose index the forward returns (``indices``, else the forward is run)."""
    return _window("max_pool1d", "max", 1, grad_output, input, kernel_size, stride, padding, dilation,
                   ceil_mode, channels_last, algo, indices=indices)


def max_pool2d(grad_output, input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, *,
               indices=None, channels_last=False, algo="auto"):
    """Gradient of max_pool2d with respect to its input (see max_pool1d)."""
    return _window("max_pool2d", "max", 2, grad_output, input, kernel_size, stride, padding, dilation,
                   ceil_mode, channels_last, algo, indices=indices)


def max_pool3d(grad_output, input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, *,
               indices=None, channels_last=False, algo="auto"):
    """Gradient of max_pool3d with respect to its input (see max_pool1d)."""
    return _window("max_pool3d", "max", 3, grad_output, input, kernel_size, stride, padding, dilation,
                   ceil_mode, channels_last, algo, indices=indices)


def max_pool_from_forward(nd, grad_output, input, kernel_size, stride, padding, dilation, ceil_mode, indices,
                          channels_last):
    """max_pool{nd}d's gradient through ``indices`` that fastconv's forward returned for this
    very call (the PyTorch bridge's saved ones, which autograd refuses to use once modified):
    their positions are not searched again, a third of the call on 8x64x56x56 channels-first.
    The gather writes nowhere outside its input row whatever an index holds."""
    return _window(f"max_pool{nd}d", "max", nd, grad_output, input, kernel_size, stride, padding, dilation,
                   ceil_mode, channels_last, "auto", indices=indices, checked=False)


def avg_pool1d(grad_output, input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None, *, dilation=1, channels_last=False, algo="auto"):
    """Gradient of avg_pool1d: each element of a window gets the output's gradient over the
    forward's divisor. ``input`` gives the shape (and dtype) only."""
    return _window("avg_pool1d", "avg", 1, grad_output, input, kernel_size, stride, padding, dilation,
                   ceil_mode, channels_last, algo, count_include_pad=count_include_pad,
                   divisor_override=divisor_override)


def avg_pool2d(grad_output, input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None, *, dilation=1, channels_last=False, algo="auto"):
    """Gradient of avg_pool2d (see avg_pool1d)."""
    return _window("avg_pool2d", "avg", 2, grad_output, input, kernel_size, stride, padding, dilation,
                   ceil_mode, channels_last, algo, count_include_pad=count_include_pad,
                   divisor_override=divisor_override)


def avg_pool3d(grad_output, input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None, *, dilation=1, channels_last=False, algo="auto"):
    """Gradient of avg_pool3d (see avg_pool1d)."""
    return _window("avg_pool3d", "avg", 3, grad_output, input, kernel_size, stride, padding, dilation,
                   ceil_mode, channels_last, algo, count_include_pad=count_include_pad,
                   divisor_override=divisor_override)


def lp_pool1d(grad_output, input, norm_type, kernel_size, stride=None, ceil_mode=False, *, padding=0,
              dilation=1, channels_last=False, algo="auto"):
    """Gradient of lp_pool1d: sign(x) |x| ** (p - 1) * sum of g * y ** (1 - p) over the windows
    holding x (y the forward output), 0 where y or x is 0; p = inf routes to max |x|."""
    return _window("lp_pool1d", "lp", 1, grad_output, input, kernel_size, stride, padding, dilation,
                   ceil_mode, channels_last, algo, norm_type=norm_type)


def lp_pool2d(grad_output, input, norm_type, kernel_size, stride=None, ceil_mode=False, *, padding=0,
              dilation=1, channels_last=False, algo="auto"):
    """Gradient of lp_pool2d (see lp_pool1d)."""
    return _window("lp_pool2d", "lp", 2, grad_output, input, kernel_size, stride, padding, dilation,
                   ceil_mode, channels_last, algo, norm_type=norm_type)


def lp_pool3d(grad_output, input, norm_type, kernel_size, stride=None, ceil_mode=False, *, padding=0,
              dilation=1, channels_last=False, algo="auto"):
    """Gradient of lp_pool3d (see lp_pool1d)."""
    return _window("lp_pool3d", "lp", 3, grad_output, input, kernel_size, stride, padding, dilation,
                   ceil_mode, channels_last, algo, norm_type=norm_type)


# ---- adaptive and global -----------------------------------------------------------------

def _adaptive(op, mode, nd, grad_output, input, output_size, indices, channels_last, algo, checked=True):
    key = host_key(op, (mode, output_size, channels_last, algo, checked), input, grad_output, indices)
    if key is not None:
        plan = call_plan(key)
        if plan is not None:
            return plan.run(grad_output, input, indices)
    channels_last = check_flag(op, "channels_last", channels_last)
    backend, x, unbatched, dtype = _batched_pair(op, nd, grad_output, input, indices)
    spec = resolve_adaptive_pool(op, mode, nd, tuple(shape_of(x)), output_size,
                                 channels_last=channels_last, dtype=dtype.name)
    g = _matching(op, "grad_output", grad_output, spec.output_shape, unbatched)
    operands = functools.partial(_adaptive_operands, op, mode, nd, spec, checked, unbatched)
    return _run("adaptive_pool_grad", key, backend, spec, algo, operands, unbatched, grad_output, g, input, x,
                indices)


def _adaptive_operands(op, mode, nd, spec, checked, unbatched, x, indices):
    """(indices,): what the adaptive gather kernel reads besides the gradient (None but for max)."""
    if mode != "max":
        return (None,)
    if indices is not None:
        return (_indices(op, "indices", indices, spec, unbatched, True, checked),)
    pool = getattr(forward, f"adaptive_max_pool{nd}d")
    return (pool(x, spec.out_size, True, channels_last=spec.channels_last)[1],)


def adaptive_avg_pool1d(grad_output, input, output_size, *, channels_last=False, algo="auto"):
    """Gradient of adaptive_avg_pool1d: each element of a cell gets the cell's gradient / its size."""
    return _adaptive("adaptive_avg_pool1d", "avg", 1, grad_output, input, output_size, None, channels_last, algo)


def adaptive_avg_pool2d(grad_output, input, output_size, *, channels_last=False, algo="auto"):
    """Gradient of adaptive_avg_pool2d (see adaptive_avg_pool1d)."""
    return _adaptive("adaptive_avg_pool2d", "avg", 2, grad_output, input, output_size, None, channels_last, algo)


def adaptive_avg_pool3d(grad_output, input, output_size, *, channels_last=False, algo="auto"):
    """Gradient of adaptive_avg_pool3d (see adaptive_avg_pool1d)."""
    return _adaptive("adaptive_avg_pool3d", "avg", 3, grad_output, input, output_size, None, channels_last, algo)


def adaptive_max_pool1d(grad_output, input, output_size, *, indices=None, channels_last=False, algo="auto"):
    """Gradient of adaptive_max_pool1d: routed to the forward's indices (``indices``, else computed)."""
    return _adaptive("adaptive_max_pool1d", "max", 1, grad_output, input, output_size, indices,
                     channels_last, algo)


def adaptive_max_pool2d(grad_output, input, output_size, *, indices=None, channels_last=False, algo="auto"):
    """Gradient of adaptive_max_pool2d (see adaptive_max_pool1d)."""
    return _adaptive("adaptive_max_pool2d", "max", 2, grad_output, input, output_size, indices,
                     channels_last, algo)


def adaptive_max_pool3d(grad_output, input, output_size, *, indices=None, channels_last=False, algo="auto"):
    """Gradient of adaptive_max_pool3d (see adaptive_max_pool1d)."""
    return _adaptive("adaptive_max_pool3d", "max", 3, grad_output, input, output_size, indices,
                     channels_last, algo)


def adaptive_max_pool_from_forward(nd, grad_output, input, output_size, indices, channels_last):
    """adaptive_max_pool{nd}d's gradient through the forward's own indices (see max_pool_from_forward)."""
    return _adaptive(f"adaptive_max_pool{nd}d", "max", nd, grad_output, input, output_size, indices, channels_last,
                     "auto", checked=False)


def global_avg_pool(grad_output, input, *, channels_last=False):
    """Gradient of global_avg_pool: grad_output (N, C, 1, ...) spread evenly over each plane."""
    op = "global_avg_pool"
    nd = forward._spatial_dims(op, input)
    return _adaptive(op, "avg", nd, grad_output, input, 1, None, channels_last, "auto")


def global_max_pool(grad_output, input, *, channels_last=False):
    """Gradient of global_max_pool: each plane's gradient goes to its first maximum (NaN: last NaN)."""
    op = "global_max_pool"
    nd = forward._spatial_dims(op, input)
    return _adaptive(op, "max", nd, grad_output, input, 1, None, channels_last, "auto")


def spatial_pyramid_pool(grad_output, input, levels=(1, 2, 4), mode="max", *, channels_last=False):
    """Gradient of spatial_pyramid_pool: grad_output (N, C * sum(l ** nd)) split into its levels'
    (C, l, ...) blocks, each level's adaptive-pool gradient, summed in level order; on CUDA
    arrays one gather kernel reads every level's block in place."""
    op = "spatial_pyramid_pool"
    nd, levels, channels_last = forward.pyramid_args(op, input, levels, mode, channels_last)
    on_device = is_cuda_array(input) and not isinstance(input, np.ndarray)
    check_array(op, "grad_output", grad_output, "cuda" if on_device else "cpu")
    dtype = check_same_dtype(op, input=input, grad_output=grad_output)
    shape = tuple(shape_of(input))
    n, c = shape[0], shape[-1 if channels_last else 1]
    expected = (n, c * sum(int(lv) ** nd for lv in levels))
    if tuple(shape_of(grad_output)) != expected:
        raise ValueError(f"{op}: grad_output has shape {tuple(shape_of(grad_output))}, but the forward call's "
                         f"output has shape {expected}")
    if on_device:
        return _pyramid_on_device(nd, grad_output, input, levels, mode, channels_last, dtype)
    total, col = None, 0
    for lv in levels:
        cells = int(lv) ** nd
        block = grad_output[:, col:col + c * cells].reshape((n, c) + (int(lv),) * nd)
        col += c * cells
        if channels_last:
            block = np.moveaxis(block, 1, -1)
        part = _adaptive(op, mode, nd, np.ascontiguousarray(block), input, int(lv), None, channels_last, "auto")
        total = part if total is None else total + part
    return total


def _pyramid_on_device(nd, grad_output, input, levels, mode, channels_last, dtype):
    """One gather kernel over every level (cuda/pool_pyramid_grad.py); max mode routes to the
    levels' forward indices, computed on the device and placed side by side like the output."""
    from ..cuda import streams
    from ..cuda.concat import concat_levels
    from ..cuda.pool_pyramid_grad import pyramid_grad

    if isinstance(grad_output, np.ndarray):
        g = streams.to_device(np.ascontiguousarray(grad_output))
    else:
        g = streams.as_device(grad_output)
    idx = None
    if mode == "max" and shape_of(input)[0]:
        pool = getattr(forward, f"adaptive_max_pool{nd}d")
        idx = concat_levels([pool(input, int(lv), True, channels_last=channels_last)[1] for lv in levels],
                            channels_last)
    gi = pyramid_grad(g, idx, tuple(shape_of(input)), levels, mode, np.dtype(dtype).name, channels_last)
    return _as_kind(gi, input)


# ---- windows -----------------------------------------------------------------------------

def unfold(grad_output, input_size, kernel_size, stride=1, padding=0, dilation=1):
    """Gradient of unfold(input, kernel_size, stride, padding, dilation) for an input of shape
    ``input_size`` (N, C, *spatial): fold of the columns' gradient (taps landing on one
    element add up; padding cells are dropped)."""
    op = "unfold"
    size = tuple(int(v) for v in input_size)
    if len(size) not in (3, 4, 5) or min(size) < 0:
        raise ValueError(f"{op}: input_size={input_size!r} must be (N, C, *spatial) with 1 to 3 spatial dims")
    nd = len(size) - 2
    kernel = int_tuple(op, "kernel_size", kernel_size, nd)
    stride = int_tuple(op, "stride", stride, nd)
    dilation = int_tuple(op, "dilation", dilation, nd)
    pads = resolve_pads(op, padding, size[2:], kernel, stride, dilation)
    grid = window_out_size(op, size[2:], kernel, stride, dilation, pads)
    expected = (size[0], size[1] * math.prod(kernel), math.prod(grid))
    if tuple(shape_of(grad_output)) != expected:
        raise ValueError(f"{op}: grad_output has shape {tuple(shape_of(grad_output))}, but the forward call's "
                         f"output has shape {expected}")
    return forward_windows.fold(grad_output, size[2:], kernel, stride, pads, dilation)


def fold(grad_output, output_size, kernel_size, stride=1, padding=0, dilation=1):
    """Gradient of fold(columns, output_size, kernel_size, stride, padding, dilation) with
    respect to the columns: unfold of the image's gradient, (N, C * prod(kernel_size), L)."""
    nd = len(tuple(output_size)) if not is_int(output_size) else (len(kernel_size) if not is_int(kernel_size)
                                                                   else 2)
    image = (output_size,) * nd if is_int(output_size) else tuple(output_size)
    shape = tuple(shape_of(grad_output))
    if len(shape) not in (nd + 1, nd + 2) or shape[-nd:] != tuple(int(v) for v in image):
        raise ValueError(f"fold: grad_output has shape {shape}; expected (N, C, *output_size) with output_size "
                         f"{tuple(image)}")
    kernel = (kernel_size,) * nd if is_int(kernel_size) else kernel_size
    return forward_windows.unfold(grad_output, kernel, stride, padding, dilation)


def _max_unpool(op, nd, grad_output, indices, kernel_size, stride, padding, output_size):
    """grad_input[n, c, i] = grad_output[n, c, indices[n, c, i]]: a gather (no sums)."""
    check_array(op, "grad_output", grad_output, "cpu")
    if not isinstance(indices, np.ndarray):
        raise TypeError(f"{op}: indices must be a numpy.ndarray, got {type(indices).__name__}")
    # the forward's checks and output size, for an input of the indices' shape and grad_output's dtype
    like = np.broadcast_to(np.zeros((), grad_output.dtype), indices.shape)
    spec, _, ind, unbatched, _ = forward_windows.unpool_spec(op, nd, like, indices, kernel_size, stride, padding,
                                                             output_size)
    expected = tuple(spec.output_shape[1:]) if unbatched else tuple(spec.output_shape)
    if tuple(grad_output.shape) != expected:
        raise ValueError(f"{op}: grad_output has shape {tuple(grad_output.shape)}, but the forward call's output "
                         f"has shape {expected}")
    plane = math.prod(spec.image)
    planes = spec.batch * spec.channels
    ind = np.asarray(ind).reshape(planes, -1)
    if ind.size and (ind.min() < 0 or ind.max() >= plane):
        p, m = np.argwhere((ind < 0) | (ind >= plane))[0]
        n, c = divmod(int(p), spec.channels)
        pos = np.unravel_index(int(m), spec.grid)
        raise ValueError(f"{op}: indices[{n}, {c}, {', '.join(map(str, pos))}]={int(ind[p, m])} is outside the "
                         f"output plane of {plane} elements (output size {spec.image}); expected 0 <= index < {plane}")
    g = grad_output.reshape(planes, plane)
    return np.take_along_axis(g, ind.astype(np.int64, copy=False), 1).reshape(indices.shape)


def max_unpool1d(grad_output, indices, kernel_size, stride=None, padding=0, output_size=None):
    """Gradient of max_unpool1d(input, indices, ...) with respect to its input: grad_output
    read at the indices (every input element, duplicates included, reads its own)."""
    return _max_unpool("max_unpool1d", 1, grad_output, indices, kernel_size, stride, padding, output_size)


def max_unpool2d(grad_output, indices, kernel_size, stride=None, padding=0, output_size=None):
    """Gradient of max_unpool2d (see max_unpool1d)."""
    return _max_unpool("max_unpool2d", 2, grad_output, indices, kernel_size, stride, padding, output_size)


def max_unpool3d(grad_output, indices, kernel_size, stride=None, padding=0, output_size=None):
    """Gradient of max_unpool3d (see max_unpool1d)."""
    return _max_unpool("max_unpool3d", 3, grad_output, indices, kernel_size, stride, padding, output_size)
