"""Decorrelation analysis (psfkit.metrics.decorrelation_resolution): closed forms, blur, real data, speed."""

import pathlib
import time

import numpy as np
import pytest

import psfkit
from psfkit.data import celegans, filaments
from psfkit.metrics import decorrelation_resolution

DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"


def band_limited(k0, shape=(256, 256), *, seed=0, noise=0.05):
    """White noise keeping only frequencies below ``k0`` (normalised to Nyquist), plus weak white noise."""
    rng = np.random.default_rng(seed)
    f = np.hypot(np.fft.fftfreq(shape[0])[:, None], np.fft.fftfreq(shape[1])[None, :])
    image = np.fft.ifft2(np.fft.fft2(rng.standard_normal(shape)) * (2 * f < k0)).real
    return image + noise * image.std() * rng.standard_normal(shape)


# ----------------------------------------------------------------------------- closed forms


@pytest.mark.parametrize("k0", [0.2, 0.5, 0.8])
@pytest.mark.parametrize("shape", [(256, 256), (160, 300)])
def test_cutoff_of_band_limited_noise_is_its_band(k0, shape):
    resolution, info = decorrelation_resolution(band_limited(k0, shape), return_info=True)
    assert info["kc"] == pytest.approx(k0, rel=0.1)
    assert resolution == pytest.approx(2 / info["kc"])
    assert info["k0"] == pytest.approx(k0, rel=0.1)  # the unfiltered curve alone finds it too: no background


def test_resolution_falls_as_the_band_widens():
    values = [decorrelation_resolution(band_limited(k0, seed=3)) for k0 in (0.15, 0.3, 0.45, 0.6, 0.75, 0.9)]
    assert np.all(np.diff(values) < 0), values


def test_noise_and_flat_images_have_no_cut_off():
    # white noise correlates with its phases more and more up to Nyquist: no peak, no finite resolution
    noise = np.random.default_rng(0).standard_normal((128, 128))
    resolution, info = decorrelation_resolution(noise, return_info=True)
    assert resolution == np.inf and info["kc"] == 0
    assert decorrelation_resolution(np.full((32, 32), 7.0)) == np.inf


def test_wider_psf_gives_larger_resolution():
    specimen = filaments((256, 256), rng=1)
    rng = np.random.default_rng(2)
    values = []
    for cutoff in (0.4, 0.25, 0.15, 0.08):  # pupil cut-off, cycles/pixel: ever wider Airy patterns
        blurred = psfkit.convolve(specimen, psfkit.airy_psf(cutoff=cutoff, size=65))
        counts = rng.poisson(1000 * blurred / blurred.max() + 10).astype(float)
        values.append(decorrelation_resolution(counts))
    assert np.all(np.diff(values) > 0), values
    # never finer than the optics allow: the OTF ends at 2 * cutoff cycles/pixel, a period of 1 / (2 * cutoff)
    assert values[-1] >= 1 / (2 * 0.08)


# ----------------------------------------------------------------------------- conventions


def test_units_scale_and_dtype():
    image = band_limited(0.4, (128, 128))
    pixels = decorrelation_resolution(image)
    assert decorrelation_resolution(image, pixel_size=0.065) == pytest.approx(0.065 * pixels)
    # d(r) is a correlation: the same cut-off for any intensity scale or offset, float32 or not
    assert decorrelation_resolution(1e-200 * image) == pixels
    assert decorrelation_resolution(1e200 * image + 1e201) == pytest.approx(pixels)
    assert decorrelation_resolution(image.astype(np.float32)) == pytest.approx(pixels, rel=0.02)
    assert decorrelation_resolution(image.tolist()) == pixels


def test_stack_is_analysed_plane_by_plane():
    stack = np.stack([band_limited(k0, (96, 128), seed=k) for k, k0 in enumerate((0.3, 0.6))])
    original = stack.copy()
    resolution, info = decorrelation_resolution(stack, n_radii=30, n_highpass=6, return_info=True)
    np.testing.assert_array_equal(stack, original)
    assert resolution.shape == (2,)
    for plane, value in zip(stack, resolution):
        assert decorrelation_resolution(plane, n_radii=30, n_highpass=6) == value
    assert info["kc"].shape == (2,)
    assert info["curves"].shape == (2, 2, 6, 30)
    assert info["radii"].shape == (2, 2, 30) and info["d0"].shape == (2, 30)
    assert info["peaks"].shape == info["amplitudes"].shape == info["sigmas"].shape == (2, 2, 6)


