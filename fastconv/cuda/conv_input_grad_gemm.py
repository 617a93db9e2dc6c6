"""Input gradient of a 1x1, stride-1 convolution on the GPU (algo "gemm"), the twin of
cpu/conv/input_grad_gemm.py: per group, ``x_grad (N*P, Cg) = grad_output (N*P, Kg) @ W (Kg, Cg)``.

It is the forward GEMM of cuda/conv_im2col.py run on the adjoint's operands: grad_output's
channels-last working copy is the column matrix (no im2col), the weight (K, Cg) already is
the packed (groups, Kg, Cg) matrix, and the GEMM's epilogue stores the input gradient in the
user's layout and dtype. The reduction (over Kg) is never split, so each element is one
thread's sum in a fixed order: the same bits on every run and every GPU. A strided 1x1 layer
takes the adjoint (its input gradient is zero off the strided pixels).
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np

from ..dispatch import register
from ..kernels.geometry import lift3
from . import streams
from ._jit import WORK_NP
from .conv_im2col import GemmPlan
from .conv_input_grad import _working_weight
from .pad import bias_or_dummy, needs_pad, pad_launch, working_input


def supports(spec):
    if not spec.is_pointwise:
        return "kernel must be 1x1 with no padding (pointwise)"
    if any(s != 1 for s in spec.stride):
        return "stride must be 1 (a strided 1x1 layer takes the adjoint)"
    return None


def _adjoint(spec):
    """The shape of the 1x1 forward conv that GemmPlan runs: grad_output's K channels in,
    the C input channels out."""
    return SimpleNamespace(kernel=(1,), in_per_group=spec.out_per_group, out_per_group=spec.in_per_group,
                           groups=spec.groups, out_channels=spec.in_channels, dtype=spec.dtype,
                           channels_last=spec.channels_last)


def _rows(spec) -> int:
    return spec.batch * math.prod(spec.out_size)


def launches(spec) -> list:
    out3 = lift3(spec.out_size, 1)
    zero = ((0, 0),) * 3
    pad = []
    if needs_pad(out3, zero, spec.dtype, spec.channels_last):
        pad = [pad_launch(spec.batch, spec.out_channels, out3, zero, spec.dtype, spec.channels_last)]
    return pad + GemmPlan(_adjoint(spec), _rows(spec), max_splits=1).launches(_rows(spec))


@register("conv_input_grad", "cuda", "gemm", supports=supports,
          note="1x1 stride-1 input gradient as the Numba tiled GEMM (grad_output @ W), no split-K: "
               "the forward GEMM of conv_im2col on the adjoint's operands")
def conv_input_grad_gemm(spec, grad_output, weight):
    work_np = WORK_NP[spec.dtype]
    out3 = lift3(spec.out_size, 1)
    g5 = working_input(grad_output, spec.nd, spec.batch, spec.out_channels, out3, ((0, 0),) * 3, "zeros", 0.0,
                       spec.dtype, spec.channels_last)
    rows = _rows(spec)
    a = g5.reshape(rows, spec.out_channels)
    wmat = _working_weight(weight, spec.dtype).reshape(spec.groups, spec.out_per_group, spec.in_per_group)
    shape = (spec.batch, *out3, spec.in_channels) if spec.channels_last else (spec.batch, spec.in_channels, *out3)
    out = streams.device_array(shape, np.dtype(spec.dtype))
    bias, has_bias = bias_or_dummy(None, spec.dtype)
    GemmPlan(_adjoint(spec), rows, max_splits=1).run(a, spec.out_per_group, wmat, bias, has_bias, out, 0, 0, rows,
                                                     work_np)
    return out.reshape(*spec.input_shape)
