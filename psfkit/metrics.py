"""Quality metrics for estimated PSFs and restored images."""

import numpy as np

from psfkit._validation import as_float_array, check_bool, check_int, check_positive, scale_exponent

__all__ = ["fwhm", "psf_snr", "psnr"]


# A PSF whose sum is below this share of the sum of its absolute values is
# mostly cancellation (e.g. a zero-mean pattern): dividing by that sum would
# blow its round-off up into the normalised PSF.
_MIN_SUM_SHARE = 1e-6


def _unit_sum(psf):
    """``psf`` (stack) divided by its sum, and each PSF's sum over the sum of its absolute values."""
    # An exact power-of-two scaling first: sums of huge values cannot overflow.
    _, k = np.frexp(np.abs(psf).max(axis=(-2, -1), keepdims=True))
    psf = np.ldexp(psf, -k)
    total = psf.sum(axis=(-2, -1), keepdims=True)
    share = total / np.maximum(np.abs(psf).sum(axis=(-2, -1), keepdims=True), np.finfo(psf.dtype).tiny)
    valid = share > _MIN_SUM_SHARE
    return psf / np.where(valid, total, 1), share[..., 0, 0]


def _normalised(psf, name):
    psf = as_float_array(psf, name, ndim=(2, 3), dtype=np.float64)
    normalised, share = _unit_sum(psf)
    if not np.all(share > _MIN_SUM_SHARE):
        raise ValueError(
            f"{name} must have a positive sum that is not negligible against its values (a PSF is an intensity), "
            f"got sum / sum(|{name}|) = {np.min(share):.2g}"
        )
    return normalised


def _shift(psf, dy, dx):
    # zero-filled integer translation (not circular: a shifted PSF loses what leaves the window)
    out = np.zeros_like(psf)
    h, w = psf.shape[-2:]
    if abs(dy) >= h or abs(dx) >= w:  # everything leaves the window
        return out
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
        Largest translation tried when ``align`` is True (>= 0; values
        beyond the window size try nothing more).

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
    align = check_bool(align, "align")
    # shifts by the whole window or more leave nothing: larger values change nothing
    max_shift = min(check_int(max_shift, "max_shift", minimum=0), max(estimate.shape[-2:]))
    energy = np.sum(reference**2, axis=(-2, -1))
    candidates = [estimate]
    if align:
        candidates = []
        for flipped in (estimate, estimate[..., ::-1, ::-1]):
            for dy in range(-max_shift, max_shift + 1):
                for dx in range(-max_shift, max_shift + 1):
                    moved, share = _unit_sum(_shift(flipped, dy, dx))
                    # a shift that leaves only cancelling values out is no candidate
                    candidates.append(np.where((share > _MIN_SUM_SHARE)[..., None, None], moved, np.inf))
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
        if not data_range > 0:
            raise ValueError("reference is constant: its range is 0; pass data_range")
    check_positive(data_range, "data_range")
    # Both arrays scaled by the same exact power of two (peak below 1) and the
    # ratio taken in logarithms: neither the squares nor the ratio can overflow.
    k = scale_exponent(image, reference)
    mse = np.mean((np.ldexp(image, -k) - np.ldexp(reference, -k)) ** 2)
    return float(20 * np.log10(data_range) - 10 * np.log10(max(mse, 1e-300)) - 20 * k * np.log10(2))


def fwhm(profile, spacing=1.0):
    """Full width at half maximum of a sampled 1-D profile, e.g. a line through a PSF's peak.

    The half-maximum crossings on each side of the largest sample are found
    by linear interpolation between neighbouring samples (the convention of
    deconwolf's and most microscopy FWHM figures: a width *on the grid*, not
    of the continuous model).

    Parameters
    ----------
    profile : (N,) array_like
        Non-negative samples with a single main peak that falls below half of
        its maximum on both sides within the array.
    spacing : float, optional
        Sample spacing; the width is returned in its unit.

    Returns
    -------
    width : float

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(-20, 21)
    >>> round(fwhm(np.exp(-x**2 / (2 * 3.0**2)), spacing=0.1), 2)  # 2.355 sigma
    0.71
    """
    line = as_float_array(profile, "profile", ndim=1, min_size=3, dtype=np.float64)
    spacing = float(check_positive(spacing, "spacing"))
    peak = int(np.argmax(line))
    half = line[peak] / 2
    if not half > 0 or line[0] >= half or line[-1] >= half:
        raise ValueError("profile must have a positive peak and fall below half of it at both ends")
    right = peak + int(np.argmax(line[peak:] < half))
    left = peak - int(np.argmax(line[peak::-1] < half))
    x_right = right - 1 + (line[right - 1] - half) / (line[right - 1] - line[right])
    x_left = left + 1 - (line[left + 1] - half) / (line[left + 1] - line[left])
    return float((x_right - x_left) * spacing)
