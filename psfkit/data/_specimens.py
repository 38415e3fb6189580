"""Procedural microscopy-like specimens (fluorophore densities in [0, 1])."""

import math
import numbers

import numpy as np
from scipy import ndimage

from psfkit._validation import check_rng

from psfkit.data._render import accumulate_patches, composite_discs, patch_offsets, smooth_noise, splat

_REFERENCE_AREA = 256 * 256  # default object counts are per 256 x 256 pixels
# Sanity bounds: absurd requests fail at once instead of running for minutes into
# a MemoryError. Images are at most 8192 pixels a side, and the objects' work
# arrays (count x patch pixels, or count x samples) at most 16 values per image
# pixel or 2**22 values, whichever is larger (the defaults use about 1 per pixel).
_MAX_SIDE = 8192
_WORK_PER_PIXEL = 16
_MIN_WORK = 2**22
_MAX_WIDTH = 100.0  # filament FWHM, pixels
_MAX_RADIUS = 1e4  # object radii, pixels


def _check_shape(shape, minimum=8):
    if isinstance(shape, numbers.Integral) and not isinstance(shape, (bool, np.bool_)):
        shape = (shape, shape)
    if isinstance(shape, (str, bytes)):
        raise TypeError(f"shape must be a pair of integers, got {shape!r}")
    try:
        shape = tuple(shape)
    except TypeError:
        raise TypeError(f"shape must be a pair of integers, got {shape!r}") from None
    if len(shape) != 2 or not all(
        isinstance(n, numbers.Integral) and not isinstance(n, (bool, np.bool_)) for n in shape
    ):
        raise TypeError(f"shape must be a pair of integers (rows, columns), got {shape!r}")
    if min(shape) < minimum:
        raise ValueError(f"shape must be at least ({minimum}, {minimum}), got {shape!r}")
    if max(shape) > _MAX_SIDE:
        raise ValueError(f"shape must be at most ({_MAX_SIDE}, {_MAX_SIDE}), got {shape!r}")
    return int(shape[0]), int(shape[1])


def _check_work(count, values_per_object, shape, names):
    """Refuse object counts and sizes whose work arrays would exceed the budget above."""
    budget = max(_MIN_WORK, _WORK_PER_PIXEL * shape[0] * shape[1])
    if not count * values_per_object <= budget:  # NaN or inf fail too
        raise ValueError(
            f"{names} too large: {count} objects of {values_per_object:.0f} work values each exceed the "
            f"{budget} allowed for a {shape[0]} x {shape[1]} image; use fewer or smaller objects"
        )


