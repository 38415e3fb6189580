"""fit_psf: recovery of known pupils from synthetic noisy beads, validation, and the measured beads of shared/data."""

import dataclasses
import pathlib

import numpy as np
import pytest

from psfkit.optics import _bead
from psfkit.optics.fit import PSFFit, fit_psf
from psfkit.optics.microscope import Optics, microscope_psf

SHARED_DATA = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data"

# water-immersion optics sampled coarsely enough for small, fast stacks (fc = 0.2 cycles/pixel)
WATER = Optics(na=1.2, wavelength=0.6, pixel_size=0.1, z_step=0.25, immersion_index=1.33)


def shifted_bead(optics, shape, aberrations, shift, *, diameter=0.0, photons=3e4, background=10.0, offset=100.0,
                 seed=0, canvas=None):
    """A noisy bead made independently of fit_psf's engine: microscope_psf on a grid twice finer in z
    (every other plane: a half-plane axial offset), a Fourier shift laterally, a sphere by its transfer
    function, Poisson noise, background and camera offset, placed off-centre in a larger canvas."""
    nz, ny, nx = shape
    fine = dataclasses.replace(optics, z_step=optics.z_step / 2)
    # planes 1, 3, ... of a stack twice finer: the source at plane (nz - 1) / 2, between two planes for even nz
    big = microscope_psf(fine, (2 * nz, ny + 16, nx + 16), aberrations=aberrations)[1::2]
    fy = np.fft.fftfreq(big.shape[1])[:, None]
    fx = np.fft.fftfreq(big.shape[2])[None, :]
    spectrum = np.fft.fft2(big) * np.exp(-2j * np.pi * (fy * shift[0] + fx * shift[1]))
    if diameter:
        fz = np.fft.fftfreq(big.shape[0], optics.z_step)[:, None, None]
        f = np.sqrt(fz**2 + (fy / optics.pixel_size) ** 2 + (fx / optics.pixel_size) ** 2)
        spectrum = np.fft.fft(spectrum, axis=0) * _bead.sphere_transfer(f, diameter)[0]
        spectrum = np.fft.ifft(spectrum, axis=0)
    truth = np.clip(np.fft.ifft2(spectrum).real, 0, None)[:, 8:-8, 8:-8]
    rng = np.random.default_rng(seed)
    canvas = canvas or (nz, ny + 10, nx + 6)
    image = np.full(canvas, background)
    corner = (canvas[1] - ny - 2, 1)  # near the bottom-left, off-centre
    image[:, corner[0] : corner[0] + ny, corner[1] : corner[1] + nx] += photons * truth / truth.sum()
    stack = rng.poisson(image) + offset
    centre = ((nz - 1) / 2, corner[0] + ny // 2 + shift[0], corner[1] + nx // 2 + shift[1])
    return stack, centre


def test_recovers_aberrations_centre_background_and_na_from_a_noisy_off_centre_bead():
    truth = {5: 0.05, 7: -0.06, 11: 0.07}
    optics = dataclasses.replace(WATER, na=1.15)
    stack, centre = shifted_bead(optics, (10, 17, 17), truth, (0.3, -0.4))
    start = dataclasses.replace(optics, na=1.22)  # a nominal NA 6 % off
    original = stack.copy()
    psf, fit = fit_psf(stack, start, indices=(5, 6, 7, 8, 11), fit_na=True, max_iterations=15)
    assert np.array_equal(stack, original)  # the input is not modified
    assert isinstance(fit, PSFFit) and fit.success
    for j, value in truth.items():
        assert fit.aberrations[j] == pytest.approx(value, abs=0.015)
    assert abs(fit.aberrations[6]) < 0.015 and abs(fit.aberrations[8]) < 0.015
    assert fit.na == pytest.approx(1.15, abs=0.02) and fit.optics.na == fit.na
    assert fit.background == pytest.approx(110.0, rel=0.01)
    assert np.allclose(fit.centre, centre, atol=(0.15, 0.1, 0.1))
    assert fit.snr > 12  # shot noise bounds it: 3e4 photons
    # the returned PSF is the pupil's, centred, on the input's grid, and equals microscope_psf's
    assert psf.shape == stack.shape and psf.dtype == np.float64 and psf.sum() == pytest.approx(1.0)
    reference = microscope_psf(fit.optics, psf.shape, aberrations=fit.aberrations)
    assert np.abs(psf - reference).max() < 1e-3 * reference.max()


def test_fits_the_bead_size():
    stack, _ = shifted_bead(WATER, (10, 15, 15), {}, (0.0, 0.0), diameter=0.3, photons=1e5, canvas=(10, 19, 19))
    _, fit = fit_psf(stack, WATER, indices=(), bead_diameter="fit", shape=(5, 5, 5))
    assert fit.bead_diameter == pytest.approx(0.3, abs=0.04)
    _, point = fit_psf(stack, WATER, indices=(), shape=(5, 5, 5))  # a point source fits the broad bead worse
    assert point.snr < fit.snr - 1


def test_a_single_image_gives_coma_and_the_lateral_centre():
    optics = dataclasses.replace(WATER, z_step=None)
    truth = microscope_psf(WATER, (1, 40, 40), aberrations={8: 0.1})[0]
    image = np.random.default_rng(1).poisson(5e4 * truth + 3.0).astype(np.float32)
    psf, fit = fit_psf(image, optics, indices=(7, 8), shape=(21, 21))
    assert fit.aberrations[8] == pytest.approx(0.1, abs=0.01) and abs(fit.aberrations[7]) < 0.01
    assert np.allclose(fit.centre, (20, 20), atol=0.05) and len(fit.centre) == 2
    assert psf.shape == (21, 21) and psf.sum() == pytest.approx(1.0)


def test_known_background_and_gaussian_noise_and_fit_metadata():
    truth = microscope_psf(WATER, (7, 15, 15), aberrations={6: 0.05})
    stack = 1e3 * truth / truth.max() + 5.0
    psf, fit = fit_psf(stack, WATER, indices=(6,), background=5.0, noise="gaussian", window=(7, 11, 11))
    assert fit.background == 5.0 and fit.aberrations[6] == pytest.approx(0.05, abs=2e-3)
    assert fit.snr > 40 and fit.residual < 0.01
    assert fit.window == (slice(0, 7), slice(2, 13), slice(2, 13))
    assert all(isinstance(s, slice) for s in fit.region)
    with pytest.raises(TypeError):
        fit.aberrations[6] = 0.0  # read-only
    with pytest.raises(dataclasses.FrozenInstanceError):
        fit.na = 1.0


def test_engine_matches_microscope_psf():
    aberrations = {5: 0.05, 8: -0.05, 11: 0.06}
    indices, c = tuple(aberrations), np.array(list(aberrations.values()))
    sheet = dataclasses.replace(WATER, modality="lightsheet", sheet_thickness=0.8)
    confocal = Optics(na=1.3, wavelength=0.52, pixel_size=0.05, z_step=0.15, modality="confocal", excitation=0.488)
    for optics, shape, oversampling in ((WATER, (9, 16, 15), 4), (sheet, (7, 15, 15), 3), (confocal, (5, 17, 17), 1)):
        engine = _bead.BeadModel(optics, "scalar", shape, indices, oversampling=oversampling, bead_reach=0.0,
                                 z_reach=(shape[0] // 2,) * 2, slope=20.0)
        image, _ = engine.image(c, optics.na, tuple(n // 2 for n in shape), 0.0, optics.sheet_thickness)
        reference = microscope_psf(optics, shape, aberrations=aberrations, oversampling=oversampling)
        assert np.abs(image / image.sum() - reference).max() < 2e-3 * reference.max(), optics.modality


def test_engine_derivatives_match_finite_differences():
    optics = dataclasses.replace(WATER, modality="lightsheet", sheet_thickness=0.9)
    engine = _bead.BeadModel(optics, "scalar", (5, 9, 9), (6, 7), oversampling=2, bead_reach=0.3,
                             z_reach=(0, 4), slope=10.0)
    c, na, centre, d, sheet = np.array([0.04, -0.03]), 1.2, (2.2, 4.3, 3.8), 0.2, 0.9
    image, jac = engine.image(c, na, centre, d, sheet, derivatives=True, na_step=1e-6)

    def numeric(**change):
        args = dict(c=c, na=na, centre=np.array(centre), d2=d * d, sheet=sheet)
        plus, minus = dict(args), dict(args)
        (key, (index, h)), = change.items()
        for sign, values in ((1, plus), (-1, minus)):
            value = np.array(values[key], dtype=float)
            if index is None:
                value = value + sign * h
            else:
                value[index] += sign * h
            values[key] = value
        f = [engine.image(v["c"], v["na"], tuple(v["centre"]), np.sqrt(v["d2"]), v["sheet"])[0] for v in (plus, minus)]
        return (f[0] - f[1]) / (2 * h)

    scale = np.abs(image).max()
    checks = [(jac["coefficients"][1], numeric(c=(1, 1e-5))), (jac["centre"][0], numeric(centre=(0, 1e-4))),
              (jac["centre"][2], numeric(centre=(2, 1e-4))), (jac["na"], numeric(na=(None, 1e-6))),
              (jac["diameter_sq"], numeric(d2=(None, 1e-5))), (jac["sheet"], numeric(sheet=(None, 1e-5)))]
    for analytic, reference in checks:
        assert np.abs(analytic - reference).max() < 1e-4 * scale * max(1.0, np.abs(reference).max() / scale)


@pytest.mark.parametrize(
    ("stack", "kwargs", "error", "message"),
    [
        (np.zeros(9), {}, ValueError, "bead_stack must be 2-D or 3-D"),
        (np.zeros((2, 2, 9, 9)), {}, ValueError, "bead_stack must be 2-D or 3-D"),
        (np.zeros((0, 9)), {}, ValueError, "bead_stack must have at least"),
        (np.full((9, 9), np.nan), {}, ValueError, "bead_stack contains NaN"),
        (np.zeros((3, 9)), {}, ValueError, "at least 5 x 5"),
        (np.ones((9, 9)), {}, ValueError, "bead_stack is constant"),
        ("bead", {}, TypeError, "bead_stack must be an array"),
        (np.ones((9, 9)), {"indices": (2, 5)}, ValueError, "tip/tilt"),
        (np.ones((9, 9)), {"indices": (5, 5)}, ValueError, "must not repeat"),
        (np.ones((9, 9)), {"bead_diameter": "big"}, ValueError, "bead_diameter must be"),
        (np.ones((9, 9)), {"bead_diameter": -0.1}, ValueError, "bead_diameter must be >= 0"),
        (np.ones((9, 9)), {"background": "auto"}, ValueError, "background must be 'fit'"),
        (np.ones((9, 9)), {"background": [1.0]}, TypeError, "background must be 'fit' or a real"),
        (np.ones((9, 9)), {"noise": "laplace"}, ValueError, "unknown noise"),
        (np.ones((9, 9)), {"model": "vectorial"}, ValueError, "vectorial"),
        (np.ones((9, 9)), {"model": "paraxial"}, ValueError, "unknown model"),
        (np.ones((9, 9)), {"fit_na": 1}, TypeError, "fit_na must be True or False"),
        (np.ones((9, 9)), {"fit_sheet": True}, ValueError, "fit_sheet=True needs a light-sheet"),
        (np.ones((9, 9)), {"window": (5, 5, 5)}, TypeError, "window must be a tuple of 2"),
        (np.ones((9, 9)), {"window": (3, 5)}, ValueError, "window must be >= 5"),
        (np.ones((9, 9)), {"shape": (3, 9, 9)}, ValueError, "shape must have 2 entries"),
        (np.ones((9, 9)), {"max_iterations": 0}, ValueError, "max_iterations must be >= 1"),
    ],
)
def test_input_validation(stack, kwargs, error, message):
    with pytest.raises(error, match=message):
        fit_psf(stack, WATER, **kwargs)


def test_optics_validation():
    with pytest.raises(TypeError, match="optics must be a psfkit Optics"):
        fit_psf(np.ones((9, 9)), {"na": 1.2})
    with pytest.raises(ValueError, match="optics.z_step is needed"):
        fit_psf(np.ones((5, 9, 9)), dataclasses.replace(WATER, z_step=None))
    airyscan = Optics(na=1.4, wavelength=0.52, pixel_size=0.04, modality="airyscan", excitation=0.488)
    with pytest.raises(ValueError, match="Airyscan"):
        fit_psf(np.ones((9, 9)), airyscan)
    with pytest.raises(ValueError, match="pupil must fit the pixel band"):
        fit_psf(np.ones((9, 9)), dataclasses.replace(WATER, pixel_size=0.3))


# --------------------------------------------------------------------------- measured beads (shared/data)

LLSM = SHARED_DATA / "pycudadecon_llsm_bead_psf" / "psf.tif"
MPICBG = SHARED_DATA / "mpicbg_confocal_beads" / "psf_beads_averaged_45cube.tif"


# SNR (dB) of the reduced fits below on this data, less 2 dB: a regression of the model or the fit fails
SNR_FLOOR = {"llsm": 16.2 - 2.0, "mpicbg": 11.2 - 2.0}


@pytest.mark.skipif(not LLSM.is_file(), reason="needs ../shared/data")
def test_llsm_bead_snr_floor():
    tifffile = pytest.importorskip("tifffile")
    stack = tifffile.imread(LLSM)
    original = stack.copy()
    optics = Optics(na=1.1, wavelength=0.52, pixel_size=0.1011, z_step=0.1, immersion_index=1.333,
                    modality="lightsheet", sheet_thickness=1.0)
    # a small window, two terms, the README's background and few iterations keep the test fast;
    # benchmarks/bench_fit_psf.py runs the full fit (19.7 dB)
    psf, fit = fit_psf(stack, optics, indices=(8, 11), fit_na=True, fit_sheet=True, background=142.0,
                       noise="gaussian", window=(29, 17, 17), shape=(29, 17, 17), max_iterations=8)
    assert np.array_equal(stack, original)
    assert fit.snr > SNR_FLOOR["llsm"]
    assert 0.8 < fit.na < 1.2 and 0.5 < fit.sheet_thickness < 1.5
    assert np.allclose(fit.centre, (29.9, 71.2, 64.4), atol=0.3)
    assert psf.shape == (29, 17, 17) and np.unravel_index(psf.argmax(), psf.shape) == (14, 8, 8)


@pytest.mark.skipif(not MPICBG.is_file(), reason="needs ../shared/data")
def test_mpicbg_averaged_confocal_bead_snr_floor():
    tifffile = pytest.importorskip("tifffile")
    stack = tifffile.imread(MPICBG)
    optics = Optics(na=1.4, wavelength=0.52, pixel_size=0.02249, z_step=0.125, modality="confocal", excitation=0.488)
    # the full fit (bench_fit_psf.py: 11 terms, bead size) reaches 15.1 dB
    _, fit = fit_psf(stack, optics, indices=(6, 11), fit_na=True, noise="gaussian", window=(17, 31, 31),
                     shape=(9, 9, 9), max_iterations=6)
    assert fit.snr > SNR_FLOOR["mpicbg"]
    assert 1.0 < fit.na < optics.immersion_index
    assert fit.optics.pinhole == pytest.approx(fit.na / 1.4)  # the same physical pinhole, in AU of the fitted NA
