"""unfold, fold, max_unpool1d/2d/3d and fractional_max_pool2d against the NumPy
reference and PyTorch."""

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import fastconv as F
from fastconv import reference as R
from fastconv.dispatch import implementations
from fastconv.testing.registry import error_inputs, samples
from fastconv.testing.tolerances import assert_close

DTYPES = [np.float16, np.float32, np.float64]


def rand(rng, shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


def t(a):
    return torch.from_numpy(np.ascontiguousarray(a))


def check(actual, expected, family, dtype, what=""):
    assert actual.dtype == np.dtype(dtype), f"{what}: dtype {actual.dtype} != {np.dtype(dtype)}"
    assert_close(actual, expected, family, dtype, what=what)


# ---- unfold ------------------------------------------------------------------------

def _args(case, *names):
    """The input shape and the sample's keyword arguments ``names``, in that order."""
    return (case.shapes[0], *(case.args[n] for n in names))


UNFOLD = ("kernel_size", "stride", "padding", "dilation")
UNFOLD_CASES = [_args(c, *UNFOLD) for c in samples(op="unfold", tags={"vs_reference"})]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,k,s,p,d", UNFOLD_CASES)
def test_unfold_matches_reference(rng, shape, k, s, p, d, dtype):
    x = rand(rng, shape, dtype)
    y = F.unfold(x, k, stride=s, padding=p, dilation=d)
    check(y, R.unfold(x, k, s, p, d), "unfold", dtype, f"unfold {shape} k={k} s={s} p={p} d={d}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,k,s,p,d", [_args(c, *UNFOLD) for c in samples(op="unfold", tags={"vs_torch"})])
def test_unfold_2d_matches_torch(rng, shape, k, s, p, d, dtype):
    x = rand(rng, shape, dtype)
    # torch's positional order is (dilation, padding, stride): keywords only
    expected = TF.unfold(t(x), k, dilation=d, padding=p, stride=s).numpy()
    y = F.unfold(x, k, s, p, d)
    assert y.dtype == x.dtype
    np.testing.assert_array_equal(y, expected)


def test_unfold_1d_matches_torch_with_unit_height(rng):
    x = rand(rng, (2, 3, 11))
    y = F.unfold(x, 3, stride=2, padding=2, dilation=2)
    expected = TF.unfold(t(x[:, :, None, :]), (1, 3), dilation=(1, 2), padding=(0, 2), stride=(1, 2))
    np.testing.assert_array_equal(y, expected.numpy())


def test_unfold_3d_rows_are_channel_major_then_taps(rng):
    x = rand(rng, (1, 2, 3, 3, 3), np.float64)
    y = F.unfold(x, 2)
    # row c * 8 + (kd * 4 + kh * 2 + kw), block (bd * 4 + bh * 2 + bw)
    assert y.shape == (1, 16, 8)
    assert y[0, 1 * 8 + 5, 3] == x[0, 1, 0 + 1, 1 + 0, 1 + 1]


def test_unfold_unbatched_needs_tuple_kernel(rng):
    x = rand(rng, (3, 6, 7))
    y = F.unfold(x, (2, 2), stride=2)
    np.testing.assert_array_equal(y, TF.unfold(t(x), 2, stride=2).numpy())
    # an int kernel_size reads a 3-D input as batched 1-D
    assert F.unfold(x, 2).shape == (3, 12, 6)


def test_unfold_noncontiguous_readonly_not_modified(rng):
    base = rand(rng, (2, 4, 9, 10), np.float64)
    x = base[:, ::2, 1::2, ::-1]
    x_before = x.copy()
    y = F.unfold(x, 2, padding=1)
    check(y, R.unfold(x, 2, 1, 1, 1), "unfold", np.float64, "non-contiguous")
    np.testing.assert_array_equal(x, x_before)
    ro = np.ascontiguousarray(x)
    ro.setflags(write=False)
    np.testing.assert_array_equal(F.unfold(ro, 2, padding=1), y)
    chl = np.moveaxis(np.moveaxis(x, 1, -1).copy(), -1, 1)  # channels-last memory
    np.testing.assert_array_equal(F.unfold(chl, 2, padding=1), y)


def test_unfold_zero_batch_and_odd_sizes(rng):
    y = F.unfold(np.zeros((0, 3, 5, 7), np.float32), (2, 3), padding=(1, 0))
    assert y.shape == (0, 18, 6 * 5) and y.dtype == np.float32
    x = rand(rng, (1, 1, 1, 13))
    check(F.unfold(x, (1, 5), stride=(1, 4)), R.unfold(x, (1, 5), (1, 4)), "unfold", np.float32, "1 x 13")


# ---- fold --------------------------------------------------------------------------

FOLD = ("output_size", "kernel_size", "stride", "padding", "dilation")
FOLD_CASES = [_args(c, *FOLD) for c in samples(op="fold", tags={"vs_reference"})]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,osz,k,s,p,d", FOLD_CASES)
def test_fold_matches_reference(rng, shape, osz, k, s, p, d, dtype):
    cols = rand(rng, shape, dtype)
    y = F.fold(cols, osz, k, stride=s, padding=p, dilation=d)
    check(y, R.fold(cols, osz, k, s, p, d), "fold", dtype, f"fold {osz} k={k} s={s} p={p} d={d}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,osz,k,s,p,d", [_args(c, *FOLD) for c in samples(op="fold", tags={"vs_torch"})])
def test_fold_2d_matches_torch(rng, shape, osz, k, s, p, d, dtype):
    cols = rand(rng, shape, dtype)
    expected = TF.fold(t(cols), osz, k, dilation=d, padding=p, stride=s).numpy()
    y = F.fold(cols, osz, k, s, p, d)
    assert y.dtype == cols.dtype
    if dtype == np.float32:  # same summation order as torch's col2im: bitwise equal
        np.testing.assert_array_equal(y, expected)
    else:  # float16: torch rounds after every add, fastconv accumulates in float32
        assert_close(y, R.fold(cols, osz, k, s, p, d), "fold", dtype)
        assert_close(y, expected.astype(np.float64), "fold", dtype, scale=4)


def test_fold_inverts_unfold_up_to_overlap_counts(rng):
    x = rand(rng, (2, 3, 6, 7), np.float64)
    args = dict(kernel_size=(3, 2), stride=(1, 2), padding=((1, 2), (0, 1)), dilation=(2, 1))
    counts = F.fold(F.unfold(np.ones_like(x), **args), (6, 7), **args)
    assert_close(F.fold(F.unfold(x, **args), (6, 7), **args), x * counts, "fold", np.float64)


def test_fold_unbatched_int_sizes_noncontiguous_readonly(rng):
    cols = rand(rng, (24, 3 * 4), np.float64)[::2].T.copy().T  # (12, 12) Fortran order
    cols = cols[:, :9]  # (12, 9): C=3, kernel 2x2, 3x3 blocks of a 4x4 image
    before = cols.copy()
    y = F.fold(cols, 4, 2)
    assert y.shape == (3, 4, 4)
    np.testing.assert_allclose(y, TF.fold(t(cols), 4, 2).numpy(), rtol=1e-14)
    np.testing.assert_array_equal(cols, before)
    ro = np.ascontiguousarray(cols)
    ro.setflags(write=False)
    np.testing.assert_array_equal(F.fold(ro, 4, 2), y)


def test_fold_zero_batch():
    y = F.fold(np.zeros((0, 8, 9), np.float16), (4, 4), 2)
    assert y.shape == (0, 2, 4, 4) and y.dtype == np.float16


# ---- max_unpool --------------------------------------------------------------------

TORCH_POOL = {1: TF.max_pool1d, 2: TF.max_pool2d, 3: TF.max_pool3d}
TORCH_UNPOOL = {1: TF.max_unpool1d, 2: TF.max_unpool2d, 3: TF.max_unpool3d}
UNPOOL = {1: F.max_unpool1d, 2: F.max_unpool2d, 3: F.max_unpool3d}

UNPOOL_CASES = [_args(c, "kernel_size", "stride", "padding", "output_size")
                for c in samples(family="window", tags={"vs_torch"}) if c.op.startswith("max_unpool")]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,k,s,p,osz", UNPOOL_CASES)
def test_max_unpool_matches_torch_and_reference(rng, shape, k, s, p, osz, dtype):
    nd = len(shape) - 2
    x = rand(rng, shape, np.float64)
    v, i = TORCH_POOL[nd](t(x), k, s, p, return_indices=True)
    v16 = v.numpy().astype(dtype)
    expected = TORCH_UNPOOL[nd](t(v16), i, k, s, p, osz).numpy()
    y = UNPOOL[nd](v16, i.numpy(), k, s, p, osz)
    assert y.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(y, expected)
    check(y, R.max_unpool(v16, i.numpy(), k, s, p, osz), "max_unpool", dtype, f"unpool {shape}")


def test_max_unpool_repeated_index_last_wins():
    x = np.array([[[1.0, 2.0, 3.0, 4.0]]], np.float32)
    i = np.array([[[0, 0, 3, 3]]])
    y = F.max_unpool1d(x, i, 2)
    np.testing.assert_array_equal(y, TF.max_unpool1d(t(x), t(i), 2).numpy())
    np.testing.assert_array_equal(y[0, 0], [2, 0, 0, 4, 0, 0, 0, 0])


def test_max_unpool_padding_forms(rng):
    x = rand(rng, (1, 2, 3, 4))
    i = rng.integers(0, 6 * 7, size=x.shape)
    # per-side pairs: (in - 1) * s + k - begin - end
    y = F.max_unpool2d(x, i, 3, 2, ((1, 0), (0, 1)))
    assert y.shape == (1, 2, 6, 8)
    check(y, R.max_unpool(x, i, 3, 2, ((1, 0), (0, 1))), "max_unpool", np.float32, "pairs")
    # "full": the padding of max_pool2d(padding="full"), kernel - 1 each side
    i_small = rng.integers(0, 1, size=x.shape)
    assert F.max_unpool2d(x, i_small, 2, 1, "full").shape == (1, 2, 2, 3)
    # "same": output input * stride, as conv_transpose's "same"
    assert F.max_unpool2d(x, i, 3, 2, "same").shape == (1, 2, 6, 8)
    assert F.max_unpool2d(x, i, (2, 1), (3, 2), "same").shape == (1, 2, 9, 8)
    assert F.max_unpool2d(x, i, 2, 2, "valid").shape == (1, 2, 6, 8)


def test_max_unpool_unbatched_zero_batch_int32_indices_readonly(rng):
    x = rand(rng, (3, 8, 8), np.float64)
    v, i = TF.max_pool2d(t(x), 2, return_indices=True)
    vv, ii = v.numpy()[:, ::-1], i.numpy()[:, ::-1]  # non-contiguous
    vv.setflags(write=False)
    before = (vv.copy(), ii.copy())
    y = F.max_unpool2d(vv, ii.astype(np.int32), 2)
    np.testing.assert_array_equal(y, TF.max_unpool2d(t(vv), t(ii), 2).numpy())
    np.testing.assert_array_equal(vv, before[0])
    np.testing.assert_array_equal(ii, before[1])
    z = F.max_unpool3d(np.zeros((0, 2, 2, 2, 2), np.float16), np.zeros((0, 2, 2, 2, 2), np.int64), 2)
    assert z.shape == (0, 2, 4, 4, 4) and z.dtype == np.float16


# ---- fractional max pooling --------------------------------------------------------

FRACTIONAL_CASES = [_args(c, "kernel_size", "output_size", "output_ratio")
                    for c in samples(op="fractional_max_pool2d", tags={"vs_torch"})]


def samples_for(shape, seed, dtype):
    return np.random.default_rng(seed).random((shape[0], shape[1], 2)).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,k,osz,ratio", FRACTIONAL_CASES)
def test_fractional_max_pool2d_matches_torch(rng, shape, k, osz, ratio, dtype):
    x = rand(rng, shape, dtype)
    u = samples_for(shape, 7, dtype)
    y, i = F.fractional_max_pool2d(x, k, osz, ratio, return_indices=True, _random_samples=u)
    if osz is None:  # torch's functional form cannot take a scalar output_ratio
        osz = (int(shape[2] * (ratio if np.isscalar(ratio) else ratio[0])),
               int(shape[3] * (ratio if np.isscalar(ratio) else ratio[1])))
    ty, ti = TF.fractional_max_pool2d(t(x), k, output_size=osz, return_indices=True, _random_samples=t(u))
    assert y.dtype == x.dtype and i.dtype == np.int64
    np.testing.assert_array_equal(y, ty.numpy())
    np.testing.assert_array_equal(i, ti.numpy())
    ry, ri = R.fractional_max_pool2d(x, k, osz, return_indices=True, random_samples=u)
    check(y, ry, "fractional_max_pool", dtype)
    np.testing.assert_array_equal(i, ri)


def test_fractional_max_pool2d_seed_matches_reference(rng):
    x = rand(rng, (2, 3, 12, 10), np.float64)
    y, i = F.fractional_max_pool2d(x, 2, output_ratio=0.6, return_indices=True, seed=11)
    ry, ri = R.fractional_max_pool2d(x, 2, output_ratio=0.6, return_indices=True, seed=11)
    check(y, ry, "fractional_max_pool", np.float64)
    np.testing.assert_array_equal(i, ri)
    np.testing.assert_array_equal(F.fractional_max_pool2d(x, 2, output_ratio=0.6, seed=11), y)
    assert F.fractional_max_pool2d(x, 2, (5, 5)).shape == (2, 3, 5, 5)  # fresh entropy


def test_fractional_max_pool2d_float16_samples_near_one(rng):
    x = rand(rng, (1, 4, 40, 33), np.float16)
    u = np.array([[[0.9995, 0.9999], [0.0, 0.5], [0.3333, 0.6667], [1.0, 1.0]]], np.float16)
    y, i = F.fractional_max_pool2d(x, (3, 2), (17, 19), return_indices=True, _random_samples=u)
    ty, ti = TF.fractional_max_pool2d(t(x), (3, 2), output_size=(17, 19), return_indices=True,
                                      _random_samples=t(u))
    np.testing.assert_array_equal(y, ty.numpy())
    np.testing.assert_array_equal(i, ti.numpy())


def test_fractional_max_pool2d_nan_and_inf_like_torch(rng):
    x = rand(rng, (1, 2, 8, 8))
    x[0, 0, 1, 1] = np.nan
    x[0, 0, 2, 2] = np.nan
    x[0, 1] = -np.inf
    u = samples_for(x.shape, 3, np.float32)
    y, i = F.fractional_max_pool2d(x, 3, (4, 4), return_indices=True, _random_samples=u)
    ty, ti = TF.fractional_max_pool2d(t(x), 3, output_size=(4, 4), return_indices=True, _random_samples=t(u))
    np.testing.assert_array_equal(y, ty.numpy())  # NaN == NaN here
    np.testing.assert_array_equal(i, ti.numpy())


def test_fractional_max_pool2d_unbatched_noncontiguous_readonly_zero_batch(rng):
    base = rand(rng, (3, 11, 20), np.float64)
    x = base[:, :, ::2]
    x.setflags(write=False)
    before = x.copy()
    u = samples_for((1, 3), 5, np.float64)
    y = F.fractional_max_pool2d(x, 2, (5, 6), _random_samples=u)
    ty = TF.fractional_max_pool2d(t(x), 2, output_size=(5, 6), _random_samples=t(u))
    np.testing.assert_array_equal(y, ty.numpy())
    np.testing.assert_array_equal(x, before)
    # a larger sample batch is allowed (first N used), as torch
    u3 = samples_for((3, 3), 5, np.float64)
    y3 = F.fractional_max_pool2d(np.ascontiguousarray(x)[None], 2, (5, 6), _random_samples=u3)
    np.testing.assert_array_equal(y3[0], F.fractional_max_pool2d(x, 2, (5, 6), _random_samples=u3[:1]))
    z, zi = F.fractional_max_pool2d(np.zeros((0, 2, 6, 6), np.float32), 2, 3, return_indices=True)
    assert z.shape == zi.shape == (0, 2, 3, 3) and zi.dtype == np.int64


@pytest.mark.parametrize("e", error_inputs(family="window"), ids=str)
def test_errors(e):
    with pytest.raises(e.error, match=e.match):
        e.call(F)


def test_registered_in_dispatch():
    assert list(implementations("unfold", "cpu")) == ["direct"]
    assert list(implementations("fold", "cpu")) == ["gather"]
    assert list(implementations("max_unpool", "cpu")) == ["direct"]
    assert list(implementations("fractional_max_pool", "cpu")) == ["direct"]


def test_cuda_arrays_are_refused_not_silently_copied():
    class FakeDeviceArray:
        __cuda_array_interface__ = {"shape": (1, 1, 4, 4), "typestr": "<f4", "data": (0, False), "version": 3}

    with pytest.raises(TypeError, match=r"unfold: input is a CUDA array, but unfold has CPU kernels only"):
        F.unfold(FakeDeviceArray(), (2, 2))


def test_repeated_calls_run_their_plan_and_check_the_rest(rng):
    """unfold, fold and max_unpool on NumPy arrays keep a call plan (ops/_call.py): the
    second call of each kind, batched and unbatched, gives the reference's result again;
    index values are still checked on every call, and errors are never kept."""
    x = rand(rng, (2, 3, 6, 4))
    cols = rand(rng, (2, 3 * 2 * 2, 7 * 5))  # unfold's (C * k * k, blocks) of a 6x4 image, kernel 2, padding 1
    v, i = TF.max_pool2d(t(x), 2, return_indices=True)
    v, i = v.numpy(), i.numpy()
    for _ in range(2):
        check(F.unfold(x, 2, padding=1), R.unfold(x, 2, 1, 1, 1), "unfold", np.float32, "unfold")
        check(F.unfold(x[1], (2, 2), padding=1), R.unfold(x[1:], 2, 1, 1, 1)[0], "unfold", np.float32, "unbatched")
        check(F.fold(cols, (6, 4), 2, padding=1), R.fold(cols, (6, 4), 2, 1, 1, 1), "fold", np.float32, "fold")
        check(F.max_unpool2d(v[1], i[1], 2), R.max_unpool(v[1:], i[1:], 2, 2, 0)[0], "max_unpool", np.float32,
              "unbatched max_unpool")
        with pytest.raises(ValueError, match="is outside the output plane"):
            F.max_unpool2d(v[1], i[1] + 100, 2)
        with pytest.raises(TypeError, match="kernel_size"):
            F.unfold(x, 2.0, padding=1)
