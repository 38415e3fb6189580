"""Internals of :func:`psfkit.estimate_noise` (Poisson–Gaussian fit from one image).

The public function validates; these helpers trust their inputs.
"""

import numpy as np
from scipy import ndimage

from psfkit._validation import scale_exponent

# Fourth difference, unit norm: its 5 x 5 tensor product removes polynomials of
# degree <= 3 along each axis and passes almost nothing below ~0.25 cycles/pixel,
# where band-limited (Nyquist-sampled) microscope images have their energy.
DIFF4 = np.array([1.0, -4.0, 6.0, -4.0, 1.0]) / np.sqrt(70.0)
# Squared taps: E[residual**2] = alpha * (this weighted mean of E[y]) + beta, exactly.
DIFF4_SQ = DIFF4**2
# Sum of the fourth powers of the 5 x 5 taps (fourth cumulant of the residual).
KURTOSIS_TAPS = float(np.sum(DIFF4**4) ** 2)
HALF = 2  # half-width of the 5 x 5 support
SHIFT = 5  # the level-selection windows are this far away: disjoint supports
BORDER = HALF + SHIFT
MIN_SIZE = 2 * BORDER + 8
LUT_SIZE = 4096
MIN_COUNT = 64  # pixels for a level set to enter the fit
MAX_SHARE = 0.02  # largest share of excluded pixels in a usable level set, above the typical
MAD_TO_SIGMA = 1.4826022185056018  # 1 / Phi^-1(3/4)
TINY = np.finfo(np.float64).tiny


def local_statistics(image):
    """High-pass residual, its exact noise level and the level-selection map.

    Returns interior (``BORDER`` pixels cropped) arrays ``residual``, ``level``
    and ``select``: ``level`` is the squared-tap mean of the image (so that
    ``E[residual**2] = alpha * E[level] + beta`` for white noise) and
    ``select`` the mean of ``level`` over four windows ``SHIFT`` pixels away,
    whose noise is independent of the pixel's own.
    """
    # Rows first (contiguous), then columns as sums of row-shifted blocks:
    # both 'valid' filters, aligned on image[HALF:-HALF, HALF:-HALF].
    residual = _valid_columns(ndimage.correlate1d(image, DIFF4, axis=1)[:, HALF:-HALF], DIFF4)
    level = _valid_columns(ndimage.correlate1d(image, DIFF4_SQ, axis=1)[:, HALF:-HALF], DIFF4_SQ)
    b, s = BORDER - HALF, SHIFT
    inner = (slice(b, -b), slice(b, -b))
    select = (
        level[b - s : -b - s, b:-b] + level[b + s : (-b + s) or None, b:-b]
        + level[b:-b, b - s : -b - s] + level[b:-b, b + s : (-b + s) or None]
    ) / 4
    return residual[inner], level[inner], select


def _valid_columns(rows, taps):
    """Symmetric 5-tap filter along axis 0, keeping only fully covered rows."""
    out = taps[0] * (rows[:-4] + rows[4:])
    out += taps[1] * (rows[1:-3] + rows[3:-1])
    out += taps[2] * rows[2:-2]
    return out


