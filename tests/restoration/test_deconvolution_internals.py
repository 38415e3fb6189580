"""Tests of the private building blocks of psfkit.deconvolve: operators, TV, Haar, noise fit."""

import numpy as np
import pytest
from skimage.restoration import denoise_tv_chambolle

from psfkit.restoration import _haar

from psfkit.restoration import _operators

from psfkit.restoration import _tv
from psfkit.restoration._regularization import noise_model
from psfkit.forward.space_varying import ProductConvolution, grid_weights


def random_psfs(count, size, seed=0):
    psfs = np.random.default_rng(seed).random((count,) + size)
    return psfs / psfs.sum(axis=tuple(range(1, psfs.ndim)), keepdims=True)


@pytest.mark.parametrize("order", ["mask-first", "mask-last"])
@pytest.mark.parametrize("strategy", ["windowed", "fourier"])
@pytest.mark.parametrize("psf_size", [(7, 7), (6, 9)])
def test_product_convolution_matches_reference_and_is_adjoint(order, strategy, psf_size):
    # The reference operator of psfkit.forward.space_varying, periodic, is the same circular model.
    shape = (50, 62)
    psfs = random_psfs(12, psf_size)
    weights = grid_weights(shape, (3, 4))
    reference = ProductConvolution(psfs, weights, order=order, boundary="periodic")
    op = _operators.ProductConvolution(_operators.odd_psf(psfs, lead=1), weights, shape, np.float64, order=order,
                                       strategy=strategy)
    assert op.strategy == strategy
    rng = np.random.default_rng(1)
    x, y = rng.random(shape), rng.random(shape)
    ax, aty = _operators.empty(shape, np.float64), _operators.empty(shape, np.float64)
    op.forward(x, ax)
    op.adjoint(y, aty)
    np.testing.assert_allclose(ax, reference.apply(x), atol=1e-12)
    np.testing.assert_allclose(aty, reference.adjoint(y), atol=1e-12)
    assert np.vdot(ax, y) == pytest.approx(np.vdot(x, aty), rel=1e-12)


