"""Numba-parallel CPU kernels; each module registers its implementations in fastconv.dispatch."""
