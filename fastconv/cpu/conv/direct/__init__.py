"""algo="direct": the register-tiled direct convolution.

run.py (plan and driver, registers the implementation), tiled.py (tile shapes, tiling
of the output plane, input packing, the kernel factory), banded.py (zeros padding: the
plane in regions, each running only the taps that read the input; layers dilated 4 or more
always, taps outer), pointwise.py (the in-place
channels-last 1x1 path). The register tile itself is :mod:`fastconv.cpu.vector.fma_tile`.
"""
