r"""Diffraction-limited PSFs: Zernike-aberrated pupils and the Airy pattern.

The model is scalar Fraunhofer diffraction [1]_, as in the Deep-Blur papers
[2]_ and deepinv's ``DiffractionBlurGenerator``:

.. math::

    h(\mathbf{x}) \propto \Bigl| \int P(\mathbf{u})\,
    e^{-2i\pi\varphi(\mathbf{u})}\, e^{-2i\pi \mathbf{u}\cdot\mathbf{x}}\,
    d\mathbf{u} \Bigr|^2,
    \qquad \varphi(\mathbf{u}) = \sum_j \theta_j Z_j(\mathbf{u} / f_c),

with ``x`` in pixels, ``u`` in cycles/pixel, ``P`` the disk of radius
``cutoff`` :math:`= f_c` and :math:`\theta_j` the Zernike coefficients in
waves (Noll indexing, RMS normalisation: see :mod:`psfkit.optics.zernike`).

References
----------
.. [1] J. W. Goodman, *Introduction to Fourier Optics*, 3rd ed., Roberts & Co. (2005), chap. 6.
.. [2] V. Debarnot and P. Weiss, "Deep-blur: blind identification and deblurring
       with convolutional neural networks", Biological Imaging 4 (2024).
"""

import functools
import math
import warnings
from collections.abc import Mapping

import numpy as np

from psfkit._validation import as_float_array, check_choice, check_float_dtype, check_int, check_positive
from psfkit.optics.zernike import MAX_SIZE, MAX_VALUES, _check_indices, _evaluate

__all__ = ["zernike_psf", "airy_psf", "cutoff_frequency"]

# Pupil sampling for the matrix Fourier transform (see ``_pupil_weights``):
# a Kaiser-windowed sinc of half-width 6 cells (about 1e-5 pass/stop-band
# ripple) band-limits the pupil edge so that the sampled sum equals the
# continuous Fourier integral on the output window.
_KERNEL_HALF_WIDTH = 6
_KERNEL_BETA = 0.1102 * (100.0 - 8.7)
_MIN_SAMPLES = 48
_MAX_AUTO_SAMPLES = 1024
_SAMPLES_STEP = 16
_CHUNK_BYTES = 2 * 2**20  # work arrays of one batch chunk stay in cache
_DEFAULT_FIRST_INDEX = 4  # sequences start at defocus: piston, tip, tilt don't change the shape
# Sanity bounds of the arguments: a 1000-wave (RMS) aberration spreads the PSF over
# tens of thousands of pixels, far beyond any window (and its phase would overflow);
# a 4096-sample pupil grid is four times the automatic cap.
_MAX_AMPLITUDE = 1000.0
_MAX_PUPIL_SAMPLES = 4096


# --------------------------------------------------------------------------- validation


def _check_cutoff(cutoff):
    """Return ``(cutoff array (B,) float64, batched)``; fc must lie in (0, 0.5]."""
    try:
        scalar = np.ndim(cutoff) == 0
    except (TypeError, ValueError):  # ragged nested lists
        raise TypeError(f"cutoff must be a number or a 1-D array of numbers, got {cutoff!r}") from None
    if scalar:
        value = cutoff.item() if isinstance(cutoff, (np.generic, np.ndarray)) else cutoff
        check_positive(value, "cutoff")
        values = np.array([float(value)])
        batched = False
    else:
        values = as_float_array(cutoff, "cutoff", ndim=1, dtype=np.float64)
        batched = True
    if np.any(values <= 0) or np.any(values > 0.5):
        bad = values[(values <= 0) | (values > 0.5)][0]
        raise ValueError(
            f"cutoff must be in (0, 0.5] cycles/pixel, got {bad:g}; above 0.25 the PSF is under-sampled "
            "and above 0.5 the pupil does not fit in the pixel frequency band"
        )
    return values, batched


