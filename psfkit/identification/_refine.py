"""Test-time refinement of Zernike coefficients by an image-sparsity fit.

Starting from the network's estimate, the coefficients are adjusted so that
the Wiener deconvolution of the image with ``zernike_psf(theta, fc)`` has the sparsest gradients, measured by the
scale-invariant l1/l2 ratio (Krishnan, Tay & Fergus, CVPR 2011): a PSF that is
too narrow leaves blur, one that is too wide or wrongly shaped leaves ringing,
and both make gradients less sparse. The physical parametrisation (8 Zernike
terms) keeps the fit away from the trivial delta solution of free-form blind
deconvolution. Gradients flow through the differentiable torch PSF.

The fit is a continuation in the Wiener regulariser, started from two
points (measured on a 20-image noiseless subset of the held-out set, fc
known, mean / median PSF SNR in dB; network alone 3.6 / 3.8; the full
60-image results are in ``benchmarks/results/identification.json``):

- a large regulariser (the spectrum's noise floor, at least 1e-2) gives a
  smooth objective with a wide basin but a biased minimum: started *at the
  true coefficients*, the fit drifts to 13.5 / 14.3 dB; from the network,
  10.6 / 12.0 dB;
- a ten times smaller one is far less biased (19.7 / 24.4 dB from the truth)
  but has narrow basins (9.3 / 4.0 dB from the network);
- the first then the second: 13.5 / 16.1 dB; keeping the better of two
  starting points (the network's estimate and zero): 13.8 / 16.1 dB.

The sparsity is measured after a noise-dependent low-pass (see
:func:`_lowpass`), which keeps the fit from chasing noise. Under noise the
criterion itself is biased (started at the truth it drifts to a median
2.8 dB at the benchmark's moderate noise), so it runs on clean images only,
as one of the starting points of the noise-aware spectral fit (:func:`refine`).
"""

import numpy as np

from psfkit.identification._sparsity import prepare, sparsity_objective

# Stage-2 regulariser: this fraction of the noise floor, at least _SHARP_FLOOR.
_SHARP_SCALE = 0.3
_SHARP_FLOOR = 1e-3
# Relative noise (noise std / signal range) up to which the sparsity fit seeds the spectral fit.
# Measured gain of the sparsity fit alone over the network (mean PSF SNR, 20 held-out images each):
# +7.4 dB without noise (rho <= 5e-4), +5.5 dB at rho ~ 0.0035, +2.8 dB at 0.007, +0.45 dB at 0.013;
# the benchmark's moderate noise (rho 0.022-0.053) loses.
_MAX_RELATIVE_NOISE = 0.01
_DEFAULT_BOUND = 0.25  # waves: the largest amplitude the network was trained on
# Candidates with less weight than this fraction of the largest are dropped: together they move the mean PSF by
# less than ~1e-5 of its norm (PSF SNR > 100 dB), so where this cut falls does not matter.
_NEGLIGIBLE = 1e-6


def _fit(objective, theta, *, iterations, learning_rate):
    """Adam on a batch of independent starting points (the summed loss separates); returns the fitted batch."""
    import torch

    theta = theta.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([theta], lr=learning_rate)
    with torch.enable_grad():
        for _ in range(iterations):
            loss = objective(theta).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return theta.detach()


def sparsity_fit(image, coefficients, cutoff, *, indices, iterations=(100, 60)):
    """Coefficients fitted by the gradient-sparsity continuation (clean images only).

    Two starting points, the estimate and zero (the aberration-free PSF;
    :func:`._spectral_fit.near_zero`),
    are fitted with the smooth objective then the sharp one (``iterations``
    Adam steps each); both are returned (2, K), the lower sharp objective
    first, and :func:`refine` passes both to the likelihood, so that a near
    tie between them is not decided by round-off. fc is not fitted:
    the criterion is biased in fc too (fitting it gave 8.7 / 9.7 dB instead
    of 11.3 dB with the network's fc kept, held-out clean subset). Measured
    and dropped: the estimate's three MTF-equivalent sign variants as extra
    starts, or the best of 256 random starting points (< 0.3 dB change at 1.5
    to 3 times the cost); debiasing the criterion for the noise (l2 part, or
    a noise-corrected gradient kurtosis), or denoising first (TV), which did
    worse under noise.
    """
    import torch

    from psfkit.identification._spectral_fit import near_zero

    spectrum, epsilon, shape = prepare(image)
    sharp = max(_SHARP_SCALE * epsilon, _SHARP_FLOOR)
    theta = torch.from_numpy(np.stack([coefficients, near_zero(len(coefficients))]))
    fc = torch.full((2,), float(cutoff), dtype=torch.float64)

    def smooth(t):
        return sparsity_objective(t, fc, spectrum, epsilon, shape, indices)

    def sharpened(t):
        return sparsity_objective(t, fc, spectrum, sharp, shape, indices, kappa_epsilon=epsilon)

    theta = _fit(smooth, theta, iterations=iterations[0], learning_rate=0.01)
    theta = _fit(sharpened, theta, iterations=iterations[1], learning_rate=0.003)
    with torch.no_grad():
        order = torch.argsort(sharpened(theta), stable=True)
    return theta[order].numpy()


