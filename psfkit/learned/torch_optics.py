r"""Differentiable Zernike PSFs in PyTorch, the twin of :func:`psfkit.zernike_psf`.

Same model, conventions and discretisation as the NumPy function (the pupil
weights and Zernike basis are the cached NumPy arrays, moved once per device
and dtype), so both return the same PSFs to round-off; this one runs batched
on CPU or CUDA and is differentiable with respect to the coefficients and the
cutoff frequencies, for training and fitting.
"""

import functools
import numbers

import numpy as np
import torch

from psfkit.optics.psf import (
    _DEFAULT_FIRST_INDEX,
    _check_pupil_samples,
    _check_size,
    _pupil_basis,
    _pupil_coordinates,
    _pupil_weights,
    _required_pupil_samples,
)
from psfkit.optics.zernike import _check_indices

__all__ = ["zernike_psf_torch"]

# Cap of the automatic pupil grid: untrained networks can predict huge
# aberrations, whose exact grid would not fit in memory; beyond the cap the
# PSF tails alias (graceful, still differentiable).
_MAX_AUTO_SAMPLES = 256


@functools.lru_cache(maxsize=16)
def _device_arrays(indices, samples, device, dtype):
    """Pupil weights, 2 pi x basis and half grid coordinates on ``device``."""
    half = samples // 2
    weights = _pupil_weights(samples)[:, :half]
    weights = np.concatenate([weights, weights], axis=1)[:, None, :]
    basis = _pupil_basis(indices, samples).reshape(len(indices), samples * samples) * (2 * np.pi)
    nu = _pupil_coordinates(samples)[:half]
    return tuple(torch.from_numpy(np.ascontiguousarray(a)).to(device=device, dtype=dtype) for a in (weights, basis, nu))


def _check_cutoff(cutoff, batch, device, dtype):
    if isinstance(cutoff, torch.Tensor):
        if cutoff.ndim == 0:
            cutoff = cutoff.reshape(1)
        if cutoff.ndim != 1 or cutoff.shape[0] not in (1, batch):
            raise ValueError(f"cutoff must be a float or a tensor of shape ({batch},), got shape {tuple(cutoff.shape)}")
        if not cutoff.is_floating_point():
            cutoff = cutoff.to(dtype)
        cutoff = cutoff.to(device=device, dtype=dtype)
    elif isinstance(cutoff, numbers.Real) and not isinstance(cutoff, bool):
        cutoff = torch.full((1,), float(cutoff), device=device, dtype=dtype)
    else:
        raise TypeError(f"cutoff must be a float or a torch tensor, got {type(cutoff).__name__}")
    host = cutoff.detach().to("cpu", torch.float64).numpy()
    if not np.all(np.isfinite(host)) or np.any(host <= 0) or np.any(host > 0.5):
        raise ValueError(
            f"cutoff must be finite and in (0, 0.5] cycles/pixel, got values in [{host.min():g}, {host.max():g}]"
        )
    return cutoff, host


