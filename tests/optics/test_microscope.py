"""Microscope optics: Optics, its TIFF metadata, and microscope_psf against closed forms and references."""

import dataclasses
import math
import pathlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import j1

from psfkit.metrics import fwhm as fwhm_on_grid
from psfkit.optics import _radial
from psfkit.optics.microscope import Optics, _continuous_fwhm, _default_oversampling, microscope_psf
from psfkit.optics.psf import airy_psf, zernike_psf

SHARED_DATA = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="needs ../shared/data")

# deconwolf's demo optics (data/deconwolf_dapi_widefield): under-sampled, fc = 0.41 cycles/pixel
DAPI = Optics(na=1.45, wavelength=0.461, pixel_size=0.130, z_step=0.300, immersion_index=1.512)
# the modality anchors of the optics note: NA 1.4 oil, 488 nm excitation, 520 nm emission
OIL = Optics(na=1.4, wavelength=0.520, pixel_size=0.040, z_step=0.100)


def relative_l2(estimate, reference):
    return float(np.linalg.norm(estimate - reference) / np.linalg.norm(reference))


def airy_intensity(r, optics):
    """(2 J1(v) / v)^2 with v = 2 pi NA r / lambda, closed form (r in um)."""
    v = 2 * np.pi * optics.na / optics.wavelength * np.asarray(r, dtype=np.float64)
    safe = np.where(v == 0, 1.0, v)
    return np.where(v == 0, 1.0, (2 * j1(safe) / safe) ** 2)


