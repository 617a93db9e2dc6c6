"""Sizes read from environment variables: a bad value warns and falls back, never fails an import."""

from __future__ import annotations

import math
import os
import warnings


def mib_from_environment(name: str, default_mb: float, allow_zero: bool = False) -> int:
    """Bytes from ``name`` (a number of MiB), or ``default_mb`` MiB when it is unset or bad."""
    text = os.environ.get(name)
    if text is None:
        return int(default_mb * (1 << 20))
    try:
        mb = float(text)
    except ValueError:
        mb = math.nan
    ok = math.isfinite(mb) and (mb >= 0 if allow_zero else mb > 0 and mb * (1 << 20) >= 1)
    if not ok:
        wanted = "a number of MiB >= 0" if allow_zero else "a positive number of MiB"
        warnings.warn(f"{name}={text!r} is not {wanted}; using the default, {default_mb:g} MiB", RuntimeWarning,
                      stacklevel=3)
        return int(default_mb * (1 << 20))
    return int(mb * (1 << 20))
