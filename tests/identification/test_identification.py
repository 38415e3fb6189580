"""estimate_psf: the bundled identification network, end to end on CPU."""

import numpy as np
import pytest

import psfkit
from psfkit import data

torch = pytest.importorskip("torch")
NOLL = tuple(range(4, 12))


@pytest.fixture(scope="module")
def case():
    rng = np.random.default_rng(2024)
    theta = np.array([0.12, -0.08, 0.05, 0.0, 0.0, 0.03, -0.02, 0.04])
    psf = psfkit.zernike_psf(theta, cutoff=0.18, size=33)
    specimen = data.random_specimen((256, 256), rng=rng)
    image = psfkit.simulate_acquisition(specimen, psf, gain=2000.0, read_noise=0.005, bits=16, rng=rng)
    return image, psf


def test_global_estimate_is_a_psf(case):
    image, _ = case
    psf = psfkit.estimate_psf(image, cutoff=0.18, refine=False)
    assert psf.shape == (33, 33) and psf.dtype == np.float64
    assert psf.min() >= 0 and psf.sum() == pytest.approx(1.0)


def test_estimate_beats_the_image_blind_floors(case):
    # the aberration-free Airy PSF at the true fc is what "no identification" gives
    image, truth = case
    airy = psfkit.psf_snr(psfkit.airy_psf(cutoff=0.18, size=33), truth)
    known = psfkit.psf_snr(psfkit.estimate_psf(image, cutoff=0.18, refine=False), truth, align=True)
    unknown = psfkit.psf_snr(psfkit.estimate_psf(image, refine=False), truth, align=True)
    assert known > airy + 3
    assert unknown > airy + 1


def test_deterministic_and_input_not_modified(case):
    image, _ = case
    copy = image.copy()
    a = psfkit.estimate_psf(image, refine=False)
    b = psfkit.estimate_psf(image, refine=False)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(image, copy)


def test_raw_uint16_with_offset_and_scale_gives_the_same_psf(case):
    image, _ = case
    scaled = image / image.max() * 30000
    raw = np.round(scaled + 400).astype(np.uint16)  # camera baseline + 16-bit counts
    a = psfkit.estimate_psf(scaled, cutoff=0.18, refine=False)
    b = psfkit.estimate_psf(raw, cutoff=0.18, refine=False)
    assert psfkit.psf_snr(b, a) > 25


def test_return_coefficients_and_size(case):
    image, _ = case
    psf, info = psfkit.estimate_psf(image, cutoff=0.18, size=25, refine=False, return_coefficients=True)
    assert psf.shape == (25, 25)
    assert info["noll"] == NOLL and info["coefficients"].shape == (8,)
    assert info["cutoff"] == pytest.approx(0.18)
    np.testing.assert_allclose(psf, psfkit.zernike_psf(info["coefficients"], cutoff=0.18, size=25, indices=NOLL))


def test_unknown_cutoff_is_estimated_in_range(case):
    image, _ = case
    _, info = psfkit.estimate_psf(image, refine=False, return_coefficients=True)
    assert 0.1 <= info["cutoff"] <= 0.27


def test_grid_map_shapes_and_feeds_deconvolve(case):
    image, _ = case
    psf_map, info = psfkit.estimate_psf(image, grid=(2, 3), return_coefficients=True)
    assert psf_map.shape == (2, 3, 33, 33)
    np.testing.assert_allclose(psf_map.sum(axis=(2, 3)), 1.0)
    assert info["coefficients"].shape == (2, 3, 8) and info["cutoff"].shape == (2, 3)
    restored = psfkit.deconvolve(image, psf_map, iterations=3)
    assert restored.shape == image.shape


