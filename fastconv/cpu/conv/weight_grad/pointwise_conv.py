"""Weight gradient of a channels-first 1x1 convolution as the forward 1x1 convolution (weight_grad/gemm.py
calls it where :func:`conv_takes`).

Per image, grad_output (K, P) and the input (C, P) both have their pixels contiguous, so
``dW (K, C) = g @ x.T`` is a 1x1 conv that reads them in place: input (1, 1, K, P) channels-last
(K "pixels" of P "channels"), weight (C, P, 1, 1), output (1, 1, K, C), run by the forward table's
kernel (conv/direct/pointwise_rows.py: its tiles keep each output's whole sum over P in registers,
so the result does not depend on the thread count). Images are added in order.

Channels-last layers would need both operands transposed first: a Numba transposition ran about
8 GB/s on one thread, and with it 28x28 512->128 took 2.0 ms against the tiles' 1.5.
"""

from __future__ import annotations

import numpy as np

from ...._cache import cached_plan
from ....dispatch import choose
from ....spec.conv import resolve_conv


def conv_takes(cg: int, kg: int, pixels: int) -> bool:
    """Whether a channels-first layer's gradient takes the forward kernel rather than gemm_sum or the
    tiles: rows of at most 1024 pixels, 64 channels or more. One thread, float32, batch 1, host loaded,
    in-process, interleaved, conv / gemm_sum: 14x14 64->384 0.58, 384->96 0.73, 7x7 160->960 0.76,
    28x28 512->128 and 256->256 0.70; but 56x56 256->128 1.05, 64->64 and 24->144 1.0-1.3, 112x112
    32->32 2.1 (short rows of long sums)."""
    return min(cg, kg) >= 64 and pixels <= 1024


@cached_plan
def _forward(k_n: int, pixels: int, c_n: int, dtype: str):
    spec = resolve_conv("conv2d", (1, 1, k_n, pixels), (c_n, pixels, 1, 1), channels_last=True, dtype=dtype)
    return spec, choose("conv", "cpu", spec).fn


def conv_weight_grad(x, grad_output, dtype) -> np.ndarray:
    """(K, C) gradient from x (N, C, P) and grad_output (N, K, P), C-contiguous in ``dtype``, one group."""
    batch, c_n, pixels = x.shape
    k_n = grad_output.shape[1]
    spec, fn = _forward(k_n, pixels, c_n, np.dtype(dtype).name)
    grad = None
    for n in range(batch):
        part = fn(spec, grad_output[n].reshape(1, 1, k_n, pixels), x[n].reshape(c_n, pixels, 1, 1), None)
        part = part.reshape(k_n, c_n)
        grad = part if grad is None else np.add(grad, part, out=grad)
    return grad
