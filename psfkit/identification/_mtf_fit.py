"""From the network's predicted MTF to Zernike coefficients: an image-free, weighted multi-start fit.

:class:`psfkit.learned.mtf_net.MTFNet` predicts ``log10(MTF + 1e-5)`` and its
spread ``s`` on the 64 x 64 frequency grid. The coefficients (and fc, when
unknown) are fitted to it by weighted least squares,
``sum ((log10(MTF_theta + 1e-5) - mean) / s)^2`` over the plane, from several
starts (Adam, float64): the exact MTF determines the PSF up to its point
reflection (issue #25, rung 1: 55.8 dB from the exact MTF), but the fit has
local optima. The distinct optima are the network's *hypotheses*; their
weights, from the fitted losses, and the network's spread make its
uncertainty. The image is not read here (the point reflection is chosen
afterwards, by :func:`._orientation.choose_orientation`).
"""

import numpy as np

from psfkit.learned.ranges import FC_RANGE

_STARTS = 8
_ITERATIONS = 150
_DISTINCT_DB = 20.0
# Pupil grid of the fitted PSFs: 64 samples keep them within 48 dB of the exact grid (128 for 0.2 waves per term;
# measured on 4 random Noll 4-15 sets, fc 0.125-0.25); the fit's own errors are at 5-25 dB.
_PUPIL_SAMPLES = 64
_MAX_SIDE = 1024  # 961 Welch windows; the float64 windows of a 1024^2 crop take 32 MB  # hypotheses whose PSFs agree to this PSF SNR are one hypothesis


