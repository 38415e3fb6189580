"""Can a candidate PSF have produced this image? A no-reference test on the image's own spectrum (private).

No blur passes detail beyond its OTF's support: where the candidate's OTF
carries (almost) nothing, ``|H|^2 < 1e-3``, the image's periodogram must be
the camera's white noise -- flat. Signal there has a spectrum that falls with
frequency, so the test compares the mean Welch periodogram over the inner and
the outer half (by radius) of that dead zone: a ratio of 1 under white noise,
whatever the noise level (the absolute noise floor of psfkit's Poisson-Gaussian
fit was off by -5 % to +50 % on the real-optics benchmark's images, too much
for an absolute test). A PSF that is too broad for the image is refuted; a PSF
that is too narrow is not (its dead zone is empty or holds noise), nor is a
smooth specimen, which has nothing at those frequencies either way.

The dead zone is where ``|H|^2`` is below ``min(1e-3, 0.05 sigma^2 / P_low)``
(``sigma^2`` the Poisson-Gaussian noise power, ``P_low`` the periodogram at the
lowest frequencies): where even the true blur would leave the signal at a few
percent of the noise. A fixed 1e-3 refuted the true PSF of noiseless images
(z = 47), whose detail reaches far down the OTF's tail.

Calibration (``python benchmarks/calibrate_consistency.py``, ~6 minutes): on
``benchmarks/bench_real.py``'s 36 two-dimensional cases (measured
PSFs, real specimens, three noise levels) and 24 synthetic ones (random
specimens, filaments and scikit-image's cell through random Zernike PSFs at fc
0.10-0.27, 30 to 10^6 photons), the true and the nominal PSFs reached
z <= 3.7. The network's estimates without optics were refuted on 3 real cases
(the under-sampled DAPI optics, estimates 3-5x too wide, deblurred 4-16 dB
below the input) and on no synthetic one. With the level 10x higher, 6 real and
4 synthetic estimates were refuted, but so was a true PSF (z = 7.9): the test
stays conservative and misses estimates too broad only within the noise.
"""

import numpy as np

WINDOW = 64
_DEAD = 1e-3  # |H|^2 below this: the candidate transfers nothing there
_MIN_ORDINATES = 16
_MAX_SIDE = 512  # a centre crop: the test's power does not grow without bound with the image
# Refuted when both hold: z beyond the calibration's worst true PSF (|z| <= 4), and an effect a few percent of
# the noise (non-white camera noise of a few percent is not a blur).
Z_REFUTED, RATIO_REFUTED = 6.0, 0.05


def _otf_power(psf):
    """|OTF|^2 of ``psf`` (sum 1) on the periodogram's grid, the PSF folded onto WINDOW x WINDOW around its centre."""
    folded = np.zeros((WINDOW, WINDOW))
    rows = (np.arange(psf.shape[0]) - psf.shape[0] // 2) % WINDOW
    cols = (np.arange(psf.shape[1]) - psf.shape[1] // 2) % WINDOW
    np.add.at(folded, (rows[:, None], cols[None, :]), psf / psf.sum())
    return np.abs(np.fft.rfft2(folded)) ** 2


def _dead_level(power, radius, noise):
    """|H|^2 below which even the true blur would leave the signal under 5 % of the noise.

    The signal's spectrum falls with frequency, so ``|H(f)|^2 S(f) <= |H(f)|^2
    P_low`` with ``P_low`` the periodogram at the lowest frequencies: at high
    SNR the dead zone must be deeper (a noiseless image shows detail far down
    the OTF's tail). At most :data:`_DEAD`.
    """
    low = power[(radius >= 2.0 / WINDOW) & (radius <= 4.0 / WINDOW)].mean()
    return float(np.clip(0.05 * noise / max(low, 1e-300), 1e-8, _DEAD))


def support_consistency(image, psf, noise=None):
    """``{"z", "ratio", "refuted"}``: is there signal where ``psf``'s OTF passes nothing?

    ``noise``: the Poisson-Gaussian fit ``(a, b)`` of ``image`` if already
    made (:func:`psfkit.restoration._regularization.noise_model`).

    ``ratio``: inner-half over outer-half mean periodogram in the dead zone,
    minus 1; ``z``: that over its standard error. ``refuted`` when both exceed
    :data:`Z_REFUTED` and :data:`RATIO_REFUTED`. Images smaller than the
    window, and PSFs whose dead zone is too small to test, are not refuted
    (z = 0).
    """
    image = np.asarray(image, dtype=np.float64)
    if min(image.shape) < WINDOW:
        return {"z": 0.0, "ratio": 0.0, "refuted": False}
    starts = [max((n - _MAX_SIDE) // 2, 0) for n in image.shape]
    image = image[starts[0] : starts[0] + _MAX_SIDE, starts[1] : starts[1] + _MAX_SIDE]
    from psfkit.identification._spectral_fit import welch_periodogram
    from psfkit.restoration._regularization import noise_variance

    power = welch_periodogram(image, WINDOW).numpy()  # of the standardised crop: every half-overlapping window
    count = np.prod([(n - WINDOW) // (WINDOW // 2) + 1 for n in image.shape])
    # the white noise power of the crop (from the fit (a, b) if given), in the standardised image's units
    noise = noise_variance(image, noise)[0] / max(float(image.var()), 1e-300)
    fy = np.fft.fftfreq(WINDOW)[:, None]
    fx = np.fft.rfftfreq(WINDOW)[None, :]
    radius = np.hypot(fy, fx)
    dead = (_otf_power(np.asarray(psf, dtype=np.float64)) < _dead_level(power, radius, noise)) & (radius > 2.0 / WINDOW)
    if dead.sum() < _MIN_ORDINATES:
        return {"z": 0.0, "ratio": 0.0, "refuted": False}
    r, p = radius[dead], power[dead]
    inner = r <= np.median(r)
    ratio = float(p[inner].mean() / max(p[~inner].mean(), 1e-300) - 1.0)
    # the ordinates of half-overlapping Hann windows are about half as many independent ones as the windows
    error = np.sqrt(1.0 / inner.sum() + 1.0 / (~inner).sum()) / np.sqrt(0.5 * count)
    z = ratio / error
    return {"z": float(z), "ratio": ratio, "refuted": bool(z > Z_REFUTED and ratio > RATIO_REFUTED)}
