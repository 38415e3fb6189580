"""Numerical robustness across the public functions: degenerate images, extreme scales, reproducibility.

Scale equivariance is checked across the whole float range, to round-off for
arbitrary factors and bit for bit for powers of two (the internal scaling is
by powers of two, so those are exact).
"""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import psfkit
from psfkit import convolve, deconvolve, estimate_noise, psf_snr
from psfkit.metrics import psnr
from psfkit.data import cells

METHODS = ("rl", "rl-tv", "fista", "wiener")


def gaussian_psf(size=9, sigma=1.5):
    r = np.arange(size) - size // 2
    g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma**2))
    return g / g.sum()


def noisy_cells(shape=(64, 64), photons=200.0, seed=0):
    blurred = np.maximum(convolve(cells(shape, rng=seed), gaussian_psf()), 0)
    return np.random.default_rng(seed).poisson(photons * blurred) / photons


def two_level(shape=(128, 128)):
    return (cells(shape, rng=0) > 0.3).astype(float)


# ----------------------------------------------------------- degenerate images


@pytest.mark.parametrize(
    "image",
    [
        two_level(),
        np.full((64, 64), 3.0),
        np.zeros((64, 64)),
        np.random.default_rng(0).integers(0, 3, (64, 64)).astype(float),  # three levels, iid
        np.kron(np.random.default_rng(1).integers(0, 2, (8, 8)), np.ones((8, 8))).astype(float),
    ],
    ids=["two-level", "constant", "zeros", "three-level", "blocks"],
)
def test_estimate_noise_of_images_with_few_levels_is_finite(image):
    noise = estimate_noise(image)
    assert np.isfinite(noise.alpha) and noise.alpha >= 0
    assert np.isfinite(noise.beta) and noise.beta >= 0


@pytest.mark.parametrize("levels", [2, 3, 4])
def test_estimate_noise_of_white_noise_with_few_levels(levels):
    # the maximum is shared by a third of the pixels or more: quantisation, not saturation or impulses
    image = np.random.default_rng(levels).integers(0, levels, (96, 96)).astype(float)
    noise = estimate_noise(image)
    assert noise.alpha == 0
    assert noise.beta == pytest.approx(np.var(np.arange(levels)), rel=0.2)


def test_noise_free_two_level_image_has_zero_noise():
    assert estimate_noise(two_level()) == (0.0, 0.0)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("image", [two_level(), np.full((64, 64), 3.0)], ids=["two-level", "constant"])
def test_deconvolve_noise_free_images_is_finite(image, method):
    restored = deconvolve(image, gaussian_psf(), method=method)
    assert np.all(np.isfinite(restored))
    # the flux is where the data put it: no blow-up of round-off
    assert abs(restored.mean() - image.mean()) < 0.05 * image.max()


# --------------------------------------------------------------- extreme scales


@pytest.mark.parametrize("scale", [1e-310, 3.7e-300, 1e-150, 3.3e150, 1e300])
def test_estimate_noise_is_scale_consistent(scale):
    y = noisy_cells()
    reference = estimate_noise(y)
    assert reference.alpha > 0 and reference.beta >= 0
    if np.log10(reference.beta) + 2 * np.log10(scale) > 308:  # beta * c**2 is not representable
        with pytest.raises(ValueError, match="image"):
            estimate_noise(scale * y)
        return
    noise = estimate_noise(scale * y)
    assert noise.alpha == pytest.approx(scale * reference.alpha, rel=1e-6)
    assert noise.beta == pytest.approx(scale * scale * reference.beta, rel=1e-6, abs=1e-300)


def test_estimate_noise_is_exactly_scale_consistent_for_powers_of_two():
    y = noisy_cells()
    reference = estimate_noise(y)
    for e in (-400, 400):
        assert estimate_noise(y * 2.0**e) == (reference.alpha * 2.0**e, reference.beta * 2.0 ** (2 * e))


