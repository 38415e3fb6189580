"""Tests of psfkit.data: procedural specimens and the bundled / scikit-image images."""

import hashlib
import os
import re
import socket

import numpy as np
import pytest
from scipy import ndimage

import psfkit
from psfkit import data
from psfkit.data import (
    celegans,
    cells,
    dead_leaves,
    filaments,
    points,
    random_specimen,
    sample_info,
    skimage_image,
    skimage_images,
)

KINDS = {
    "filaments": filaments,
    "points": points,
    "cells": cells,
    "dead_leaves": dead_leaves,
    "random": random_specimen,
}
SAMPLES = os.path.join(os.path.dirname(data.__file__), "samples")


# --- common contract of the specimens ---------------------------------------


@pytest.mark.parametrize("name", sorted(KINDS))
@pytest.mark.parametrize("shape", [(64, 64), (40, 97), (8, 8)])
def test_shape_dtype_and_range(name, shape):
    image = KINDS[name](shape, rng=0)
    assert image.shape == shape
    assert image.dtype == np.float64
    assert image.min() >= 0 and image.max() <= 1
    assert np.all(np.isfinite(image))


@pytest.mark.parametrize("name", ["filaments", "points", "cells", "random"])
def test_scaled_to_maximum_one(name):
    for seed in range(3):
        assert KINDS[name]((96, 96), rng=seed).max() == 1.0


@pytest.mark.parametrize("name", sorted(KINDS))
def test_determinism(name):
    f = KINDS[name]
    a = f((64, 80), rng=123)
    np.testing.assert_array_equal(a, f((64, 80), rng=123))
    np.testing.assert_array_equal(a, f((64, 80), rng=np.random.default_rng(123)))
    assert not np.array_equal(a, f((64, 80), rng=124))
    g = np.random.default_rng(5)
    assert not np.array_equal(f((64, 80), rng=g), f((64, 80), rng=g))  # a Generator advances


def test_integer_shape_and_empty_specimens():
    assert filaments(32, rng=0).shape == (32, 32)
    for f in (filaments, points, cells):
        np.testing.assert_array_equal(f((32, 32), rng=0, count=0), np.zeros((32, 32)))


# --- each kind looks like what it claims -------------------------------------


def _mask_statistics(image, threshold=0.1):
    mask = image > threshold
    disk = np.hypot(*np.mgrid[-3:4, -3:4]) <= 3
    # share of the bright area that survives an opening by a disc of radius 3 px:
    # ~0 for thin curves, ~1 for large blobs
    survival = ndimage.binary_opening(mask, disk).sum() / max(mask.sum(), 1)
    labels, _ = ndimage.label(mask)
    extent = max((max(a.stop - a.start, b.stop - b.start) for a, b in ndimage.find_objects(labels)), default=0)
    return mask.mean(), survival, extent


def _median_statistics(f, seeds=range(5), **options):
    return np.median([_mask_statistics(f((128, 128), rng=s, **options)) for s in seeds], axis=0)


def test_filaments_are_long_and_thin():
    cover, survival, extent = _median_statistics(filaments)
    assert survival < 0.2 and extent > 60
    # wider filaments cover more
    thin = _median_statistics(filaments, width=1.0)[0]
    wide = _median_statistics(filaments, width=6.0)[0]
    assert wide > 2 * thin


def test_points_are_small_and_sparse():
    cover, survival, extent = _median_statistics(points)
    assert cover < 0.06 and extent < 20
    # point sources only (radius 0): no disc survives the opening
    assert _median_statistics(points, radius=0.0)[1] == 0
    # rings are darker in their centre than discs of the same radius
    ring = points((33, 33), rng=0, count=1, radius=6.0, hollow=1.0)
    disc = points((33, 33), rng=0, count=1, radius=6.0, hollow=0.0)
    centre = np.unravel_index(np.argmax(ndimage.uniform_filter(disc, 9)), disc.shape)
    assert ring[centre] < 0.5 * disc[centre]


def test_cells_are_large_textured_blobs():
    cover, survival, extent = _median_statistics(cells)
    assert survival > 0.6 and extent > 30
    # texture: inside the cells the image is not flat
    flat = cells((128, 128), rng=0, texture=0.0)
    textured = cells((128, 128), rng=0, texture=0.5)  # same cells: texture is drawn last
    interior = ndimage.binary_erosion(flat > 0.05, iterations=4)
    high_pass = lambda x: np.abs(x - ndimage.uniform_filter(x, 3))[interior].mean()  # noqa: E731
    assert high_pass(textured) > 2 * high_pass(flat)


def _spectral_slope(image):
    """Slope of the radially averaged power spectrum in log-log, 0.02-0.25 cycles/pixel."""
    n = image.shape[0]
    power = np.abs(np.fft.fftshift(np.fft.fft2(image - image.mean()))) ** 2
    yy, xx = np.indices(power.shape) - n // 2
    radius = np.hypot(yy, xx).astype(int).ravel()
    profile = np.bincount(radius, power.ravel()) / np.bincount(radius)
    f = np.arange(profile.size) / n
    band = (f >= 0.02) & (f <= 0.25)
    return np.polyfit(np.log(f[band]), np.log(profile[band]), 1)[0]


def test_dead_leaves_cover_the_plane_with_natural_statistics():
    image = dead_leaves((256, 256), rng=0)
    cover, survival, _ = _mask_statistics(image)
    assert cover > 0.8 and survival > 0.9
    # grey levels are uniform in [0, 1]
    assert 0.4 < image.mean() < 0.6
    # scale invariance: a power-law spectrum close to natural images' 1/f^2 to 1/f^3
    slopes = [_spectral_slope(dead_leaves((256, 256), rng=s)) for s in range(3)]
    assert all(-3.0 < s < -2.0 for s in slopes)
    # only large discs: smoother image, fewer edges
    edges = lambda x: np.abs(np.diff(x, axis=1)).mean()  # noqa: E731
    assert edges(dead_leaves((128, 128), rng=0, radius=(16, 64))) < 0.5 * edges(dead_leaves((128, 128), rng=0))


