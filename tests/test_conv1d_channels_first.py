"""1-D channels-first convolutions on the direct kernel: the channel-planes packer's copied
interior (tiled.linear_run) and the output staged per segment (conv/direct/staged.py)."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import torch_oracle

import fastconv as F
from fastconv import reference as ref
from fastconv.testing.conv_samples import sample
from fastconv.testing.tolerances import assert_close

CASES = [
    # causal and dilated (TCN), a partial last channel block, several segments and a tail
    sample("conv1d", (1, 16, 3001), (40, 16, 3), dtype="float32", dilation=16, padding=((32, 0),)),
    sample("conv1d", (2, 8, 301), (20, 8, 3), dilation=4, padding=((8, 0),)),
    # groups, a padding pair at both ends, relu
    sample("conv1d", (2, 6, 157), (10, 3, 3), dtype="float32", groups=2, dilation=2, padding=((3, 1),),
           activation="relu"),
    # stride 2 (two phases), odd width, reflect padding (the run is the interior only)
    sample("conv1d", (1, 5, 233), (7, 5, 5), stride=2, padding=((4, 1),), padding_mode="reflect"),
]


@pytest.mark.parametrize("s", CASES, ids=[str(s) for s in CASES])
def test_conv1d_channels_first_direct(s, rng):
    """Against the reference and PyTorch; bitwise the channels-last call's result (same tiles,
    same sums) and the same on one and two threads."""
    x, w, b = s.arrays(rng)
    a = s.args
    expected = ref.conv(x, w, b, stride=a.get("stride", 1), padding=a["padding"], dilation=a.get("dilation", 1),
                        groups=a.get("groups", 1), padding_mode=a.get("padding_mode", "zeros"),
                        activation=a.get("activation"))
    scale = np.sqrt(np.prod(w.shape[1:]))
    np.testing.assert_allclose(expected, torch_oracle.conv(s.spec(), x, w, b), rtol=1e-9, atol=1e-9 * scale)
    got = []
    for threads in (1, 2):
        previous = numba.get_num_threads()
        numba.set_num_threads(threads)
        try:
            got.append(F.conv1d(x, w, b, algo="direct", **a))
        finally:
            numba.set_num_threads(previous)
    assert_close(got[0], expected, "conv", s.dtype, scale, what=str(s))
    np.testing.assert_array_equal(got[0], got[1])
    last = F.conv1d(np.ascontiguousarray(np.moveaxis(x, 1, -1)), w, b, algo="direct", channels_last=True, **a)
    np.testing.assert_array_equal(got[0], np.moveaxis(last, -1, 1))
    strided = F.conv1d(np.repeat(x, 2, axis=2)[:, :, ::2], w, b, algo="direct", **a)  # columns not adjacent
    np.testing.assert_array_equal(got[0], strided)
