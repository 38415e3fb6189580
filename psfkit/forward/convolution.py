"""Space-invariant blur: FFT convolution with explicit boundary models."""

import numpy as np

from psfkit.forward import _fftconv
from psfkit._fft import irfftn, rfftn
from psfkit._validation import as_float_array, as_psf, check_choice, float_dtype, peak_magnitude, scale_exponent
from psfkit.tiling import check_dask_image, halo_depth, is_dask, map_blocks_with_halo

__all__ = ["convolve"]

def convolve(image, psf, *, boundary="reflect"):
    r"""Convolve an image with a PSF by real FFTs.

    Parameters
    ----------
    image : (M, N) or (P, M, N) ndarray or dask.array.Array
        Image (any number of dimensions); integers are converted to float64.
        A dask array gives a lazy dask array of the same chunks, each block
        computed from itself and the PSF's reach around it (exact; boundaries
        ``"reflect"``, ``"constant"`` and ``"zero"``).
    psf : ndarray
        Point spread function with as many dimensions as ``image``, centre at
        index ``n // 2`` on every axis (odd or even size). It is normalised to
        sum 1 (round-off negatives are clipped; real negative values are an
        error) and cast to the image's floating type.
    boundary : {"reflect", "periodic", "constant", "zero", "valid", "full"}, optional
        How the image is continued beyond its edges:

        - ``"reflect"``: mirror padding that repeats the edge pixel
          (``numpy.pad(mode="symmetric")``, which is ``scipy.ndimage``'s
          ``mode="reflect"``; not ``numpy.pad``'s ``"reflect"``, which is
          ndimage's ``"mirror"``). Output has the image's shape.
        - ``"periodic"``: circular convolution on the image grid. Output has
          the image's shape; conserves the total flux exactly.
        - ``"constant"`` or ``"zero"``: zeros outside the image. Output has
          the image's shape.
        - ``"valid"``: field extension, no artificial boundary: the image is
          the larger field seen by the optics and only the pixels whose whole
          PSF support lies inside it are returned, shape ``N - P + 1`` per
          axis (``scipy.signal.convolve(..., mode="valid")``).
        - ``"full"``: zeros outside the image and the whole support of the
          result, shape ``N + P - 1`` per axis
          (``scipy.signal.convolve(..., mode="full")``).

    Returns
    -------
    blurred : ndarray or dask.array.Array
        The blurred image, in the image's floating type (float32 stays
        float32, float64 stays float64).

    Raises
    ------
    ValueError
        If an array contains NaN/inf, has the wrong number of dimensions, the
        PSF is larger than the image for ``"reflect"``, ``"periodic"`` or
        ``"valid"``, or ``boundary`` is unknown.

    Notes
    -----
    With the PSF centre :math:`c = \lfloor P/2 \rfloor`, the result is

    .. math:: (h \star x)[i] = \sum_j h[j]\, x[i - j + c],

    where :math:`x` is continued beyond the image as ``boundary`` says. The
    convolution is computed as :math:`R\,C\,E\,x`: ``E`` pads the image into a
    buffer of fast FFT length (at least ``N + P - 1`` so that nothing wraps
    around, except for ``"periodic"``), ``C`` is a circular convolution by
    real FFTs (pyFFTW when installed) and ``R`` crops the output. The FFTs
    run on the image multiplied by an exact power of two that brings its peak
    into :math:`[0.5, 1)`, so every finite image works, subnormal values and
    values at the top of the float range included; since the PSF averages,
    the result is clipped to the image's largest absolute value (which only
    removes round-off).

    Examples
    --------
    >>> import numpy as np
    >>> from psfkit import convolve
    >>> psf = np.array([[0, 1, 0], [1, 4, 1], [0, 1, 0]]) / 8
    >>> image = np.zeros((5, 5))
    >>> image[2, 2] = 1.0
    >>> blurred = convolve(image, psf)
    >>> np.allclose(blurred[1:4, 1:4], psf)
    True
    >>> convolve(np.ones((64, 64), np.float32), psf, boundary="valid").shape
    (62, 62)
    >>> float(convolve(np.arange(16.0).reshape(4, 4), psf, boundary="periodic").sum())
    120.0
    """
    if is_dask(image):
        return _convolve_dask(image, psf, boundary)
    image = as_float_array(image, "image")
    psf = as_psf(psf, "psf", ndim=image.ndim, dtype=image.dtype)
    check_choice(boundary, "boundary", _fftconv.BOUNDARIES)
    _fftconv.check_kernel_fits(image.shape, psf.shape, boundary)

    geom = _fftconv.geometry(image.shape, psf.shape, boundary)
    ndim = image.ndim
    # The FFTs run on the image scaled by 2**-k to a peak in [0.5, 1)
    # (psfkit._validation): their sums cannot overflow and subnormal images keep
    # their precision; the scaling is exact, so other images get the same bits.
    k = scale_exponent(image)
    spectrum = rfftn(_fftconv.extend(image, geom, exponent=-k), ndim)
    spectrum *= rfftn(_fftconv.place_kernel(psf, geom, image.dtype), ndim)
    blurred = _fftconv.crop(irfftn(spectrum, geom.fft_shape, ndim), geom)
    # A non-negative sum-1 PSF averages, so |blurred| <= peak: clipping only
    # removes round-off, which would overflow at the top of the float range.
    bound = np.ldexp(image.dtype.type(peak_magnitude(image)), -k)
    np.clip(blurred, -bound, bound, out=blurred)
    return np.ldexp(blurred, k)


def _convolve_dask(image, psf, boundary):
    """Lazy :func:`convolve` of a dask array, block by block with a halo of the PSF's reach: exact."""
    check_dask_image(image, ndim=None)
    dtype = float_dtype(image.dtype)
    psf = as_psf(psf, "psf", ndim=image.ndim, dtype=dtype)
    check_choice(boundary, "boundary", _fftconv.BOUNDARIES)
    if boundary not in ("reflect", "constant", "zero"):
        raise ValueError(
            f'boundary={boundary!r} is not available for a dask array ("periodic" wraps the whole image around, '
            '"valid" and "full" change its shape); use "reflect", "constant" or "zero"'
        )
    _fftconv.check_kernel_fits(image.shape, psf.shape, boundary)

    def tile(piece, window):
        return convolve(piece, psf, boundary=boundary)

    return map_blocks_with_halo(tile, image, halo_depth(psf.shape, image.shape, factor=1), dtype=dtype,
                                min_shape=psf.shape, name="psfkit-convolve", token=(psf, boundary))