def brute_force_plane(profile, optics, shape, nodes=10):
    """Pixel averages of a radial function by a dense Gauss-Legendre rule, no interpolation, no symmetry."""
    t, w = np.polynomial.legendre.leggauss(nodes)
    t, w = t / 2, w / 2
    ny, nx = shape
    y = ((np.arange(ny) - ny // 2)[:, None] + t[None, :]).ravel() * optics.pixel_size
    x = ((np.arange(nx) - nx // 2)[:, None] + t[None, :]).ravel() * optics.pixel_size
    values = profile(np.hypot(y[:, None], x[None, :])).reshape(ny, nodes, nx, nodes)
    plane = np.einsum("aibj,i,j->ab", values, w, w)
    return plane / plane.sum()




def barycentre(psf):
    return (np.indices(psf.shape) * psf).sum(axis=tuple(range(1, psf.ndim + 1))) - np.array(psf.shape) // 2


# ----------------------------------------------------------------------------- closed forms


@pytest.mark.parametrize("model", ["born-wolf", "scalar"])
@pytest.mark.parametrize("optics", [DAPI, dataclasses.replace(OIL, pixel_size=0.065)], ids=["undersampled", "nyquist"])
def test_in_focus_plane_is_the_pixel_integrated_airy_pattern(model, optics):
    psf = microscope_psf(optics, (33, 33), model=model)
    reference = brute_force_plane(lambda r: airy_intensity(r, optics), optics, (33, 33))
    assert relative_l2(psf, reference) < 1e-5


def test_point_sampled_in_focus_plane_is_airy_psf():
    psf = microscope_psf(DAPI, (32, 32), oversampling=1)  # fc 0.41: under-sampled, never refused
    assert relative_l2(psf, airy_psf(cutoff=DAPI.cutoff_frequency, size=32)) < 1e-5


def test_paraxial_axial_profile_is_sinc_squared():
    # Born-Wolf on axis: |int_0^1 exp(i k NA^2 z rho^2 / (2n)) rho d rho|^2 = sinc^2(k NA^2 z / (4 n))
    optics = dataclasses.replace(DAPI, z_step=0.05)
    psf = microscope_psf(optics, (81, 5, 5), model="born-wolf", oversampling=1)
    axis = psf[:, 2, 2] / psf[40, 2, 2]
    z = (np.arange(81) - 40) * optics.z_step
    k = 2 * np.pi / optics.wavelength
    expected = np.sinc(k * optics.na**2 * z / (4 * optics.immersion_index) / np.pi) ** 2
    np.testing.assert_allclose(axis, expected, rtol=0, atol=1e-9)


def test_non_paraxial_axial_profile_closed_form():
    # scalar on axis: with u = sqrt(n^2 - NA^2 rho^2), rho d rho = -u du / NA^2, so the field is
    # int_{u0}^{n} exp(-i k z u) u du, elementary
    optics = dataclasses.replace(DAPI, z_step=0.05)
    psf = microscope_psf(optics, (81, 3, 3), oversampling=1)
    axis = psf[:, 1, 1] / psf[40, 1, 1]
    n, k = optics.immersion_index, 2 * np.pi / optics.wavelength
    u0 = math.sqrt(n**2 - optics.na**2)
    z = (np.arange(81) - 40) * optics.z_step

    def primitive(u, z):
        a = -1j * k * z
        return np.exp(a * u) * (u / a - 1 / a**2)

    zs = np.where(z == 0, 1.0, z)
    field = np.where(z == 0, (n**2 - u0**2) / 2, primitive(n, zs) - primitive(u0, zs))
    expected = np.abs(field) ** 2 / ((n**2 - u0**2) / 2) ** 2
    np.testing.assert_allclose(axis, expected, rtol=0, atol=1e-9)
    # the paraxial model is 1.46x longer at this NA
    assert microscope_psf(optics, (81, 3, 3), model="born-wolf", oversampling=1)[30, 1, 1] > psf[30, 1, 1]


def test_continuous_fwhm_closed_forms_and_reference_figures():
    # Born-Wolf closed forms 0.5145 lambda / NA and 1.772 n lambda / NA^2 (deconwolf's log: 163.57 / 587.39 nm);
    # scalar 163.6 / 401.5 and vectorial 181.8 / 394.7 nm are psfmodels' figures at the same optics
    lateral, axial = _continuous_fwhm(DAPI, model="born-wolf")
    assert lateral == pytest.approx(0.16357, rel=2e-3)
    assert axial == pytest.approx(0.58739, rel=2e-3)
    assert _continuous_fwhm(DAPI) == pytest.approx((0.1636, 0.4015), rel=5e-3)
    assert _continuous_fwhm(DAPI, model="vectorial") == pytest.approx((0.1818, 0.3947), rel=5e-3)


# ----------------------------------------------------------------------------- pixel integration


def test_undersampled_defocused_planes_match_brute_force_integration():
    optics = DAPI
    psf = microscope_psf(optics, (5, 20, 20), model="born-wolf")
    n = optics.immersion_index
    pupil = _radial.Pupil(optics.na, optics.wavelength, n, n, 0.0, "born-wolf")
    for plane in (0, 1):
        z = (plane - 2) * optics.z_step
        def profile(r, z=z):
            return _radial.intensity(pupil, r.ravel(), [z]).reshape(r.shape)

        reference = brute_force_plane(profile, optics, (20, 20))
        assert relative_l2(psf[plane] / psf[plane].sum(), reference) < 1e-5


def test_point_sampling_is_detectably_wrong_for_undersampled_optics():
    integrated = microscope_psf(DAPI, (33, 33))
    assert relative_l2(microscope_psf(DAPI, (33, 33), oversampling=1), integrated) > 0.1
    assert relative_l2(microscope_psf(DAPI, (33, 33), oversampling=3), integrated) < 1e-3


def test_default_oversampling_grows_with_the_spectrum():
    assert _default_oversampling(0.2) < _default_oversampling(0.5) < _default_oversampling(0.82) <= 6
    assert _default_oversampling(0.82) == 5  # the deconwolf optics: 5 x 5 nodes reach 1e-5


@needs_shared
def test_born_wolf_matches_deconwolf():
    tifffile = pytest.importorskip("tifffile")
    path = SHARED_DATA / "deconwolf_dapi_widefield" / "psf_bornwolf_dw_bw_65x65x41.tif"
    reference = tifffile.imread(path).astype(np.float64)
    reference /= reference.sum()
    optics = Optics.from_tiff(path, na=1.45, wavelength=0.461, immersion_index=1.512)
    psf = microscope_psf(optics, reference.shape, model="born-wolf")
    assert relative_l2(psf, reference) < 1e-4  # the note's independent re-derivation: 2e-5
    assert fwhm_on_grid(psf[20, 32], 0.130) == pytest.approx(0.1688, rel=0.03)
    assert fwhm_on_grid(psf[:, 32, 32], 0.300) == pytest.approx(0.5852, rel=0.03)
    # point sampling is 25.6 % off, the non-paraxial model ~35 %
    assert relative_l2(microscope_psf(optics, reference.shape, model="born-wolf", oversampling=1), reference) > 0.2
    assert relative_l2(microscope_psf(optics, reference.shape), reference) > 0.3


# ----------------------------------------------------------------------------- shape, centring, symmetry


@pytest.mark.parametrize("shape", [(9, 17, 17), (8, 16, 16), (7, 10, 13), (2, 2)])
def test_unit_sum_centred_and_symmetric(shape):
    psf = microscope_psf(dataclasses.replace(OIL, pixel_size=0.065, z_step=0.2), shape)
    assert psf.shape == shape and psf.dtype == np.float64
    assert psf.sum() == pytest.approx(1.0, abs=1e-12) and psf.min() >= 0
    assert np.unravel_index(psf.argmax(), shape) == tuple(n // 2 for n in shape)
    # symmetric about the centre on every axis: mirror the part that has a mirror
    for axis, n in enumerate(shape):
        c = n // 2
        part = np.take(psf, range(c - min(c, n - 1 - c), n), axis=axis)
        np.testing.assert_allclose(part, np.flip(part, axis=axis), rtol=1e-10, atol=1e-15)


@settings(max_examples=20, deadline=None)
@given(
    shape=st.lists(st.integers(1, 12), min_size=2, max_size=3).map(tuple),
    na=st.floats(0.3, 1.45),
    pixel=st.floats(0.03, 0.2),
    modality=st.sampled_from(["widefield", "confocal", "airyscan", "lightsheet"]),
)
def test_any_shape_and_optics_give_a_centred_unit_sum_psf(shape, na, pixel, modality):
    optics = Optics(na=na, wavelength=0.52, pixel_size=pixel, z_step=0.2, modality=modality, excitation=0.488,
                    sheet_thickness=1.0)
    psf = microscope_psf(optics, shape)
    assert psf.shape == shape and psf.dtype == np.float64 and psf.min() >= 0
    assert psf.sum() == pytest.approx(1.0, abs=1e-12)
    assert psf[tuple(n // 2 for n in shape)] == pytest.approx(psf.max(), rel=1e-9)


def test_two_d_shape_is_the_in_focus_plane_of_the_stack():
    stack = microscope_psf(OIL, (5, 20, 20))
    plane = microscope_psf(OIL, (20, 20))
    np.testing.assert_allclose(plane, stack[2] / stack[2].sum(), rtol=1e-10)


def test_radial_quadrature_is_converged():
    pupil = _radial.Pupil(1.4, 0.52, 1.515, 1.33, 4.0, "scalar")  # mismatch: the hardest phase here
    r, stage = np.linspace(0, 4, 50), np.linspace(3.5, 5.5, 7)
    n = _radial.nodes_needed(pupil, 4.0, stage)
    coarse, fine = _radial.intensity(pupil, r, stage, n), _radial.intensity(pupil, r, stage, 2 * n)
    assert np.abs(coarse - fine).max() < 1e-6 * fine.max()
    # halving the radial grid step changes the pixel values by < 1e-6
    default = microscope_psf(DAPI, (3, 32, 32))
    step, _radial.RADIAL_STEP = _radial.RADIAL_STEP, _radial.RADIAL_STEP / 2
    try:
        finer = microscope_psf(DAPI, (3, 32, 32))
    finally:
        _radial.RADIAL_STEP = step
    assert relative_l2(default, finer) < 1e-6


# ----------------------------------------------------------------------------- aberrations


@pytest.mark.parametrize("size", [32, 33])
def test_aberrated_in_focus_plane_equals_zernike_psf(size):
    optics = dataclasses.replace(OIL, pixel_size=0.065)
    coefficients = {5: 0.05, 7: 0.1, 11: -0.08}
    psf = microscope_psf(optics, (size, size), aberrations=coefficients, oversampling=1)
    reference = zernike_psf(coefficients, cutoff=optics.cutoff_frequency, size=size)
    assert np.abs(psf - reference).max() < 1e-9 * reference.max()


@pytest.mark.parametrize("sign", [1, -1])
def test_coma_sign_matches_zernike_psf(sign):
    # zernike_psf: the barycentre moves by -sqrt(8) theta / fc pixels along y for Z7
    optics = dataclasses.replace(OIL, pixel_size=0.065)
    theta, fc = sign * 0.05, optics.cutoff_frequency
    psf = microscope_psf(optics, (65, 65), aberrations={7: theta})  # pixel-integrated
    shift = barycentre(psf)
    reference = barycentre(zernike_psf({7: theta}, cutoff=fc, size=65))
    assert np.sign(shift[0]) == np.sign(reference[0]) == -sign
    # pixel averaging keeps the barycentre (a symmetric box); in an unbounded window it is -sqrt(8) theta / fc
    assert shift[0] == pytest.approx(reference[0], rel=0.01)
    assert shift[0] == pytest.approx(-math.sqrt(8) * theta / fc, rel=0.15)
    assert abs(shift[1]) < 1e-10


def test_aberration_path_agrees_with_the_radial_path_out_of_focus():
    # a negligible aberration forces the 2-D pupil transform; with the defocus phase it must
    # reproduce the radial model plane by plane (calibrates its pupil sampling)
    optics = dataclasses.replace(OIL, pixel_size=0.065, z_step=0.4)
    symmetric = microscope_psf(optics, (5, 32, 32))
    pupil = microscope_psf(optics, (5, 32, 32), aberrations={11: 1e-12})
    assert relative_l2(pupil, symmetric) < 5e-5


def test_defocus_sign_convention():
    # a focal plane deeper than the source (z > 0) acts like a negative Noll-4 coefficient; with
    # astigmatism the two signs give PSFs elongated along x or y (a coma would not tell them apart:
    # flipping the even terms alone leaves an in-focus PSF unchanged)
    optics = dataclasses.replace(OIL, pixel_size=0.065, z_step=0.15, immersion_index=1.515)
    stack = microscope_psf(optics, (3, 32, 32), aberrations={6: 0.08}, model="born-wolf", oversampling=1)
    a4 = optics.z_step * optics.na**2 / (4 * math.sqrt(3) * optics.immersion_index * optics.wavelength)
    deeper = zernike_psf({4: -a4, 6: 0.08}, cutoff=optics.cutoff_frequency, size=32)
    shallower = zernike_psf({4: a4, 6: 0.08}, cutoff=optics.cutoff_frequency, size=32)
    assert relative_l2(stack[2] / stack[2].sum(), deeper) < 1e-6
    assert relative_l2(stack[2] / stack[2].sum(), shallower) > 1e-2


@pytest.mark.parametrize(("modality", "shape"), [("confocal", (3, 21, 21)), ("airyscan", (21, 21))])
def test_aberrated_confocal_and_ism_agree_with_the_radial_path(modality, shape):
    # the pinhole / detector-disk sums of the 2-D pupil path (shifted transforms) against the radial operators
    optics = dataclasses.replace(OIL, pixel_size=0.065, z_step=0.2, modality=modality, excitation=0.488)
    symmetric = microscope_psf(optics, shape)
    pupil = microscope_psf(optics, shape, aberrations={11: 1e-12})
    assert relative_l2(pupil, symmetric) < 2e-5


def test_aberrated_closed_pinhole_is_the_product_of_excitation_and_emission():
    # the same wavefront (um) aberrates both paths: in waves it scales with lambda_em / lambda_ex
    optics = dataclasses.replace(OIL, pixel_size=0.065, z_step=0.2)
    aberrations = {6: -0.05, 7: 0.06, 11: 0.04}
    closed = dataclasses.replace(optics, modality="confocal", excitation=0.488, pinhole=0.0)
    psf = microscope_psf(closed, (3, 24, 24), aberrations=aberrations, oversampling=1)
    emission = microscope_psf(optics, (3, 24, 24), aberrations=aberrations, oversampling=1)
    scaled = {j: a * 0.520 / 0.488 for j, a in aberrations.items()}
    excitation = microscope_psf(dataclasses.replace(optics, wavelength=0.488), (3, 24, 24), aberrations=scaled,
                                oversampling=1)
    product = emission * excitation
    assert relative_l2(psf, product / product.sum()) < 1e-10
    unscaled = emission * microscope_psf(dataclasses.replace(optics, wavelength=0.488), (3, 24, 24),
                                         aberrations=aberrations, oversampling=1)
    assert relative_l2(psf, unscaled / unscaled.sum()) > 1e-4


@pytest.mark.parametrize("sign", [1, -1])
def test_ism_coma_moves_the_psf_like_widefield_coma(sign):
    # same direction; less far, since the product of the two PSFs damps the comatic flare
    optics = dataclasses.replace(OIL, pixel_size=0.065, modality="airyscan", excitation=0.488)
    shift = barycentre(microscope_psf(optics, (25, 25), aberrations={7: sign * 0.05}))
    widefield = dataclasses.replace(OIL, pixel_size=0.065)
    reference = barycentre(microscope_psf(widefield, (25, 25), aberrations={7: sign * 0.05}))
    assert np.sign(shift[0]) == np.sign(reference[0]) == -sign
    assert 0.03 < abs(shift[0]) < abs(reference[0]) and abs(shift[1]) < 1e-10


# ----------------------------------------------------------------------------- modalities


def confocal(pinhole, modality="confocal"):
    return dataclasses.replace(OIL, modality=modality, excitation=0.488, pinhole=pinhole)


@pytest.mark.parametrize(
    ("optics", "lateral", "axial"),
    [
        (OIL, 0.191, 0.515),
        (confocal(0.0), 0.133, 0.358),
        (confocal(1.0), 0.176, 0.399),
        (confocal(1.25, "airyscan"), 0.122, 0.371),
    ],
    ids=["widefield", "confocal-0AU", "confocal-1AU", "airyscan"],
)
def test_modality_fwhm_targets(optics, lateral, axial):
    assert _continuous_fwhm(optics) == pytest.approx((lateral, axial), rel=0.03)


def test_modality_ordering_on_the_grid():
    shape = (31, 31, 31)
    widths = {}
    for name, optics in [
        ("widefield", OIL),
        ("confocal", confocal(1.0)),
        ("closed", confocal(0.0)),
        ("airyscan", confocal(1.25, "airyscan")),
    ]:
        psf = microscope_psf(optics, shape, oversampling=1)
        widths[name] = (fwhm_on_grid(psf[15, 15], 0.04), fwhm_on_grid(psf[:, 15, 15], 0.1))
    for axis in (0, 1):
        assert widths["closed"][axis] < widths["confocal"][axis] < widths["widefield"][axis]
        assert widths["airyscan"][axis] < widths["confocal"][axis]
    assert widths["airyscan"][0] < widths["closed"][0] * 0.95  # ISM beats even a closed pinhole laterally


def test_airyscan_with_a_vanishing_detector_is_the_closed_pinhole_confocal():
    ism = microscope_psf(confocal(1e-4, "airyscan"), (5, 21, 21))
    closed = microscope_psf(confocal(0.0), (5, 21, 21))
    assert relative_l2(ism, closed) < 1e-6
    assert relative_l2(microscope_psf(confocal(1.0), (5, 21, 21)), closed) > 0.05


def test_confocal_pinhole_matches_brute_force_disk_convolution():
    optics = dataclasses.replace(confocal(1.0), pixel_size=0.05)
    psf = microscope_psf(optics, (21, 21), oversampling=1)
    radius = optics.airy_unit / 2
    # (h_em * disk)(r) by a fine Cartesian sum over the disk, independent of the polar quadrature
    step = radius / 60
    g = np.arange(-radius, radius + step / 2, step)
    dy, dx = np.meshgrid(g, g, indexing="ij")
    inside = dy**2 + dx**2 <= radius**2
    dy, dx = dy[inside], dx[inside]
    em = dataclasses.replace(OIL)
    ex = dataclasses.replace(OIL, wavelength=0.488)
    offsets = (np.arange(21) - 10) * optics.pixel_size
    y, x = np.meshgrid(offsets, offsets, indexing="ij")
    detected = np.array([airy_intensity(np.hypot(yy - dy, xx - dx), em).sum() for yy, xx in zip(y.ravel(), x.ravel())])
    reference = airy_intensity(np.hypot(y, x), ex) * detected.reshape(21, 21)
    assert relative_l2(psf, reference / reference.sum()) < 2e-3  # the Cartesian disk edge limits the reference


def test_lightsheet_multiplies_the_axial_profile_by_the_sheet():
    sheet = dataclasses.replace(OIL, modality="lightsheet", sheet_thickness=0.4)
    psf = microscope_psf(sheet, (21, 9, 9))
    wide = microscope_psf(OIL, (21, 9, 9))
    ratio = psf.sum(axis=(1, 2)) / wide.sum(axis=(1, 2))
    z = (np.arange(21) - 10) * OIL.z_step
    np.testing.assert_allclose(ratio / ratio[10], np.exp(-4 * math.log(2) * (z / 0.4) ** 2), rtol=1e-10)
    np.testing.assert_allclose(microscope_psf(sheet, (9, 9)), microscope_psf(OIL, (9, 9)), rtol=1e-12)


def test_vectorial_tends_to_scalar_at_low_na():
    low = Optics(na=0.3, wavelength=0.52, pixel_size=0.3, z_step=1.0, immersion_index=1.0)
    assert relative_l2(microscope_psf(low, (5, 15, 15), model="vectorial"), microscope_psf(low, (5, 15, 15))) < 0.02
    assert relative_l2(microscope_psf(DAPI, (15, 15), model="vectorial"), microscope_psf(DAPI, (15, 15))) > 0.1


# ----------------------------------------------------------------------------- index mismatch


@pytest.mark.parametrize(("depth", "axial"), [(0.0, 0.512), (2.0, 0.788), (5.0, 1.022), (10.0, 1.285)])
def test_index_mismatch_axial_fwhm(depth, axial):
    # oil NA 1.4 into water at 520 nm: psfmodels' scalar Gibson-Lanni figures
    water = dataclasses.replace(OIL, sample_index=1.33)
    assert _continuous_fwhm(water, depth=depth)[1] == pytest.approx(axial, rel=0.05)


def test_mismatched_stack_is_centred_on_its_best_focus_and_dimmer():
    water = dataclasses.replace(OIL, sample_index=1.33, z_step=0.2, pixel_size=0.08)
    shallow = microscope_psf(water, (41, 17, 17), oversampling=1)
    deep = microscope_psf(water, (41, 17, 17), depth=5.0, oversampling=1)
    assert np.argmax(deep[:, 8, 8]) == 20 and np.argmax(shallow[:, 8, 8]) == 20
    assert deep.max() < 0.6 * shallow.max()
    assert not np.allclose(deep, deep[::-1], rtol=1e-2)  # spherical aberration: axially asymmetric
    # focal shift: stage / depth above the paraxial n_i / n_s = 1.14 near the coverslip
    pupil = _radial.Pupil(1.4, 0.52, 1.515, 1.33, 5.0, "scalar")
    assert 1.2 < _radial.best_focus([pupil]) / 5.0 < 1.3


# ----------------------------------------------------------------------------- Optics


def test_optics_defaults_and_properties():
    optics = Optics(na=1.4, wavelength=0.52, pixel_size=0.065)
    assert optics.sample_index == optics.immersion_index == 1.515
    assert optics.cutoff_frequency == pytest.approx(0.175)
    assert optics.airy_unit == pytest.approx(1.22 * 0.52 / 1.4)
    assert optics.pinhole is None and optics.z_step is None
    assert confocal(None).pinhole == 1.0 and confocal(None, "airyscan").pinhole == 1.25
    with pytest.raises(dataclasses.FrozenInstanceError):
        optics.na = 1.2


@pytest.mark.parametrize(
    ("fields", "error", "match"),
    [
        ({"na": 0.0}, ValueError, "na"),
        ({"na": -1.0}, ValueError, "na"),
        ({"na": 1.6}, ValueError, "na must be smaller than immersion_index"),
        ({"na": "1.4"}, TypeError, "na"),
        ({"na": True}, TypeError, "na"),
        ({"wavelength": np.nan}, ValueError, "wavelength"),
        ({"pixel_size": np.inf}, ValueError, "pixel_size"),
        ({"pixel_size": 0}, ValueError, "pixel_size"),
        ({"z_step": -0.1}, ValueError, "z_step"),
        ({"immersion_index": 0.9}, ValueError, "immersion_index"),
        ({"sample_index": 0.5}, ValueError, "sample_index"),
        ({"modality": "sted"}, ValueError, "modality"),
        ({"modality": 3}, TypeError, "modality"),
        ({"modality": "confocal"}, ValueError, "excitation"),
        ({"modality": "airyscan", "excitation": 0.488, "pinhole": 0.0}, ValueError, "pinhole"),
        ({"modality": "confocal", "excitation": 0.488, "pinhole": -1.0}, ValueError, "pinhole"),
        ({"modality": "lightsheet"}, ValueError, "sheet_thickness"),
        ({"reassignment": 1.5}, ValueError, "reassignment"),
        ({"excitation": 0.0}, ValueError, "excitation"),
    ],
)
def test_optics_validation_names_the_field(fields, error, match):
    with pytest.raises(error, match=match):
        Optics(**{"na": 1.4, "wavelength": 0.52, "pixel_size": 0.065, **fields})


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"shape": (8,)}, ValueError, "shape"),
        ({"shape": (0, 8)}, ValueError, "shape"),
        ({"shape": (8.0, 8)}, TypeError, "shape"),
        ({"shape": "8x8"}, TypeError, "shape"),
        ({"shape": (3, 8, 8)}, ValueError, "z_step"),
        ({"model": "gaussian"}, ValueError, "model"),
        ({"depth": -1.0}, ValueError, "depth"),
        ({"oversampling": 0}, ValueError, "oversampling"),
        ({"oversampling": 2.0}, TypeError, "oversampling"),
        ({"aberrations": [0.1, 0.2]}, TypeError, "aberrations"),
        ({"aberrations": {0: 0.1}}, ValueError, "Noll"),
        ({"aberrations": {4: np.nan}}, ValueError, "NaN"),
    ],
)
def test_microscope_psf_rejects_bad_input(kwargs, error, match):
    arguments = {"shape": (8, 8), **kwargs}
    with pytest.raises(error, match=match):
        microscope_psf(Optics(na=1.4, wavelength=0.52, pixel_size=0.065), arguments.pop("shape"), **arguments)


def test_microscope_psf_rejects_unsupported_combinations():
    with pytest.raises(TypeError, match="Optics"):
        microscope_psf({"na": 1.4}, (8, 8))
    water = dataclasses.replace(OIL, sample_index=1.33)
    with pytest.raises(ValueError, match="born-wolf"):
        microscope_psf(water, (8, 8), model="born-wolf", depth=2.0)
    with pytest.raises(ValueError, match="vectorial"):
        microscope_psf(OIL, (8, 8), model="vectorial", aberrations={7: 0.1})
    # zero coefficients and piston keep the fast symmetric path
    same = microscope_psf(OIL, (8, 8), aberrations={1: 0.3, 4: 0.0})
    np.testing.assert_array_equal(same, microscope_psf(OIL, (8, 8)))


# ----------------------------------------------------------------------------- from_tiff


def test_from_tiff_imagej_and_ome(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    imagej = tmp_path / "imagej.tif"
    tifffile.imwrite(imagej, np.zeros((3, 8, 8), np.uint16), imagej=True, resolution=(1 / 65.0, 1 / 65.0),
                     metadata={"unit": "nm", "spacing": 250.0})
    optics = Optics.from_tiff(imagej, na=1.4, wavelength=0.52)
    assert optics.pixel_size == pytest.approx(0.065) and optics.z_step == pytest.approx(0.25)
    assert Optics.from_tiff(imagej, na=1.4, wavelength=0.52, pixel_size=0.1).pixel_size == 0.1  # keywords win

    ome = tmp_path / "ome.ome.tif"
    tifffile.imwrite(ome, np.zeros((3, 8, 8), np.uint16), ome=True,
                     metadata={"axes": "ZYX", "PhysicalSizeX": 80.0, "PhysicalSizeXUnit": "nm",
                               "PhysicalSizeY": 80.0, "PhysicalSizeYUnit": "nm", "PhysicalSizeZ": 0.3})
    optics = Optics.from_tiff(ome, na=1.2, wavelength=0.6, immersion_index=1.33)
    assert optics.pixel_size == pytest.approx(0.08) and optics.z_step == pytest.approx(0.3)

    anisotropic = tmp_path / "anisotropic.tif"
    tifffile.imwrite(anisotropic, np.zeros((8, 8), np.uint16), imagej=True, resolution=(10.0, 5.0),
                     metadata={"unit": "um"})
    with pytest.raises(ValueError, match="anisotropic"):
        Optics.from_tiff(anisotropic, na=1.4, wavelength=0.52)
    with pytest.raises(ValueError, match="na, wavelength"):
        Optics.from_tiff(imagej)
    with pytest.raises(TypeError, match="unknown Optics field"):
        Optics.from_tiff(imagej, na=1.4, wavelength=0.52, numerical_aperture=1.4)
    with pytest.raises(TypeError, match="path"):
        Optics.from_tiff(3, na=1.4, wavelength=0.52)


def test_from_tiff_reads_ome_optics(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">'
        '<Instrument ID="Instrument:0"><Objective ID="Objective:0" LensNA="1.3"/></Instrument>'
        '<Image ID="Image:0"><ObjectiveSettings ID="Objective:0" RefractiveIndex="1.518"/>'
        '<Pixels ID="Pixels:0" DimensionOrder="XYZCT" Type="uint16" SizeX="8" SizeY="8" SizeZ="3" SizeC="1" '
        'SizeT="1" PhysicalSizeX="0.1" PhysicalSizeY="0.1" PhysicalSizeZ="250" PhysicalSizeZUnit="nm">'
        '<Channel ID="Channel:0:0" EmissionWavelength="525" ExcitationWavelength="0.000488" '
        'ExcitationWavelengthUnit="mm" SamplesPerPixel="1"/><TiffData/></Pixels></Image></OME>'
    )
    path = tmp_path / "optics.ome.tif"
    tifffile.imwrite(path, np.zeros((3, 8, 8), np.uint16), description=xml, photometric="minisblack")
    optics = Optics.from_tiff(path, modality="confocal")
    assert (optics.na, optics.immersion_index, optics.sample_index) == (1.3, 1.518, 1.518)
    assert optics.wavelength == pytest.approx(0.525) and optics.excitation == pytest.approx(0.488)
    assert optics.pixel_size == pytest.approx(0.1) and optics.z_step == pytest.approx(0.25)
    assert Optics.from_tiff(path, na=1.2).na == 1.2


@needs_shared
@pytest.mark.parametrize(
    ("relative", "pixel", "z_step"),
    [
        ("deconwolf_dapi_widefield/psf_bornwolf_dw_bw_65x65x41.tif", 0.130, 0.300),  # ImageJ, unit nm
        ("mpicbg_confocal_beads/Bead_Image1_crop.tif", 0.022492, 0.125),  # ImageJ, unit \u00B5m
        ("mpicbg_confocal_beads/DeconvolutionSampleVerticalGrid1AU-crop.tif", 0.021965, 0.125),
        ("sdeconv_celegans_airyscan_2d/celegans.tif", 0.042614, None),  # ImageJ, unit micron, 2-D
    ],
)
def test_from_tiff_reads_the_real_files(relative, pixel, z_step):
    pytest.importorskip("tifffile")
    optics = Optics.from_tiff(SHARED_DATA / relative, na=1.4, wavelength=0.52)
    assert optics.pixel_size == pytest.approx(pixel, rel=1e-4)
    assert optics.z_step == (None if z_step is None else pytest.approx(z_step, rel=1e-6))


@needs_shared
@pytest.mark.parametrize(
    "relative",
    [
        "deconwolf_dapi_widefield/dapi_001.tif",  # no metadata at all
        "pycudadecon_llsm_bead_psf/psf.tif",  # resolution 1/1 without a unit: uncalibrated
        "mpicbg_confocal_beads/psf_beads_averaged_45cube.tif",  # tifffile's JSON description only
    ],
)
def test_from_tiff_asks_for_what_the_real_files_lack(relative):
    pytest.importorskip("tifffile")
    with pytest.raises(ValueError, match="pixel_size not found"):
        Optics.from_tiff(SHARED_DATA / relative, na=1.45, wavelength=0.461)
    optics = Optics.from_tiff(SHARED_DATA / relative, na=1.45, wavelength=0.461, pixel_size=0.13, z_step=0.3)
    assert (optics.pixel_size, optics.z_step) == (0.13, 0.3)
