"""Point-reflection choice for Noll 4-15 estimates (psfkit.identification._orientation)."""

import numpy as np
import pytest

import psfkit
from psfkit import data

pytest.importorskip("torch")

from psfkit.identification._orientation import choose_orientation, odd_terms  # noqa: E402

NOLL = tuple(range(4, 16))


def test_odd_terms_are_the_comas_and_trefoils():
    odd = odd_terms(range(4, 16))
    assert odd.dtype == bool and odd.shape == (12,)
    assert [j for j, o in zip(range(4, 16), odd) if o] == [7, 8, 9, 10]
    # negating exactly those terms point-reflects the PSF
    theta = np.random.default_rng(0).uniform(-0.1, 0.1, 12)
    psf = psfkit.zernike_psf(theta, cutoff=0.2, size=33, indices=NOLL)
    reflected = psfkit.zernike_psf(np.where(odd, -theta, theta), cutoff=0.2, size=33, indices=NOLL)
    np.testing.assert_allclose(reflected, psf[::-1, ::-1], atol=1e-12)


@pytest.fixture(scope="module")
def oriented_case():
    # strong comas and trefoils, and Noll 12-15 terms, which only the 12-term model has
    theta = np.array([0.05, -0.03, 0.02, 0.12, -0.08, 0.07, 0.05, 0.04, 0.03, -0.05, 0.04, 0.02])
    truth = psfkit.zernike_psf(theta, cutoff=0.18, size=33, indices=NOLL)
    rng = np.random.default_rng(11)
    image = psfkit.simulate_acquisition(data.cells((256, 256), rng=rng), truth, bits=16, rng=rng)
    return image, theta


def test_choose_orientation_with_twelve_terms(oriented_case):
    image, theta = oriented_case
    reflected = np.where(odd_terms(NOLL), -theta, theta)
    for candidate in (theta, reflected):  # whichever variant it is given, it returns the true one
        chosen = choose_orientation(image, candidate, 0.18, indices=NOLL)
        assert chosen.shape == (12,)
        np.testing.assert_array_equal(chosen, theta)
    # a batch of candidates is oriented one by one
    batch = choose_orientation(image, np.stack([reflected, theta]), np.array([0.18, 0.18]), indices=NOLL)
    assert batch.shape == (2, 12)
    np.testing.assert_array_equal(batch, np.stack([theta, theta]))


def test_choose_orientation_leaves_even_only_estimates_alone(oriented_case):
    image, theta = oriented_case
    even = np.where(odd_terms(NOLL), 0.0, theta)  # no odd term: the two variants are the same PSF
    np.testing.assert_array_equal(choose_orientation(image, even, 0.18, indices=NOLL), even)
