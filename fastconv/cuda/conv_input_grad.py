"""Convolution input gradients on the GPU (algo "adjoint"): the adjoint convolution through
the GPU forward table (fastconv.spec.adjoint), as on the CPU; stride-1 depthwise layers
(multiplier 1, zeros or constant padding) the forward depthwise conv of grad_output with
the weight flipped on the device (flip.py; strided ones take algo "depthwise",
conv_input_grad_depthwise.py, by default). Padding modes other than zeros and constant
take the transposed conv at the padded size, in the working dtype and channels-last, then
:func:`fold_kernel` gathers each input pixel's padded copies in the fixed order of
kernels.padding_index.gather_lists: one thread per input element, no atomics.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from ..dispatch import choose, register
from ..kernels.element_index import element_position
from ..kernels.geometry import lift3
from ..kernels.padding_index import gather_lists
from ..spec.adjoint import adjoint_conv_spec, adjoint_transpose_spec, cut_index, flipped_conv_spec, padded_size
from . import streams
from ._jit import SUFFIX, WORK, WORK_NP, Kernel, array, elementwise, i64, specialised
from .cast import converted
from .flip import flip_launch
from .flip import flipped as flipped_weight
from .pad import contiguous, lift5, working_input


@specialised
def fold_kernel(dtype: str, channels_last: bool) -> Kernel:
    """out[n, (c,) d, h, w (, c)] = sum of gp[n, pd, ph, pw, c] over the padded cells copied
    from (d, h, w); channel fastest, so gp's reads coalesce."""
    work = WORK[dtype]
    cl = channels_last

    def kernel_fn(gp, starts_d, pos_d, starts_h, pos_h, starts_w, pos_w, out):
        if cl:
            n_img, d_n, h_n, w_n, c_n = out.shape
        else:
            n_img, c_n, d_n, h_n, w_n = out.shape
        total = n_img * d_n * h_n * w_n * c_n
        i = cuda.grid(1)
        step = cuda.gridsize(1)
        while i < total:
            n, c, d, h, w = element_position(i, True, c_n, d_n, h_n, w_n)  # channel fastest in both layouts
            acc = work(0)
            for a in range(starts_d[d], starts_d[d + 1]):
                for b in range(starts_h[h], starts_h[h + 1]):
                    for e in range(starts_w[w], starts_w[w + 1]):
                        acc += gp[n, pos_d[a], pos_h[b], pos_w[e], c]
            if cl:
                out[n, d, h, w, c] = acc
            else:
                out[n, c, d, h, w] = acc
            i += step

    argtypes = (array(work, 5),) + (array(i64, 1),) * 6 + (array(dtype, 5),)
    return Kernel(f"fold_padded_to_{'ndhwc' if cl else 'ncdhw'}_{SUFFIX[dtype]}", kernel_fn, argtypes, 256, 0)


def _working_weight(weight, dtype: str):
    """float16 weights in float32, converted on the device."""
    if dtype != "float16":
        return contiguous(weight)
    return converted(weight, np.float32)


def _padded_input_grad(spec, grad_output, weight):
    work = np.dtype(WORK_NP[spec.dtype]).name
    padded = padded_size(spec)
    adj = adjoint_transpose_spec(spec, ((0, 0),) * spec.nd, padded, True, work)
    g5 = working_input(grad_output, spec.nd, spec.batch, spec.out_channels, lift3(spec.out_size, 1),
                       ((0, 0),) * 3, "zeros", 0.0, spec.dtype, spec.channels_last)
    g = g5.reshape(spec.batch, *spec.out_size, spec.out_channels)
    gp = choose("conv_transpose", "cuda", adj).fn(adj, g, _working_weight(weight, spec.dtype), None)
    gp5 = lift5(gp, spec.nd, True)
    lists = [streams.to_device(a) for n, (b, e) in zip(lift3(spec.in_size, 1), lift3(spec.pads, (0, 0)))
             for a in gather_lists(n, b, e, spec.padding_mode)]
    in3 = lift3(spec.in_size, 1)
    shape = (spec.batch, *in3, spec.in_channels) if spec.channels_last else (spec.batch, spec.in_channels, *in3)
    out = streams.device_array(shape, np.dtype(spec.dtype))
    total = spec.batch * spec.in_channels * in3[0] * in3[1] * in3[2]
    elementwise(fold_kernel(spec.dtype, spec.channels_last), total, "fold")(gp5, *lists, out)
    return out.reshape(*spec.input_shape)


def launches(spec) -> list:
    """The kernels the adjoint runs for ``spec``: those of the forward-table call it makes
    (algo "auto", after the weight's flip for a stride-1 depthwise layer), then the fold
    kernel for padding modes other than zeros and constant."""
    from . import launches as table_launches

    def through(family, adj):
        return table_launches(family, choose(family, "cuda", adj).algo, adj)

    if spec.transposed:
        return through("conv", adjoint_conv_spec(spec))
    if spec.padding_mode in ("zeros", "constant"):
        flipped = flipped_conv_spec(spec) if spec.is_depthwise else None
        if flipped is not None:
            return [flip_launch(spec.weight_shape, spec.dtype)] + through("conv", flipped)
        return through("conv_transpose", adjoint_transpose_spec(spec, spec.pads, spec.in_size, spec.channels_last,
                                                                spec.dtype))
    work = np.dtype(WORK_NP[spec.dtype]).name
    adj = adjoint_transpose_spec(spec, ((0, 0),) * spec.nd, padded_size(spec), True, work)
    total = spec.batch * spec.in_channels * math.prod(spec.in_size)
    return through("conv_transpose", adj) + [elementwise(fold_kernel(spec.dtype, spec.channels_last), total, "fold")]


@register("conv_input_grad", "cuda", "adjoint",
          note="the adjoint conv through the GPU forward table; padded copies folded back by a gather kernel")
def conv_input_grad_adjoint(spec, grad_output, weight):
    if spec.transposed:
        adj = adjoint_conv_spec(spec)
        y = choose("conv", "cuda", adj).fn(adj, grad_output, weight, None)
        return y if tuple(y.shape) == tuple(spec.input_shape) else contiguous(y[cut_index(spec)])
    if spec.padding_mode in ("zeros", "constant"):
        flipped = flipped_conv_spec(spec) if spec.is_depthwise else None
        if flipped is not None:
            return choose("conv", "cuda", flipped).fn(flipped, grad_output, flipped_weight(weight, spec.nd), None)
        adj = adjoint_transpose_spec(spec, spec.pads, spec.in_size, spec.channels_last, spec.dtype)
        return choose("conv_transpose", "cuda", adj).fn(adj, grad_output, weight, None)
    return _padded_input_grad(spec, grad_output, weight)
