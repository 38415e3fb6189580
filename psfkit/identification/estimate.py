"""Blind PSF identification from one image: :func:`estimate_psf`."""

import warnings

import numpy as np

from psfkit._validation import as_float_array, check_bool, check_int, check_positive
from psfkit.identification._mtf_fit import fit_to_mtf, hypotheses, predict_mtf, spread_in_support
from psfkit.identification._orientation import choose_orientation
from psfkit.identification._nominal import IDENTIFIED, NOMINAL, check_optics, nominal_psf, route
from psfkit.identification._refine import _DEFAULT_BOUND
from psfkit.learned._weights import bundled_network, resolve_device
from psfkit.learned.ranges import FC_RANGE
from psfkit.identification.resampling import dct_downsample, oversampling_factor
from psfkit.optics.zernike import MAX_SIZE

NOLL = tuple(range(4, 12))
_EVEN = np.array([True, True, True, False, False, False, False, True])
_MIN_SIDE = 64  # one Welch window
# The network alone identifies mildly aberrated PSFs better than the spectral refinement, which wins on strongly
# aberrated ones (see refines_by_default). Measured on 105 synthetic calibration images (seeds not in the held-out
# benchmark; theta ~ U[-a, a], a in 0.03-0.2; 3 noise levels), mean PSF SNR none / moderate / strong, mild
# (a <= 0.07) | heavy (a >= 0.1): network alone 13.3 / 15.0 / 12.2 | 4.8 / 4.6 / 3.4 dB, always refined 13.2 /
# 8.3 / 6.6 | 14.9 / 8.4 / 6.5, refined above 0.065 waves 15.6 / 14.4 / 11.6 | 14.9 / 8.4 / 5.9 (0.05: 16.9 /
# 12.9 / 9.3 | 14.9 / 8.4 / 6.5; 0.08: 14.6 / 15.0 / 11.8 | 13.9 / 7.6 / 4.2; 0.1: 14.1 / 15.0 / 12.1 | 11.7 /
# 6.3 / 4.3).
_REFINE_ABOVE = 0.065  # waves
# Whether the dense MTF network's fits (its hypotheses, _mtf_fit) join the refinement's starting points. Measured
# on calibration images (benchmarks/calibrate_identifier.py, seed 31337, not the held-out set; strongly aberrated,
# fc known, mean PSF SNR of refine=True with / without them): no gain (no noise 20.2 / 21.1 dB on 10 images, one of
# them 8.5 dB worse; moderate noise 7.3 / 7.2 on 9) for about 1 s more per image, so they do not.
_NETWORK_STARTS = False


# The refinement's fit ran to the amplitude bound: the image's power spectrum is not explained by the model. On the
# held-out benchmark (coefficients up to 0.15 waves, fc known) 7 / 22 / 30 % of the refinements are rejected without /
# with moderate / with strong noise; on 3 of 48 separate synthetic calibration images (seed 31337, all three noise
# levels) the network's estimate kept there still beat the Airy pattern (PSF SNR 3.9 vs -5.0 dB, deconvolved PSNR
# +0.5 dB unrolled, +0.9 dB RL-TV), while on the bundled real C. elegans image its strongly aberrated estimate makes
# both deconvolutions produce artefacts that the Airy pattern does not. So the estimate is returned, with a warning.
_MODEL_FAILURE = (
    "estimate_psf: the refinement rejected its fit (it ran to the {bound:g}-wave bound): the image's power spectrum is "
    "not explained by the Zernike PSF model, e.g. a confocal/Airyscan or already processed image, or a specimen "
    "with one dominant orientation. The estimate returned is mostly or only the network's, unverified; compare "
    "deconvolutions with it and with psfkit.airy_psf(cutoff={fc:.3g}), or pass a known max_amplitude."
)


