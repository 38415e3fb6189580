"""Tests of the acquisition model (noise statistics) and of the blind noise estimate."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from psfkit import convolve, estimate_noise, simulate_acquisition
from psfkit.forward.acquisition import NoiseEstimate
from psfkit.data import cells, dead_leaves, filaments, random_specimen


def gaussian_psf(sigma=1.2, size=9):
    a = np.arange(size) - size // 2
    g = np.exp(-(a[:, None] ** 2 + a[None, :] ** 2) / (2 * sigma**2))
    return g / g.sum()


def airy_psf(cutoff, size=33):
    """|FFT(disc pupil)|² with the peak at size // 2 (a diffraction-limited PSF)."""
    n = 256
    f = np.fft.fftfreq(n)
    pupil = (np.hypot(f[:, None], f[None, :]) <= cutoff).astype(float)
    h = np.fft.fftshift(np.abs(np.fft.fft2(pupil)) ** 2)
    c, k = n // 2, size // 2
    h = h[c - k : c + k + 1, c - k : c + k + 1]
    return h / h.sum()


PSF = gaussian_psf()
N_FLAT = 256  # a flat image: every pixel is an independent draw at the same level


def flat(level=10.0, shape=(N_FLAT, N_FLAT)):
    return np.full(shape, level)


def assert_mean(sample, expected, variance):
    """Sample mean within 5 standard errors."""
    assert abs(sample.mean() - expected) < 5 * np.sqrt(variance / sample.size)


def assert_variance(sample, expected, excess_kurtosis=0.0):
    """Sample variance within 5 standard errors (Var[s²] = σ⁴ (2 + κ) / n)."""
    n = sample.size
    error = expected * np.sqrt((2 + excess_kurtosis) / n)
    assert abs(sample.var(ddof=1) - expected) < 5 * error


# --- noise statistics ------------------------------------------------------


def test_without_noise_is_the_blur():
    x = filaments((64, 64), rng=0)
    for boundary in ("reflect", "periodic", "valid", "constant"):
        y = simulate_acquisition(x, PSF, boundary=boundary, rng=0)
        np.testing.assert_allclose(y, np.maximum(convolve(x, PSF, boundary=boundary), 0), atol=1e-12)


@pytest.mark.parametrize("gain, level", [(0.5, 10.0), (4.0, 2.0), (100.0, 0.3)])
def test_poisson_mean_and_variance(gain, level):
    y = simulate_acquisition(flat(level), PSF, gain=gain, rng=1)
    variance = level / gain
    assert_mean(y, level, variance)
    # Poisson(λ)/γ has excess kurtosis 1/λ with λ = γ z photons.
    assert_variance(y, variance, excess_kurtosis=1 / (gain * level))
    # Values are photon counts divided by the gain.
    np.testing.assert_allclose(y * gain, np.rint(y * gain), atol=1e-9)


def test_gaussian_read_noise():
    y = simulate_acquisition(flat(5.0), PSF, read_noise=0.7, rng=2)
    assert_mean(y, 5.0, 0.49)
    assert_variance(y, 0.49)


def test_poisson_gaussian_variance_adds():
    y = simulate_acquisition(flat(8.0), PSF, gain=2.0, read_noise=1.5, rng=3)
    assert_mean(y, 8.0, 4.0 + 2.25)
    assert_variance(y, 4.0 + 2.25, excess_kurtosis=0.1)


def test_approximate_model_is_gaussian_with_linear_variance():
    gain, sigma = 2.0, 0.5
    for level in (1.0, 9.0):
        y = simulate_acquisition(flat(level), PSF, gain=gain, read_noise=sigma, noise_model="approximate", rng=4)
        variance = level / gain + sigma**2
        assert_mean(y, level, variance)
        assert_variance(y, variance)
    # Continuous values, not photon counts.
    assert not np.allclose(y * gain, np.rint(y * gain))


def test_background_is_an_offset_without_shot_noise():
    y = simulate_acquisition(flat(4.0), PSF, gain=1.0, background=100.0, rng=5)
    assert_mean(y, 104.0, 4.0)
    assert_variance(y, 4.0, excess_kurtosis=0.25)


