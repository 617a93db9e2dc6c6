"""numba.cuda GPU kernels; importing this package registers them in fastconv.dispatch.

Reached for inputs with ``__cuda_array_interface__`` (CuPy arrays, Numba device arrays)
or ``device="cuda"``. Without a GPU the same kernels run under Numba's CUDA simulator
(NUMBA_ENABLE_CUDASIM=1). Kernels never fall back to the CPU.

Kernel factories and options: :mod:`fastconv.cuda._jit`. ``launches(family, algo, spec)``
lists the kernel specialisations, grids and blocks a call runs (read by tools/).

``with fastconv.cuda.stream(s):`` queues the block's GPU ops on stream ``s`` (a Numba,
PyTorch or CuPy stream) instead of the default stream: :mod:`fastconv.cuda.streams`.

=================  ===========================================================
module             kernels
=================  ===========================================================
pad                padded channels-last working copy (padding_index maps,
                   dtype conversion, 32x32 shared-memory transpose)
conv_direct        shared input tile with halo + staged weights, 4x4
                   (pixels x channels) register tile per thread
conv_im2col        im2col, weight packing, tiled shared-memory GEMM with
                   deterministic split-K (also serves algo="gemm" for 1x1)
conv_depthwise     shared input tile per 32-channel block, register sliding
                   window, channel multiplier
conv_transpose     gather form (no atomics), weights staged per channel chunk
conv_weight_grad   weight gradients: a block per tap and 32 weight elements,
                   pixels in 8 fixed slices, fixed shared-memory tree sum
conv_weight_grad_  depthwise weight gradients: a block per 32 out-channels and a
depthwise          tap group, fixed pixel segments in registers, fixed-order
                   segment sum (bitwise the same for any grid)
conv_input_grad    input gradients: the adjoint conv through the table above;
                   padded copies folded back by a gather kernel
conv_input_grad_   strided depthwise input gradients: one thread per input
depthwise          element gathers its channel's taps, user layout in place
conv_input_grad_   1x1 stride-1 input gradients: conv_im2col's GEMM on the
gemm               adjoint's operands (grad_output @ W), no split-K
conv_weight_grad_  weight gradients through GEMM (im2col columns, or the input
gemm               itself for 1x1): fixed pixel segments, summed in order
pool_window        max (+ indices) / avg / Lp, one thread per output
pool_adaptive      adaptive/global avg and max: thread or warp per output
pool_grad          pooling gradients (window and adaptive), gather form: one
                   thread per input element, no atomics
cast               elementwise dtype conversion / absolute value (gradient
                   paths' float16 widening and |x|, without a host round trip)
bias_grad          conv bias gradient: a block per channel (or 32 channels,
                   channels-last), fixed-order shared-memory tree sum
flip               a weight reversed along its spatial axes (stride-1 depthwise
                   input gradients), one thread per element
=================  ===========================================================
"""

from . import (  # noqa: F401  (importing registers the implementations)
    conv_depthwise,
    conv_direct,
    conv_im2col,
    conv_input_grad,
    conv_input_grad_depthwise,
    conv_input_grad_gemm,
    conv_transpose,
    conv_weight_grad,
    conv_weight_grad_depthwise,
    conv_weight_grad_gemm,
    pool_adaptive,
    pool_grad,
    pool_window,
)
from .streams import current_stream, stream  # noqa: F401  (the public stream API)

MODULES = {
    "conv": {"direct": conv_direct, "im2col": conv_im2col, "depthwise": conv_depthwise, "gemm": conv_im2col},
    "conv_transpose": {"direct": conv_transpose},
    "conv_input_grad": {"adjoint": conv_input_grad, "depthwise": conv_input_grad_depthwise,
                        "gemm": conv_input_grad_gemm},
    "conv_weight_grad": {"direct": conv_weight_grad, "depthwise": conv_weight_grad_depthwise,
                         "im2col": conv_weight_grad_gemm, "gemm": conv_weight_grad_gemm,
                         "tiled": conv_weight_grad_gemm.implicit_launches},
    "pool": {"direct": pool_window},
    "adaptive_pool": {"direct": pool_adaptive},
    "pool_grad": {"gather": pool_grad},
    "adaptive_pool_grad": {"gather": pool_grad},
}


def launches(family: str, algo: str, spec) -> list:
    """The kernel launches (specialisation, grid, block) that ``algo`` runs for ``spec``."""
    entry = MODULES[family][algo]
    return entry(spec) if callable(entry) else entry.launches(spec)
