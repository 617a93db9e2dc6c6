"""The cap on scratch memory a call may allocate beyond its output.

Default 256 MiB, set by FASTCONV_WORKSPACE_MB or :func:`set_workspace_limit`. A call
works in chunks (of images, and of output rows for im2col columns) that fit in it;
the one exception is a single padded image larger than the cap, which is then the
chunk.
"""

from __future__ import annotations

from ._env import mib_from_environment

DEFAULT_MB = 256

_limit = mib_from_environment("FASTCONV_WORKSPACE_MB", DEFAULT_MB)


def workspace_limit() -> int:
    return _limit


def set_workspace_limit(nbytes: int) -> int:
    """Set the cap in bytes; return the previous one."""
    global _limit
    if not isinstance(nbytes, int) or nbytes < 1:
        raise ValueError(f"set_workspace_limit: nbytes={nbytes!r} must be a positive int")
    previous, _limit = _limit, nbytes
    return previous


def chunks(total: int, bytes_each: int, budget: int):
    """Consecutive (start, stop) ranges of ``total`` items, each within ``budget`` bytes."""
    step = max(1, budget // max(bytes_each, 1))
    for start in range(0, total, step):
        yield start, min(start + step, total)
