"""fastconv.dask against the in-memory ops: bitwise for the same algorithm and thread
count, over padding modes, strides, dilations, ragged chunks, halos deeper than a chunk,
1-D/2-D/3-D, batch and channel chunks, transposed conv and pooling; plus dask-image on
the filters it can express, a distributed LocalCluster, the graph's structure, threads
and errors."""

from __future__ import annotations

import subprocess
import sys

import dask
import dask.array as da
import numba
import numpy as np
import pytest

import fastconv as F
import fastconv.dask as fd
from fastconv import filters
from fastconv.dask import halo

MODES = ["zeros", "constant", "reflect", "replicate", "circular", "symmetric"]


@pytest.fixture(autouse=True)
def _synchronous():
    with dask.config.set(scheduler="synchronous"):
        yield


def ref(fn, *args, **kwargs):
    """The in-memory call on one Numba thread, as fastconv.dask's tasks run by default."""
    old = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        return fn(*args, **kwargs)
    finally:
        numba.set_num_threads(old)


def same(got, expected):
    """Bitwise equality (NaN equal to NaN) and matching shape, dtype and known chunks."""
    assert not any(np.isnan(c) for dim in got.chunks for c in dim)
    assert got.shape == expected.shape
    value = got.compute()
    assert value.dtype == expected.dtype
    np.testing.assert_array_equal(value, expected)


