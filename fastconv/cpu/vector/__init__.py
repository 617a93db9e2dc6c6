"""Register tiles written as LLVM vector IR, called from Numba kernels: fma_tile.py
(the direct and pointwise kernels' tile and weight packer), depthwise_row.py (the
channels-last depthwise row)."""
