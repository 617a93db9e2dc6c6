"""Resolved, hashable descriptions of one call: what backends, benchmarks and tests see."""

from .conv import ConvSpec, resolve_conv
from .pool import AdaptivePoolSpec, PoolSpec, resolve_adaptive_pool, resolve_pool

__all__ = ["AdaptivePoolSpec", "ConvSpec", "PoolSpec", "resolve_adaptive_pool", "resolve_conv", "resolve_pool"]
