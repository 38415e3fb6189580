"""FFT convolution geometry shared by :mod:`psfkit.forward.convolution` and
:mod:`psfkit.forward.space_varying`.

Every boundary model is written as a product of three explicit linear maps,

    y = R C E x,

where ``E`` extends the image into an FFT buffer of shape ``fft_shape``
(reflect padding, zero padding or nothing), ``C`` is a circular convolution on
that buffer and ``R`` crops the result. The adjoint is then simply
``E^T C^T R^T``: ``R^T`` embeds with zeros, ``C^T`` multiplies by the conjugate
transfer function and ``E^T`` crops and, for reflect padding, folds the mirrored
borders back onto the pixels they were copied from. Because these are the
transposes of the maps actually computed (wrap-around included), adjoint tests
hold to round-off for every boundary.

All helpers work on the last ``ndim`` axes, so stacks of images batch.
"""

import functools
from typing import NamedTuple

import numpy as np

from psfkit._fft import fast_shape

BOUNDARIES = ("reflect", "periodic", "constant", "zero", "valid", "full")

# Terms of a product convolution are transformed together in one batched FFT
# call, in chunks of at most this many bytes of real buffer (the complex
# spectra double it), to bound the memory of very large stacks.
CHUNK_BYTES = 1 << 28


# Boundaries whose result only makes sense when the PSF fits in the image.
_NEEDS_FIT = ("reflect", "periodic", "valid")


def check_kernel_fits(image_shape, kernel_shape, boundary, name="psf"):
    """Raise a ValueError naming ``name`` if the kernel is larger than the image."""
    if boundary not in _NEEDS_FIT:
        return
    for axis, (n, p) in enumerate(zip(image_shape, kernel_shape)):
        if p > n:
            raise ValueError(
                f"{name} of shape {tuple(kernel_shape)} is larger than the image of shape {tuple(image_shape)} "
                f"along axis {axis}; boundary={boundary!r} needs a kernel no larger than the image "
                "(use boundary='constant' or a larger image)"
            )


class Geometry(NamedTuple):
    """Per-axis description of one ``R C E`` convolution model."""

    boundary: str
    image_shape: tuple
    kernel_shape: tuple
    before: tuple  # reflected pixels written before the image (reflect only)
    after: tuple  # reflected pixels written after the image (reflect only)
    fft_shape: tuple  # buffer on which the circular convolution runs
    anchor: tuple  # kernel index placed at the FFT origin
    crop_start: tuple  # first buffer index of the output
    output_shape: tuple

    @property
    def ndim(self):
        return len(self.image_shape)

    @property
    def interior(self):
        """Slices of the buffer that hold the (unpadded) image."""
        return tuple(slice(b, b + n) for b, n in zip(self.before, self.image_shape))

    @property
    def crop(self):
        """Slices of the buffer that hold the output."""
        return tuple(slice(s, s + n) for s, n in zip(self.crop_start, self.output_shape))


@functools.lru_cache(maxsize=128)
def geometry(image_shape, kernel_shape, boundary):
    """Build the :class:`Geometry` of ``boundary`` (already validated).

    The caller has checked that the kernel fits in the image where the
    boundary needs it (all modes but ``"constant"``/``"zero"``/``"full"``).
    """
    if boundary == "zero":
        boundary = "constant"
    before, after, fft, anchor, start, out = [], [], [], [], [], []
    for n, p in zip(image_shape, kernel_shape):
        c = p // 2
        if boundary == "periodic":
            # Circular on the image itself: no padding, no fast-length rounding
            # (that would change the period).
            b, a, size, anc, s, m = 0, 0, n, c, 0, n
        elif boundary == "reflect":
            b, a = p - 1 - c, c
            size, anc, s, m = n + p - 1, c, b, n
        elif boundary == "constant":
            # Zeros after the image act as padding on both sides: the kernel's
            # left part wraps into the tail of the buffer, which is zero.
            b, a, size, anc, s, m = 0, 0, n + p - 1, c, 0, n
        elif boundary == "valid":
            b, a, size, anc, s, m = 0, 0, n, c, p - 1 - c, n - p + 1
        elif boundary == "full":
            b, a, size, anc, s, m = 0, 0, n + p - 1, 0, 0, n + p - 1
        else:  # pragma: no cover - validated by callers
            raise ValueError(boundary)
        before.append(b)
        after.append(a)
        fft.append(size)
        anchor.append(anc)
        start.append(s)
        out.append(m)
    if boundary != "periodic":
        fft = fast_shape(fft)
    return Geometry(
        boundary, tuple(image_shape), tuple(kernel_shape), tuple(before), tuple(after),
        tuple(fft), tuple(anchor), tuple(start), tuple(out),
    )


