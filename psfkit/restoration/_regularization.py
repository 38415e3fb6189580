r"""Noise level and automatic regularisation weights of :func:`psfkit.deconvolve` (private).

The noise is modelled as Poisson–Gaussian, :math:`\operatorname{Var}[y] = a\,\mathbb E[y] + b`
(Foi et al. 2008), fitted by :func:`psfkit.estimate_noise` on the image (on a
few planes of a stack, averaged). Images too small for it get a Gaussian
estimate: the robust variance :math:`(1.4826\,\mathrm{MAD}(d))^2` of the finest
diagonal Haar coefficients :math:`d = (y_{00} - y_{01} - y_{10} + y_{11})/2` of
2×2 blocks (Donoho & Johnstone), where a blurred image has almost no signal.

:func:`psfkit.deconvolve` fits the noise once per call (:func:`noise_model`)
and passes the fit to the weights and to the unrolled network.
"""

import math

import numpy as np

# Planes of a stack used for the noise fit (evenly spaced).
_MAX_PLANES = 8


def _picked_planes(image):
    """At most :data:`_MAX_PLANES` evenly spaced (Y, X) planes of an image or a stack."""
    planes = image.reshape((-1,) + image.shape[-2:])
    return planes[np.unique(np.linspace(0, len(planes) - 1, min(len(planes), _MAX_PLANES)).round().astype(int))]


def gaussian_noise_variance(image):
    """Noise variance from the MAD of the finest diagonal Haar details (signal-independent noise).

    On a few planes of a stack (:func:`_picked_planes`), in float64 one plane at a time: a whole-stack float64 copy
    would dominate the memory of a 3-D deconvolution.
    """
    details = []
    for plane in _picked_planes(image):
        n0, n1 = (plane.shape[0] // 2) * 2, (plane.shape[1] // 2) * 2
        p = plane[:n0, :n1].astype(np.float64)
        details.append(np.abs(p[0::2, 0::2] - p[0::2, 1::2] - p[1::2, 0::2] + p[1::2, 1::2]).ravel() / 2)
    details = np.concatenate(details)
    if details.size == 0:
        return 0.0
    return float((1.4826 * np.median(details)) ** 2)


def noise_model(image):
    """Fit ``(a, b)`` of ``Var[y] = a E[y] + b``, ``a >= 0`` (``b < 0`` for data with an offset)."""
    from psfkit.forward._noise import MIN_SIZE
    from psfkit.forward.acquisition import estimate_noise

    if min(image.shape[-2:]) < MIN_SIZE:  # too small for the Poisson-Gaussian fit
        return 0.0, gaussian_noise_variance(image)
    estimates = [estimate_noise(plane) for plane in _picked_planes(image)]
    slope = float(np.mean([e.alpha for e in estimates]))
    offset = float(np.mean([e.beta for e in estimates]))
    return max(slope, 0.0), offset


def noise_variance(image, noise=None):
    """Mean noise variance of ``image`` under the Poisson–Gaussian fit ``noise`` (fitted if None), and the fit."""
    slope, offset = noise_model(image) if noise is None else noise
    offset = max(offset, 0.0)
    return max(slope * max(float(np.mean(image)), 0.0) + offset, 0.0), slope, offset


def signal_level(image, background=0.0):
    """Robust signal amplitude: the 99.9th percentile above the background."""
    return max(float(np.percentile(image, 99.9)) - background, 0.0)


def relative_noise(image, background=0.0, noise=None):
    """``(sigma / level, sigma, level)``: noise std under the Poisson-Gaussian fit over :func:`signal_level`.

    ``noise`` is the fit ``(a, b)`` of :func:`noise_model` (computed if None).
    The relative noise is 1.0 when there is no signal above the background.
    """
    variance, _, _ = noise_variance(image, noise)
    sigma = math.sqrt(variance)
    level = signal_level(image, background)
    return (sigma / level if level > 0 else 1.0), sigma, level


def auto_weights(image, background, ndim, noise=None):
    """The automatic weights of every method (:func:`psfkit.deconvolve`, Notes).

    ``noise`` is the fit ``(a, b)`` of :func:`noise_model` (computed if None).
    """
    relative, sigma, level = relative_noise(image, background, noise)
    if relative < MIN_RELATIVE_NOISE:
        relative, sigma = MIN_RELATIVE_NOISE, MIN_RELATIVE_NOISE * level
    rl_tv = min(RL_TV_GAIN * relative**RL_TV_POWER, RL_TV_MAX / (2 * ndim))
    return {
        "sigma": sigma,
        "level": level,
        "relative_noise": relative,
        "rl-tv": rl_tv,
        "fista": FISTA_GAIN * sigma * relative ** (FISTA_POWER - 1),
        "wiener": WIENER_GAIN * relative**WIENER_POWER,
    }


# Gains and powers fitted to the best weights (grid search, PSNR) of 64
# simulated acquisitions, 128 x 128: 4 specimens of psfkit.data x 2 pupil PSFs
# (in focus; defocus + astigmatism + coma) x 4 levels from 20 to 3000 photons
# with 1 to 5 photons of read noise x 2 seeds. Mean (max) loss to the best
# weight: 0.42 (2.1) dB for RL-TV, 0.37 (1.6) dB for FISTA, 0.35 (2.5) dB for
# Wiener. The powers were restricted to scale-consistent forms. RL-TV's
# weight is capped at half the positivity bound.
RL_TV_GAIN, RL_TV_POWER = 0.85, 1.5
RL_TV_MAX = 0.5
FISTA_GAIN, FISTA_POWER = 0.38, 1.5
WIENER_GAIN, WIENER_POWER = 32.0, 2.0


# The weights use at least this relative noise (the fits cover ~0.01 to 0.3), where an earlier rule of RL's
# iteration count, round(3.5 / sqrt(rho)), reached its cap of 100. Noise-free data (synthetic, thresholded: a
# measured noise of 0) then get a weak regularisation instead of an unregularised inverse, which amplifies
# round-off without bound.
MIN_RELATIVE_NOISE = (3.5 / 100) ** 2
