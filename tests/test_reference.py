"""Checks of the NumPy reference (fastconv.reference) against torch.nn.functional in float64,
and hand-written cases where PyTorch has no answer."""

import importlib.util
import itertools
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F


def _load_reference():
    """fastconv.reference; falls back to loading the package by path if fastconv/__init__.py
    (other people's code) is missing pieces, so this file tests the reference alone."""
    try:
        import fastconv.reference as ref
        return ref
    except Exception:
        root = Path(__file__).resolve().parents[1] / "fastconv" / "reference"
        spec = importlib.util.spec_from_file_location(
            "_fastconv_reference", root / "__init__.py", submodule_search_locations=[str(root)])
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
        return mod


R = _load_reference()
torch.set_num_threads(1)
SHAPES = {1: (7,), 2: (7, 5), 3: (5, 6, 4)}
KERNEL = {1: (3,), 2: (3, 2), 3: (3, 2, 3)}
TF = {nd: (getattr(F, f"conv{nd}d"), getattr(F, f"conv_transpose{nd}d"), getattr(F, f"max_pool{nd}d"),
           getattr(F, f"avg_pool{nd}d"), getattr(F, f"lp_pool{nd}d")) for nd in (1, 2, 3)}


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def T(a):
    return torch.from_numpy(np.array(a))  # a writable contiguous copy


def close(ours, theirs, **kw):
    theirs = theirs.numpy() if isinstance(theirs, torch.Tensor) else theirs
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12, **kw)


def tpad(pairs):
    """((b, e), ...) per spatial dim -> torch F.pad list (last dim first)."""
    return [v for b, e in reversed(pairs) for v in (b, e)]


# ----------------------------------------------------------------------------- padding
def test_np_pad_large_is_periodic():
    """np.pad with pads larger than n bounces/wraps: the formulas documented in window.py."""
    for n, b, e in itertools.product((1, 2, 3, 4, 6), (0, 1, 5, 11), (0, 2, 9)):
        a = np.arange(1.0, n + 1)[None, None]
        p = np.arange(-b, n + e)
        per = max(2 * (n - 1), 1)
        m = p % per
        refl = np.where(m >= n, per - m, m) if n > 1 else np.zeros_like(p)
        ms = p % (2 * n)
        sym = np.where(ms >= n, 2 * n - 1 - ms, ms)
        for mode, idx in (("reflect", refl), ("circular", p % n), ("symmetric", sym),
                          ("replicate", np.clip(p, 0, n - 1))):
            np.testing.assert_array_equal(R.pad(a, ((b, e),), mode)[0, 0], a[0, 0, idx], err_msg=mode)


def test_pad_hand_cases():
    a = np.array([[[1.0, 2.0, 3.0]]])
    assert R.pad(a, ((5, 4),), "reflect")[0, 0].tolist() == [2, 1, 2, 3, 2, 1, 2, 3, 2, 1, 2, 3]
    assert R.pad(a, ((4, 5),), "circular")[0, 0].tolist() == [3, 1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2]
    assert R.pad(a, ((4, 4),), "symmetric")[0, 0].tolist() == [3, 3, 2, 1, 1, 2, 3, 3, 2, 1, 1]
    assert R.pad(a, ((2, 1),), "replicate")[0, 0].tolist() == [1, 1, 1, 2, 3, 3]
    assert R.pad(a, ((1, 2),), "constant", 7.0)[0, 0].tolist() == [7, 1, 2, 3, 7, 7]
    assert R.pad(a, ((-1, 1),), "zeros")[0, 0].tolist() == [2, 3, 0]  # negative crops
    b = np.arange(6.0).reshape(1, 1, 2, 3)  # 2-D: reflect bounces in both dims independently
    got = R.pad(b, ((3, 0), (0, 4)), "reflect")[0, 0]
    assert got.tolist() == [[3, 4, 5, 4, 3, 4, 5], [0, 1, 2, 1, 0, 1, 2],
                            [3, 4, 5, 4, 3, 4, 5], [0, 1, 2, 1, 0, 1, 2], [3, 4, 5, 4, 3, 4, 5]]