def _parse_coefficients(coefficients, indices):
    """Return ``(coef (B, K) float64, indices tuple, batched)``."""
    if coefficients is None:
        if indices is not None and len(_check_indices(indices)) != 0:
            raise ValueError("indices were given without coefficients")
        return np.zeros((1, 0)), (), False
    if isinstance(coefficients, Mapping):
        if indices is not None:
            raise TypeError("indices cannot be combined with a mapping of coefficients (its keys are the indices)")
        keys = _check_indices(list(coefficients.keys()), "coefficients keys")
        if not keys:
            return np.zeros((1, 0)), (), False
        values = []
        for key in coefficients:
            value = coefficients[key]
            if isinstance(value, (bool, np.bool_)) or np.ndim(value) != 0:
                raise TypeError(f"coefficients[{key}] must be a real number, got {value!r}")
            values.append(value)
        coef = as_float_array(values, "coefficients", ndim=1, dtype=np.float64)
        if np.abs(coef).max() > _MAX_AMPLITUDE:
            raise ValueError(
                f"coefficients must be at most {_MAX_AMPLITUDE:g} waves in magnitude (such a PSF is far wider "
                f"than any window), got {np.abs(coef).max():g}"
            )
        return coef[None], keys, False
    if isinstance(coefficients, (str, bytes)):
        raise TypeError(f"coefficients must be a mapping or an array of numbers, got {type(coefficients).__name__}")
    try:
        array = np.asarray(coefficients)
    except (TypeError, ValueError):  # ragged nested lists
        raise TypeError("coefficients must be a mapping or an array of numbers (rows of equal lengths)") from None
    if array.ndim not in (1, 2):
        raise ValueError(f"coefficients must be 1-D (K,) or 2-D (batch, K), got shape {array.shape}")
    batched = array.ndim == 2
    if array.size == 0:
        if array.dtype.kind not in "biuf" and array.dtype != object:
            raise TypeError(f"coefficients must be numeric, got dtype {array.dtype}")
        coef = np.zeros((array.shape[0] if batched else 1, 0))
        if batched and coef.shape[0] == 0:
            raise ValueError(f"coefficients must have at least one row, got shape {array.shape}")
    else:
        coef = as_float_array(array, "coefficients", ndim=(1, 2), dtype=np.float64)
        coef = coef if batched else coef[None]
    if coef.size and np.abs(coef).max() > _MAX_AMPLITUDE:
        raise ValueError(
            f"coefficients must be at most {_MAX_AMPLITUDE:g} waves in magnitude (such a PSF is far wider than "
            f"any window), got {np.abs(coef).max():g}"
        )
    n_terms = coef.shape[1]
    if indices is None:
        indices = tuple(range(_DEFAULT_FIRST_INDEX, _DEFAULT_FIRST_INDEX + n_terms))
    else:
        indices = _check_indices(indices)
        if len(indices) != n_terms:
            raise ValueError(f"indices has {len(indices)} entries but coefficients have {n_terms} per PSF")
    return coef, indices, batched


def _check_dtype(dtype):
    return check_float_dtype(dtype, "dtype")


def _check_size(size):
    return check_int(size, "size", minimum=1, maximum=MAX_SIZE)


def _check_pupil_samples(samples):
    if samples is None:
        return None
    samples = check_int(samples, "pupil_samples", minimum=1, maximum=_MAX_PUPIL_SAMPLES)
    if samples % 2 or samples < 2 * _KERNEL_HALF_WIDTH + 8:
        raise ValueError(f"pupil_samples must be an even integer >= {2 * _KERNEL_HALF_WIDTH + 8}, got {samples}")
    return samples


# --------------------------------------------------------------------------- pupil sampling


