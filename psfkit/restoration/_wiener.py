r"""Wiener–Tikhonov deconvolution (private).

Minimises :math:`\|M(Ax) - (y - b)\|^2 + \lambda\|\nabla x\|^2`. For a single
PSF on a periodic (or reflect-padded, hence periodic) grid the minimiser is the
one-shot filter

.. math:: \hat x = \mathcal F^{-1}\left[\frac{\overline{\hat h}\,\hat y}{|\hat h|^2 + \lambda |\hat d|^2}\right],
   \qquad |\hat d(\omega)|^2 = \sum_a 4 \sin^2(\omega_a / 2).

Otherwise (masked data term of the field extension, space-varying blur) the
normal equations :math:`(A^T M A + \lambda \nabla^T\nabla)x = A^T M (y - b)` are
solved by conjugate gradients preconditioned with that filter built on the mean
PSF, which converges in a few tens of iterations.
"""

import math

import numpy as np

from psfkit.restoration import _operators

# Relative residual at which the preconditioned CG stops early.
CG_TOLERANCE = 1e-4


def gradient_symbol(shape, dtype):
    r""":math:`|\hat d|^2` on the real-FFT grid of ``shape``."""
    total = np.zeros(_operators.spectrum_shape(shape), dtype=dtype)
    for axis, n in enumerate(shape):
        freq = np.fft.rfftfreq(n) if axis == len(shape) - 1 else np.fft.fftfreq(n)
        term = 4 * np.sin(np.pi * freq) ** 2
        total += term.reshape([-1 if a == axis else 1 for a in range(len(shape))])
    return total


def _filter(psf, shape, lam, dtype):
    """Complex filter conj(H) / (|H|^2 + lam |D|^2) with the inverse FFT's 1/N folded in."""
    otf = _operators.transfer_function(psf, shape, np.float64) * math.prod(shape)
    denominator = np.abs(otf) ** 2 + lam * gradient_symbol(shape, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = np.where(denominator > 0, np.conj(otf) / denominator, 0)
    return (gain / math.prod(shape)).astype(_operators.complex_dtype(dtype))


def _inverse_symbol(psf, shape, lam, dtype, floor):
    otf = _operators.transfer_function(psf, shape, np.float64) * math.prod(shape)
    denominator = np.maximum(np.abs(otf) ** 2 + lam * gradient_symbol(shape, np.float64), floor)
    return (1 / (denominator * math.prod(shape))).astype(_operators.complex_dtype(dtype))


def neumann_laplacian(x, out):
    r""":math:`\nabla^T\nabla x` (forward differences, zero on the last sample)."""
    out.fill(0)
    for axis in range(x.ndim):
        g = np.diff(x, axis=axis)
        lead = [slice(None)] * x.ndim
        lag = [slice(None)] * x.ndim
        lead[axis] = slice(None, -1)
        lag[axis] = slice(1, None)
        out[tuple(lead)] -= g
        out[tuple(lag)] += g
    return out


def circular_laplacian(x, out):
    r""":math:`\nabla^T\nabla x` with circular differences (the symbol :math:`|\hat d|^2` of the one-shot filter)."""
    np.multiply(x, 2 * x.ndim, out=out)
    for axis in range(x.ndim):
        out -= np.roll(x, 1, axis=axis)
        out -= np.roll(x, -1, axis=axis)
    return out


def wiener_circulant(problem, lam, *, background=0.0):
    """One-shot filter for a single PSF on a periodic grid."""
    op = problem.op
    plan = _operators.RealFFT(problem.grid_shape, problem.dtype, problem.workers)
    spectrum = _operators.empty(plan.spectrum_shape, plan.cdtype)
    data = problem.data - problem.dtype.type(background)
    plan.forward(np.ascontiguousarray(data), spectrum)
    spectrum *= _filter(op.mean_psf, problem.grid_shape, lam, problem.dtype)
    out = problem.new()
    return plan.inverse(spectrum, out)


def wiener_cg(problem, lam, iterations, *, background=0.0, monitor=None, schedule=None):
    """Preconditioned CG on the masked normal equations.

    CG's steps are inner products over the whole image. ``schedule`` (a list) receives them, ``(step, ratio)``
    per iteration; given non-empty, they are replayed instead, with the same number of iterations (a tile of a
    big image then applies the whole image's polynomial of the operator, :mod:`psfkit.restoration.tiled`).
    """
    replay = list(schedule) if schedule else None
    if schedule is not None and replay is None:
        schedule.clear()
    dtype = problem.dtype
    obs = problem.observed
    shape = problem.shape
    plan = _operators.RealFFT(shape, dtype, problem.workers)
    spectrum = _operators.empty(plan.spectrum_shape, plan.cdtype)
    # The floor keeps the preconditioner bounded where the OTF vanishes and lam = 0.
    inverse = _inverse_symbol(problem.op.mean_psf, shape, lam, dtype, floor=max(lam, 1e-6) * 1e-3 + 1e-8)

    def precondition(r, out):
        plan.forward(np.ascontiguousarray(r), spectrum)
        np.multiply(spectrum, inverse, out=spectrum)
        return plan.inverse(spectrum, out)

    grid = problem.new_grid()
    masked = problem.new_grid(0.0)
    laplacian = problem.new()
    # The periodic models (periodic, reflect-padded) use circular differences,
    # like the one-shot filter; the extended field has no wrap-around.
    penalty = circular_laplacian if problem.periodic else neumann_laplacian

    def normal(x, out):
        problem.forward(x, grid)
        masked[obs] = grid[obs]
        out[...] = problem.adjoint(masked)
        if lam:
            penalty(x, laplacian)
            np.multiply(laplacian, lam, out=laplacian)
            np.add(out, laplacian, out=out)
        return out

    masked[obs] = problem.data - dtype.type(background)
    rhs = np.array(problem.adjoint(masked), copy=True)
    masked.fill(0)
    x = problem.new(0.0)
    r = rhs.copy()
    zvec = precondition(r, problem.new())
    p = zvec.copy()
    rz = float(np.vdot(r, zvec))
    target = CG_TOLERANCE * float(np.linalg.norm(rhs))
    ap = problem.new()
    for k in range(iterations if replay is None else len(replay)):
        normal(p, ap)
        if replay is None:
            curvature = float(np.vdot(p, ap))
            if not curvature > 0:
                break
            step = rz / curvature
        else:
            step, ratio = replay[k]
        x += dtype.type(step) * p
        r -= dtype.type(step) * ap
        if replay is None:
            ratio = None  # None: converged, the last step
            if float(np.linalg.norm(r)) > target:
                precondition(r, zvec)
                rz_next = float(np.vdot(r, zvec))
                ratio, rz = rz_next / rz, rz_next
            if schedule is not None:
                schedule.append((step, ratio))
        elif ratio is not None:
            precondition(r, zvec)
        if monitor is not None and monitor(k + 1, x) is False:
            break
        if ratio is None:
            break
        p *= dtype.type(ratio)
        p += zvec
    return x
