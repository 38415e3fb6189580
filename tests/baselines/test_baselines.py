"""Tests of psfkit.baselines: the l0-gradient and Goldstein-Fattal blind estimators."""

import numpy as np
import pytest
from scipy.signal import fftconvolve
from skimage.data import camera

from psfkit.baselines import goldstein_fattal, l0_gradient
from psfkit.baselines import _goldstein_fattal as gf
from psfkit.baselines._common import barycentre_shift, clean_kernel, shift_zero_fill
from psfkit.baselines._gf_numba import lipschitz_lower_envelope, projection_autocorrelations

# few restarts/iterations: enough for an easy Gaussian blur, fast on a shared CPU
GF_FAST = dict(n_tries=8, n_inner=150, n_outer=2)


def gaussian_kernel(size, sigma):
    r = np.arange(size) - size // 2
    k = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma**2))
    return k / k.sum()


def curved_motion_kernel():
    """Anti-aliased curved 9x9 trajectory: asymmetric, so orientation errors show."""
    k = np.zeros((9, 9))
    for t in np.linspace(0.0, 1.0, 60):
        y, x = 2 + 5 * t, 2 + 4 * t * t
        iy, ix = int(y), int(x)
        fy, fx = y - iy, x - ix
        k[iy, ix] += (1 - fy) * (1 - fx)
        k[iy + 1, ix] += fy * (1 - fx)
        k[iy, ix + 1] += (1 - fy) * fx
        k[iy + 1, ix + 1] += fy * fx
    return k / k.sum()


def centred(kernel, size):
    """Kernel zero-padded to ``size`` with its barycentre moved to the centre pixel."""
    pad = (size - kernel.shape[0]) // 2
    k = np.pad(kernel, pad)
    return shift_zero_fill(k, barycentre_shift(k))


def snr(estimate, reference):
    e = estimate / estimate.sum()
    r = reference / reference.sum()
    return 10 * np.log10((r**2).sum() / ((r - e) ** 2).sum())


def aligned_snr(estimate, reference, max_shift=3, flip=True):
    """Best PSF SNR over integer shifts (and the point reflection if ``flip``)."""
    candidates = [estimate, estimate[::-1, ::-1]] if flip else [estimate]
    best = -np.inf
    for c in candidates:
        for dy in range(-max_shift, max_shift + 1):
            for dx in range(-max_shift, max_shift + 1):
                moved = shift_zero_fill(c, (dy, dx))
                if moved.sum() > 0:
                    best = max(best, snr(moved, reference))
    return best


@pytest.fixture(scope="module")
def sharp():
    return camera()[::2, ::2].astype(np.float64) / 255.0


