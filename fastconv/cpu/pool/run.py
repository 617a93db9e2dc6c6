"""Running a pooling kernel on the user's array, in the user's layout.

The kernels read 5-D, C-contiguous arrays in the working dtype (float32 for
float16/float32, float64 for float64), 1-D and 2-D calls lifted with unit D (and H)
axes: ``(N, C, D, H, W)`` for channels-first calls, ``(N, D, H, W, C)`` for
channels-last ones. A writeable C-contiguous input in the working dtype is read in
place (a reshape, no copy); any other input (read-only ones too: Numba would compile
each kernel again for them) is copied into that form a chunk of images at a
time, within the workspace cap. The output is allocated in the user's layout and
returned as is (float16 results are cast once at the end). Plans whose kernel is
channels-last only (general adaptive windows: their channels-first form would be a
scalar dependency chain per output) copy channels-first input to channels-last order
and transpose the (smaller) result back.

Every kernel exists twice (:func:`twin`): parallel, and serial for calls too small to
repay waking the worker threads.
"""

from __future__ import annotations

import math
import types
from typing import NamedTuple

import numpy as np

from ..._arrays import working_dtype
from ..._workspace import chunks, workspace_limit
from ...kernels.geometry import lift3
from .._jit import parallel_kernel, serial_kernel

INDEX_DTYPE = np.dtype(np.int64)

# Below this many element visits (input taps read + outputs written) a call runs serially:
# waking the worker threads costs 10-40 us, the time of ~250K vectorized visits on one
# core (measured: 125K visits 35 us serial, 49 us parallel; 920K 196 us and 181 us).
SERIAL_WORK = 1 << 18


class Twin(NamedTuple):
    parallel: object
    serial: object


def twin(fn) -> Twin:
    """``fn`` compiled as a parallel and as a serial kernel (``prange`` runs as ``range``).

    Each copy has its own qualified name, hence its own file in Numba's on-disk cache
    (the cache key does not include the compile options).
    """
    made = []
    for suffix, jit in (("parallel", parallel_kernel), ("serial", serial_kernel)):
        copy = types.FunctionType(fn.__code__, fn.__globals__, f"{fn.__name__}_{suffix}",
                                  fn.__defaults__, fn.__closure__)
        copy.__qualname__ = copy.__name__
        copy.__module__ = fn.__module__
        copy.__doc__ = fn.__doc__
        made.append(jit(copy))
    return Twin(*made)


def _working_shape(batch, channels, size, channels_last):
    size = lift3(size, 1)
    return (batch, *size, channels) if channels_last else (batch, channels, *size)


class Plan(NamedTuple):
    """How one spec runs: ``kernels.parallel(xw, out, [idx,] *args)``, or with fewer
    than SERIAL_WORK element visits ``kernels.serial(xw, out, [idx,] *serial_args)``."""
    kernels: Twin
    args: tuple
    serial_args: tuple  # channels-last kernels: one block of all channels (no tasks to share)
    takes_idx: bool  # the kernel takes an idx array (max kernels)
    work: int  # element visits, for the serial/parallel choice
    with_indices: bool  # the caller wants the indices back
    in_shape: tuple  # working (5-D) shapes
    out_shape: tuple
    dtype: np.dtype  # the user's
    wdtype: np.dtype  # the kernels'
    transposed: bool  # channels-first input run by a channels-last kernel on a copy
    user_out_shape: tuple  # the result's shape (spec.output_shape)


def make_plan(spec, kernels, args, takes_idx, work, *, serial_args=None,
              channels_last_kernel=None) -> Plan:
    """``serial_args``: the serial kernel's, when not ``args``. ``channels_last_kernel=True``
    on a channels-first spec: the input is copied to channels-last order a chunk at a
    time and the result transposed back."""
    dtype = np.dtype(spec.dtype)
    cl = spec.channels_last if channels_last_kernel is None else channels_last_kernel
    args = tuple(args)
    serial_args = args if serial_args is None else tuple(serial_args)
    return Plan(kernels, args, serial_args, takes_idx, work, bool(spec.return_indices),
                _working_shape(spec.batch, spec.channels, spec.in_size, cl),
                _working_shape(spec.batch, spec.channels, spec.out_size, cl),
                dtype, working_dtype(dtype), cl != spec.channels_last, tuple(spec.output_shape))