def _kernel(t):
    """Kaiser-windowed sinc, argument in cells, support |t| < half width."""
    half = _KERNEL_HALF_WIDTH
    inside = np.abs(t) < half
    window = np.i0(_KERNEL_BETA * np.sqrt(np.clip(1.0 - (t / half) ** 2, 0.0, None))) / np.i0(_KERNEL_BETA)
    return np.where(inside, np.sinc(t) * window, 0.0)


@functools.lru_cache(maxsize=1)
def _kernel_primitive():
    """Table of the kernel's primitive, normalised to a unit integral."""
    t = np.linspace(-_KERNEL_HALF_WIDTH, _KERNEL_HALF_WIDTH, 2 * _KERNEL_HALF_WIDTH * 4096 + 1)
    f = _kernel(t)
    primitive = np.concatenate([[0.0], np.cumsum((f[1:] + f[:-1]) * (0.5 * (t[1] - t[0])))])
    return t, primitive / primitive[-1], primitive[-1]


def _pupil_coordinates(samples):
    """Cell centres (in units of the pupil radius) of the ``samples``-point grid."""
    # integer numerators keep the grid exactly antisymmetric (u_{M-1-m} = -u_m),
    # which makes the PSF symmetries exact up to round-off
    return (2 * np.arange(samples) + 1 - samples) / (samples - 2 * _KERNEL_HALF_WIDTH)