def test_default_refines_a_strongly_aberrated_global_estimate_only(case, monkeypatch):
    # refine=None refines a global estimate exactly when the network's largest coefficient exceeds the
    # threshold (the network alone does better on mild aberrations); a map is never refined by default
    import psfkit.identification._refine as refine_module
    import psfkit.identification.estimate as identification

    calls = []

    def spy(image, coefficients, cutoff, **kwargs):
        calls.append(kwargs)
        return np.asarray(coefficients)[None], np.array([cutoff]), np.ones(1), True

    monkeypatch.setattr(refine_module, "refine", spy)
    image, _ = case
    _, network = psfkit.estimate_psf(image, cutoff=0.18, refine=False, return_coefficients=True)
    largest = float(np.max(np.abs(network["coefficients"])))
    assert calls == []
    for threshold, refined in ((0.5 * largest, True), (2 * largest, False)):
        monkeypatch.setattr(identification, "_REFINE_ABOVE", threshold)
        assert identification.refines_by_default(network["coefficients"]) is refined
        _, info = psfkit.estimate_psf(image, cutoff=0.18, return_coefficients=True)
        assert info["refined"] is refined and len(calls) == int(refined)
        psfkit.estimate_psf(image, cutoff=0.18, grid=(2, 2))
        assert len(calls) == int(refined)
        calls.clear()
    psfkit.estimate_psf(image, cutoff=0.18, grid=(2, 2), refine=True)
    psfkit.estimate_psf(image, cutoff=0.18, refine=True)
    assert len(calls) == 2


def test_default_threshold_separates_mild_from_strong_aberrations():
    from psfkit.identification.estimate import _REFINE_ABOVE, refines_by_default

    assert not refines_by_default(np.full(8, 0.5 * _REFINE_ABOVE))
    assert not refines_by_default(np.zeros(8))
    mixed = np.zeros(8)
    mixed[5] = -1.5 * _REFINE_ABOVE  # the sign does not matter, the largest magnitude does
    assert refines_by_default(mixed)


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"image": np.ones((32, 200))}, ValueError),  # smaller than one window
        ({"image": np.ones((3, 100, 100))}, ValueError),
        ({"image": np.full((100, 100), np.nan)}, ValueError),
        ({"cutoff": 0.4}, ValueError),  # under-sampled
        ({"cutoff": 0.03}, ValueError),  # over-sampled 6 x: the image would need 384 pixels a side
        ({"cutoff": -0.2}, ValueError),
        ({"max_amplitude": 0.0}, ValueError),
        ({"grid": (0, 2)}, ValueError),
        ({"grid": 4}, (ValueError, TypeError)),
        ({"size": 0}, ValueError),
        ({"device": "tpu"}, ValueError),
    ],
)
def test_bad_input(case, kwargs, error):
    image, _ = case
    kwargs = {"image": image, **kwargs}
    with pytest.raises(error):
        psfkit.estimate_psf(kwargs.pop("image"), **kwargs)


