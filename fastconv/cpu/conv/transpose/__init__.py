"""Transposed convolution (dispatch family "conv_transpose"): direct.py (the gather form),
phases.py (one forward conv per output phase, the default), tiled.py (every phase
through the direct kernel, outputs written interleaved), phase_split.py (the phases'
taps, windows and weights, shared by phases.py and tiled.py)."""
