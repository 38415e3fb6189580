"""Non-blind TV-L2 deconvolution by split Bregman, as the IPOL baselines use it.

Solves ``min_u ||grad u||_{2,1} + (lam / 2) ||k * u - f||^2`` (isotropic TV,
circular convolution) with the split Bregman iteration of Goldstein & Osher
in the form of Getreuer's ``tvreg`` (IPOL 2012): auxiliary ``d = grad u`` with
penalty ``gamma / 2 ||d - grad u - b||^2``, an exact Fourier solve for ``u``,
isotropic shrinkage for ``d`` and a Bregman update of ``b``. Stacks of
images/kernels ``(..., M, N)`` are deconvolved at once.
"""

import numba
import numpy as np

from psfkit import _fft
from psfkit.baselines._common import edgetaper, gradient_otfs


@numba.njit(cache=True, nogil=True)
def _bregman_update(u, d_x, d_y, b_x, b_y, gamma, adjoint):
    """One d/b update of split Bregman on a stack (T, M, N), in place, fused.

    ``d = shrink(grad u + b, 1 / gamma)`` (isotropic), ``b <- grad u + b - d``,
    then ``adjoint = grad^T (d - b)`` for the next u-step. Circular forward
    differences, consistent with the Fourier solve.
    """
    count, rows, cols = u.shape
    threshold = 1.0 / gamma
    for t in range(count):
        for i in range(rows):
            ip = i + 1 if i + 1 < rows else 0
            for j in range(cols):
                jp = j + 1 if j + 1 < cols else 0
                sx = u[t, i, jp] - u[t, i, j] + b_x[t, i, j]
                sy = u[t, ip, j] - u[t, i, j] + b_y[t, i, j]
                magnitude = np.sqrt(sx * sx + sy * sy)
                factor = max(magnitude - threshold, 0.0) / magnitude if magnitude > 0 else 0.0
                d_x[t, i, j] = sx * factor
                d_y[t, i, j] = sy * factor
                b_x[t, i, j] = sx - d_x[t, i, j]
                b_y[t, i, j] = sy - d_y[t, i, j]
        for i in range(rows):
            im = i - 1 if i > 0 else rows - 1
            for j in range(cols):
                jm = j - 1 if j > 0 else cols - 1
                adjoint[t, i, j] = (
                    (d_x[t, i, jm] - b_x[t, i, jm])
                    - (d_x[t, i, j] - b_x[t, i, j])
                    + (d_y[t, im, j] - b_y[t, im, j])
                    - (d_y[t, i, j] - b_y[t, i, j])
                )


def tv_deconvolve(f, kernel, *, lam=3000.0, gamma=30.0, iterations=7):
    """Split Bregman TV deconvolution of ``f`` (..., M, N) by ``kernel`` (circular model)."""
    shape = f.shape[-2:]
    otf = _fft.psf_to_otf(kernel, shape)
    dx, dy = gradient_otfs(shape)
    denominator = lam * np.abs(otf) ** 2 + gamma * (np.abs(dx) ** 2 + np.abs(dy) ** 2)
    # Zero frequency: |grad|^2 = 0 there and |otf| = 1, so the denominator is lam > 0.
    data = lam * np.conj(otf) * _fft.rfftn(f)
    stack = np.ascontiguousarray(f.reshape((-1,) + shape))
    d_x = np.zeros_like(stack)
    d_y = np.zeros_like(stack)
    b_x = np.zeros_like(stack)
    b_y = np.zeros_like(stack)
    adjoint = np.zeros_like(stack)
    u = f
    for it in range(iterations):
        rhs = data if it == 0 else data + gamma * _fft.rfftn(adjoint.reshape(f.shape))
        u = _fft.irfftn(rhs / denominator, f.shape)
        if it + 1 < iterations:
            _bregman_update(np.ascontiguousarray(u.reshape(stack.shape)), d_x, d_y, b_x, b_y, gamma, adjoint)
    return u


def padded_tv_deconvolve(image, kernel, *, pad, pad_mode, tapers, lam, gamma, iterations):
    """Pad, edgetaper with the kernel, TV-deconvolve, crop back (stacks allowed).

    The padding and tapering make the circular model of :func:`tv_deconvolve`
    a good approximation of the real (non-periodic) image.
    """
    widths = [(0, 0)] * (image.ndim - 2) + [(pad, pad), (pad, pad)]
    padded = np.pad(image, widths, mode=pad_mode)
    if kernel.ndim > 2 and padded.ndim == 2:
        padded = np.broadcast_to(padded, kernel.shape[:-2] + padded.shape).copy()
    padded = edgetaper(padded, kernel, passes=tapers)
    u = tv_deconvolve(padded, kernel, lam=lam, gamma=gamma, iterations=iterations)
    return u[..., pad : pad + image.shape[-2], pad : pad + image.shape[-1]]