@pytest.mark.parametrize("mode", ["reflect", "circular", "symmetric", "replicate"])
def test_conv_large_pad_equals_conv_of_np_pad(mode):
    x, w = rand(1, 2, 4, 3), rand(3, 2, 3, 3, seed=1)
    pads = ((6, 2), (5, 7))
    xp = np.pad(x, ((0, 0), (0, 0)) + pads, mode={"circular": "wrap", "replicate": "edge"}.get(mode, mode))
    close(R.conv(x, w, padding=pads, padding_mode=mode), F.conv2d(T(xp), T(w)))


@pytest.mark.parametrize("n,k,s,d", [(7, 3, 1, 1), (7, 4, 2, 1), (5, 3, 3, 2), (8, 2, 3, 1), (1, 5, 2, 1)])
def test_same_and_full_sizes(n, k, s, d):
    (b, e), = R.resolve_padding("same", (n,), (k,), (s,), (d,))
    assert e - b in (0, 1) and (n + b + e - d * (k - 1) - 1) // s + 1 == math.ceil(n / s)
    x, w = rand(1, 1, n), rand(1, 1, k, seed=1)
    assert R.conv(x, w, stride=s, padding="same", dilation=d).shape[-1] == math.ceil(n / s)
    assert R.conv(x, w, stride=1, padding="full", dilation=d).shape[-1] == n + d * (k - 1)
    assert R.resolve_padding("valid", (n,), (k,), (s,), (d,)) == ((0, 0),)
    assert R.resolve_padding(((1, 2),), (n,), (k,)) == ((1, 2),)
    assert R.resolve_padding((1, 2), (n, n), (k, k)) == ((1, 1), (2, 2))


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("k,d", [(3, 1), (4, 1), (4, 2), (2, 3)])
def test_same_matches_torch_stride1(k, d):
    x, w = rand(2, 3, 7, 5), rand(4, 3, k, k - 1, seed=1)
    close(R.conv(x, w, padding="same", dilation=d), F.conv2d(T(x), T(w), padding="same", dilation=d))


