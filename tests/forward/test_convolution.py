import numpy as np
import pytest
import scipy.ndimage as ndi
import scipy.signal
from hypothesis import given, settings
from hypothesis import strategies as st

from psfkit.forward.convolution import convolve

BOUNDARIES = ["reflect", "periodic", "constant", "zero", "valid", "full"]


def _random_psf(shape, seed=0):
    psf = np.random.default_rng(seed).random(shape)
    return psf / psf.sum()


def _reference(image, psf, boundary):
    """scipy.signal.convolve of the explicitly padded image, cropped by hand."""
    centre = [p // 2 for p in psf.shape]
    if boundary == "full":
        return scipy.signal.convolve(image, psf, mode="full", method="direct")
    if boundary == "valid":
        return scipy.signal.convolve(image, psf, mode="valid", method="direct")
    if boundary in ("constant", "zero"):
        full = scipy.signal.convolve(image, psf, mode="full", method="direct")
        return full[tuple(slice(c, c + n) for c, n in zip(centre, image.shape))]
    mode = {"reflect": "symmetric", "periodic": "wrap"}[boundary]
    padded = np.pad(image, [(p - 1 - c, c) for p, c in zip(psf.shape, centre)], mode=mode)
    return scipy.signal.convolve(padded, psf, mode="valid", method="direct")


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("psf_shape", [(5, 5), (4, 6), (1, 1), (2, 7)])
def test_matches_scipy_signal_2d(boundary, psf_shape):
    image = np.random.default_rng(1).random((23, 18))
    psf = _random_psf(psf_shape)
    result = convolve(image, psf, boundary=boundary)
    expected = _reference(image, psf, boundary)
    assert result.shape == expected.shape
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-13)


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("shapes", [((31,), (6,)), ((9, 12, 10), (3, 4, 5))])
def test_matches_scipy_signal_nd(boundary, shapes):
    image_shape, psf_shape = shapes
    image = np.random.default_rng(2).random(image_shape)
    psf = _random_psf(psf_shape, seed=3)
    np.testing.assert_allclose(convolve(image, psf, boundary=boundary), _reference(image, psf, boundary), atol=1e-13)


@pytest.mark.parametrize(
    "boundary, ndimage_mode", [("reflect", "reflect"), ("periodic", "wrap"), ("constant", "constant")]
)
def test_matches_scipy_ndimage_odd_psf(boundary, ndimage_mode):
    # ndimage's "reflect" repeats the edge pixel, like numpy.pad's "symmetric".
    image = np.random.default_rng(4).random((20, 21))
    psf = _random_psf((7, 5), seed=5)
    expected = ndi.convolve(image, psf, mode=ndimage_mode)
    np.testing.assert_allclose(convolve(image, psf, boundary=boundary), expected, atol=1e-13)


@pytest.mark.parametrize("psf_shape", [(5, 5), (6, 4)])
def test_dirac_reproduces_psf_at_centre_index(psf_shape):
    image = np.zeros((16, 16))
    image[8, 8] = 1.0
    psf = _random_psf(psf_shape, seed=6)
    blurred = convolve(image, psf, boundary="constant")
    cy, cx = psf_shape[0] // 2, psf_shape[1] // 2
    window = blurred[8 - cy : 8 - cy + psf_shape[0], 8 - cx : 8 - cx + psf_shape[1]]
    np.testing.assert_allclose(window, psf, atol=1e-15)
    assert np.isclose(blurred.sum(), 1.0)


def test_periodic_conserves_flux_and_reflect_keeps_constants():
    rng = np.random.default_rng(7)
    image = rng.random((30, 27)) * 100
    psf = _random_psf((9, 8), seed=8)
    assert np.isclose(convolve(image, psf, boundary="periodic").sum(), image.sum(), rtol=1e-13)
    np.testing.assert_allclose(convolve(np.full((30, 27), 3.5), psf, boundary="reflect"), 3.5, rtol=1e-13)
    # Zero padding loses flux at the border, as it should.
    assert convolve(image, psf, boundary="constant").sum() < image.sum()


