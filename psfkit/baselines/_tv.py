"""Non-blind TV-L2 deconvolution by split Bregman, as the IPOL baselines use it.

Solves ``min_u ||grad u||_{2,1} + (lam / 2) ||k * u - f||^2`` (isotropic TV,
circular convolution) with the split Bregman iteration of Goldstein & Osher
in the form of Getreuer's ``tvreg`` (IPOL 2012): auxiliary ``d = grad u`` with
penalty ``gamma / 2 ||d - grad u - b||^2``, an exact Fourier solve for ``u``,
isotropic shrinkage for ``d`` and a Bregman update of ``b``. Stacks of
images/kernels ``(..., M, N)`` are deconvolved at once.
"""

import numpy as np

from .. import _fft
from ._common import edgetaper, gradient_otfs


def _grad(u):
    # circular forward differences, consistent with the Fourier solve
    return np.roll(u, -1, axis=-1) - u, np.roll(u, -1, axis=-2) - u


def _grad_adjoint(gx, gy):
    return (np.roll(gx, 1, axis=-1) - gx) + (np.roll(gy, 1, axis=-2) - gy)


def tv_deconvolve(f, kernel, *, lam=3000.0, gamma=30.0, iterations=7):
    """Split Bregman TV deconvolution of ``f`` (..., M, N) by ``kernel`` (circular model)."""
    shape = f.shape[-2:]
    otf = _fft.psf_to_otf(kernel, shape)
    dx, dy = gradient_otfs(shape)
    denominator = lam * np.abs(otf) ** 2 + gamma * (np.abs(dx) ** 2 + np.abs(dy) ** 2)
    # Zero frequency: |grad|^2 = 0 there and |otf| = 1, so the denominator is lam > 0.
    data = lam * np.conj(otf) * _fft.rfftn(f)
    u = f.copy()
    bx = np.zeros_like(f)
    by = np.zeros_like(f)
    d_x = np.zeros_like(f)
    d_y = np.zeros_like(f)
    for it in range(iterations):
        if it == 0:
            rhs = data
        else:
            rhs = data + gamma * _fft.rfftn(_grad_adjoint(d_x - bx, d_y - by))
        u = _fft.irfftn(rhs / denominator, f.shape)
        gx, gy = _grad(u)
        sx = gx + bx
        sy = gy + by
        magnitude = np.sqrt(sx * sx + sy * sy)
        factor = np.maximum(magnitude - 1.0 / gamma, 0.0) / np.maximum(magnitude, 1e-300)
        d_x = sx * factor
        d_y = sy * factor
        bx = sx - d_x
        by = sy - d_y
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
