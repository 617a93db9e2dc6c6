"""Convolution input gradients on the CPU (dispatch family "conv_input_grad", algo "adjoint").

Backward-data is a convolution of its own kind, run by the forward table's kernels:

- a conv's input gradient is the transposed conv of grad_output with the same weight and
  geometry, output_padding chosen so that its size is the input's (the rows the forward
  stride skipped at the end); with zeros or constant padding the crop drops the pads'
  gradient. Other padding modes take the transposed conv at the padded size, then fold
  each padded cell's gradient back onto the input pixel it copied (:func:`fold_padded`);
- a depthwise conv of stride 1 (multiplier 1) with zeros or constant padding: the forward
  depthwise conv of grad_output with the flipped weight (spec.adjoint.flipped_conv_spec),
  which reads the user's layout in place; strided (or over-padded) depthwise layers the
  row-owning depthwise transposed kernel of depthwise_input_grad.py;
- other stride-1 layers with zeros or constant padding that the forward table gives to the
  direct kernel: that kernel on grad_output, its tasks packing their weight blocks straight
  from the user's weight with channels swapped and taps reversed
  (direct.run.conv_direct_swapped; no flipped weight built first), or, where most (pixel, tap) pairs
  read padding (BANDED_MAX_READ_SHARE: ASPP's large rates), the kernel's banded plan on the swapped,
  flipped weight built first, running only the taps that read grad_output. Its zero padding would
  meet a NaN or inf weight where the transposed conv has no term: those weights take the transposed conv;
- a transposed conv's input gradient is the forward conv of grad_output, same geometry,
  cut to the input's size where output_padding reached a whole stride past it.

float16 computes in float32 and rounds once at the end.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import prange

from ..._arrays import working_dtype
from ..._workspace import chunks, workspace_limit
from ...dispatch import choose, read_share, register
from ...kernels.geometry import lift3
from ...kernels.padding_index import gather_lists
from ...spec.adjoint import (
    adjoint_conv_spec,
    adjoint_transpose_spec,
    cut_index,
    flipped_conv_spec,
    padded_size,
    swapped_conv_spec,
)
from .._jit import parallel_kernel
from ..layout import as_working
from ..weights import all_finite
from .depthwise_input_grad import depthwise_input_grad
from .direct.pointwise_rows import supports_rows
from .direct.run import conv_direct, conv_direct_swapped, direct_plan

# Stride-1 layers whose (pixel, tap) pairs read the input at most this share take the swapped conv's banded
# plan (_banded_swapped). One thread, thread CPU time, medians of 10-20 calls in alternating processes (host
# shared, load 3-6), plain kernel -> banded, channels-last: ASPP's rate 18 (share 0.41) 41 -> 16.5 ms, rate 12
# (0.57) 30.6 -> 19.2; but rate 6 (0.77) 23.0 -> 24.8 and the dilated suite's res.d4 (0.82) 7.1 -> 9.9.
BANDED_MAX_READ_SHARE = 0.7


@parallel_kernel
def fold_padded(gp, starts_d, pos_d, starts_h, pos_h, starts_w, pos_w, out):
    """out[n, d, h, w, :] = sum of gp over the padded cells copied from (d, h, w), in the
    lists' order (see kernels.padding_index.gather_lists)."""
    n_img, d_n, h_n, w_n, c_n = out.shape
    for t in prange(n_img * d_n * h_n):
        n = t // (d_n * h_n)
        r = t - n * (d_n * h_n)
        d = r // h_n
        h = r - d * h_n
        for w in range(w_n):
            pix = out[n, d, h, w]
            for c in range(c_n):
                pix[c] = 0
            for a in range(starts_d[d], starts_d[d + 1]):
                for b in range(starts_h[h], starts_h[h + 1]):
                    row = gp[n, pos_d[a], pos_h[b]]
                    for e in range(starts_w[w], starts_w[w + 1]):
                        src = row[pos_w[e]]
                        for c in range(c_n):
                            pix[c] += src[c]


def _transposed_input_grad(spec, grad_output, weight):
    adj = adjoint_conv_spec(spec)
    y = choose("conv", "cpu", adj).fn(adj, grad_output, weight, None)
    return y if tuple(y.shape) == tuple(spec.input_shape) else np.ascontiguousarray(y[cut_index(spec)])


def _padded_input_grad(spec, grad_output, weight):
    """Gradient w.r.t. the padded input (channels-last, working dtype), folded back; in chunks
    of images whose padded gradient fits in the workspace cap (images are independent, so the
    chunking changes nothing in the result)."""
    dtype = working_dtype(np.dtype(spec.dtype))
    padded = padded_size(spec)
    w = as_working(weight, dtype)
    lists = [gather_lists(n, b, e, spec.padding_mode) for n, (b, e) in
             zip(lift3(spec.in_size, 1), lift3(spec.pads, (0, 0)))]
    g_all = grad_output if spec.channels_last else np.moveaxis(grad_output, 1, -1)
    out = np.empty((spec.batch, *spec.in_size, spec.in_channels), np.dtype(spec.dtype))
    per_image = math.prod(padded) * spec.in_channels * dtype.itemsize
    for n0, n1 in chunks(spec.batch, per_image, workspace_limit()):
        part = spec.with_(batch=n1 - n0)
        adj = adjoint_transpose_spec(part, ((0, 0),) * spec.nd, padded, True, dtype.name)
        gp = choose("conv_transpose", "cpu", adj).fn(adj, as_working(g_all[n0:n1], dtype), w, None)
        gp5 = np.ascontiguousarray(gp).reshape((n1 - n0, *lift3(padded, 1), spec.in_channels))
        out5 = np.empty((n1 - n0, *lift3(spec.in_size, 1), spec.in_channels), dtype)
        fold_padded(gp5, *lists[0], *lists[1], *lists[2], out5)
        out[n0:n1] = out5.reshape(out[n0:n1].shape)
    if not spec.channels_last:
        out = np.moveaxis(out, -1, 1)
    return np.ascontiguousarray(out)


