"""One-call blind deblurring: estimate the PSF, then deconvolve."""

import warnings

import numpy as np

from psfkit._validation import as_float_array, check_bool, check_choice
from psfkit.tiling import central_window, check_dask_image, is_dask, read_window

_METHODS = ("auto", "unrolled", "rl-tv", "rl", "fista", "wiener")
IDENTIFIED, MILDER, INPUT = "identified", "milder", "input"
_NO_CONSISTENT_PSF = (
    "deblur: no candidate PSF is consistent with this image (it holds detail at frequencies that the estimated PSF "
    "passes nothing at, z = {z:.1f}: the estimate is too broad, or the stated optics are wrong); the input is "
    "returned unchanged. Pass optics= (or cutoff=) if they are known, or check NA, wavelength and pixel size."
)


def camera_background(image):
    """Conservative estimate of the constant camera baseline / dark level.

    The 0.5th percentile of the 3 x 3 median-filtered image: the darkest
    pixels of the scene, without single-pixel noise or dead pixels.
    """
    from scipy.ndimage import median_filter

    return float(np.percentile(median_filter(image, size=3, mode="reflect"), 0.5))


class _NoiseFit:
    """The Poisson-Gaussian noise fit ``(a, b)`` of ``image``, measured on first call and kept.

    The refinement needs it (its relative noise decides the sparsity start);
    measured here, it can be shared with later steps without a second fit.
    """

    def __init__(self, image):
        self.image, self.fit = image, None

    def __call__(self):
        if self.fit is None:
            from psfkit.restoration._regularization import noise_model

            self.fit = noise_model(self.image)
        return self.fit


