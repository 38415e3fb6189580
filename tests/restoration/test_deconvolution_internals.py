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


def assert_masked_adjoint(problem, grid, observed, shape, dtype, seed):
    """<M A x, r> = <x, A^T M r> for random x on the grid and r on the observed region."""
    rng = np.random.default_rng(seed)
    x = rng.random(grid).astype(dtype)
    r = problem.new_grid(0.0)
    r[observed] = rng.random(shape)
    ax = problem.forward(x, problem.new_grid())
    atr = problem.adjoint(r)
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    assert np.vdot(ax[observed], r[observed]) == pytest.approx(np.vdot(x, atr), rel=tolerance)


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
    assert_masked_adjoint(problem, grid, observed, shape, dtype, seed=2)
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


# ------------------------------------------------------- 3-D operators


def gaussian_psf_3d(shape=(7, 5, 5), sigmas=(1.5, 1.0, 1.0)):
    axes = np.meshgrid(*[np.arange(n) - n // 2 for n in shape], indexing="ij")
    psf = np.exp(-sum(a**2 / (2 * s**2) for a, s in zip(axes, sigmas)))
    return psf / psf.sum()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_problem_3d_on_the_extended_field_is_adjoint(dtype):
    # <M A x, r> = <x, A^T M r> on a (Z, Y, X) extended field, reach on all three axes.
    shape, psf = (8, 20, 18), gaussian_psf_3d()
    reach = tuple(n // 2 for n in psf.shape)
    grid = _operators.fft_shape(tuple(n + 2 * r for n, r in zip(shape, reach)))
    op = _operators.Convolution(psf, grid, dtype)
    observed = tuple(slice(r, r + n) for n, r in zip(shape, reach))
    problem = _operators.Problem(op, np.ones(shape, dtype), observed, None, observed)
    assert_masked_adjoint(problem, grid, observed, shape, dtype, seed=4)
    # the Bertero-Boccacci columns A^T M 1: 1 deep inside, below 1 within the PSF's reach of every face
    ones = problem.new_grid(0.0)
    ones[observed] = 1
    columns = np.array(problem.adjoint(ones))
    centre = tuple(s.start + (s.stop - s.start) // 2 for s in observed)
    assert columns[centre] == pytest.approx(1, abs=1e-5)
    for axis in range(3):
        face = list(centre)
        face[axis] = observed[axis].start - 1  # just outside the top face: sees part of the PSF
        assert 0 < columns[tuple(face)] < 1


def test_convolution_3d_conserves_flux_and_is_circular():
    shape, psf = (8, 10, 12), gaussian_psf_3d()
    op = _operators.Convolution(psf, shape, np.float64)
    x = np.random.default_rng(5).random(shape)
    ax = op.forward(x, _operators.empty(shape, np.float64))
    assert ax.sum() == pytest.approx(x.sum(), rel=1e-12)
    aty = op.adjoint(x, _operators.empty(shape, np.float64))
    assert aty.sum() == pytest.approx(x.sum(), rel=1e-12)
    delta = np.zeros(shape)
    delta[0, 0, 0] = 1  # wraps around on all three axes
    out = op.forward(delta, _operators.empty(shape, np.float64))
    assert out[-3, -2, -2] == pytest.approx(psf[0, 0, 0], abs=1e-14)


def weighted_gradient(x, w):
    return numpy_gradient(x) * np.asarray(w).reshape((-1,) + (1,) * x.ndim)


def weighted_divergence(p, w):
    return numpy_divergence(p * np.asarray(w).reshape((-1,) + (1,) * (p.ndim - 1)))


@pytest.mark.parametrize("shape", [(9, 11), (5, 6, 7)])
def test_weighted_tv_terms_match_formulas(shape):
    """Anisotropic voxels: weighted differences, their adjoint divergence, the TV norm and RL-TV's bound."""
    rng = np.random.default_rng(6)
    spacing = (0.3, 0.13, 0.1)[-len(shape):]
    w = _tv.axis_weights(spacing, len(shape))
    assert w.max() == 1 and w.min() > 0
    np.testing.assert_array_equal(_tv.axis_weights(None, len(shape)), np.ones(len(shape)))
    x = rng.random(shape) * 100
    lam, eps = 0.1, 0.1
    g = weighted_gradient(x, w)
    norm = np.sqrt((g**2).sum(axis=0) + eps**2)
    expected = 1 - lam * weighted_divergence(g / norm, w)
    np.testing.assert_allclose(_tv.rl_tv_denominator(x, lam, eps, np.empty(shape), w), expected, atol=1e-12)
    # weights 1 are the unweighted operators, bit for bit
    np.testing.assert_array_equal(_tv.rl_tv_denominator(x, lam, eps, np.empty(shape), np.ones(len(shape))),
                                  _tv.rl_tv_denominator(x, lam, eps, np.empty(shape)))
    p = rng.random((len(shape),) + shape)
    for a in range(len(shape)):
        np.moveaxis(p[a], a, 0)[-1] = 0
    div = _tv.fgp_primal(np.zeros(shape), p, 1.0, -np.inf, np.empty(shape), w)
    assert np.vdot(weighted_gradient(x, w), p) == pytest.approx(-np.vdot(x, div), rel=1e-12)
    assert _tv.tv_norm(x, w) == pytest.approx(np.sqrt((g**2).sum(axis=0)).sum())
    board = np.indices(shape).sum(axis=0) % 2 * 1e3
    bound = 1 / (2 * len(shape))
    assert _tv.rl_tv_denominator(board, 0.999 * bound, 1e-9, np.empty(shape), w).min() > 0