def test_info_records_the_analysis():
    resolution, info = decorrelation_resolution(band_limited(0.5), return_info=True)
    radii, peaks, amplitudes = info["radii"], info["peaks"], info["amplitudes"]
    assert radii[0, 0] == 0 and radii[0, -1] == 1
    assert np.all((peaks >= 0) & (peaks < 1)) and np.all((amplitudes >= 0) & (amplitudes <= 1))
    valid = peaks[amplitudes >= 0.05]
    assert info["kc"] == pytest.approx(max(valid.max(), info["k0"]))
    assert np.all(np.diff(info["sigmas"][0]) < 0)  # ever stronger high-pass filters
    assert np.all(np.abs(info["curves"]) <= 1 + 1e-12)


@pytest.mark.parametrize(
    "image, error",
    [
        (np.full((32, 32), np.nan), ValueError),
        (np.ones(64), ValueError),
        (np.ones((2, 2, 32, 32)), ValueError),
        (np.ones((15, 64)), ValueError),
        (np.ones((32, 32), dtype=bool), TypeError),
        (np.ones((32, 32)) + 1j, ValueError),
        (np.full((32, 32), "1"), TypeError),
        (None, TypeError),
    ],
)
def test_bad_images_are_named(image, error):
    with pytest.raises(error, match="image"):
        decorrelation_resolution(image)


@pytest.mark.parametrize(
    "option, value, error",
    [
        ("pixel_size", 0.0, ValueError),
        ("pixel_size", np.nan, ValueError),
        ("pixel_size", "65 nm", TypeError),
        ("n_radii", 5, ValueError),
        ("n_radii", 50.0, TypeError),
        ("n_highpass", 10**6, ValueError),
        ("return_info", 1, TypeError),
    ],
)
def test_bad_options_are_named(option, value, error):
    with pytest.raises(error, match=option):
        decorrelation_resolution(np.ones((32, 32)), **{option: value})


def test_a_512_image_takes_well_under_a_second():
    image = band_limited(0.5, (512, 512))
    decorrelation_resolution(image)  # first call: imports, FFT set-up
    best = min(_timed(decorrelation_resolution, image) for _ in range(3))
    assert best < 0.5, best


def _timed(function, *args):
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


# ----------------------------------------------------------------------------- real data
#
# Reference values: NanoPyx's calculate_decorr_analysis on the same images. The
# implementations differ (see the Notes of decorrelation_resolution), so the
# agreement asked is 15 %; psfkit's own figures are pinned closer, as measured.


def test_celegans_airyscan_matches_nanopyx():
    resolution = decorrelation_resolution(celegans(), pixel_size=42.6)  # nm
    assert resolution == pytest.approx(192, rel=0.15)
    assert resolution == pytest.approx(190, rel=0.02)


def test_dapi_widefield_in_focus_plane_matches_nanopyx():
    stack = _read_shared("deconwolf_dapi_widefield/dapi_001.tif")
    plane = int(np.argmax(stack.astype(np.float64).var(axis=(1, 2))))
    assert plane == 19
    resolution = decorrelation_resolution(stack[plane], pixel_size=130)
    assert resolution == pytest.approx(822, rel=0.15)
    assert resolution == pytest.approx(741, rel=0.02)


def test_confocal_grid_projection_matches_nanopyx():
    stack = _read_shared("mpicbg_confocal_beads/DeconvolutionSampleVerticalGrid1AU-crop.tif")
    resolution = decorrelation_resolution(stack.max(axis=0), pixel_size=22.49)
    assert resolution == pytest.approx(205, rel=0.15)
    assert resolution == pytest.approx(209, rel=0.02)


def _read_shared(name):
    path = DATA / name
    if not path.is_file():
        pytest.skip(f"real data not present: {path}")
    return pytest.importorskip("tifffile").imread(path)
