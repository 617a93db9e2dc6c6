"""Input gradient of a strided depthwise convolution on the GPU (algo "depthwise":
multiplier 1, zeros or constant padding): the twin of cpu/conv/depthwise_input_grad.py.

Input pixel i gets grad_output[o] * w[t] for every tap t with o * stride + t * dilation -
pad == i. The generic transposed conv runs every (channel, tap) pair through its grouped
machinery; here one thread owns one input-gradient element and adds its channel's taps
in the fixed order (kd, kh, kw), reading grad_output and the weight of its own channel
only. Threads follow the user's layout (channel fastest channels-last, column fastest
channels-first), which is read and written in place: no padded or transposed copies, no
atomics. float16 is read as float16 and summed in float32.

Stride-1 layers whose flipped kernel fits the pads take the forward depthwise kernel with
the flipped weight instead (conv_input_grad.py), as on the CPU.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from ..dispatch import register
from ..kernels.element_index import element_position
from ..kernels.geometry import geometry3
from . import streams
from ._jit import SUFFIX, WORK, Kernel, array, elementwise, i64, layout_name, specialised
from .pad import lift5, lift_weight


@specialised
def depthwise_input_grad_kernel(dtype: str, channels_last: bool) -> Kernel:
    work = WORK[dtype]
    cl = channels_last

    def kernel_fn(g, w, out, sd, sh, sw, dd, dh, dw, pd, ph, pw):
        if cl:
            n_img, d_n, h_n, w_n, c_n = out.shape
            od_n, oh_n, ow_n = g.shape[1], g.shape[2], g.shape[3]
        else:
            n_img, c_n, d_n, h_n, w_n = out.shape
            od_n, oh_n, ow_n = g.shape[2], g.shape[3], g.shape[4]
        kd_n, kh_n, kw_n = w.shape[2], w.shape[3], w.shape[4]
        total = n_img * c_n * d_n * h_n * w_n
        i = cuda.grid(1)
        step = cuda.gridsize(1)
        while i < total:
            n, c, i_d, ih, iw = element_position(i, cl, c_n, d_n, h_n, w_n)
            acc = work(0)
            for kd in range(kd_n):
                qd = i_d + pd - kd * dd
                if qd < 0:
                    break
                od = qd // sd
                if od * sd != qd or od >= od_n:
                    continue
                for kh in range(kh_n):
                    qh = ih + ph - kh * dh
                    if qh < 0:
                        break
                    oh = qh // sh
                    if oh * sh != qh or oh >= oh_n:
                        continue
                    for kw in range(kw_n):
                        qw = iw + pw - kw * dw
                        if qw < 0:
                            break
                        ow = qw // sw
                        if ow * sw != qw or ow >= ow_n:
                            continue
                        if cl:
                            gv = g[n, od, oh, ow, c]
                        else:
                            gv = g[n, c, od, oh, ow]
                        acc += work(gv) * work(w[c, 0, kd, kh, kw])
            if cl:
                out[n, i_d, ih, iw, c] = acc
            else:
                out[n, c, i_d, ih, iw] = acc
            i += step

    argtypes = (array(dtype, 5), array(dtype, 5), array(dtype, 5)) + (i64,) * 9
    name = f"depthwise_input_grad_{layout_name(3, cl)}_{SUFFIX[dtype]}"
    return Kernel(name, kernel_fn, argtypes, 256, 0)


def _launch(spec):
    return elementwise(depthwise_input_grad_kernel(spec.dtype, spec.channels_last),
                       spec.batch * spec.in_channels * int(np.prod(spec.in_size)), "depthwise input_grad")


def launches(spec) -> list:
    return [_launch(spec)]


def _supports(spec):
    if spec.transposed or not spec.is_depthwise or spec.out_per_group != 1:
        return "needs a depthwise conv (groups == in_channels) with one output channel per group"
    if spec.padding_mode not in ("zeros", "constant"):
        return f"needs zeros or constant padding, got padding_mode={spec.padding_mode!r}"
    return None


@register("conv_input_grad", "cuda", "depthwise", supports=_supports,
          note="numba.cuda: one thread per input element gathers its channel's taps, the user's layout in "
               "place, no atomics (strided depthwise layers)")
def conv_input_grad_depthwise(spec, grad_output, weight):
    geom = geometry3(spec)
    in5 = (spec.batch, *geom.in_size, spec.in_channels) if spec.channels_last else \
        (spec.batch, spec.in_channels, *geom.in_size)
    out = streams.device_array(in5, np.dtype(spec.dtype))
    if out.size:
        _launch(spec)(lift5(grad_output, spec.nd, spec.channels_last), lift_weight(weight, spec.nd), out,
                      *geom.stride, *geom.dilation, *(b for b, _ in geom.pads))
    return out.reshape(*spec.input_shape)
