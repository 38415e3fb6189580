"""The image-free fit of Zernike coefficients (and fc) to a predicted MTF (psfkit.identification._mtf_fit)."""

import numpy as np
import pytest

import psfkit

torch = pytest.importorskip("torch")

from psfkit.identification._mtf_fit import _DISTINCT_DB, fit_to_mtf, hypotheses, spread_in_support  # noqa: E402
from psfkit.learned.mtf_net import MTF_FLOOR, WINDOW, full_plane  # noqa: E402
from psfkit.training.spectral_synthesis import mtf  # noqa: E402

NOLL = tuple(range(4, 12))
CASES = [(1, 0.18), (2, 0.15), (3, 0.22)]  # (seed, fc): Noll 4-11 coefficients U[-0.1, 0.1] waves


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny problems: see tests/conftest.py


def _exact(seed, fc):
    """The exact log10 MTF plane (centred, as the network predicts it), a constant spread and the true PSF."""
    theta = np.random.default_rng(seed).uniform(-0.1, 0.1, len(NOLL))
    plane = mtf(torch.from_numpy(theta)[None], torch.tensor([fc], dtype=torch.float64), WINDOW, indices=NOLL)
    mean = full_plane(torch.log10(plane + MTF_FLOOR))[0].numpy()
    return mean, np.full_like(mean, 0.05), psfkit.zernike_psf(theta, cutoff=fc, size=33, indices=NOLL)


def _snr_up_to_reflection(psf, truth):
    # the MTF cannot tell a PSF from its point reflection
    return max(psfkit.psf_snr(psf, truth), psfkit.psf_snr(psf[::-1, ::-1], truth))


@pytest.mark.parametrize("seed, fc", CASES)
def test_exact_mtf_determines_the_psf_with_a_known_cutoff(seed, fc):
    mean, spread, truth = _exact(seed, fc)
    thetas, fcs, losses = fit_to_mtf(mean, spread, fc, indices=NOLL)
    assert thetas.shape == (8, len(NOLL)) and np.all(fcs == fc) and np.all(np.diff(losses) >= 0)
    best, best_fc, weights = hypotheses(thetas, fcs, losses, indices=NOLL)
    psf = psfkit.zernike_psf(best[0], cutoff=float(best_fc[0]), size=33, indices=NOLL)
    # measured 74.0 / 76.7 / 74.7 dB (the Airy pattern: -2.1 / -0.3 / -0.1 dB)
    assert _snr_up_to_reflection(psf, truth) > 25


@pytest.mark.parametrize("seed, fc", CASES[:2])
def test_exact_mtf_determines_an_unknown_cutoff(seed, fc):
    mean, spread, truth = _exact(seed, fc)
    thetas, fcs, losses = fit_to_mtf(mean, spread, None, indices=NOLL)
    best, best_fc, _ = hypotheses(thetas, fcs, losses, indices=NOLL)
    assert best_fc[0] == pytest.approx(fc, rel=0.05)  # measured to 1e-4
    psf = psfkit.zernike_psf(best[0], cutoff=float(best_fc[0]), size=33, indices=NOLL)
    assert _snr_up_to_reflection(psf, truth) > 25  # measured 68.9 / 66.8 dB


def test_hypotheses_are_distinct_weighted_and_best_first():
    # a handful of unrelated optima, with two duplicates (the same PSF and its point reflection), losses shuffled
    rng = np.random.default_rng(5)
    base = rng.uniform(-0.12, 0.12, (4, len(NOLL)))
    odd = np.array([j in (7, 8, 9, 10) for j in NOLL])
    reflected = np.where(odd, -base[0], base[0])
    thetas = np.concatenate([base[:1], reflected[None], base[1:2], base[1:2] + 1e-4, base[2:]])
    losses = np.array([0.010, 0.0101, 0.012, 0.0125, 0.02, 0.05])
    fcs = np.full(len(thetas), 0.18)
    kept, kept_fc, weights = hypotheses(thetas, fcs, losses, indices=NOLL, count=4)
    assert len(kept) == 4 and kept_fc.shape == (4,) and weights.shape == (4,)
    np.testing.assert_array_equal(kept, thetas[[0, 2, 4, 5]])  # the duplicates are dropped, the order kept
    assert weights.sum() == pytest.approx(1.0)
    assert np.all(np.diff(weights) <= 0) and weights[0] > weights[-1]
    # exp(-(L - L_min) / L_min): an optimum worse by the best residual again weighs e^-1 of the best
    np.testing.assert_allclose(weights / weights[0], np.exp(-(losses[[0, 2, 4, 5]] - 0.01) / 0.01))
    psfs = psfkit.zernike_psf(kept, cutoff=0.18, size=33, indices=NOLL)
    for i in range(len(psfs)):
        for j in range(i):
            assert _snr_up_to_reflection(psfs[i], psfs[j]) <= _DISTINCT_DB


def test_hypotheses_of_a_real_fit_never_repeat_a_psf():
    mean, spread, _ = _exact(*CASES[0])
    # few iterations: the starts have not all converged to one optimum yet, so several hypotheses survive
    thetas, fcs, losses = fit_to_mtf(mean, spread, 0.18, indices=NOLL, iterations=20)
    kept, kept_fc, weights = hypotheses(thetas, fcs, losses, indices=NOLL)
    assert 1 <= len(kept) <= 3 and weights.sum() == pytest.approx(1.0) and weights[0] == weights.max()
    psfs = [psfkit.zernike_psf(t, cutoff=float(f), size=33, indices=NOLL) for t, f in zip(kept, kept_fc)]
    for i in range(len(psfs)):
        for j in range(i):
            assert _snr_up_to_reflection(psfs[i], psfs[j]) <= _DISTINCT_DB


def test_spread_in_support_of_a_constant_plane_is_the_constant():
    assert spread_in_support(np.full((WINDOW, WINDOW), 0.37), 0.18) == pytest.approx(0.37)
    # only the support (radius < 2 fc) counts
    plane = np.full((WINDOW, WINDOW), 5.0)
    f = np.fft.fftshift(np.fft.fftfreq(WINDOW))
    plane[np.hypot(f[:, None], f[None, :]) < 0.3] = 0.2
    assert spread_in_support(plane, 0.15) == pytest.approx(0.2)
