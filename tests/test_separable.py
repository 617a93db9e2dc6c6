"""separable_conv2d against the NumPy reference and PyTorch (depthwise conv then 1x1
conv), through every path: the fused channels-last kernel (algo "fused", and "auto"
where it serves) and the two ops one after the other (channels-first, other padding
modes, channel multipliers, explicit conv algorithms)."""

from __future__ import annotations

import numpy as np
import pytest
import torch_oracle

import fastconv as F
from fastconv import dispatch
from fastconv import reference as ref
from fastconv.spec.conv import resolve_conv
from fastconv.testing.registry import samples
from fastconv.testing.tolerances import assert_close


def _case(s) -> tuple:
    """(N, C, H, W, K, kernel, stride, padding, dilation, multiplier, padding_mode) of a registry sample."""
    (n, c, h, w), (cm, _, ks, _), (k, _, _, _) = s.shapes
    a = s.args
    return (n, c, h, w, k, ks, a["stride"], a["padding"], a["dilation"], cm // c, a["padding_mode"])


CASES = [_case(s) for s in samples(op="separable_conv2d", tags={"vs_torch"})]
(PLAIN,) = [_case(s) for s in samples(op="separable_conv2d", tags={"plain"})]
(AWKWARD,) = [_case(s) for s in samples(op="separable_conv2d", tags={"awkward"})]
IDS = [f"c{c[1]}k{c[4]}_{c[2]}x{c[3]}_k{c[5]}s{c[6]}d{c[8]}m{c[9]}_{c[10]}" for c in CASES]


def _arrays(rng, case, dtype, channels_last):
    n, c, h, w, k, ks, _, _, _, m, _ = case
    x = rng.standard_normal((n, c, h, w))
    wd = rng.standard_normal((c * m, 1, ks, ks))
    wp = rng.standard_normal((k, c * m, 1, 1)) / np.sqrt(c * m)
    db, pb = rng.standard_normal(c * m), rng.standard_normal(k)
    xin = np.ascontiguousarray(np.moveaxis(x, 1, -1)) if channels_last else x
    return [a.astype(dtype) for a in (xin, wd, wp, db, pb)]


def _expected(case, x, wd, wp, db, pb, activation, channels_last):
    _, c, _, _, _, _, stride, padding, dilation, _, mode = case
    xn = np.moveaxis(x, -1, 1) if channels_last else x
    x64, wd64, wp64, db64, pb64 = (np.asarray(a, np.float64) for a in (xn, wd, wp, db, pb))
    want = ref.separable_conv(x64, wd64, wp64, pb64, stride=stride, padding=padding, dilation=dilation,
                              depthwise_bias=db64, activation=activation, padding_mode=mode)
    return np.moveaxis(want, 1, -1) if channels_last else want


def _torch(case, x, wd, wp, db, pb, activation, channels_last):
    """PyTorch's depthwise conv then 1x1 conv (tests/torch_oracle.py), in float64."""
    _, c, _, _, _, _, stride, padding, dilation, _, mode = case
    xn = np.moveaxis(x, -1, 1) if channels_last else x
    d = resolve_conv("conv2d", xn.shape, wd.shape, stride=stride, padding=padding, dilation=dilation, groups=c,
                     padding_mode=mode)
    h = torch_oracle.conv(d, xn, wd, db)
    p = resolve_conv("conv2d", h.shape, wp.shape, activation=activation)
    y = torch_oracle.conv(p, h, wp, pb)
    return np.moveaxis(y, 1, -1) if channels_last else y


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("channels_last", [True, False], ids=["nhwc", "nchw"])
@pytest.mark.parametrize("algo", ["auto", "fused", "composed"])
def test_separable_matches_reference_and_torch(rng, case, channels_last, algo):
    fusable = channels_last and case[9] == 1 and case[10] == "zeros"
    for dtype, activation in (("float32", "relu6"), ("float64", None), ("float16", "relu")):
        x, wd, wp, db, pb = _arrays(rng, case, dtype, channels_last)
        _, c, _, _, _, _, stride, padding, dilation, _, mode = case
        kw = {"channels_last": channels_last, "padding_mode": mode, "algo": algo}
        if algo == "fused" and not fusable:
            with pytest.raises(ValueError, match="algo='fused' cannot serve this call"):
                F.separable_conv2d(x, wd, wp, pb, stride, padding, dilation, depthwise_bias=db, **kw)
            continue
        before = [a.copy() for a in (x, wd, wp, db, pb)]
        got = F.separable_conv2d(x, wd, wp, pb, stride, padding, dilation, depthwise_bias=db,
                                 activation=activation, **kw)
        assert got.dtype == np.dtype(dtype)
        want = _expected(case, x, wd, wp, db, pb, activation, channels_last)
        assert_close(got, want, "conv", dtype, 4, what=f"{dtype} reference")
        assert_close(got, _torch(case, x, wd, wp, db, pb, activation, channels_last), "conv", dtype, 4,
                     what=f"{dtype} torch")
        for a, b in zip((x, wd, wp, db, pb), before):
            np.testing.assert_array_equal(a, b)


def _pair(case, dtype, channels_last):
    from fastconv.ops.conv import _resolve, _spec
    from fastconv.spec import SeparablePair

    rng = np.random.default_rng(0)
    x, wd, wp, db, pb = _arrays(rng, case, dtype, channels_last)
    _, c, _, _, _, _, stride, padding, dilation, _, mode = case
    geometry = {"stride": stride, "padding": padding, "dilation": dilation, "groups": c, "padding_mode": mode,
                "padding_value": 0.0}
    d = _resolve("conv2d", 2, x, wd, db, None, channels_last, None, geometry)[3]
    return SeparablePair(d, _spec("conv2d", d.output_shape, wp, pb, None, channels_last, dtype, {}))


def test_fused_kernel_serves_channels_last_zeros_padding_only():
    capable = lambda case, cl: dispatch.capable("separable", "cpu", _pair(case, "float32", cl))  # noqa: E731
    assert all(capable(case, True) == ["composed", "fused"] for case in CASES if case[9] == 1 and case[10] == "zeros")
    assert capable(PLAIN, False) == ["composed"]
    for tag in ("multiplier", "padding_mode"):  # channel multiplier 2, reflect padding
        cases = [_case(s) for s in samples(op="separable_conv2d", tags={"vs_torch", tag})]
        assert cases and all(capable(case, True) == ["composed"] for case in cases)


@pytest.mark.parametrize("algo", ["fused", "composed", "auto"])
def test_fused_path_on_awkward_inputs(rng, algo):
    case = AWKWARD
    x, wd, wp, db, pb = _arrays(rng, case, "float32", True)
    want = _expected(case, x, wd, wp, db, pb, None, True)
    call = lambda xx, **kw: F.separable_conv2d(xx, wd, wp, pb, 2, 1, depthwise_bias=db, channels_last=True,  # noqa: E731
                                               algo=algo, **kw)
    strided = np.zeros((x.shape[0], x.shape[1], x.shape[2], 2 * x.shape[3]), np.float32)[..., ::2]
    strided[...] = x
    assert_close(call(strided), want, "conv", "float32", 4, what="non-contiguous")
    readonly = x.copy()
    readonly.flags.writeable = False
    assert_close(call(readonly), want, "conv", "float32", 4, what="read-only")
    for _ in range(2):  # the second call runs the call plan the first one left (ops/_call.py)
        assert_close(call(x[0]), want[0], "conv", "float32", 4, what="unbatched")
        assert call(x[:0]).shape == (0, *want.shape[1:])
        assert_close(F.separable_conv2d(x, wd, wp[:, :, 0, 0], pb, 2, 1, depthwise_bias=db, channels_last=True,
                                        algo=algo), want, "conv", "float32", 4, what="(K, C) pointwise weight")
    no_bias = F.separable_conv2d(x, wd, wp, None, 2, 1, channels_last=True, algo=algo)
    want_nb = _expected(case, x, wd, wp, np.zeros_like(db), np.zeros_like(pb), None, True)
    assert_close(no_bias, want_nb, "conv", "float32", 4, what="no biases")


def test_fused_algo_errors_name_the_reason(rng):
    x, wd, wp, db, pb = _arrays(rng, PLAIN, "float32", False)
    with pytest.raises(ValueError, match=r"separable_conv2d: algo='fused' cannot serve this call \(channels-first"):
        F.separable_conv2d(x, wd, wp, padding=1, algo="fused")
    xl = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    with pytest.raises(TypeError, match="separable_conv2d: pointwise_weight has dtype float64"):
        F.separable_conv2d(xl, wd, wp.astype(np.float64), padding=1, channels_last=True)
    with pytest.raises(ValueError, match=r"weight must have shape \(K, C, 1, 1\) or \(K, C\)"):
        F.separable_conv2d(xl, wd, wp.reshape(5, 4, 1), padding=1, channels_last=True)
    with pytest.raises(ValueError, match="input has 4 channels but weight expects 5"):
        F.separable_conv2d(xl, wd, wp[:, :1].repeat(5, axis=1), padding=1, channels_last=True)


@pytest.mark.parametrize("dtype, c", [("float32", 37), ("float64", 13)])
def test_fused_input_ends_at_last_channel(dtype, c, rng):
    """The depthwise rows' last loads end exactly at the input's last element, which ends a
    readable page (test_conv._guarded): nothing past the input is read."""
    from test_conv import _guarded

    x, buf = _guarded((1, 6, 11, c), dtype)
    if x is None:
        pytest.skip("mprotect not available")
    x[...] = rng.standard_normal(x.shape)
    wd = rng.standard_normal((c, 1, 3, 3)).astype(dtype)
    wp = rng.standard_normal((19, c, 1, 1)).astype(dtype)
    got = F.separable_conv2d(x, wd, wp, channels_last=True, algo="fused")  # no padding: all pixels interior
    want = ref.separable_conv(np.moveaxis(x, -1, 1).astype(np.float64), wd, wp)
    assert_close(np.moveaxis(got, -1, 1), want, "conv", dtype, 4)
    del x
    buf.close()


def test_auto_fuses_while_the_pointwise_weight_fits():
    small = (1, 32, 8, 8, 32, 3, 1, 1, 1, 1, "zeros")
    large = (1, 512, 4, 4, 512, 3, 1, 1, 1, 1, "zeros")
    for case, want in ((small, "fused"), (large, "composed")):
        pair = _pair(case, "float32", True)
        assert dispatch.auto_algorithm("separable", "cpu", pair, dispatch.capable("separable", "cpu", pair)) == want


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_wide_tiles(dtype, rng):
    """Out-channels a multiple of the wide tiles' block (pointwise.wide_strided_shape: 64 float32, 32
    float64) take them in the fused kernel: a task's pixels not a multiple of the widest tile (narrower
    tiles at the end), stride 2 with padding, biases and relu6; 1 and 2 threads give the same bits; the
    arrays are not written. Against the NumPy reference and PyTorch."""
    import numba

    from fastconv.cpu._jit import simd
    from fastconv.cpu.conv.separable.fused import separable_plan

    case = (2, 24, 9, 13, 64, 3, 2, 1, 1, 1, "zeros")
    x, wd, wp, db, pb = _arrays(rng, case, dtype, True)
    plan = separable_plan(_pair(case, dtype, True), numba.get_num_threads())
    assert simd().registers < 32 or (64 % plan.shape.v == 0 and plan.shape.v > 2 * plan.shape.lanes)
    before = [a.copy() for a in (x, wd, wp, db, pb)]
    results = []
    previous = numba.get_num_threads()
    try:
        for threads in (1, 2):
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            results.append(F.separable_conv2d(x, wd, wp, pb, 2, 1, depthwise_bias=db, activation="relu6",
                                              channels_last=True, algo="fused"))
    finally:
        numba.set_num_threads(previous)
    np.testing.assert_array_equal(results[0], results[1])
    for a, b in zip((x, wd, wp, db, pb), before):
        np.testing.assert_array_equal(a, b)
    assert_close(results[0], _expected(case, x, wd, wp, db, pb, "relu6", True), "conv", dtype, 4, what="reference")
    assert_close(results[0], _torch(case, x, wd, wp, db, pb, "relu6", True), "conv", dtype, 4, what="torch")
