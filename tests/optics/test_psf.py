import pathlib
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import j1

from psfkit.metrics import psf_snr
from psfkit.optics.psf import airy_psf, cutoff_frequency, zernike_psf
from psfkit.optics.zernike import noll_to_nm

RNG = np.random.default_rng(20240607)
THETAS = RNG.uniform(-0.15, 0.15, size=(5, 8))  # Noll 4..11, the papers' amplitude range


def relative_l2(estimate, reference):
    return np.linalg.norm(estimate - reference) / np.linalg.norm(reference)


def flip_parity(coefficients, parity):
    """Negate the terms whose azimuthal frequency m has the given parity (0: even, 1: odd)."""
    return {j: (-a if noll_to_nm(j)[1] % 2 == parity else a) for j, a in coefficients.items()}


def rotate_coefficients(coefficients, angle):
    """Coefficients of phi(rho, theta - angle), i.e. the aberration rotated by +angle in (x, y)."""
    rotated = {}
    for j, a in coefficients.items():
        n, m = noll_to_nm(j)
        if m == 0:
            rotated[j] = rotated.get(j, 0.0) + a
            continue
        partner = next(k for k in (j - 1, j + 1) if k >= 1 and noll_to_nm(k) == (n, -m))
        cos_j, sin_j = (j, partner) if m > 0 else (partner, j)
        c, s = (a, 0.0) if m > 0 else (0.0, a)
        ma = abs(m) * angle
        rotated[cos_j] = rotated.get(cos_j, 0.0) + c * np.cos(ma) - s * np.sin(ma)
        rotated[sin_j] = rotated.get(sin_j, 0.0) + c * np.sin(ma) + s * np.cos(ma)
    return rotated


# ----------------------------------------------------------------------------- accuracy


@pytest.mark.parametrize("cutoff", [0.1, 0.15, 0.2, 0.25])
@pytest.mark.parametrize("size", [32, 33, 64])
def test_aberration_free_psf_is_the_airy_pattern(cutoff, size):
    # requirement: relative L2 < 1e-3 for fc in [0.1, 0.25]; the band-limited
    # pupil reaches ~1e-5 (a hard pupil edge on a 1/N grid gives ~1e-2)
    psf = zernike_psf(cutoff=cutoff, size=size)
    assert relative_l2(psf, airy_psf(cutoff=cutoff, size=size)) < 1e-4


@pytest.mark.parametrize("cutoff", [0.35, 0.5])
def test_airy_accuracy_holds_for_undersampled_cutoffs(cutoff):
    psf = zernike_psf(cutoff=cutoff, size=48)
    assert relative_l2(psf, airy_psf(cutoff=cutoff, size=48)) < 1e-4


def test_airy_psf_closed_form():
    psf = airy_psf(cutoff=0.2, size=21)
    r = np.hypot(*np.meshgrid(np.arange(21) - 10, np.arange(21) - 10))
    z = 2 * np.pi * 0.2 * r[10, 13]
    assert psf[10, 13] / psf[10, 10] == pytest.approx((2 * j1(z) / z) ** 2, rel=1e-12)
    assert psf.sum() == pytest.approx(1.0, abs=1e-12)
    assert psf.argmax() == 10 * 21 + 10
    assert airy_psf(cutoff=0.2, size=21, dtype=np.float32).dtype == np.float32


@pytest.mark.parametrize("defocus", [0.05, 0.1, 0.2])
def test_defocus_strehl_ratio_closed_form(defocus):
    # on-axis intensity ratio |<exp(-2i pi a Z4)>_disk|^2 = sinc^2(2 sqrt(3) a), exact
    # for defocus; the finite window adds < 3e-5 at size 128
    aberrated = zernike_psf({4: defocus}, cutoff=0.25, size=128)
    perfect = zernike_psf(cutoff=0.25, size=128)
    ratio = aberrated[64, 64] / perfect[64, 64]
    assert ratio == pytest.approx(np.sinc(2 * np.sqrt(3) * defocus) ** 2, rel=1e-4)


