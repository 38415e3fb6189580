"""The no-reference support test and deblur's candidate choice (never worse than the input)."""

import numpy as np
import pytest

import psfkit
from psfkit.identification._consistency import support_consistency

SHARP_FC = 0.45  # nearly the whole band: detail up to 0.9 cycles/pixel (aliased into the grid)


def sharp_image(gain=3000, rng=0, shape=(192, 192)):
    """Filaments through a narrow pixel-integrated Airy PSF, Poisson-Gaussian noise."""
    return psfkit.simulate_acquisition(
        psfkit.data.filaments(shape, rng=rng), psfkit.airy_psf(cutoff=SHARP_FC, size=15), gain=gain, rng=rng
    )


def test_white_noise_refutes_no_psf():
    noise = np.random.default_rng(0).normal(10.0, 1.0, (256, 256))
    for fc in (0.05, 0.15, 0.3):
        check = support_consistency(noise, psfkit.airy_psf(cutoff=fc, size=33))
        assert not check["refuted"] and abs(check["z"]) < 4


def test_a_broad_psf_is_refuted_and_the_true_one_is_not():
    image = sharp_image()
    assert not support_consistency(image, psfkit.airy_psf(cutoff=SHARP_FC, size=15))["refuted"]
    broad = support_consistency(image, psfkit.airy_psf(cutoff=0.08, size=33))
    assert broad["refuted"] and broad["z"] > 10


def test_a_noiseless_image_does_not_refute_its_own_psf():
    # at high SNR the image shows detail far down the OTF's tail: the dead zone follows the noise level
    psf = psfkit.zernike_psf([0.1, -0.05], cutoff=0.15, size=33, indices=(4, 5))
    image = psfkit.simulate_acquisition(psfkit.data.random_specimen((192, 192), rng=1), psf, gain=1e6, rng=1)
    assert not support_consistency(image, psf)["refuted"]


def test_small_images_and_narrow_psfs_are_not_tested():
    assert support_consistency(np.ones((32, 200)), psfkit.airy_psf(cutoff=0.1, size=9))["z"] == 0.0
    # the PSF passes everything: no dead zone
    assert support_consistency(sharp_image(), np.pad([[1.0]], 2))["z"] == 0.0


def _estimate_returning(psf, cutoff):
    def fake(image, **kwargs):
        return psf, {"source": "identified", "cutoff": cutoff, "refined": False}

    return fake


def test_deblur_returns_the_input_when_no_candidate_is_consistent(monkeypatch):
    import psfkit.identification.estimate as estimate

    image = sharp_image()
    broad = psfkit.zernike_psf([0.3], cutoff=0.1, size=33, indices=(4,))
    monkeypatch.setattr(estimate, "_estimate_psf", _estimate_returning(broad, 0.1))
    with pytest.warns(UserWarning, match="returned unchanged"):
        restored, psf, info = psfkit.deblur(image, return_info=True)
    np.testing.assert_array_equal(restored, image)
    assert restored is not image and restored.dtype == np.float64
    assert info["candidate"] == "input" and info["confidence"] == "low" and info["consistency"]["refuted"]
    np.testing.assert_array_equal(psf, broad)  # the refuted estimate, for the user to see


def test_deblur_falls_back_to_the_aberration_free_psf(monkeypatch):
    import psfkit.identification.estimate as estimate

    # the image is blurred by an Airy pattern at fc 0.2; the "estimate" adds 0.6 waves of defocus: too broad
    truth = psfkit.airy_psf(cutoff=0.2, size=33)
    image = psfkit.simulate_acquisition(psfkit.data.filaments((192, 192), rng=2), truth, gain=3000, rng=2)
    defocused = psfkit.zernike_psf([0.6], cutoff=0.2, size=33, indices=(4,))
    assert support_consistency(image, defocused)["refuted"]
    monkeypatch.setattr(estimate, "_estimate_psf", _estimate_returning(defocused, 0.2))
    _, psf, info = psfkit.deblur(image, return_info=True)
    assert info["candidate"] == "milder" and info["method"] == "rl-tv"
    assert psfkit.psf_snr(psf, truth) > 20  # the aberration-free PSF at the identified fc
    _, _, known = psfkit.deblur(image, cutoff=0.2, return_info=True)
    assert known["candidate"] in ("identified", "nominal")  # a known fc: the nominal is the fallback's name


def test_deblur_keeps_a_consistent_estimate_and_the_stated_optics():
    optics = psfkit.Optics(na=1.4, wavelength=0.52, pixel_size=0.05, modality="airyscan", excitation=0.488)
    image = psfkit.simulate_acquisition(
        psfkit.data.filaments((128, 128), rng=3), psfkit.microscope_psf(optics, (21, 21)), gain=3000, rng=3
    )
    _, _, info = psfkit.deblur(image, optics=optics, size=21, return_info=True)
    assert info["candidate"] == "nominal" and not info["consistency"]["refuted"]
    assert info["confidence"] == "high"
