"""Pieces shared by the blind baselines: input checks, borders, kernel clean-up.

Everything here works on float64 images already normalised to [0, 1]; the
public functions validate once and convert at the boundary.
"""

import numbers

import numpy as np
import scipy.fft
from scipy import ndimage

from psfkit import _fft
from psfkit._validation import as_float_array


def check_psf_size(psf_size):
    """Validate ``psf_size`` (odd integer >= 3, NumPy integers included) and return it as ``int``."""
    if isinstance(psf_size, (bool, np.bool_)) or not isinstance(psf_size, numbers.Integral):
        raise TypeError(f"psf_size must be an odd integer, got {psf_size!r}")
    psf_size = int(psf_size)
    if psf_size < 3 or psf_size % 2 == 0:
        raise ValueError(f"psf_size must be an odd integer >= 3, got {psf_size}")
    return psf_size


def check_inputs(image, psf_size, *, min_margin=1):
    """Validate ``image`` (2-D, finite, not constant) and ``psf_size`` (odd >= 3).

    Returns the image as float64 and its original floating dtype (for the
    outputs). ``min_margin`` is how much larger than ``psf_size`` every image
    axis must be.
    """
    array = as_float_array(image, "image", ndim=2)
    out_dtype = array.dtype
    psf_size = check_psf_size(psf_size)
    if psf_size + min_margin > min(array.shape):
        raise ValueError(
            f"psf_size must be smaller than the image: psf_size={psf_size} needs every image axis "
            f">= {psf_size + min_margin}, got image shape {array.shape}"
        )
    array = array.astype(np.float64)
    if not np.ptp(array) > 0:
        raise ValueError("image is constant; a blur kernel cannot be estimated from it")
    return array, out_dtype


def check_flag(value, name):
    """Accept Python and NumPy booleans only (``0``/``1`` typos are errors)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def fast_size_down(n):
    """Largest length <= ``n`` whose real FFT is fast (small prime factors)."""
    m = int(n)
    while scipy.fft.next_fast_len(m, real=True) != m:
        m -= 1
    return m


def centre_crop(image, shape):
    """Central ``shape`` window of ``image``."""
    top = (image.shape[0] - shape[0]) // 2
    left = (image.shape[1] - shape[1]) // 2
    return image[top : top + shape[0], left : left + shape[1]]


def taper_weights(shape, kernel_shape):
    """Edge weights of :func:`edgetaper`: ``sin^2`` ramps as wide as the kernel."""
    weights = []
    for n, k in zip(shape[-2:], kernel_shape[-2:]):
        w = np.ones(n)
        k = min(k, n // 2)
        ramp = np.sin(np.pi * np.arange(k) / (2 * k - 1)) ** 2
        w[:k] = ramp
        w[n - k :] = ramp[::-1]
        weights.append(w)
    return weights[0][:, None] * weights[1][None, :]


def edgetaper(image, kernel, passes=1):
    """Blend the borders of ``image`` into their circular blur by ``kernel``.

    ``v <- w v + (1 - w) (k * v)`` with circular convolution and ``w`` rising as
    ``sin^2`` over one kernel width from each border. Repeated ``passes`` times,
    this makes the image nearly consistent with the circular blur model the FFT
    solvers assume, so they do not ring at the borders. ``image`` may be a stack
    ``(..., M, N)`` and ``kernel`` a matching stack.
    """
    shape = image.shape[-2:]
    otf = _fft.psf_to_otf(kernel, shape)
    w = taper_weights(shape, kernel.shape[-2:])
    out = image.copy()
    for _ in range(passes):
        blurred = _fft.irfftn(_fft.rfftn(out) * otf, out.shape)
        out = w * out + (1.0 - w) * blurred
    return out


def gradient_otfs(shape):
    """Real-FFT transfer functions of the circular forward differences along x and y."""
    m, n = shape
    fy = np.exp(2j * np.pi * np.fft.fftfreq(m))[:, None] - 1.0
    fx = np.exp(2j * np.pi * np.fft.rfftfreq(n))[None, :] - 1.0
    return np.broadcast_to(fx, (m, n // 2 + 1)), np.broadcast_to(fy, (m, n // 2 + 1))


def crop_centre_kernel(full, size):
    """``size x size`` window around the origin of a circular kernel, origin at ``size // 2``."""
    half = size // 2
    rolled = np.roll(full, (half, half), axis=(-2, -1))
    return rolled[..., :size, :size]


def shift_zero_fill(kernel, shift):
    """Integer shift of a 2-D kernel; what leaves the window is lost."""
    out = np.zeros_like(kernel)
    dy, dx = (int(s) for s in shift)
    m, n = kernel.shape
    src_y = slice(max(0, -dy), min(m, m - dy))
    dst_y = slice(max(0, dy), min(m, m + dy))
    src_x = slice(max(0, -dx), min(n, n - dx))
    dst_x = slice(max(0, dx), min(n, n + dx))
    out[dst_y, dst_x] = kernel[src_y, src_x]
    return out


def barycentre_shift(kernel):
    """Integer shift that brings the intensity barycentre of ``kernel`` to its centre index."""
    total = kernel.sum()
    iy, ix = np.indices(kernel.shape)
    cy = (iy * kernel).sum() / total
    cx = (ix * kernel).sum() / total
    return (int(np.round(kernel.shape[0] // 2 - cy)), int(np.round(kernel.shape[1] // 2 - cx)))


def delta(size):
    """Centred discrete delta of ``size x size``."""
    k = np.zeros((size, size))
    k[size // 2, size // 2] = 1.0
    return k


def remove_isolated(kernel, min_mass=0.1):
    """Zero the 8-connected components of the support holding < ``min_mass`` of the flux."""
    labels, count = ndimage.label(kernel > 0, structure=np.ones((3, 3), dtype=bool))
    if count <= 1:
        return kernel
    mass = ndimage.sum_labels(kernel, labels, index=np.arange(1, count + 1)) / kernel.sum()
    keep = mass >= min_mass
    if not keep.any():
        # A very spread estimate: keep its heaviest piece rather than nothing.
        keep[np.argmax(mass)] = True
    return np.where(np.isin(labels, np.flatnonzero(keep) + 1), kernel, 0.0)


def clean_kernel(kernel, *, threshold=0.05, isolated=True, recentre=True):
    """Kernel clean-up of the IPOL l0 method.

    Clip negatives, zero values below ``threshold * max``, drop isolated
    components (< 10 % of the flux), shift the rounded barycentre to the centre
    (values leaving the window are lost) and normalise to sum 1. Falls back to
    a centred delta when nothing positive is left.
    """
    k = np.clip(kernel, 0.0, None)
    peak = k.max()
    if not peak > 0:
        return delta(kernel.shape[0])
    if threshold > 0:
        k[k < threshold * peak] = 0.0
    k /= k.sum()
    if isolated:
        k = remove_isolated(k)
    if recentre:
        k = shift_zero_fill(k, barycentre_shift(k))
    total = k.sum()
    if not total > 0:
        return delta(kernel.shape[0])
    return k / total


def normalise_unit_range(image):
    """Min-max normalise to [0, 1]; returns the image and the ``(offset, scale)`` to undo it."""
    low = float(image.min())
    scale = float(image.max()) - low
    return (image - low) / scale, (low, scale)
