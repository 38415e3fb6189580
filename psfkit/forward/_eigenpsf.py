"""Flux-exact eigen-PSF compression of a family of PSFs (PCA by SVD)."""

import numpy as np


def eigen_psfs(psfs, rank):
    r"""Mean PSF plus the leading principal components of a family of PSFs.

    Parameters
    ----------
    psfs : (K, D) ndarray
        Flattened PSFs, each summing to 1.
    rank : int
        Number of basis kernels returned, ``1 <= rank``; at most
        ``1 + min(K, D)`` are meaningful and more are dropped.

    Returns
    -------
    basis : (r, D) ndarray
        ``basis[0]`` is the mean PSF (sum 1); the others are orthonormal
        eigen-PSFs of zero sum.
    coefficients : (K, r) ndarray
        ``psfs[k] ~= coefficients[k] @ basis``, with ``coefficients[:, 0] = 1``.

    Notes
    -----
    Centring before the SVD is what keeps the flux exact at every rank: all
    residuals ``psfs[k] - mean`` sum to zero, so their principal directions
    lie in the zero-sum subspace (made exact by removing their round-off
    mean) and only the mean PSF carries flux, with coefficient 1. A plain SVD
    of the raw PSFs spreads the flux over several components and a truncation
    changes it (deepinv's ``ProductConvolutionBlurGenerator`` leaks ~5 %).
    The truncation is the best rank-``r - 1`` approximation of the residuals
    in the Frobenius norm (Eckart-Young).
    """
    mean = psfs.mean(axis=0)
    residuals = psfs - mean
    u, s, vt = np.linalg.svd(residuals, full_matrices=False)
    n = min(rank - 1, vt.shape[0])
    u, s, vt = u[:, :n], s[:n], vt[:n]
    # Deterministic signs (the SVD's are arbitrary): largest entry positive.
    signs = np.sign(vt[np.arange(n), np.argmax(np.abs(vt), axis=1)])
    signs[signs == 0] = 1
    vt = vt * signs[:, None]
    u = u * signs[None, :]
    vt = vt - vt.mean(axis=1, keepdims=True)
    basis = np.concatenate([mean[None], vt], axis=0)
    coefficients = np.concatenate([np.ones((psfs.shape[0], 1), psfs.dtype), u * s], axis=1)
    return basis, coefficients