def test_random_specimen_mixes_requested_kinds():
    only_points = [random_specimen((96, 96), rng=s, kinds=("points",), background=0.0) for s in range(3)]
    for image in only_points:
        assert _mask_statistics(image)[0] < 0.1
    leaves = random_specimen((96, 96), rng=0, kinds="dead_leaves", background=0.0)
    assert _mask_statistics(leaves)[0] > 0.5
    # the smooth background lifts the dark regions
    with_background = [random_specimen((96, 96), rng=s, kinds=("points",), background=0.9) for s in range(6)]
    assert max(np.median(image) for image in with_background) > 0.05


def test_default_density_does_not_depend_on_the_image_size():
    """Default object counts scale with the area: a crop looks like a larger image."""
    for f in (points, cells):
        small = np.mean([(f((128, 128), rng=s) > 1e-3).mean() for s in range(12)])
        large = np.mean([(f((384, 384), rng=s) > 1e-3).mean() for s in range(4)])
        assert 0.7 < large / small < 1.4, f.__name__


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: filaments((7, 64)), ValueError, "shape"),
        (lambda: filaments((64, 64, 3)), TypeError, "shape"),
        (lambda: filaments((64.0, 64)), TypeError, "shape"),
        (lambda: filaments("64"), TypeError, "shape"),
        (lambda: filaments(-5), ValueError, "shape"),
        (lambda: filaments(width=(4, 1)), ValueError, "width"),
        (lambda: filaments(width=0), ValueError, "width"),
        (lambda: filaments(width=(1, np.nan)), ValueError, "width"),
        (lambda: filaments(persistence=-1), ValueError, "persistence"),
        (lambda: filaments(count=-1), ValueError, "count"),
        (lambda: filaments(count=2.5), ValueError, "count"),
        (lambda: filaments(rng="x"), TypeError, "rng"),
        (lambda: points(radius=(-1, 2)), ValueError, "radius"),
        (lambda: points(intensity=0), ValueError, "intensity"),
        (lambda: points(hollow=1.5), ValueError, "hollow"),
        (lambda: cells(radius=0), ValueError, "radius"),
        (lambda: cells(texture=-0.1), ValueError, "texture"),
        (lambda: dead_leaves(radius=(0, 5)), ValueError, "radius"),
        (lambda: dead_leaves(exponent=0), ValueError, "exponent"),
        (lambda: random_specimen(kinds=("stars",)), ValueError, "kind"),
        (lambda: random_specimen(kinds=()), ValueError, "kinds"),
        (lambda: random_specimen(max_kinds=0), ValueError, "max_kinds"),
        (lambda: random_specimen(background=1.0), ValueError, "background"),
    ],
)
def test_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


# --- real images -------------------------------------------------------------


def test_celegans_sample():
    image = celegans()
    assert image.shape == (316, 316) and image.dtype == np.float32
    assert image.min() == 185 and image.max() == 6207
    image[:] = 0  # a new array every call: the cache is not corrupted
    assert celegans().max() == 6207


def test_celegans_npz_equals_the_original_tiff():
    tifffile = pytest.importorskip("tifffile")
    original = tifffile.imread(os.path.join(SAMPLES, "celegans.tif"))
    np.testing.assert_array_equal(celegans(), original)


def test_bundled_files_match_their_readme():
    with open(os.path.join(SAMPLES, "README.md"), encoding="utf-8") as readme:
        text = readme.read()
    rows = re.findall(r"\| `([\w.]+)` \| (\d+) \| ([0-9a-f]{64}) \|", text)
    assert {name for name, _, _ in rows} == {"celegans.tif", "celegans.npz"}
    for name, size, digest in rows:
        with open(os.path.join(SAMPLES, name), "rb") as f:
            content = f.read()
        assert len(content) == int(size)
        assert hashlib.sha256(content).hexdigest() == digest
    assert "42.6 nm" in text and "BSD 3-Clause" in text


def test_sample_info():
    info = sample_info("celegans")
    assert info["pixel_size"] == 0.0426 and info["unit"] == "micrometre" and "BSD" in info["licence"]
    info["pixel_size"] = 1.0  # a copy
    assert sample_info("celegans")["pixel_size"] == 0.0426
    assert sample_info("cell")["pixel_size"] == 0.107
    optics = psfkit.Optics(**sample_info("celegans")["optics"])  # what the demo deblurs with
    assert optics.modality == "airyscan" and optics.pixel_size == 0.0426
    sample_info("celegans")["optics"]["na"] = 0.5  # nested values are copies too
    assert sample_info("celegans")["optics"]["na"] == 1.4
    with pytest.raises(ValueError, match="sample"):
        sample_info("lena")


def test_skimage_images_load_offline(monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    names = skimage_images()
    assert {"camera", "cell", "moon", "coins", "text", "page", "brick", "grass", "gravel", "astronaut"} <= set(names)
    for name in names:
        image = skimage_image(name)
        assert image.ndim == 2 and image.dtype == np.float64, name
        assert 0 <= image.min() and image.max() <= 1, name
        assert image.max() > image.min(), name
    assert skimage_image("cell").shape == sample_info("cell")["shape"]


def test_skimage_image_bad_name():
    with pytest.raises(ValueError, match="unknown"):
        skimage_image("cells3d")  # downloaded by pooch, not shipped
    with pytest.raises(ValueError, match="unknown"):
        skimage_image(3)
