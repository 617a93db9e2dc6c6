"""algo="direct": the register-tiled direct convolution.

run.py (plan and driver, registers the implementation), tiled.py (tile shapes, tiling
of the output plane, input packing, the kernel factory), pointwise.py (the in-place
channels-last 1x1 path). The register tile itself is :mod:`fastconv.cpu.vector.fma_tile`.
"""