def test_a_rejected_refinement_warns_and_returns_the_network_estimate():
    # the bundled real image breaks the model: its fit runs to the 0.25-wave bound and is rejected; the user
    # must be told that the estimate is unverified, not silently handed the network's guess
    import warnings

    image = data.celegans()
    network = psfkit.estimate_psf(image, refine=False)
    with pytest.warns(UserWarning, match="rejected its fit") as record:
        psf, info = psfkit.estimate_psf(image, refine=True, return_coefficients=True)
    assert len(record) == 1 and f"airy_psf(cutoff={info['cutoff']:.3g})" in str(record[0].message)
    assert info["refined"] is False
    np.testing.assert_allclose(psf, network, atol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # without the refinement there is nothing to warn about
        psfkit.estimate_psf(image, refine=False)


def test_refinement_sharpens_a_clean_estimate():
    # noiseless, fc known: the fit must get far closer than the start
    rng = np.random.default_rng(7)
    theta = np.array([0.1, 0.06, -0.05, 0.04, 0.0, 0.0, 0.03, 0.02])
    truth = psfkit.zernike_psf(theta, cutoff=0.2, size=33)
    image = psfkit.simulate_acquisition(data.cells((256, 256), rng=rng), truth, bits=16, rng=rng)
    from psfkit.identification._refine import refine

    start = np.zeros(8)
    fitted, fc, weights, kept = refine(image, start, 0.2, indices=NOLL)
    assert kept and np.all(fc == 0.2)  # known fc is kept
    assert weights[0] == weights.max() and weights.sum() == pytest.approx(1.0)
    fitted = fitted[0]
    before = psfkit.psf_snr(psfkit.zernike_psf(start, cutoff=0.2, size=33), truth, align=True)
    after = psfkit.psf_snr(psfkit.zernike_psf(fitted, cutoff=0.2, size=33), truth, align=True)
    assert after > before + 5


def test_expected_periodogram_matches_a_simulated_one():
    # white specimen blurred by h plus white noise: the Welch periodogram must match the model,
    # window leakage included, ring by ring
    from psfkit.identification._spectral_fit import WhittleModel, _radius

    rng = np.random.default_rng(3)
    theta = np.array([0.12, -0.05, 0.04, 0.03, 0.0, 0.02, 0.0, 0.03])
    h = psfkit.zernike_psf(theta, cutoff=0.15, size=33)
    noise = 0.02
    image = psfkit.convolve(rng.standard_normal((768, 768)), h, boundary="periodic") + noise * rng.standard_normal((768, 768))
    model = WhittleModel(image, 0.15, indices=NOLL)
    variance = image.var()
    expected = model.expected(
        torch.from_numpy(theta)[None], torch.tensor([[-np.log(variance), 0.0, 0.0]], dtype=torch.float64),
        torch.tensor([np.log(noise**2 / variance)], dtype=torch.float64), torch.tensor([0.15], dtype=torch.float64),
    )[0].numpy()
    measured = model.periodogram.numpy()
    rings = np.round(_radius(64).numpy() * 64).astype(int)
    for ring in range(2, 40):
        inside = rings == ring
        ratio = measured[inside].mean() / expected[inside].mean()
        assert abs(ratio - 1) < 0.08, (ring, ratio)


def test_refinement_identifies_noisy_psfs():
    # moderate Poisson-Gaussian noise, three specimens: the likelihood fit must land far closer to
    # the truth than the network (single images can swap between near-equal optima, hence a mean)
    rng = np.random.default_rng(4)
    refined, network = [], []
    for kind in ("dead_leaves", "points", "cells"):
        truth = psfkit.zernike_psf(rng.uniform(-0.12, 0.12, 8), cutoff=0.18, size=33)
        image = psfkit.simulate_acquisition(getattr(data, kind)((256, 256), rng=rng), truth, gain=500, read_noise=0.01, rng=rng)
        refined.append(psfkit.psf_snr(psfkit.estimate_psf(image, cutoff=0.18, refine=True), truth))
        network.append(psfkit.psf_snr(psfkit.estimate_psf(image, cutoff=0.18, refine=False), truth))
    # measured: 15.1 dB mean (25.6 / 8.4 / 11.4), network 7.2 dB
    assert np.mean(refined) > 11
    assert np.mean(refined) > np.mean(network) + 4


def test_refinement_fits_an_unknown_cutoff_under_noise():
    # fc unknown at moderate noise: the likelihood fit moves fc from the network's guess towards the truth
    rng = np.random.default_rng(7)
    refined_error, network_error, refined_snr, network_snr = [], [], [], []
    for kind, fc in (("dead_leaves", 0.14), ("points", 0.23), ("cells", 0.15)):
        truth = psfkit.zernike_psf(rng.uniform(-0.12, 0.12, 8), cutoff=fc, size=33)
        image = psfkit.simulate_acquisition(getattr(data, kind)((256, 256), rng=rng), truth, gain=500, read_noise=0.01, rng=rng)
        psf, info = psfkit.estimate_psf(image, refine=True, return_coefficients=True)
        start, start_info = psfkit.estimate_psf(image, refine=False, return_coefficients=True)
        refined_error.append(abs(info["cutoff"] / fc - 1))
        network_error.append(abs(start_info["cutoff"] / fc - 1))
        refined_snr.append(psfkit.psf_snr(psf, truth))
        network_snr.append(psfkit.psf_snr(start, truth))
    # measured: fc error 6.9 % (network 12.6 %), PSF SNR 13.5 dB (network 5.2); a fit that keeps the network's fc fails
    assert np.mean(refined_error) < 0.75 * np.mean(network_error)
    assert np.mean(refined_snr) > np.mean(network_snr) + 4


def test_candidate_weights_follow_the_likelihood():
    from psfkit.identification._spectral_fit import candidate_weights

    n = 2000
    weights = candidate_weights([0.5 + 1 / n, 0.5, 0.5 + 2 / n, 0.5 + 1], n)
    np.testing.assert_allclose(weights, np.array([np.exp(-1), 1, np.exp(-2), 0]) / (1 + np.exp(-1) + np.exp(-2)), atol=1e-12)


def test_specimen_spectrum_model_stays_finite_under_strong_noise():
    # under strong noise the least-squares start of the log specimen spectrum used to come out
    # convex, which overflowed at the lowest frequencies and made the expected periodogram negative
    from psfkit.identification._spectral_fit import WhittleModel, _fit

    rng = np.random.default_rng(0)
    theta = rng.uniform(-0.15, 0.15, 8)
    image = psfkit.simulate_acquisition(
        data.cells((256, 256), rng=rng), psfkit.zernike_psf(theta, cutoff=0.15, size=33), gain=50.0, read_noise=0.05, rng=rng
    )
    model = WhittleModel(image, 0.15, indices=NOLL)
    starts = torch.from_numpy(np.concatenate([theta[None], rng.uniform(-0.15, 0.15, (7, 8))]))
    spectrum, log_noise = model.initial_nuisances(starts)
    fc = torch.full((8,), 0.15, dtype=torch.float64)
    expected = model.expected(starts, spectrum, log_noise, fc)
    assert torch.all(spectrum[:, 2] <= 0)
    assert torch.all(torch.isfinite(expected)) and torch.all(expected >= 0.99 * torch.exp(log_noise)[:, None, None])
    params, loss = _fit(model, [starts, spectrum, log_noise, fc], iterations=20, learning_rate=0.01, bound=0.25, fit_cutoff=False)
    assert torch.all(params[1][:, 2] <= 0) and torch.all(loss.abs() < 10)


def test_refinement_is_deterministic_and_bounded(case):
    image, _ = case
    first, info = psfkit.estimate_psf(image, cutoff=0.18, max_amplitude=0.05, refine=True, return_coefficients=True)
    again = psfkit.estimate_psf(image, cutoff=0.18, max_amplitude=0.05, refine=True)
    assert info["refined"] is True
    np.testing.assert_allclose(first, again, rtol=1e-9, atol=1e-15)  # up to threaded reductions' round-off
    assert np.all(np.abs(info["coefficients"]) <= 0.05 + 1e-12)


def test_refine_option_is_validated(case):
    image, _ = case
    with pytest.raises(ValueError, match="refine"):
        psfkit.estimate_psf(image, refine="yes")


def test_dct_downsampling_maps_a_psf_to_the_same_psf_at_a_higher_cutoff():
    """The pupil does not depend on the pixel: downsampling by 3 multiplies fc by 3, coefficients unchanged."""
    from psfkit.identification.resampling import dct_downsample, oversampling_factor

    theta = {4: 0.1, 5: -0.06, 8: 0.05}
    fine = psfkit.zernike_psf(theta, cutoff=0.06, size=99)  # block (16, 16) of 3 x 3 holds the centre (49, 49)
    coarse = dct_downsample(fine, 3)
    assert coarse.shape == (33, 33)
    assert coarse.mean() == pytest.approx(fine.mean())
    expected = psfkit.zernike_psf(theta, cutoff=0.18, size=33)
    assert psfkit.psf_snr(coarse / coarse.sum(), expected) > 30
    assert [oversampling_factor(fc) for fc in (0.2, 0.125, 0.1, 0.08, 0.05)] == [1, 1, 2, 2, 4]
    assert all(0.125 <= fc * oversampling_factor(fc) <= 0.25 for fc in np.linspace(0.02, 0.125, 200))


def test_known_cutoff_below_the_training_range_is_identified_on_a_downsampled_image():
    rng = np.random.default_rng(31)
    fc = 0.09  # identified at 2 x 0.09 = 0.18
    truth = psfkit.zernike_psf([0.1, -0.07, 0.04, 0.0, 0.03, 0.0, -0.03, 0.02], cutoff=fc, size=45, indices=NOLL)
    image = psfkit.simulate_acquisition(data.random_specimen((256, 256), rng=rng), truth, gain=2000.0, read_noise=0.005, bits=16, rng=rng)
    psf, info = psfkit.estimate_psf(image, cutoff=fc, size=45, refine=True, return_coefficients=True)
    assert info["cutoff"] == fc and psf.shape == (45, 45)
    np.testing.assert_allclose(psf.sum(), 1.0)
    floor = psfkit.psf_snr(psfkit.zernike_psf(rng.uniform(-0.15, 0.15, (256, 8)), cutoff=fc, size=45).mean(0), truth)
    assert psfkit.psf_snr(psf, truth) > floor + 4  # measured 8.4 dB against a 3.8 dB floor
    local = psfkit.estimate_psf(image, cutoff=fc, size=45, grid=(2, 2))
    assert local.shape == (2, 2, 45, 45)