def deblur(
    image,
    *,
    optics=None,
    cutoff=None,
    max_amplitude=None,
    grid=None,
    method="auto",
    iterations=None,
    regularization="auto",
    size=None,
    refine=None,
    device=None,
    progress=False,
    callback=None,
    return_info=False,
):
    r"""Blindly deblur a microscope image: identify its PSF, then deconvolve.

    Parameters
    ----------
    image : (M, N) or (Z, Y, X) array_like or dask.array.Array
        Raw image or stack (any dtype, offset and scale). An image the
        network identifies needs both sides >= 64 pixels; a stack needs
        ``optics``. A dask array is identified on its central window (the
        whole image up to 2048 x 2048 pixels or 2^24 voxels; all of it for a
        ``grid`` map, which reads it once) and deconvolved lazily, tile by
        tile, with the settings of that window (see :func:`psfkit.deconvolve`,
        Notes); ``restored`` is then a dask array.
    optics : psfkit.Optics, optional
        The microscope, when known; it gives ``cutoff``. Widefield images
        sampled at fc <= 0.27 are identified blindly; stacks, confocal,
        Airyscan and light-sheet images and under-sampled images are
        deconvolved with the nominal PSF of their optics (see
        :func:`psfkit.estimate_psf`), stacks with their anisotropic voxel
        ``(z_step, pixel_size, pixel_size)``.
    cutoff : float, optional
        Known cut-off frequency fc in cycles/pixel; from physical units use
        ``psfkit.cutoff_frequency(numerical_aperture, wavelength, pixel_size)``.
        Below 0.125 (finely sampled images) the PSF is identified on a
        downsampled copy; above 0.27 (under-sampled) it is the nominal
        pixel-integrated Airy pattern (see :func:`psfkit.estimate_psf`).
    max_amplitude : float, optional
        Known bound (waves) on the aberration coefficients.
    grid : (int, int), optional
        Estimate and remove a space-varying blur from a ``gy x gx`` PSF map.
    method : {"auto", "unrolled", "rl-tv", "rl", "fista", "wiener"}, optional
        Deconvolution method (see :func:`psfkit.deconvolve`). ``"auto"``
        (default) is the learned ``"unrolled"`` network, which was trained
        with estimated PSFs and is the most robust to their errors (see the
        deblurring benchmark); if ``iterations`` or a numeric
        ``regularization`` is given it is ``"rl-tv"``, whose knobs those are.
    iterations : int, optional
        Iterations of the deconvolution (its default if None).
    regularization : "auto" or float, optional
        Passed to :func:`psfkit.deconvolve`.
    size : int, optional
        Side of the estimated PSF window (see :func:`psfkit.estimate_psf`).
    refine : bool or None, optional
        Fit the network's PSF estimate to the image (about 4-8 s, on one
        CPU thread); ``None`` (default) follows :func:`psfkit.estimate_psf`:
        a global estimate is refined when the network finds it strongly
        aberrated, a ``grid`` map is not.
    device : str, optional
        Where the networks run (CUDA when available).
    progress : bool, optional
        Show a progress bar during deconvolution.
    callback : callable, optional
        Called as ``callback(iteration, estimate)`` after every iteration of
        the deconvolution (see :func:`psfkit.deconvolve`); returning False
        stops it (a viewer's cancel button, for example).
    return_info : bool, optional
        Also return what was done (see Returns).

    Returns
    -------
    restored : (M, N) or (Z, Y, X) ndarray
        Deblurred image, in the intensity units of ``image``, camera
        baseline included (``"unrolled"`` estimates it and keeps it as the
        background of its model); float32 for a stack.
    psf : (size, size), (gy, gx, size, size) or (Z', size, size) ndarray
        The PSF deconvolved with (for ``candidate="input"``, the refuted
        estimate): the estimated PSF or PSF map, or a nominal PSF.
    info : dict
        Only with ``return_info``: ``"source"`` (``"identified"`` or
        ``"nominal"``, see :func:`psfkit.estimate_psf`); ``"candidate"``,
        what was used: ``"identified"``, ``"nominal"``, ``"milder"`` (the
        aberration-free PSF at the identified fc) or ``"input"`` (returned
        unchanged, with a warning), see Notes; ``"consistency"``
        (``{"z", "ratio", "refuted"}`` of that test for the PSF used, None
        for stacks and maps); ``"method"`` (the
        deconvolution run), ``"iterations"`` and ``"discrepancy"`` (RL and
        RL-TV: iterations run and the last residual-to-noise ratio, about 1
        when stopped by the discrepancy principle; None otherwise),
        ``"resolution"``: ``(before, after)`` in pixels by image decorrelation
        analysis (:func:`psfkit.decorrelation_resolution`; for a stack, on the
        plane of largest variance; a smaller value after is a sharper image
        -- or amplified noise, which the analysis cannot tell apart) and
        ``"uncertainty"`` and ``"refined"`` (of the identification, see
        :func:`psfkit.estimate_psf`; None and False for a nominal PSF) and
        ``"confidence"``: ``"high"`` when a consistent PSF was used and the
        decorrelation resolution improved, else ``"low"``. For a dask
        array, ``after`` and ``"confidence"`` are None (they would compute the
        result) and ``before`` is measured on the identification window.

    Notes
    -----
    *Never worse than the input.* No blur passes detail beyond its OTF's
    support, so a 2-D image that holds signal where an identified PSF's OTF
    passes nothing refutes that PSF (too broad: deconvolving with it
    over-sharpens). The test compares the image's periodogram over the
    inner and outer half of that dead zone, which white noise leaves flat
    (``psfkit.identification._consistency``). A refuted estimate is replaced
    by the aberration-free PSF at the known or identified fc, if that one
    is consistent, else the input is returned unchanged with a warning. On
    the 36 two-dimensional cases of ``benchmarks/bench_real.py`` the true
    and nominal PSFs were never refuted; see that benchmark for what the
    test catches. It cannot catch a PSF that is too broad only within the
    image's noise, nor a wrong PSF of the right extent; a nominal PSF from
    stated optics is trusted (processed Airyscan images have a non-white
    noise spectrum that the test reads as detail). Give ``optics`` whenever
    they are known: without them, on the real-optics benchmark (confocal,
    light-sheet and under-sampled widefield PSFs, outside the network's fc
    range) the output was still below the input on 20 of 36 images; with
    them, on 1.

    See Also
    --------
    psfkit.estimate_psf, psfkit.deconvolve

    Examples
    --------
    >>> import psfkit
    >>> image = psfkit.data.celegans()[:128, :128]
    >>> optics = psfkit.Optics(**psfkit.data.sample_info("celegans")["optics"])  # Airyscan, 42.6 nm pixels
    >>> restored, psf, info = psfkit.deblur(image, optics=optics, return_info=True)
    >>> restored.shape, psf.shape, info["source"], info["method"]
    ((128, 128), (33, 33), 'nominal', 'rl-tv')

    A stack is deconvolved with the 3-D PSF of its optics:

    >>> import numpy as np
    >>> optics = psfkit.Optics(na=1.4, wavelength=0.52, pixel_size=0.1, z_step=0.3)
    >>> stack = psfkit.simulate_acquisition(
    ...     np.ones((9, 48, 48)), psfkit.microscope_psf(optics, (9, 15, 15)), gain=100, rng=0)
    >>> restored, psf = psfkit.deblur(stack, optics=optics, size=15, iterations=5)
    >>> restored.shape, psf.shape
    ((9, 48, 48), (9, 15, 15))
    """
    from psfkit.restoration.deconvolution import (
        _check_iterations,
        _check_regularization,
        automatic_settings,
        deconvolve,
        _deconvolve,
    )
    from psfkit.identification.estimate import _estimate_psf

    # validated once, here: the estimation below trusts it (the deconvolution, public, checks it again)
    lazy = is_dask(image)
    if lazy:  # identified on a window of it (the whole image for a map), deconvolved tile by tile
        from psfkit.restoration.tiled import DECISION_SIZE, deconvolve_dask

        check_dask_image(image)
        window = tuple(slice(0, n) for n in image.shape)
        if grid is None:
            window = central_window(image.shape, DECISION_SIZE[image.ndim])
        sample = as_float_array(read_window(image, window), "image", ndim=(2, 3))
    else:
        image = sample = as_float_array(image, "image", ndim=(2, 3))
    check_choice(method, "method", _METHODS)
    # the deconvolution's options are checked before the PSF estimation (seconds) runs
    progress = check_bool(progress, "progress")
    return_info = check_bool(return_info, "return_info")
    if iterations is not None:
        _check_iterations(iterations)
    if not (isinstance(regularization, str) and regularization == "auto"):
        _check_regularization(regularization, "rl-tv" if method == "auto" else method, image.ndim)
    if method == "unrolled" and image.ndim == 3:
        raise ValueError('method="unrolled" is 2-D only (the network was trained on images); use "rl-tv" for a stack')
    if method == "unrolled" and not automatic_settings(iterations, regularization):
        raise ValueError(
            'method="unrolled" has its number of steps and its regularisation fixed by training; '
            'leave iterations=None and regularization="auto"'
        )
    noise = _NoiseFit(sample)  # fitted at most once, shared by the refinement and the deconvolution
    psf, estimated = _estimate_psf(
        sample, optics=optics, cutoff=cutoff, max_amplitude=max_amplitude, size=size, grid=grid, refine=refine,
        device=device, return_coefficients=True, noise=noise, checked=True,
    )
    psf, candidate, consistency = _checked_candidate(sample, psf, estimated, optics, cutoff, size, noise)
    report = {}
    if candidate == INPUT:  # no PSF consistent with the (2-D) image: the safe candidate, said plainly
        warnings.warn(_NO_CONSISTENT_PSF.format(z=consistency["z"]), UserWarning, stacklevel=2)
        restored, method, report["iterations"] = image.astype(np.float64, copy=not lazy), None, 0
    else:
        nominal = candidate != IDENTIFIED
        if method == "auto":  # iterations and a weight are rl-tv's knobs, as is a PSF the network never saw
            method = "unrolled" if automatic_settings(iterations, regularization) and not nominal else "rl-tv"
        # The unrolled network was trained and validated with the camera baseline estimated and removed. RL-TV keeps
        # any offset as part of the object (harmless: A c = c), because an estimated baseline is real signal on
        # specimens that fill the field: removing it cost up to 6 dB (benchmarks/bench_real.py, 6 of 36 cases below
        # the input).
        background = max(camera_background(sample), 0.0) if method == "unrolled" else 0.0
        options = {  # deconvolve's own defaults for everything deblur does not set
            **deconvolve.__kwdefaults__,
            "method": method,
            "iterations": iterations,
            "regularization": regularization,
            "background": background,
            "progress": progress,
            "callback": callback,
            "device": device,
        }
        if image.ndim == 3:  # a stack: its voxel, and half the memory
            options.update(spacing=(optics.z_step, optics.pixel_size, optics.pixel_size), dtype=np.float32)
        if lazy:
            restored = deconvolve_dask(image, psf, options, _deconvolve, noise=noise, report=report)
        else:
            restored = _deconvolve(image, psf, **options, noise=noise, report=report)
    if not return_info:
        return restored, psf
    info = {
        "source": estimated["source"], "candidate": candidate, "consistency": consistency, "method": method,
        "iterations": report.get("iterations"), "discrepancy": report.get("discrepancy"),
        # a lazy result is not computed for it: the sample's resolution only
        "resolution": _resolution_gain(sample, None if candidate == INPUT else None if lazy else restored),
        "uncertainty": estimated.get("uncertainty"), "refined": estimated["refined"],
    }
    before, after = info["resolution"]
    if lazy and candidate != INPUT:
        return restored, psf, dict(info, resolution=(before, None), confidence=None)
    sharper = before is not None and after < before
    return restored, psf, dict(info, confidence="high" if sharper else "low")