@pytest.mark.parametrize(
    ("theta", "cutoff", "size"), [(THETAS[0], 0.2, 33), (THETAS[1], 0.125, 64), (2 * THETAS[2], 0.25, 40)]
)
def test_aberrated_psf_converged_in_pupil_sampling(theta, cutoff, size):
    psf = zernike_psf(theta, cutoff=cutoff, size=size)
    reference = zernike_psf(theta, cutoff=cutoff, size=size, pupil_samples=320)
    assert relative_l2(psf, reference) < 2e-4


def test_too_coarse_pupil_sampling_is_detectably_wrong():
    # guards the convergence test above: a coarse grid must differ from the reference
    theta = 2 * THETAS[2]
    coarse = zernike_psf(theta, cutoff=0.25, size=40, pupil_samples=32)
    reference = zernike_psf(theta, cutoff=0.25, size=40, pupil_samples=320)
    assert relative_l2(coarse, reference) > 1e-3


# ----------------------------------------------------------------------------- conventions


@pytest.mark.parametrize("size", [1, 2, 15, 16, 33, 64])
def test_output_normalised_and_centred(size):
    psf = zernike_psf(cutoff=0.2, size=size)
    assert psf.shape == (size, size) and psf.dtype == np.float64
    assert psf.min() >= 0 and psf.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.unravel_index(psf.argmax(), psf.shape) == (size // 2, size // 2)


def test_aberrated_psfs_normalised_and_non_negative():
    psfs = zernike_psf(4 * THETAS, cutoff=0.2, size=24)
    assert psfs.min() >= 0
    np.testing.assert_allclose(psfs.sum(axis=(1, 2)), 1.0, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_option(dtype):
    psf = zernike_psf(THETAS[0], cutoff=0.2, size=20, dtype=dtype)
    assert psf.dtype == dtype
    reference = zernike_psf(THETAS[0], cutoff=0.2, size=20)
    assert np.abs(psf - reference).max() < (1e-5 if dtype == np.float32 else 1e-15) * reference.max()


def test_float16_computes_in_float32():
    assert zernike_psf(cutoff=0.2, size=8, dtype=np.float16).dtype == np.float32


def test_no_aberration_spellings_agree():
    reference = zernike_psf(cutoff=0.2, size=17)
    for spelling in ({}, [], np.zeros(0), np.zeros(8), {4: 0.0, 9: 0.0}):
        np.testing.assert_allclose(zernike_psf(spelling, cutoff=0.2, size=17), reference, rtol=0, atol=1e-15)


def test_sequence_starts_at_defocus_and_matches_mapping():
    theta = THETAS[3]
    as_mapping = zernike_psf(dict(zip(range(4, 12), theta)), cutoff=0.2, size=21)
    np.testing.assert_array_equal(zernike_psf(theta, cutoff=0.2, size=21), as_mapping)
    np.testing.assert_array_equal(zernike_psf(list(theta), cutoff=0.2, size=21, indices=range(4, 12)), as_mapping)
    reordered = zernike_psf(theta[::-1], cutoff=0.2, size=21, indices=range(11, 3, -1))
    np.testing.assert_allclose(reordered, as_mapping, atol=1e-15)


def test_batch_equals_loop():
    cutoffs = np.array([0.11, 0.15, 0.2, 0.24, 0.25])
    batch = zernike_psf(THETAS, cutoff=cutoffs, size=25)
    assert batch.shape == (5, 25, 25)
    for theta, cutoff, psf in zip(THETAS, cutoffs, batch):
        # same pupil grid as the batch (chosen from its worst case) for a round-off comparison
        single = zernike_psf(theta, cutoff=cutoff, size=25, pupil_samples=_batch_samples(THETAS, cutoffs, 25))
        np.testing.assert_allclose(psf, single, rtol=0, atol=1e-14)
        # and within the discretisation error of its own automatic grid
        assert relative_l2(zernike_psf(theta, cutoff=cutoff, size=25), psf) < 2e-4


def _batch_samples(thetas, cutoffs, size):
    from psfkit.optics.psf import _required_pupil_samples

    return _required_pupil_samples(thetas, tuple(range(4, 12)), cutoffs, size)[0]


def test_shared_cutoff_batch_equals_loop():
    batch = zernike_psf(THETAS[:3], cutoff=0.2, size=20, pupil_samples=96)
    for theta, psf in zip(THETAS[:3], batch):
        np.testing.assert_allclose(psf, zernike_psf(theta, cutoff=0.2, size=20, pupil_samples=96), rtol=0, atol=1e-14)


def test_cutoff_array_broadcasts_one_aberration():
    psfs = zernike_psf({4: 0.1}, cutoff=[0.15, 0.25], size=19)
    assert psfs.shape == (2, 19, 19)
    assert psfs[0, 9, 9] < psfs[1, 9, 9]  # the larger pupil gives the sharper PSF


def test_large_batches_are_chunked_consistently():
    thetas = np.tile(THETAS[:2], (40, 1))
    psfs = zernike_psf(thetas, cutoff=0.2, size=16, pupil_samples=64)
    np.testing.assert_allclose(psfs[::2], np.broadcast_to(psfs[0], psfs[::2].shape), rtol=0, atol=1e-15)


# ----------------------------------------------------------------------------- symmetries


def test_flipping_even_terms_leaves_psf_unchanged():
    theta = dict(zip(range(4, 12), THETAS[0]))
    psf = zernike_psf(theta, cutoff=0.2, size=33)
    flipped = zernike_psf(flip_parity(theta, 0), cutoff=0.2, size=33)
    np.testing.assert_allclose(flipped, psf, rtol=0, atol=1e-14 * psf.max())


def test_flipping_odd_terms_point_reflects_psf():
    theta = dict(zip(range(4, 12), THETAS[1]))
    psf = zernike_psf(theta, cutoff=0.2, size=33)
    flipped = zernike_psf(flip_parity(theta, 1), cutoff=0.2, size=33)
    np.testing.assert_allclose(flipped, psf[::-1, ::-1], rtol=0, atol=1e-14 * psf.max())
    assert np.abs(flipped - psf).max() > 1e-3 * psf.max()  # coma does break the symmetry


def test_flipping_all_terms_point_reflects_psf():
    theta = THETAS[2]
    psf = zernike_psf(theta, cutoff=0.2, size=33)
    flipped = zernike_psf(-theta, cutoff=0.2, size=33)
    np.testing.assert_allclose(flipped, psf[::-1, ::-1], rtol=0, atol=1e-14 * psf.max())


def test_rotating_the_aberration_rotates_the_psf():
    # phi(rho, theta - 90 deg) in the (x = column, y = row) frame <-> h(x, y) rotated by +90 deg
    # from the column axis towards the row axis, which is np.rot90(h, k=-1)
    theta = dict(zip(range(4, 12), THETAS[3]))
    psf = zernike_psf(theta, cutoff=0.2, size=33)
    rotated = zernike_psf(rotate_coefficients(theta, np.pi / 2), cutoff=0.2, size=33)
    np.testing.assert_allclose(rotated, np.rot90(psf, k=-1), rtol=0, atol=1e-13 * psf.max())
    assert np.abs(rotated - np.rot90(psf, k=1)).max() > 1e-3 * psf.max()


@pytest.mark.parametrize(("j", "axis"), [(8, 1), (7, 0)])
def test_coma_moves_barycentre_against_its_axis(j, axis):
    # forward transform: the barycentre moves by -<grad phi>/fc = -sqrt(8) theta / fc
    # pixels along x (j = 8) or y (j = 7); the inverse transform would give the
    # opposite sign. deepinv 0.5 agrees (theta = 0.12, fc = 0.2, size 33:
    # barycentre (-1.30, 0) for Z7, (0, -1.30) for Z8).
    theta, cutoff, size = 0.05, 0.25, 65
    psf = zernike_psf({j: theta}, cutoff=cutoff, size=size)
    barycentre = (np.indices(psf.shape) * psf).sum(axis=(1, 2)) - size // 2
    expected = -np.sqrt(8) * theta / cutoff
    assert barycentre[axis] == pytest.approx(expected, rel=0.1)
    assert abs(barycentre[1 - axis]) < 1e-12


# ----------------------------------------------------------------------------- property test


@settings(max_examples=25, deadline=None)
@given(
    size=st.integers(1, 40),
    cutoff=st.floats(0.05, 0.5),
    theta=st.lists(st.floats(-0.3, 0.3), min_size=0, max_size=6),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_shape_dtype_normalisation(size, cutoff, theta, dtype):
    psf = zernike_psf(theta, cutoff=cutoff, size=size, dtype=dtype)
    assert psf.shape == (size, size) and psf.dtype == dtype
    assert psf.min() >= 0 and abs(float(psf.sum()) - 1) < 1e-5


# ----------------------------------------------------------------------------- cutoff_frequency


SHARED_DATA = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data"


@pytest.mark.skipif(not (SHARED_DATA / "deconwolf_dapi_widefield").is_dir(), reason="needs ../shared/data")
def test_pixel_integrated_airy_matches_an_independent_born_wolf_implementation():
    # deconwolf's dw_bw (GSL quadrature of the Born-Wolf integral over each pixel) for NA 1.45, 461 nm,
    # 130 nm pixels: its in-focus plane is the pixel-integrated Airy pattern, with psfkit's fc convention
    tifffile = pytest.importorskip("tifffile")
    stack = tifffile.imread(SHARED_DATA / "deconwolf_dapi_widefield" / "psf_bornwolf_dw_bw_65x65x41.tif")
    reference = stack[20].astype(np.float64)
    fc = cutoff_frequency(1.45, 461, 130, on_undersampling="ignore")
    snr = []
    for sub in (1, 3, 7):  # point sampling, then finer and finer sub-pixel sums
        fine = airy_psf(cutoff=fc / sub, size=65 * sub)
        integrated = fine.reshape(65, sub, 65, sub).sum(axis=(1, 3))
        snr.append(psf_snr(integrated, reference))
    assert snr[0] < 15 < snr[1] < snr[2]  # the data are pixel-integrated, not point samples
    assert snr[2] > 40


def test_cutoff_frequency_value():
    assert cutoff_frequency(1.4, 0.52, 0.065) == pytest.approx(1.4 * 0.065 / 0.52)
    assert cutoff_frequency(0.8, 600, 150) == pytest.approx(0.2)


def test_cutoff_frequency_undersampling():
    with pytest.raises(ValueError, match="under-sampled"):
        cutoff_frequency(1.4, 520, 100)
    with pytest.warns(UserWarning, match="under-sampled"):
        assert cutoff_frequency(1.4, 520, 100, on_undersampling="warn") == pytest.approx(1.4 * 100 / 520)
    assert cutoff_frequency(1.4, 520, 100, on_undersampling="ignore") == pytest.approx(1.4 * 100 / 520)
    assert cutoff_frequency(1.0, 4.0, 1.0) == 0.25  # the Nyquist limit itself is fine


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        ((0, 0.5, 0.1), {}, ValueError),
        ((1.2, -0.5, 0.1), {}, ValueError),
        ((1.2, 0.5, np.nan), {}, ValueError),
        ((1.2, np.inf, 0.1), {}, ValueError),
        (("1.2", 0.5, 0.1), {}, TypeError),
        ((1.2, 0.5, True), {}, TypeError),
        ((1.2, 0.5, 0.1), {"on_undersampling": "clip"}, ValueError),
    ],
)
def test_cutoff_frequency_rejects_bad_input(args, kwargs, error):
    with pytest.raises(error):
        cutoff_frequency(*args, **kwargs)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"cutoff": 0.0}, ValueError, "cutoff"),
        ({"cutoff": -0.1}, ValueError, "cutoff"),
        ({"cutoff": 0.6}, ValueError, r"\(0, 0.5\]"),
        ({"cutoff": np.nan}, ValueError, "cutoff"),
        ({"cutoff": np.inf}, ValueError, "cutoff"),
        ({"cutoff": "0.2"}, TypeError, "cutoff"),
        ({"cutoff": [0.2, 0.7]}, ValueError, "cutoff"),
        ({"cutoff": [[0.2]]}, ValueError, "cutoff"),
        ({"size": 0}, ValueError, "size"),
        ({"size": -5}, ValueError, "size"),
        ({"size": 7.5}, TypeError, "size"),
        ({"size": True}, TypeError, "size"),
        ({"dtype": np.int32}, ValueError, "dtype"),
        ({"dtype": "complex128"}, ValueError, "dtype"),
        ({"pupil_samples": 33}, ValueError, "pupil_samples"),
        ({"pupil_samples": 8}, ValueError, "pupil_samples"),
        ({"coefficients": [0.1, np.nan]}, ValueError, "NaN"),
        ({"coefficients": [np.inf]}, ValueError, "NaN"),
        ({"coefficients": np.zeros((2, 3, 4))}, ValueError, "coefficients"),
        ({"coefficients": [0.1j]}, ValueError, "real"),
        ({"coefficients": ["a"]}, TypeError, "coefficients"),
        ({"coefficients": "0.1"}, TypeError, "coefficients"),
        ({"coefficients": np.zeros((0, 3))}, ValueError, "coefficients"),
        ({"coefficients": {0: 0.1}}, ValueError, "Noll index"),
        ({"coefficients": {-2: 0.1}}, ValueError, "Noll index"),
        ({"coefficients": {4.0: 0.1}}, TypeError, "integer"),
        ({"coefficients": {4: [0.1, 0.2]}}, TypeError, "real number"),
        ({"coefficients": {4: np.nan}}, ValueError, "NaN"),
        ({"coefficients": {4: 0.1}, "indices": [4]}, TypeError, "mapping"),
        ({"coefficients": [0.1, 0.2], "indices": [4]}, ValueError, "indices"),
        ({"coefficients": [0.1, 0.2], "indices": [4, 4]}, ValueError, "repeat"),
        ({"coefficients": [0.1, 0.2], "indices": [0, 4]}, ValueError, "Noll index"),
        ({"coefficients": np.zeros((3, 2)), "cutoff": [0.1, 0.2]}, ValueError, "rows"),
        ({"indices": [4]}, ValueError, "without coefficients"),
    ],
)
def test_zernike_psf_rejects_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        zernike_psf(**kwargs)


