"""Depthwise-separable convolution (dispatch family "separable"): composed.py (the
depthwise then the pointwise implementation that auto picks), fused.py (channels-last,
both in one pass)."""