def bind_plan(make_plan):
    """The ``bind`` of a pooling implementation (see dispatch.Implementation): a repeated
    call's runner holds the plan ``make_plan(spec)`` made for it, and runs it."""

    def bind(spec):
        plan = make_plan(spec)
        return (lambda x: run_pool(spec, x, plan)), (plan,)

    return bind


# The idx argument of max kernels called without indices: never written.
NO_INDICES = np.empty((1, 1, 1, 1, 1), INDEX_DTYPE)


def run_pool(spec, x, plan: Plan):
    """Run ``plan`` on working-form chunks of ``x``; return the result in the user's
    layout and dtype (with int64 indices when the spec asks for them)."""
    if plan.work < SERIAL_WORK:
        kernel, args = plan.kernels.serial, plan.serial_args
    else:
        kernel, args = plan.kernels.parallel, plan.args
    wdtype = plan.wdtype
    out = np.empty(plan.out_shape, wdtype)
    flags = x.flags
    if (not plan.transposed and x.dtype is wdtype and flags.c_contiguous and flags.aligned
            and flags.writeable and not plan.with_indices):
        # the common case, with nothing to copy or convert
        if plan.takes_idx:
            kernel(x.reshape(plan.in_shape), out, NO_INDICES, *args)
        else:
            kernel(x.reshape(plan.in_shape), out, *args)
        return out.reshape(plan.user_out_shape)
    idx = np.empty(plan.out_shape, INDEX_DTYPE) if plan.with_indices else NO_INDICES
    if (not plan.transposed and x.dtype == wdtype and flags.c_contiguous and flags.aligned
            and flags.writeable):
        spans = ((0, spec.batch, x.reshape(plan.in_shape)),)
    else:
        per_image = max(1, math.prod(plan.in_shape[1:])) * wdtype.itemsize
        spans = ((n0, n1, None) for n0, n1 in chunks(spec.batch, per_image, workspace_limit()))
    for n0, n1, xw in spans:
        if xw is None:
            xw = np.empty((n1 - n0, *plan.in_shape[1:]), wdtype)
            if plan.transposed:  # (N, C, *spatial) -> (N, *spatial, C), lifted to 5-D
                source = np.moveaxis(x[n0:n1], 1, -1)
                np.copyto(xw.reshape(source.shape), source, casting="unsafe")
            else:
                np.copyto(xw.reshape(x[n0:n1].shape), x[n0:n1], casting="unsafe")
        o = out if n0 == 0 and n1 == spec.batch else out[n0:n1]
        if plan.takes_idx:
            kernel(xw, o, idx if not plan.with_indices or o is out else idx[n0:n1], *args)
        else:
            kernel(xw, o, *args)
    if plan.transposed:
        values = _channels_first(out, plan.user_out_shape, plan.dtype)
        if plan.with_indices:
            return values, _channels_first(idx, plan.user_out_shape, INDEX_DTYPE)
        return values
    values = out.reshape(plan.user_out_shape)
    if wdtype != plan.dtype:
        values = values.astype(plan.dtype)
    if plan.with_indices:
        return values, idx.reshape(plan.user_out_shape)
    return values


def _channels_first(out5, shape, dtype):
    """A (N, OD, OH, OW, C) working result as a C-contiguous (N, C, *out_size) array."""
    result = np.empty(shape, dtype)
    np.copyto(result, np.moveaxis(out5.reshape((shape[0], *shape[2:], shape[1])), -1, 1),
              casting="unsafe")
    return result
