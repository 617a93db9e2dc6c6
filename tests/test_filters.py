"""fastconv.filters: known kernel values, responses on ramps and quadratics, scipy.ndimage."""

import numpy as np
import pytest

import fastconv as F
from fastconv import filters
from fastconv import reference as R
from fastconv.testing.tolerances import assert_close

ndimage = pytest.importorskip("scipy.ndimage")


def correlate(image, weight):
    """Valid-padding conv2d (cross-correlation) of one (H, W) float64 image, via the reference."""
    return R.conv(image[None, None], weight.astype(np.float64))[0, 0]


def ramp(h=7, w=8, axis=1, slope=1.0):
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    return slope * (x if axis == 1 else y)


def interior(a, r=1):
    return a[r:-r, r:-r]


def test_shapes_and_dtypes():
    for w in (filters.sobel(), filters.scharr(0), filters.prewitt("y"), filters.laplacian(),
              filters.laplacian(True), filters.sharpen(), filters.identity(), filters.box(),
              filters.gaussian(3, 1.0)):
        assert w.shape == (1, 1, 3, 3) and w.dtype == np.float32 and w.flags.c_contiguous
    assert filters.gaussian((5, 3), (2.0, 0.5)).shape == (1, 1, 5, 3)
    assert filters.box((2, 4)).shape == (1, 1, 2, 4)
    assert filters.identity((1, 5)).shape == (1, 1, 1, 5)
    for dtype in (np.float16, np.float64):
        assert filters.sobel(dtype=dtype).dtype == dtype
        assert filters.gaussian(5, dtype=dtype).dtype == dtype