def new_buffer(lead, geom, dtype):
    """Zeroed FFT buffer of shape ``lead + fft_shape`` and a view of its interior."""
    buffer = np.zeros(tuple(lead) + geom.fft_shape, dtype=dtype)
    return buffer, buffer[(...,) + geom.interior]


def _axis_slicer(geom, axis):
    """Index builder along ``axis`` over the part of the buffer already filled on the other axes."""
    nd = geom.ndim
    idx = [slice(None)] * nd
    for other in range(nd):
        if other > axis:
            idx[other] = geom.interior[other]
        elif other < axis:
            idx[other] = slice(0, geom.before[other] + geom.image_shape[other] + geom.after[other])

    def sl(s):
        full = list(idx)
        full[axis] = s
        return (...,) + tuple(full)

    return sl


def fill_borders(buffer, geom):
    """Write the reflected borders around the interior, in place (``E``).

    Mirror ("symmetric", edge pixel repeated) padding, one axis after the
    other as :func:`numpy.pad` does, so corners are reflections of reflections.
    """
    if geom.boundary != "reflect":
        return buffer
    nd = geom.ndim
    for axis in range(nd):
        b, a, n = geom.before[axis], geom.after[axis], geom.image_shape[axis]
        sl = _axis_slicer(geom, axis)  # only what has been filled so far on the other axes
        if b:
            buffer[sl(slice(0, b))] = np.flip(buffer[sl(slice(b, 2 * b))], axis=axis - nd)
        if a:
            buffer[sl(slice(b + n, b + n + a))] = np.flip(buffer[sl(slice(b + n - a, b + n))], axis=axis - nd)
    return buffer


def extend(x, geom, dtype=None, exponent=0):
    """Apply ``E``: the image (stack), times ``2**exponent``, in a new FFT buffer, borders filled."""
    buffer, interior = new_buffer(x.shape[: x.ndim - geom.ndim], geom, dtype or x.dtype)
    np.ldexp(x, exponent, out=interior)
    return fill_borders(buffer, geom)


def extend_adjoint(z, geom):
    """Apply ``E^T`` to a buffer (stack): crop, folding reflected borders back.

    ``z`` may be modified (it is a work array of the caller).
    """
    nd = geom.ndim
    if geom.boundary == "reflect":
        # Fold the axes in the reverse order of fill_borders.
        for axis in reversed(range(nd)):
            b, a, n = geom.before[axis], geom.after[axis], geom.image_shape[axis]
            sl = _axis_slicer(geom, axis)
            if b:
                z[sl(slice(b, 2 * b))] += np.flip(z[sl(slice(0, b))], axis=axis - nd)
            if a:
                z[sl(slice(b + n - a, b + n))] += np.flip(z[sl(slice(b + n, b + n + a))], axis=axis - nd)
    return z[(...,) + geom.interior]


def crop(y, geom):
    """Apply ``R``: the output window of a buffer (stack), as a view."""
    return y[(...,) + geom.crop]


def crop_adjoint(y, geom, dtype=None):
    """Apply ``R^T``: embed an output-shaped array (stack) in a zero buffer."""
    buffer = np.zeros(y.shape[: y.ndim - geom.ndim] + geom.fft_shape, dtype=dtype or y.dtype)
    buffer[(...,) + geom.crop] = y
    return buffer


def place_kernel(kernels, geom, dtype):
    """Kernels (stack) zero-padded to ``fft_shape`` with ``anchor`` at the origin.

    Callers guarantee that the kernel fits in the buffer, so the modular
    indices never collide.
    """
    nd = geom.ndim
    lead = kernels.shape[: kernels.ndim - nd]
    out = np.zeros(lead + geom.fft_shape, dtype=dtype)
    index = np.ix_(*[(np.arange(p) - a) % s for p, a, s in zip(geom.kernel_shape, geom.anchor, geom.fft_shape)])
    out[(...,) + index] = kernels
    return out


def chunks(n_terms, geom, itemsize):
    """Slices splitting ``n_terms`` stacked buffers into chunks of bounded memory."""
    per_term = int(np.prod(geom.fft_shape)) * itemsize
    step = max(1, CHUNK_BYTES // max(per_term, 1))
    return [slice(i, min(i + step, n_terms)) for i in range(0, n_terms, step)]
