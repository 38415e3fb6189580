"""Quality metrics for estimated PSFs and restored images."""

import numpy as np

from psfkit._validation import as_float_array, check_bool, check_int, check_positive, scale_exponent

__all__ = ["decorrelation_resolution", "fwhm", "psf_snr", "psnr"]


# A PSF whose sum is below this share of the sum of its absolute values is
# mostly cancellation (e.g. a zero-mean pattern): dividing by that sum would
# blow its round-off up into the normalised PSF.
_MIN_SUM_SHARE = 1e-6


def _unit_sum(psf):
    """``psf`` (stack) divided by its sum, and each PSF's sum over the sum of its absolute values."""
    # An exact power-of-two scaling first: sums of huge values cannot overflow.
    _, k = np.frexp(np.abs(psf).max(axis=(-2, -1), keepdims=True))
    psf = np.ldexp(psf, -k)
    total = psf.sum(axis=(-2, -1), keepdims=True)
    share = total / np.maximum(np.abs(psf).sum(axis=(-2, -1), keepdims=True), np.finfo(psf.dtype).tiny)
    valid = share > _MIN_SUM_SHARE
    return psf / np.where(valid, total, 1), share[..., 0, 0]


def _normalised(psf, name):
    psf = as_float_array(psf, name, ndim=(2, 3), dtype=np.float64)
    normalised, share = _unit_sum(psf)
    if not np.all(share > _MIN_SUM_SHARE):
        raise ValueError(
            f"{name} must have a positive sum that is not negligible against its values (a PSF is an intensity), "
            f"got sum / sum(|{name}|) = {np.min(share):.2g}"
        )
    return normalised


def _shift(psf, dy, dx):
    # zero-filled integer translation (not circular: a shifted PSF loses what leaves the window)
    out = np.zeros_like(psf)
    h, w = psf.shape[-2:]
    if abs(dy) >= h or abs(dx) >= w:  # everything leaves the window
        return out
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[..., yd, xd] = psf[..., ys, xs]
    return out


def psf_snr(estimate, reference, *, align=False, max_shift=3):
    r"""Signal-to-noise ratio of an estimated PSF, in dB.

    Parameters
    ----------
    estimate, reference : (M, N) or (B, M, N) ndarray
        PSFs on the same window; both are normalised to sum 1 first.
    align : bool, optional
        If True, report the best value over integer translations of the
        estimate by up to ``max_shift`` pixels and over its point reflection
        (the ambiguities blind methods cannot resolve). The estimate is
        renormalised after shifting.
    max_shift : int, optional
        Largest translation tried when ``align`` is True (>= 0; values
        beyond the window size try nothing more).

    Returns
    -------
    snr : float or (B,) ndarray
        :math:`10 \log_{10}(\|h\|^2 / \|h - \hat h\|^2)`.

    Examples
    --------
    >>> import numpy as np
    >>> h = np.zeros((5, 5)); h[2, 2] = 1
    >>> g = np.zeros((5, 5)); g[2, 3] = 1
    >>> float(psf_snr(g, h)) < 0, float(psf_snr(g, h, align=True)) > 100
    (True, True)
    """
    estimate = _normalised(estimate, "estimate")
    reference = _normalised(reference, "reference")
    if estimate.shape != reference.shape:
        raise ValueError(f"estimate and reference must have the same shape, got {estimate.shape} and {reference.shape}")
    align = check_bool(align, "align")
    # shifts by the whole window or more leave nothing: larger values change nothing
    max_shift = min(check_int(max_shift, "max_shift", minimum=0), max(estimate.shape[-2:]))
    energy = np.sum(reference**2, axis=(-2, -1))
    candidates = [estimate]
    if align:
        candidates = []
        for flipped in (estimate, estimate[..., ::-1, ::-1]):
            for dy in range(-max_shift, max_shift + 1):
                for dx in range(-max_shift, max_shift + 1):
                    moved, share = _unit_sum(_shift(flipped, dy, dx))
                    # a shift that leaves only cancelling values out is no candidate
                    candidates.append(np.where((share > _MIN_SUM_SHARE)[..., None, None], moved, np.inf))
    errors = np.min([np.sum((c - reference) ** 2, axis=(-2, -1)) for c in candidates], axis=0)
    snr = 10 * np.log10(energy / np.maximum(errors, 1e-300))
    return snr if np.ndim(snr) else float(snr)


