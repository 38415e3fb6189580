"""Quality metrics for estimated PSFs and restored images."""

import numpy as np

from psfkit._validation import as_float_array, check_positive

__all__ = ["psf_snr", "psnr"]


def _normalised(psf, name):
    psf = as_float_array(psf, name, ndim=(2, 3), dtype=np.float64)
    total = psf.sum(axis=(-2, -1), keepdims=True)
    if np.any(total == 0):
        raise ValueError(f"{name} must have a non-zero sum")
    return psf / total


def _shift(psf, dy, dx):
    # zero-filled integer translation (not circular: a shifted PSF loses what leaves the window)
    out = np.zeros_like(psf)
    h, w = psf.shape[-2:]
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[..., yd, xd] = psf[..., ys, xs]
    return out


def psf_snr(estimate, reference, *, align=False, max_shift=3):
    r"""Signal-to-noise ratio of an estimated PSF, in dB.

    Parameters
    ----------
    estimate, reference : (M, N) or (B, M, N) ndarray
        PSFs on the same window; both are normalised to sum 1 first.
    align : bool, optional
        If True, report the best value over integer translations of the
        estimate by up to ``max_shift`` pixels and over its point reflection
        (the ambiguities blind methods cannot resolve). The estimate is
        renormalised after shifting.
    max_shift : int, optional
        Largest translation tried when ``align`` is True.

    Returns
    -------
    snr : float or (B,) ndarray
        :math:`10 \log_{10}(\|h\|^2 / \|h - \hat h\|^2)`.

    Examples
    --------
    >>> import numpy as np
    >>> h = np.zeros((5, 5)); h[2, 2] = 1
    >>> g = np.zeros((5, 5)); g[2, 3] = 1
    >>> float(psf_snr(g, h)) < 0, float(psf_snr(g, h, align=True)) > 100
    (True, True)
    """
    estimate = _normalised(estimate, "estimate")
    reference = _normalised(reference, "reference")
    if estimate.shape != reference.shape:
        raise ValueError(f"estimate and reference must have the same shape, got {estimate.shape} and {reference.shape}")
    check_positive(max_shift, "max_shift", strict=False, integer=True)
    energy = np.sum(reference**2, axis=(-2, -1))
    candidates = [estimate]
    if align:
        candidates = []
        for flipped in (estimate, estimate[..., ::-1, ::-1]):
            for dy in range(-max_shift, max_shift + 1):
                for dx in range(-max_shift, max_shift + 1):
                    moved = _shift(flipped, dy, dx)
                    total = moved.sum(axis=(-2, -1), keepdims=True)
                    candidates.append(moved / np.where(total > 0, total, 1))
    errors = np.min([np.sum((c - reference) ** 2, axis=(-2, -1)) for c in candidates], axis=0)
    snr = 10 * np.log10(energy / np.maximum(errors, 1e-300))
    return snr if np.ndim(snr) else float(snr)


def psnr(image, reference, *, data_range=None):
    r"""Peak signal-to-noise ratio of ``image`` against ``reference``, in dB.

    Parameters
    ----------
    image, reference : ndarray
        Arrays of the same shape.
    data_range : float, optional
        Peak-to-peak range; by default that of ``reference``.

    Returns
    -------
    psnr : float
        :math:`10 \log_{10}(\mathrm{range}^2 / \mathrm{MSE})`.

    Examples
    --------
    >>> import numpy as np
    >>> ref = np.linspace(0, 1, 100)
    >>> round(psnr(ref + 0.01, ref), 1)
    40.0
    """
    image = as_float_array(image, "image", dtype=np.float64)
    reference = as_float_array(reference, "reference", dtype=np.float64)
    if image.shape != reference.shape:
        raise ValueError(f"image and reference must have the same shape, got {image.shape} and {reference.shape}")
    if data_range is None:
        data_range = float(reference.max() - reference.min())
    check_positive(data_range, "data_range")
    mse = np.mean((image - reference) ** 2)
    return float(10 * np.log10(data_range**2 / max(mse, 1e-300)))
