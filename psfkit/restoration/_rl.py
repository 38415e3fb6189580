r"""Richardson–Lucy and RL–TV iterations on a :class:`psfkit.restoration._operators.Problem` (private).

One iteration costs one application of the blur operator and one of its
adjoint (four real FFTs for a single PSF) plus two or three fused element-wise
passes; nothing else is allocated inside the loop.
"""

import math

import numba
import numpy as np

from psfkit.restoration._tv import rl_tv_denominator

# Columns seen by less than this fraction of a full PSF get no update
# (Bertero & Boccacci's threshold, deconwolf's default).
BERTERO_THRESHOLD = 0.01


@numba.njit(cache=True, nogil=True)
def _ratio_2d(data, model, background, tiny, out):  # pragma: no cover - compiled
    n0, n1 = data.shape
    for i in range(n0):
        for j in range(n1):
            d = model[i, j] + background
            out[i, j] = data[i, j] / (d if d > tiny else tiny)


@numba.njit(cache=True, nogil=True)
def _ratio_3d(data, model, background, tiny, out):  # pragma: no cover - compiled
    n0, n1, n2 = data.shape
    for i in range(n0):
        for j in range(n1):
            for k in range(n2):
                d = model[i, j, k] + background
                out[i, j, k] = data[i, j, k] / (d if d > tiny else tiny)


@numba.njit(cache=True, nogil=True)
def _update(point, correction, weight, denominator, use_weight, use_denominator, out):  # pragma: no cover
    for i in range(out.size):
        value = point[i] * correction[i]
        if use_weight:
            value *= weight[i]
        if use_denominator:
            value /= denominator[i]
        out[i] = value


@numba.njit(cache=True, nogil=True)
def _extrapolate(x, previous, alpha, floor, out):  # pragma: no cover - compiled
    for i in range(out.size):
        value = x[i] + alpha * (x[i] - previous[i])
        out[i] = value if value > floor else floor


def _ratio(data, model, background, tiny, out):
    kernel = _ratio_2d if data.ndim == 2 else _ratio_3d
    kernel(data, model, background, tiny, out)


def bertero_weights(problem):
    r"""Return :math:`1 / (A^T M 1)` where it exceeds the threshold, 0 elsewhere; None when it is all 1."""
    mask = problem.new_grid(0.0)
    mask[problem.observed] = 1
    columns = np.array(problem.adjoint(mask, problem.new_grid()), copy=True)  # temporaries, freed on return
    if np.all(np.abs(columns - 1) < 1e-5):
        return None
    weights = np.zeros_like(columns)
    seen = columns > BERTERO_THRESHOLD
    weights[seen] = 1 / columns[seen]
    return weights


def richardson_lucy(problem, iterations, *, background=0.0, tv=0.0, tv_epsilon=1.0, acceleration="shb",
                    floor=0.0, tiny=0.0, start=None, monitor=None, tv_weights=None):
    r"""Run (accelerated) RL or RL–TV and return the estimate on the unknown's grid.

    Parameters
    ----------
    problem : Problem
    iterations : int
    background : float
        Known additive background :math:`b` of the model :math:`A x + b`.
    tv : float
        RL–TV weight :math:`\lambda` (0 for plain RL); the caller checks
        :math:`\lambda < 1/(2d)`.
    tv_epsilon : float
        Smoothing of :math:`|\nabla x|` in the TV normal, in intensity units.
    acceleration : {None, "shb", "biggs-andrews"}
    floor : float
        Lower bound of the extrapolated point (pixels at 0 would freeze).
    tiny : float
        Lower bound of :math:`A x + b` in the ratio.
    start : float or ndarray
        Initial estimate (a flat value by default: the mean of the data).
    monitor : callable, optional
        ``monitor(iteration, x)`` called after each iteration; returning
        False stops.
    tv_weights : ndarray, optional
        Per-axis weights of the TV differences (anisotropic voxels, see
        :func:`psfkit.restoration._tv.axis_weights`); None: all 1.
    """
    data = problem.data
    dtype = problem.dtype
    weight = bertero_weights(problem) if problem.normalize else None
    x = problem.new()
    if start is None:
        start = max(float(data.mean()) - background, floor, tiny)
    x[...] = start
    if weight is not None:
        # Pixels nobody sees stay at 0 instead of keeping the flat start.
        x[weight == 0] = 0
    previous = problem.new()
    previous[...] = x
    point = problem.new() if acceleration is not None else None
    model = problem.new_grid()
    ratio = problem.new_grid(0.0)
    denominator = problem.new() if tv else None
    gradient = problem.new() if acceleration == "biggs-andrews" else None
    gradient_previous = problem.new() if acceleration == "biggs-andrews" else None
    dummy = np.ones(1, dtype=dtype)
    flat = lambda a: a.reshape(-1)  # noqa: E731 - contiguous work arrays
    alpha = 0.0
    for k in range(iterations):
        if acceleration == "shb":
            alpha = min(max((k - 1) / (k + 2), 0.0), 1.0)
        if acceleration is not None and alpha > 0:
            _extrapolate(flat(x), flat(previous), dtype.type(alpha), dtype.type(floor), flat(point))
            at = point
        else:
            at = x
        problem.forward(at, model)
        _ratio(data, model[problem.observed], dtype.type(background), dtype.type(tiny), ratio[problem.observed])
        correction = problem.adjoint(ratio, model)  # A x is no longer needed: its buffer takes A^T ratio
        if not correction.flags.c_contiguous:
            correction = np.ascontiguousarray(correction)
        if tv:
            rl_tv_denominator(at, tv, tv_epsilon, denominator, tv_weights)
        # x_{k-1} is no longer needed: its buffer receives x_{k+1}
        new = previous
        _update(
            flat(at), flat(correction),
            dummy if weight is None else flat(weight),
            dummy if denominator is None else flat(denominator),
            weight is not None, denominator is not None, flat(new),
        )
        if acceleration == "biggs-andrews":
            np.subtract(new, at, out=gradient)
            if k >= 1:
                norm = float(np.vdot(gradient_previous, gradient_previous))
                alpha = float(np.vdot(gradient, gradient_previous)) / norm if norm > 0 else 0.0
                alpha = min(max(alpha, 0.0), 1.0)
            gradient, gradient_previous = gradient_previous, gradient
        previous, x = x, new
        if monitor is not None and monitor(k + 1, x) is False:
            break
    return x


def default_floor(data, background):
    """Positivity floor of the extrapolated point: a tiny fraction of the mean signal."""
    level = float(np.mean(np.abs(data))) - background
    return 1e-4 * level if level > 0 else 1e-4 * max(float(np.abs(data).max()), math.ulp(1.0))