def level_sets(select, bins):
    """Label pixels into about ``bins`` level sets of ``select``.

    Half of the edges are quantiles (the populated levels), half are evenly
    spaced (so the sparse bright levels of fluorescence images get their own
    sets). Labels come from a fine look-up table, cheaper than a binary search.
    """
    flat = select.ravel()
    sample = flat[:: max(1, flat.size // 20000)]
    quantiles = np.quantile(sample, np.linspace(0, 1, bins // 2 + 1))
    lo, hi = quantiles[0], quantiles[-1]
    with np.errstate(over="ignore", divide="ignore"):
        scale = (LUT_SIZE - 1) / (hi - lo)
    if not (hi > lo and np.isfinite(scale)):  # one level (up to a few ulps): a single set
        return np.zeros(flat.size, dtype=np.intp), 1
    even = np.linspace(lo, hi, bins - bins // 2 + 1)[1:-1]
    edges = np.unique(np.concatenate([quantiles[1:-1], even]))
    lut = np.searchsorted(edges, lo + (np.arange(LUT_SIZE) + 0.5) / scale)
    cell = (flat - lo) * scale
    np.clip(cell, 0, LUT_SIZE - 1, out=cell)
    return lut[cell.astype(np.intp)], edges.size + 1


def window_mask(mask, half):
    """Pixels whose ``(2 half + 1)**2`` window contains a ``True`` of ``mask``."""
    hits = np.flatnonzero(mask)
    if hits.size > mask.size // 100:
        return ndimage.maximum_filter(mask, size=2 * half + 1, mode="constant")
    padded = np.zeros((mask.shape[0] + 2 * half, mask.shape[1] + 2 * half), dtype=bool)
    rows, cols = np.unravel_index(hits, mask.shape)
    for dr in range(2 * half + 1):
        for dc in range(2 * half + 1):
            padded[rows + dr, cols + dc] = True
    return padded[half:-half, half:-half]


def bin_moments(labels, n_bins, residual, level, excluded):
    """Per level set: pixel count, mean level, mean squared residual, excluded share."""
    total = np.bincount(labels, minlength=n_bins)
    flat_excluded = excluded.ravel()
    flagged = np.bincount(labels[flat_excluded], minlength=n_bins)
    if flagged.any():
        labels = labels.copy()
        labels[flat_excluded] = n_bins  # a trash level set
    count = total - flagged
    safe = np.maximum(count, 1)
    mean = np.bincount(labels, weights=level.ravel(), minlength=n_bins + 1)[:n_bins] / safe
    power = np.bincount(labels, weights=np.square(residual).ravel(), minlength=n_bins + 1)[:n_bins] / safe
    return count, mean, power, flagged / np.maximum(total, 1)


def _line(x, y, weight, with_spread=False):
    """Weighted least-squares line ``y = a x + b`` with ``a >= 0``."""
    sw = weight.sum()
    mx = (weight * x).sum() / sw
    my = (weight * y).sum() / sw
    sxx = (weight * (x - mx) ** 2).sum()
    slope = max((weight * (x - mx) * (y - my)).sum() / sxx, 0.0) if sxx > 0 else 0.0
    result = (slope, my - slope * mx)
    return result + (sxx,) if with_spread else result


def fit_variance_line(mean, power, count):
    """Robust weighted fit of ``power = alpha * mean + beta`` with ``alpha >= 0``.

    Iteratively reweighted least squares. The variance of each set's mean
    square is modelled from the current fit as ``(2 v**2 + k4 alpha**3 z) / n``:
    the second term, the fourth cumulant of Poisson noise, dominates at low
    photon counts (dark sets would otherwise be over-trusted). Sets far above
    the line are rejected: residual texture and impulses only add variance.
    The slope is kept only if it is significant (> 3 standard errors); the
    constant model is returned otherwise (e.g. an image without structure,
    whose single level cannot separate alpha from beta). Without any residual
    (a noise-free image: flat regions and edges, as after thresholding) the
    fit is ``(0, 0)``.
    """
    top = float(power.max())
    if not top > 0:
        return 0.0, 0.0
    keep = np.ones(mean.size, dtype=bool)
    # A set's variance is never trusted below 1% of the typical level: sets of
    # pure zeros (no photon at all) would otherwise pin the line alone. The
    # share of the largest keeps it positive when most sets are zeros (its
    # square must not underflow; the image is scaled to a peak below 1).
    floor = 0.01 * np.median(power) + 1e-6 * top
    alpha, beta = _line(mean, power, count)  # start from a count-weighted fit
    alpha = max(alpha, 0.0)
    fitted = alpha * mean + beta
    slope_error = np.inf
    for iteration in range(12):
        previous = alpha
        spread2 = (2 * np.maximum(fitted, floor) ** 2 + KURTOSIS_TAPS * alpha**3 * np.maximum(mean, 0)) / count
        weight = keep / spread2
        alpha, beta, sxx = _line(mean, power, weight, with_spread=True)
        fitted = alpha * mean + beta
        z = (power - fitted) / np.sqrt(spread2)
        # Residuals of neighbouring pixels are correlated: measure the actual
        # scatter of the sets around the line instead of trusting 2 v**2 / n.
        scale = max(MAD_TO_SIGMA * np.median(np.abs(z[keep])), 1.0)
        slope_error = scale / np.sqrt(sxx) if sxx > 0 else np.inf
        new_keep = z < 4 * scale
        if new_keep.sum() < 2:
            break
        settled = np.array_equal(new_keep, keep) and abs(alpha - previous) <= 1e-3 * alpha
        keep = new_keep
        if settled and iteration >= 2:
            break
    if not alpha > 3 * slope_error:
        weight = keep * count / np.maximum(power, floor) ** 2
        alpha, beta = 0.0, float((weight * power).sum() / weight.sum())
    return float(alpha), float(beta)


def fit_level_sets(count, mean, power, share):
    """Fit the level sets that have enough pixels and few excluded ones."""
    # Sets with many excluded pixels (near saturated regions) are biased;
    # impulses exclude a uniform share everywhere, which is harmless.
    usable = (count >= MIN_COUNT) & (share <= MAX_SHARE + 2 * np.median(share))
    if usable.sum() < 2:
        usable = count >= min(MIN_COUNT, max(count.max(), 1))
    if usable.sum() < 2:
        return 0.0, float(power[usable].mean()) if usable.any() else 0.0
    return fit_variance_line(mean[usable], power[usable], count[usable])


def pepper_pixels(image, fit):
    """Minimum-valued pixels more than 4 sigma below all 8 of their neighbours.

    Returned on the interior grid. Poisson zeros only do that next to >= 16
    photons, where P(0) ~ 1e-7, so dark photon-counting data is left alone.
    """
    lowest = image.min()
    inner = image[BORDER:-BORDER, BORDER:-BORDER]
    pepper = inner == lowest
    rows, cols = np.nonzero(pepper)
    if rows.size == 0:
        return pepper
    rows = rows + BORDER
    cols = cols + BORDER
    neighbours = np.min(
        [image[rows + dr, cols + dc] for dr in (-1, 0, 1) for dc in (-1, 0, 1) if dr or dc], axis=0
    )
    noise = np.sqrt(np.maximum(fit[0] * neighbours + fit[1], 0.0))
    pepper[rows - BORDER, cols - BORDER] = neighbours - lowest > 4 * noise + TINY
    return pepper


def estimate(image, bins):
    """``(alpha, beta)`` of a validated float64 image.

    The fit runs on the image scaled by an exact power of two ``2**-k`` (peak
    in [0.5, 1)), where squared residuals neither overflow nor underflow, and
    is scaled back as ``alpha 2**k``, ``beta 4**k``: exactly scale-consistent
    for powers of two. ``beta`` is inf when ``4**k beta`` overflows.
    """
    k = scale_exponent(image)
    alpha, beta = _estimate(np.ascontiguousarray(np.ldexp(image, -k)), bins)
    with np.errstate(over="ignore"):
        return float(np.ldexp(alpha, k)), float(np.ldexp(beta, 2 * k))


def _estimate(image, bins):
    residual, level, select = local_statistics(image)
    labels, n_bins = level_sets(select, bins)
    # Saturated pixels have no noise and salt impulses are not noise: drop
    # every residual whose support sees a pixel at the image maximum.
    highest = image.max()
    peak = image == highest
    excluded = window_mask(peak, HALF)[BORDER:-BORDER, BORDER:-BORDER]
    if not _enough_left(excluded):
        # The maximum is everywhere: a coarsely quantised (few-level) image,
        # not saturation or impulses; its residuals are all there is to fit.
        peak[...] = False
        excluded[...] = False
    fit = fit_level_sets(*bin_moments(labels, n_bins, residual, level, excluded))
    refit = False
    if np.count_nonzero(peak) >= max(4, image.size // 10000):
        # A maximum shared by many pixels means saturation: pixels within
        # 3 sigma of it have their upper noise tail clipped.
        margin = 3 * np.sqrt(max(fit[0] * highest + fit[1], 0.0))
        saturated = excluded | (level > highest - margin)
        if _enough_left(saturated):
            excluded, refit = saturated, True
    pepper = pepper_pixels(image, fit)
    if pepper.any():
        with_pepper = excluded | window_mask(pepper, HALF)
        if _enough_left(with_pepper):
            excluded, refit = with_pepper, True
    if refit:
        fit = fit_level_sets(*bin_moments(labels, n_bins, residual, level, excluded))
    return fit


def _enough_left(excluded):
    """Whether enough residuals remain for a fit (two level sets) after ``excluded``."""
    return excluded.size - np.count_nonzero(excluded) >= 2 * MIN_COUNT
