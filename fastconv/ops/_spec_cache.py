"""Resolved specs kept per call signature, so a repeated call skips argument checking
and spec resolution (tens of microseconds: the cost of a small layer's kernel).

A key is built from the call's arguments only when each is a plain value whose
equality means "same call": ints, strings, None, tuples of ints or of int pairs,
floats tagged as floats (2.0 must not find the spec of 2); bools only where a flag is
expected (:func:`flag_key`: True == 1, so kernel_size=True must not find the spec of
kernel_size=1). Anything else (lists, NumPy scalars) raises :class:`Uncacheable` and
the call resolves afresh. Errors are never kept: a bad call raises every time.
"""

from __future__ import annotations

import numpy as np

from .._arrays import FLOAT_DTYPES, check_same_dtype
from .._cache import CACHE


class Uncacheable(Exception):
    pass


def key_of(value):
    """A user argument as part of a cache key (see the module docstring)."""
    kind = type(value)
    if kind is int or kind is str or value is None:
        return value
    if kind is float:
        return "float", value
    if kind is tuple:
        for item in value:
            t = type(item)
            if t is not int and not (t is tuple and all(type(v) is int for v in item)):
                raise Uncacheable
        return value
    raise Uncacheable


def flag_key(value):
    """A flag argument as part of a cache key: an exact bool, else Uncacheable."""
    if type(value) is not bool:
        raise Uncacheable
    return value


def cached_spec(key_parts, resolve, *args, **kwargs):
    """``resolve(*args, **kwargs)``, kept in the one cache (fastconv/_cache.py) under the
    key made of ``key_parts`` (a thunk returning a tuple) when it is cacheable."""
    try:
        key = ("spec", *key_parts())
    except Uncacheable:
        return resolve(*args, **kwargs)
    spec = CACHE.get(key)
    if spec is None:
        spec = resolve(*args, **kwargs)
        CACHE.put(key, spec, 0)
    return spec


DTYPE_NAMES = {dt: dt.name for dt in FLOAT_DTYPES}  # np.dtype.name is slow to compute


def input_dtype(op, input):
    if isinstance(input, np.ndarray) and input.dtype in DTYPE_NAMES:
        return input.dtype
    return check_same_dtype(op, input=input)