def test_windowed_operator_wraps_around_small_grids():
    # Boxes plus the PSF reach larger than the grid: pieces are folded modulo the grid.
    shape = (12, 14)
    psfs = _operators.odd_psf(random_psfs(4, (9, 9), seed=3), lead=1)
    weights = grid_weights(shape, (2, 2))
    a = _operators.ProductConvolution(psfs, weights, shape, np.float64, strategy="windowed")
    b = _operators.ProductConvolution(psfs, weights, shape, np.float64, strategy="fourier")
    x = np.random.default_rng(0).random(shape)
    out_a, out_b = np.empty(shape), np.empty(shape)
    np.testing.assert_allclose(a.forward(x, out_a), b.forward(x, out_b), atol=1e-12)
    np.testing.assert_allclose(a.adjoint(x, out_a), b.adjoint(x, out_b), atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_problem_on_the_extended_field_is_adjoint(dtype):
    # <M A x, r> = <x, A^T M r> for the masked operator deconvolve builds.
    shape, reach = (40, 44), 4
    grid = _operators.fft_shape((shape[0] + 2 * reach, shape[1] + 2 * reach))
    weights = np.pad(grid_weights(shape, (4, 4)), [(0, 0), (reach, grid[0] - shape[0] - reach),
                                                    (reach, grid[1] - shape[1] - reach)], mode="edge")
    op = _operators.ProductConvolution(random_psfs(16, (9, 9)), weights, grid, dtype)
    observed = (slice(reach, reach + shape[0]), slice(reach, reach + shape[1]))
    problem = _operators.Problem(op, np.ones(shape, dtype), observed, None, observed)
    rng = np.random.default_rng(2)
    x = rng.random(grid).astype(dtype)
    r = problem.new_grid(0.0)
    r[observed] = rng.random(shape)
    ax = problem.forward(x, problem.new_grid())
    atr = problem.adjoint(r)
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    assert np.vdot(ax[observed], r[observed]) == pytest.approx(np.vdot(x, atr), rel=tolerance)
    # Schur's bound is an upper bound of ||MA||^2
    assert problem.lipschitz() >= problem._power_iteration() / 1.05 * (1 - 1e-6)


def test_single_psf_operator_is_circular_convolution():
    shape = (16, 18)
    psf = random_psfs(1, (5, 5))[0]
    x = np.zeros(shape)
    x[0, 0] = 1
    op = _operators.Convolution(psf, shape, np.float64)
    out = op.forward(x, _operators.empty(shape, np.float64))
    expected = np.zeros(shape)
    for i in range(5):
        for j in range(5):
            expected[(i - 2) % shape[0], (j - 2) % shape[1]] = psf[i, j]
    np.testing.assert_allclose(out, expected, atol=1e-14)


def test_odd_psf_keeps_the_centre():
    psf = np.zeros((4, 6))
    psf[2, 3] = 1  # centre n // 2
    odd = _operators.odd_psf(psf)
    assert odd.shape == (5, 7)
    assert odd[2, 3] == 1


# ------------------------------------------------------------------- TV


def numpy_gradient(x):
    return np.stack([np.diff(x, axis=a, append=np.take(x, [-1], axis=a)) for a in range(x.ndim)])


def numpy_divergence(p):
    # minus the adjoint of the forward difference with zero last difference
    out = np.zeros(p.shape[1:])
    for a in range(p.shape[0]):
        q = np.moveaxis(p[a], a, 0).copy()
        q[-1] = 0
        d = q.copy()
        d[1:] -= q[:-1]
        out += np.moveaxis(d, 0, a)
    return out


@pytest.mark.parametrize("shape", [(9, 11), (5, 6, 7)])
def test_rl_tv_denominator_matches_formula_and_stays_positive(shape):
    rng = np.random.default_rng(0)
    x = rng.random(shape) * 100
    lam, eps = 0.24 / len(shape) * 2 * 0.999 / 2, 0.1
    g = numpy_gradient(x)
    norm = np.sqrt((g**2).sum(axis=0) + eps**2)
    expected = 1 - lam * numpy_divergence(g / norm)
    out = _tv.rl_tv_denominator(x, lam, eps, np.empty(shape))
    np.testing.assert_allclose(out, expected, atol=1e-12)
    # |div| <= 2d for unit vectors, so lambda < 1/(2d) keeps it positive even on a checkerboard
    board = np.indices(shape).sum(axis=0) % 2 * 1e3
    bound = 1 / (2 * len(shape))
    assert _tv.rl_tv_denominator(board, 0.999 * bound, 1e-9, np.empty(shape)).min() > 0


def test_divergence_is_minus_adjoint_of_gradient():
    rng = np.random.default_rng(1)
    x, p = rng.random((8, 10)), rng.random((2, 8, 10))
    p[0, -1, :] = 0
    p[1, :, -1] = 0
    div = _tv.fgp_primal(np.zeros((8, 10)), p, 1.0, -np.inf, np.empty((8, 10)))
    assert np.vdot(numpy_gradient(x), p) == pytest.approx(-np.vdot(x, div), rel=1e-12)
    assert _tv.tv_norm(x) == pytest.approx(np.sqrt((numpy_gradient(x) ** 2).sum(axis=0)).sum())


def test_tv_prox_matches_chambolle():
    rng = np.random.default_rng(2)
    v = np.kron(rng.random((4, 4)), np.ones((8, 8))) + 0.1 * rng.standard_normal((32, 32))
    dual = np.zeros((2, 32, 32))
    ours = _tv.tv_prox(v, 0.1, dual, iterations=300, lower=-np.inf)
    reference = denoise_tv_chambolle(v, weight=0.1, eps=1e-8, max_num_iter=2000)
    assert np.abs(ours - reference).max() < 2e-3


# ------------------------------------------------------------------ Haar


@pytest.mark.parametrize("shape", [(16, 16), (13, 22), (7, 9, 10)])
def test_haar_is_orthonormal(shape):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    levels = _haar.default_levels(shape, coarsest=2)
    c = _haar.haar_forward(x, levels)
    assert np.linalg.norm(c) == pytest.approx(np.linalg.norm(x), rel=1e-12)
    np.testing.assert_allclose(_haar.haar_inverse(c, levels), x, atol=1e-12)
    constant = _haar.haar_forward(np.ones(shape), levels)
    mask = _haar.detail_mask(shape, levels)
    assert np.abs(constant[mask]).max() < 1e-12  # constants live in the approximation


def test_haar_prox_without_bound_is_soft_threshold():
    rng = np.random.default_rng(3)
    v = rng.standard_normal((16, 20))
    levels = 2
    mask = _haar.detail_mask(v.shape, levels)
    out = _haar.haar_prox(v, 0.3, np.zeros_like(v), mask, levels, lower=-np.inf)
    c = _haar.haar_forward(v, levels)
    c[mask] = np.sign(c[mask]) * np.maximum(np.abs(c[mask]) - 0.3, 0)
    np.testing.assert_allclose(out, _haar.haar_inverse(c, levels), atol=1e-12)


# ----------------------------------------------------------------- noise


@pytest.mark.parametrize("shape", [(192, 192), (3, 160, 160)])
def test_noise_model_recovers_poisson_gaussian_parameters(shape):
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 200, shape[-1])
    clean = np.broadcast_to(ramp, shape)
    noisy = rng.poisson(clean / 2.0) * 2.0 + 6.0 * rng.standard_normal(shape)  # Var = 2 E + 36
    slope, offset = noise_model(noisy)
    assert slope == pytest.approx(2.0, rel=0.15)
    assert offset == pytest.approx(36.0, rel=0.3)


def test_small_images_get_a_gaussian_noise_estimate():
    noisy = 5.0 + 0.5 * np.random.default_rng(1).standard_normal((16, 16))
    slope, offset = noise_model(noisy)
    assert slope == 0
    assert offset == pytest.approx(0.25, rel=0.35)
