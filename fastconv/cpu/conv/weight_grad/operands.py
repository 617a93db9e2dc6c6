"""The operands of a weight-gradient kernel, in the working layout.

The weight gradient of ``out[o] = sum_t x_padded[o * stride + t * dilation] * w[t]`` is
``dw[t] = sum_o grad_output[o] * x_padded[o * stride + t * dilation]``: the kernels read
the padded input exactly as the forward conv does (every padding mode, constant value
included), and grad_output, both channels-last, 3-D-lifted, C-contiguous, working dtype.
"""

from __future__ import annotations

import numpy as np

from ...._arrays import working_dtype
from ....kernels.geometry import geometry3
from ...layout import as_working, channels_last_5d, padded_input


def weight_grad_operands(spec, x, grad_output):
    """(padded input (N, Dp, Hp, Wp, C), grad_output (N, OD, OH, OW, K), working dtype) of a
    forward conv ``spec``. grad_output may have fewer output positions than ``spec.out_size``
    (a transposed conv's weight gradient, output_padding >= stride): the kernels run over its
    own extent."""
    dtype = working_dtype(np.dtype(spec.dtype))
    x5 = channels_last_5d(x, spec.nd, spec.channels_last)
    xp = padded_input(x5, geometry3(spec), spec.padding_mode, spec.padding_value, dtype)
    g5 = channels_last_5d(grad_output, spec.nd, spec.channels_last)
    g5 = np.ascontiguousarray(as_working(g5, dtype), dtype)
    return xp, g5, dtype


def weight_from_working(w5, spec):
    """(K, KD, KH, KW, Cg) working array -> (K, Cg, *kernel) in the spec's dtype."""
    k, cg = w5.shape[0], w5.shape[-1]
    w = np.moveaxis(w5, -1, 1).reshape(k, cg, *spec.kernel)
    return np.ascontiguousarray(w, dtype=np.dtype(spec.dtype))
