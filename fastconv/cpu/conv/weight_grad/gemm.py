"""Weight gradient of a 1x1 convolution as GEMMs in the user's layout (algo "gemm"):
``dW (K, C) = sum_n grad_output_n (K, P) @ x_n^T (P, C)``, images added in order,
channels-first; ``dW = grad_output^T (K, N*P) @ x (N*P, C)`` channels-last. A stride reads
x through a strided view, copied once (1/stride^d of x).

The output is small and the sum long, so each product runs through
fastconv.cpu.blas.gemm_sum: the pixel sum cut into pieces fixed by the shapes, the
pieces' partials added in order, so the result is bitwise the same on any number of
threads. Copies by chunks of images (see pointwise_operands) split the channels-last sum
by chunk: the result then depends on the workspace cap, never on the thread count.

Channels-last stride-1 layers whose operands are C-contiguous in the working dtype run
weight_grad/pointwise.py's register tiles instead, read in place, where its ``takes`` says
they are faster (in-channels within one vector, or at least the out-channels); so do
channels-first batches that ``first_takes`` (expanding 4 times or more), their C-contiguous
grad_output read in place and their input copied channels-last; other ungrouped channels-first
layers where ``conv_takes`` run the forward 1x1 kernel per image (weight_grad/pointwise_conv.py).
"""

from __future__ import annotations

import math

import numpy as np

from ...._arrays import working_dtype
from ....dispatch import register
from ...blas import gemm_sum
from ..pointwise_operands import image_chunks, pointwise, strided_pixels
from .operands import working_ndhwc
from .pointwise import first_takes, pointwise_weight_grad, takes
from .pointwise_conv import conv_takes, conv_weight_grad


@register("conv_weight_grad", "cpu", "gemm", supports=pointwise,
          note="1x1 weight gradient as GEMMs in the user's layout (grad_output @ input^T, images in order)")
def conv_weight_grad_gemm(spec, x, grad_output):
    dtype = working_dtype(np.dtype(spec.dtype))
    groups, cg, kg = spec.groups, spec.in_per_group, spec.out_per_group
    cl = spec.channels_last
    # grad_output's own extent (a transposed conv's may stop short of spec.out_size)
    g_size = grad_output.shape[1:-1] if cl else grad_output.shape[2:]
    if any(s != 1 for s in spec.stride) or tuple(g_size) != tuple(spec.in_size):
        x = x[strided_pixels(spec, g_size)]
    pixels = math.prod(g_size)
    if cl and takes(cg, kg, dtype) and all(a.dtype == dtype and a.flags.c_contiguous for a in (x, grad_output)):
        rows = spec.batch * pixels
        grad = pointwise_weight_grad(x.reshape(rows, spec.in_channels), grad_output.reshape(rows, spec.out_channels),
                                     groups, dtype)
        return grad.reshape(spec.weight_shape).astype(spec.dtype, copy=False)
    in_place = grad_output.dtype == dtype and grad_output.flags.c_contiguous
    if not cl and in_place and first_takes(cg, kg, spec.batch, dtype):
        rows = working_ndhwc(x, spec.nd, False, ((0, 0),) * 3, "zeros", 0.0, dtype).reshape(-1, spec.in_channels)
        grad = pointwise_weight_grad(rows, grad_output.reshape(spec.batch, spec.out_channels, pixels), groups, dtype,
                                     plane=pixels)
        return grad.reshape(spec.weight_shape).astype(spec.dtype, copy=False)
    if not cl and in_place and groups == 1 and conv_takes(cg, kg, pixels):
        rows = np.ascontiguousarray(x, dtype=dtype).reshape(spec.batch, spec.in_channels, pixels)
        grad = conv_weight_grad(rows, grad_output.reshape(spec.batch, spec.out_channels, pixels), dtype)
        return grad.reshape(spec.weight_shape).astype(spec.dtype, copy=False)
    grad = np.zeros((spec.out_channels, cg), dtype)
    operands = [(x, spec.in_channels), (grad_output, spec.out_channels)]
    for n0, n1 in image_chunks(spec.batch, operands, pixels, dtype):
        xs = np.ascontiguousarray(x[n0:n1], dtype=dtype)
        gs = np.ascontiguousarray(grad_output[n0:n1], dtype=dtype)
        n = n1 - n0
        if cl:
            xr, gr = xs.reshape(n * pixels, spec.in_channels), gs.reshape(n * pixels, spec.out_channels)
            for j in range(groups):
                gemm_sum(gr[:, j * kg:(j + 1) * kg].T, xr[:, j * cg:(j + 1) * cg], grad[j * kg:(j + 1) * kg],
                         accumulate=True)
        else:
            xp, gp = xs.reshape(n, spec.in_channels, pixels), gs.reshape(n, spec.out_channels, pixels)
            for i in range(n):
                for j in range(groups):
                    gemm_sum(gp[i, j * kg:(j + 1) * kg], xp[i, j * cg:(j + 1) * cg].T, grad[j * kg:(j + 1) * kg],
                             accumulate=True)
        xs = gs = None
    return grad.reshape(spec.weight_shape).astype(spec.dtype, copy=False)