def _rand(rng, shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


# ---- forward conv ----------------------------------------------------------------------------

GEOMETRIES_2D = [
    dict(padding=1),
    dict(padding=2, stride=2),
    dict(padding=((3, 1), (0, 4)), dilation=2),
    dict(padding="same", stride=3),
    dict(padding="valid", stride=(1, 2), dilation=(2, 1)),
    dict(padding=7),  # pads longer than the chunks and than reflect's period
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("geometry", GEOMETRIES_2D, ids=lambda g: "-".join(f"{k}{v}" for k, v in g.items()))
def test_conv2d_padding_modes_ragged_chunks(rng, mode, geometry):
    x = _rand(rng, (2, 3, 17, 19))
    w = _rand(rng, (4, 3, 3, 3))
    b = _rand(rng, (4,))
    dx = da.from_array(x, chunks=(1, 3, (5, 3, 9), (4, 4, 1, 3, 7)))
    kw = dict(geometry, padding_mode=mode, padding_value=0.5, algo="direct")
    same(fd.conv2d(dx, w, b, **kw), ref(F.conv2d, x, w, b, **kw))


@pytest.mark.parametrize("mode", MODES)
def test_halo_deeper_than_chunks(rng, mode):
    """A dilated 5x5 window reaches 8 pixels out; the chunks are 1 to 3 pixels wide."""
    x = _rand(rng, (1, 2, 14, 15))
    w = _rand(rng, (3, 2, 5, 5))
    dx = da.from_array(x, chunks=(1, 2, (2, 1, 3, 2, 3, 3), (3,) * 5))
    kw = dict(padding=9, dilation=2, stride=(1, 2), padding_mode=mode, padding_value=-1.0, algo="direct")
    same(fd.conv2d(dx, w, None, **kw), ref(F.conv2d, x, w, None, **kw))


@pytest.mark.parametrize("mode", ["zeros", "reflect"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_rate_4_and_more_chunks_cut_the_banded_regions(rng, mode, channels_last):
    """Layers dilated 4 or more sum each pixel's taps outer, channels inner, in every call: the
    whole array's banded regions (zeros padding), a chunk's own regions or, inside the array
    and with other padding modes (or a NaN weight), every tap of a padded copy. Chunks that
    cut the regions agree with the in-memory call bitwise."""
    x = _rand(rng, (2, 12, 58, 50))
    w = _rand(rng, (20, 12, 3, 3))
    b = _rand(rng, (20,))
    w_nan = w.copy()
    w_nan[3, 5, 0, 2] = np.nan
    if channels_last:
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    rows, cols = (14, 15, 16, 13), (17, 16, 17)  # chunks inside the array (no padding) and at its edges
    chunks = (1, rows, cols, 12) if channels_last else (1, 12, rows, cols)
    dx = da.from_array(x, chunks=chunks)
    for weight, kw in ((w, dict(padding=12, dilation=(12, 6))), (w, dict(padding=((6, 2), (7, 11)), dilation=6)),
                       (w_nan, dict(padding=6, dilation=6, stride=2))):
        kw.update(padding_mode=mode, channels_last=channels_last, algo="direct")
        same(fd.conv2d(dx, weight, b, **kw), ref(F.conv2d, x, weight, b, **kw))


@pytest.mark.parametrize("mode", MODES)
def test_conv1d(rng, mode):
    x = _rand(rng, (3, 2, 40))
    w = _rand(rng, (5, 2, 4))
    b = _rand(rng, (5,))
    dx = da.from_array(x, chunks=(2, 1, (7, 1, 12, 20)))
    for kw in (dict(padding=3, stride=2), dict(padding=((5, 0),), dilation=3), dict(padding="same", stride=4)):
        kw.update(padding_mode=mode, algo="direct")
        same(fd.conv1d(dx, w, b, **kw), ref(F.conv1d, x, w, b, **kw))


@pytest.mark.parametrize("mode", ["zeros", "reflect", "circular"])
def test_conv3d(rng, mode):
    x = _rand(rng, (1, 2, 9, 10, 11))
    w = _rand(rng, (3, 2, 3, 3, 3))
    dx = da.from_array(x, chunks=(1, 2, (4, 5), (3, 3, 4), (6, 5)))
    kw = dict(padding=(1, 2, 1), stride=(1, 2, 2), padding_mode=mode, algo="direct")
    same(fd.conv3d(dx, w, None, **kw), ref(F.conv3d, x, w, None, **kw))


def test_conv3d_volume_3x3x3(rng):
    x = _rand(rng, (1, 1, 12, 12, 12))
    w = _rand(rng, (1, 1, 3, 3, 3))
    dx = da.from_array(x, chunks=(1, 1, 5, 6, 7))
    same(fd.conv3d(dx, w, padding=1, algo="direct"), ref(F.conv3d, x, w, padding=1, algo="direct"))


@pytest.mark.parametrize("channels_last", [False, True])
def test_batch_and_channel_chunks_groups_bias_activation(rng, channels_last):
    """Channels in three chunks are merged (groups mix them); batch chunks map one to one."""
    shape = (5, 13, 11, 6) if channels_last else (5, 6, 13, 11)
    x = _rand(rng, shape)
    w = _rand(rng, (4, 3, 3, 2))
    b = _rand(rng, (4,))
    chunks = (2, 5, 4, 2) if channels_last else (2, 2, 5, 4)
    dx = da.from_array(x, chunks=chunks)
    kw = dict(padding=(1, 0), groups=2, activation="relu6", channels_last=channels_last, algo="direct")
    got = fd.conv2d(dx, w, b, **kw)
    assert got.chunks[0] == dx.chunks[0]
    c_axis = 3 if channels_last else 1
    assert got.chunks[c_axis] == (4,)
    same(got, ref(F.conv2d, x, w, b, **kw))


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_dtypes_and_unbatched(rng, dtype):
    x = _rand(rng, (2, 12, 12), dtype)
    w = _rand(rng, (3, 2, 3, 3), dtype)
    dx = da.from_array(x, chunks=(2, 5, 7))
    kw = dict(padding=1, padding_mode="reflect", algo="direct")
    same(fd.conv2d(dx, w, **kw), ref(F.conv2d, x, w, **kw))


@pytest.mark.parametrize("algo", ["auto", "im2col"])
def test_other_algorithms(rng, algo):
    x = _rand(rng, (1, 4, 16, 16))
    w = _rand(rng, (8, 4, 3, 3))
    dx = da.from_array(x, chunks=(1, 4, 6, 10))
    got = fd.conv2d(dx, w, padding=1, algo=algo).compute()
    np.testing.assert_allclose(got, F.conv2d(x, w, padding=1, algo=algo), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_single_channel_filters_run_banded_depthwise(rng, mode, channels_last, monkeypatch):
    """algo="auto" on a 1-in, 1-out channel 2-D filter runs the depthwise kernel over row
    bands of each chunk; its result is the in-memory direct kernel's, bitwise."""
    from fastconv.dask import conv as dask_conv

    monkeypatch.setattr(dask_conv, "BAND_ROWS", 7)  # several bands per chunk, a ragged last one
    shape = (2, 41, 37, 1) if channels_last else (2, 1, 41, 37)
    x = _rand(rng, shape)
    chunks = (1, (20, 21), (9, 28), 1) if channels_last else (1, 1, (20, 21), (9, 28))
    dx = da.from_array(x, chunks=chunks)
    b = np.array([0.3], np.float32)
    cases = [(filters.sobel(0), None, dict(padding="same")),
             (filters.gaussian(5, 1.0), b, dict(padding=3, stride=2, activation="relu")),
             (_rand(rng, (1, 1, 4, 3)), b, dict(padding=((5, 1), (0, 2)), dilation=(2, 3), stride=(3, 1),
                                                activation="relu6"))]
    for w, bias, kw in cases:
        kw = dict(kw, padding_mode=mode, padding_value=0.75, channels_last=channels_last)
        got = fd.conv2d(dx, w, bias, **kw)
        assert got.__dask_graph__()  # lazy
        same(got, ref(F.conv2d, x, w, bias, algo="direct", **kw))
    x16 = x.astype(np.float16)
    w16 = filters.gaussian(3, 1.0, dtype=np.float16)
    same(fd.conv2d(da.from_array(x16, chunks=chunks), w16, padding=1, channels_last=channels_last),
         ref(F.conv2d, x16, w16, padding=1, algo="direct", channels_last=channels_last))


@pytest.mark.parametrize("mode", ["zeros", "constant"])
def test_chunk_wholly_in_padding(rng, mode):
    """The last output chunk's only window lies in the end padding (no input read)."""
    x = _rand(rng, (1, 2, 5))
    w = _rand(rng, (3, 2, 1))
    b = _rand(rng, (3,))
    dx = da.from_array(x, chunks=(1, 2, (4, 1)))
    kw = dict(stride=3, padding=((0, 4),), padding_mode=mode, padding_value=2.0, algo="direct")
    got = fd.conv1d(dx, w, b, **kw)
    assert got.chunks[2] == (2, 1)
    same(got, ref(F.conv1d, x, w, b, **kw))
    # the same in 2-D on one channel (the banded depthwise path), both layouts
    x2 = _rand(rng, (1, 1, 5, 6))
    w2, b2 = _rand(rng, (1, 1, 1, 2)), _rand(rng, (1,))
    for channels_last in (False, True):
        xx = np.ascontiguousarray(np.moveaxis(x2, 1, -1)) if channels_last else x2
        chunks = (1, (4, 1), 6, 1) if channels_last else (1, 1, (4, 1), 6)
        kw2 = dict(stride=(3, 1), padding=((0, 4), (0, 1)), padding_mode=mode, padding_value=2.0,
                   channels_last=channels_last)
        same(fd.conv2d(da.from_array(xx, chunks=chunks), w2, b2, **kw2), ref(F.conv2d, xx, w2, b2, algo="direct", **kw2))


@pytest.mark.parametrize("mode", ["zeros", "symmetric"])
def test_depthwise_and_separable(rng, mode):
    x = _rand(rng, (2, 4, 15, 13))
    dw = _rand(rng, (8, 1, 3, 3))
    pw = _rand(rng, (5, 8, 1, 1))
    b, db = _rand(rng, (5,)), _rand(rng, (8,))
    dx = da.from_array(x, chunks=(1, 2, (4, 11), (6, 2, 5)))
    kw = dict(stride=2, padding=2, dilation=2, padding_mode=mode)
    same(fd.depthwise_conv2d(dx, dw, db, algo="depthwise", **kw),
         ref(F.depthwise_conv2d, x, dw, db, algo="depthwise", **kw))
    same(fd.separable_conv2d(dx, dw, pw, b, depthwise_bias=db, activation="relu", algo="composed", **kw),
         ref(F.separable_conv2d, x, dw, pw, b, depthwise_bias=db, activation="relu", algo="composed", **kw))
    xl = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    dxl = da.from_array(xl, chunks=(1, (4, 11), (6, 2, 5), 3))
    algo = "fused" if mode == "zeros" else "auto"  # the fused kernel pads with zeros only
    dw1, pw1, db1 = dw[::2], pw[:, ::2], db[::2]  # channel multiplier 1, as the fused kernel needs
    same(fd.separable_conv2d(dxl, dw1, pw1, b, depthwise_bias=db1, algo=algo, channels_last=True, **kw),
         ref(F.separable_conv2d, xl, dw1, pw1, b, depthwise_bias=db1, algo=algo, channels_last=True, **kw))


# ---- transposed conv -------------------------------------------------------------------------

TRANSPOSED = [
    dict(stride=2),
    dict(stride=2, padding=1, output_padding=1),
    dict(stride=3, dilation=2, padding=((2, 0), (1, 3))),
    dict(stride=4),  # stride beyond the kernel: gaps filled by bias only
    dict(stride=2, padding="same"),
    dict(stride=3, padding=1, output_size=(21, 22)),
]


@pytest.mark.parametrize("kw", TRANSPOSED, ids=lambda g: "-".join(f"{k}{v}" for k, v in g.items()))
def test_conv_transpose2d(rng, kw):
    x = _rand(rng, (2, 4, 7, 8))
    w = _rand(rng, (4, 3, 3, 3))
    b = _rand(rng, (3,))
    dx = da.from_array(x, chunks=(1, 3, (2, 1, 4), (3, 5)))
    same(fd.conv_transpose2d(dx, w, b, **kw), ref(F.conv_transpose2d, x, w, b, **kw))


def test_conv_transpose1d_3d_groups_channels_last(rng):
    x = _rand(rng, (2, 17, 4))
    w = _rand(rng, (4, 3, 5))
    dx = da.from_array(x, chunks=(1, (3, 6, 8), 4))
    kw = dict(stride=3, padding=2, groups=2, dilation=2, output_padding=1, channels_last=True)
    same(fd.conv_transpose1d(dx, w, None, **kw), ref(F.conv_transpose1d, x, w, None, **kw))
    x3 = _rand(rng, (1, 2, 5, 6, 4))
    w3 = _rand(rng, (2, 2, 3, 2, 3))
    dx3 = da.from_array(x3, chunks=(1, 1, (2, 3), 3, (1, 3)))
    kw3 = dict(stride=(2, 1, 2), padding=(1, 0, 2))
    same(fd.conv_transpose3d(dx3, w3, None, **kw3), ref(F.conv_transpose3d, x3, w3, None, **kw3))


# ---- pooling ---------------------------------------------------------------------------------

POOLS = [
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=3, stride=2, ceil_mode=True),
    dict(kernel_size=2, padding=1, dilation=2, ceil_mode=True),
    dict(kernel_size=(4, 3), stride=(3, 1), padding=((2, 1), (0, 2))),
    dict(kernel_size=2, stride=3, padding=(0, 4)),  # end windows wholly in padding
]


@pytest.mark.parametrize("kw", POOLS, ids=lambda g: "-".join(f"{k}{v}" for k, v in g.items()))
def test_pool2d(rng, kw):
    x = _rand(rng, (2, 3, 17, 14))
    x[0, 1, 3, 4] = np.nan
    dx = da.from_array(x, chunks=(1, 2, (5, 3, 9), (4, 1, 5, 4)))
    same(fd.max_pool2d(dx, **kw), ref(F.max_pool2d, x, **kw))
    v, i = fd.max_pool2d(dx, return_indices=True, **kw)
    ev, ei = ref(F.max_pool2d, x, return_indices=True, **kw)
    same(v, ev)
    same(i, ei)
    dilation = kw.get("dilation", 1)
    plain = {k: v for k, v in kw.items() if k != "dilation"}
    for include in (True, False):
        same(fd.avg_pool2d(dx, count_include_pad=include, dilation=dilation, **plain),
             ref(F.avg_pool2d, x, count_include_pad=include, dilation=dilation, **plain))
    same(fd.avg_pool2d(dx, divisor_override=5, dilation=dilation, **plain),
         ref(F.avg_pool2d, x, divisor_override=5, dilation=dilation, **plain))
    y = np.abs(x)
    dy = da.from_array(y, chunks=dx.chunks)
    pads = plain.pop("padding", 0)
    for p in (2, 3.5):
        same(fd.lp_pool2d(dy, p, padding=pads, dilation=dilation, **plain),
             ref(F.lp_pool2d, y, p, padding=pads, dilation=dilation, **plain))


def test_pool1d_3d(rng):
    x = _rand(rng, (2, 3, 23))
    dx = da.from_array(x, chunks=(2, 1, (1, 2, 8, 12)))
    kw = dict(kernel_size=4, stride=3, padding=2, ceil_mode=True)
    same(fd.max_pool1d(dx, **kw), ref(F.max_pool1d, x, **kw))
    same(fd.avg_pool1d(dx, **kw), ref(F.avg_pool1d, x, **kw))
    same(fd.lp_pool1d(abs(dx), 1, 4, 3, True), ref(F.lp_pool1d, np.abs(x), 1, 4, 3, True))
    x3 = _rand(rng, (1, 2, 9, 8, 7))
    dx3 = da.from_array(x3, chunks=(1, 1, (4, 5), (3, 5), (2, 5)))
    kw3 = dict(kernel_size=(3, 2, 3), stride=2, padding=1)
    same(fd.max_pool3d(dx3, **kw3), ref(F.max_pool3d, x3, **kw3))
    same(fd.avg_pool3d(dx3, ceil_mode=True, **kw3), ref(F.avg_pool3d, x3, ceil_mode=True, **kw3))
    xl = np.abs(np.moveaxis(x3, 1, -1))
    same(fd.lp_pool3d(da.from_array(xl, chunks=(1, 4, 3, 5, 1)), 2, (3, 2, 3), 2, channels_last=True),
         ref(F.lp_pool3d, xl, 2, (3, 2, 3), 2, channels_last=True))
    v, i = fd.max_pool3d(dx3, return_indices=True, **kw3)
    same(i, ref(F.max_pool3d, x3, return_indices=True, **kw3)[1])


@pytest.mark.parametrize("channels_last", [False, True])
def test_global_pools(rng, channels_last):
    x = _rand(rng, (3, 10, 9, 4) if channels_last else (3, 4, 10, 9))
    dx = da.from_array(x, chunks=(2, 3, 4, 3))
    same(fd.global_max_pool(dx, channels_last=channels_last), ref(F.global_max_pool, x, channels_last=channels_last))
    got = fd.global_avg_pool(dx, channels_last=channels_last)
    exp = ref(F.global_avg_pool, x, channels_last=channels_last)
    assert got.shape == exp.shape and got.dtype == exp.dtype
    np.testing.assert_allclose(got.compute(), exp, rtol=1e-6, atol=1e-7)
    x1 = _rand(rng, (2, 3, 50))
    same(fd.global_max_pool(da.from_array(x1, chunks=(1, 2, 7))), ref(F.global_max_pool, x1))


# ---- dask-image ------------------------------------------------------------------------------

# fastconv padding mode -> scipy.ndimage / dask-image mode
NDIMAGE_MODES = {"zeros": "constant", "reflect": "mirror", "symmetric": "reflect", "replicate": "nearest",
                 "circular": "wrap"}


@pytest.mark.parametrize("mode", list(NDIMAGE_MODES))
def test_matches_dask_image(rng, mode):
    """One channel, stride 1, odd kernel: dask-image's correlate is fastconv's conv2d
    with padding "same"; its convolve is the same with the kernel flipped."""
    from dask_image import ndfilters

    image = _rand(rng, (30, 27))
    w = filters.gaussian(5, 1.2)
    sobel = filters.sobel(axis=0)
    d2 = da.from_array(image, chunks=(8, 10))
    d4 = d2[None, None]
    for weight in (w, sobel):
        ours = fd.conv2d(d4, weight, padding="same", padding_mode=mode)[0, 0]
        theirs = ndfilters.correlate(d2, weight[0, 0], mode=NDIMAGE_MODES[mode])
        np.testing.assert_allclose(ours.compute(), theirs.compute(), rtol=1e-5, atol=1e-5)
        flipped = ndfilters.convolve(d2, weight[0, 0, ::-1, ::-1], mode=NDIMAGE_MODES[mode])
        np.testing.assert_allclose(ours.compute(), flipped.compute(), rtol=1e-5, atol=1e-5)


# ---- schedulers ------------------------------------------------------------------------------

def test_distributed_local_cluster(rng):
    distributed = pytest.importorskip("distributed")  # installed by the test extra; never skipped there
    x = _rand(rng, (1, 2, 40, 36))
    w = _rand(rng, (3, 2, 3, 3))
    dx = da.from_array(x, chunks=(1, 2, 16, 12))
    kw = dict(padding=2, stride=2, padding_mode="reflect", algo="direct")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40) as cluster, distributed.Client(cluster) as client:
        got = client.compute(fd.conv2d(dx, w, None, **kw)).result()
        pooled = client.compute(fd.max_pool2d(dx, 3, 2, 1)).result()
    np.testing.assert_array_equal(got, ref(F.conv2d, x, w, None, **kw))
    np.testing.assert_array_equal(pooled, ref(F.max_pool2d, x, 3, 2, 1))


def test_threaded_scheduler_and_threads_setting(rng):
    x = _rand(rng, (2, 3, 30, 30))
    w = _rand(rng, (4, 3, 3, 3))
    dx = da.from_array(x, chunks=(1, 3, 10, 15))
    kw = dict(padding=1, algo="direct")
    before = numba.get_num_threads()
    with dask.config.set(scheduler="threads"):
        np.testing.assert_array_equal(fd.conv2d(dx, w, **kw).compute(), ref(F.conv2d, x, w, **kw))
        for threads in (None, 2 if numba.config.NUMBA_NUM_THREADS >= 2 else 1):
            got = fd.conv2d(dx, w, threads=threads, **kw).compute()
            np.testing.assert_allclose(got, F.conv2d(x, w, **kw), rtol=1e-6, atol=1e-6)
    assert numba.get_num_threads() == before


def test_threads_inside_tasks(rng):
    """A task sees 1 Numba thread by default, the set value otherwise, and restores it."""
    from fastconv.dask._graph import numba_threads

    seen = []
    old = fd.set_threads(1)
    try:
        assert fd.get_threads() == 1
        with numba_threads(fd.get_threads()):
            seen.append(numba.get_num_threads())
        assert fd.set_threads(None) == 1
        with numba_threads(fd.get_threads()):
            seen.append(numba.get_num_threads())
    finally:
        fd.set_threads(old)
    assert seen == [1, numba.config.NUMBA_NUM_THREADS]
    with pytest.raises(ValueError, match="threads=0"):
        fd.set_threads(0)
    with pytest.raises(TypeError, match="threads must be"):
        fd.conv2d(da.ones((1, 1, 4, 4), dtype=np.float32), np.ones((1, 1, 3, 3), np.float32), threads=1.5)


# ---- graph structure -------------------------------------------------------------------------

def test_chunks_start_at_stride_multiples_and_read_only_the_halo():
    """Input boundary b becomes output boundary ceil(b / stride), and each neighbour
    contributes only the strip the windows reach."""
    assert halo.window_out_chunks((10, 10, 7), 2, 14) == (5, 5, 4)
    assert halo.window_out_chunks((3, 3, 3), 2, 5) == (2, 1, 2)  # boundaries 3, 6 -> 2, 3 (inputs 4, 6)
    blocks = halo.window_axis((10, 10, 7), 27, 3, 2, 1, (1, 1), 14)
    assert [b.pieces for b in blocks] == [((0, 0, 10),), ((0, 9, 10), (1, 0, 10)), ((1, 9, 10), (2, 0, 7))]
    assert [b.pads for b in blocks] == [(1, 0), (0, 0), (0, 1)]
    assert halo.transposed_out_chunks((3, 4), 2, 14) == (6, 8)
    # a 2-pixel halo over 1-pixel chunks reads three chunks on one side
    deep = halo.window_axis((3, 1, 1, 1, 3), 9, 5, 1, 1, (2, 2), 9)
    assert deep[0].pieces == ((0, 0, 3), (1, 0, 1), (2, 0, 1))
    # circular padding reads the far end of the axis, only the cells it needs
    wrap = halo.window_axis((4, 4, 4), 12, 3, 1, 1, (2, 2), 12, mode="circular")
    assert wrap[0].pieces == ((0, 0, 4), (2, 2, 4))
    assert wrap[0].index.tolist() == [4, 5, 0, 1, 2, 3]


def test_graph_is_lazy_and_local():
    x = da.ones((1, 1, 64, 64), chunks=(1, 1, 16, 16), dtype=np.float32)
    y = fd.conv2d(x, np.ones((1, 1, 3, 3), np.float32), padding=1)
    assert y.chunks == ((1,), (1,), (16,) * 4, (16,) * 4)
    graph = dict(y.__dask_graph__())
    halo_keys = [k for k in graph if isinstance(k, tuple) and k[0].endswith("-halo")]
    assert halo_keys  # neighbour strips are slices, not whole chunks
    assert float(y.sum().compute()) == float(F.conv2d(np.ones((1, 1, 64, 64), np.float32),
                                                      np.ones((1, 1, 3, 3), np.float32), padding=1).sum())


def test_import_fastconv_does_not_import_dask():
    code = "import sys, fastconv; assert 'dask' not in sys.modules and 'fastconv.dask' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---- errors ----------------------------------------------------------------------------------

def test_errors():
    w = np.ones((1, 1, 3, 3), np.float32)
    x = da.ones((1, 1, 8, 8), chunks=4, dtype=np.float32)
    with pytest.raises(TypeError, match="input must be a dask.array.Array, got ndarray"):
        fd.conv2d(np.ones((1, 1, 8, 8), np.float32), w)
    with pytest.raises(TypeError, match="weight must be a numpy.ndarray"):
        fd.conv2d(x, da.from_array(w))
    with pytest.raises(ValueError, match="padding_mode"):
        fd.conv2d(x, w, padding_mode="mirror")
    with pytest.raises(ValueError, match="input has 1 channels but weight expects 2"):
        fd.conv2d(x, np.ones((1, 2, 3, 3), np.float32))
    with pytest.raises(TypeError, match="dtype"):
        fd.conv2d(x, w.astype(np.float64))
    with pytest.raises(ValueError, match="device='cuda'"):
        fd.conv2d(x, w, device="cuda")
    with pytest.raises(ValueError, match="input must have 4 dims"):
        fd.conv2d(x[0, 0], w)
    with pytest.raises(ValueError, match="kernel_size"):
        fd.max_pool2d(x, (2, 2, 2))
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        fd.max_pool1d(x[x > 0][None, None], 2)


# ---- API -------------------------------------------------------------------------------------

def test_same_arguments_as_the_numpy_ops():
    """Every fastconv.dask op takes the NumPy op's arguments, with the same defaults."""
    import inspect

    for name in fd.__all__:
        if name in ("get_threads", "set_threads"):
            continue
        ours = inspect.signature(getattr(fd, name)).parameters
        for pname, p in inspect.signature(getattr(F, name)).parameters.items():
            if p.kind is p.VAR_KEYWORD:
                continue
            assert pname in ours, (name, pname)
            assert ours[pname].default == p.default, (name, pname)
        if not name.startswith("global_"):  # the global pools are Dask reductions, no fastconv kernel
            assert "threads" in ours, name


def test_docstring_examples():
    import doctest

    import fastconv.dask.conv

    result = doctest.testmod(fastconv.dask.conv, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
