"""Blur-kernel estimation from spectral irregularities (Goldstein & Fattal; IPOL analysis by Anger et al.)."""

import math

import numpy as np
import scipy.fft
from scipy import ndimage

from psfkit._validation import check_positive, check_rng
from psfkit.baselines._common import check_flag, check_inputs, check_psf_size, delta, normalise_unit_range
from psfkit.baselines._gf_numba import lipschitz_lower_envelope, projection_autocorrelations, raar_object_step, relax_modulus
from psfkit.baselines._tv import padded_tv_deconvolve

# 8th-order central derivative: whitens the ~1/|w|^2 spectrum of natural images
_DERIVATIVE = np.array([3.0, -32.0, 168.0, -672.0, 0.0, 672.0, -168.0, 32.0, -3.0]) / 840.0
_LIPSCHITZ_SLOPE = 20.0 / 700.0  # largest change of the initial support per angle index
_SUPPORT_FRACTION = 0.05  # support = last lag where the kernel's projected autocorrelation >= 5 % of max
_KERNEL_FLOOR = 1.0 / 255.0  # phase-retrieval output values below this (sum-1 kernel) are zeroed
_TV_GAMMA = 30.0
_CANDIDATE_TV_ITERATIONS = 10
_FINAL_TV_ITERATIONS = 20
_N_PATCH_TRIALS = 100
_CHUNK = 16  # candidates deconvolved together (memory bound)


def _grid_size(psf_size):
    """Side of the spectral lattice: the smallest odd FFT-friendly size >= 4 ks + 1.

    4 ks + 1 is the least that holds the kernel autocorrelation without
    aliasing; a slightly larger fast size samples the same spectrum more
    densely and avoids prime-length FFTs (e.g. 101 for ks = 25).
    """
    n = 4 * psf_size + 1
    while scipy.fft.next_fast_len(n) != n:
        n += 2
    return n


def _angle_set(radius):
    """Primitive directions (a, b) reaching every point of the (2 radius + 1)^2 lattice once, by decreasing angle."""
    r = radius
    a, b = np.meshgrid(np.arange(0, r + 1), np.arange(-r, r + 1), indexing="ij")
    a = a.ravel()
    b = b.ravel()
    keep = (np.gcd(a, np.abs(b)) == 1) & ((a > 0) | (b == 1))
    a, b = a[keep], b[keep]
    order = np.argsort(-np.arctan2(b, a), kind="stable")
    return a[order], b[order]


def _whitened_gradients(image):
    """Derivative filter along x and y, valid region only (no border model)."""
    k = _DERIVATIVE.size // 2
    gx = ndimage.correlate1d(image, _DERIVATIVE, axis=1)[k:-k, k:-k]
    gy = ndimage.correlate1d(image, _DERIVATIVE, axis=0)[k:-k, k:-k]
    return gx, gy


def _symmetric_rows(half):
    """Rows of lags 0..R -> rows of lags -R..R."""
    return np.concatenate([half[:, :0:-1], half], axis=1)


def _compensation_matrix(max_lag, alpha):
    """Convolution by c(x) ~ (|x| + 1)^-alpha on lags -R..R with replicate boundaries."""
    lags = np.arange(-max_lag, max_lag + 1)
    c = (np.abs(lags) + 1.0) ** -alpha
    c /= c.sum()
    size = lags.size
    matrix = np.zeros((size, size))
    rows = np.arange(size)
    for offset, weight in zip(lags, c):
        np.add.at(matrix, (rows, np.clip(rows - offset, 0, size - 1)), weight)
    return matrix


def _compensate(rows, alpha):
    """Deconvolve the autocorrelations by the residual spectral decay of natural images.

    Rows whose compensated version turns negative within +-2 lags of 0 keep
    their measured values.
    """
    if alpha == 0:
        return rows
    max_lag = rows.shape[1] // 2
    matrix = _compensation_matrix(max_lag, alpha)
    compensated = np.linalg.solve(matrix, rows.T).T
    centre = compensated[:, max_lag - 2 : max_lag + 3]
    bad = (centre < 0).any(axis=1)
    compensated[bad] = rows[bad]
    return compensated