@functools.lru_cache(maxsize=16)
def _pupil_weights(samples):
    """Band-limited pupil ``(P * s)(u_m)`` on the ``samples`` x ``samples`` grid.

    The disk indicator is convolved with a separable low-pass kernel ``s``
    whose transfer function is flat (to ~1e-5) up to a quarter of the grid's
    sampling rate and negligible beyond three quarters. With these weights the
    sum over the grid reproduces the continuous Fourier integral of ``P g``
    for any smooth phase factor ``g`` whose spectrum plus the output window fit
    in the flat band (Poisson summation), instead of the first-order error of
    a hard or area-fraction pupil edge. Computed once per grid size.
    """
    half_width = _KERNEL_HALF_WIDTH
    span = samples - 2 * half_width  # cells across the pupil diameter
    step = 2.0 / span
    nu = _pupil_coordinates(samples)
    sub = max(8, -(-4096 // samples))  # x quadrature points per cell
    xs = ((2 * np.arange(samples)[:, None] + 1 - samples) * sub + (2 * np.arange(sub) + 1 - sub)) / (sub * span)
    xs = xs[np.abs(xs) < 1.0]
    chord = np.sqrt(1.0 - xs**2)
    t, primitive, _ = _kernel_primitive()
    rows = nu[: samples // 2]  # one quadrant; the others follow by symmetry
    # exact integral along y of the kernel over the chord of the disk at x
    upper = np.interp((rows[:, None] + chord) / step, t, primitive)
    along_y = upper - np.interp((rows[:, None] - chord) / step, t, primitive)
    along_x = _kernel((rows[:, None] - xs) / step) / (sub * _kernel_primitive()[2])
    quadrant = along_y @ along_x.T
    quadrant = 0.5 * (quadrant + quadrant.T)
    weights = np.block([[quadrant, quadrant[:, ::-1]], [quadrant[::-1], quadrant[::-1, ::-1]]])
    weights.setflags(write=False)
    return weights


@functools.lru_cache(maxsize=32)
def _pupil_basis(indices, samples):
    """Zernike basis on the pupil grid, laid out (K, rows, columns), float64."""
    nu = _pupil_coordinates(samples)
    y, x = np.meshgrid(nu, nu, indexing="ij")
    basis = np.stack([_evaluate(j, x, y) for j in indices]) if indices else np.zeros((0, samples, samples))
    basis.setflags(write=False)
    return basis


@functools.lru_cache(maxsize=32)
def _gradient_basis(indices):
    """Gradients of the basis polynomials at test points of the disk, (2, K, P)."""
    theta = 2 * np.pi * np.arange(72) / 72
    rho = np.array([0.25, 0.5, 0.7, 0.85, 0.95, 1.0])[:, None]
    x, y = (rho * np.cos(theta)).ravel(), (rho * np.sin(theta)).ravel()
    d = 1e-6
    gx = [(_evaluate(j, x + d, y) - _evaluate(j, x - d, y)) / (2 * d) for j in indices]
    gy = [(_evaluate(j, x, y + d) - _evaluate(j, x, y - d)) / (2 * d) for j in indices]
    return np.array([gx, gy]).reshape(2, len(indices), x.size)


def _required_pupil_samples(coef, indices, cutoff, size):
    """Grid size for ~1e-5 (aberration-free) to ~1e-4 (aberrated) accuracy.

    The flat band of the pupil kernel must hold the output window (half-width
    size/2 pixels) plus the spread of the phase factor, whose local frequency
    is grad(phi)/fc pixels (``phi`` in waves); in grid cells this gives the
    rule below, calibrated against converged references (see the tests).
    Returns ``(samples, largest slope in waves per pupil radius)``.
    """
    if indices:
        gx, gy = _gradient_basis(indices)
        slope = np.sqrt((coef @ gx) ** 2 + (coef @ gy) ** 2).max(axis=1)
    else:
        slope = np.zeros(coef.shape[0])
    need = 2 * _KERNEL_HALF_WIDTH + np.hypot(3.2 * cutoff * size, 8.0 * slope).max()
    return max(_MIN_SAMPLES, _SAMPLES_STEP * math.ceil(need / _SAMPLES_STEP)), float(slope.max())


def _fourier_matrices(cutoff, size, samples):
    """cos and sin of 2 pi u_m x_k for the negative half of the pupil grid.

    Returns (B, samples, size): rows ``m < samples/2`` hold the cosines, the
    next rows the sines (the positive half follows by symmetry).
    """
    nu = _pupil_coordinates(samples)[: samples // 2]
    x = np.arange(size) - size // 2
    angle = 2 * np.pi * cutoff[:, None, None] * nu[None, :, None] * x[None, None, :]
    return np.concatenate([np.cos(angle), np.sin(angle)], axis=1)


def _mft_psf(coef, indices, cutoff, size, samples, dtype, chunk=None):
    """Intensity PSFs (B, size, size) by a two-sided matrix Fourier transform.

    Trusted inputs: ``coef`` (B, K) float64, ``cutoff`` (B,) or (1,) float64.
    The pupil field w exp(-2i pi phi) is split in even and odd parts along
    each axis (the grid and the weights w are symmetric), so both transforms
    are real matrix products of half the size of complex ones.
    """
    batch = coef.shape[0]
    half = samples // 2
    # the weights are mirror-symmetric, so each (even, odd) column pair shares one
    weights = _pupil_weights(samples)[:, :half]
    weights = np.concatenate([weights, weights], axis=1).astype(dtype)[:, None, :]
    basis = _pupil_basis(indices, samples).reshape(len(indices), samples * samples) * (2 * np.pi)
    fourier = _fourier_matrices(cutoff, size, samples).astype(dtype)  # (1 or B, M, size)
    shared = fourier.shape[0] == 1
    out = np.empty((batch, size, size), dtype=dtype)
    if chunk is None:  # keep the work arrays of a chunk in cache
        chunk = max(1, min(batch, _CHUNK_BYTES // (samples * samples * dtype.itemsize)))
    for start in range(0, batch, chunk):
        stop = min(start + chunk, batch)
        n = stop - start
        angle = (coef[start:stop] @ basis).astype(dtype, copy=False).reshape(n, samples, samples)
        cos = np.cos(angle)
        sin = np.sin(angle, out=angle)  # field = w (cos - i sin)
        # transform along x: pair column c < M/2 with its mirror M-1-c
        work = np.empty((n, samples, 2, samples), dtype=dtype)
        np.add(cos[..., :half], cos[..., : half - 1 : -1], out=work[:, :, 0, :half])
        np.subtract(sin[..., : half - 1 : -1], sin[..., :half], out=work[:, :, 0, half:])
        np.add(sin[..., :half], sin[..., : half - 1 : -1], out=work[:, :, 1, :half])
        np.negative(work[:, :, 1, :half], out=work[:, :, 1, :half])
        np.subtract(cos[..., : half - 1 : -1], cos[..., :half], out=work[:, :, 1, half:])
        work *= weights
        if shared:
            rows = (work.reshape(-1, samples) @ fourier[0]).reshape(n, samples, 2, size)
        else:
            rows = (work.reshape(n, 2 * samples, samples) @ fourier[start:stop]).reshape(n, samples, 2, size)
        # transform along y, same pairing of row a with M-1-a; with a shared
        # cutoff the rows of the whole chunk go through one matrix product
        if shared:
            stacked = np.empty((samples, n, 2, size), dtype=dtype)
            view = stacked.transpose(1, 0, 2, 3)
        else:
            stacked = view = np.empty((n, samples, 2, size), dtype=dtype)
        np.add(rows[:, :half], rows[:, : half - 1 : -1], out=view[:, :half])
        np.subtract(rows[:, :half, 1], rows[:, : half - 1 : -1, 1], out=view[:, half:, 0])
        np.subtract(rows[:, : half - 1 : -1, 0], rows[:, :half, 0], out=view[:, half:, 1])
        if shared:
            field = (fourier[0].T @ stacked.reshape(samples, n * 2 * size)).reshape(size, n, 2, size)
            real, imag = field[:, :, 0].transpose(1, 0, 2), field[:, :, 1].transpose(1, 0, 2)
        else:
            field = np.swapaxes(fourier[start:stop], -1, -2) @ stacked.reshape(n, samples, 2 * size)
            real, imag = field[..., :size], field[..., size:]
        intensity = np.square(real, out=out[start:stop])
        intensity += np.square(imag)
        intensity /= intensity.sum(axis=(-2, -1), keepdims=True)
    return out


# --------------------------------------------------------------------------- public API


def zernike_psf(coefficients=None, *, cutoff=0.2, size=33, indices=None, dtype=np.float64, pupil_samples=None):
    r"""Diffraction-limited PSF of a pupil with Zernike aberrations.

    Parameters
    ----------
    coefficients : mapping, (K,) or (batch, K) array_like, optional
        Zernike coefficients in waves (RMS, Noll indexing). Either a mapping
        ``{noll_index: amplitude}`` or an array whose last axis holds the
        amplitudes of the Noll indices ``indices`` (default ``4, 5, ..., 3 + K``:
        defocus, astigmatisms, comas, trefoils, spherical, ...; piston, tip
        and tilt are left out since they don't change the PSF's shape). A 2-D
        array returns one PSF per row, computed in one vectorised call.
        ``None`` or an empty sequence gives the aberration-free (Airy) PSF.
    cutoff : float or (batch,) array_like
        Pupil radius :math:`f_c` in cycles/pixel, in ``(0, 0.5]``
        (:func:`cutoff_frequency` converts NA, wavelength and pixel size).
        Values above 0.25 under-sample the PSF. A 1-D array gives each PSF of
        the batch its own cutoff.
    size : int
        Side of the returned square window, odd or even, at most 4097 (and
        ``batch * size**2`` at most 2**28 values).
    indices : sequence of int, optional
        Noll indices of the columns of an array of ``coefficients`` (1 to
        231, i.e. radial orders up to 20, like mapping keys). Coefficients are
        at most 1000 waves in magnitude.
    dtype : dtype
        Output float type (float64 by default; float32 computes in single
        precision, several times faster).
    pupil_samples : int, optional
        Pupil grid size of the matrix Fourier transform (even, 20 to 4096). By default it
        is chosen from ``cutoff``, ``size`` and the aberration's slope for a
        relative L2 error of about 1e-5 (aberration-free) to 1e-4.

    Returns
    -------
    psf : (size, size) or (batch, size, size) ndarray
        Non-negative PSF(s) summing to 1 over the window; the aberration-free
        PSF peaks at index ``size // 2`` on both axes. Batched when
        ``coefficients`` is 2-D or ``cutoff`` is 1-D.

    Raises
    ------
    ValueError
        For a cutoff outside (0, 0.5], a non-positive size, non-finite
        coefficients, Noll indices < 1 or repeated, or mismatched lengths.

    See Also
    --------
    airy_psf : closed form of the aberration-free PSF.
    cutoff_frequency : f_c from the microscope's parameters.
    psfkit.optics.zernike : polynomial conventions.

    Notes
    -----
    **Model.** Scalar Fraunhofer diffraction [1]_:

    .. math::

        h(\mathbf{x}) \propto \Bigl| \int_{|\mathbf{u}| \le f_c}
        e^{-2i\pi \varphi(\mathbf{u})}\, e^{-2i\pi \mathbf{u}\cdot\mathbf{x}}\,
        d\mathbf{u} \Bigr|^2, \qquad
        \varphi(\mathbf{u}) = \sum_j \theta_j Z_j(\mathbf{u}/f_c),

    evaluated at the pixel centres :math:`\mathbf{x} = (k - \lfloor n/2 \rfloor)`
    and normalised to sum 1 on the window. The transform is the **forward**
    Fourier transform (phase :math:`e^{-2i\pi \mathbf{u}\cdot\mathbf{x}}`), as
    in the Deep-Blur papers [2]_ and deepinv's ``DiffractionBlurGenerator``,
    whose PSFs match psfkit's term by term (``x`` along columns, ``y`` along
    rows, see :mod:`psfkit.optics.zernike`). The inverse transform would point-reflect
    the PSFs of odd aberrations (coma, trefoil).

    **Sign symmetries** (exact, also in the discretisation): with
    :math:`Z_j(-\mathbf{u}) = (-1)^m Z_j(\mathbf{u})`,
    :math:`h_{-\theta}(\mathbf{x}) = h_{\theta}(-\mathbf{x})`, hence flipping
    the sign of the *even* terms (:math:`m` even: defocus, astigmatisms,
    spherical) leaves the PSF unchanged, and flipping the sign of the *odd*
    terms (coma, trefoil) point-reflects it. The sign of an even aberration
    alone can therefore not be identified from an in-focus PSF. Coma and
    trefoil also move the PSF's barycentre; psfkit does not re-centre them (use
    tip/tilt, Noll 2 and 3, to shift a PSF).

    **Numerics.** The field is computed by a matrix Fourier transform [3]_
    (two small matrix products per PSF, only on the requested window, so
    there is no periodic wrap-around and any :math:`f_c` is exact). The
    pupil is sampled on an ``M x M`` grid covering the disk plus a margin;
    its edge is band-limited by a Kaiser-windowed sinc kernel whose transfer
    function is flat on the output window, so the discrete sum equals the
    continuous integral up to ~1e-5 (Poisson summation) rather than the
    first-order error of a hard or area-fraction pupil edge. The Zernike basis
    and the pupil weights are computed once per ``(M, indices)`` and cached.
    The aberration-free PSF matches the Airy pattern (:func:`airy_psf`) to a
    relative L2 error below ~1e-5.

    References
    ----------
    .. [1] J. W. Goodman, *Introduction to Fourier Optics*, 3rd ed. (2005), chap. 6.
    .. [2] V. Debarnot and P. Weiss, "Deep-blur: blind identification and
           deblurring with convolutional neural networks", Biological Imaging 4 (2024).
    .. [3] R. Soummer, L. Pueyo, A. Sivaramakrishnan and R. J. Vanderbei, "Fast
           computation of Lyot-style coronagraph propagation", Opt. Express 15,
           15935-15951 (2007). :doi:`10.1364/OE.15.015935`

    Examples
    --------
    >>> import numpy as np
    >>> from psfkit import zernike_psf
    >>> psf = zernike_psf({4: 0.1, 7: 0.05}, cutoff=0.2, size=33)
    >>> psf.shape, psf.dtype, float(round(psf.sum(), 12))
    ((33, 33), dtype('float64'), 1.0)

    The aberration-free PSF is the Airy pattern, centred at ``size // 2``:

    >>> airy = zernike_psf(cutoff=0.2, size=32)
    >>> np.unravel_index(airy.argmax(), airy.shape)
    (np.int64(16), np.int64(16))

    A batch of PSFs, each with its own cutoff, in one call:

    >>> rng = np.random.default_rng(0)
    >>> thetas = rng.uniform(-0.15, 0.15, size=(4, 8))  # Noll 4 to 11
    >>> zernike_psf(thetas, cutoff=[0.125, 0.15, 0.2, 0.25], size=32).shape
    (4, 32, 32)
    """
    coef, indices, coef_batched = _parse_coefficients(coefficients, indices)
    cutoffs, cutoff_batched = _check_cutoff(cutoff)
    size = _check_size(size)
    dtype = _check_dtype(dtype)
    samples = _check_pupil_samples(pupil_samples)
    if coef_batched and cutoff_batched and cutoffs.shape[0] != coef.shape[0]:
        raise ValueError(f"cutoff has {cutoffs.shape[0]} values but coefficients have {coef.shape[0]} rows")
    batch = max(coef.shape[0], cutoffs.shape[0])
    if batch * size * size > MAX_VALUES:
        raise ValueError(f"{batch} PSFs of size {size} would hold more than {MAX_VALUES} values; use smaller batches")
    if cutoff_batched and not coef_batched:
        coef = np.repeat(coef, cutoffs.shape[0], axis=0)
    if samples is None:
        samples, slope = _required_pupil_samples(coef, indices, cutoffs, size)
        if samples > _MAX_AUTO_SAMPLES:
            warnings.warn(
                f"aberrations with slopes up to {slope:.3g} waves per pupil radius spread the PSF far beyond "
                f"the window; the pupil grid is capped at {_MAX_AUTO_SAMPLES} samples and the far tails alias "
                "(pass pupil_samples to override)",
                UserWarning,
                stacklevel=2,
            )
            samples = _MAX_AUTO_SAMPLES
    psf = _mft_psf(coef, indices, cutoffs, size, samples, dtype)
    return psf if (coef_batched or cutoff_batched) else psf[0]


def airy_psf(*, cutoff=0.2, size=33, dtype=np.float64):
    r"""Airy pattern (aberration-free PSF of a circular pupil), closed form.

    Parameters
    ----------
    cutoff : float
        Pupil radius :math:`f_c` in cycles/pixel, in ``(0, 0.5]``.
    size : int
        Side of the square window, odd or even, at most 4097.
    dtype : dtype
        Output float type.

    Returns
    -------
    psf : (size, size) ndarray
        The pattern sampled at the pixel centres, peak at index ``size // 2``,
        normalised to sum 1 over the window.

    Notes
    -----
    .. math::

        h(r) \propto \left[\frac{2 J_1(2\pi f_c r)}{2\pi f_c r}\right]^2,

    with :math:`r` the distance in pixels to the centre pixel; its first zero
    is at :math:`r = 0.61/f_c` (the Rayleigh radius :math:`0.61\lambda/NA`).
    This is :func:`zernike_psf` without aberration, used as its reference.

    Examples
    --------
    >>> psf = airy_psf(cutoff=0.25, size=15)
    >>> bool(psf[7, 7] == psf.max()), round(float(psf.sum()), 12)
    (True, 1.0)
    """
    from scipy.special import j1  # only here: keeps ``import psfkit.optics.psf`` light

    cutoffs, batched = _check_cutoff(cutoff)
    if batched:
        raise ValueError("airy_psf takes a scalar cutoff")
    size = _check_size(size)
    dtype = _check_dtype(dtype)
    x = np.arange(size) - size // 2
    z = 2 * np.pi * cutoffs[0] * np.hypot(x[:, None], x[None, :])
    safe = np.where(z == 0, 1.0, z)
    psf = np.where(z == 0, 1.0, (2 * j1(safe) / safe) ** 2)
    return (psf / psf.sum()).astype(dtype)


def cutoff_frequency(numerical_aperture, wavelength, pixel_size, *, on_undersampling="raise"):
    r"""Pupil cutoff frequency :math:`f_c` in cycles/pixel of a microscope.

    Parameters
    ----------
    numerical_aperture : float
        Numerical aperture NA of the objective (> 0).
    wavelength : float
        Emission wavelength (> 0), in the same length unit as ``pixel_size``.
    pixel_size : float
        Pixel size in the object plane (camera pixel / magnification), > 0.
    on_undersampling : {'raise', 'warn', 'ignore'}
        What to do when :math:`f_c > 0.25`: the OTF support :math:`2 f_c`
        then exceeds the Nyquist frequency and the PSF is under-sampled.

    Returns
    -------
    cutoff : float
        :math:`f_c = \mathrm{NA}\,\Delta x / \lambda`.

    Raises
    ------
    ValueError
        For non-positive or non-finite inputs, and for under-sampling when
        ``on_undersampling='raise'``.

    Notes
    -----
    The coherent cutoff of an objective is :math:`\mathrm{NA}/\lambda`
    (cycles per length unit); the incoherent OTF extends to twice that.
    Sampling the PSF without aliasing needs :math:`2\,\mathrm{NA}/\lambda
    \le 1/(2\Delta x)`, i.e. :math:`f_c \le 0.25` (Nyquist pixel size
    :math:`\lambda / (4\,\mathrm{NA})`).

    Examples
    --------
    A 1.4 NA objective at 520 nm with 65 nm pixels (lengths in micrometres):

    >>> round(cutoff_frequency(1.4, 0.52, 0.065), 4)
    0.175

    With 100 nm pixels the PSF is under-sampled:

    >>> cutoff_frequency(1.4, 520, 100)
    Traceback (most recent call last):
    ...
    ValueError: cutoff frequency 0.269 cycles/pixel exceeds 0.25: ...
    >>> round(cutoff_frequency(1.4, 520, 100, on_undersampling="ignore"), 4)
    0.2692
    """
    arguments = {"numerical_aperture": numerical_aperture, "wavelength": wavelength, "pixel_size": pixel_size}
    for name, value in arguments.items():
        check_positive(value.item() if isinstance(value, np.generic) else value, name)
    check_choice(on_undersampling, "on_undersampling", ("raise", "warn", "ignore"))
    cutoff = float(numerical_aperture) * float(pixel_size) / float(wavelength)
    if not (math.isfinite(cutoff) and cutoff > 0):  # over- or underflow of extreme values
        raise ValueError(
            f"numerical_aperture * pixel_size / wavelength must be a finite positive number, got {cutoff!r} "
            f"from {numerical_aperture!r}, {pixel_size!r} and {wavelength!r}"
        )
    if cutoff > 0.25 and on_undersampling != "ignore":
        message = (
            f"cutoff frequency {cutoff:.3g} cycles/pixel exceeds 0.25: the PSF is under-sampled (the OTF support "
            f"2*fc exceeds the Nyquist frequency); use pixels <= {wavelength / (4 * numerical_aperture):.4g} "
            "or pass on_undersampling='warn'"
        )
        if on_undersampling == "raise":
            raise ValueError(message)
        warnings.warn(message, UserWarning, stacklevel=2)
    return cutoff