def psnr(image, reference, *, data_range=None):
    r"""Peak signal-to-noise ratio of ``image`` against ``reference``, in dB.

    Parameters
    ----------
    image, reference : ndarray
        Arrays of the same shape.
    data_range : float, optional
        Peak-to-peak range; by default that of ``reference``.

    Returns
    -------
    psnr : float
        :math:`10 \log_{10}(\mathrm{range}^2 / \mathrm{MSE})`.

    Examples
    --------
    >>> import numpy as np
    >>> ref = np.linspace(0, 1, 100)
    >>> round(psnr(ref + 0.01, ref), 1)
    40.0
    """
    image = as_float_array(image, "image", dtype=np.float64)
    reference = as_float_array(reference, "reference", dtype=np.float64)
    if image.shape != reference.shape:
        raise ValueError(f"image and reference must have the same shape, got {image.shape} and {reference.shape}")
    if data_range is None:
        data_range = float(reference.max() - reference.min())
        if not data_range > 0:
            raise ValueError("reference is constant: its range is 0; pass data_range")
    check_positive(data_range, "data_range")
    # Both arrays scaled by the same exact power of two (peak below 1) and the
    # ratio taken in logarithms: neither the squares nor the ratio can overflow.
    k = scale_exponent(image, reference)
    mse = np.mean((np.ldexp(image, -k) - np.ldexp(reference, -k)) ** 2)
    return float(20 * np.log10(data_range) - 10 * np.log10(max(mse, 1e-300)) - 20 * k * np.log10(2))


def fwhm(profile, spacing=1.0):
    """Full width at half maximum of a sampled 1-D profile, e.g. a line through a PSF's peak.

    The half-maximum crossings on each side of the largest sample are found
    by linear interpolation between neighbouring samples (the convention of
    deconwolf's and most microscopy FWHM figures: a width *on the grid*, not
    of the continuous model).

    Parameters
    ----------
    profile : (N,) array_like
        Non-negative samples with a single main peak that falls below half of
        its maximum on both sides within the array.
    spacing : float, optional
        Sample spacing; the width is returned in its unit.

    Returns
    -------
    width : float

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(-20, 21)
    >>> round(fwhm(np.exp(-x**2 / (2 * 3.0**2)), spacing=0.1), 2)  # 2.355 sigma
    0.71
    """
    line = as_float_array(profile, "profile", ndim=1, min_size=3, dtype=np.float64)
    spacing = float(check_positive(spacing, "spacing"))
    peak = int(np.argmax(line))
    half = line[peak] / 2
    if not half > 0 or line[0] >= half or line[-1] >= half:
        raise ValueError("profile must have a positive peak and fall below half of it at both ends")
    right = peak + int(np.argmax(line[peak:] < half))
    left = peak - int(np.argmax(line[peak::-1] < half))
    x_right = right - 1 + (line[right - 1] - half) / (line[right - 1] - line[right])
    x_left = left + 1 - (line[left + 1] - half) / (line[left + 1] - line[left])
    return float((x_right - x_left) * spacing)


# ----------------------------------------------------------------------------- decorrelation analysis

# Taper width (pixels) of the cosine apodisation of the image edges, as in the
# authors' programs; an image narrower than 80 pixels is tapered over a quarter of its side.
_APODISATION = 20
# Strongest high-pass filter: the blur subtracted has this standard deviation
# in pixels (the authors' ImageJ plugin; 0.15 in their MATLAB code, in
# Fourier units: sigma = 2 g / pi).
_SIGMA_MIN = 0.14
# A maximum of d(r) must stand this far above the curve's minimum at higher
# radii to count as a peak (the authors' numerical-noise margin)...
_PEAK_MARGIN = 1e-3
# ... and peaks lower than this are noise, not a cut-off (the authors' rule).
_MIN_AMPLITUDE = 0.05
# The refined radius range reaches this far above the coarse cut-off.
_REFINE_SPAN = 0.3
# Smallest image side analysed: below it the Nyquist disk holds too few samples for a curve.
_MIN_SIDE = 16


