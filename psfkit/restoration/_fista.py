r"""Monotone FISTA (MFISTA) for TV- or Haar-regularised least squares (private).

Solves :math:`\min_{x \ge 0} \tfrac12\|M(Ax) - (y - b)\|^2 + \lambda R(x)` with
:math:`R` the isotropic TV or the :math:`\ell_1` norm of orthonormal Haar
detail coefficients. Step :math:`1/L` with :math:`L \ge \|MA\|^2` from Schur's
test; the proximal map is computed by the dual FGP, warm-started, so MFISTA's
monotone step (keep the better of the prox output and the previous iterate)
guards against its inexactness. Each iteration costs one application of
:math:`A` and one of :math:`A^T`: :math:`A y_{k+1}` is the same linear
combination of stored :math:`A x_k, A z_k, A x_{k-1}` as :math:`y_{k+1}`.
"""

import math

import numpy as np

from psfkit.restoration import _haar
from psfkit.restoration._tv import dual_shape, tv_norm, tv_prox

# Inner dual iterations of the proximal map (warm-started, so few suffice).
PROX_ITERATIONS = 10


class _Prior:
    def __init__(self, kind, shape, dtype, weights=None):
        self.kind = kind
        self.weights = weights
        if kind == "tv":
            self.dual = np.zeros(dual_shape(shape), dtype=dtype)
            self.scratch = np.zeros_like(self.dual)
        else:
            self.levels = _haar.default_levels(shape)
            self.mask = _haar.detail_mask(shape, self.levels)
            self.dual = np.zeros(shape, dtype=dtype)

    def value(self, x):
        if self.kind == "tv":
            return tv_norm(x, self.weights)
        c = _haar.haar_forward(x, self.levels)
        return float(np.abs(c[self.mask]).sum())

    def prox(self, v, mu, out):
        if self.kind == "tv":
            return tv_prox(v, mu, self.dual, iterations=PROX_ITERATIONS, out=out, scratch=self.scratch,
                           weights=self.weights)
        return _haar.haar_prox(v, mu, self.dual, self.mask, self.levels, iterations=PROX_ITERATIONS, out=out)


def fista(problem, iterations, lam, *, background=0.0, prior="tv", start=None, monitor=None, tv_weights=None,
          lipschitz=None, schedule=None):
    """Run MFISTA and return the estimate on the unknown's grid (``lipschitz``: a bound of ``||M A||^2``).

    MFISTA keeps a prox point only if it lowers the objective, a decision on the whole image. ``schedule`` (a
    list) receives those decisions, one bool per iteration; given non-empty, they are replayed instead (a tile
    of a big image follows the whole image's path, :mod:`psfkit.restoration.tiled`).
    """
    replay = list(schedule) if schedule else None
    if schedule is not None and replay is None:
        schedule.clear()
    data = problem.data - problem.dtype.type(background)
    obs = problem.observed
    lipschitz = problem.lipschitz() if lipschitz is None else lipschitz
    mu = lam / lipschitz
    regulariser = _Prior(prior, problem.shape, problem.dtype, tv_weights)
    grid = problem.new_grid()
    residual = problem.new_grid(0.0)

    def blur(x):
        problem.forward(x, grid)
        return np.array(grid[obs], copy=True)

    def objective(blurred, x):
        return 0.5 * float(np.vdot(blurred - data, blurred - data).real) + lam * regulariser.value(x)

    x = problem.new()
    x[...] = 0 if start is None else start
    np.maximum(x, 0, out=x)
    ax = blur(x)
    value = objective(ax, x)
    x_prev, ax_prev = x.copy(), ax.copy()
    y, ay = x.copy(), ax.copy()
    z, v = problem.new(), problem.new()
    t = 1.0
    for k in range(iterations):
        np.subtract(ay, data, out=residual[obs])
        gradient = problem.adjoint(residual)
        np.multiply(gradient, -1 / lipschitz, out=v)
        v += y
        regulariser.prox(v, mu, z)
        az = blur(z)
        if replay is not None:
            accept = replay[k]
        else:
            value_z = objective(az, z)
            accept = value_z <= value
            if schedule is not None:
                schedule.append(accept)
        t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
        if accept:
            # x_k = z_k: momentum on (x_k - x_{k-1}) only
            x_prev, x, z = x, z, x_prev
            ax_prev, ax = ax, az
            value = value_z if replay is None else value
            beta = (t - 1) / t_next
            np.subtract(x, x_prev, out=y)
            y *= beta
            y += x
            np.subtract(ax, ax_prev, out=ay)
            ay *= beta
            ay += ax
        else:
            # x_k = x_{k-1}: step towards the rejected prox point only
            x_prev[...] = x
            ax_prev[...] = ax
            gamma = t / t_next
            np.subtract(z, x, out=y)
            y *= gamma
            y += x
            ay = ax + gamma * (az - ax)
        t = t_next
        if monitor is not None and monitor(k + 1, x) is False:
            break
    return x
