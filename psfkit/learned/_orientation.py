"""Resolve the point-reflection ambiguity of a spectrum-based PSF estimate.

A PSF and its point reflection (all odd Zernike terms -- coma, trefoil --
negated) have the same power spectrum, so the network cannot tell them apart.
They differ in the phase of the transfer function: deconvolving with the
wrong one leaves an all-pass phase error that smears edges into oscillating
tails. Natural and biological images have sparse gradients, so the candidate
whose deconvolution has the sparser gradients (lower l1/l2 ratio, Krishnan et
al., CVPR 2011) is kept -- the criterion that :mod:`._refine` optimises.
"""

import numpy as np

_ODD = np.array([False, False, False, True, True, True, True, False])
_CROP = 256


def _taper(shape, width):
    ramps = []
    for n in shape:
        w = np.ones(n)
        r = 0.5 - 0.5 * np.cos(np.pi * (np.arange(width) + 0.5) / width)
        w[:width], w[n - width :] = r, r[::-1]
        ramps.append(w)
    return ramps[0][:, None] * ramps[1][None, :]


def _noise_to_signal(crop, taper):
    """Wiener regulariser: the noise floor of the standardised crop's spectrum.

    Frequencies beyond 0.5 cycle/pixel in radius lie outside every supported
    OTF (2 fc <= 0.5), so their power is noise alone. Matching the Wiener
    regulariser to it was measured to pick the right orientation in 100 / 98 /
    75 % of cases without / with moderate / with strong noise (40 random
    Zernike PSFs each, 256^2 specimens), against 100 / 93 / 47 % for a fixed
    1e-2.
    """
    power = np.abs(np.fft.fft2(crop)) ** 2 / np.sum(taper**2)
    fy = np.fft.fftfreq(crop.shape[0])[:, None]
    fx = np.fft.fftfreq(crop.shape[1])[None, :]
    floor = power[np.hypot(fy, fx) > 0.5].mean()
    return float(np.clip(floor, 1e-2, 1.0))


def prepare_crop(image):
    """Central crop (<= 256^2), standardised and tapered against wrap-around, and its Wiener regulariser."""
    h, w = image.shape
    ch, cw = min(h, _CROP), min(w, _CROP)
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    crop = image[y0 : y0 + ch, x0 : x0 + cw].astype(np.float64)
    crop = (crop - crop.mean()) / max(crop.std(), 1e-12)
    taper = _taper(crop.shape, min(16, min(ch, cw) // 4))
    crop = crop * taper
    return crop, _noise_to_signal(crop, taper)


def choose_orientation(image, coefficients, cutoff, *, indices, threshold=0.01):
    """Return ``coefficients`` or their point-reflected variant, whichever fits ``image``.

    ``coefficients`` is (K,) with a float ``cutoff``, or (M, K) candidates
    with ``cutoff`` (M,), each oriented separately from one image spectrum.
    Odd terms smaller than ``threshold`` waves in total (RMS) make both
    candidates nearly identical; such an estimate is returned unchanged.
    """
    import torch

    from ._refine import prepare, sparsity_objective

    coefficients = np.asarray(coefficients, dtype=np.float64)
    batch = np.atleast_2d(coefficients)
    cutoffs = np.broadcast_to(np.asarray(cutoff, dtype=np.float64), batch.shape[:1])
    odd = _ODD[: batch.shape[1]]
    ambiguous = np.sqrt(np.sum(batch[:, odd] ** 2, axis=1)) >= threshold
    if not ambiguous.any():
        return coefficients
    reflected = np.where(odd, -batch, batch)  # the point-reflected PSFs
    spectrum, epsilon, shape = prepare(image)
    with torch.no_grad():
        scores = sparsity_objective(
            torch.from_numpy(np.concatenate([batch, reflected])), torch.from_numpy(np.concatenate([cutoffs, cutoffs])),
            spectrum, epsilon, shape, indices,
        ).numpy().reshape(2, -1)
    flip = ambiguous & (scores[1] < scores[0])
    return np.where(flip[:, None], reflected, batch).reshape(coefficients.shape)
