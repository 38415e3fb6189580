r"""Richardson–Lucy and RL–TV iterations on a :class:`psfkit.restoration._operators.Problem` (private).

One iteration costs one application of the blur operator and one of its
adjoint (four real FFTs for a single PSF) plus three fused element-wise passes;
no grid-sized array is allocated inside the loop. Memory: plain accelerated RL
keeps x, the previous x and one work buffer that holds the extrapolated point,
``A`` of it, the ratio and ``A^T`` of the ratio in turn (in-place FFTs in 3-D);
the extrapolated point is recomputed in the update instead of kept, and the
Bertero-Boccacci weights of a single PSF are a small table (see
:meth:`psfkit.restoration._operators.Convolution.box_column_sums`).
"""

import math

import numba
import numpy as np

from psfkit.restoration._tv import rl_tv_denominator

# Columns seen by less than this fraction of a full PSF get no update
# (Bertero & Boccacci's threshold, deconwolf's default).
BERTERO_THRESHOLD = 0.01


# The kernels take 3-D arrays (2-D ones get a leading axis of 1, see _lift) with any strides: the work
# buffer is a padded in-place FFT buffer, and the unknown or the data may be a box inside it.


@numba.njit(cache=True, nogil=True)
def _ratio(data, model, background, tiny):  # pragma: no cover - compiled
    """model <- data / max(model + background, tiny), in place."""
    n0, n1, n2 = data.shape
    for i in range(n0):
        for j in range(n1):
            for k in range(n2):
                d = model[i, j, k] + background
                model[i, j, k] = data[i, j, k] / (d if d > tiny else tiny)


@numba.njit(cache=True, nogil=True)
def _ratio_discrepancy(data, model, background, tiny, slope, offset, floor):  # pragma: no cover - compiled
    """:func:`_ratio`, returning the mean of ``(data - m)^2 / max(slope m + offset, floor)``, ``m = model + background``."""
    n0, n1, n2 = data.shape
    total = 0.0
    for i in range(n0):
        for j in range(n1):
            for k in range(n2):
                d = model[i, j, k] + background
                residual = np.float64(data[i, j, k]) - np.float64(d)
                variance = max(slope * np.float64(d) + offset, floor)
                total += residual * residual / variance
                model[i, j, k] = data[i, j, k] / (d if d > tiny else tiny)
    return total / max(data.size, 1)


@numba.njit(cache=True, nogil=True)
def _extrapolate(x, previous, alpha, floor, out):  # pragma: no cover - compiled
    n0, n1, n2 = out.shape
    for i in range(n0):
        for j in range(n1):
            for k in range(n2):
                value = x[i, j, k] + alpha * (x[i, j, k] - previous[i, j, k])
                out[i, j, k] = value if value > floor else floor


@numba.njit(cache=True, nogil=True)
def _update(x, previous, alpha, floor, correction, weight, iz, iy, ix, denominator, use_denominator,
            out):  # pragma: no cover - compiled
    """out <- point * correction * weight [/ denominator]; the point is x extrapolated (as _extrapolate) if alpha > 0.

    Recomputing the point here (same bits) spares a grid-sized array; ``out`` may be ``x`` or ``previous``.
    """
    n0, n1, n2 = out.shape
    row = np.empty(n2, weight.dtype)  # the weights of one row, gathered first: the main loop then vectorises
    for i in range(n0):
        for j in range(n1):
            table_row = weight[iz[i], iy[j]]
            for k in range(n2):
                row[k] = table_row[ix[k]]
            for k in range(n2):
                point = x[i, j, k]
                if alpha > 0:
                    point = point + alpha * (point - previous[i, j, k])
                    point = point if point > floor else floor
                value = point * correction[i, j, k]
                value *= row[k]
                if use_denominator:
                    value /= denominator[i, j, k]
                out[i, j, k] = value


def _lift(array):
    return array[None] if array.ndim == 2 else array


def _zero_outside(array, box):
    """Zero ``array`` outside ``box`` (slices), one slab per side and axis."""
    for axis, part in enumerate(box):
        start, stop, _ = part.indices(array.shape[axis])
        before = (slice(None),) * axis
        array[before + (slice(0, start),)] = 0
        array[before + (slice(stop, None),)] = 0


def bertero_weights(problem):
    r"""``(table, indices)`` of :math:`1 / (A^T M 1)` where it exceeds the threshold, 0 elsewhere (see
    :meth:`Problem.column_sums`), lifted to 3-D; None when it is all 1."""
    columns, indices = problem.column_sums()
    if np.all(np.abs(columns - 1) < 1e-5):
        return None
    weights = np.zeros(columns.shape, problem.dtype)
    seen = columns > BERTERO_THRESHOLD
    weights[seen] = 1 / columns[seen]
    if weights.ndim == 2:
        weights, indices = weights[None], [np.zeros(1, np.intp)] + list(indices)
    return weights, [np.ascontiguousarray(index, dtype=np.intp) for index in indices]


def _start(problem, start, weight):
    x = problem.new()
    x[...] = start
    if weight is not None:
        # Pixels nobody sees stay at 0 instead of keeping the flat start.
        table, indices = weight
        np.copyto(_lift(x), 0, where=(table == 0)[np.ix_(*indices)])
    return x