def zernike_psf_torch(coefficients, cutoff=0.2, *, size=33, indices=None, pupil_samples=None):
    r"""Batch of Zernike PSFs in PyTorch, differentiable, on CPU or CUDA.

    Parameters
    ----------
    coefficients : (B, K) torch.Tensor
        Zernike coefficients in waves (RMS, Noll indexing), float32 or
        float64; the output follows its device and dtype.
    cutoff : float or (B,) torch.Tensor
        Pupil radius :math:`f_c` in cycles/pixel, in ``(0, 0.5]``, shared or
        one per PSF. Gradients flow to a tensor cutoff.
    size : int
        Side of the square output window.
    indices : sequence of int, optional
        Noll indices of the K columns; default ``4, ..., 3 + K`` as in
        :func:`psfkit.zernike_psf`.
    pupil_samples : int, optional
        Pupil grid size; by default chosen as in :func:`psfkit.zernike_psf`
        (which needs the coefficients on the host: pass it explicitly to avoid
        that synchronisation on CUDA), capped at 256.

    Returns
    -------
    psf : (B, size, size) torch.Tensor
        Non-negative PSFs summing to 1, equal to :func:`psfkit.zernike_psf`
        with the same arguments up to round-off.

    See Also
    --------
    psfkit.zernike_psf : model, conventions, numerics and references.

    Notes
    -----
    The computation is the one of :func:`psfkit.zernike_psf`: the pupil field
    :math:`w\,e^{-2i\pi\varphi}` on a band-limited ``M x M`` pupil grid, then two
    matrix Fourier transforms onto the output pixels, each split into even and
    odd parts so that all products are real. Differentiating through the
    cosines and sines of the transform matrices gives the cutoff's gradient.

    Examples
    --------
    >>> import torch
    >>> from psfkit.learned.torch_optics import zernike_psf_torch
    >>> theta = torch.tensor([[0.1, 0.0, 0.05], [0.0, -0.1, 0.0]], requires_grad=True)
    >>> psf = zernike_psf_torch(theta, torch.tensor([0.2, 0.25]), size=16)
    >>> psf.shape, psf.dtype
    (torch.Size([2, 16, 16]), torch.float32)
    >>> psf.sum(dim=(-2, -1))
    tensor([1.0000, 1.0000], grad_fn=<SumBackward1>)
    >>> psf[:, 8, 8].sum().backward()  # gradients w.r.t. the coefficients
    >>> theta.grad.shape
    torch.Size([2, 3])
    """
    if not isinstance(coefficients, torch.Tensor):
        raise TypeError(f"coefficients must be a torch.Tensor of shape (B, K), got {type(coefficients).__name__}")
    if coefficients.ndim != 2 or coefficients.shape[0] == 0:
        raise ValueError(f"coefficients must have shape (B, K) with B >= 1, got {tuple(coefficients.shape)}")
    if coefficients.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"coefficients must be float32 or float64, got {coefficients.dtype}")
    device, dtype = coefficients.device, coefficients.dtype
    batch, n_terms = coefficients.shape
    if indices is None:
        indices = tuple(range(_DEFAULT_FIRST_INDEX, _DEFAULT_FIRST_INDEX + n_terms))
    else:
        indices = _check_indices(indices)
        if len(indices) != n_terms:
            raise ValueError(f"indices has {len(indices)} entries but coefficients have {n_terms} columns")
    size = _check_size(size)
    samples = _check_pupil_samples(pupil_samples)
    cutoff, host_cutoff = _check_cutoff(cutoff, batch, device, dtype)
    host_coef = coefficients.detach().to("cpu", torch.float64).numpy()
    if not np.all(np.isfinite(host_coef)):
        raise ValueError("coefficients contain NaN or infinite values")
    if samples is None:
        samples = min(_MAX_AUTO_SAMPLES, _required_pupil_samples(host_coef, indices, host_cutoff, size)[0])
    half = samples // 2
    weights, basis, nu = _device_arrays(indices, samples, device, dtype)

    # transform matrices, rows: cos then sin of 2 pi u_m x_k for the negative half
    x = torch.arange(size, device=device, dtype=dtype) - size // 2
    angle = (2 * np.pi) * cutoff[:, None, None] * nu[None, :, None] * x[None, None, :]
    fourier = torch.cat([torch.cos(angle), torch.sin(angle)], dim=1)  # (1 or B, M, size)

    phase = (coefficients @ basis).reshape(batch, samples, samples)
    cos, sin = torch.cos(phase), torch.sin(phase)  # field = w (cos - i sin)
    cos_m, sin_m = torch.flip(cos[..., half:], dims=(-1,)), torch.flip(sin[..., half:], dims=(-1,))
    cos_h, sin_h = cos[..., :half], sin[..., :half]
    work = torch.stack(
        [torch.cat([cos_h + cos_m, sin_m - sin_h], dim=-1), torch.cat([-(sin_h + sin_m), cos_m - cos_h], dim=-1)],
        dim=2,
    )  # (B, M, 2, M): even/odd column parts of (real, imag)
    work = work * weights
    rows = (work.reshape(batch, 2 * samples, samples) @ fourier).reshape(batch, samples, 2, size)
    mirror = torch.flip(rows[:, half:], dims=(1,))
    even = rows[:, :half] + mirror
    odd = rows[:, :half] - mirror
    stacked = torch.cat([even, torch.stack([odd[:, :, 1], -odd[:, :, 0]], dim=2)], dim=1)
    field = fourier.transpose(-1, -2) @ stacked.reshape(batch, samples, 2 * size)
    intensity = field[..., :size] ** 2 + field[..., size:] ** 2
    return intensity / intensity.sum(dim=(-2, -1), keepdim=True)


def psf_to_otf(psfs, shape):
    """Real-FFT transfer functions of (..., h, w) centred PSFs on a grid of ``shape``.

    The torch twin of :func:`psfkit._fft.psf_to_otf`: the PSF centre (index
    ``(h // 2, w // 2)``) goes to the origin, so convolution does not translate.
    """
    h, w = psfs.shape[-2:]
    padded = torch.zeros(psfs.shape[:-2] + tuple(shape), dtype=psfs.dtype, device=psfs.device)
    padded[..., :h, :w] = psfs
    padded = torch.roll(padded, shifts=(-(h // 2), -(w // 2)), dims=(-2, -1))
    return torch.fft.rfft2(padded)