def _check_range(value, name, *, low=0.0, high=None, strict=False):
    """A ``(lo, hi)`` interval (a scalar means ``(v, v)``) inside ``[low, high]``."""
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
        value = (value, value)
    try:
        lo, hi = value
        if not all(isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) for v in (lo, hi)):
            raise TypeError
        lo, hi = float(lo), float(hi)
    except (TypeError, ValueError, OverflowError):
        raise TypeError(f"{name} must be a number or a (min, max) pair, got {value!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo > hi:
        raise ValueError(f"{name} must be a finite (min, max) pair with min <= max, got {value!r}")
    if lo < low or (strict and lo <= low) or (high is not None and hi > high):
        bounds = f"{'>' if strict else '>='} {low}" + ("" if high is None else f" and <= {high}")
        raise ValueError(f"{name} must be {bounds}, got {value!r}")
    return lo, hi


def _check_count(count, name, shape, rng, default):
    if count is None:
        return int(rng.poisson(default * shape[0] * shape[1] / _REFERENCE_AREA))
    if isinstance(count, (bool, np.bool_)) or not isinstance(count, numbers.Integral) or count < 0:
        raise ValueError(f"{name} must be a non-negative integer or None, got {count!r}")
    return int(count)


def _log_uniform(rng, interval, size):
    lo, hi = interval
    if lo == hi:
        return np.full(size, lo)
    return np.exp(rng.uniform(np.log(lo), np.log(hi), size))


def _to_unit_range(image):
    peak = image.max()
    if peak > 0:
        image /= peak
    np.clip(image, 0.0, 1.0, out=image)
    return image


def filaments(shape=(256, 256), *, rng=None, count=None, width=(1.0, 4.0), persistence=(30.0, 500.0),
              intensity=(0.2, 1.0)):
    r"""Microtubule- or actin-like filaments: smooth random curves.

    Each filament is a worm-like chain (a random walk of its direction) drawn
    with a Gaussian cross-section, anti-aliased, with its own width,
    stiffness, brightness and a slow brightness modulation along its length.
    Crossing filaments add up, as fluorescence does.

    Parameters
    ----------
    shape : tuple of int, optional
        ``(rows, columns)``, at least 8 each. Default ``(256, 256)``.
    rng : {numpy.random.Generator, int}, optional
        Random generator or seed.
    count : int, optional
        Number of filaments; default Poisson with mean 25 per 256² pixels.
    width : (float, float), optional
        Range of the full width at half maximum of the cross-section, in
        pixels (log-uniform; rendered on 4 log-spaced levels), at most 100.
        Default ``(1, 4)``. Widths below ~1.2 px render at ~1.2 px.
    persistence : (float, float), optional
        Range of the persistence length :math:`L_p` in pixels (log-uniform):
        directions decorrelate as :math:`\exp(-s / 2L_p)` along the arc
        length :math:`s` (2-D worm-like chain); larger is straighter.
    intensity : (float, float), optional
        Range of the peak brightness of a single filament (uniform), before
        the final scaling.

    Returns
    -------
    image : (rows, columns) ndarray of float64
        Values in [0, 1], maximum exactly 1 unless there is no filament.

    Notes
    -----
    Directions follow :math:`\theta(s + \delta s) = \theta(s) + \sqrt{\delta s / L_p}\,\eta`
    with steps :math:`\delta s` = 0.5 px, lengths uniform in 75–300 px and
    starting points uniform over the image (filaments leave and enter
    through the borders). Samples are splatted bilinearly and
    blurred by a Gaussian so that an isolated straight filament has the drawn
    width and peak brightness.

    Examples
    --------
    >>> from psfkit.data import filaments
    >>> image = filaments((128, 128), rng=0)
    >>> image.shape, image.dtype, float(image.min()), float(image.max())
    ((128, 128), dtype('float64'), 0.0, 1.0)
    """
    shape = _check_shape(shape)
    rng = check_rng(rng)
    width = _check_range(width, "width", strict=True, high=_MAX_WIDTH)
    persistence = _check_range(persistence, "persistence", strict=True)
    intensity = _check_range(intensity, "intensity")
    count = _check_count(count, "count", shape, rng, 25)
    _check_work(count, 600, shape, "count")  # up to 600 arc samples per filament
    height, wide = shape
    if count == 0:
        return np.zeros(shape)

    step = 0.5
    # Lengths in pixels, independent of the image size, so that the density
    # (count per area) makes any crop look alike.
    lengths = rng.uniform(75.0, 300.0, count)
    samples = int(math.ceil(lengths.max() / step))
    start_r = rng.uniform(0, height, count)
    start_c = rng.uniform(0, wide, count)
    stiffness = _log_uniform(rng, persistence, count)
    theta = rng.uniform(0, 2 * np.pi, count)[:, None] + np.cumsum(
        rng.standard_normal((count, samples)) * np.sqrt(step / stiffness)[:, None], axis=1
    )
    rows = start_r[:, None] + step * np.cumsum(np.sin(theta), axis=1)
    cols = start_c[:, None] + step * np.cumsum(np.cos(theta), axis=1)
    arc = step * np.arange(samples)
    brightness = rng.uniform(*intensity, count)
    period = rng.uniform(20, 150, count)
    depth = rng.uniform(0, 0.3, count)
    phase = rng.uniform(0, 2 * np.pi, count)
    along = brightness[:, None] * (1 + depth[:, None] * np.cos(2 * np.pi * arc / period[:, None] + phase[:, None]))
    fwhm = _log_uniform(rng, width, count)

    # A few width levels: one stacked splat, then one Gaussian blur per level.
    n_levels = 4 if width[1] > width[0] else 1
    levels = np.exp(np.linspace(np.log(width[0]), np.log(width[1]), n_levels))
    level = np.abs(np.log(fwhm)[:, None] - np.log(levels)[None, :]).argmin(axis=1)
    sigma_total = levels / (2 * np.sqrt(2 * np.log(2)))
    # The bilinear splat already blurs by a variance of ~1/6 px².
    sigma = np.sqrt(np.maximum(sigma_total**2 - 1 / 6, 0.3**2))
    sigma_total = np.sqrt(sigma**2 + 1 / 6)
    pad = int(math.ceil(3 * sigma.max())) + 1
    kept = arc[None, :] < lengths[:, None]
    layer = np.broadcast_to(level[:, None], kept.shape)[kept]
    weights = (along * (step * np.sqrt(2 * np.pi) * sigma_total[level])[:, None])[kept]
    canvas = splat((height + 2 * pad, wide + 2 * pad), rows[kept] + pad, cols[kept] + pad, weights, layer, n_levels)
    image = np.zeros(shape)
    for k in np.unique(level):
        blurred = ndimage.gaussian_filter(canvas[k], sigma[k], mode="constant", truncate=3.0)
        image += blurred[pad : pad + height, pad : pad + wide]
    return _to_unit_range(image)


def points(shape=(256, 256), *, rng=None, count=None, radius=(0.0, 4.0), intensity=(0.1, 1.0), hollow=0.25):
    """Point sources and vesicles: small bright spots of random size and brightness.

    Sub-resolution emitters are Gaussian spots (standard deviation 0.6 px);
    larger objects are discs with soft (Gaussian) edges, and a fraction
    ``hollow`` of them are rings (membrane-labelled vesicles).

    Parameters
    ----------
    shape : tuple of int, optional
        ``(rows, columns)``, at least 8 each. Default ``(256, 256)``.
    rng : {numpy.random.Generator, int}, optional
        Random generator or seed.
    count : int, optional
        Number of objects; default Poisson with mean 80 per 256² pixels.
    radius : (float, float), optional
        Range of the object radii in pixels (uniform), in ``[0, 10000]``; radius 0 is
        a point source. Default ``(0, 4)``.
    intensity : (float, float), optional
        Range of the peak brightness (log-uniform, so dim objects are
        common), ``> 0``. Default ``(0.1, 1)``.
    hollow : float, optional
        Probability in [0, 1] that an object is a ring. Default 0.25.

    Returns
    -------
    image : (rows, columns) ndarray of float64
        Values in [0, 1], maximum exactly 1 unless there is no object.

    Examples
    --------
    >>> from psfkit.data import points
    >>> image = points((64, 64), rng=1, count=5)
    >>> image.shape, float(image.max())
    ((64, 64), 1.0)
    """
    shape = _check_shape(shape)
    rng = check_rng(rng)
    radius = _check_range(radius, "radius", high=_MAX_RADIUS)
    intensity = _check_range(intensity, "intensity", strict=True)
    if isinstance(hollow, bool) or not isinstance(hollow, numbers.Real) or not 0 <= hollow <= 1:
        raise ValueError(f"hollow must be a probability in [0, 1], got {hollow!r}")
    count = _check_count(count, "count", shape, rng, 80)
    _check_work(count, (2 * math.ceil(radius[1] + 2.4) + 3) ** 2, shape, "count and radius")
    if count == 0:
        return np.zeros(shape)

    edge = 0.6  # soft-edge / spot standard deviation, px
    cy = rng.uniform(-radius[1], shape[0] + radius[1], count)
    cx = rng.uniform(-radius[1], shape[1] + radius[1], count)
    r = rng.uniform(*radius, count)
    brightness = _log_uniform(rng, intensity, count)
    ring = rng.random(count) < hollow
    half = int(math.ceil(radius[1] + 4 * edge)) + 1
    dr, dc = patch_offsets(half)
    iy = np.floor(cy)
    ix = np.floor(cx)
    d = np.hypot(dr - (cy - iy)[:, None, None], dc - (cx - ix)[:, None, None])
    rr = r[:, None, None]
    gap = np.where(ring[:, None, None], d - rr, np.maximum(d - rr, 0.0))
    values = brightness[:, None, None] * np.exp(-(gap**2) / (2 * edge**2))
    image = accumulate_patches(shape, iy.astype(np.intp) - half, ix.astype(np.intp) - half, values)
    return _to_unit_range(image)


def cells(shape=(256, 256), *, rng=None, count=None, radius=(10.0, 30.0), texture=0.35):
    """Cells with nuclei: irregular blobs with internal texture.

    Each cell is an ellipse deformed by low-order boundary harmonics, with a
    cytoplasm of random brightness, an optional bright membrane rim and an
    elliptic nucleus that is either brighter (nuclear stain) or darker
    (cytoplasmic stain excluded from the nucleus). A random granular texture
    modulates the whole cell.

    Parameters
    ----------
    shape : tuple of int, optional
        ``(rows, columns)``, at least 8 each. Default ``(256, 256)``.
    rng : {numpy.random.Generator, int}, optional
        Random generator or seed.
    count : int, optional
        Number of cells; default Poisson with mean 12 per 256² pixels.
    radius : (float, float), optional
        Range of the cell semi-major axis in pixels (uniform), in ``(0, 10000]``.
        Default ``(10, 30)``.
    texture : float, optional
        Relative standard deviation of the granular texture, ``>= 0``
        (0 = flat cells). Default 0.35.

    Returns
    -------
    image : (rows, columns) ndarray of float64
        Values in [0, 1], maximum exactly 1 unless there is no cell.

    Examples
    --------
    >>> from psfkit.data import cells
    >>> image = cells((96, 96), rng=2)
    >>> image.shape, float(image.max())
    ((96, 96), 1.0)
    """
    shape = _check_shape(shape)
    rng = check_rng(rng)
    radius = _check_range(radius, "radius", strict=True, high=_MAX_RADIUS)
    if isinstance(texture, bool) or not isinstance(texture, numbers.Real) or not 0 <= texture < np.inf:
        raise ValueError(f"texture must be a finite number >= 0, got {texture!r}")
    count = _check_count(count, "count", shape, rng, 12)
    _check_work(count, (2 * math.ceil(1.25 * radius[1]) + 5) ** 2, shape, "count and radius")
    if count == 0:
        return np.zeros(shape)

    cy = rng.uniform(0, shape[0], count)
    cx = rng.uniform(0, shape[1], count)
    a = rng.uniform(*radius, count)  # semi-major axis
    b = a * rng.uniform(0.6, 1.0, count)
    angle = rng.uniform(0, np.pi, count)
    amplitude = rng.uniform(0, 0.07, (count, 3))
    phase = np.exp(1j * rng.uniform(0, 2 * np.pi, (count, 3)))
    cytoplasm = rng.uniform(0.15, 0.5, count)
    rim = cytoplasm * rng.uniform(0, 0.8, count) * (rng.random(count) < 0.5)
    nucleus_scale = rng.uniform(0.3, 0.55, count)
    nucleus_aspect = rng.uniform(0.75, 1.0, count)
    nucleus_shift = rng.uniform(0, 0.25, (count, 2)) * (1 - nucleus_scale)[:, None] * rng.choice([-1, 1], (count, 2))
    bright = rng.random(count) < 0.65
    nucleus = np.where(bright, rng.uniform(0.4, 1.0, count), -cytoplasm * rng.uniform(0.5, 0.9, count))

    params = (cy, cx, a, b, angle, amplitude, phase, cytoplasm, rim, nucleus_scale, nucleus_aspect, nucleus_shift,
              nucleus)
    # Patches sized per group of similar cells: one patch for all would waste
    # most of the work on the small cells.
    half = np.ceil(1.25 * a).astype(int) + 2
    group = np.minimum((half - half.min()) * 3 // max(half.max() - half.min() + 1, 1), 2)
    image = np.zeros(shape)
    for g in np.unique(group):
        members = group == g
        image += _render_cells(shape, int(half[members].max()), *(x[members] for x in params))
    if texture > 0:
        grain = smooth_noise(shape, rng, scale=1.0, components=((0.8, 1.0, None), (0.6, 5.0, None)))
        image *= np.maximum(1 + texture * grain, 0.0)
    return _to_unit_range(image)


def _render_cells(shape, half, cy, cx, a, b, angle, amplitude, phase, cytoplasm, rim, nucleus_scale, nucleus_aspect,
                  nucleus_shift, nucleus):
    """Accumulate the cells' analytic profiles, evaluated on (2 half + 1)² patches."""
    dr, dc = patch_offsets(half)
    iy = np.floor(cy)
    ix = np.floor(cx)
    v = dr - (cy - iy)[:, None, None]
    u = dc - (cx - ix)[:, None, None]
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    p = (u * cos + v * sin) / a[:, None, None]
    q = (v * cos - u * sin) / b[:, None, None]
    rho = np.sqrt(p * p + q * q)
    direction = (p + 1j * q) / np.maximum(rho, 1e-12)
    boundary = np.ones_like(rho)
    power = direction
    for j in range(amplitude.shape[1]):  # harmonics 2, 3, 4 of the boundary
        power = power * direction
        boundary += amplitude[:, j, None, None] * (power * phase[:, j, None, None]).real
    scale = np.sqrt(a * b)[:, None, None]
    signed = (boundary - rho) * scale  # ~ distance inside the boundary, px
    inside = np.clip(signed + 0.5, 0.0, 1.0)
    pn = (p - nucleus_shift[:, 0, None, None]) / nucleus_scale[:, None, None]
    qn = (q - nucleus_shift[:, 1, None, None]) / (nucleus_scale * nucleus_aspect)[:, None, None]
    nucleus_signed = (1 - np.sqrt(pn * pn + qn * qn)) * (scale * nucleus_scale[:, None, None])
    in_nucleus = np.clip(nucleus_signed + 0.5, 0.0, 1.0) * inside
    values = (
        cytoplasm[:, None, None] * inside
        + nucleus[:, None, None] * in_nucleus
        + rim[:, None, None] * np.exp(-0.5 * (signed / 1.2) ** 2)
    )
    return accumulate_patches(shape, iy.astype(np.intp) - half, ix.astype(np.intp) - half, values)


def _power_moment(lo, hi, exponent, k):
    """Integral of r**(k - exponent) over [lo, hi]."""
    e = k - exponent + 1
    if abs(e) < 1e-9:
        return math.log(hi / lo)
    return (hi**e - lo**e) / e


def dead_leaves(shape=(256, 256), *, rng=None, radius=(2.0, 64.0), exponent=3.0):
    r"""Dead-leaves image: occluding discs with power-law radii.

    Opaque discs of uniform random grey level fall on top of each other until
    the image is covered. With radii distributed as :math:`p(r) \propto
    r^{-3}` the model is scale invariant and reproduces the :math:`1/f^2`
    power spectrum, edge statistics and occlusions of natural images; it is
    a standard training prior for blind deblurring.

    Parameters
    ----------
    shape : tuple of int, optional
        ``(rows, columns)``, at least 8 each. Default ``(256, 256)``.
    rng : {numpy.random.Generator, int}, optional
        Random generator or seed.
    radius : (float, float), optional
        Smallest and largest disc radius in pixels, in ``[0.1, 10000]``. Default ``(2, 64)``.
    exponent : float, optional
        Power-law exponent of the radius density, in ``(0, 10]``. Default 3.

    Returns
    -------
    image : (rows, columns) ndarray of float64
        Values in [0, 1] (grey levels are uniform in [0, 1]; not rescaled).

    Notes
    -----
    Discs are drawn front to back and composited with their pixel coverage
    (anti-aliased edges) until every pixel is opaque; enough discs are drawn
    for the expected uncovered fraction to be about :math:`10^{-4}`, and any
    remainder shows a grey of 0.5. Centres are uniform over the image
    enlarged by the largest radius, so the borders are statistically like
    the interior.

    References
    ----------
    .. [1] A. B. Lee, D. Mumford and J. Huang, "Occlusion models for natural
       images: a statistical study of a scale-invariant dead leaves model",
       Int. J. Comput. Vision 41, 35-59 (2001). :doi:`10.1023/A:1011109015675`

    Examples
    --------
    >>> from psfkit.data import dead_leaves
    >>> image = dead_leaves((64, 64), rng=3)
    >>> image.shape, bool(0 <= image.min() and image.max() <= 1)
    ((64, 64), True)
    """
    shape = _check_shape(shape)
    rng = check_rng(rng)
    lo, hi = _check_range(radius, "radius", low=0.1, high=_MAX_RADIUS)
    if isinstance(exponent, bool) or not isinstance(exponent, numbers.Real) or not 0 < exponent < np.inf:
        raise ValueError(f"exponent must be a finite number > 0, got {exponent!r}")
    if exponent > 10:
        raise ValueError(f"exponent must be at most 10 (radii would all be the smallest), got {exponent!r}")
    exponent = float(exponent)
    height, width = shape
    area = (height + 2 * hi) * (width + 2 * hi)
    if hi > lo:
        mean_area = np.pi * _power_moment(lo, hi, exponent, 2) / _power_moment(lo, hi, exponent, 0)
    else:
        mean_area = np.pi * lo**2
    with np.errstate(divide="ignore", over="ignore"):
        count = np.log(1e4) * area / mean_area
    _check_work(count, 1, shape, "radius and exponent (the number of discs needed to cover the image)")
    count = int(math.ceil(count))
    if hi > lo:
        e = 1 - exponent
        u = rng.random(count)
        if abs(e) < 1e-9:
            r = lo * (hi / lo) ** u
        else:
            r = (lo**e + u * (hi**e - lo**e)) ** (1 / e)
    else:
        r = np.full(count, lo)
    cy = rng.uniform(-hi, height + hi, count)
    cx = rng.uniform(-hi, width + hi, count)
    grey = rng.random(count)
    image = composite_discs(shape, cy, cx, r, grey, 0.5)
    return np.clip(image, 0.0, 1.0, out=image)


_KINDS = {"filaments": filaments, "points": points, "cells": cells, "dead_leaves": dead_leaves}


def random_specimen(shape=(256, 256), *, rng=None, kinds=tuple(_KINDS), max_kinds=2, background=0.2):
    """A random mixture of procedural specimens on a smooth background.

    Draws 1 to ``max_kinds`` distinct kinds from ``kinds`` (default
    parameters), adds them with random weights, then mixes in a smooth random
    background (autofluorescence, out-of-focus light).

    Parameters
    ----------
    shape : tuple of int, optional
        ``(rows, columns)``, at least 8 each. Default ``(256, 256)``.
    rng : {numpy.random.Generator, int}, optional
        Random generator or seed.
    kinds : sequence of str, optional
        Kinds to draw from, among ``"filaments"``, ``"points"``, ``"cells"``
        and ``"dead_leaves"``. Default: all.
    max_kinds : int, optional
        Largest number of kinds mixed in one specimen, ``>= 1``. Default 2.
    background : float, optional
        Largest weight in [0, 1) of the smooth background; the weight is
        uniform in ``[0, background]``. Default 0.2.

    Returns
    -------
    image : (rows, columns) ndarray of float64
        Values in [0, 1], maximum exactly 1 unless the mixture is empty.

    Examples
    --------
    >>> from psfkit.data import random_specimen
    >>> image = random_specimen((64, 64), rng=4, kinds=("points", "cells"))
    >>> image.shape, float(image.max())
    ((64, 64), 1.0)
    """
    shape = _check_shape(shape)
    rng = check_rng(rng)
    if isinstance(kinds, str):
        kinds = (kinds,)
    try:
        kinds = tuple(kinds)
    except TypeError:
        raise TypeError(f"kinds must be a sequence of specimen kinds, got {kinds!r}") from None
    if not kinds:
        raise ValueError("kinds must name at least one specimen kind")
    for kind in kinds:
        if not isinstance(kind, str) or kind not in _KINDS:
            raise ValueError(f"unknown kind {kind!r} in kinds; expected some of {', '.join(map(repr, _KINDS))}")
    if isinstance(max_kinds, (bool, np.bool_)) or not isinstance(max_kinds, numbers.Integral) or max_kinds < 1:
        raise ValueError(f"max_kinds must be an integer >= 1, got {max_kinds!r}")
    if isinstance(background, bool) or not isinstance(background, numbers.Real) or not 0 <= background < 1:
        raise ValueError(f"background must be a number in [0, 1), got {background!r}")
    unique = list(dict.fromkeys(kinds))
    number = int(rng.integers(1, min(max_kinds, len(unique)) + 1))
    chosen = rng.choice(len(unique), size=number, replace=False)
    image = np.zeros(shape)
    for index in chosen:
        image += rng.uniform(0.3, 1.0) * _KINDS[unique[index]](shape, rng=rng)
    image = _to_unit_range(image)
    if background > 0:
        weight = rng.uniform(0, background)
        field = smooth_noise(shape, rng, scale=round(rng.uniform(0.1, 0.3) * max(shape)))
        field -= field.min()
        span = field.max()
        if span > 0:
            field /= span
        image = (1 - weight) * image + weight * field
    return _to_unit_range(image)
