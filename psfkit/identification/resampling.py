"""Bringing an over-sampled image into the cut-off range the identifier knows.

The pupil phase, and so the Zernike coefficients, do not depend on the pixel
size: downsampling an image by an integer factor ``s`` multiplies its fc by
``s`` and leaves the coefficients unchanged. An image with a known fc below
the training range (confocal or high-magnification set-ups with small
pixels) is therefore downsampled until its fc lies inside, identified there,
and the PSF is rendered back at the original fc.

The downsampling keeps the lowest frequencies of the image's DCT-II: exact
for every frequency up to the new Nyquist limit (which lies beyond the OTF
support ``2 s fc``, so no blur is lost or added, unlike binning or a
Gaussian anti-aliasing filter), and free of the wrap-around ringing of an
FFT crop because the DCT extends the image symmetrically.
"""

import numpy as np

from psfkit.learned.ranges import CUTOFF_RANGE

_TARGET_CUTOFF = 0.19  # the middle of the training range, away from both edges


def oversampling_factor(cutoff):
    """Integer factor ``s`` that brings ``cutoff`` into the training range (1 inside or above it).

    ``s = round(0.19 / fc)`` puts ``s fc`` within ``0.19 +- fc / 2``, which
    for fc below the range lies in [0.1275, 0.25].
    """
    if cutoff >= CUTOFF_RANGE[0]:
        return 1
    return int(round(_TARGET_CUTOFF / cutoff))


def dct_downsample(image, factor):
    """``image`` downsampled by the integer ``factor`` by truncating its DCT-II.

    The sides are first cropped to multiples of ``factor`` (at most
    ``factor - 1`` pixels dropped), so that both axes are scaled exactly
    alike. Output sample ``(i, j)`` sits at the centre of the input block
    ``(i, j)`` of ``factor x factor`` pixels; the mean intensity is kept.
    """
    from scipy import fft

    image = np.asarray(image)
    if factor == 1:
        return image
    rows, cols = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
    coefficients = fft.dctn(np.asarray(image[:rows, :cols], dtype=np.float64), type=2, norm="ortho")
    small = fft.idctn(coefficients[: rows // factor, : cols // factor], type=2, norm="ortho")
    # the orthonormal transforms keep the energy; keep the mean instead
    return (small / factor).astype(image.dtype, copy=False)