# ----------------------------------------------------------------------------- conv
CONV_CASES = [dict(), dict(stride=2), dict(padding=1), dict(padding=2, dilation=2),
              dict(stride=(2, 1, 3), padding=(1, 0, 2), dilation=(1, 2, 1)), dict(groups=2, padding=1),
              dict(groups=4, stride=2), dict(stride=3, padding=(2, 1, 1), dilation=2)]


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_vs_torch(nd, case):
    case = {k: (v[:nd] if isinstance(v, tuple) else v) for k, v in case.items()}
    g = case.get("groups", 1)
    x, w, b = rand(2, 4, *SHAPES[nd]), rand(8, 4 // g, *KERNEL[nd], seed=1), rand(8, seed=2)
    close(R.conv(x, w, b, **case), TF[nd][0](T(x), T(w), T(b), **case))


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular", "constant"])
def test_conv_padding_modes_vs_torch(nd, mode):
    pads = ((2, 1), (0, 2), (1, 1))[:nd]
    x, w = rand(1, 2, *SHAPES[nd]), rand(3, 2, *KERNEL[nd], seed=1)
    xp = F.pad(T(x), tpad(pads), mode=mode, **({"value": 1.5} if mode == "constant" else {}))
    close(R.conv(x, w, padding=pads, padding_mode=mode, padding_value=1.5, stride=2),
          TF[nd][0](xp, T(w), stride=2))


def test_conv_activation_dtype_and_helpers():
    x, w, b = rand(2, 4, 7, 5).astype(np.float32), rand(6, 4, 3, 3, seed=1), rand(6, seed=2)
    y = F.conv2d(T(x.astype(np.float64)), T(w), T(b), padding=1)
    out = R.conv(x, w, b, padding=1, activation="relu6")
    assert out.dtype == np.float64
    close(out, torch.clamp(y, 0, 6))
    close(R.conv(x, w, b, padding=1, activation="relu"), F.relu(y))
    dw, pw = rand(8, 1, 3, 3, seed=3), rand(5, 8, seed=4)
    close(R.depthwise_conv(x, dw, b=rand(8, seed=5), stride=2, padding=1),
          F.conv2d(T(x.astype(np.float64)), T(dw), T(rand(8, seed=5)), stride=2, padding=1, groups=4))
    mid = F.conv2d(T(x.astype(np.float64)), T(dw), T(rand(8, seed=5)), padding=1, dilation=2, groups=4)
    close(R.separable_conv(x, dw, pw, rand(5, seed=6), padding=1, dilation=2,
                           depthwise_bias=rand(8, seed=5), activation="relu"),
          F.relu(F.conv2d(mid, T(pw[:, :, None, None]), T(rand(5, seed=6)))))


def test_sliding_windows_view():
    x = np.arange(2 * 3 * 9.0).reshape(2, 3, 9)
    v = R.sliding_windows(x, 3, 2, 2)
    assert v.shape == (2, 3, 3, 3) and not v.flags.owndata
    assert v[1, 2, 1].tolist() == x[1, 2, [2, 4, 6]].tolist()


# ----------------------------------------------------------------------------- transposed
CT_CASES = [dict(), dict(stride=2), dict(stride=2, padding=1, output_padding=1),
            dict(stride=3, padding=2, output_padding=(2, 0, 1)), dict(dilation=2, padding=1),
            dict(stride=2, dilation=3, output_padding=2), dict(groups=2, stride=2, padding=(1, 0, 1)),
            dict(groups=4, stride=(1, 2, 2), dilation=(2, 1, 1), output_padding=(0, 1, 0))]


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("case", CT_CASES)
def test_conv_transpose_vs_torch(nd, case):
    case = {k: (v[:nd] if isinstance(v, tuple) else v) for k, v in case.items()}
    g = case.get("groups", 1)
    x, w, b = rand(2, 4, *SHAPES[nd]), rand(4, 8 // g, *KERNEL[nd], seed=1), rand(8, seed=2)
    close(R.conv_transpose(x, w, b, **case), TF[nd][1](T(x), T(w), T(b), **case))


@pytest.mark.parametrize("stride,padding,dilation,groups,size", [
    (1, 0, 1, 1, (7, 5)), (2, 1, 1, 1, (7, 5)), (2, 1, 1, 1, (8, 6)), (3, (2, 1), 2, 2, (9, 7)),
    ((2, 3), 0, (1, 2), 3, (10, 11))])
def test_conv_transpose_vs_conv2d_input_grad(stride, padding, dilation, groups, size):
    """torch.nn.grad.conv2d_input (the adjoint of conv2d) is an independent oracle."""
    w = rand(6, 6 // groups, 3, 2, seed=1)
    out_hw = F.conv2d(torch.zeros(1, 6, *size, dtype=torch.float64), T(w), None, stride,
                      padding, dilation, groups).shape[2:]
    gy = rand(2, 6, *out_hw)
    ref = torch.nn.grad.conv2d_input((2, 6, *size), T(w), T(gy), stride, padding, dilation, groups)
    close(R.conv_transpose(gy, w, None, stride, padding, groups=groups, dilation=dilation,
                           output_size=size), ref)
    # and the adjoint identity <conv(x), gy> == <x, conv_transpose(gy)>
    x = rand(2, 6, *size, seed=7)
    lhs = np.vdot(R.conv(x, w, None, stride, padding, dilation, groups), gy)
    rhs = np.vdot(x, R.conv_transpose(gy, w, None, stride, padding, groups=groups,
                                      dilation=dilation, output_size=size))
    assert abs(lhs - rhs) < 1e-9 * max(1.0, abs(lhs))


def test_conv_transpose_output_size_vs_module():
    x, w, b = rand(1, 4, 5, 4), rand(4, 3, 3, 3, seed=1), rand(3, seed=2)
    m = torch.nn.ConvTranspose2d(4, 3, 3, stride=3, padding=1).double()
    with torch.no_grad():
        m.weight.copy_(T(w)), m.bias.copy_(T(b))
        for size in [(13, 10), (14, 11), (15, 12)]:
            close(R.conv_transpose(x, w, b, stride=3, padding=1, output_size=size), m(T(x), output_size=size))


@pytest.mark.parametrize("n,k,s,d", [(5, 3, 1, 1), (5, 3, 2, 1), (4, 4, 2, 1), (5, 1, 2, 1), (5, 2, 3, 1),
                                     (4, 3, 2, 2), (6, 1, 3, 1)])
def test_conv_transpose_same_full_pairs(n, k, s, d):
    x, w, b = rand(2, 3, n), rand(3, 2, k, seed=1), rand(2, seed=2)
    full = R.conv_transpose(x, w, b, stride=s, dilation=d)
    assert full.shape[-1] == (n - 1) * s + d * (k - 1) + 1
    close(full, F.conv_transpose1d(T(x), T(w), T(b), stride=s, dilation=d))
    same = R.conv_transpose(x, w, b, stride=s, dilation=d, padding="same")
    assert same.shape[-1] == n * s
    total = full.shape[-1] - n * s
    if total >= 0:
        close(same, full[..., total // 2: total // 2 + n * s])
    else:  # extended on the right by zeros + bias
        close(same, np.concatenate([full, np.broadcast_to(b[None, :, None], (2, 2, -total))], -1))
    fl = R.conv_transpose(x, w, b, stride=s, dilation=d, padding="full")
    m = d * (k - 1)
    close(fl, full[..., m: full.shape[-1] - m])
    close(R.conv_transpose(x, w, b, stride=s, dilation=d, padding=((1, 0),)), full[..., 1:])
    # output_padding appends one position that no tap reaches: bias only
    longer = np.concatenate([full, np.broadcast_to(b[None, :, None], (2, 2, 1))], -1)
    close(R.conv_transpose(x, w, b, stride=s, dilation=d, padding=((0, 2),), output_padding=1),
          longer[..., :-2])
    if max(s, d) > 1:
        close(longer, F.conv_transpose1d(T(x), T(w), T(b), stride=s, dilation=d, output_padding=1))


# ----------------------------------------------------------------------------- pooling
POOL_CASES = [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
              dict(kernel_size=3, stride=2, ceil_mode=True), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
              dict(kernel_size=(2, 3, 2), stride=(1, 2, 3), padding=(1, 1, 0)),
              dict(kernel_size=2, stride=3, padding=1, ceil_mode=True), dict(kernel_size=4, stride=1, padding=2)]


def _case(case, nd):
    return {k: (v[:nd] if isinstance(v, tuple) else v) for k, v in case.items()}


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("case", POOL_CASES + [dict(kernel_size=3, stride=2, padding=1, dilation=2),
                                               dict(kernel_size=2, stride=2, padding=1, dilation=3, ceil_mode=True)])
@pytest.mark.parametrize("ties", [False, True])
def test_max_pool_vs_torch(nd, case, ties):
    case = _case(case, nd)
    x = rand(2, 3, *SHAPES[nd])
    if ties:
        x = np.round(x)  # many equal values: first maximum in scan order wins
    y, i = R.max_pool(x, return_indices=True, **case)
    ty, ti = TF[nd][2](T(x), return_indices=True, **case)
    close(y, ty)
    assert i.dtype == np.int64
    np.testing.assert_array_equal(i, ti.numpy())
    close(R.max_pool(x, **case), ty)


@pytest.mark.parametrize("nd", [1, 2])
def test_max_pool_nan_and_inf_vs_torch(nd):
    x = rand(2, 3, *SHAPES[nd])
    x.reshape(-1)[::4] = np.nan
    x.reshape(-1)[1::5] = -np.inf
    x[1, 2] = -np.inf
    for case in ({"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}, {"kernel_size": 2}):
        y, i = R.max_pool(x, return_indices=True, **case)
        ty, ti = TF[nd][2](T(x), return_indices=True, **case)
        close(y, ty)
        np.testing.assert_array_equal(i, ti.numpy())
    y, i = R.adaptive_max_pool(x, (3,) * nd, return_indices=True)
    ty, ti = getattr(F, f"adaptive_max_pool{nd}d")(T(x), (3,) * nd, return_indices=True)
    close(y, ty)
    np.testing.assert_array_equal(i, ti.numpy())


@pytest.mark.parametrize("nd,div", [(1, None), (2, None), (3, None), (2, 5), (3, 5)])  # no 1-d override
@pytest.mark.parametrize("case", POOL_CASES)
@pytest.mark.parametrize("cip", [True, False])
def test_avg_pool_vs_torch(nd, case, cip, div):
    case = _case(case, nd)
    x = rand(2, 3, *SHAPES[nd])
    kw = dict(count_include_pad=cip, **({"divisor_override": div} if div else {}))
    close(R.avg_pool(x, **case, **kw), TF[nd][3](T(x), **case, **kw))


@pytest.mark.parametrize("cip", [True, False])
def test_avg_pool_dilation_and_pairs(cip):
    """Beyond torch: dilation via conv with a ones kernel; asymmetric pads via F.pad."""
    x = rand(2, 3, 7, 5)
    pads, k, s, d = ((2, 1), (0, 2)), (3, 2), (2, 1), (2, 3)
    ones = torch.ones(3, 1, *k, dtype=torch.float64)
    num = F.conv2d(F.pad(T(x), tpad(pads)), ones, stride=s, dilation=d, groups=3)
    mask = F.pad(torch.ones(1, 3, 7, 5, dtype=torch.float64), tpad(pads), value=float(cip))
    den = F.conv2d(mask, ones, stride=s, dilation=d, groups=3)
    close(R.avg_pool(x, k, s, pads, count_include_pad=cip, dilation=d), num / den)
    y, i = R.max_pool(x, k, s, pads, dilation=d, return_indices=True)
    close(y, F.max_pool2d(F.pad(T(x), tpad(pads), value=-math.inf), k, s, dilation=d))
    assert ((i >= 0) & (i < 35)).all()
    same = R.max_pool(x, 3, 2, "same")
    assert same.shape[2:] == (4, 3)
    close(same, F.max_pool2d(F.pad(T(x), [1, 1, 1, 1], value=-math.inf), 3, 2))


def test_pool_wholly_padded_windows():
    x = rand(1, 2, 3)
    y, i = R.max_pool(x, 2, 1, ((3, 0),), return_indices=True)
    assert np.isneginf(y[..., :2]).all() and (i[..., :2] == -1).all() and (i[..., 2:] >= 0).all()
    a = R.avg_pool(x, 2, 1, ((3, 0),), count_include_pad=False)
    assert (a[..., :2] == 0).all()


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("p", [1, 2, 3, 1.5, math.inf, -math.inf])
@pytest.mark.parametrize("case", [dict(kernel_size=2), dict(kernel_size=3, stride=2),
                                  dict(kernel_size=(2, 3, 2), stride=(1, 2, 3))])
def test_lp_pool_vs_torch(nd, p, case):
    case = {k: (v[0] if nd == 1 else v[:nd]) if isinstance(v, tuple) else v for k, v in case.items()}
    x = rand(2, 3, *SHAPES[nd])  # the norm, (sum |x|**p) ** (1/p): torch's value on |x|
    with np.errstate(invalid="ignore"):
        close(R.lp_pool(x, p, **case), TF[nd][4](T(np.abs(x)), p, **case), equal_nan=True)


def test_lp_pool_ceil_mode():
    """Full windows agree with torch. A partial (ceil_mode) window is the plain sum over its
    taps here; torch computes it as avg_pool * prod(k), i.e. scales it by prod(k) / taps."""
    x = np.abs(rand(2, 3, 7, 5))
    ours = R.lp_pool(x, 2, 2, 2, ceil_mode=True)
    torch_ = F.lp_pool2d(T(x), 2, 2, 2, ceil_mode=True).numpy()
    close(ours[:, :, :3, :2], torch_[:, :, :3, :2])
    taps = np.multiply.outer([2, 2, 2, 1], [2, 2, 1])
    close(ours ** 2 * 4 / taps, torch_ ** 2)
    brute = np.sqrt(np.add.reduceat(np.add.reduceat(x ** 2, [0, 2, 4, 6], 2), [0, 2, 4], 3))
    close(ours, brute)


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("out", [1, 2, 3, 4, 8])
def test_adaptive_vs_torch(nd, out):
    x = rand(2, 3, *SHAPES[nd])
    osz = (out, None, out + 1)[:nd] if nd > 1 else out
    close(R.adaptive_avg_pool(x, osz), getattr(F, f"adaptive_avg_pool{nd}d")(T(x), osz))
    y, i = R.adaptive_max_pool(x, osz, return_indices=True)
    ty, ti = getattr(F, f"adaptive_max_pool{nd}d")(T(x), osz, return_indices=True)
    close(y, ty)
    np.testing.assert_array_equal(i, ti.numpy())
    close(R.adaptive_max_pool(x, osz), ty)


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_global_and_spp(nd):
    x = rand(2, 3, *SHAPES[nd])
    close(R.global_avg_pool(x), getattr(F, f"adaptive_avg_pool{nd}d")(T(x), 1))
    close(R.global_max_pool(x), getattr(F, f"adaptive_max_pool{nd}d")(T(x), 1))
    for mode in ("max", "avg"):
        fn = getattr(F, f"adaptive_{mode}_pool{nd}d")
        want = torch.cat([fn(T(x), lv).reshape(2, -1) for lv in (1, 2, 4)], 1)
        got = R.spatial_pyramid_pool(x, mode=mode)
        assert got.shape == (2, 3 * sum(lv ** nd for lv in (1, 2, 4)))
        close(got, want)


# ----------------------------------------------------------------------------- windows
@pytest.mark.parametrize("case", [dict(kernel_size=3), dict(kernel_size=(2, 3), stride=2, padding=1),
                                  dict(kernel_size=2, stride=(2, 1), padding=(0, 2), dilation=(2, 1)),
                                  dict(kernel_size=(3, 1), stride=3, padding=1, dilation=2)])
def test_unfold_fold_2d_vs_torch(case):
    x = rand(2, 3, 7, 5)
    cols = R.unfold(x, **case)
    close(cols, F.unfold(T(x), **case))
    c = rand(*cols.shape, seed=3)
    close(R.fold(c, (7, 5), **case), F.fold(T(c), (7, 5), **case))


@pytest.mark.parametrize("nd", [1, 3])
def test_unfold_fold_1d_3d(nd):
    """Row order is channel-major then kernel taps, i.e. w.reshape(K, -1) @ cols == conv;
    fold is unfold's adjoint."""
    x, w = rand(2, 3, *SHAPES[nd]), rand(4, 3, *KERNEL[nd], seed=1)
    kw = dict(stride=2, padding=1, dilation=(2, 1, 1)[:nd])
    cols = R.unfold(x, KERNEL[nd], **kw)
    y = TF[nd][0](T(x), T(w), **kw)
    close(np.einsum("ok,nkl->nol", w.reshape(4, -1), cols).reshape(y.shape), y)
    c = rand(*cols.shape, seed=3)
    lhs, rhs = np.vdot(cols, c), np.vdot(x, R.fold(c, SHAPES[nd], KERNEL[nd], **kw))
    assert abs(lhs - rhs) < 1e-9 * abs(lhs)
    if nd == 1:
        close(cols, F.unfold(T(x[:, :, None]), (1, 3), stride=(1, 2), padding=(0, 1), dilation=(1, 2)))


ODD, EVEN = (7, 5, 3), (6, 4, 2)  # sizes whose default unpool size is the input size


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("case", [dict(kernel_size=2, shape=EVEN), dict(kernel_size=3, stride=2, padding=1, shape=ODD),
                                  dict(kernel_size=2, stride=1, shape=ODD),
                                  dict(kernel_size=3, stride=2, shape=(8, 6, 5), output_size=True)])
def test_max_unpool_vs_torch(nd, case):
    case = dict(case)
    shape, osz = case.pop("shape")[:nd], case.pop("output_size", None)
    osz = shape if osz else None
    x = rand(2, 3, *shape)
    y, i = TF[nd][2](T(x), return_indices=True, **case)
    want = getattr(F, f"max_unpool{nd}d")(y, i, output_size=osz, **case)
    close(R.max_unpool(y.numpy(), i.numpy(), output_size=osz, **case), want)
    default = [(n - 1) * 2 + 3 for n in y.shape[2:]]
    if osz and i.max() >= math.prod(default):
        with pytest.raises(ValueError, match="indices"):
            R.max_unpool(y.numpy(), i.numpy(), **case)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k,size", [((2, 3), dict(output_size=(4, 3))), (3, dict(output_size=(5, 4))),
                                    ((3, 2), dict(output_ratio=(0.5, 0.7))), (2, dict(output_size=1)),
                                    (2, dict(output_size=(10, 8))), ((1, 2), dict(output_size=(3, 2)))])
def test_fractional_max_pool2d_vs_torch(dtype, k, size):
    x = rand(2, 3, 11, 9).astype(dtype)
    x[0, 0] = np.round(x[0, 0])
    u = np.random.default_rng(5).random((2, 3, 2)).astype(dtype)
    u[0, 0] = [0.0, 0.999]
    y, i = R.fractional_max_pool2d(x, k, return_indices=True, random_samples=u, **size)
    ty, ti = F.fractional_max_pool2d(T(x), k, return_indices=True, _random_samples=T(u), **size)
    close(y, ty.double())
    np.testing.assert_array_equal(i, ti.numpy())


def test_fractional_seed_and_intervals():
    x = rand(2, 3, 9, 8)
    a = R.fractional_max_pool2d(x, 2, output_size=4, seed=3)
    b = R.fractional_max_pool2d(x, 2, output_size=4,
                                random_samples=np.random.default_rng(3).random((2, 3, 2)))
    np.testing.assert_array_equal(a, b)
    assert R.fractional_intervals(np.float64(0.5), 9, 4, 2) == [0, 2, 4, 7]
    assert R.fractional_intervals(np.float64(0.25), 5, 1, 2) == [3]


def test_zero_batch_read_only_non_contiguous_any_dtype():
    x = rand(2, 8, 9, 8)[:, ::2, ::-1, ::2]
    x.setflags(write=False)
    w = rand(6, 2, 3, 3, seed=1)
    w.setflags(write=False)
    close(R.conv(x, w, padding=1, groups=2), F.conv2d(T(x), T(w), padding=1, groups=2))
    for dt in (np.float16, np.float32):
        assert R.conv(x.astype(dt), w.astype(dt), groups=2).dtype == np.float64
        assert R.max_pool(x.astype(dt), 2, return_indices=True)[1].dtype == np.int64
    z = np.zeros((0, 4, 7, 5))
    assert R.conv(z, w, groups=2).shape == (0, 6, 5, 3)
    assert R.conv_transpose(z, rand(4, 3, 3, 3), stride=2).shape == (0, 3, 15, 11)
    assert R.max_pool(z, 2, return_indices=True)[1].shape == (0, 4, 3, 2)
    assert R.adaptive_max_pool(z, 3, True)[1].shape == (0, 4, 3, 3)
    assert R.fold(R.unfold(z, 2), (7, 5), 2).shape == (0, 4, 7, 5)
    assert R.spatial_pyramid_pool(z).shape == (0, 84)
    assert R.fractional_max_pool2d(z, 2, output_size=3).shape == (0, 4, 3, 3)


# ------------------------------------------------------- the conv samples of the op registry
def _conv_geometries():
    """The registry's conv samples (fastconv.testing) that PyTorch can compute, once per
    geometry: dtype and tags aside, in float64, as the reference computes."""
    from dataclasses import replace

    import torch_oracle

    from fastconv.testing.registry import samples

    unique = dict.fromkeys(replace(s, dtype="float64", tags=frozenset())
                           for s in samples(family="conv", exclude={"every_op"}))
    return [s for s in unique if s.transposed or torch_oracle.has_answer(s.spec())]


@pytest.mark.parametrize("s", _conv_geometries(), ids=str)
def test_conv_reference_vs_torch_per_registry_sample(s):
    """The ground truth of tests/test_conv.py, checked once per sample (not per algorithm)."""
    import torch_oracle

    from fastconv.testing.registry import op_info

    x, w, b = s.arrays(np.random.default_rng(0))
    ours = op_info(s.op).reference(x, w, b, **s.args)
    theirs = (torch_oracle.conv_transpose if s.transposed else torch_oracle.conv)(s.spec(), x, w, b)
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-9)
