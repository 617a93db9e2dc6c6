"""The one cache of everything fastconv keeps between calls, bounded in bytes.

It holds the call plans of the op front ends (ops/_call.py: a repeated call's spec,
implementation and runner) and the backends' plans (cpu/: tilings,
offsets, pooling plans), so that one budget bounds them all: 64 MiB by default
(``FASTCONV_CACHE_MB``). When an insert takes the total over the budget, the oldest
entries go first; an entry larger than the budget by itself is not kept (its
call rebuilds it next time). :func:`clear_caches` (public as ``fastconv.clear_caches``)
empties it. Compiled kernels are not in it: there is one per kernel variant, not per
shape, and Numba keeps them.

An entry's size is the bytes of the NumPy arrays it holds (found through tuples, lists,
dicts and NamedTuples) plus ENTRY_BYTES for the objects around them (key, spec, closure),
an estimate: Python objects are not measured one by one, which would cost more than a
cache hit saves.

Lookups take no lock (a dict read under the GIL); inserts and evictions take one, so two
threads filling the cache at once cannot corrupt the byte count.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict

import numpy as np

from ._env import mib_from_environment

DEFAULT_MB = 64
ENTRY_BYTES = 1024  # the estimate for an entry's key, spec and small objects
_MISSING = object()




def size_of(value, _depth: int = 0) -> int:
    """Bytes of the arrays in ``value`` (tuples, lists, dicts, NamedTuples searched,
    8 bytes per element of a plain container) plus nothing for other objects."""
    if isinstance(value, np.ndarray):
        return value.nbytes if value.base is None else 0  # views share their base's bytes
    if _depth > 4:
        return 0
    if isinstance(value, (tuple, list)):
        total = 8 * len(value)
        for item in value:
            if isinstance(item, (np.ndarray, tuple, list, dict)):
                total += size_of(item, _depth + 1)
            elif isinstance(item, int):
                total += 28
        return total
    if isinstance(value, dict):
        return 16 * len(value) + sum(size_of(v, _depth + 1) for v in value.values())
    return 0


class ByteCache:
    """key -> value, oldest first out, within ``limit`` bytes in all."""

    def __init__(self, limit: int):
        self._values: OrderedDict = OrderedDict()
        self._sizes: dict = {}
        self._bytes = 0
        self._lock = threading.Lock()
        self.limit = limit

        # Lookups are the bare dict read (the repeated-call path pays no Python frame
        # for them); so "used longest ago" is "inserted longest ago": a hot entry may
        # be evicted by a stream of new ones, and is then rebuilt once.
        self.get = self._values.get

    def put(self, key, value, nbytes: int | None = None) -> None:
        nbytes = ENTRY_BYTES + (size_of(value) if nbytes is None else nbytes)
        with self._lock:
            self._drop(key)
            if nbytes > self.limit:
                return
            self._values[key] = value
            self._sizes[key] = nbytes
            self._bytes += nbytes
            while self._bytes > self.limit:
                self._drop(next(iter(self._values)))

    def resize(self, limit: int) -> int:
        """Set the bound (evicting down to it); return the previous one."""
        with self._lock:
            previous, self.limit = self.limit, limit
            while self._bytes > self.limit:
                self._drop(next(iter(self._values)))
        return previous

    def _drop(self, key) -> None:
        if self._values.pop(key, _MISSING) is not _MISSING:
            self._bytes -= self._sizes.pop(key)

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
            self._sizes.clear()
            self._bytes = 0

    @property
    def nbytes(self) -> int:
        """The estimated bytes held (see the module docstring)."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._values)


CACHE = ByteCache(mib_from_environment("FASTCONV_CACHE_MB", DEFAULT_MB, allow_zero=True))


def clear_caches() -> None:
    """Forget every call plan and kernel plan fastconv keeps between calls
    (at most 64 MiB by default, ``FASTCONV_CACHE_MB``). The next call of each kind plans
    afresh; compiled kernels stay loaded."""
    CACHE.clear()


def set_cache_limit(nbytes: int) -> int:
    """Bound the cache to ``nbytes`` (0 keeps nothing); return the previous bound."""
    if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 0:
        raise ValueError(f"set_cache_limit: nbytes={nbytes!r} must be an int >= 0")
    return CACHE.resize(nbytes)


def cached_plan(fn):
    """``fn(*args)`` (hashable args) kept in the one cache: the replacement for
    ``functools.lru_cache`` on plan builders, counted in the byte budget.
    ``fn.cache_clear()`` clears every cached entry (the whole cache)."""
    tag = f"{fn.__module__}.{fn.__qualname__}"

    @functools.wraps(fn)
    def get(*args):
        key = (tag, *args)
        value = CACHE.get(key, _MISSING)
        if value is _MISSING:
            value = fn(*args)
            CACHE.put(key, value)
        return value

    get.cache_clear = clear_caches
    return get
