"""Backend-neutral kernel helpers: what the CPU (:mod:`fastconv.cpu`) and GPU
(:mod:`fastconv.cuda`) kernels share, imported by both, importing neither.

=================  ===========================================================
module             what it holds
=================  ===========================================================
inline             ``inline_helper``: Numba functions inlined into CPU and CUDA kernels
geometry           ``lift3``/``geometry3``: 1-D and 2-D specs lifted to 3-D
activation         the fused activations' codes and ``activate``
padding_index      where each padded position reads from, per padding mode
pool_taps          window bounds and divisors of max/avg/Lp pooling
adaptive_bounds    adaptive pooling's cell bounds
transpose_taps     which input a transposed convolution's output reads per tap
=================  ===========================================================

Nothing here starts a thread pool: Numba's CPU workers start with :mod:`fastconv.cpu._jit`.
"""