def _central(image, side=_MAX_SIDE):
    """The central ``side`` x ``side`` part of a larger image (the Welch average needs no more, memory grows with it)."""
    y0, x0 = (max(0, (n - side) // 2) for n in image.shape)
    return image[y0 : y0 + side, x0 : x0 + side]


def predict_mtf(net, images, cutoffs, device):
    """Network mean and spread of log10 MTF (centred planes, numpy float64) for 2-D ``images``.

    ``cutoffs``: one per image, NaN where unknown. Images larger than
    ``_MAX_SIDE`` a side are read in their central ``_MAX_SIDE`` square.
    """
    import torch

    from psfkit.identification._spectral_fit import welch_periodogram
    from psfkit.learned.mtf_net import full_plane, network_inputs

    periodograms = torch.stack([welch_periodogram(_central(image)) for image in images]).float()
    log_p = full_plane(torch.log10(periodograms.clamp_min(1e-12))).to(device)
    with torch.inference_mode():
        mean, spread = net(network_inputs(log_p, torch.as_tensor(cutoffs, dtype=torch.float32, device=device)))
    return mean.double().cpu().numpy(), spread.double().cpu().numpy()


def _random_starts(count, k, bound, seed):
    from psfkit.identification._spectral_fit import near_zero

    rng = np.random.default_rng(seed)
    starts = rng.uniform(-min(bound, 0.15), min(bound, 0.15), (count, k))
    starts[0] = near_zero(k)
    return starts


def fit_to_mtf(mean, spread, cutoff, *, indices, bound=0.25, starts=_STARTS, iterations=_ITERATIONS, seed=0,
               defocus=None):
    """Coefficients (and fc) fitted to one predicted MTF from ``starts`` points.

    ``mean``, ``spread``: centred ``(W, W)`` planes. ``cutoff``: float, or None
    to fit fc as well (starts spread over ``FC_RANGE``). Returns
    ``(thetas (S, K), fcs (S,), losses (S,))``, best first; the loss is the
    mean squared standardised residual.

    ``defocus``: for the planes of a stack, ``mean`` and ``spread`` are
    ``(P, W, W)`` and ``defocus`` the ``P`` known Noll-4 offsets (waves) of
    the planes from the one the coefficients describe: phase diversity, one
    set of coefficients fitted to every plane (4 must be in ``indices``).
    """
    import torch

    from psfkit.identification._spectral_fit import single_threaded
    from psfkit.learned.mtf_net import MTF_FLOOR, half_plane
    from psfkit.learned.torch_optics import psf_to_otf, zernike_psf_torch

    w = mean.shape[-1]
    planes = np.reshape(mean, (-1, w, w)).shape[0]
    target = half_plane(torch.from_numpy(np.reshape(mean, (-1, w, w))))
    weight = half_plane(torch.from_numpy(np.reshape(spread, (-1, w, w)))) ** -2.0
    # the rfft layout counts the columns 1..W/2-1 once for two ordinates of the full plane
    weight = weight.clone()
    weight[..., 1 : w // 2] *= 2.0
    weight = weight / weight.sum()
    offsets = torch.zeros(planes, len(indices), dtype=torch.float64)
    if defocus is not None:
        offsets[:, list(indices).index(4)] = torch.as_tensor(np.asarray(defocus, dtype=np.float64))
    theta = torch.from_numpy(_random_starts(starts, len(indices), bound, seed))
    fit_cutoff = cutoff is None
    if fit_cutoff:
        fc = torch.from_numpy(np.linspace(FC_RANGE[0] + 0.02, FC_RANGE[1] - 0.02, starts))
        fc = fc[torch.from_numpy(np.random.default_rng(seed + 1).permutation(starts))]
    else:
        fc = torch.full((starts,), float(cutoff), dtype=torch.float64)
    params = [theta.clone().requires_grad_(True)]
    if fit_cutoff:
        params.append(fc.clone().requires_grad_(True))
    groups = [{"params": params[:1], "lr": 0.01}] + ([{"params": params[1:], "lr": 0.002}] if fit_cutoff else [])
    optimizer = torch.optim.Adam(groups)

    def losses():
        fcs = (params[1] if fit_cutoff else fc).repeat_interleave(planes)
        theta = (params[0][:, None, :] + offsets[None]).reshape(-1, len(indices))  # (S * P, K)
        psf = zernike_psf_torch(theta, fcs, size=33, indices=indices, pupil_samples=_PUPIL_SAMPLES)
        model = psf_to_otf(psf, (w, w)).abs().square().reshape(starts, planes, w, w // 2 + 1)
        return ((torch.log10(model + MTF_FLOOR) - target) ** 2 * weight).sum((1, 2, 3))

    with single_threaded(), torch.enable_grad():
        for _ in range(iterations):
            loss = losses()
            optimizer.zero_grad()
            loss.sum().backward()
            optimizer.step()
            with torch.no_grad():
                params[0].clamp_(-bound, bound)
                if fit_cutoff:
                    params[1].clamp_(*FC_RANGE)
        with torch.no_grad():
            loss = losses()
    order = torch.argsort(loss, stable=True)
    fcs = params[1].detach() if fit_cutoff else fc
    return params[0].detach()[order].numpy(), fcs[order].numpy(), loss[order].numpy()


def hypotheses(thetas, fcs, losses, *, indices, count=3):
    """Up to ``count`` distinct fitted optima, best first, with weights ``exp(-(L - L_min) / L_min)``.

    Two optima are the same hypothesis when their PSFs (or one and the
    other's point reflection, which the MTF cannot tell) agree to
    ``_DISTINCT_DB``. The relative scale of the weights: the residual of
    the best fit is the network's own error level, so an optimum worse by
    that much again weighs e^-1.
    """
    from psfkit.metrics import psf_snr
    from psfkit.optics.psf import zernike_psf

    kept, psfs = [], []
    for i in range(len(thetas)):
        psf = zernike_psf(thetas[i], cutoff=float(fcs[i]), size=33, indices=indices)
        if any(max(psf_snr(psf, q), psf_snr(psf[::-1, ::-1], q)) > _DISTINCT_DB for q in psfs):
            continue
        kept.append(i)
        psfs.append(psf)
        if len(kept) == count:
            break
    kept = np.array(kept)
    scale = max(float(losses[0]), 1e-12)
    weights = np.exp(-(losses[kept] - losses[0]) / scale)
    return thetas[kept], fcs[kept], weights / weights.sum()


def spread_in_support(spread, cutoff):
    """RMS predicted spread (log10 units) inside the OTF support: the network's uncertainty, one number."""
    w = spread.shape[-1]
    f = np.fft.fftshift(np.fft.fftfreq(w))
    inside = np.hypot(f[:, None], f[None, :]) < 2 * cutoff
    return float(np.sqrt(np.mean(spread[inside] ** 2)))


def network_hypotheses(image, cutoff, *, indices, bound=0.25, device="cpu"):
    """The bundled MTF network's hypotheses for one 2-D image: ``(thetas, fcs, weights, uncertainty)``.

    ``cutoff`` None: fc is read from the predicted MTF too. ``uncertainty``
    is :func:`spread_in_support` at the best hypothesis's fc.
    """
    from psfkit.learned._weights import bundled_network

    net = bundled_network("mtf", str(device))
    mean, spread = predict_mtf(net, [image], [np.nan if cutoff is None else cutoff], device)
    thetas, fcs, losses = fit_to_mtf(mean[0], spread[0], cutoff, indices=indices, bound=bound)
    thetas, fcs, weights = hypotheses(thetas, fcs, losses, indices=indices)
    if cutoff is not None:
        fcs = np.full(len(fcs), float(cutoff))
    return thetas, fcs, weights, spread_in_support(spread[0], float(fcs[0]))