def test_negative_round_off_is_clipped_before_poisson(monkeypatch):
    # FFT convolution of a sparse image leaves tiny negatives next to zeros;
    # make them certain by shifting the blur down by round-off.
    import psfkit.forward.convolution

    exact = psfkit.forward.convolution.convolve
    monkeypatch.setattr(psfkit.forward.convolution, "convolve", lambda image, psf, **kw: exact(image, psf, **kw) - 1e-15)
    x = np.zeros((64, 64))
    x[::9, ::7] = 1.0
    y = simulate_acquisition(x, np.ones((3, 3)), gain=10.0, rng=0)
    assert y.min() == 0
    z = simulate_acquisition(x, np.ones((3, 3)), rng=0)
    assert z.min() == 0  # a non-negative specimen gives a non-negative blur


def test_quantisation_lattice_and_levels():
    x = 10 * cells((128, 128), rng=0)
    for bits in (1, 3, 8):
        y = simulate_acquisition(x, PSF, gain=5.0, read_noise=0.1, background=1.0, bits=bits, rng=1)
        step = y.max() / (2**bits - 1)  # full scale = maximum of the noisy image
        k = y / step
        np.testing.assert_allclose(k, np.rint(k), atol=1e-9)
        assert len(np.unique(y)) <= 2**bits
        assert y.min() >= 0
    # 3 bits on a varied image uses the whole range
    y3 = simulate_acquisition(x, PSF, gain=5.0, bits=3, rng=1)
    assert len(np.unique(y3)) == 8


def test_counts_output_and_dtypes():
    x = 50 * cells((64, 64), rng=1)
    expected = ((1, np.uint8), (8, np.uint8), (12, np.uint16), (16, np.uint16), (20, np.uint32), (32, np.uint32))
    for bits, dtype in expected:
        c = simulate_acquisition(x, PSF, gain=1.0, bits=bits, output="counts", rng=2)
        assert c.dtype == dtype
        assert c.max() == 2**bits - 1  # the brightest pixel reads full scale
        y = simulate_acquisition(x, PSF, gain=1.0, bits=bits, rng=2)
        np.testing.assert_allclose(y, c * (y.max() / (2**bits - 1)), rtol=1e-12)


def test_full_scale_saturates():
    y = simulate_acquisition(flat(10.0), PSF, read_noise=1.0, bits=8, full_scale=10.0, rng=0)
    assert y.max() == 10.0
    # about half of the pixels are above 10 before quantisation
    assert 0.4 < np.mean(y == 10.0) < 0.6
    c = simulate_acquisition(flat(10.0), PSF, bits=8, full_scale=25.5, output="counts", rng=0)
    assert np.all(c == 100)  # 10 / (25.5 / 255)


@pytest.mark.parametrize("bits", [None, 8])
def test_salt_and_pepper_fraction(bits):
    s = 0.02
    y = simulate_acquisition(flat(5.0), PSF, salt_pepper=s, bits=bits, full_scale=10.0, rng=6)
    n = y.size
    for value in (0.0, 10.0):
        share = np.mean(y == value)
        assert abs(share - s / 2) < 5 * np.sqrt(s / 2 * (1 - s / 2) / n)
    # every other pixel is untouched
    others = (y != 0) & (y != 10.0)
    assert np.allclose(y[others], 5.0, atol=10 / 255)


def test_salt_and_pepper_extremes_follow_the_data_range():
    y = simulate_acquisition(flat(5.0), PSF, read_noise=0.5, salt_pepper=1.0, rng=0)
    assert set(np.unique(y)) <= {0.0, y.max()}
    c = simulate_acquisition(flat(5.0), PSF, salt_pepper=1.0, bits=4, output="counts", rng=0)
    assert set(np.unique(c)) == {0, 15}


def test_determinism_and_seeds():
    x = 20 * random_specimen((64, 64), rng=0)
    options = dict(gain=2.0, read_noise=0.5, bits=12, salt_pepper=0.01, background=2.0)
    a = simulate_acquisition(x, PSF, rng=7, **options)
    b = simulate_acquisition(x, PSF, rng=7, **options)
    c = simulate_acquisition(x, PSF, rng=8, **options)
    d = simulate_acquisition(x, PSF, rng=np.random.default_rng(7), **options)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, d)
    assert not np.array_equal(a, c)
    # a shared Generator advances: two calls differ
    g = np.random.default_rng(0)
    first = simulate_acquisition(x, PSF, gain=1.0, rng=g)
    assert not np.array_equal(first, simulate_acquisition(x, PSF, gain=1.0, rng=g))