@pytest.mark.parametrize("boundary", ["reflect", "constant", "full"])
@pytest.mark.parametrize(
    "dtype, scale",
    [(np.float64, 1e-310), (np.float64, 3.7e-300), (np.float64, 1.3e300), (np.float32, 1e-30), (np.float32, 3e35)],
)
def test_convolve_is_scale_equivariant(dtype, scale, boundary):
    x = cells((40, 40), rng=2)
    psf = gaussian_psf()
    reference = convolve(x, psf, boundary=boundary)
    blurred = convolve((scale * x).astype(dtype), psf, boundary=boundary)
    assert blurred.dtype == dtype
    assert np.all(np.isfinite(blurred))
    # subnormal inputs carry fewer bits: compare to the precision the input has
    tol = 1e-5 if dtype == np.float32 else (1e-12 if scale > 1e-300 else 1e-3)
    np.testing.assert_allclose(blurred / scale, reference, rtol=0, atol=tol * reference.max())


def test_convolve_of_a_pixel_at_the_top_of_the_float_range():
    image = np.zeros((32, 32))
    image[5, 5] = 1e308
    blurred = convolve(image, gaussian_psf())
    assert np.all(np.isfinite(blurred))
    np.testing.assert_allclose(blurred[1:10, 1:10], 1e308 * gaussian_psf(), rtol=1e-12)
    assert convolve(np.full((16, 16), np.finfo(float).max), gaussian_psf()).max() <= np.finfo(float).max


def _equivariance_error(image, scale, dtype, method, **options):
    psf = gaussian_psf()
    reference = deconvolve(image.astype(dtype), psf, method=method, **options).astype(np.float64)
    scaled = deconvolve((scale * image).astype(dtype), psf, method=method, **options)
    assert scaled.dtype == dtype
    assert np.all(np.isfinite(scaled))
    return np.abs(scaled / scale - reference).max() / np.abs(reference).max()


# RL-TV amplifies round-off by ~1.3 per iteration (its TV normal is steep where
# |grad x| ~ epsilon), so after 50 iterations it matches to ~1e-10 (float64).
ROUND_OFF = {np.float64: 1e-12, np.float32: 5e-5}
RL_TV_ROUND_OFF = {np.float64: 1e-8, np.float32: 1e-2}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    "dtype, scale",
    [(np.float64, s) for s in (3.7e-300, 1.7e-150, 3.3e150, 1.3e300)]
    + [(np.float32, s) for s in (1.3e-30, 3.3e-15, 7.1e19, 3.3e35)],
)
def test_deconvolve_is_scale_equivariant(method, dtype, scale):
    tolerance = (RL_TV_ROUND_OFF if method == "rl-tv" else ROUND_OFF)[dtype]
    assert _equivariance_error(noisy_cells(), scale, dtype, method) < tolerance


@pytest.mark.parametrize("method", METHODS)
def test_deconvolve_is_exactly_equivariant_for_powers_of_two(method):
    y, psf = noisy_cells(), gaussian_psf()
    reference = deconvolve(y, psf, method=method)
    np.testing.assert_array_equal(deconvolve(y * 2.0**-900, psf, method=method), reference * 2.0**-900)
    np.testing.assert_array_equal(deconvolve(y * 2.0**900, psf, method=method), reference * 2.0**900)


def test_callback_sees_the_estimate_in_the_units_of_the_image():
    y, psf = noisy_cells(), gaussian_psf()
    seen = {}
    for scale in (1.0, 2.0**-900):
        deconvolve(scale * y, psf, iterations=3, callback=lambda k, x, s=scale: seen.setdefault(s, x))
    np.testing.assert_array_equal(seen[2.0**-900], seen[1.0] * 2.0**-900)


@pytest.mark.parametrize("method", METHODS)
def test_deconvolve_of_a_subnormal_image_is_finite(method):
    image = noisy_cells() * 1e-310
    restored = deconvolve(image, gaussian_psf(), method=method)
    assert np.all(np.isfinite(restored)) and restored.max() > 0


def test_deconvolve_raises_when_the_result_overflows():
    image = noisy_cells()
    image *= np.finfo(np.float32).max / image.max()
    with pytest.raises(ValueError, match="image"):
        deconvolve(image.astype(np.float32), gaussian_psf(), method="rl", iterations=50)


