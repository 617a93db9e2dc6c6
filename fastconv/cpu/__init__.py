"""Numba-parallel CPU kernels. Importing a family's module registers its implementations in
:mod:`fastconv.dispatch`; the path of a module follows its dispatch key (family, "cpu", algo).

=============================  ==============================================================
path                           what it holds
=============================  ==============================================================
_jit.py                        Numba options of every CPU kernel; starts the thread runtime
blas.py                        GEMM on fastconv's threads (OpenBLAS, one thread per block)
layout.py                      user layout <-> the kernels' working layout, padded copies
weights.py                     weight packing, the finite-values check
conv/direct/                   ("conv", "direct"): register-tiled direct convolution
conv/depthwise/                ("conv", "depthwise"): one kernel per layout
conv/gemm.py, im2col.py,       ("conv", "gemm" | "im2col" | "taps")
taps.py
conv/driver.py                 running a conv over padded image chunks
conv/transpose/                ("conv_transpose", "direct" | "phases")
conv/separable/                ("separable", "composed" | "fused")
pool/                          ("pool" | "adaptive_pool", "direct")
windows.py                     unfold, fold, max_unpool, fractional_max_pool
vector/                        register tiles written as LLVM vector IR
=============================  ==============================================================

Helpers the GPU kernels share live in :mod:`fastconv.kernels`, never here.
"""