def _checked_candidate(image, psf, estimated, optics, cutoff, size, noise):
    """``(psf, candidate, consistency)``: the first candidate PSF the image's spectrum does not refute.

    A nominal PSF (the user's optics) is kept. An identified one is tested;
    if refuted, the aberration-free PSF at the known fc (the nominal, from
    ``optics`` or ``cutoff``) or at the identified fc (a milder one); then the
    input itself. Only a global 2-D PSF is tested (see
    :mod:`psfkit.identification._consistency`); stacks and PSF maps keep the
    estimate (consistency None).
    """
    from psfkit.identification._consistency import support_consistency
    from psfkit.identification._nominal import NOMINAL, nominal_psf

    source = estimated["source"]
    if image.ndim != 2 or psf.ndim != 2:
        return psf, source, None
    check = support_consistency(image, psf, noise())
    # the stated optics are trusted: processed images (Airyscan) reshape their noise spectrum, which the test reads
    # as detail (the bundled C. elegans image: z = 10 against its nominal Airyscan PSF); reported, not acted on
    if not check["refuted"] or source == NOMINAL:
        return psf, source, check
    known = optics is not None or cutoff is not None
    fc = optics.cutoff_frequency if optics is not None else cutoff if cutoff is not None else estimated["cutoff"]
    milder = nominal_psf(image.shape, optics, fc, psf.shape[0] if size is None else size)
    milder_check = support_consistency(image, milder, noise())
    if milder_check["refuted"]:
        return psf, INPUT, check
    return milder, NOMINAL if known else MILDER, milder_check


def _resolution_gain(image, restored):
    """Decorrelation resolution (pixels) of ``image`` and ``restored``, on a stack's plane of largest variance.

    ``restored=None``: the image was returned unchanged (analysed once, the same value twice).
    """
    from psfkit.metrics import decorrelation_resolution

    if image.ndim == 3:
        plane = int(np.argmax(image.reshape(len(image), -1).var(axis=1)))
        image, restored = image[plane], None if restored is None else restored[plane]
    if min(image.shape) < 16:  # too small for the analysis
        return None, None
    before = float(decorrelation_resolution(image))
    return before, before if restored is None else float(decorrelation_resolution(restored))