def test_huge_aberrations_cap_the_pupil_grid_with_a_warning(monkeypatch):
    import psfkit.optics.psf

    monkeypatch.setattr(psfkit.optics.psf, "_MAX_AUTO_SAMPLES", 64)  # the real cap (1024) is slow to build
    with pytest.warns(UserWarning, match="capped at 64"):
        psf = zernike_psf({4: 3.0}, cutoff=0.25, size=8)
    assert np.isfinite(psf).all() and psf.sum() == pytest.approx(1.0)


def test_inputs_are_not_modified():
    theta = THETAS.copy()
    cutoffs = np.array([0.1, 0.15, 0.2, 0.24, 0.25])
    zernike_psf(theta, cutoff=cutoffs, size=9)
    np.testing.assert_array_equal(theta, THETAS)
    np.testing.assert_array_equal(cutoffs, [0.1, 0.15, 0.2, 0.24, 0.25])


def test_airy_psf_rejects_bad_input():
    with pytest.raises(ValueError, match="cutoff"):
        airy_psf(cutoff=0.0, size=9)
    with pytest.raises(ValueError, match="scalar"):
        airy_psf(cutoff=[0.1, 0.2], size=9)
    with pytest.raises(ValueError, match="size"):
        airy_psf(cutoff=0.2, size=-1)


def test_import_psf_does_not_import_torch():
    code = "import sys, psfkit.optics.psf, psfkit.optics.zernike; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
