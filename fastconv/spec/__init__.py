"""Resolved, hashable descriptions of one call: what backends, benchmarks and tests see.

Every spec prints as a canonical name that its ``parse`` reads back:
``type(spec).parse(spec.name()) == spec``.
"""

from .conv import ConvSpec, resolve_conv
from .pool import AdaptivePoolSpec, PoolSpec, resolve_adaptive_pool, resolve_pool
from .separable import SeparablePair
from .window import WindowSpec

__all__ = ["AdaptivePoolSpec", "ConvSpec", "PoolSpec", "SeparablePair", "WindowSpec", "resolve_adaptive_pool",
           "resolve_conv", "resolve_pool"]