def _initial_support(rows):
    max_lag = rows.shape[1] // 2
    positive = rows[:, max_lag + 1 :]
    support = 1.0 + np.argmin(positive, axis=1)
    support = lipschitz_lower_envelope(support, _LIPSCHITZ_SLOPE)
    return np.clip(np.ceil(support - 1e-9).astype(int), 1, max_lag)


def _cut_rows(rows, support, median):
    """Kernel autocorrelation estimate per angle: cut at the support, remove the offset, sum 1."""
    max_lag = rows.shape[1] // 2
    lags = np.abs(np.arange(-max_lag, max_lag + 1))
    offset = rows[np.arange(rows.shape[0]), max_lag + support]
    cut = np.where(lags[None, :] < support[:, None], rows - offset[:, None], 0.0)
    cut = np.clip(cut, 0.0, None)
    total = cut.sum(axis=1, keepdims=True)
    fallback = np.zeros_like(cut)
    fallback[:, max_lag] = 1.0
    cut = np.where(total > 0, cut / np.where(total > 0, total, 1.0), fallback)
    if median:
        width = int(round(2.0 * math.sqrt(rows.shape[0])))
        # only lags inside some support can be non-zero
        reach = int(support.max())
        band = slice(max_lag - reach, max_lag + reach + 1)
        cut[:, band] = ndimage.median_filter(cut[:, band], size=(width, 1), mode="wrap")
    return cut


def _power_spectrum(rows, dir_a, dir_b, grid):
    """Place the 1-D spectra of the autocorrelations on the (grid x grid) DFT lattice."""
    max_lag = rows.shape[1] // 2
    radius = grid // 2
    # zero-padded to the lattice size: the DFT then samples the same DTFT at j / grid
    padded = np.zeros((rows.shape[0], grid))
    padded[:, : max_lag + 1] = rows[:, max_lag:]
    padded[:, grid - max_lag :] = rows[:, :max_lag]
    spectra = np.abs(np.fft.fft(padded, axis=1))
    dc = spectra[:, :1]
    spectra = spectra / np.where(dc > 0, dc, 1.0)
    ps = np.zeros((grid, grid))
    for k, (a, b) in enumerate(zip(dir_a, dir_b)):
        step = max(a, abs(b))
        count = radius // step
        i = np.arange(1, count + 1)
        values = spectra[k, i * step]
        ps[(i * b) % grid, (i * a) % grid] = values
        ps[(-i * b) % grid, (-i * a) % grid] = values
    ps[0, 0] = 1.0
    return ps