def _load_point(problem, work, inside, x, previous, point, alpha, floor):
    """Write the point of this iteration (x, or x extrapolated if alpha > 0) into the work buffer; return the array
    the update reads it from: ``x`` (the update recomputes the extrapolation) or ``point``, where one is kept."""
    if problem.unknown is not None:
        _zero_outside(work.real, problem.unknown)
    if alpha > 0 and point is not None:
        _extrapolate(_lift(x), _lift(previous), alpha, floor, _lift(point))
        np.copyto(inside, _lift(point))
        return point
    if alpha > 0:
        _extrapolate(_lift(x), _lift(previous), alpha, floor, inside)
    else:
        np.copyto(inside, _lift(x))
    return x


def richardson_lucy(problem, iterations, *, background=0.0, tv=0.0, tv_epsilon=1.0, acceleration="shb",
                    floor=0.0, tiny=0.0, start=None, monitor=None, tv_weights=None, noise=None, report=None):
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
    noise : (float, float, float), optional
        ``(a, b, floor)``: stop by the discrepancy principle under the
        Poisson-Gaussian model ``Var y = a E[y] + b`` (at least ``floor``):
        after the first iteration whose point ``p`` explains the data to
        the noise level, ``mean((y - A p - b)^2 / Var) <= 1``, i.e. once
        the data are fitted as well as their noise allows. ``iterations``
        is then the most run. None: run ``iterations``.
    report : dict, optional
        Receives ``"iterations"`` (run) and ``"discrepancy"`` (the last
        one measured, with ``noise``).
    """
    data = _lift(problem.data)
    dtype = problem.dtype
    weight = bertero_weights(problem) if problem.normalize else None
    if start is None:
        start = max(float(problem.data.mean()) - background, floor, tiny)
    x = _start(problem, start, weight)
    if weight is None:  # a table of one 1 that every index points to
        weight = np.ones((1, 1, 1), dtype), [np.zeros(n, np.intp) for n in _lift(x).shape]
    table, (iz, iy, ix) = weight
    # Without acceleration x_{k+1} overwrites x_k; with it, x_{k-1}'s buffer receives x_{k+1}.
    previous = None
    if acceleration is not None:
        previous = problem.new()
        previous[...] = x
    # RL-TV's denominator and Biggs-Andrews' gradient read the extrapolated point: it gets its own array
    point = problem.new() if tv or acceleration == "biggs-andrews" else None
    denominator = problem.new() if tv else None
    gradient = problem.new() if acceleration == "biggs-andrews" else None
    gradient_previous = problem.new() if acceleration == "biggs-andrews" else None
    # One grid-sized buffer holds the point, A point, the ratio and A^T ratio in turn (in-place FFTs).
    work = problem.workspace()
    inside = _lift(work.real if problem.unknown is None else work.real[problem.unknown])
    model = _lift(work.real[problem.observed])
    background, tiny, floor = dtype.type(background), dtype.type(tiny), dtype.type(floor)
    alpha, discrepancy, done = 0.0, None, 0
    for k in range(iterations):
        if acceleration == "shb":
            alpha = min(max((k - 1) / (k + 2), 0.0), 1.0)
        at = _load_point(problem, work, inside, x, previous, point, dtype.type(alpha), floor)
        problem.apply_in_place(work)
        if noise is None:
            _ratio(data, model, background, tiny)
        else:
            discrepancy = _ratio_discrepancy(data, model, background, tiny, *map(float, noise))
        _zero_outside(work.real, problem.observed)
        problem.apply_in_place(work, adjoint=True)
        if tv:
            rl_tv_denominator(at, tv, tv_epsilon, denominator, tv_weights)
        new = x if previous is None else previous
        # x's extrapolation is recomputed (same bits) unless it has its own array
        _update(
            _lift(at), _lift(new), dtype.type(alpha) if at is x else dtype.type(0), floor, inside, table, iz, iy, ix,
            _lift(at if denominator is None else denominator), denominator is not None, _lift(new),
        )
        if acceleration == "biggs-andrews":
            np.subtract(new, at, out=gradient)
            if k >= 1:
                norm = float(np.vdot(gradient_previous, gradient_previous))
                alpha = float(np.vdot(gradient, gradient_previous)) / norm if norm > 0 else 0.0
                alpha = min(max(alpha, 0.0), 1.0)
            gradient, gradient_previous = gradient_previous, gradient
        if previous is not None:
            previous, x = x, new
        done = k + 1
        if monitor is not None and monitor(k + 1, x) is False:
            break
        if discrepancy is not None and discrepancy <= 1.0:  # the update from a point that fits is kept
            break
    if report is not None:
        report.update(iterations=done, discrepancy=discrepancy)
    return x


def default_floor(data, background, *, levels=None):
    """Positivity floor of the extrapolated point: a tiny fraction of the mean signal.

    ``levels``: ``(mean, peak)`` of ``|data|`` when known (a tile gets its whole image's).
    """
    mean, peak = levels or (float(np.mean(np.abs(data))), float(np.abs(data).max()))
    level = mean - background
    return 1e-4 * level if level > 0 else 1e-4 * max(peak, math.ulp(1.0))
