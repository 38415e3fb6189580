"""3-D RL in place: memory, the chunked in-place FFT, compact Bertero weights, bits across thread counts."""

import tracemalloc

import numpy as np
import pytest

from psfkit import deconvolve
from psfkit.restoration import _operators


def gaussian(shape, sigmas):
    axes = np.meshgrid(*[np.arange(n) - n // 2 for n in shape], indexing="ij")
    psf = np.exp(-sum(a**2 / (2 * s**2) for a, s in zip(axes, sigmas)))
    return psf / psf.sum()


def stack(shape, seed=0):
    rng = np.random.default_rng(seed)
    return rng.poisson(50, shape).astype(np.float32)


def peak_buffers(image, psf, **options):
    # compile outside the trace: the same call once (numba compiles one version per signature and array layout, and
    # a fresh clone has no on-disk cache of them; a smaller warm-up takes other paths and left compiling in the trace)
    deconvolve(image, psf, method="rl", iterations=3, dtype=np.float32, **options)
    tracemalloc.start()
    try:
        deconvolve(image, psf, method="rl", iterations=3, dtype=np.float32, **options)
        return tracemalloc.get_traced_memory()[1] / image.nbytes
    finally:
        tracemalloc.stop()


# The benchmark's proportions (grid = 1.9 stacks): x, the previous x, the FFT buffer and the OTF on the grid,
# plus deconvolve's scaled copy of the data. A point-symmetric PSF has a real OTF (half the size).
@pytest.mark.parametrize(
    ("symmetric", "options", "bound"),
    [(True, {}, 8.0), (False, {}, 9.0), (False, dict(boundary="zero", acceleration=False), 7.0)],
)
def test_peak_memory_of_3d_rl(symmetric, options, bound):
    psf = gaussian((25, 25, 25), (3.0, 1.5, 1.5))
    if not symmetric:
        psf[13, 12, 12] += 0.01
    assert peak_buffers(stack((48, 192, 192)), psf, **options) <= bound


@pytest.mark.parametrize("workers", [1, 2])
def test_in_place_fft_matches_numpy_and_skips_planes(workers):
    shape = (40, 72, 96)  # above the threading size: chunked, shared out to the threads
    fft = _operators.InPlaceFFT(shape, np.float64, workers)
    rng = np.random.default_rng(1)
    x = np.zeros(shape)
    x[5:30] = rng.standard_normal((25,) + shape[1:])
    fft.real[...] = x
    fft.forward(nonzero=slice(5, 30))
    np.testing.assert_allclose(fft.spectrum, np.fft.rfftn(x), rtol=0, atol=1e-9)
    fft.inverse(wanted=slice(10, 20))
    np.testing.assert_allclose(fft.real[10:20] / x.size, x[10:20], rtol=0, atol=1e-12)


def test_in_place_fft_bits_do_not_depend_on_threads():
    shape = (40, 72, 96)
    x = np.random.default_rng(2).random(shape, dtype=np.float32)
    spectra = []
    for workers in (1, 2):
        fft = _operators.InPlaceFFT(shape, np.float32, workers)
        fft.real[...] = x
        fft.forward()
        spectra.append(fft.spectrum.copy())
    np.testing.assert_array_equal(*spectra)


@pytest.mark.parametrize("box", [(slice(4, 20), slice(4, 34), slice(4, 28)), (slice(None),) * 3])
def test_box_column_sums_match_the_adjoint(box):
    grid = (24, 38, 32)
    psf = gaussian((9, 9, 9), (2.0, 1.0, 1.5))
    psf[2, 6, 3] += 0.05  # not symmetric
    op = _operators.Convolution(psf, grid, np.float64)
    mask = np.zeros(grid)
    mask[box] = 1
    expected = op.adjoint(mask, _operators.empty(grid, np.float64))
    table, indices = op.box_column_sums(box)
    np.testing.assert_allclose(table[np.ix_(*indices)], expected, rtol=0, atol=1e-12)


def test_box_column_sums_refuse_a_wrapping_box():
    op = _operators.Convolution(gaussian((9, 9, 9), (2.0, 1.0, 1.0)), (16, 20, 20), np.float64)
    assert op.box_column_sums((slice(2, 14), slice(4, 16), slice(4, 16))) is None


@pytest.mark.parametrize("boundary", ["extend", "zero"])
def test_3d_rl_bits_do_not_depend_on_workers(boundary):
    image, psf = stack((32, 96, 96), seed=3), gaussian((9, 9, 9), (2.0, 1.0, 1.0))
    one, two = (deconvolve(image, psf, method="rl", iterations=4, boundary=boundary, dtype=np.float32, workers=w)
                for w in (1, 2))
    np.testing.assert_array_equal(one, two)
