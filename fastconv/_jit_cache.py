"""Numba's on-disk cache, made unable to break a call.

Numba's own cache (``cache=True``) fails a call in two ways that have nothing to do with
the call:

- a damaged index or data file (``.nbi``/``.nbc`` truncated or garbled: a full disk, a
  killed process, two Numba versions sharing a directory) raises EOFError or
  UnpicklingError from every call that reads it;
- with nowhere writable to cache (the package directory, NUMBA_CACHE_DIR and $HOME all
  read-only or missing) decorating a function raises ``RuntimeError: cannot cache
  function ...: no locator available``, which for fastconv's lazily imported kernel
  modules means every call of that family.

:func:`robust_cache` gives a dispatcher a cache that turns each of these into a compile
in memory and one RuntimeWarning per process and kind (damaged / not writable), and goes
on. A damaged file's function gets an empty index, so the compile that follows saves a
sound entry (when the directory is writable) and the next process loads it.

What it relies on from Numba: ``Dispatcher._cache`` (set by Numba's own
``enable_caching``) and ``FunctionCache.load_overload``/``save_overload``.
"""

from __future__ import annotations

import pickle
import threading
import warnings

from numba.core.caching import FunctionCache, NullCache

_warned: set = set()
_lock = threading.Lock()


def warn_once(kind: str, message: str) -> None:
    with _lock:
        if kind in _warned:
            return
        _warned.add(kind)
    warnings.warn(message, RuntimeWarning, stacklevel=3)


# What reading a damaged cache file raises: pickle's errors, a short read, bytes that do
# not decode, and OSError for a file that cannot be read.
DAMAGE = (EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError, ImportError, IndexError,
          KeyError, OSError, UnicodeDecodeError)


class RobustFunctionCache(FunctionCache):
    """Numba's FunctionCache, whose load failures are misses and whose save failures are
    skipped, each with a warning once per process."""

    def load_overload(self, sig, target_context):
        try:
            return super().load_overload(sig, target_context)
        except DAMAGE as e:
            warn_once("damaged", f"fastconv: Numba's on-disk cache in {self.cache_path} is damaged "
                                 f"({type(e).__name__}: {e}); compiling in memory instead (delete that "
                                 f"directory to rebuild it)")
            try:  # an empty index: the compile that follows saves a sound entry in place of this one
                self._cache_file.flush()
            except OSError:
                pass
            return None

    def save_overload(self, sig, data):
        try:
            super().save_overload(sig, data)
        except DAMAGE as e:
            warn_once("unwritable", f"fastconv: cannot write Numba's on-disk cache in {self.cache_path} "
                                    f"({type(e).__name__}: {e}); compiled kernels are kept in memory only")


def robust_cache(dispatcher):
    """Give ``dispatcher`` (made with cache=False) the on-disk cache of cache=True, robust
    as the module docstring says; with no writable place, no disk cache."""
    try:
        dispatcher._cache = RobustFunctionCache(dispatcher.py_func)
    except RuntimeError as e:  # "cannot cache function ...: no locator available"
        warn_once("unwritable", f"fastconv: no writable directory for Numba's on-disk cache ({e}); "
                                f"compiling in memory (set NUMBA_CACHE_DIR to a writable directory to keep "
                                f"compiled kernels between runs)")
        dispatcher._cache = NullCache()
    return dispatcher