@pytest.mark.parametrize(
    "dtype, expected",
    [
        (np.float32, np.float32),
        (np.float64, np.float64),
        (np.float16, np.float32),
        (np.uint16, np.float64),
        (np.int32, np.float64),
    ],
)
def test_dtype_rules(dtype, expected):
    x = (100 * cells((32, 32), rng=0)).astype(dtype)
    for options in ({}, {"gain": 1.0, "read_noise": 0.1}, {"bits": 8}, {"noise_model": "approximate", "gain": 1.0}):
        assert simulate_acquisition(x, PSF, rng=0, **options).dtype == expected


def test_inputs_are_not_modified():
    x = 10 * cells((48, 48), rng=0)
    psf = PSF * 3  # unnormalised on purpose
    x0, psf0 = x.copy(), psf.copy()
    simulate_acquisition(x, psf, gain=1.0, read_noise=0.1, bits=8, salt_pepper=0.1, background=1.0, rng=0)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(psf, psf0)


def test_valid_boundary_shape_and_psf_normalisation():
    x = cells((40, 50), rng=0)
    y = simulate_acquisition(x, np.ones((5, 7)), boundary="valid")
    assert y.shape == (36, 44)
    # an unnormalised PSF is normalised: flux is kept
    z = simulate_acquisition(np.ones((20, 20)), 5 * np.ones((3, 3)), boundary="periodic")
    np.testing.assert_allclose(z, 1.0)