def _phase_retrieval(magnitude, psf_size, generators, n_inner):
    """Relaxed-magnitude RAAR phase retrieval with positivity and a corner support, batched over restarts.

    The transforms are small (about 100 x 100) and called thousands of times:
    single-threaded ``scipy.fft`` is the fastest choice there, multi-threaded
    FFTW plans lose most of their time synchronising.
    """
    grid = magnitude.shape[0]
    phases = np.stack([g.uniform(-np.pi, np.pi, size=(grid, grid)) for g in generators])
    g = np.ascontiguousarray(np.fft.ifft2(magnitude * np.exp(1j * phases)).real)
    half = np.ascontiguousarray(magnitude[:, : grid // 2 + 1])
    g_proj = g
    for m in range(n_inner):
        beta = 0.75 + 0.25 * (1.0 - math.exp(-((m / 7.0) ** 3)))
        spectrum = scipy.fft.rfftn(g, axes=(-2, -1), workers=1)
        relax_modulus(spectrum, half, 0.05)
        g_proj = scipy.fft.irfftn(spectrum, s=(grid, grid), axes=(-2, -1), workers=1)
        raar_object_step(g, g_proj, beta, psf_size)
    kernels = np.clip(g_proj[:, :psf_size, :psf_size], 0.0, None)
    return [_finish_kernel(k) for k in kernels]


def _finish_kernel(kernel):
    size = kernel.shape[0]
    total = kernel.sum()
    if not total > 0:
        return delta(size)
    kernel = kernel / total
    kernel[kernel < _KERNEL_FLOOR] = 0.0
    total = kernel.sum()
    if not total > 0:
        return delta(size)
    kernel /= total
    iy, ix = np.indices(kernel.shape)
    shift = (
        int(np.round(size // 2 - (iy * kernel).sum())),
        int(np.round(size // 2 - (ix * kernel).sum())),
    )
    return np.roll(kernel, shift, axis=(0, 1))


def _sparsity(images):
    """Normalised sparsity ||grad u||_1 / ||grad u||_2 per image (lower = sharper)."""
    gx = np.diff(images, axis=-1)
    gy = np.diff(images, axis=-2)
    l1 = np.abs(gx).sum(axis=(-2, -1)) + np.abs(gy).sum(axis=(-2, -1))
    l2 = np.sqrt((gx**2).sum(axis=(-2, -1)) + (gy**2).sum(axis=(-2, -1)))
    return l1 / np.maximum(l2, 1e-300)


def _select(patch, kernels, tv_lambda):
    """Best of the candidates and their 180-degree flips by the sparsity of the deconvolved patch."""
    stack = np.stack(kernels)
    stack = np.concatenate([stack, stack[:, ::-1, ::-1]])
    pad = stack.shape[-1]
    scores = []
    for start in range(0, len(stack), _CHUNK):
        chunk = stack[start : start + _CHUNK]
        restored = padded_tv_deconvolve(
            patch,
            chunk,
            pad=pad,
            pad_mode="edge",
            tapers=4,
            lam=tv_lambda,
            gamma=_TV_GAMMA,
            iterations=_CANDIDATE_TV_ITERATIONS,
        )
        scores.append(_sparsity(restored))
    scores = np.concatenate(scores)
    best = int(np.argmin(scores))
    return np.ascontiguousarray(stack[best]), scores


def _evaluation_patch(image, size, rng):
    """Window of ``size`` with the largest variance among random positions."""
    ph, pw = min(size, image.shape[0]), min(size, image.shape[1])
    ys = rng.integers(0, image.shape[0] - ph + 1, size=_N_PATCH_TRIALS)
    xs = rng.integers(0, image.shape[1] - pw + 1, size=_N_PATCH_TRIALS)
    variances = [image[y : y + ph, x : x + pw].var() for y, x in zip(ys, xs)]
    best = int(np.argmax(variances))
    return image[ys[best] : ys[best] + ph, xs[best] : xs[best] + pw]


def goldstein_fattal(
    image,
    psf_size,
    *,
    n_tries=30,
    n_outer=3,
    n_inner=300,
    compensation=2.1,
    median_filter=True,
    patch_size=150,
    tv_lambda=3000.0,
    rng=None,
):
    r"""Blind kernel estimation from the power spectrum of the whitened image (Goldstein & Fattal).

    After whitening by a derivative filter, the power spectrum of a natural
    image blurred by :math:`k` is nearly :math:`c\,|\hat k|^2`; it is measured
    along every rational direction from the autocorrelation of 1-D projections,
    cut to the kernel's support, and the kernel is recovered from
    :math:`|\hat k|` by phase retrieval with random restarts. The image is then
    restored by TV deconvolution.

    Parameters
    ----------
    image : (M, N) array_like
        Blurry grey-level image. It is min-max normalised to [0, 1]
        internally (the spectral estimate does not depend on it; the TV
        weights refer to that range) and ``restored`` is mapped back to the
        input range. Every axis must be at least ``2 * psf_size + 10`` pixels.
    psf_size : int
        Side of the square kernel window, odd and >= 3.
    n_tries : int, optional
        Random restarts of the phase retrieval per outer iteration; each
        candidate and its 180-degree flip compete in the selection.
    n_outer : int, optional
        Alternations between phase retrieval and support re-estimation.
    n_inner : int, optional
        Phase-retrieval iterations per restart.
    compensation : float, optional
        Exponent :math:`\alpha` of the compensation filter
        :math:`c(x) \propto (|x| + 1)^{-\alpha}` that corrects the residual
        spectral decay of natural images; 0 disables it. Values near 1 suit
        intrinsically blurry images, large values sharp ones.
    median_filter : bool, optional
        Median-filter the autocorrelations across neighbouring angles.
    patch_size : int, optional
        Side of the evaluation patch used to rank the candidates (the most
        textured of 100 random windows).
    tv_lambda : float, optional
        Fidelity weight of the TV deconvolutions (candidate ranking and
        final restoration), on the [0, 1] scale.
    rng : {numpy.random.Generator, int}, optional
        Source of randomness (evaluation patch and one independent child
        generator per restart, from :meth:`numpy.random.Generator.spawn`), so
        a seed makes the result reproducible.

    Returns
    -------
    psf : (psf_size, psf_size) ndarray
        Estimated kernel, non-negative, sum 1, barycentre at index
        ``psf_size // 2`` (nearest pixel), oriented so that
        ``image ~ psf * restored`` in psfkit's convolution convention.
    restored : (M, N) ndarray
        TV deconvolution of ``image`` with ``psf``, clipped to the input
        range.

    Notes
    -----
    Implementation of the analysis by Anger, Facciolo & Delbracio [2]_ of the
    method of Goldstein & Fattal [1]_:

    1. Directions: every primitive integer direction :math:`(a, b)` with
       :math:`0 \le a, |b| \le 2 k_s`, which reaches every point of the
       DFT lattice of the kernel (side: the smallest odd fast FFT size
       :math:`\ge 4k_s+1`) exactly once.
    2. Whitening by a 9-tap derivative along x and y; for each direction the
       directional derivative is projected (nearest-pixel shear), centred,
       normalised and autocorrelated, :math:`f_\theta(x) \approx c_\theta
       R_{P_\theta k}(x) + \mu_\theta`.
    3. Compensation: deconvolution of :math:`f_\theta` by
       :math:`c(x) \propto (|x|+1)^{-\alpha}`.
    4. Support :math:`s_\theta`: first the position of the minimum of
       :math:`f_\theta`, made Lipschitz across angles; afterwards the last lag
       where the autocorrelation of the current kernel's projection exceeds
       5 % of its maximum.
    5. Per outer iteration: :math:`f_\theta` cut to :math:`|x| < s_\theta`,
       minus :math:`\mu_\theta = f_\theta(s_\theta)`, clipped, normalised,
       median-filtered across angles; its 1-D spectrum gives
       :math:`|\hat k|^2` on the grid points of the direction (Fourier slice
       theorem); phase retrieval (relaxed magnitude projection, RAAR object
       step with positivity and the ``psf_size`` box, :math:`\beta` rising
       from 0.75 to 1) from ``n_tries`` random phases; every candidate and
       its flip deconvolves the evaluation patch (TV, 10 iterations) and the
       one with the smallest :math:`\|\nabla u\|_1 / \|\nabla u\|_2` wins.
    6. Final restoration: replicate padding, four edgetaper passes, TV-L2
       split Bregman (20 iterations), clipping.

    Phase retrieval cannot distinguish :math:`k(x)` from :math:`k(-x)` and
    the selection may pick either: compare kernels up to a flip and a shift.
    The method assumes natural-image statistics (a :math:`1/|\omega|^2`
    spectrum); noise biases the high frequencies of :math:`|\hat k|^2`
    upwards.

    References
    ----------
    .. [1] A. Goldstein, R. Fattal, "Blur-kernel estimation from spectral
           irregularities", European Conference on Computer Vision (ECCV),
           2012, pp. 622-635.
    .. [2] J. Anger, G. Facciolo, M. Delbracio, "Estimating an image's blur
           kernel using natural image statistics, and deblurring it: an
           analysis of the Goldstein-Fattal method", Image Processing On Line
           8:282-304, 2018. :doi:`10.5201/ipol.2018.211`

    Examples
    --------
    >>> import numpy as np
    >>> from skimage.data import camera
    >>> from scipy.signal import fftconvolve
    >>> from psfkit.baselines import goldstein_fattal
    >>> sharp = camera()[100:300:2, 100:300:2] / 255.0
    >>> yy, xx = np.mgrid[-4:5, -4:5]
    >>> truth = np.exp(-(xx**2 + yy**2) / (2 * 1.5**2)); truth /= truth.sum()
    >>> blurry = fftconvolve(sharp, truth, mode="valid")
    >>> psf, restored = goldstein_fattal(blurry, 9, n_tries=4, n_inner=100, n_outer=1, rng=0)
    >>> psf.shape, restored.shape, bool(np.isclose(psf.sum(), 1.0))
    ((9, 9), (92, 92), True)
    """
    psf_size = check_psf_size(psf_size)  # before its use in the margin (a string or an overflowing np.uint8)
    v, out_dtype = check_inputs(image, psf_size, min_margin=psf_size + 10)
    n_tries = check_positive(n_tries, "n_tries", integer=True)
    n_outer = check_positive(n_outer, "n_outer", integer=True)
    n_inner = check_positive(n_inner, "n_inner", integer=True)
    compensation = check_positive(compensation, "compensation", strict=False)
    median_filter = check_flag(median_filter, "median_filter")
    patch_size = check_positive(patch_size, "patch_size", integer=True)
    if patch_size <= psf_size:
        raise ValueError(f"patch_size must be larger than psf_size={psf_size}, got {patch_size}")
    tv_lambda = check_positive(tv_lambda, "tv_lambda")
    rng = check_rng(rng)

    v, (low, span) = normalise_unit_range(v)
    patch = _evaluation_patch(v, patch_size, rng)

    max_lag = 2 * psf_size
    grid = _grid_size(psf_size)
    dir_a, dir_b = _angle_set(grid // 2)
    norm = np.hypot(dir_a, dir_b)
    gx, gy = _whitened_gradients(v)
    half = projection_autocorrelations(
        gx, gy, dir_a / norm, dir_b / norm, dir_a, dir_b, max_lag, True
    )
    rows = _compensate(_symmetric_rows(half), compensation)
    support = _initial_support(rows)

    ones = np.ones(dir_a.size)
    zeros = np.zeros(dir_a.size)
    kernel = delta(psf_size)
    for _ in range(n_outer):
        spectrum = _power_spectrum(_cut_rows(rows, support, median_filter), dir_a, dir_b, grid)
        generators = rng.spawn(n_tries)
        candidates = _phase_retrieval(np.sqrt(spectrum), psf_size, generators, n_inner)
        kernel, _ = _select(patch, candidates, tv_lambda)
        # Re-estimate the support from the kernel, as the EM-like loop of the paper.
        kernel_ac = projection_autocorrelations(kernel, kernel, ones, zeros, dir_a, dir_b, max_lag, False)
        above = kernel_ac >= _SUPPORT_FRACTION * kernel_ac[:, :1]
        last = max_lag - np.argmax(above[:, ::-1], axis=1)
        support = np.clip(last + 1, 1, max_lag)

    restored = padded_tv_deconvolve(
        v,
        kernel,
        pad=psf_size,
        pad_mode="edge",
        tapers=4,
        lam=tv_lambda,
        gamma=_TV_GAMMA,
        iterations=_FINAL_TV_ITERATIONS,
    )
    restored = np.clip(restored, 0.0, 1.0) * span + low
    return kernel.astype(out_dtype), restored.astype(out_dtype)