def test_known_values():
    np.testing.assert_array_equal(filters.sobel(-1)[0, 0], [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    np.testing.assert_array_equal(filters.sobel(0)[0, 0], [[-1, -2, -1], [0, 0, 0], [1, 2, 1]])
    np.testing.assert_array_equal(filters.sobel("x"), filters.sobel(1))
    np.testing.assert_array_equal(filters.sobel("h"), filters.sobel(-2))
    np.testing.assert_array_equal(filters.scharr()[0, 0], [[-3, 0, 3], [-10, 0, 10], [-3, 0, 3]])
    np.testing.assert_array_equal(filters.prewitt(0)[0, 0], [[-1, -1, -1], [0, 0, 0], [1, 1, 1]])
    np.testing.assert_array_equal(filters.laplacian()[0, 0], [[0, 1, 0], [1, -4, 1], [0, 1, 0]])
    np.testing.assert_array_equal(filters.laplacian(diagonal=True)[0, 0], [[1, 1, 1], [1, -8, 1], [1, 1, 1]])
    np.testing.assert_array_equal(filters.sharpen()[0, 0], [[0, -1, 0], [-1, 5, -1], [0, -1, 0]])
    np.testing.assert_array_equal(filters.identity(3)[0, 0], [[0, 0, 0], [0, 1, 0], [0, 0, 0]])
    np.testing.assert_allclose(filters.box(3)[0, 0], np.full((3, 3), 1 / 9), rtol=1e-7)
    np.testing.assert_array_equal(filters.box(2, normalize=False)[0, 0], np.ones((2, 2)))
    g = filters.gaussian(3, 1.0, dtype=np.float64)[0, 0]
    e = np.exp(-0.5)
    np.testing.assert_allclose(g, np.outer([e, 1, e], [e, 1, e]) / (1 + 2 * e) ** 2, rtol=1e-14)


@pytest.mark.parametrize("name,gain", [("sobel", 8), ("scharr", 32), ("prewitt", 6)])
@pytest.mark.parametrize("axis", [0, 1])
def test_derivatives_on_a_ramp_are_constant(name, gain, axis):
    fn = getattr(filters, name)
    image = ramp(axis=axis, slope=0.5)
    along = correlate(image, fn(axis, dtype=np.float64))
    np.testing.assert_allclose(along, np.full(along.shape, 0.5 * gain), rtol=1e-14)
    across = correlate(image, fn(1 - axis, dtype=np.float64))
    np.testing.assert_allclose(across, 0.0, atol=1e-14)
    unit = correlate(image, fn(axis, normalize=True, dtype=np.float64))
    np.testing.assert_allclose(unit, 0.5, rtol=1e-14)


def test_laplacians_on_a_paraboloid():
    y, x = np.mgrid[0:6, 0:7].astype(np.float64)
    image = x ** 2 + y ** 2
    np.testing.assert_allclose(correlate(image, filters.laplacian(dtype=np.float64)), 4.0)
    np.testing.assert_allclose(correlate(image, filters.laplacian(True, dtype=np.float64)), 12.0)
    np.testing.assert_allclose(correlate(ramp(), filters.laplacian(dtype=np.float64)), 0.0, atol=1e-12)


def test_flat_regions_are_preserved(rng):
    flat = np.full((5, 6), 3.25)
    for w in (filters.sharpen(2.5), filters.box((3, 2)), filters.gaussian(5), filters.identity(),
              filters.gaussian((3, 5), (0.7, 2.0))):
        np.testing.assert_allclose(correlate(flat, w.astype(np.float64)), 3.25, rtol=1e-6)
    image = rng.standard_normal((6, 7))
    np.testing.assert_allclose(correlate(np.pad(image, 2), filters.identity(5, dtype=np.float64)), image)


@pytest.mark.parametrize("name", ["sobel", "prewitt"])
@pytest.mark.parametrize("axis", [0, 1])
def test_against_scipy_ndimage(rng, name, axis):
    image = rng.standard_normal((9, 11))
    expected = interior(getattr(ndimage, name)(image, axis=axis))
    np.testing.assert_allclose(correlate(image, getattr(filters, name)(axis, dtype=np.float64)),
                               expected, rtol=1e-12, atol=1e-12)


def test_laplacian_box_gaussian_against_scipy(rng):
    image = rng.standard_normal((12, 13))
    np.testing.assert_allclose(correlate(image, filters.laplacian(dtype=np.float64)),
                               interior(ndimage.laplace(image)), atol=1e-12)
    np.testing.assert_allclose(correlate(image, filters.box(3, dtype=np.float64)),
                               interior(ndimage.uniform_filter(image, 3)), atol=1e-12)
    for size, sigma in ((5, 1.3), ((3, 7), (0.8, 2.0))):
        kh, kw = (size, size) if isinstance(size, int) else size
        sig = sigma if isinstance(sigma, tuple) else (sigma, sigma)
        expected = ndimage.gaussian_filter(image, sig, radius=(kh // 2, kw // 2))
        got = correlate(image, filters.gaussian(size, sigma, dtype=np.float64))
        np.testing.assert_allclose(got, expected[kh // 2:-(kh // 2), kw // 2:-(kw // 2)], atol=1e-12)


def test_gaussian_default_sigma_is_opencvs():
    g = filters.gaussian(7, dtype=np.float64)[0, 0]
    sigma = 0.3 * (3 - 1) + 0.8
    t = np.arange(7) - 3.0
    one = np.exp(-t ** 2 / (2 * sigma ** 2))
    np.testing.assert_allclose(g, np.outer(one, one) / one.sum() ** 2, rtol=1e-14)
    assert abs(g.sum() - 1) < 1e-14 and np.allclose(g, g.T) and np.allclose(g, g[::-1, ::-1])


def test_for_channels_with_fastconv_conv2d(rng):
    x = rng.standard_normal((2, 3, 8, 9)).astype(np.float32)
    w = filters.for_channels(filters.sobel(), 3)
    assert w.shape == (3, 1, 3, 3) and w.dtype == np.float32 and w.flags.c_contiguous
    y = F.conv2d(x, w, groups=3, padding="same")
    single = np.stack([F.conv2d(x[:, c:c + 1], filters.sobel(), padding="same")[:, 0] for c in range(3)], 1)
    assert_close(y, single.astype(np.float64), "conv", np.float32)
    assert_close(y, R.conv(x, w, padding="same", groups=3), "conv", np.float32)
    assert filters.for_channels(filters.gaussian(3)[0, 0], 4).shape == (4, 1, 3, 3)
    ramp_img = np.broadcast_to(ramp(6, 7).astype(np.float32), (1, 3, 6, 7))
    edges = F.conv2d(np.ascontiguousarray(ramp_img), filters.for_channels(filters.sobel(normalize=True), 3), groups=3)
    np.testing.assert_allclose(edges, 1.0, rtol=1e-6)


def test_filter_errors():
    with pytest.raises(ValueError, match="sobel: axis=2 must be"):
        filters.sobel(2)
    with pytest.raises(ValueError, match="scharr: axis='z'"):
        filters.scharr("z")
    with pytest.raises(TypeError, match="prewitt: dtype=int32 is not supported"):
        filters.prewitt(dtype=np.int32)
    with pytest.raises(TypeError, match="laplacian: dtype='bogus' is not a dtype"):
        filters.laplacian(dtype="bogus")
    with pytest.raises(ValueError, match=r"identity: size=4 must be odd"):
        filters.identity(4)
    with pytest.raises(ValueError, match=r"gaussian: sigma=0 must be positive"):
        filters.gaussian(3, 0)
    with pytest.raises(ValueError, match=r"gaussian: size=\(3, 3, 3\) must be an int or a pair"):
        filters.gaussian((3, 3, 3))
    with pytest.raises(ValueError, match="box: size=0 must be >= 1"):
        filters.box(0)
    with pytest.raises(ValueError, match="sharpen: amount=nan"):
        filters.sharpen(float("nan"))
    with pytest.raises(ValueError, match=r"for_channels: kernel has shape \(2, 1, 3, 3\)"):
        filters.for_channels(np.zeros((2, 1, 3, 3), np.float32), 3)
    with pytest.raises(ValueError, match="for_channels: channels=0"):
        filters.for_channels(filters.box(), 0)
    with pytest.raises(TypeError, match="for_channels: channels must be an int"):
        filters.for_channels(filters.box(), 2.0)
    with pytest.raises(TypeError, match="for_channels: kernel has dtype int64"):
        filters.for_channels(np.ones((3, 3), np.int64), 2)