def refine(image, coefficients, cutoff, *, indices, bound=None, fit_cutoff=False, noise=None, starts=(),
           random_starts=24, sparsity=True):
    """Refined candidate coefficients, their fc and weights, and whether the fit was kept.

    The Whittle fit of :mod:`._spectral_fit` is noise-aware and runs at every
    noise level. The two criteria fail on different images (noiseless
    subset of 10, mean / median PSF SNR in dB: sparsity 14.5 / 16.8,
    spectral 13.9 / 13.9), so on clean images (relative noise at most
    ``_MAX_RELATIVE_NOISE``) the sparsity fit's results join the spectral
    fit's starting points and the likelihood arbitrates: 17.2 / 16.7 dB.
    With ``fit_cutoff`` (fc unknown), fc is fitted too, from the network's
    estimate, at every noise level. On the same subset it lifts the
    noiseless result from 8.5 to 19.3 dB. Under noise the band edge is
    hidden and fc trades off against defocus; with the first, unbounded
    specimen model fitting fc there lost (moderate noise 6.9 -> 4.9 dB),
    with the concave one it gains (52 synthetic calibration images, not the
    held-out set, fc unknown, mean PSF SNR of ``estimate_psf(refine=True)``,
    moderate / strong noise: 7.6 / 4.4 dB with the network's fc kept, 9.9 /
    4.5 dB with fc fitted; mean relative fc error 11.4 -> 7.5 % at moderate
    noise). On the held-out benchmark (60 images per noise level): 7.1 /
    4.1 -> 8.2 / 3.9 dB (fc known: 10.6 / 5.0). Spreading the random starts'
    fc (x exp U[-0.2, 0.2]) was measured and dropped: 10.5 / 4.3 dB on the
    calibration images, but 19.0 -> 17.3 dB without noise.

    Returns ``(thetas (M, K), fcs (M,), weights (M,), kept)``, largest
    weight first: the fitted candidates and their likelihood weights
    (:func:`._spectral_fit.candidate_weights`), whose weighted mean PSF is
    the estimate. Coefficients stay within ``[-bound, bound]`` waves.
    Without a known ``bound`` (``None``: the network's training range, 0.25
    waves), a fit that ends on that edge is not an interior optimum of the
    likelihood but a sign that the image breaks the model (on the bundled
    C. elegans image, whose elongated structures make its spectrum
    anisotropic, astigmatism ran to the edge). The decision is taken on the
    weighted ensemble, not on which candidate ranks first (near-tied
    candidates swap ranks on round-off): with ``e`` the total weight of the
    candidates on the edge, the input estimate takes the weight
    ``clip(2 e - 1/2, 0, 1)`` (none up to e = 1/4, all from e = 3/4) and the
    interior candidates share the rest in proportion to their weights, so
    the mean PSF is continuous in the likelihoods; ``kept`` is ``e < 1/2``.
    Applying a global correction to a ``grid`` map was
    measured with the sparsity fit alone and dropped (6 noiseless tilted
    fields: 7.7 -> 8.4 dB mean, but worse on 2 of 6).

    ``starts``: further starting points (the network's other hypotheses,
    :mod:`._mtf_fit`), fitted alongside ``coefficients``; ``random_starts``
    seeded random points join them (:func:`._spectral_fit.spectral_fit`);
    ``sparsity=False`` skips the sparsity fit's starting points.

    ``noise`` is the Poisson-Gaussian fit ``(a, b)`` of ``image``
    (:func:`psfkit.restoration._regularization.noise_model`) when the
    caller has measured it; None measures it.
    Both fits run on one torch thread (:func:`._spectral_fit.single_threaded`).
    """
    from psfkit.identification._spectral_fit import single_threaded, spectral_fit
    from psfkit.restoration._regularization import relative_noise

    limit = _DEFAULT_BOUND if bound is None else float(bound)
    network = np.asarray(coefficients, dtype=np.float64)
    start = np.clip(network, -limit, limit)
    points = [start] + [np.clip(np.asarray(s, dtype=np.float64), -limit, limit) for s in starts]
    with single_threaded():  # deterministic given the inputs, whatever the thread count
        # noise std over the signal range above the darkest pixels (the camera baseline)
        if sparsity and relative_noise(image, float(np.percentile(image, 0.5)), noise)[0] <= _MAX_RELATIVE_NOISE:
            points.extend(np.clip(sparsity_fit(image, start, cutoff, indices=indices), -limit, limit))
        thetas, cutoffs, weights = spectral_fit(image, points, cutoff, indices=indices, bound=limit, fit_cutoff=fit_cutoff,
                                                random_starts=random_starts)
    kept = True
    if bound is None:
        edge = np.any(np.abs(thetas) >= limit * (1 - 1e-6), axis=1)
        on_edge = float(weights[edge].sum())
        fallback = float(np.clip(2 * on_edge - 0.5, 0.0, 1.0))  # the input estimate's weight, continuous in on_edge
        kept = on_edge < 0.5
        inside = ~edge
        weights = np.where(inside, weights * (1 - fallback) / max(1 - on_edge, 1e-300), 0.0)
        thetas = np.concatenate([thetas, network[None]])
        cutoffs = np.concatenate([cutoffs, [float(cutoff)]])
        weights = np.concatenate([weights, [fallback]])
    useful = weights >= _NEGLIGIBLE * weights.max()
    thetas, cutoffs, weights = thetas[useful], cutoffs[useful], weights[useful]
    order = np.argsort(-weights, kind="stable")
    return thetas[order], cutoffs[order], weights[order] / weights.sum(), kept