def _apodised(image):
    """``image`` minus its edge mean, times a separable cosine (Tukey) taper to zero at the edges."""
    window = np.ones(image.shape)
    for axis, n in enumerate(image.shape):
        width = min(_APODISATION, n // 4)
        ramp = np.ones(n)
        if width:
            rise = 0.5 - 0.5 * np.cos(np.pi * (np.arange(width) + 0.5) / width)
            ramp[:width], ramp[n - width :] = rise, rise[::-1]
        window *= ramp.reshape([-1 if a == axis else 1 for a in range(image.ndim)])
    edge = window < 1
    # the mean of the tapered band: the taper then pulls the edges towards values they are near
    mean = image[edge].mean() if edge.any() else image.mean()
    return (image - mean) * window


class _Spectrum:
    """Fourier magnitudes of an image within the Nyquist disk, sorted by radius.

    Everything the decorrelation curves need. With :math:`I_n = I/|I|` and a
    real filter :math:`H(k) \\ge 0`, :math:`\\mathrm{Re}(H I \\, \\overline{I_n}) = H|I|`
    and :math:`|I_n|^2 = 1`: each curve is a cumulative sum over the samples
    sorted by radius (the half spectrum of ``rfft2``, its samples weighted by
    the number of times they occur in the full one).
    """

    def __init__(self, image):
        spectrum = np.fft.rfft2(_apodised(image))
        h, w = image.shape
        # radius normalised to Nyquist on both axes: 2 |f| with f in cycles/pixel
        radius = 2 * np.hypot(np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :])
        weight = np.full(spectrum.shape, 2.0)
        weight[:, 0] = 1
        if w % 2 == 0:
            weight[:, -1] = 1
        magnitude = np.abs(spectrum)
        magnitude[0, 0] = 0  # the mean carries no resolution
        keep = (radius < 1) & (magnitude > 0)  # I_n is 0 where I is
        order = np.argsort(radius[keep], kind="stable")
        self.radius = radius[keep][order]
        self.magnitude = magnitude[keep][order]
        self.weight = weight[keep][order]
        self.count = np.cumsum(self.weight)

    def curve(self, radii, sigma=None):
        """d(r) at ``radii`` for the image high-pass filtered with a Gaussian of ``sigma`` pixels (None: unfiltered)."""
        amplitude = self.magnitude
        if sigma is not None:
            # 1 - (transfer function of a Gaussian blur of sigma pixels), |f| = radius / 2
            amplitude = amplitude * -np.expm1(-0.5 * (np.pi * sigma * self.radius) ** 2)
        weighted = self.weight * amplitude
        norm = np.sqrt(np.dot(weighted, amplitude))
        d = np.zeros(len(radii))
        n = np.searchsorted(self.radius, radii, side="left")  # samples strictly inside each radius
        inside = n > 0
        if norm > 0 and inside.any():
            cumulative = np.cumsum(weighted)
            d[inside] = cumulative[n[inside] - 1] / (norm * np.sqrt(self.count[n[inside] - 1]))
        return d


def _peak(d):
    """Index and height of the maximum of ``d`` that is not a rise to its end; (None, 0.0) if none.

    The rule of the authors' programs: the global maximum, unless it is the
    last sample, in which case the curve is shortened from its end until a
    maximum stands more than the margin above the curve's minimum after it.
    """
    t = d.copy()
    n = len(t)
    index = int(np.argmax(t))
    while index == n - 1:
        n -= 1
        if n == 0:
            return None, 0.0
        t = t[:n]
        index = int(np.argmax(t))
        floor = d[index:].min()
        if t[index] - floor > _PEAK_MARGIN:
            break
        t[index] = floor
        index = n - 1
    return index, float(d[index])


def _decorrelation(image, n_radii, n_highpass):
    """Cut-off frequency of one 2-D image and the record of its analysis."""
    spectrum = _Spectrum(image)
    radii = np.linspace(0, 1, n_radii)
    d0 = spectrum.curve(radii)
    index, a0 = _peak(d0)
    k0 = 0.0 if index is None else radii[index]
    size = max(image.shape)
    # the weakest filter removes what lies below the unfiltered peak, the strongest all but the finest detail
    sigma_max = max(2 / k0 if k0 > 0 else size / 2, _SIGMA_MIN)
    sigmas = np.geomspace(sigma_max, _SIGMA_MIN, n_highpass)

    def analyse(radii, sigmas):
        curves = np.array([spectrum.curve(radii, s) for s in sigmas])
        found = [_peak(c) for c in curves]
        peaks = np.array([0.0 if i is None else radii[i] for i, _ in found])
        amplitudes = np.array([a for _, a in found])
        return curves, peaks, amplitudes

    def valid(peaks, amplitudes):
        return np.where(amplitudes >= _MIN_AMPLITUDE, peaks, 0.0)

    curves1, peaks1, amplitudes1 = analyse(radii, sigmas)
    # refinement: a finer series of filters around the one that gave the highest
    # cut-off (the strongest such), and a finer radius grid above that cut-off
    coarse = np.concatenate([[k0 if a0 >= _MIN_AMPLITUDE else 0.0], valid(peaks1, amplitudes1)])
    kc1 = coarse.max()
    best = int(np.flatnonzero(coarse == kc1)[-1]) - 1  # -1: the unfiltered image
    if best < 0:
        span = (max(size, sigmas[0]), sigmas[0])
    elif best < n_highpass - 1:
        span = (sigmas[best], sigmas[best + 1])
    else:
        span = (sigmas[best - 1], sigmas[best])
    sigmas2 = np.geomspace(*span, n_highpass)
    radii2 = np.linspace(max(kc1 - (radii[1] - radii[0]), 0.0), min(kc1 + _REFINE_SPAN, 1.0), n_radii)
    curves2, peaks2, amplitudes2 = analyse(radii2, sigmas2)
    kc = max(kc1, valid(peaks2, amplitudes2).max())
    info = {
        "kc": float(kc),
        "k0": float(k0),
        "a0": a0,
        "radii": np.stack([radii, radii2]),
        "d0": d0,
        "sigmas": np.stack([sigmas, sigmas2]),
        "curves": np.stack([curves1, curves2]),
        "peaks": np.stack([peaks1, peaks2]),
        "amplitudes": np.stack([amplitudes1, amplitudes2]),
    }
    return kc, info


