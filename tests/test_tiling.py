"""Dask arrays in, dask arrays out: block plus halo tiling, settings decided once, no seams."""

import numpy as np
import pytest

da = pytest.importorskip("dask.array")

import psfkit  # noqa: E402
import psfkit.restoration.tiled as tiled  # noqa: E402
from psfkit.restoration.deconvolution import _deconvolve  # noqa: E402
from psfkit.tiling import central_window, map_blocks_with_halo  # noqa: E402
import psfkit.tiling._blocks as blocks  # noqa: E402


@pytest.fixture(scope="module")
def scene():
    """A 256^2 blurred noisy image of a real-like specimen and its 17^2 PSF."""
    specimen = psfkit.data.random_specimen((256, 256), rng=3)
    psf = psfkit.zernike_psf({4: 0.1, 7: 0.06}, cutoff=0.22, size=17)
    image = psfkit.simulate_acquisition(specimen, psf, gain=300, read_noise=0.01, rng=4)
    return image, psf


def seam_error(tiled_result, whole, chunk, band=4, border=17):
    """Max |tiled - whole| / mean in +-``band`` px bands around the tile edges, and elsewhere, ``border`` px
    or more inside the image (the unknowns beyond its edge are weakly determined: FISTA and Wiener move there)."""
    inside = (slice(border, -border),) * whole.ndim
    diff = np.abs(tiled_result - whole) / float(np.mean(whole))
    near = np.zeros(diff.shape, bool)
    for axis, n in enumerate(diff.shape):
        for edge in range(chunk, n, chunk):
            index = [slice(None)] * diff.ndim
            index[axis] = slice(edge - band, edge + band)
            near[tuple(index)] = True
    near, diff = near[inside], diff[inside]
    return float(diff[near].max()), float(diff[~near].max())


def test_each_block_sees_its_halo_and_keeps_its_chunks():
    data = np.arange(40 * 30, dtype=float).reshape(40, 30)
    seen = []

    def func(piece, window):
        seen.append(window)
        np.testing.assert_array_equal(piece, data[window])
        return piece * 2

    out = map_blocks_with_halo(func, da.from_array(data, chunks=(16, 10)), (3, 2), dtype=float)
    assert out.chunks == ((16, 16, 8), (10, 10, 10))
    np.testing.assert_array_equal(out.compute(scheduler="synchronous"), 2 * data)
    assert slice(13, 35) in [w[0] for w in seen] and slice(0, 19) in [w[0] for w in seen]


def test_a_small_last_block_gets_a_piece_the_kernel_fits_in():
    data = np.ones((40, 40))
    shapes = []

    def func(piece, window):
        shapes.append(piece.shape)
        return piece

    map_blocks_with_halo(func, da.from_array(data, chunks=36), (2, 2), dtype=float, min_shape=(17, 17)).compute()
    assert min(min(s) for s in shapes) >= 17


def test_a_task_reads_only_its_block_and_halo():
    # a source whose blocks count their reads: each tile must touch its own block and its neighbours only
    reads = []

    def counted(block, block_info=None):
        reads.append(tuple(block_info[0]["chunk-location"]))
        return block

    source = da.from_array(np.ones((64, 64)), chunks=16).map_blocks(counted, dtype=float)
    map_blocks_with_halo(lambda p, w: p, source, (4, 4), dtype=float).compute(scheduler="synchronous")
    # 16 tiles: 4 corner tiles read 4 blocks, 8 edge tiles 6, 4 inner tiles 9 -> 100 reads, never the whole image
    assert len(reads) == 4 * 4 + 8 * 6 + 4 * 9


def test_the_central_window_keeps_the_planes_of_a_stack():
    assert central_window((10, 20), 1000) == (slice(0, 10), slice(0, 20))
    window = central_window((64, 2048, 2048), 1 << 24)
    assert window[0] == slice(0, 64) and window[1].stop - window[1].start == 512
    assert np.prod([w.stop - w.start for w in central_window((4096, 4096), 1 << 22)]) <= 1 << 22


@pytest.mark.parametrize("boundary", ["reflect", "constant", "zero"])
def test_convolve_of_a_dask_array_is_lazy_and_exact(boundary):
    image = np.random.default_rng(0).random((90, 70)).astype(np.float32)
    psf = psfkit.airy_psf(cutoff=0.2, size=15)
    lazy = psfkit.convolve(da.from_array(image, chunks=32), psf, boundary=boundary)
    assert isinstance(lazy, da.Array) and lazy.chunks == ((32, 32, 26), (32, 32, 6)) and lazy.dtype == np.float32
    np.testing.assert_allclose(lazy.compute(), psfkit.convolve(image, psf, boundary=boundary), atol=1e-6)