def test_psf_is_normalised():
    image = np.random.default_rng(9).random((12, 12))
    psf = _random_psf((3, 3))
    np.testing.assert_allclose(convolve(image, 7 * psf), convolve(image, psf), rtol=1e-13)


@pytest.mark.parametrize(
    "dtype, expected",
    [(np.float32, np.float32), (np.float64, np.float64), (np.float16, np.float32), (np.int32, np.float64),
     (np.uint8, np.float64), (bool, np.float64)],
)
def test_dtype_rule(dtype, expected):
    image = (np.random.default_rng(10).random((16, 16)) * 3).astype(dtype)
    for boundary in ("reflect", "periodic", "valid"):
        assert convolve(image, _random_psf((5, 5)), boundary=boundary).dtype == expected


def test_float32_close_to_float64():
    image = np.random.default_rng(11).random((40, 40))
    psf = _random_psf((7, 7))
    single = convolve(image.astype(np.float32), psf.astype(np.float32))
    np.testing.assert_allclose(single, convolve(image, psf), atol=1e-6)


def test_inputs_not_modified():
    image = np.random.default_rng(12).random((10, 10))
    psf = 3 * _random_psf((3, 3))
    image_copy, psf_copy = image.copy(), psf.copy()
    convolve(image, psf)
    np.testing.assert_array_equal(image, image_copy)
    np.testing.assert_array_equal(psf, psf_copy)


@pytest.mark.parametrize("boundary", ["reflect", "periodic", "valid"])
def test_psf_larger_than_image_raises(boundary):
    with pytest.raises(ValueError, match="psf of shape .* is larger than the image"):
        convolve(np.ones((8, 8)), np.ones((9, 3)), boundary=boundary)


@pytest.mark.parametrize("boundary", ["constant", "full"])
def test_psf_larger_than_image_allowed_with_zero_padding(boundary):
    image = np.random.default_rng(13).random((6, 5))
    psf = _random_psf((9, 8))
    np.testing.assert_allclose(convolve(image, psf, boundary=boundary), _reference(image, psf, boundary), atol=1e-14)


@pytest.mark.parametrize(
    "image, psf, error, match",
    [
        (np.full((8, 8), np.nan), np.ones((3, 3)), ValueError, "image contains NaN"),
        (np.ones((8, 8)), np.array([[1, np.inf, 1]]), ValueError, "psf contains NaN or infinite"),
        (np.ones((8, 8)), np.ones((3, 3, 3)), ValueError, "psf must be 2-D"),
        (np.ones((8, 8)) + 0j, np.ones((3, 3)), ValueError, "image must be real-valued"),
        (np.ones((8, 8)), -np.ones((3, 3)), ValueError, "psf must be non-negative"),
        (np.ones((8, 8)), np.zeros((3, 3)), ValueError, "psf must have a positive sum"),
        ("image", np.ones((3, 3)), TypeError, "image must be an array"),
    ],
)
def test_bad_input(image, psf, error, match):
    with pytest.raises(error, match=match):
        convolve(image, psf)


def test_unknown_boundary():
    with pytest.raises(ValueError, match="unknown boundary 'mirror'"):
        convolve(np.ones((8, 8)), np.ones((3, 3)), boundary="mirror")


@settings(max_examples=30, deadline=None)
@given(
    image_shape=st.tuples(st.integers(4, 20), st.integers(4, 20)),
    psf_shape=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    boundary=st.sampled_from(BOUNDARIES),
    single=st.booleans(),
)
def test_shapes_and_dtypes(image_shape, psf_shape, boundary, single):
    dtype = np.float32 if single else np.float64
    image = np.ones(image_shape, dtype)
    result = convolve(image, np.ones(psf_shape, dtype), boundary=boundary)
    expected = {
        "valid": tuple(n - p + 1 for n, p in zip(image_shape, psf_shape)),
        "full": tuple(n + p - 1 for n, p in zip(image_shape, psf_shape)),
    }.get(boundary, image_shape)
    assert result.shape == expected
    assert result.dtype == dtype
    assert result.flags.c_contiguous
    if boundary in ("reflect", "periodic", "valid"):
        np.testing.assert_allclose(result, 1.0, rtol=1e-5)
