"""vector/tap_transpose.py: a block of (tap, channel) sums to (channel, tap) order, against NumPy."""

import numpy as np
import pytest
from numba import njit

from fastconv.cpu._jit import simd
from fastconv.cpu.vector.tap_transpose import REVISION, output_sources, taps_to_channels


@njit(cache=False)
def _transpose9(dst, src, di, si, sstep, blocks, lanes):
    if lanes == 16:
        taps_to_channels(dst, src, di, si, sstep, blocks, "t9", 16, REVISION)
    elif lanes == 8:
        taps_to_channels(dst, src, di, si, sstep, blocks, "t9", 8, REVISION)
    else:
        taps_to_channels(dst, src, di, si, sstep, blocks, "t9", 4, REVISION)


def test_output_sources_cover_every_lane_once():
    for taps, lanes in ((9, 16), (9, 8), (3, 4), (27, 16)):
        seen = set()
        for i in range(taps):
            for t, pairs in output_sources(taps, lanes, i).items():
                for q, lane in pairs:
                    seen.add((i * lanes + q, t, lane))
                    assert (i * lanes + q) == lane * taps + t
        assert len(seen) == taps * lanes


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_taps_to_channels(dtype, rng):
    lanes = simd().vector_bytes // np.dtype(dtype).itemsize
    cg, blocks, si, di = 3 * lanes + 5, 3, 7, 11  # blocks short of the channels: the rest untouched
    src = rng.standard_normal(si + 9 * cg + 3).astype(dtype)
    dst = np.full(di + 9 * cg + 5, -1.0, dtype)
    _transpose9(dst, src, di, si, cg, blocks, lanes)
    want = np.full_like(dst, -1.0)
    n = blocks * lanes
    want[di:di + 9 * n] = src[si:si + 9 * cg].reshape(9, cg)[:, :n].T.reshape(-1)
    assert dst.tobytes() == want.tobytes()
