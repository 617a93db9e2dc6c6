"""Input gradient of a 1x1 convolution as one GEMM in the user's layout (dispatch family
"conv_input_grad", algo "gemm"): ``x_grad (C, P) = W^T (C, K) @ grad_output (K, P)`` per
image channels-first, ``x_grad (N*P, C) = grad_output (N*P, K) @ W (K, C)`` channels-last.
With a stride the product lands on the pixels the forward read, the others are zero. GEMM
blocks (fastconv.cpu.blas.gemm) split the output, never a sum, and are counted for
GEMM_THREADS threads whatever the actual count (OpenBLAS's sums may differ in the last bit
between block widths: a 126 x 37 @ 37 x 70 product did on 1 and 2 threads): the result is
bitwise the same on any number of threads.

Channels-last stride-1 layers of at least ROWS_MIN_PIXELS pixels whose grad_output is
C-contiguous in the working dtype run the forward's own 1x1 kernel instead
(conv/direct/pointwise_rows.py: the conv of grad_output with the weight's channel axes
swapped, spec.adjoint.swapped_conv_spec): 0.65-0.85x the OpenBLAS product's time on
MobileNetV2's and the dw_vs_standard suite's layers of 784 pixels and more, but 1.1-1.9x
on those of 49-361 pixels (b8/b10.expand, b11.project, 728 channels at 19x19). Most of that
was the weight's transposed copy: ungrouped layers whose weight is at most PREPACK_BYTES and
whose in-channels are whole blocks of V take the kernel at any pixel count, the weight packed
straight from the forward's (:func:`packed_rows_plan`). One thread on the Ice Lake Xeon, thread
CPU time, interleaved in one process (host loaded), input gradient / forward, before -> after:
MobileNetV2's b4.project 1.13 -> 0.83, b5.project 1.51 -> 1.08, b6.expand 1.34 -> 0.93,
b7.expand 1.39 -> 1.05, b8.expand 1.15 -> 0.88, b9.expand 1.15 -> 0.95, ResNet-50's l3.1x1b
1.35 -> 1.11; layers of 784 pixels and more and 7x7 ones within 0.06 either way.

A strided layer whose stride-1 twin on the pixels it reads (:func:`dense_spec`) takes the row kernel
runs the twin and spreads its gradient over those pixels, zeros between (ResNet-50's l2.down
channels-last, one thread, host loaded: 0.81x OpenBLAS's time).
"""

from __future__ import annotations

import math

import numpy as np

from ..._arrays import working_dtype
from ..._cache import cached_plan
from ...dispatch import register
from ...spec.adjoint import swapped_conv_spec
from ...spec.conv import resolve_conv
from ..blas import gemm
from ..vector.aligned import aligned_empty
from .direct.pointwise_rows import PREPACK_BYTES, rows_plan, run_rows
from .pointwise_operands import image_chunks, pointwise, strided_pixels
from .transpose.phase_split import phase_packed

ROWS_MIN_PIXELS = 512  # N x pixels, at least, for the forward's 1x1 kernel
# Blocks counted for this many threads: products under 16M multiply-adds in 2 blocks, larger ones in up to 8
# (blas.BLOCK_MACS). Counted for 8, each block repacked a (576 x 96) weight: MobileNetV2's b8.expand took 1.2x.
GEMM_THREADS = 2


FIRST_TAP = np.zeros(1, np.int64)  # phase_packed's taps: the 1x1 weight's one
# Channels-first layers take the row kernel (planes read in place) within these pixels (N x pixels) and
# multiply-adds: MobileNetV2's b4-b7 (one thread, input gradient / forward, before -> after: b5.expand 1.69
# -> 1.40, b6.expand 1.44 -> 1.20, b7.expand 1.45 -> 1.24). Larger layers ran 1.1-1.9x faster on OpenBLAS
# (ResNet-50's, the dw_vs_standard layers); 7x7 ones and b8 (10.8M multiply-adds) neither way.
ROWS_FIRST_PIXELS = (196, 1024)
ROWS_FIRST_MAX_MACS = 1 << 23


@cached_plan
def packed_rows_plan(spec):
    """The row kernel's plan for an ungrouped stride-1 layer's input gradient, its weight packed as the
    kernel reads it (RowsPlan.packed) straight from the forward's: (K, C) is the (C, K) weight of a one-tap
    transposed conv, whose packing (transpose.phase_split.phase_packed) copies runs of V channels of its
    rows, where numpy's transposed copy of it read one element per line. Where the weight is at most
    PREPACK_BYTES (the forward's rule for packing once per call), C whole blocks of V (run_rows reads the
    packed weight in the weight's shape), and channels-first, the layer within ROWS_FIRST_PIXELS and
    ROWS_FIRST_MAX_MACS; else None."""
    low, high = ROWS_FIRST_PIXELS
    small = low <= spec.batch * math.prod(spec.out_size) <= high and spec.macs <= ROWS_FIRST_MAX_MACS
    swapped = swapped_conv_spec(spec) if spec.groups == 1 and (spec.channels_last or small) else None
    if swapped is None:
        return None
    plan = rows_plan(swapped)
    if spec.in_channels % plan.shape.v or spec.out_channels * spec.in_channels * plan.dtype.itemsize > PREPACK_BYTES:
        return None
    return plan._replace(packed=True)


