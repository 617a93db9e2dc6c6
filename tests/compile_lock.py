"""One compilation of each kernel across the processes that share a Numba cache.

The CPU suite runs as two pytest-xdist workers on one on-disk cache. Numba saves a kernel
to the cache only when its compilation ends, so two workers that reach the same kernel
together would each compile it. Here a worker's compilation (Dispatcher.compile) first
takes an advisory file lock named after the kernel's cache key (function, signature,
bytecode and closure constants, Numba's own index key): the second worker waits, then
finds the kernel on disk and loads it.

Only the main thread takes the locks (POSIX locks belong to the process, so a Python
thread of the same worker never waits on its own process; threads compile as before).
Kernels form a call tree, so a nested compilation only ever waits on a callee: no cycle.
Any failure to lock (no writable directory, EDEADLK) means compiling without the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
import threading

from numba.core import sigutils
from numba.core.dispatcher import Dispatcher


def _lock_dir() -> str | None:
    cache = os.environ.get("NUMBA_CACHE_DIR")
    if not cache:
        return None
    path = os.path.join(tempfile.gettempdir(), "fastconv-compile-locks",
                        hashlib.sha1(os.path.abspath(cache).encode()).hexdigest()[:16])
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return None
    return path


@contextlib.contextmanager
def _locked(directory: str, dispatcher, args):
    cache = getattr(dispatcher, "_cache", None)
    impl = getattr(cache, "_impl", None)
    if impl is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    try:
        key = cache._index_key(args, dispatcher.targetctx.codegen())
        func = dispatcher.py_func
        name = hashlib.sha1(repr((func.__module__, func.__qualname__, key)).encode()).hexdigest()
        fd = os.open(os.path.join(directory, name), os.O_RDWR | os.O_CREAT, 0o644)
    except Exception:  # noqa: BLE001 - a key or file we cannot make: compile unlocked
        yield
        return
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX)
        except OSError:
            pass
        yield
    finally:
        os.close(fd)


def install() -> None:
    """Wrap Dispatcher.compile (once) when NUMBA_CACHE_DIR names the shared cache."""
    directory = _lock_dir()
    if directory is None or getattr(Dispatcher.compile, "_fastconv_locked", False):
        return
    compile_unlocked = Dispatcher.compile

    def compile(self, sig):
        args, _ = sigutils.normalize_signature(sig)
        if self.overloads.get(tuple(args)) is not None:
            return compile_unlocked(self, sig)
        with _locked(directory, self, tuple(args)):
            return compile_unlocked(self, sig)

    compile._fastconv_locked = True
    Dispatcher.compile = compile
