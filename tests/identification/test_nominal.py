"""estimate_psf / deblur with known optics: what is identified, what gets the nominal PSF of the optics."""

import numpy as np
import pytest

import psfkit
from psfkit.identification._nominal import stack_psf_shape

WIDEFIELD = psfkit.Optics(na=1.4, wavelength=0.52, pixel_size=0.1, z_step=0.3)
AIRYSCAN = psfkit.Optics(na=1.4, wavelength=0.52, pixel_size=0.043, modality="airyscan", excitation=0.488)


def test_a_stack_gets_the_nominal_3d_psf_of_its_optics():
    stack = np.random.default_rng(0).uniform(size=(12, 40, 40))
    psf, info = psfkit.estimate_psf(stack, optics=WIDEFIELD, size=15, return_coefficients=True)
    assert psf.shape == (11, 15, 15)  # the stack's depth, odd
    np.testing.assert_allclose(psf, psfkit.microscope_psf(WIDEFIELD, (11, 15, 15)), rtol=0, atol=0)
    assert info["source"] == "nominal" and not np.any(info["coefficients"])
    assert info["cutoff"] == pytest.approx(WIDEFIELD.cutoff_frequency)


def test_a_stack_needs_optics_with_a_z_step():
    stack = np.ones((5, 64, 64))
    with pytest.raises(ValueError, match="optics"):
        psfkit.estimate_psf(stack)
    flat = psfkit.Optics(na=1.4, wavelength=0.52, pixel_size=0.1)
    with pytest.raises(ValueError, match="z_step"):
        psfkit.estimate_psf(stack, optics=flat)
    with pytest.raises(ValueError, match="grid"):
        psfkit.estimate_psf(stack, optics=WIDEFIELD, grid=(1, 1))


def test_the_automatic_lateral_size_follows_the_light_cone_within_limits():
    # 11 planes of 0.3 um at NA 1.4 in oil: the cone reaches 5 * 0.3 * tan(asin(1.4 / 1.515)) = 3.9 um = 39 px,
    # capped at 32 px; a shallow stack keeps 4 Airy radii (4 * 0.61 * 0.52 / 1.4 / 0.1 = 9.06 -> 10 px)
    assert stack_psf_shape(WIDEFIELD, (12, 200, 200), None) == (11, 65, 65)
    assert stack_psf_shape(WIDEFIELD, (1, 200, 200), None) == (1, 21, 21)
    assert stack_psf_shape(WIDEFIELD, (12, 30, 200), None) == (11, 29, 65)  # within the image
    assert stack_psf_shape(WIDEFIELD, (12, 200, 200), 20) == (11, 21, 21)  # odd


def test_non_widefield_optics_get_the_in_focus_plane_of_their_modality():
    image = np.random.default_rng(1).uniform(size=(64, 64))
    psf, info = psfkit.estimate_psf(image, optics=AIRYSCAN, size=21, return_coefficients=True)
    np.testing.assert_array_equal(psf, psfkit.microscope_psf(AIRYSCAN, (21, 21)))
    assert info["source"] == "nominal"


def test_an_under_sampled_image_gets_the_pixel_integrated_airy_pattern():
    # the DAPI stack's optics: fc = 1.45 * 0.13 / 0.461 = 0.41 cycles/pixel, above Nyquist
    dapi = psfkit.Optics(na=1.45, wavelength=0.461, pixel_size=0.13, immersion_index=1.512)
    image = np.random.default_rng(2).uniform(size=(64, 64))
    psf = psfkit.estimate_psf(image, cutoff=dapi.cutoff_frequency, size=15)
    # in focus, the paraxial (Born-Wolf) PSF depends on fc alone
    np.testing.assert_allclose(psf, psfkit.microscope_psf(dapi, (15, 15), model="born-wolf"), atol=1e-9)
    point_sampled = psfkit.airy_psf(cutoff=dapi.cutoff_frequency, size=15)
    assert np.abs(psf - point_sampled).sum() > 0.1  # pixel integration matters this far above Nyquist
    optics_psf = psfkit.estimate_psf(image, optics=dapi, size=15)  # the non-paraxial scalar model
    np.testing.assert_array_equal(optics_psf, psfkit.microscope_psf(dapi, (15, 15)))


def test_widefield_optics_sampled_for_the_network_are_identified_at_their_cutoff():
    specimen = psfkit.data.random_specimen((128, 128), rng=4)
    image = psfkit.simulate_acquisition(specimen, psfkit.zernike_psf({4: 0.1}, cutoff=0.18, size=33), gain=500, rng=4)
    optics = psfkit.Optics(na=1.4, wavelength=0.52, pixel_size=0.18 * 0.52 / 1.4)
    a, info = psfkit.estimate_psf(image, optics=optics, refine=False, return_coefficients=True)
    b = psfkit.estimate_psf(image, cutoff=optics.cutoff_frequency, refine=False)
    np.testing.assert_array_equal(a, b)
    assert info["source"] == "identified"


def test_deblur_restores_a_widefield_stack_with_its_nominal_psf():
    rng = np.random.default_rng(3)
    specimen = np.zeros((16, 64, 64))
    index = (rng.integers(3, 13, 30), rng.integers(8, 56, 30), rng.integers(8, 56, 30))
    specimen[index] = rng.uniform(200, 400, 30)
    psf = psfkit.microscope_psf(WIDEFIELD, (15, 21, 21))
    image = psfkit.simulate_acquisition(specimen + 1, psf, gain=10.0, read_noise=0.05, rng=0)  # peaks ~150 photons
    before = image.copy()
    restored, used = psfkit.deblur(image, optics=WIDEFIELD, size=21, iterations=30)
    np.testing.assert_array_equal(image, before)  # input untouched
    assert restored.shape == image.shape and restored.dtype == np.float32
    assert used.shape == (15, 21, 21)
    # the points come back sharper: more of the flux at the true positions
    assert restored[index].sum() / restored.sum() > 5 * image[index].sum() / image.sum()


def test_deblur_refuses_the_2d_network_on_a_stack():
    with pytest.raises(ValueError, match="2-D only"):
        psfkit.deblur(np.ones((5, 64, 64)), optics=WIDEFIELD, method="unrolled")


def test_deblur_reports_what_it_did():
    # 3000 photons: sharper (decorrelation 3.8 -> 3.0 px after 4 iterations); at 300 the stop comes after 2
    # iterations, which denoise more than they sharpen (3.6 -> 3.8 px)
    image = psfkit.simulate_acquisition(
        psfkit.data.filaments((96, 96), rng=5), psfkit.microscope_psf(AIRYSCAN, (21, 21)), gain=3000, rng=5
    )
    restored, psf, info = psfkit.deblur(image, optics=AIRYSCAN, size=21, return_info=True)
    assert info["source"] == "nominal" and info["method"] == "rl-tv"
    assert 1 <= info["iterations"] < 100 and info["discrepancy"] <= 1.0  # stopped by the discrepancy principle
    before, after = info["resolution"]
    assert after < 0.9 * before  # sharper
    again, _ = psfkit.deblur(image, optics=AIRYSCAN, size=21)
    np.testing.assert_array_equal(again, restored)  # the report changes nothing
    _, _, fixed = psfkit.deblur(image, optics=AIRYSCAN, size=21, iterations=3, return_info=True)
    assert fixed["iterations"] == 3
