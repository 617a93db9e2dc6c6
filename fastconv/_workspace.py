"""The cap on scratch memory a call may allocate beyond its output.

Default 256 MiB, set by FASTCONV_WORKSPACE_MB or :func:`set_workspace_limit`. A call
works in chunks (of images, and of output rows for im2col columns) that fit in it;
the one exception is a single padded image larger than the cap, which is then the
chunk.
"""

from __future__ import annotations

import math
import os
import warnings

DEFAULT_MB = 256


def _from_environment() -> int:
    """The cap from FASTCONV_WORKSPACE_MB (a positive number of MiB); a bad value gets a
    warning and the default, so that ``import fastconv`` never fails on it."""
    text = os.environ.get("FASTCONV_WORKSPACE_MB")
    if text is None:
        return DEFAULT_MB << 20
    try:
        mb = float(text)
    except ValueError:
        mb = math.nan
    if not (math.isfinite(mb) and mb > 0 and mb * (1 << 20) >= 1):
        warnings.warn(f"FASTCONV_WORKSPACE_MB={text!r} is not a positive number of MiB; using the default, "
                      f"{DEFAULT_MB} MiB", RuntimeWarning, stacklevel=2)
        return DEFAULT_MB << 20
    return int(mb * (1 << 20))


_limit = _from_environment()


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
