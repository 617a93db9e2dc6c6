"""Adaptive pooling's cells: output i of o over n inputs covers [floor(i*n/o), ceil((i+1)*n/o))."""

from __future__ import annotations

import numpy as np

from .inline import inline_helper


@inline_helper
def adaptive_start(i, n, o):
    return (i * n) // o


@inline_helper
def adaptive_end(i, n, o):
    return ((i + 1) * n + o - 1) // o


@inline_helper
def adaptive_bounds(n, o):
    """[start, end) of each of the o output cells of a dim of n inputs."""
    bounds = np.empty((o, 2), np.int64)
    for i in range(o):
        bounds[i, 0] = adaptive_start(i, n, o)
        bounds[i, 1] = adaptive_end(i, n, o)
    return bounds