def refines_by_default(coefficients):
    """Whether ``estimate_psf(refine=None)`` refines a global estimate with these network coefficients.

    True when the network sees a strongly aberrated PSF (its largest
    coefficient exceeds ``_REFINE_ABOVE`` waves). The power spectrum
    identifies a mild aberration poorly: for sparse specimens (points,
    filaments) the likelihood fit drifts to larger aberrations that
    explain their spectra about as well (likelihood differences of a few
    units), while the network, trained on such images, stays close.
    """
    return bool(np.max(np.abs(coefficients)) > _REFINE_ABOVE)


def _check_cutoff(cutoff):
    if cutoff is None:
        return None
    check_positive(cutoff, "cutoff")
    if cutoff > 1:
        raise ValueError(
            f"cutoff must be at most 1 cycle/pixel, got {cutoff!r}: fc = NA x pixel size / wavelength; above 1 the "
            "pixels are so coarse that the PSF is one pixel"
        )
    return float(cutoff)


def _check_condition(value, name, lo, hi):
    if value is None:
        return None
    check_positive(value, name)
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}] (the range the network was trained on), got {value!r}")
    return float(value)


def _regions(shape, grid):
    """Row and column slices of the ``gy x gx`` regions, all inside the image.

    Region ``i`` of an axis of length ``n`` holds its own cell ``[e_i, e_{i+1})`` of the regular grid
    (``e = round(linspace(0, n, g + 1))``; the cells tile the axis, so the regions cover the image), widened
    to 1.5 times the cell (half-overlapping regions: more windows per estimate, a smoother map) and to at
    least one window, at most the axis, then shifted to lie inside the image. Cells of at least one
    window (checked by :func:`_check_grid`) keep every region mostly its own.
    """
    out = []
    for n, g in zip(shape, grid):
        edges = np.round(np.linspace(0, n, g + 1)).astype(int)
        spans = []
        for a, b in zip(edges[:-1], edges[1:]):
            width = min(n, max(_MIN_SIDE, int(round(1.5 * (b - a)))))
            start = min(max((a + b - width) // 2, 0), n - width)  # centred on the cell, inside [0, n)
            spans.append(slice(int(start), int(start + width)))
        out.append(spans)
    return out


def _check_grid(grid, shape, factor):
    """``grid`` as ``(gy, gx)``: two positive integers whose cells on ``shape`` are at least one window."""
    if (
        not isinstance(grid, (tuple, list))
        or len(grid) != 2
        or any(isinstance(g, (bool, np.bool_)) or not isinstance(g, (int, np.integer)) or g < 1 for g in grid)
    ):
        raise ValueError(f"grid must be a pair of positive integers (gy, gx), got {grid!r}")
    grid = (int(grid[0]), int(grid[1]))
    most = (shape[0] // _MIN_SIDE, shape[1] // _MIN_SIDE)
    if grid[0] > most[0] or grid[1] > most[1]:
        where = f"the image of shape {shape}" if factor == 1 else f"the image downsampled {factor} times to {shape}"
        raise ValueError(
            f"grid must give regions of at least {_MIN_SIDE} x {_MIN_SIDE} pixels (one window of the network), "
            f"i.e. at most {most} on {where}, got {grid!r}"
        )
    return grid


def _as_float32(image):
    """A checked finite float ``image`` in float32 (the network's type), refusing values beyond its range."""
    converted = np.asarray(image, dtype=np.float32)
    if converted.dtype != image.dtype and not np.all(np.isfinite(converted)):
        raise ValueError("image has values beyond the float32 range (about 3.4e38) used by the identification")
    return converted


def _mean_cutoff(weights, cutoffs, known):
    """The candidates' weighted mean fc, or exactly the user's ``known`` one."""
    return float(known) if known is not None else float(np.dot(weights, cutoffs) / np.sum(weights))


def _weighted_mean_psf(candidates, cutoffs, weights, size):
    """The ``weights``-weighted mean of the candidates' PSFs (sum 1) and the index of the candidate nearest to it."""
    from psfkit.optics.psf import zernike_psf

    psfs = np.stack([zernike_psf(t, cutoff=f, size=size, indices=NOLL) for t, f in zip(candidates, cutoffs)])
    mean = np.tensordot(weights, psfs, axes=1)
    mean /= mean.sum()
    if len(psfs) == 1:
        return mean, 0
    return mean, int(np.argmin(np.sum((psfs - mean) ** 2, axis=(1, 2))))


def _align_signs(coefficients, reference):
    """Pick, per estimate, the MTF-equivalent sign variant nearest ``reference``."""
    variants = []
    for se in (1, -1):
        for so in (1, -1):
            variants.append(coefficients * np.where(_EVEN, se, so))
    variants = np.stack(variants, axis=-2)  # (..., 4, K)
    best = np.argmin(np.sum((variants - reference[..., None, :]) ** 2, axis=-1), axis=-1)
    return np.take_along_axis(variants, best[..., None, None], axis=-2)[..., 0, :]


def estimate_psf(
    image, *, optics=None, cutoff=None, max_amplitude=None, size=None, grid=None, refine=None, device=None,
    return_coefficients=False,
):
    r"""Estimate the PSF of a microscope image blindly, with the bundled network.

    Parameters
    ----------
    image : (M, N) or (Z, Y, X) array_like
        Raw image or stack: any float or integer dtype, any offset (camera
        baseline) and scale. An image the network identifies must be at
        least 64 pixels a side; a stack needs ``optics`` (see Notes).
    optics : psfkit.Optics, optional
        The microscope, when known (NA, wavelength, pixel size, modality;
        ``z_step`` for a stack). It sets ``cutoff`` to
        ``optics.cutoff_frequency`` (give one or the other) and decides what
        is returned (see Notes): the identified PSF of a widefield image
        sampled at fc <= 0.27, else the nominal (aberration-free)
        :func:`psfkit.microscope_psf` of the optics.
    cutoff : float, optional
        Known cut-off frequency fc (cycles/pixel, at most 1; see
        :func:`psfkit.cutoff_frequency`). Above 0.27 (under-sampled,
        aliased images) the aberrations are not identified: the PSF returned
        is the pixel-integrated in-focus Airy pattern at fc. ``None``: estimated too, within
        the network's range [0.1, 0.27]. A known fc below the training range
        0.125 (finely sampled, e.g. confocal, images) is handled by
        identifying the PSF on the image downsampled by an integer factor
        ``s`` (``0.125 <= s fc <= 0.25``; the image must then have at least
        ``64 s`` pixels a side) and rendering it back at fc: the Zernike
        coefficients do not depend on the pixel size.
    max_amplitude : float, optional
        Known bound theta_max (waves) of the aberration coefficients, in
        (0, 0.3]. ``None``: unknown.
    size : int, optional
        Side of the returned PSF window (odd or even, at most 4097; centre at
        ``size // 2``); 33 by default. For a stack, the lateral side (odd)
        of the (Z', size, size) PSF, whose depth is the stack's (odd); by
        default the out-of-focus cone of that depth, at most 65.
    grid : (int, int), optional
        ``(gy, gx)``: return a map of local PSFs estimated on a regular grid
        of regions (centres at ``((i + 0.5) M / gy, (j + 0.5) N / gx)``), in
        the layout that :func:`psfkit.deconvolve` and
        :meth:`psfkit.ProductConvolution.from_grid` accept. Each region is
        at least one 64 x 64 window of the network: ``gy <= M // 64`` and
        ``gx <= N // 64`` (on the downsampled image for a small ``cutoff``),
        else ``ValueError``. The regions lie inside the image and cover it:
        each holds its cell of the grid, widened to 1.5 times its size.
    refine : bool, optional
        Fit the global estimate's coefficients (and, with ``cutoff``
        unknown, fc) to the image by maximum likelihood on its
        power spectrum, seeded on clean images by a gradient-sparsity fit
        (:mod:`psfkit.identification._refine`). The PSF returned is the mean of the
        fitted candidates' PSFs weighted by their likelihood (near-equal
        likelihoods give near-equal weights): close to the
        best fit on clean images, an average over the plausible PSFs under
        heavy noise, and never decided by which of two near-equal candidates
        round-off ranks first. The fit runs on one torch thread, so that
        its result does not depend on the thread count. It pays off on strongly aberrated PSFs (held-out
        benchmark, Noll 4-11 coefficients up to 0.15 waves, fc known, mean
        PSF SNR without / with moderate / with strong noise: 19.1 / 10.6 /
        5.0 dB, network alone 3.7 / 3.3 / 2.8) and loses on mild ones,
        whose power spectra sparse specimens explain about as well with
        larger aberrations (coefficients up to 0.05 waves: the mild set of
        ``benchmarks/bench_identification.py``), unless a known
        ``max_amplitude`` bounds the fit and the image is clean (see the user
        guide's learned-models page). About 4-8 s on one CPU thread (the
        fit's, whatever the machine) for any image size. Coefficients stay within
        ``max_amplitude`` (0.25 waves when unknown); with ``max_amplitude``
        unknown, a fit that ends on that edge is treated as a model failure:
        the network's estimate takes the weight of such fits (all of it
        when they hold at least 3/4 of the likelihood weight, see
        ``_refine.refine``), and when they hold at least half the fit is
        rejected and a ``UserWarning`` says so.
        ``None`` (default): refine a global estimate when the network's largest coefficient exceeds 0.065 waves
        (``refines_by_default`` in this module), never a ``grid`` map (the local
        estimates are not refined; the refined global estimate would only
        serve as their sign reference). ``False``: the network alone, ~0.03
        s on a 512 x 512 image (0.01 s the coefficient network, 0.02 s the
        MTF network's uncertainty).
    device : str or torch.device, optional
        Where the network runs; ``None`` uses CUDA when available, else CPU.
    return_coefficients : bool, optional
        Also return the Zernike description of each PSF.

    Returns
    -------
    psf : (size, size), (gy, gx, size, size) or (Z', size, size) ndarray
        Non-negative float64 PSF(s), each summing to 1, in the orientation of
        :func:`psfkit.zernike_psf`.
    info : dict
        Only with ``return_coefficients``: ``"noll"`` (the Noll indices),
        ``"coefficients"`` (waves; shape (8,) or (gy, gx, 8)), ``"cutoff"``
        (float or (gy, gx)) and ``"refined"`` (whether ``refine`` changed the
        global estimate; the local map estimates are never refined). With
        ``refine``, ``"coefficients"`` are those of the candidate whose PSF
        is nearest the weighted mean returned as ``psf`` (its
        ``zernike_psf`` can differ from it) and ``"cutoff"`` is the
        candidates' likelihood-weighted mean fc. ``"source"``: ``"identified"``
        or ``"nominal"`` (then the coefficients are zero). ``"uncertainty"``:
        the dense MTF network's (:mod:`psfkit.learned.mtf_net`) RMS
        predicted spread of log10 MTF inside the OTF support, for the whole
        image (None for a nominal PSF); larger under noise and on images
        the networks misread (see Notes).

    Warns
    -----
    UserWarning
        When the refinement rejects its fit (see ``refine``): the image is not
        explained by the PSF model (confocal or processed data, a specimen
        with one dominant orientation), and the returned estimate is the
        network's, unverified.

    Notes
    -----
    The network reads the Welch power spectrum of the image -- averaged over
    the most contrasted half of its 64 x 64 half-overlapping windows, so empty
    background does not dilute it -- which is, up to the specimen's smooth
    spectrum and the noise floor, an image of the modulation transfer function.
    It regresses the Noll 4-11 coefficients theta and fc; the PSF is
    ``zernike_psf(theta, cutoff=fc)``. The power spectrum cannot tell a PSF
    from its point reflection (the sign of the odd aberrations: coma,
    trefoil), so the orientation is chosen in the image domain: the image is
    deconvolved with both candidates and the one giving the sparser gradients
    is kept. With ``grid``, each region is estimated separately, the sign
    conventions are aligned to the global estimate and the coefficient field is
    median filtered (3 x 3), as in Shajkofci & Liebling.

    A second, dense network (:mod:`psfkit.learned.mtf_net`, issue #25)
    predicts the MTF itself, with a spread, on the 64 x 64 frequency grid;
    the coefficients are fitted to that prediction without reading the
    image again (:mod:`psfkit.identification._mtf_fit`). Its spread is
    ``info["uncertainty"]`` (one forward pass, about 20 ms). It does not
    replace the coefficient network's estimate, and its fits do not seed
    the refinement: measured, neither helps (see
    ``benchmarks/bench_identifier_network.py`` and the user guide).

    The model card next to the weights (``psfkit/learned/weights``) records
    the training recipe and the validation figures.

    The network and the refinement model the scalar pupil of a widefield
    microscope, Nyquist-sampled. What they cannot identify gets the nominal
    PSF of the optics, :func:`psfkit.microscope_psf` (scalar model, no
    aberration), and ``info["source"]`` says so: a (Z, Y, X) stack (its 3-D
    PSF over the stack's depth), a confocal, Airyscan or light-sheet image
    (the in-focus plane of its modality's PSF), and an under-sampled image
    (fc > 0.27). ``max_amplitude``, ``refine`` and ``device`` then play no
    part; ``grid`` is refused.

    Examples
    --------
    >>> import psfkit
    >>> truth = psfkit.zernike_psf({4: 0.1, 5: -0.08}, cutoff=0.18, size=33)
    >>> specimen = psfkit.data.random_specimen((256, 256), rng=0)
    >>> image = psfkit.simulate_acquisition(specimen, truth, gain=1000, rng=0)
    >>> psf = psfkit.estimate_psf(image, cutoff=0.18)
    >>> psf.shape, round(float(psf.sum()), 6)
    ((33, 33), 1.0)

    A finely sampled image (NA 1.4, 520 nm, 30 nm pixels: fc = 0.081) is
    identified on a copy downsampled twice; the PSF comes back at fc:

    >>> fc = psfkit.cutoff_frequency(1.4, 0.52, 0.03)
    >>> fine = psfkit.zernike_psf({4: 0.1, 5: -0.08}, cutoff=fc, size=65)
    >>> image = psfkit.simulate_acquisition(
    ...     psfkit.data.random_specimen((256, 256), rng=0), fine, gain=1000, rng=0)
    >>> psf, info = psfkit.estimate_psf(image, cutoff=fc, size=65, return_coefficients=True)
    >>> psf.shape, round(info["cutoff"], 3)
    ((65, 65), 0.081)

    A widefield stack gets the nominal 3-D PSF of its optics:

    >>> import numpy as np
    >>> optics = psfkit.Optics(na=1.4, wavelength=0.52, pixel_size=0.1, z_step=0.3)
    >>> stack = np.ones((9, 64, 64))
    >>> psfkit.estimate_psf(stack, optics=optics, size=21).shape
    (9, 21, 21)
    """
    return _estimate_psf(
        image, optics=optics, cutoff=cutoff, max_amplitude=max_amplitude, size=size, grid=grid, refine=refine, device=device,
        return_coefficients=return_coefficients,
    )


def _estimate_psf(
    image, *, optics=None, cutoff=None, max_amplitude=None, size=None, grid=None, refine=None, device=None, return_coefficients=False,
    noise=None, checked=False,
):
    """:func:`estimate_psf` with what :func:`psfkit.deblur` has already computed.

    ``noise``: a callable returning the Poisson-Gaussian fit ``(a, b)`` of
    ``image`` (:func:`psfkit.restoration._regularization.noise_model`), called
    only if the refinement runs on the image itself (not downsampled); None:
    the refinement measures it. ``checked``: ``image`` is already a finite
    2-D or 3-D float array.
    """
    if checked:
        image = _as_float32(image)
    else:
        image = as_float_array(image, "image", ndim=(2, 3), dtype=np.float32)
    optics = check_optics(optics)
    if optics is not None:
        if cutoff is not None:
            raise ValueError("give cutoff or optics, not both (the optics give fc = optics.cutoff_frequency)")
        cutoff = optics.cutoff_frequency
    cutoff = _check_cutoff(cutoff)
    source, _ = route(image.ndim, optics, cutoff, FC_RANGE[1])
    if image.ndim == 3 and optics is None:
        raise ValueError(
            f"image is a (Z, Y, X) stack of shape {image.shape}: pass optics=psfkit.Optics(..., z_step=...), "
            "whose nominal 3-D PSF is returned (or estimate the planes one by one)"
        )
    if source == NOMINAL:
        return _nominal(image.shape, optics, cutoff, max_amplitude, size, grid, refine, device, return_coefficients)
    # torch only for the network: a nominal PSF (stacks, known optics outside its range) is computed without it
    import torch

    from psfkit.optics.psf import zernike_psf
    from psfkit.learned.spectral import welch_log_spectrum

    if min(image.shape) < _MIN_SIDE:
        raise ValueError(f"image must have at least {_MIN_SIDE} pixels along every axis, got shape {image.shape}")
    size = 33 if size is None else size
    # a known fc below the training range: identify on a downsampled image (see .resampling)
    factor = 1 if cutoff is None else oversampling_factor(cutoff)
    user_cutoff = cutoff
    if factor > 1:
        if min(image.shape) < _MIN_SIDE * factor:
            raise ValueError(
                f"image must be at least {_MIN_SIDE * factor} pixels on each side for cutoff={cutoff!r} (it is "
                f"downsampled {factor} times to bring fc into the network's range), got shape {image.shape}"
            )
        image, cutoff = dct_downsample(image, factor), cutoff * factor
    max_amplitude = _check_condition(max_amplitude, "max_amplitude", 1e-6, 0.3)
    size = check_int(size, "size", minimum=1, maximum=MAX_SIZE)
    return_coefficients = check_bool(return_coefficients, "return_coefficients")
    if refine is not None and not isinstance(refine, bool):
        raise ValueError(f"refine must be True, False or None, got {refine!r}")
    if grid is not None:
        grid = _check_grid(grid, image.shape, factor)
    device = resolve_device(device)
    net = bundled_network("identifier", str(device))

    regions = [[(slice(None), slice(None))]]
    if grid is not None:
        rows, cols = _regions(image.shape, grid)
        regions += [[(r, c) for c in cols] for r in rows]
    crops = [image[r, c] for row in regions for (r, c) in row]
    with torch.inference_mode():
        spectra = []
        for crop in crops:  # crops differ in size: one spectrum each, then one network call
            spectra.append(welch_log_spectrum(torch.from_numpy(np.ascontiguousarray(crop))[None].to(device)))
        spectra = torch.cat(spectra)
        n = spectra.shape[0]
        nan = float("nan")
        fc_in = torch.full((n,), nan if cutoff is None else cutoff, device=device)
        amp_in = torch.full((n,), nan if max_amplitude is None else max_amplitude, device=device)
        theta, fc = net(spectra, fc_in, amp_in)
    theta = theta.double().cpu().numpy()
    fc = fc.double().cpu().numpy()
    if cutoff is not None:  # exactly the user's value, not its float32 round trip
        fc[:] = cutoff
    # the dense MTF network (issue #25): its spread is the uncertainty reported (its fits seed the refinement only
    # with _NETWORK_STARTS)
    mtf_net = bundled_network("mtf", str(device))
    mtf_mean, mtf_spread = predict_mtf(mtf_net, [image], [np.nan if cutoff is None else cutoff], device)
    uncertainty = spread_in_support(mtf_spread[0], float(fc[0]))

    if refine is None:  # a global estimate of a strongly aberrated PSF; never a map (fast, see refine's doc)
        refine = grid is None and refines_by_default(theta[0])
    candidates, candidate_fc, weights, refined = theta[:1], fc[:1], np.ones(1), False
    if refine:
        from psfkit.identification._refine import refine as refine_fit

        starts = ()
        if _NETWORK_STARTS:
            bound = _DEFAULT_BOUND if max_amplitude is None else max_amplitude
            starts = hypotheses(*fit_to_mtf(mtf_mean[0], mtf_spread[0], cutoff, indices=NOLL, bound=bound),
                                indices=NOLL)[0]
        candidates, candidate_fc, weights, refined = refine_fit(
            image, theta[0], fc[0], indices=NOLL, bound=max_amplitude, fit_cutoff=cutoff is None,
            noise=noise() if noise is not None and factor == 1 else None, starts=starts,
        )
        if not refined:  # stacklevel: the caller of estimate_psf or deblur
            fallback_fc = _mean_cutoff(weights, candidate_fc / factor, user_cutoff)
            warnings.warn(_MODEL_FAILURE.format(bound=_DEFAULT_BOUND, fc=fallback_fc), UserWarning, stacklevel=3)
    candidates = choose_orientation(image, candidates, candidate_fc, indices=NOLL)
    if factor > 1:  # back to the input's pixels: the coefficients do not change, fc does
        candidate_fc = np.full_like(candidate_fc, user_cutoff)
        fc[:] = user_cutoff
    # the likelihood-weighted mean of the refined candidates (one candidate without refine); described by the
    # candidate nearest to it and the weighted mean fc, not by whichever candidate ranks first (see _refine.refine)
    psf, nearest = _weighted_mean_psf(candidates, candidate_fc, weights, size if grid is None else min(size, 33))
    global_theta = candidates[nearest]
    if grid is None:
        fc_mean = _mean_cutoff(weights, candidate_fc, user_cutoff)
        info = {"noll": NOLL, "coefficients": global_theta, "cutoff": fc_mean, "refined": refined, "source": IDENTIFIED,
                "uncertainty": uncertainty}
    else:
        from scipy.ndimage import median_filter

        local = _align_signs(theta[1:], global_theta).reshape(grid[0], grid[1], -1)
        local = median_filter(local, size=(3, 3, 1), mode="nearest")
        local_fc = median_filter(fc[1:].reshape(grid), size=3, mode="nearest")
        psf = np.stack(
            [zernike_psf(local[i, j], cutoff=local_fc[i, j], size=size, indices=NOLL) for i in range(grid[0]) for j in range(grid[1])]
        ).reshape(grid[0], grid[1], size, size)
        info = {"noll": NOLL, "coefficients": local, "cutoff": local_fc, "refined": refined, "source": IDENTIFIED,
                "uncertainty": uncertainty}
    return (psf, info) if return_coefficients else psf


def _nominal(shape, optics, cutoff, max_amplitude, size, grid, refine, device, return_coefficients):
    """The nominal PSF of an image the network does not identify (see :mod:`._nominal`), its options checked."""
    _check_condition(max_amplitude, "max_amplitude", 1e-6, 0.3)
    if refine is not None and not isinstance(refine, bool):
        raise ValueError(f"refine must be True, False or None, got {refine!r}")
    return_coefficients = check_bool(return_coefficients, "return_coefficients")
    resolve_device(device)
    if grid is not None:
        raise ValueError(
            "grid is only for a widefield image the network identifies (a 2-D image sampled at fc <= 0.27); "
            f"this image gets the nominal PSF of its optics ({route(len(shape), optics, cutoff, FC_RANGE[1])[1]})"
        )
    size = check_int(size if size is not None else 33 if len(shape) == 2 else None, "size", minimum=1,
                     maximum=MAX_SIZE, allow_none=True)
    psf = nominal_psf(shape, optics, cutoff, size)
    info = {"noll": NOLL, "coefficients": np.zeros(len(NOLL)), "cutoff": cutoff, "refined": False, "source": NOMINAL,
            "uncertainty": None}
    return (psf, info) if return_coefficients else psf