def test_unrolled_is_scale_equivariant():
    pytest.importorskip("torch")
    image = noisy_cells()
    for scale in (3.7e-300, 1e-20, 1.3e300):
        assert _equivariance_error(image, scale, np.float64, "unrolled", device="cpu") < 1e-5


@pytest.mark.parametrize("boundary", ["extend", "periodic"])
@pytest.mark.parametrize("size, psf_size", [(5, 5), (2, 1), (1, 1)])
def test_unrolled_restores_images_smaller_than_its_padding(size, psf_size, boundary):
    pytest.importorskip("torch")
    image = cells((8, 8), rng=0)[:size, :size] + 0.5
    restored = deconvolve(image, gaussian_psf(psf_size), method="unrolled", boundary=boundary, device="cpu")
    assert restored.shape == image.shape and np.all(np.isfinite(restored))


def test_unrolled_padding_wider_than_the_image_matches_numpy():
    torch = pytest.importorskip("torch")
    from psfkit.restoration.unrolled import _pad

    a = np.arange(15.0).reshape(3, 5)
    padded = _pad(torch.from_numpy(a)[None, None], (7, 9, 4, 6), "reflect")[0, 0].numpy()
    np.testing.assert_array_equal(padded, np.pad(a, ((4, 6), (7, 9)), mode="reflect"))
    padded = _pad(torch.from_numpy(a)[None, None], (0, 7, 0, 5), "circular")[0, 0].numpy()
    np.testing.assert_array_equal(padded, np.pad(a, ((0, 5), (0, 7)), mode="wrap"))


# ---------------------------------------------------------------- noise, once


@pytest.mark.parametrize("method", METHODS + ("unrolled",))
def test_deconvolve_estimates_the_noise_once(method, monkeypatch):
    if method == "unrolled":
        pytest.importorskip("torch")
    from psfkit.forward import acquisition

    calls = []
    original = acquisition.estimate_noise
    monkeypatch.setattr(acquisition, "estimate_noise", lambda image, **kw: calls.append(1) or original(image, **kw))
    deconvolve(noisy_cells(), gaussian_psf(), method=method, **({"device": "cpu"} if method == "unrolled" else {}))
    assert len(calls) == 1


def test_unrolled_network_reads_the_noise_fit_it_is_given(monkeypatch):
    pytest.importorskip("torch")
    from psfkit.forward import acquisition
    from psfkit.restoration.unrolled import deconvolve_unrolled

    def no_estimate(*args, **kwargs):
        raise AssertionError("the noise is estimated once, by deconvolve")

    monkeypatch.setattr(acquisition, "estimate_noise", no_estimate)
    y, psfs = noisy_cells(), gaussian_psf()[None]
    quiet = deconvolve_unrolled(y, psfs, None, "mask-first", noise=(0.0, 1e-6), device="cpu")
    noisy = deconvolve_unrolled(y, psfs, None, "mask-first", noise=(0.0, 1e-2), device="cpu")
    assert np.abs(quiet - noisy).max() > 1e-3 * np.abs(quiet).max()


# ------------------------------------------------------------ reproducibility

_REPRODUCE = textwrap.dedent(
    """
    import hashlib, numpy as np, psfkit
    digest = hashlib.sha1()
    for n in (80, 160):  # FFT grids of 96 and 176: sizes with several competing FFTW algorithms
        y = psfkit.data.cells((n, n), rng=0) + 0.01 * np.random.default_rng(1).random((n, n))
        r = np.arange(17) - 8
        psf = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / 8.0)
        digest.update(psfkit.deconvolve(y, psf, iterations=5).tobytes())
    print(digest.hexdigest())
    """
)


def test_deconvolve_is_bit_reproducible_across_processes():
    # FFTW plans chosen by timing (FFTW_MEASURE) made these hashes differ between processes
    runs = {
        subprocess.run([sys.executable, "-c", _REPRODUCE], capture_output=True, text=True, check=True).stdout
        for _ in range(3)
    }
    assert len(runs) == 1, runs