def blur_valid(sharp, kernel, size=112, top=40, left=60):
    n = kernel.shape[0]
    window = sharp[top : top + size + n - 1, left : left + size + n - 1]
    return fftconvolve(window, kernel, mode="valid"), sharp[top + n // 2 : top + n // 2 + size, left + n // 2 : left + n // 2 + size]


@pytest.fixture(scope="module")
def gaussian_case(sharp):
    kernel = gaussian_kernel(9, 1.5)
    blurry, truth = blur_valid(sharp, kernel)
    return blurry, truth, centred(kernel, 11)


@pytest.fixture(scope="module")
def l0_gaussian(gaussian_case):
    return l0_gradient(gaussian_case[0], 11)


@pytest.fixture(scope="module")
def gf_gaussian(gaussian_case):
    return goldstein_fattal(gaussian_case[0], 11, rng=0, **GF_FAST)


def floors(reference):
    size = reference.shape[0]
    box = np.ones((size, size))
    delta = np.zeros((size, size))
    delta[size // 2, size // 2] = 1.0
    return aligned_snr(box, reference), aligned_snr(delta, reference)


# -- finding the kernel on easy cases -------------------------------------------------


def test_l0_finds_gaussian_kernel(gaussian_case, l0_gaussian):
    reference = gaussian_case[2]
    psf, _ = l0_gaussian
    box, delta = floors(reference)
    value = aligned_snr(psf, reference)
    assert value > 11.0
    assert value > box + 8.0 and value > delta + 20.0


def test_l0_restores_sharper_image(gaussian_case, l0_gaussian):
    blurry, truth, _ = gaussian_case
    _, restored = l0_gaussian
    inner = (slice(8, -8), slice(8, -8))
    err_blurry = np.mean((blurry - truth)[inner] ** 2)
    err_restored = np.mean((restored - truth)[inner] ** 2)
    assert err_restored < 0.75 * err_blurry


def test_l0_finds_asymmetric_motion_kernel_with_psfkit_orientation(sharp):
    kernel = curved_motion_kernel()
    blurry, _ = blur_valid(sharp, kernel)
    reference = centred(kernel, 11)
    psf, _ = l0_gradient(blurry, 11)
    # l0 has no flip ambiguity: the direct orientation must be the right one
    direct = aligned_snr(psf, reference, flip=False)
    reflected = aligned_snr(psf[::-1, ::-1], reference, flip=False)
    box, _ = floors(reference)
    assert direct > 6.0 and direct > box + 5.0
    assert direct > reflected + 3.0
    # barycentre re-centring: the estimate sits within one pixel of the (re-centred) truth
    assert aligned_snr(psf, reference, max_shift=1, flip=False) > direct - 0.5


def test_gf_finds_gaussian_kernel(gaussian_case, gf_gaussian):
    reference = gaussian_case[2]
    psf, _ = gf_gaussian
    box, delta = floors(reference)
    value = aligned_snr(psf, reference)
    assert value > 6.0
    assert value > box + 4.0 and value > delta + 15.0


# -- output conventions ---------------------------------------------------------------


@pytest.mark.parametrize("method", ["l0", "gf"])
def test_outputs_shape_sum_nonnegative(gaussian_case, l0_gaussian, gf_gaussian, method):
    blurry = gaussian_case[0]
    psf, restored = l0_gaussian if method == "l0" else gf_gaussian
    assert psf.shape == (11, 11)
    assert restored.shape == blurry.shape
    assert psf.dtype == np.float64 and restored.dtype == np.float64
    assert psf.min() >= 0.0
    assert psf.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.all(np.isfinite(restored))
    assert restored.min() >= blurry.min() - 1e-12 and restored.max() <= blurry.max() + 1e-12


def test_float32_in_float32_out_and_scale_invariance(gaussian_case, l0_gaussian):
    blurry = gaussian_case[0]
    # raw counts with an offset: the internal [0, 1] normalisation makes the kernel identical
    counts = (1000.0 * blurry + 100.0).astype(np.float32)
    before = counts.copy()
    psf, restored = l0_gradient(counts, 11)
    assert np.array_equal(counts, before)  # input untouched
    assert psf.dtype == np.float32 and restored.dtype == np.float32
    assert aligned_snr(psf.astype(np.float64), l0_gaussian[0], max_shift=0, flip=False) > 30.0
    assert restored.min() >= 100.0 - 1e-3 and restored.max() <= counts.max() + 1e-2


def test_l0_options_switch_off_cleanup(gaussian_case):
    blurry = gaussian_case[0]
    psf_default, _ = l0_gradient(blurry, 11, multiscale=False, iterations=2)
    psf_raw, _ = l0_gradient(blurry, 11, multiscale=False, iterations=2, kernel_threshold=0.0, remove_isolated=False)
    # the 5 % threshold leaves empty pixels; without it the Tikhonov tails stay
    assert np.count_nonzero(psf_raw) > np.count_nonzero(psf_default)


# -- reproducibility ------------------------------------------------------------------


def test_gf_is_reproducible_with_a_seed(gaussian_case, gf_gaussian):
    blurry = gaussian_case[0]
    psf, restored = goldstein_fattal(blurry, 11, rng=np.random.default_rng(0), **GF_FAST)
    assert np.array_equal(psf, gf_gaussian[0])
    assert np.array_equal(restored, gf_gaussian[1])


def test_gf_seed_drives_the_restarts(gaussian_case):
    blurry = gaussian_case[0]
    settings = dict(n_tries=2, n_inner=30, n_outer=1)
    results = [goldstein_fattal(blurry, 11, rng=seed, **settings)[0] for seed in range(4)]
    assert any(not np.array_equal(results[0], r) for r in results[1:])


def test_l0_is_deterministic(gaussian_case, l0_gaussian):
    psf, restored = l0_gradient(gaussian_case[0], 11, rng=123)
    assert np.array_equal(psf, l0_gaussian[0])
    assert np.array_equal(restored, l0_gaussian[1])


# -- building blocks against closed forms -----------------------------------------------


def test_angle_set_reaches_every_lattice_point_once():
    radius = 12
    a, b = gf._angle_set(radius)
    hits = np.zeros((2 * radius + 1, 2 * radius + 1), dtype=int)
    for da, db in zip(a, b):
        step = max(da, abs(db))
        for i in range(1, radius // step + 1):
            hits[radius + i * db, radius + i * da] += 1
            hits[radius - i * db, radius - i * da] += 1
    expected = np.ones_like(hits)
    expected[radius, radius] = 0
    assert np.array_equal(hits, expected)
    angles = np.arctan2(b, a)
    assert np.all(np.diff(angles) < 0)  # sorted by decreasing angle, for the angular filters


def test_projected_autocorrelations_give_kernel_power_spectrum():
    # Fourier slice theorem: on the axes and diagonals the nearest-pixel shear is exact
    rng = np.random.default_rng(1)
    size = 5
    kernel = rng.uniform(0.0, 1.0, (size, size))
    grid = gf._grid_size(size)
    a, b = gf._angle_set(grid // 2)
    half = projection_autocorrelations(kernel, kernel, np.ones(a.size), np.zeros(a.size), a, b, 2 * size, False)
    spectrum = gf._power_spectrum(gf._symmetric_rows(half), a, b, grid)
    padded = np.zeros((grid, grid))
    padded[:size, :size] = kernel
    expected = np.abs(np.fft.fft2(padded)) ** 2 / kernel.sum() ** 2
    exact = [(1, 0), (0, 1), (1, 1), (1, -1)]
    for da, db in exact:
        for i in range(-(grid // 2), grid // 2 + 1):
            p, q = (i * db) % grid, (i * da) % grid
            assert spectrum[p, q] == pytest.approx(expected[p, q], rel=1e-9, abs=1e-12)


def test_phase_retrieval_recovers_kernel_from_exact_magnitude():
    rng = np.random.default_rng(2)
    size = 7
    kernel = np.zeros((size, size))
    kernel[1:5, 2:6] = rng.uniform(0.2, 1.0, (4, 4))
    kernel[4, 1] = 0.6
    kernel /= kernel.sum()
    grid = gf._grid_size(size)
    padded = np.zeros((grid, grid))
    padded[:size, :size] = kernel
    magnitude = np.abs(np.fft.fft2(padded))
    candidates = gf._phase_retrieval(magnitude, size, np.random.default_rng(3).spawn(6), 300)
    best = max(aligned_snr(c, kernel, max_shift=3) for c in candidates)
    assert best > 15.0


def test_compensation_is_identity_at_zero_and_inverts_the_filter():
    rows = np.abs(np.random.default_rng(4).normal(size=(3, 21))) + 1.0
    assert np.array_equal(gf._compensate(rows, 0.0), rows)
    matrix = gf._compensation_matrix(10, 2.1)
    assert np.allclose(matrix.sum(axis=1), 1.0)  # replicate boundaries keep constants
    clean = np.zeros((1, 21))
    clean[0, 8:13] = [1, 3, 5, 3, 1]
    measured = (matrix @ clean.T).T
    assert np.allclose(gf._compensate(measured, 2.1), clean, atol=1e-9)


def test_lipschitz_envelope():
    values = np.array([5.0, 5.0, 1.0, 5.0, 5.0, 5.0, 5.0, 5.0])
    env = lipschitz_lower_envelope(values, 1.5)
    assert np.all(env <= values)
    steps = np.abs(np.diff(np.append(env, env[0])))  # circular
    assert np.all(steps <= 1.5 + 1e-12)
    assert env.tolist() == [4.0, 2.5, 1.0, 2.5, 4.0, 5.0, 5.0, 5.0]


def test_clean_kernel_thresholds_recentres_and_drops_isolated_pixels():
    kernel = np.zeros((9, 9))
    kernel[1:4, 1:4] = 1.0  # main blob, off-centre
    kernel[8, 8] = 0.5  # isolated, < 10 % of the flux
    kernel[2, 4] = 0.02  # below 5 % of the maximum
    out = clean_kernel(kernel)
    assert out.sum() == pytest.approx(1.0)
    assert out[8, 8] == 0 and np.count_nonzero(out) == 9
    assert barycentre_shift(out) == (0, 0)
    assert np.array_equal(clean_kernel(kernel, threshold=0, isolated=False, recentre=False) > 0, kernel > 0)


# -- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize("func", [l0_gradient, goldstein_fattal])
def test_bad_input(func, gaussian_case):
    image = gaussian_case[0]
    with pytest.raises(ValueError, match="image"):
        func(np.where(np.arange(image.size).reshape(image.shape) == 5, np.nan, image), 11)
    with pytest.raises(ValueError, match="image must be 2-D"):
        func(np.stack([image, image]), 11)
    with pytest.raises(ValueError, match="constant"):
        func(np.ones((64, 64)), 11)
    with pytest.raises(ValueError, match="real-valued"):
        func(image.astype(complex), 11)
    with pytest.raises(ValueError, match="psf_size must be an odd"):
        func(image, 10)
    with pytest.raises(ValueError, match="psf_size must be an odd"):
        func(image, 1)
    with pytest.raises(TypeError, match="psf_size"):
        func(image, 11.0)
    with pytest.raises(TypeError, match="psf_size"):
        func(image, True)
    with pytest.raises(ValueError, match="smaller than the image"):
        func(image[:20, :20], 21)
    with pytest.raises(TypeError, match="rng"):
        func(image, 11, rng="seed")


def test_bad_options(gaussian_case):
    image = gaussian_case[0]
    with pytest.raises(ValueError, match="lam"):
        l0_gradient(image, 11, lam=-1.0)
    with pytest.raises(ValueError, match="scale"):
        l0_gradient(image, 11, scale=1.5)
    with pytest.raises(ValueError, match="kernel_threshold"):
        l0_gradient(image, 11, kernel_threshold=1.0)
    with pytest.raises(TypeError, match="multiscale"):
        l0_gradient(image, 11, multiscale=1)
    with pytest.raises(TypeError, match="n_tries"):
        goldstein_fattal(image, 11, n_tries=2.5)
    with pytest.raises(ValueError, match="patch_size"):
        goldstein_fattal(image, 11, patch_size=11)
    with pytest.raises(ValueError, match="smaller than the image"):
        goldstein_fattal(image[:30, :30], 11)  # needs 2 * psf_size + 10 pixels