def test_nothing_is_computed_before_compute():
    from dask import delayed

    def boom():
        raise AssertionError("computed too early")

    image = da.from_delayed(delayed(boom)(), shape=(64, 64), dtype=float)
    assert isinstance(psfkit.convolve(image, np.ones((3, 3))), da.Array)
    assert isinstance(psfkit.simulate_acquisition(image, np.ones((3, 3)), gain=5.0, rng=0), da.Array)


def test_simulate_acquisition_of_a_dask_array_is_reproducible_with_the_right_noise():
    image = np.full((128, 128), 50.0)
    psf = np.ones((5, 5))
    first = psfkit.simulate_acquisition(da.from_array(image, chunks=48), psf, gain=2.0, read_noise=1.0, rng=7)
    again = psfkit.simulate_acquisition(da.from_array(image, chunks=48), psf, gain=2.0, read_noise=1.0, rng=7)
    first, again = first.compute(), again.compute()
    np.testing.assert_array_equal(first, again)
    # Var = mean / gain + read_noise^2 = 26, in every block (blocks draw their own noise, not the same noise)
    assert abs(first.var() - 26.0) < 1.5 and abs(first.mean() - 50.0) < 0.2
    assert not np.array_equal(first[:48, :48], first[48:96, 48:96])


def test_simulate_acquisition_needs_a_full_scale_to_quantise_a_dask_array():
    with pytest.raises(ValueError, match="full_scale"):
        psfkit.simulate_acquisition(da.ones((64, 64), chunks=32), np.ones((3, 3)), bits=8, rng=0)
    counts = psfkit.simulate_acquisition(da.ones((64, 64), chunks=32), np.ones((3, 3)), bits=8, full_scale=2.0,
                                         output="counts", rng=0)
    assert counts.dtype == np.uint8 and counts.compute().max() == 128


# RL-TV runs 10 iterations: with more, its result itself moves with round-off (a relative change of 1e-12 in the
# data moved 30 iterations by 6e-7 of the mean, 1e-9 by 3e-5), which a tile's other FFT sizes supply
@pytest.mark.parametrize("method, iterations", [("rl", 30), ("rl-tv", 10), ("fista", 30), ("wiener", 30)])
def test_tiled_deconvolution_has_no_seams(scene, method, iterations):
    image, psf = scene
    whole = psfkit.deconvolve(image, psf, method=method, iterations=iterations)
    result = psfkit.deconvolve(da.from_array(image, chunks=64), psf, method=method, iterations=iterations)
    assert isinstance(result, da.Array) and result.chunks == ((64,) * 4, (64,) * 4)
    near, far = seam_error(result.compute(), whole, 64)
    assert near <= 1e-3 and far <= 1e-3, (near, far)


def test_the_unrolled_network_is_tiled_with_the_whole_images_normalisation(scene):
    # its normalisation, noise map floor and noise level come from the whole image; near the image's edge the
    # network's periodic inverse wraps the tile, not the image, so only the interior is compared
    image, psf = scene
    whole = psfkit.deconvolve(image, psf, method="unrolled")
    result = psfkit.deconvolve(da.from_array(image, chunks=128), psf, method="unrolled").compute()
    near, far = seam_error(result, whole, 128, border=33)
    assert near <= 1e-3 and far <= 1e-3, (near, far)


def test_the_seam_check_sees_a_seam(scene):
    # the same check fails without a halo: the test above can fail
    image, psf = scene
    whole = psfkit.deconvolve(image, psf, method="rl", iterations=30)
    original = tiled.halo_depth
    try:
        tiled.halo_depth = lambda kernel, shape, factor: tuple(0 for _ in shape)
        result = psfkit.deconvolve(da.from_array(image, chunks=64), psf, method="rl", iterations=30).compute()
    finally:
        tiled.halo_depth = original
    near, far = seam_error(result, whole, 64)
    assert near > 1e-2


def test_automatic_settings_are_the_whole_images(scene):
    # the window the settings are decided on is the whole image here: the same iterations and weight as NumPy's
    image, psf = scene
    report = {}
    whole = psfkit.deconvolve(image, psf)  # rl-tv, automatic weight and stop
    options = {**psfkit.deconvolve.__kwdefaults__}
    result = tiled.deconvolve_dask(da.from_array(image, chunks=64), psf, options, _deconvolve, report=report)
    assert report["window"] == (slice(0, 256), slice(0, 256)) and report["iterations"] < 100
    diff = np.abs(result.compute() - whole) / np.ptp(image)
    assert diff.max() <= 1e-3