def _banded_swapped(spec, swapped, grad_output, weight):
    """The swapped conv through the direct kernel's banded plan, which runs only the taps that read
    grad_output (a dilated layer's input gradient: ASPP's rate 18 reads padding at 60% of its (pixel,
    tap) pairs), on the swapped, flipped weight built first (weight[g * Kg + k, c, t] at
    [g * Cg + c, k, taps - 1 - t]): the plain kernel's tasks pack a swapped
    block as they go, the banded kernel's only the forward weight."""
    dtype = working_dtype(np.dtype(spec.dtype))
    groups, kg, cg = spec.groups, spec.out_per_group, spec.in_per_group
    w = np.asarray(weight).reshape(groups, kg, cg, -1)[..., ::-1]
    flipped = np.empty((groups, cg, kg, w.shape[3]), dtype)  # NumPy's strided copy: 0.3-0.6x a Numba loop's time
    flipped[...] = w.transpose(0, 2, 1, 3)
    return conv_direct(swapped, grad_output, flipped.reshape(swapped.weight_shape), None)


def _swapped_direct(spec):
    """The forward spec of a stride-1 layer's input gradient when the direct kernel runs it with the
    swapped weight (see the module docstring), else None."""
    if spec.transposed or spec.padding_mode not in ("zeros", "constant"):
        return None
    swapped = swapped_conv_spec(spec)
    if swapped is None or supports_rows(swapped) or choose("conv", "cpu", swapped).algo != "direct":
        return None
    return swapped


def _run_swapped(spec, swapped, grad_output, weight):
    """conv_direct_swapped, or the transposed conv where a NaN or inf weight would meet the zero
    padding: checked on the weight first or on the result after, whichever is smaller (a
    non-finite weight makes every output it reaches non-finite)."""
    after = math.prod(swapped.output_shape) < weight.size
    if after or all_finite(weight):
        if read_share(spec) <= BANDED_MAX_READ_SHARE and direct_plan(swapped).banded is not None:
            out = _banded_swapped(spec, swapped, grad_output, weight)
        else:
            out = conv_direct_swapped(swapped, grad_output, weight)
        if not after or all_finite(out):
            return out
    adj = adjoint_transpose_spec(spec, spec.pads, spec.in_size, spec.channels_last, spec.dtype)
    return choose("conv_transpose", "cpu", adj).fn(adj, grad_output, weight, None)


def _bind(spec):
    """dispatch.Implementation.bind: a repeated call's runner. A depthwise layer's (multiplier 1,
    zeros or constant padding) goes straight to its kernel: the flipped conv's spec and
    implementation (stride 1) are resolved once, not per call; the rest as conv_input_grad_adjoint."""
    generic = functools.partial(conv_input_grad_adjoint, spec)
    swapped = None if spec.is_depthwise and spec.out_per_group == 1 else _swapped_direct(spec)
    if swapped is not None:
        return functools.partial(_run_swapped, spec, swapped), ()
    if spec.transposed or spec.padding_mode not in ("zeros", "constant") or not spec.is_depthwise \
            or spec.out_per_group != 1:
        return generic, ()
    flipped = flipped_conv_spec(spec)
    if flipped is None:
        return functools.partial(depthwise_input_grad, spec), ()
    forward = choose("conv", "cpu", flipped).fn
    axes = tuple(range(2, spec.nd + 2))

    def run(grad_output, weight):
        return forward(flipped, grad_output, np.ascontiguousarray(np.flip(weight, axis=axes)), None)

    return run, ()


@register("conv_input_grad", "cpu", "adjoint", bind=_bind,
          note="the adjoint conv through the forward table (transposed for conv, conv for transposed); "
               "padded copies folded back")
def conv_input_grad_adjoint(spec, grad_output, weight):
    if spec.transposed:
        return _transposed_input_grad(spec, grad_output, weight)
    if spec.padding_mode in ("zeros", "constant"):
        if spec.is_depthwise and spec.out_per_group == 1:
            flipped = flipped_conv_spec(spec)
            if flipped is None:
                return depthwise_input_grad(spec, grad_output, weight)
            w = np.ascontiguousarray(np.flip(weight, axis=tuple(range(2, weight.ndim))))
            return choose("conv", "cpu", flipped).fn(flipped, grad_output, w, None)
        swapped = _swapped_direct(spec)
        if swapped is not None:
            return _run_swapped(spec, swapped, grad_output, weight)
        adj = adjoint_transpose_spec(spec, spec.pads, spec.in_size, spec.channels_last, spec.dtype)
        return choose("conv_transpose", "cpu", adj).fn(adj, grad_output, weight, None)
    return _padded_input_grad(spec, grad_output, weight)
