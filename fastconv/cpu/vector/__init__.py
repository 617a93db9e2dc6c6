"""Register tiles written as LLVM vector IR, called from Numba kernels: fma_tile.py
(the direct and pointwise kernels' tile and weight packer), depthwise_row.py (the
channels-last depthwise row), ir.py (what both builders share: function boilerplate,
vector loads, stores, masks and intrinsics, the revision kernels pass).
tools/vector_ir_fingerprint.py hashes the IR they emit, per variant."""
