"""Tests of psfkit.deconvolve: physics of each method, boundaries, space-varying models, inputs."""

import numpy as np
import pytest
from scipy.signal import convolve as scipy_convolve
from skimage.restoration import richardson_lucy

from psfkit import convolve, deconvolve, grid_weights, product_convolution
from psfkit.metrics import psnr
from psfkit.restoration._regularization import auto_weights
from psfkit.forward.space_varying import ProductConvolution

METHODS = ("rl", "rl-tv", "fista", "wiener")


def gaussian_psf(size=9, sigma=1.5, dtype=np.float64):
    r = np.arange(size) - size // 2
    g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma**2))
    return (g / g.sum()).astype(dtype)


def blobs(shape=(48, 56), seed=0, count=12, background=0.05):
    """Smooth positive specimen: Gaussian blobs on a small background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    x = np.full(shape, background)
    for cy, cx, a in zip(rng.uniform(0, shape[0], count), rng.uniform(0, shape[1], count), rng.uniform(0.3, 1, count)):
        x += a * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 6.0)
    return x


def well_posed_psf():
    """A PSF whose transfer function stays away from zero (|OTF| >= 0.2)."""
    psf = np.zeros((3, 3))
    psf[1, 1] = 0.6
    psf[0, 1] = psf[2, 1] = psf[1, 0] = psf[1, 2] = 0.1
    return psf


# ------------------------------------------------------------------ physics


@pytest.mark.parametrize("acceleration", [False, True, "biggs-andrews"])
def test_rl_conserves_flux_on_periodic_model(acceleration):
    # Sum x_{k+1} = <A^T(y / A p), p> = <y / A p, A p> = sum y for any positive p when A^T 1 = 1.
    y = convolve(blobs(), gaussian_psf(), boundary="periodic")
    seen = []
    deconvolve(y, gaussian_psf(), method="rl", boundary="periodic", acceleration=acceleration, iterations=15,
               callback=lambda k, x: seen.append(x.sum()))
    np.testing.assert_allclose(seen, y.sum(), rtol=1e-10)


@pytest.mark.parametrize("method", METHODS[:3])
@pytest.mark.parametrize("boundary", ["extend", "reflect", "periodic", "zero"])
def test_positive_methods_stay_non_negative(method, boundary):
    rng = np.random.default_rng(3)
    x = blobs()
    x[10:30, 10:30] = 0  # dark region with noise around 0
    y = convolve(x, gaussian_psf()) + 0.02 * rng.standard_normal(x.shape)
    out = deconvolve(y, gaussian_psf(), method=method, boundary=boundary, iterations=20)
    assert out.min() >= 0
    assert np.all(np.isfinite(out))


def test_wiener_recovers_exactly_without_noise():
    x = blobs()
    y = convolve(x, well_posed_psf(), boundary="periodic")
    out = deconvolve(y, well_posed_psf(), method="wiener", boundary="periodic", regularization=0.0)
    np.testing.assert_allclose(out, x, rtol=0, atol=1e-10 * x.max())


def test_fista_and_rl_converge_to_the_object_without_noise():
    x = blobs()
    y = convolve(x, well_posed_psf(), boundary="periodic")
    fista = deconvolve(y, well_posed_psf(), method="fista", boundary="periodic", regularization=0.0, iterations=150)
    rl = deconvolve(y, well_posed_psf(), method="rl", boundary="periodic", iterations=150)
    assert np.linalg.norm(fista - x) < 1e-4 * np.linalg.norm(x)
    assert np.linalg.norm(rl - x) < 1e-3 * np.linalg.norm(x)


def test_wiener_masked_cg_recovers_interior_on_the_extended_field():
    # Data simulated with real borders ("valid"): the extended-field solver sees the same model. The
    # unobserved margin leaves a null space whose influence decays exponentially from the border.
    big = blobs((60, 66), seed=1)
    psf = well_posed_psf()
    y = convolve(big, psf, boundary="valid")
    out = deconvolve(y, psf, method="wiener", boundary="extend", regularization=1e-8, iterations=300)
    error = np.abs(out - big[1:-1, 1:-1])
    assert error[8:-8, 8:-8].max() < 1e-6
    assert error[4:-4, 4:-4].max() < 1e-3


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matches_skimage_richardson_lucy(dtype):
    # Same model (zero boundary, scipy.signal.convolve mode="same"), same update, no TV, no acceleration.
    x = blobs((40, 50)) + 0.1
    psf = gaussian_psf(7, 1.2)
    y = scipy_convolve(x, psf, mode="same").astype(dtype)
    ours = deconvolve(y, psf.astype(dtype), method="rl", boundary="zero", acceleration=False, iterations=10)
    theirs = richardson_lucy(y, psf.astype(dtype), num_iter=10, clip=False)
    assert ours.dtype == dtype
    assert np.linalg.norm(ours - theirs) <= 1e-4 * np.linalg.norm(theirs)


def test_acceleration_gets_closer_in_fewer_iterations():
    x = blobs()
    y = convolve(x, gaussian_psf(), boundary="periodic")
    def error(acceleration, iterations):
        out = deconvolve(y, gaussian_psf(), method="rl", boundary="periodic", acceleration=acceleration,
                         iterations=iterations)
        return np.linalg.norm(out - x)

    # 15 accelerated iterations get closer than 40 plain ones
    plain = error(False, 40)
    assert error("shb", 15) < plain
    assert error("biggs-andrews", 15) < plain


def test_rl_tv_smooths_more_with_larger_weight():
    rng = np.random.default_rng(5)
    y = rng.poisson(convolve(blobs() * 200, gaussian_psf())).astype(float)
    tv = [np.abs(np.diff(deconvolve(y, gaussian_psf(), regularization=lam, iterations=30), axis=1)).sum()
          for lam in (0.001, 0.01, 0.1)]
    assert tv[0] > tv[1] > tv[2]


def test_extend_boundary_does_not_ring_at_the_borders():
    big = blobs((72, 72), seed=2) * 100
    psf = gaussian_psf(11, 2.0)
    y = convolve(big, psf, boundary="valid")
    truth = big[5:-5, 5:-5]
    border = np.ones(truth.shape, bool)
    border[8:-8, 8:-8] = False
    errors = {}
    for boundary in ("extend", "periodic", "zero"):
        out = deconvolve(y, psf, method="rl", boundary=boundary, iterations=30)
        errors[boundary] = np.abs(out - truth)[border].mean()
    assert errors["extend"] < 0.5 * errors["periodic"]
    assert errors["extend"] < 0.5 * errors["zero"]


def test_three_dimensional_stack():
    r = np.arange(5) - 2
    psf = np.exp(-(r[:, None, None] ** 2 / 2 + r[None, :, None] ** 2 + r[None, None, :] ** 2))
    rng = np.random.default_rng(0)
    x = rng.random((12, 20, 22)) + 0.5
    y = convolve(x, psf, boundary="periodic")
    for method in METHODS:
        out = deconvolve(y.astype(np.float32), psf, method=method, iterations=5)
        assert out.shape == x.shape and out.dtype == np.float32
        assert np.all(np.isfinite(out))
    exact = deconvolve(convolve(x, well_posed_psf()[None], boundary="periodic"), well_posed_psf()[None],
                       method="wiener", boundary="periodic", regularization=0.0)
    np.testing.assert_allclose(exact, x, atol=1e-9)


# -------------------------------------------------------- space-varying


def test_identical_grid_psfs_equal_the_single_psf():
    psf = gaussian_psf(7, 1.3)
    y = convolve(blobs() * 50, psf) + 1.0
    grid = np.broadcast_to(psf, (3, 2) + psf.shape)
    for method in METHODS:
        lam = 0.0 if method == "rl" else 0.01
        iterations = 100 if method == "wiener" else 8
        for boundary in ("extend", "periodic"):
            single = deconvolve(y, psf, method=method, boundary=boundary, iterations=iterations, regularization=lam)
            varying = deconvolve(y, grid, method=method, boundary=boundary, iterations=iterations, regularization=lam)
            tolerance = 1e-3 if method == "wiener" else 1e-6  # CG against the one-shot filter
            np.testing.assert_allclose(varying, single, rtol=0, atol=tolerance * np.abs(single).max())


def test_space_varying_model_beats_a_single_psf():
    shape = (64, 64)
    grid = np.stack([np.stack([gaussian_psf(9, 0.6), gaussian_psf(9, 2.2)]),
                     np.stack([gaussian_psf(9, 2.2), gaussian_psf(9, 0.6)])])
    x = blobs(shape, seed=4) * 100
    y = product_convolution(x, grid.reshape(4, 9, 9), grid_weights(shape, (2, 2)), boundary="reflect")
    varying = deconvolve(y, grid, method="rl", boundary="reflect", iterations=40)
    errors = [np.linalg.norm(deconvolve(y, p, method="rl", boundary="reflect", iterations=40) - x)
              for p in grid.reshape(4, 9, 9)]
    assert np.linalg.norm(varying - x) < 0.8 * min(errors)


@pytest.mark.parametrize("order", ["mask-first", "mask-last"])
def test_product_convolution_object_is_used_as_given(order):
    shape = (40, 44)
    rng = np.random.default_rng(1)
    psfs = rng.random((4, 5, 5))
    psfs = 0.4 * psfs / psfs.sum(axis=(1, 2), keepdims=True)
    psfs[:, 2, 2] += 0.6  # |OTF| >= 0.2: well posed, so A(estimate) must reproduce the data
    operator = ProductConvolution(psfs, grid_weights(shape, (2, 2)), order=order, boundary="periodic")
    x = blobs(shape) + 0.1
    y = operator.apply(x)
    out = deconvolve(y, operator, method="wiener", boundary="periodic", regularization=1e-10, iterations=100)
    np.testing.assert_allclose(operator.apply(out), y, atol=1e-4 * y.max())
    np.testing.assert_allclose(out, x, atol=1e-3 * x.max())


def test_weights_on_the_extended_field_are_accepted():
    shape, psf = (32, 36), gaussian_psf(5)
    weights = np.ones((1, shape[0] + 4, shape[1] + 4))
    operator = ProductConvolution(psf[None], weights, boundary="valid")
    y = convolve(blobs(shape) + 0.1, psf)
    np.testing.assert_allclose(deconvolve(y, operator, method="rl", iterations=5),
                               deconvolve(y, psf, method="rl", iterations=5), rtol=1e-10)


# ---------------------------------------------------------- numbers


def test_inputs_are_not_modified_and_dtypes_follow_the_rules():
    y = convolve(blobs(), gaussian_psf()).astype(np.float32)
    psf = gaussian_psf().astype(np.float32) * 3  # not normalised
    y0, psf0 = y.copy(), psf.copy()
    out = deconvolve(y, psf, iterations=3)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_array_equal(psf, psf0)
    counts = np.round(y * 100).astype(np.uint16)
    assert deconvolve(counts, psf, iterations=3).dtype == np.float64
    assert deconvolve(counts, psf, iterations=3, dtype=np.float32).dtype == np.float32
    assert deconvolve(y.astype(np.float16), psf, iterations=3).dtype == np.float32


@pytest.mark.parametrize("method", METHODS)
def test_results_scale_with_the_data(method):
    # The automatic weights make every method equivariant to the intensity scale.
    rng = np.random.default_rng(2)
    y = rng.poisson(convolve(blobs() * 300, gaussian_psf())).astype(float)
    a = deconvolve(y, gaussian_psf(), method=method, iterations=10)
    b = deconvolve(y / 300, gaussian_psf(), method=method, iterations=10)
    np.testing.assert_allclose(b * 300, a, rtol=1e-6, atol=1e-6 * a.max())


def test_auto_weights_grow_with_the_noise():
    rng = np.random.default_rng(7)
    blurred = convolve(blobs((96, 96)), gaussian_psf())
    weights = [auto_weights(rng.poisson(blurred * photons) / photons, 0.0, 2) for photons in (30, 300, 3000)]
    for method in ("rl-tv", "fista", "wiener"):
        assert weights[0][method] > weights[1][method] > weights[2][method] > 0
    assert weights[0]["rl-tv"] < 0.25


@pytest.mark.parametrize("method", ["rl", "rl-tv"])
def test_rl_stops_earlier_on_noisier_data(method):
    rng = np.random.default_rng(8)
    blurred = convolve(blobs((64, 64)), gaussian_psf())
    counts = []
    for photons in (30, 3000):
        calls = []
        deconvolve(rng.poisson(blurred * photons).astype(float), gaussian_psf(), method=method,
                   callback=lambda k, e: calls.append(k))
        counts.append(len(calls))
    assert 1 <= counts[0] < counts[1] < 100


def test_the_discrepancy_stop_is_where_the_data_are_fitted_to_their_noise():
    # Poisson data: the stop comes right after the first iterate whose residual variance falls to the noise's, well
    # above the blurred input (here 4 dB short of the best count, 6: the rule's worst case on its calibration set
    # of real specimens was 2.2 dB, its mean 0.4 dB)
    rng = np.random.default_rng(9)
    truth = blobs((96, 96)) * 300
    psf = gaussian_psf()
    y = rng.poisson(convolve(truth, psf)).astype(float)
    chi, quality = [], []

    def watch(k, estimate):
        model = convolve(estimate, psf)
        chi.append(np.mean((y - model) ** 2 / np.maximum(model, 1e-3)))
        quality.append(psnr(estimate, truth, data_range=truth.max()))

    deconvolve(y, psf, method="rl", iterations=60, callback=watch)
    stopped = deconvolve(y, psf, method="rl")
    first_fit = next(k for k, c in enumerate(chi) if c <= 1.05)  # the noise fit is an estimate
    calls = []
    deconvolve(y, psf, method="rl", callback=lambda k, e: calls.append(k))
    assert abs(len(calls) - (first_fit + 2)) <= 1
    achieved = psnr(stopped, truth, data_range=truth.max())
    assert achieved == pytest.approx(quality[len(calls) - 1], abs=0.5)
    assert achieved > psnr(y, truth, data_range=truth.max()) + 4.0


def test_noise_free_data_run_the_maximum_count():
    calls = []
    blurred = convolve(blobs((48, 48)), gaussian_psf())
    deconvolve(blurred, gaussian_psf(), method="rl", callback=lambda k, e: calls.append(k))
    assert len(calls) == 100


def test_negative_data_are_offset_for_rl():
    rng = np.random.default_rng(1)
    y = convolve(blobs(), gaussian_psf()) + 0.05 * rng.standard_normal((48, 56)) - 0.05
    assert y.min() < 0
    out = deconvolve(y, gaussian_psf(), method="rl", iterations=10)
    offset = -y.min()
    same = deconvolve(y + offset, gaussian_psf(), method="rl", iterations=10, background=offset)
    np.testing.assert_allclose(out, same, rtol=1e-12)
    assert out.min() >= 0


def test_callback_stops_early_and_sees_the_image_grid():
    y = convolve(blobs(), gaussian_psf())
    for method in METHODS:
        calls = []

        def callback(iteration, estimate):
            calls.append((iteration, estimate.shape))
            return False if iteration == 3 else None  # only False stops

        out = deconvolve(y, gaussian_psf(), method=method, iterations=10, callback=callback)
        assert calls == [(1, y.shape), (2, y.shape), (3, y.shape)]
        assert out.shape == y.shape


def test_threads_give_the_same_result():
    y = convolve(blobs((128, 130)), gaussian_psf())
    one = deconvolve(y, gaussian_psf(), iterations=5)
    np.testing.assert_allclose(deconvolve(y, gaussian_psf(), iterations=5, workers=-1), one, rtol=1e-10)
    np.testing.assert_allclose(deconvolve(y, gaussian_psf(), iterations=5, workers=2), one, rtol=1e-10)


def test_progress_bar(capsys):
    y = convolve(blobs(), gaussian_psf())
    deconvolve(y, gaussian_psf(), iterations=3, progress=True)
    assert "deconvolve" in capsys.readouterr().err


def test_wavelet_prior():
    rng = np.random.default_rng(0)
    x = blobs()
    y = convolve(x, gaussian_psf()) + 0.01 * rng.standard_normal(x.shape)
    out = deconvolve(y, gaussian_psf(), method="fista", prior="wavelet", iterations=30)
    assert out.min() >= 0
    assert np.linalg.norm(out - x) < np.linalg.norm(y - x)


# ------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "magic"}, "unknown method"),
        ({"boundary": "mirror"}, "unknown boundary"),
        ({"iterations": 0}, "iterations must be >= 1"),
        ({"regularization": 0.3}, "below 1/\\(2d\\)"),
        ({"regularization": -1.0}, "regularization must be >= 0"),
        ({"regularization": "strong"}, "regularization must be"),
        ({"method": "rl", "regularization": 0.1}, "no regularization"),
        ({"prior": "wavelet"}, "only available with method=\"fista\""),
        ({"acceleration": "nesterov"}, "unknown acceleration"),
        ({"dtype": np.int32}, "dtype must be"),
        ({"background": -1.0}, "background must be >= 0"),
        ({"workers": 0}, "workers must be"),
    ],
)
def test_bad_options(kwargs, message):
    y = convolve(blobs(), gaussian_psf())
    with pytest.raises(ValueError, match=message):
        deconvolve(y, gaussian_psf(), **kwargs)


def test_bad_arrays():
    y = convolve(blobs(), gaussian_psf())
    psf = gaussian_psf()
    for bad in (np.nan, np.inf):
        image = y.copy()
        image[3, 3] = bad
        with pytest.raises(ValueError, match="image contains NaN or infinite"):
            deconvolve(image, psf)
        kernel = psf.copy()
        kernel[1, 1] = bad
        with pytest.raises(ValueError, match="psf contains NaN or infinite"):
            deconvolve(y, kernel)
    with pytest.raises(ValueError, match="psf must be non-negative"):
        deconvolve(y, psf - 0.01)
    with pytest.raises(ValueError, match="positive sum"):
        deconvolve(y, np.zeros((5, 5)))
    with pytest.raises(ValueError, match="larger than the image"):
        deconvolve(y[:8, :8], psf)
    with pytest.raises(ValueError, match="must be 2-D or 3-D"):
        deconvolve(y[0], psf[0])
    with pytest.raises(ValueError, match="psf must be a 2-D PSF"):
        deconvolve(y, psf[None])
    with pytest.raises(ValueError, match=r"psf\[0, 1\] must have a positive sum"):
        deconvolve(y, np.stack([np.stack([psf, np.zeros_like(psf)])]))
    with pytest.raises(ValueError, match="psf grid of 60x1 PSFs"):
        deconvolve(y, np.broadcast_to(psf, (60, 1) + psf.shape))
    with pytest.raises(TypeError, match="psf must be an array"):
        deconvolve(y, "gaussian")
    with pytest.raises(TypeError, match="callback must be callable"):
        deconvolve(y, psf, callback=3)


def test_mismatched_product_convolution():
    y = convolve(blobs(), gaussian_psf())
    operator = ProductConvolution(gaussian_psf()[None], np.ones((1, 30, 30)), boundary="periodic")
    with pytest.raises(ValueError, match="psf.weights must have the image shape"):
        deconvolve(y, operator)
    signed = ProductConvolution(np.stack([gaussian_psf(), gaussian_psf() - gaussian_psf().mean()]),
                                np.ones((2,) + y.shape), boundary="periodic")
    with pytest.raises(ValueError, match="non-negative blur"):
        deconvolve(y, signed, method="rl")
    assert np.all(np.isfinite(deconvolve(y, signed, method="wiener", iterations=5)))


# ------------------------------------------------------------ 3-D stacks


def gaussian_psf_3d(shape=(7, 7, 7), sigmas=(1.6, 1.0, 1.0)):
    axes = np.meshgrid(*[np.arange(n) - n // 2 for n in shape], indexing="ij")
    psf = np.exp(-sum(a**2 / (2 * s**2) for a, s in zip(axes, sigmas)))
    return psf / psf.sum()


def test_stack_beads_on_the_top_and_bottom_planes_are_restored_in_place():
    # Beads on the first and last planes of an 8x32x32 stack, half of their light above/below the stack:
    # the field extension on z restores them in place with their flux and nothing wraps around to the
    # other end; the periodic and zero models move them one plane inwards and lose a third of the flux.
    x = np.full((8, 32, 32), 0.01)
    x[0, 10, 10] = x[7, 22, 22] = 500.0
    psf = gaussian_psf_3d()
    y = convolve(x, psf, boundary="constant")
    out = deconvolve(y, psf, method="rl", boundary="extend", iterations=60)
    assert out[0, 10, 10] > 0.95 * 500 and out[7, 22, 22] > 0.95 * 500
    assert out[1:, 10, 10].max() < 0.1 and out[:7, 22, 22].max() < 0.1  # no ghost at the other end
    assert out.sum() == pytest.approx(x.sum(), rel=0.02)
    for boundary in ("periodic", "zero"):
        other = deconvolve(y, psf, method="rl", boundary=boundary, iterations=60)
        assert other[0, 10, 10] < 0.1 * 500 and other.sum() < 0.8 * x.sum()


@pytest.mark.parametrize("acceleration", [False, True])
def test_rl_conserves_flux_on_a_periodic_stack(acceleration):
    x = np.random.default_rng(1).random((8, 16, 16)) + 0.1
    y = convolve(x, gaussian_psf_3d((5, 5, 5)), boundary="periodic")
    seen = []
    deconvolve(y, gaussian_psf_3d((5, 5, 5)), method="rl", boundary="periodic", acceleration=acceleration,
               iterations=8, callback=lambda k, e: seen.append(e.sum()))
    np.testing.assert_allclose(seen, y.sum(), rtol=1e-10)


@pytest.mark.parametrize("method", ["rl", "rl-tv", "fista"])
def test_stack_defaults_restore_a_noisy_stack(method):
    # automatic stopping and weights are sane in 3-D: closer to the object than the data. Sparse beads on planes
    # too small for the Poisson-Gaussian noise fit (32 x 32: a Gaussian MAD estimate, 8.6 for a true 5-15) are where
    # the discrepancy stop is cautious: 4 iterations here, error ratio 0.95, where 25 would reach 0.66
    rng = np.random.default_rng(2)
    x = np.full((8, 32, 32), 5.0)
    x[2:6, 8:24:5, 8:24:5] = 200.0
    psf = gaussian_psf_3d()
    y = rng.poisson(convolve(x, psf)).astype(np.float32)
    out = deconvolve(y, psf, method=method)
    assert out.dtype == np.float32 and out.shape == x.shape and out.min() >= 0
    assert np.linalg.norm(out - x) < np.linalg.norm(y - x)
    beads = x > 100
    assert out[beads].mean() > 1.25 * y[beads].mean()  # sharper, not just smoother


def test_spacing_weights_the_tv_per_unit_length():
    rng = np.random.default_rng(3)
    x = np.full((8, 32, 32), 5.0)
    x[2:6, 8:24, 8:24] = 100.0
    psf = gaussian_psf_3d()
    y = (convolve(x, psf) + rng.normal(0, 2, x.shape)).clip(0)
    before = y.copy()
    for method, lam in (("rl-tv", 0.05), ("fista", 20.0)):
        iso = deconvolve(y, psf, method=method, regularization=lam, iterations=15)
        same = deconvolve(y, psf, method=method, regularization=lam, iterations=15, spacing=(0.2, 0.2, 0.2))
        np.testing.assert_array_equal(iso, same)  # only the ratios matter
        aniso = deconvolve(y, psf, method=method, regularization=lam, iterations=15, spacing=(0.6, 0.2, 0.2))
        # coarser z steps: z differences weigh less in the TV, so less smoothing along z
        assert np.abs(np.diff(aniso, axis=0)).sum() > np.abs(np.diff(iso, axis=0)).sum()
    np.testing.assert_array_equal(y, before)
    # plain RL has no prior: spacing changes nothing
    np.testing.assert_array_equal(deconvolve(y, psf, method="rl", iterations=5),
                                  deconvolve(y, psf, method="rl", iterations=5, spacing=(3, 1, 1)))


@pytest.mark.parametrize("spacing, error, message", [
    ((1, 1), ValueError, "one side per image axis"),
    ((1, -1, 1), ValueError, "positive and finite"),
    ((1, np.inf, 1), ValueError, "positive and finite"),
    ("1,1,1", TypeError, "spacing must be a sequence"),
    (1.0, TypeError, "spacing must be a sequence"),
    ((1, None, 1), TypeError, "spacing must be a sequence of 3 numbers"),
])
def test_bad_spacing(spacing, error, message):
    with pytest.raises(error, match=message):
        deconvolve(np.ones((8, 16, 16)), np.ones((3, 3, 3)), spacing=spacing)