@cached_plan
def dense_spec(spec):
    """A strided conv's stride-1 twin on the pixels it reads (its input gradient, spread over those pixels
    with zeros between, is the strided one's: the product then takes the stride-1 routes), else None."""
    if spec.transposed or all(s == 1 for s in spec.stride):
        return None
    size = (spec.batch, *spec.out_size, spec.in_channels) if spec.channels_last else \
        (spec.batch, spec.in_channels, *spec.out_size)
    return resolve_conv(f"conv{spec.nd}d", size, spec.weight_shape, groups=spec.groups,
                        channels_last=spec.channels_last, dtype=spec.dtype)


@register("conv_input_grad", "cpu", "gemm", supports=pointwise,
          note="1x1 input gradient as one GEMM in the user's layout (W^T @ grad_output)")
def conv_input_grad_gemm(spec, grad_output, weight):
    dtype = working_dtype(np.dtype(spec.dtype))
    groups, cg, kg = spec.groups, spec.in_per_group, spec.out_per_group
    pixels = math.prod(spec.out_size)
    in_place = grad_output.dtype == dtype and grad_output.flags.c_contiguous
    dense = dense_spec(spec) if in_place else None
    if dense is not None and (packed_rows_plan(dense) is not None or
                              (spec.channels_last and spec.batch * pixels >= ROWS_MIN_PIXELS)):
        result = np.zeros(spec.input_shape, np.dtype(spec.dtype))
        result[strided_pixels(spec, spec.out_size)] = conv_input_grad_gemm(dense, grad_output, weight)
        return result
    packed = packed_rows_plan(spec) if in_place else None
    if packed is not None:
        w_packed = aligned_empty.py_func(packed.no_bias.size * kg, dtype, packed.shape.lanes)
        phase_packed(np.ascontiguousarray(weight, dtype=dtype).reshape(-1), kg, FIRST_TAP, packed.shape.v, w_packed)
        return run_rows(packed, grad_output, w_packed, None)
    swapped = swapped_conv_spec(spec) if spec.channels_last and spec.batch * pixels >= ROWS_MIN_PIXELS else None
    if swapped is not None and in_place:
        w_swapped = np.ascontiguousarray(weight.reshape(groups, kg, cg).transpose(0, 2, 1), dtype=dtype)
        return run_rows(rows_plan(swapped), grad_output, w_swapped.reshape(spec.in_channels, kg), None)
    w = np.ascontiguousarray(weight.reshape(spec.out_channels, cg), dtype=dtype)
    has_stride = any(s != 1 for s in spec.stride)
    # the product goes straight into the result, unless it must be spread over strided
    # pixels (the rest zero) or rounded to float16
    direct = not has_stride and dtype == np.dtype(spec.dtype)
    result = (np.empty if direct else np.zeros)(spec.input_shape, np.dtype(spec.dtype))
    dense = spec.output_shape[1:-1] + (spec.in_channels,) if spec.channels_last else \
        (spec.in_channels, *spec.output_shape[2:])
    operands = [(grad_output, spec.out_channels)] + ([] if direct else [(None, spec.in_channels)])
    for n0, n1 in image_chunks(spec.batch, operands, pixels, dtype):
        gs = np.ascontiguousarray(grad_output[n0:n1], dtype=dtype)
        n = n1 - n0
        out = result[n0:n1] if direct else np.empty((n, *dense), dtype)
        if spec.channels_last:
            rows, o = gs.reshape(n * pixels, spec.out_channels), out.reshape(n * pixels, spec.in_channels)
            for j in range(groups):
                gemm(rows[:, j * kg:(j + 1) * kg], w[j * kg:(j + 1) * kg], o[:, j * cg:(j + 1) * cg],
                     threads=GEMM_THREADS)
        else:
            planes, o = gs.reshape(n, spec.out_channels, pixels), out.reshape(n, spec.in_channels, pixels)
            for j in range(groups):
                gemm(w[j * kg:(j + 1) * kg].T, planes[:, j * kg:(j + 1) * kg], o[:, j * cg:(j + 1) * cg],
                     threads=GEMM_THREADS)
        if not direct:
            result[n0:n1][strided_pixels(spec, spec.out_size)] = out
        gs = rows = planes = out = o = None  # the next chunk's copies are not allocated while these live
    return result