@settings(max_examples=20, deadline=None)
@given(
    rows=st.integers(8, 40),
    cols=st.integers(8, 40),
    bits=st.one_of(st.none(), st.integers(1, 32)),
    boundary=st.sampled_from(["reflect", "periodic", "valid", "constant"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_shapes_and_finite_output(rows, cols, bits, boundary, seed):
    x = np.random.default_rng(seed).random((rows, cols))
    y = simulate_acquisition(x, np.ones((3, 5)), gain=3.0, read_noise=0.1, bits=bits, boundary=boundary, rng=seed)
    expected = (rows - 2, cols - 4) if boundary == "valid" else (rows, cols)
    assert y.shape == expected and np.all(np.isfinite(y))


@pytest.mark.parametrize(
    "options, error, match",
    [
        ({"gain": 0.0}, ValueError, "gain"),
        ({"gain": -1.0}, ValueError, "gain"),
        ({"gain": np.inf}, ValueError, "gain"),
        ({"gain": "1"}, TypeError, "gain"),
        ({"read_noise": -0.1}, ValueError, "read_noise"),
        ({"read_noise": np.nan}, ValueError, "read_noise"),
        ({"bits": 0}, ValueError, "bits"),
        ({"bits": 33}, ValueError, "bits"),
        ({"bits": 8.0}, TypeError, "bits"),
        ({"salt_pepper": -0.1}, ValueError, "salt_pepper"),
        ({"salt_pepper": 1.5}, ValueError, "salt_pepper"),
        ({"background": -1.0}, ValueError, "background"),
        ({"full_scale": 0.0}, ValueError, "full_scale"),
        ({"boundary": "mirror"}, ValueError, "boundary"),
        ({"noise_model": "gaussian"}, ValueError, "noise_model"),
        ({"output": "photons"}, ValueError, "output"),
        ({"output": "counts"}, ValueError, "bits"),
        ({"rng": "seed"}, TypeError, "rng"),
    ],
)
def test_bad_options(options, error, match):
    with pytest.raises(error, match=match):
        simulate_acquisition(np.ones((16, 16)), PSF, **options)


def test_bad_arrays():
    good = np.ones((16, 16))
    bad_image = good.copy()
    bad_image[3, 3] = np.nan
    with pytest.raises(ValueError, match="image.*NaN"):
        simulate_acquisition(bad_image, PSF)
    bad_psf = PSF.copy()
    bad_psf[0, 0] = np.inf
    with pytest.raises(ValueError, match="psf.*NaN or infinite"):
        simulate_acquisition(good, bad_psf)
    with pytest.raises(ValueError, match="image must be 2-D or 3-D"):
        simulate_acquisition(np.ones((2, 4, 16, 16)), PSF)
    with pytest.raises(ValueError, match="psf must be 3-D"):
        simulate_acquisition(np.ones((4, 16, 16)), PSF)
    with pytest.raises(ValueError, match="psf must be 2-D"):
        simulate_acquisition(good, np.ones(5))
    with pytest.raises(ValueError, match="complex"):
        simulate_acquisition(good.astype(complex), PSF)
    with pytest.raises(ValueError, match="larger than image"):
        simulate_acquisition(np.ones((8, 8)), np.ones((9, 3)))
    with pytest.raises(ValueError, match="psf must be non-negative"):
        simulate_acquisition(good, PSF - 0.01)
    with pytest.raises(ValueError, match="image must be non-negative"):
        simulate_acquisition(good - 2, PSF, gain=1.0)
    # without shot noise a signed image is fine (e.g. a difference image)
    assert simulate_acquisition(good - 2, PSF, read_noise=0.1, rng=0).mean() < 0


def test_gain_beyond_the_poisson_sampler():
    with pytest.raises(ValueError, match="gain"):
        simulate_acquisition(np.ones((8, 8)), np.ones((3, 3)), gain=1e20)


# --- blind noise estimation --------------------------------------------------

SPECIMENS = {
    "filaments": lambda rng: filaments((256, 256), rng=rng),
    "cells": lambda rng: cells((256, 256), rng=rng),
    "dead_leaves": lambda rng: dead_leaves((256, 256), rng=rng),
    "mixture": lambda rng: random_specimen((256, 256), rng=rng),
}


@pytest.mark.parametrize("kind", sorted(SPECIMENS))
@pytest.mark.parametrize(
    "gain, sigma, background",
    [(None, 0.05, 0.0), (None, 0.005, 0.0), (100.0, 0.0, 0.0), (10.0, 0.0, 0.0), (200.0, 0.03, 0.0), (50.0, 0.02, 0.2)],
)
def test_estimate_noise_recovers_known_parameters(kind, gain, sigma, background):
    """The noise std over the image's intensities within 15 %, alpha within 20 %."""
    x = SPECIMENS[kind](1)
    for psf in (PSF, airy_psf(0.2)):
        y = simulate_acquisition(x, psf, gain=gain, read_noise=sigma, background=background, rng=2)
        est = estimate_noise(y)
        alpha = 0.0 if gain is None else 1.0 / gain
        beta = sigma**2 - alpha * background
        z = np.percentile(np.maximum(convolve(x, psf), 0), [10, 50, 90, 99]) + background
        true_std = np.sqrt(alpha * z + beta)
        # (atol: pure Poisson has no noise at all where there is no light)
        np.testing.assert_allclose(est.std(z), true_std, rtol=0.15, atol=0.02 * true_std.max())
        if gain is not None:
            assert est.alpha == pytest.approx(alpha, rel=0.2)
        # beta within 20 % of the variance it competes with
        scale = max(sigma**2, alpha * background, alpha * z[2])
        assert abs(est.beta - beta) < 0.2 * scale


def test_estimate_noise_robust_to_impulses_quantisation_and_saturation():
    x = cells((512, 512), rng=3)
    y = simulate_acquisition(x, PSF, gain=300.0, read_noise=0.01, background=0.1, bits=12, salt_pepper=1e-3, rng=4)
    est = estimate_noise(y)
    assert est.alpha == pytest.approx(1 / 300, rel=0.1)
    assert est.std(0.1) == pytest.approx(0.01, rel=0.1)
    # saturation: a full scale below the brightest structures
    y = simulate_acquisition(x, PSF, gain=300.0, read_noise=0.01, background=0.1, full_scale=0.4, bits=16, rng=4)
    assert (y == y.max()).mean() > 0.005
    est = estimate_noise(y)
    assert est.alpha == pytest.approx(1 / 300, rel=0.1)
    assert est.std(0.1) == pytest.approx(0.01, rel=0.1)


def test_estimate_noise_scales_with_the_image():
    y = simulate_acquisition(cells((128, 128), rng=5), PSF, gain=100.0, read_noise=0.02, rng=6)
    a = estimate_noise(y)
    b = estimate_noise(1000.0 * y)
    assert b.alpha == pytest.approx(1000 * a.alpha, rel=1e-6)
    assert b.beta == pytest.approx(1e6 * a.beta, rel=1e-6)
    # float32 input is accepted and agrees
    c = estimate_noise(y.astype(np.float32))
    assert c.alpha == pytest.approx(a.alpha, rel=1e-3)


def test_estimate_noise_without_structure_has_no_slope():
    rng = np.random.default_rng(0)
    est = estimate_noise(3.0 + 0.5 * rng.standard_normal((128, 128)))
    assert est.alpha == 0.0 and est.gain == np.inf
    assert est.sigma == pytest.approx(0.5, rel=0.05)
    assert estimate_noise(np.ones((32, 32))) == (0.0, 0.0)


def test_noise_estimate_tuple():
    est = NoiseEstimate(alpha=0.01, beta=-0.0004)
    assert est.gain == pytest.approx(100.0)
    assert est.sigma == 0.0  # a camera offset makes beta negative
    np.testing.assert_allclose(est.std([0.04, 1.0]), [0.0, np.sqrt(0.0096)])
    alpha, beta = est
    assert (alpha, beta) == (0.01, -0.0004)


def test_estimate_noise_does_not_modify_and_validates():
    y = simulate_acquisition(cells((64, 64), rng=0), PSF, gain=10.0, rng=0)
    y0 = y.copy()
    estimate_noise(y)
    np.testing.assert_array_equal(y, y0)
    with pytest.raises(ValueError, match="image must be 2-D"):
        estimate_noise(np.ones((2, 64, 64)))
    with pytest.raises(ValueError, match="image must have at least"):
        estimate_noise(np.ones((16, 64)))
    bad = y.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        estimate_noise(bad)
    with pytest.raises(ValueError, match="bins"):
        estimate_noise(y, bins=2)
    with pytest.raises(TypeError, match="bins"):
        estimate_noise(y, bins=8.5)


def test_stack_3d_shape_dtype_and_blur():
    """(Z, Y, X) specimens with a 3-D PSF: same blur as convolve, shape/dtype kept, input untouched."""
    rng = np.random.default_rng(0)
    stack = rng.random((8, 32, 32)).astype(np.float32)
    before = stack.copy()
    psf = np.ones((3, 5, 5))
    y = simulate_acquisition(stack, psf)
    assert y.shape == stack.shape and y.dtype == np.float32
    np.testing.assert_allclose(y, convolve(stack, psf), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(stack, before)
    assert simulate_acquisition(stack, psf, boundary="valid").shape == (6, 28, 28)
    counts = simulate_acquisition(100 * stack, psf, gain=1.0, bits=12, output="counts", rng=1)
    assert counts.shape == stack.shape and counts.dtype == np.uint16 and int(counts.max()) == 4095
    assert simulate_acquisition(stack.astype(np.float64), psf).dtype == np.float64


@pytest.mark.parametrize("noise_model", ["poisson-gaussian", "approximate"])
def test_stack_3d_noise_statistics(noise_model):
    """Mean z + b and variance z / gain + sigma**2 per voxel, independent along z."""
    level, gain, sigma, offset = 50.0, 2.0, 1.5, 10.0
    stack = np.full((8, 32, 32), level)
    psf = np.ones((3, 3, 3))
    ys = np.stack([
        simulate_acquisition(stack, psf, gain=gain, read_noise=sigma, background=offset,
                             noise_model=noise_model, rng=seed)
        for seed in range(4)
    ])
    assert ys.shape == (4, 8, 32, 32)
    n = ys.size
    expected_var = level / gain + sigma**2
    assert abs(ys.mean() - (level + offset)) < 5 * np.sqrt(expected_var / n)
    assert abs(ys.var() / expected_var - 1) < 5 * np.sqrt(2 / n)
    # Independent voxels: no correlation between neighbouring planes.
    r = ys - ys.mean()
    corr = (r[:, 1:] * r[:, :-1]).mean() / r.var()
    assert abs(corr) < 5 / np.sqrt(n)
    # Each plane has the same statistics (no z-dependent noise).
    plane_means = ys.mean(axis=(0, 2, 3))
    assert np.all(np.abs(plane_means - (level + offset)) < 5 * np.sqrt(expected_var * 8 / n))