def test_settings_decided_on_a_window_are_the_same_for_every_tile_count(scene, monkeypatch):
    # a big image (here: a decision window of 128^2 for a 256^2 image): tiles of 64 and of 128 agree
    image, psf = scene
    monkeypatch.setitem(tiled.DECISION_SIZE, 2, 128 * 128)
    small = psfkit.deconvolve(da.from_array(image, chunks=64), psf).compute()
    large = psfkit.deconvolve(da.from_array(image, chunks=128), psf).compute()
    assert np.abs(small - large).max() / np.ptp(image) <= 1e-3


def test_a_psf_grid_is_cut_to_each_tile(scene):
    image, psf = scene
    grid = np.stack([np.stack([psf, psf.T]), np.stack([psf.T, psf[::-1]])])
    whole = psfkit.deconvolve(image, grid, method="rl", iterations=20)
    result = psfkit.deconvolve(da.from_array(image, chunks=64), grid, method="rl", iterations=20).compute()
    assert np.abs(result - whole).max() / np.mean(whole) <= 1e-3


def test_a_stack_is_tiled_laterally_without_seams():
    optics = psfkit.Optics(na=1.2, wavelength=0.52, pixel_size=0.1, z_step=0.3, immersion_index=1.33)
    psf = psfkit.microscope_psf(optics, (7, 13, 13))
    specimen = np.random.default_rng(1).random((12, 96, 96))
    stack = psfkit.simulate_acquisition(specimen * 100, psf, gain=50, rng=2).astype(np.float32)
    whole = psfkit.deconvolve(stack, psf, method="rl", iterations=10)
    result = psfkit.deconvolve(da.from_array(stack, chunks=(12, 48, 48)), psf, method="rl", iterations=10)
    assert result.dtype == np.float32
    diff = np.abs(result.compute() - whole) / np.ptp(stack)
    assert diff[:, 13:-13, 13:-13].max() <= 1e-3


def test_deblur_of_a_dask_array_identifies_once_and_stays_lazy(scene):
    image, _ = scene
    restored, psf, info = psfkit.deblur(da.from_array(image, chunks=128), method="rl-tv", return_info=True)
    whole, whole_psf, whole_info = psfkit.deblur(image, method="rl-tv", return_info=True)
    assert isinstance(restored, da.Array)
    np.testing.assert_array_equal(psf, whole_psf)
    assert info["iterations"] == whole_info["iterations"] and info["confidence"] is None
    assert np.abs(restored.compute() - whole).max() / np.ptp(image) <= 1e-3


def test_deblur_of_a_dask_array_with_a_psf_map(scene):
    # the map is estimated on the whole image, cut to each tile's window
    image, _ = scene
    restored, psf = psfkit.deblur(da.from_array(image, chunks=128), grid=(2, 2), method="rl-tv")
    whole, whole_psf = psfkit.deblur(image, grid=(2, 2), method="rl-tv")
    assert psf.shape == (2, 2, 33, 33)
    np.testing.assert_array_equal(psf, whole_psf)
    assert np.abs(restored.compute() - whole).max() / np.ptp(image) <= 1e-3


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"boundary": "periodic"}, "periodic"),
        ({"acceleration": "biggs-andrews"}, "biggs-andrews"),
        ({"callback": lambda i, x: None}, "callback"),
    ],
)
def test_options_a_tile_cannot_replay_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        psfkit.deconvolve(da.ones((64, 64), chunks=32), np.ones((5, 5)), method="rl", **kwargs)


@pytest.mark.parametrize(
    "image, error",
    [
        (da.ones((4, 64, 64, 2), chunks=32), ValueError),
        (da.ones((64, 64), chunks=32, dtype=complex), ValueError),
        (da.ones((64, 64), chunks=32, dtype=bool), TypeError),
        (da.ones((0, 64), chunks=32), ValueError),
    ],
)
def test_bad_dask_images_are_refused_by_name(image, error):
    for call in (lambda: psfkit.deconvolve(image, np.ones((3, 3))), lambda: psfkit.deblur(image)):
        with pytest.raises(error, match="image"):
            call()


def test_bad_values_surface_when_computed():
    image = da.from_array(np.full((64, 64), np.nan), chunks=32)
    with pytest.raises(ValueError, match="image"):
        psfkit.deconvolve(image, np.ones((3, 3)), method="rl", iterations=2).compute()
