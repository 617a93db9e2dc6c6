"""Tolerances in one table: per dtype defaults, with narrow named overrides."""

from __future__ import annotations

import numpy as np

DEFAULT = {
    "float16": dict(rtol=2e-3, atol=2e-3),
    "float32": dict(rtol=1e-5, atol=1e-5),
    "float64": dict(rtol=1e-12, atol=1e-12),
}

# (op family, dtype) -> tolerance, where summation over many taps needs more room.
OVERRIDES = {
    ("conv", "float32"): dict(rtol=2e-5, atol=5e-5),
    ("conv", "float16"): dict(rtol=5e-3, atol=5e-3),
    ("conv", "float64"): dict(rtol=1e-11, atol=1e-11),
    ("pool_lp", "float32"): dict(rtol=5e-5, atol=5e-5),
}


def tolerance(family: str, dtype) -> dict:
    name = np.dtype(dtype).name
    return OVERRIDES.get((family, name), DEFAULT[name])


def assert_close(actual, expected, family: str, dtype, scale: float = 1.0, what: str = ""):
    """Compare against a float64 reference; ``scale`` widens atol for large sums."""
    tol = tolerance(family, dtype)
    actual = np.asarray(actual)
    assert actual.shape == np.shape(expected), f"{what}: shape {actual.shape} != {np.shape(expected)}"
    np.testing.assert_allclose(
        actual.astype(np.float64), expected, rtol=tol["rtol"], atol=tol["atol"] * scale, err_msg=what
    )