def _reject_boolean(image):
    try:
        kind = np.asarray(image).dtype.kind
    except (TypeError, ValueError):  # ragged lists and the like: as_float_array names them
        return
    if kind == "b":
        raise TypeError("image must be an intensity image, got a boolean array (a mask has no resolution to measure)")


def decorrelation_resolution(image, *, pixel_size=None, n_radii=50, n_highpass=10, return_info=False):
    r"""Resolution of an image by decorrelation analysis, without a reference.

    The parameter-free estimate of Descloux, Grußmayer and Radenovic [1]_:
    the cut-off frequency :math:`k_c` beyond which the image's Fourier
    components no longer correlate with their own phases, i.e. where its
    signal sinks into its noise; the resolution is :math:`2\,\Delta x / k_c`.

    Parameters
    ----------
    image : (M, N) or (P, M, N) array_like
        Real image, planes of at least 16 x 16 pixels. A 3-D stack is
        analysed plane by plane (lateral resolution of each plane); project it
        first (e.g. ``image.max(axis=0)``) for one figure per stack.
    pixel_size : float, optional
        Pixel size; the resolution is returned in its unit. By default the
        resolution is in pixels.
    n_radii : int, optional
        Samples of each decorrelation curve :math:`d(r)` over its radius range
        (10 to 1000).
    n_highpass : int, optional
        Gaussian high-pass filters per pass (5 to 100).
    return_info : bool, optional
        Also return the record of the analysis.

    Returns
    -------
    resolution : float or (P,) ndarray
        :math:`2\,\Delta x / k_c`, in ``pixel_size`` units (pixels by default);
        ``inf`` when no peak is found (an image of noise, or of nothing).
        It is always above 2 pixels (:math:`k_c < 1`, the Nyquist limit).
    info : dict
        Only with ``return_info=True`` (for a stack, each value gains a
        leading plane axis):

        - ``"kc"``: :math:`k_c`, normalised to Nyquist (0 if no peak);
        - ``"k0"``, ``"a0"``: position and height of the peak of the
          unfiltered curve (:math:`A_0` measures the image's SNR);
        - ``"radii"``: (2, n_radii) radii of the coarse and the refined pass;
        - ``"d0"``: (n_radii,) the unfiltered curve on ``radii[0]``;
        - ``"sigmas"``: (2, n_highpass) standard deviations (pixels) of the
          Gaussian blurs subtracted by the high-pass filters of each pass;
        - ``"curves"``: (2, n_highpass, n_radii) the filtered curves;
        - ``"peaks"``, ``"amplitudes"``: (2, n_highpass) position
          :math:`r_i` (0: none) and height :math:`A_i` of each curve's peak.

    Notes
    -----
    The image is apodised (its edge mean subtracted and its edges tapered to
    zero by a cosine over 20 pixels, a quarter of the side on images narrower
    than 80, so that the periodic FFT sees no border step), Fourier
    transformed to :math:`I(k)` with its mean removed, and normalised to
    :math:`I_n = I/|I|`. For radii :math:`r` up to 1 (Nyquist,
    0.5 cycles/pixel, on both axes) the Pearson correlation of :math:`I` and
    :math:`I_n` restricted to the disk :math:`M(k; r) = [\,|k| < r\,]` is

    .. math::

        d(r) = \frac{\sum_k \mathrm{Re}\{I(k)\, \overline{I_n(k)}\, M(k; r)\}}
                    {\sqrt{\sum_k |I(k)|^2 \, \sum_k |I_n(k) M(k; r)|^2}},

    sums over the Nyquist disk. It rises while the disk gains signal and falls
    once it gains only noise: its peak :math:`(r_0, A_0)` marks the cut-off.
    Low frequencies dominate :math:`\sum |I|^2`, so the peak is searched again
    on the image high-pass filtered by
    :math:`1 - e^{-2 \pi^2 \sigma^2 |f|^2}` (the image minus its blur by a
    Gaussian of :math:`\sigma` pixels), :math:`\sigma` spaced geometrically
    from :math:`2/r_0` to 0.14 pixels, giving peaks :math:`(r_i, A_i)`. A
    peak is the curve's global maximum unless that is its last sample (a curve
    still rising there has no peak); peaks lower than :math:`A = 0.05` are
    ignored. A second pass refines the filters between the one giving the
    highest :math:`r_i` and its stronger neighbour, and the radii on
    :math:`[r_{\max} - \Delta r, r_{\max} + 0.3]`. Then
    :math:`k_c = \max_i r_i` over all valid peaks, :math:`r_0` included [1]_.

    Differences from the authors' programs: the filters are applied in Fourier
    space (exact, no border handling), with the :math:`\sigma` range of their
    ImageJ plugin; the image is not padded (NanoPyx and the plugin pad it to a
    square power of two); the refinement follows their MATLAB code in outline
    (NanoPyx, after the plugin, keeps only the refined pass and stops its
    radii at 0.5, so it never reports :math:`k_c > 0.5`). Peaks are found on
    the sampled radii: :math:`k_c` is the first radius past the cut-off, at
    most :math:`1/(n_{radii} - 1)` above it (0.02 by default).

    Measured with psfkit (and with NanoPyx's ``calculate_decorr_analysis``)
    on real images in ``shared/data``: Airyscan *C. elegans*
    (:func:`psfkit.data.celegans`, 42.6 nm pixels) 190 nm (192 nm);
    widefield DAPI nucleus (deconwolf demo, 130 nm pixels, plane 19 of 40,
    the plane of largest variance) 741 nm (822 nm); MPI-CBG confocal 1-AU
    line grid, maximum projection (22.49 nm pixels) 209 nm (205 nm). The
    in-focus widefield planes 16 to 21 give 675 to 755 nm: on such images
    small wiggles of the strongly filtered curves decide the peak, and the
    figure moves by about 10 % with details of the implementation.

    References
    ----------
    .. [1] A. Descloux, K. S. Grußmayer and A. Radenovic, "Parameter-free
       image resolution estimation based on decorrelation analysis",
       Nature Methods 16, 918-924 (2019). :doi:`10.1038/s41592-019-0515-7`

    Examples
    --------
    White noise limited to half the Nyquist frequency, plus weak noise: a
    cut-off near 0.5, i.e. a resolution near 4 pixels.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> spectrum = np.fft.fft2(rng.standard_normal((256, 256)))
    >>> f = np.hypot(*np.meshgrid(np.fft.fftfreq(256), np.fft.fftfreq(256)))
    >>> image = np.fft.ifft2(spectrum * (f < 0.25)).real
    >>> image += 0.05 * image.std() * rng.standard_normal(image.shape)
    >>> resolution, info = decorrelation_resolution(image, return_info=True)
    >>> bool(abs(info["kc"] - 0.5) < 0.05), bool(3.6 < resolution < 4.4)
    (True, True)
    """
    _reject_boolean(image)
    image = as_float_array(image, "image", ndim=(2, 3), dtype=np.float64)
    if min(image.shape[-2:]) < _MIN_SIDE:  # a stack may have a single plane
        raise ValueError(f"image planes must be at least {_MIN_SIDE} x {_MIN_SIDE} pixels, got shape {image.shape}")
    if pixel_size is not None:
        pixel_size = float(check_positive(pixel_size, "pixel_size"))
    n_radii = check_int(n_radii, "n_radii", minimum=10, maximum=1000)
    n_highpass = check_int(n_highpass, "n_highpass", minimum=5, maximum=100)
    return_info = check_bool(return_info, "return_info")
    # an exact power-of-two scaling: d(r) does not depend on the scale, and no square overflows
    image = np.ldexp(image, -scale_exponent(image))
    results = [_decorrelation(plane, n_radii, n_highpass) for plane in (image if image.ndim == 3 else [image])]
    unit = 1.0 if pixel_size is None else pixel_size
    resolution = np.array([2 * unit / kc if kc > 0 else np.inf for kc, _ in results])
    if image.ndim == 2:
        return (float(resolution[0]), results[0][1]) if return_info else float(resolution[0])
    if not return_info:
        return resolution
    info = {key: np.array([r[1][key] for r in results]) for key in results[0][1]}
    return resolution, info