# ---------------------------------------------------------------------- metrics


@pytest.mark.parametrize("scale", [1e-300, 1e300, 1e307])
def test_psf_snr_does_not_depend_on_the_scale_of_the_psfs(scale):
    estimate = gaussian_psf(sigma=1.6)
    expected = psf_snr(estimate, gaussian_psf())
    assert psf_snr(scale * estimate, gaussian_psf()) == pytest.approx(expected, rel=1e-12)
    assert psf_snr(estimate, scale * gaussian_psf(), align=True) == pytest.approx(expected, rel=1e-12)
    flat = np.full((9, 9), 1.0)
    assert psf_snr(np.full((9, 9), 1e307), flat) > 250  # the sum overflows, the normalised PSF does not


@pytest.mark.parametrize("align", [False, True])
def test_psf_snr_rejects_a_psf_whose_sum_is_round_off(align):
    rng = np.random.default_rng(0)
    psf = rng.standard_normal((9, 9))
    psf -= psf.mean()  # sums to ~1e-16: its normalisation is meaningless
    assert abs(psf.sum()) < 1e-13
    with pytest.raises(ValueError, match="estimate"):
        psf_snr(psf, gaussian_psf(), align=align)
    with pytest.raises(ValueError, match="reference"):
        psf_snr(gaussian_psf(), psf, align=align)


@pytest.mark.parametrize("scale", [1e-300, 1e300])
def test_psnr_does_not_depend_on_the_scale_of_the_images(scale):
    reference = cells((64, 64), rng=0)
    image = reference + 0.01 * np.random.default_rng(0).standard_normal(reference.shape)
    assert psnr(scale * image, scale * reference) == pytest.approx(psnr(image, reference), rel=1e-9)
    # an image wildly off the reference's scale: a very low, finite value
    assert np.isfinite(psnr(scale * image, reference))


def test_an_even_psf_as_long_as_the_image_is_refused_by_name():
    # an even side is padded to the next odd one internally; it used to fail in a NumPy broadcast
    image = np.random.default_rng(0).random((8, 10)) + 1
    with pytest.raises(ValueError, match="psf"):
        psfkit.deconvolve(image, np.ones((8, 8)), boundary="periodic")


def test_rl_tv_of_an_image_far_below_its_background_is_finite():
    # the TV smoothing scale came from the signal above background: 1e-299, whose square underflowed to 0
    image = 1e-299 * (1 + np.random.default_rng(0).random((20, 19)))
    restored = psfkit.deconvolve(image, np.ones((3, 3)), method="rl-tv", background=1.0)
    assert np.all(np.isfinite(restored))


def test_fista_weight_beyond_the_float_range_after_scaling_is_infinite_smoothing():
    image = 1e-308 * (1 + np.random.default_rng(0).random((8, 21)))
    restored = psfkit.deconvolve(image, np.ones((1, 1)), method="fista", regularization=9.6)
    assert np.all(np.isfinite(restored))
    assert np.ptp(restored) < 1e-3 * np.ptp(image)  # smoothed flat


@pytest.mark.parametrize("dtype, scale", [(np.float32, 1e36), (np.float64, 1e307)])
def test_product_convolution_near_the_top_of_the_float_range_is_finite(dtype, scale):
    image = np.full((32, 32), scale, dtype)
    psfs = np.ones((2, 5, 5), dtype) / 25
    weights = np.full((2, 32, 32), 0.5, dtype)
    blurred = psfkit.product_convolution(image, psfs, weights)
    assert blurred.dtype == dtype and np.all(np.isfinite(blurred))
    np.testing.assert_allclose(blurred[8:-8, 8:-8], scale, rtol=1e-5)
    back = psfkit.product_convolution(blurred, psfs, weights, adjoint=True)
    assert np.all(np.isfinite(back))


def test_simulate_acquisition_beyond_the_dtype_range_raises():
    with pytest.raises(ValueError, match="range of float32"):
        psfkit.simulate_acquisition(np.full((16, 16), 3.3e38, np.float32), np.ones((3, 3)), read_noise=1e37, rng=0)
