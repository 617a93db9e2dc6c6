"""Small calls run on the calling thread alone (fastconv/_small_calls.py): the same bits
as the parallel path, the caller's thread count untouched, large calls still parallel."""

from __future__ import annotations

import threading

import numba
import numpy as np
import pytest

import fastconv as F
import fastconv.grad as G
from fastconv import _small_calls
from fastconv import reference as ref
from fastconv.grad import pool as pool_grad_module
from fastconv.ops import _call as call_module
from fastconv.spec import resolve_conv
from fastconv.spec.pool import resolve_adaptive_pool

rng = np.random.default_rng(7)


def _r(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def _small_calls_of(cl):
    """Calls under SERIAL_FLOPS, one per kernel family: (name, call); ``cl``: channels-last."""
    def act(n, c, h):  # an activation, (N, C, H, W) or (N, H, W, C)
        return _r(n, h, h, c) if cl else _r(n, c, h, h)

    x, w = act(2, 8, 9), _r(8, 8, 3, 3)
    xd, wd = act(1, 24, 11), _r(24, 1, 3, 3)
    xp, wp = act(1, 16, 7), _r(32, 16, 1, 1)
    g = act(2, 8, 5)
    size = (2, 9, 9, 8) if cl else (2, 8, 9, 9)
    kw = dict(channels_last=cl)
    return [
        ("conv3x3", lambda: F.conv2d(x, w, padding=1, **kw)),
        ("conv3x3 stride 2", lambda: F.conv2d(x, w, stride=2, padding=1, **kw)),
        ("depthwise", lambda: F.conv2d(xd, wd, padding=1, groups=24, **kw)),
        ("pointwise", lambda: F.conv2d(xp, wp, **kw)),
        ("transposed", lambda: F.conv_transpose2d(x, w.transpose(1, 0, 2, 3), stride=2, padding=1, **kw)),
        ("max pool", lambda: F.max_pool2d(x, 3, 2, 1, **kw)),
        ("avg pool", lambda: F.avg_pool2d(x, 2, **kw)),
        ("input grad", lambda: G.conv2d_input(size, w, g, stride=2, padding=1, **kw)),
        ("weight grad", lambda: G.conv2d_weight(x, (8, 8, 3, 3), g, stride=2, padding=1, **kw)),
        ("max pool grad", lambda: G.max_pool2d(g, x, 3, 2, 1, **kw)),
    ]


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_small_calls_same_bits_as_parallel(channels_last, monkeypatch):
    calls = _small_calls_of(channels_last)
    F.clear_caches()
    serial = []
    for name, call in calls:
        decided = []

        def spy(spec, decided=decided):
            decided.append(_small_calls.serial(spec))
            return decided[-1]

        monkeypatch.setattr(call_module, "serial", spy)
        monkeypatch.setattr(pool_grad_module, "serial", spy)
        serial.append(call())
        assert decided and all(decided), f"{name}: not run on one thread ({decided})"
    monkeypatch.undo()
    monkeypatch.setattr(_small_calls, "SERIAL_FLOPS", 0)
    F.clear_caches()
    try:
        parallel = [call() for _, call in calls]
    finally:
        F.clear_caches()
    for (name, _), a, b in zip(calls, serial, parallel):
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_small_call_matches_reference():
    x, w = _r(2, 8, 9, 9), _r(8, 8, 3, 3)
    assert _small_calls.serial(resolve_conv("conv2d", x.shape, w.shape, padding=1))
    np.testing.assert_allclose(F.conv2d(x, w, padding=1), ref.conv(x, w, padding=1), rtol=1e-5, atol=1e-5)


def test_threshold_by_work():
    small = resolve_conv("conv2d", (1, 8, 9, 9), (8, 8, 3, 3), padding=1)
    large = resolve_conv("conv2d", (1, 64, 56, 56), (64, 64, 3, 3), padding=1)
    assert small.flops < _small_calls.SERIAL_FLOPS <= large.flops
    assert _small_calls.serial(small) and not _small_calls.serial(large)
    assert not _small_calls.serial(object())  # a spec without a FLOP count keeps every thread
    pool = resolve_adaptive_pool("adaptive_avg_pool2d", "avg", 2, (1, 2048, 7, 7), (1, 1))
    assert pool.flops < _small_calls.SERIAL_FLOPS and pool.min_bytes >= _small_calls.SERIAL_BYTES
    assert not _small_calls.serial(pool)  # memory-bound: two threads


def test_one_thread_inside_restored_after(monkeypatch):
    seen = []

    def run(fail):
        seen.append(numba.get_num_threads())
        if fail:
            raise RuntimeError("inside")
        return "done"

    before = numba.get_num_threads()
    wrapped = _small_calls.on_one_thread(run)
    assert wrapped(False) == "done"
    with pytest.raises(RuntimeError, match="inside"):
        wrapped(True)
    assert seen == [1, 1]
    assert numba.get_num_threads() == before


def test_caller_thread_count_kept():
    """A user's own thread count (lower than the machine's) is what large calls get back,
    and a Python thread running small calls leaves the others' counts alone."""
    x, w = _r(2, 8, 9, 9), _r(8, 8, 3, 3)
    expected = F.conv2d(x, w, padding=1)
    counts, errors = [], []

    def worker():
        try:
            for _ in range(20):
                np.testing.assert_array_equal(F.conv2d(x, w, padding=1), expected)
            counts.append(numba.get_num_threads())
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    before = numba.get_num_threads()
    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert counts == [numba.config.NUMBA_NUM_THREADS] * 3
    assert numba.get_num_threads() == before
    numba.set_num_threads(1)
    try:
        F.conv2d(x, w, padding=1)
        assert numba.get_num_threads() == 1
    finally:
        numba.set_num_threads(before)
