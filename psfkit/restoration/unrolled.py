"""Deconvolution with the unrolled network: ``deconvolve(..., method="unrolled")``."""

import torch

PSF_SIZE = 33  # the PSF window the network was trained with
_MULTIPLE = 4  # the U-Net downsamples twice
_QUANTILE_SAMPLES = 1 << 22


def normalize(images):
    """Map (B, 1, H, W) raw images to ~[0, 1]: ``(images - lo) / scale``.

    ``lo`` is the 0.5th percentile of the 3 x 3 local means (the dark level,
    robust to noise and dead pixels), ``lo + scale`` the 99.5th. The same code
    runs in training and at inference. Returns ``(normed, lo, scale)`` with
    ``lo`` and ``scale`` of shape (B, 1, 1, 1).
    """
    window = min(3, *images.shape[-2:])  # images smaller than 3 x 3 pool what they have
    pooled = torch.nn.functional.avg_pool2d(images, window, stride=1).flatten(1)
    if pooled.shape[1] > _QUANTILE_SAMPLES:  # torch.quantile's size limit; a regular subsample suffices
        pooled = pooled[:, :: -(-pooled.shape[1] // _QUANTILE_SAMPLES)]
    levels = torch.quantile(pooled, torch.tensor([0.005, 0.995], dtype=pooled.dtype, device=pooled.device), dim=1)
    lo = levels[0].reshape(-1, 1, 1, 1)
    scale = (levels[1].reshape(-1, 1, 1, 1) - lo).clamp_min(1e-12)
    return (images - lo) / scale, lo, scale


def pad_field(images, margin):
    """Reflect-pad (B, C, H, W) by ``margin`` on every side, then to a multiple of 4 (bottom/right)."""
    h, w = images.shape[-2:]
    extra_h = -(h + 2 * margin) % _MULTIPLE
    extra_w = -(w + 2 * margin) % _MULTIPLE
    return _pad(images, (margin, margin + extra_w, margin, margin + extra_h), "reflect")


def _pad(images, widths, mode):
    """``torch.nn.functional.pad`` in ``"reflect"`` or ``"circular"`` mode, for pads wider than the image too.

    torch needs each pad below (reflect) or up to (circular) the image size;
    wider pads are made in steps, reflecting the reflection as
    :func:`numpy.pad` does. A single row or column is repeated.
    """
    widths = list(widths)
    edge = 1 if mode == "reflect" else 0  # reflection does not repeat the edge pixel
    while any(widths):
        h, w = images.shape[-2:]
        step = [min(p, n - edge) for p, n in zip(widths, (w, w, h, h))]
        if not any(step):  # reflecting one pixel: repeat it
            return torch.nn.functional.pad(images, widths, mode="replicate")
        images = torch.nn.functional.pad(images, step, mode=mode)
        widths = [p - s for p, s in zip(widths, step)]
    return images


def _noise_std(image, noise, floor=None):
    """Per-pixel noise std of ``image`` (its units) under the Poisson-Gaussian fit ``noise = (alpha, beta)``.

    Returns ``(std, floor)``: the variance floor is given (a tile of a big image), or derived here.
    """
    import numpy as np
    from scipy.ndimage import uniform_filter

    alpha, beta = noise
    level = uniform_filter(image.astype(np.float64), 3, mode="reflect")
    variance = np.maximum(alpha * level + beta, 0.0)
    if floor is None:
        floor = 1e-3 * max(float(np.mean(variance)), 1e-30)  # a fit that crosses zero at the dark end
    return np.sqrt(np.maximum(variance, floor)), floor


def deconvolve_unrolled(image, psfs, weights, order, *, noise, background=0.0, periodic=False, device=None,
                        given=None, report=None):
    """Restore ``image`` (2-D float array) with the unrolled network.

    ``psfs`` (K, h, w) sum-1 PSFs; ``weights`` None (one PSF) or (K, M, N)
    product-convolution weights on the image grid; ``order`` "mask-first" or
    "mask-last"; ``noise`` the Poisson-Gaussian fit ``(alpha, beta)`` of the
    image (:func:`psfkit.restoration._regularization.noise_model`), which
    sets the network's noise map. The image is normalised as in training,
    reflect-padded by the PSF radius (circularly with ``periodic``), restored
    on that field and cropped; the result is in the units of ``image``.
    ``given`` (dict) may hold ``"normalization"`` ``(lo, scale)``,
    ``"noise_floor"`` and ``"noise_level"`` to use instead of this image's
    (a tile of a big image), and ``"settings_only"``: derive them, report
    them and return None; ``report`` (dict) receives the values used.
    """
    import numpy as np

    from psfkit.learned._weights import bundled_network, resolve_device
    from psfkit.learned.torch_optics import psf_to_otf
    from psfkit.learned.unrolled_net import FourierBlur, ProductConvolutionBlur

    device = resolve_device(device)
    net = bundled_network("unrolled", str(device))
    m, n = image.shape
    margin = max(psfs.shape[-2:]) // 2
    given = {} if given is None else given
    noise, noise_floor = _noise_std(image, noise, given.get("noise_floor"))
    with torch.inference_mode():
        y = torch.from_numpy(np.ascontiguousarray(image - background, dtype=np.float32))[None, None].to(device)
        if "normalization" in given:
            lo, scale = (torch.tensor(float(v), dtype=y.dtype, device=device).reshape(1, 1, 1, 1)
                         for v in given["normalization"])
            normed = (y - lo) / scale
        else:
            normed, lo, scale = normalize(y)
        if report is not None:
            report.update(normalization=(float(lo), float(scale)), noise_floor=noise_floor)
        noise_map = torch.from_numpy(noise.astype(np.float32))[None, None].to(device) / scale
        if periodic:  # wrap around; only the padding up to a multiple of 4 is added
            widths = (0, -n % _MULTIPLE, 0, -m % _MULTIPLE)
            field, noise_field = _pad(normed, widths, "circular"), _pad(noise_map, widths, "circular")
            offset = 0
        else:
            field, noise_field, offset = pad_field(normed, margin), pad_field(noise_map, margin), margin
        level = given.get("noise_level")
        if level is None:
            level = float(noise_field.mean())
        if report is not None:
            report["noise_level"] = level
        if given.get("settings_only"):  # a big image's settings, decided on a window: the network is not run
            return None
        shape = field.shape[-2:]
        kernels = torch.from_numpy(np.ascontiguousarray(psfs, dtype=np.float32)).to(device)
        otfs = psf_to_otf(kernels, shape)
        if weights is None:
            operator = FourierBlur(otfs[:1][None], field)
        else:
            w = torch.from_numpy(np.ascontiguousarray(weights, dtype=np.float32)).to(device)[None]
            w = _pad_weights(w, offset, shape)
            operator = ProductConvolutionBlur(otfs, w[0], field, mask_first=order == "mask-first")
        level = torch.tensor(level, dtype=noise_field.dtype, device=device).reshape(1, 1, 1, 1)
        restored = net(field, operator, noise_field, level=level)[0, 0, offset : offset + m, offset : offset + n]
        restored = restored * scale[0, 0] + lo[0, 0]
    return restored.double().cpu().numpy() + background


def _pad_weights(weights, offset, shape):
    """Extend (1, K, M, N) image-grid weights to the padded field by replicating the edges (a partition of unity stays one)."""
    m, n = weights.shape[-2:]
    pad = (offset, shape[1] - n - offset, offset, shape[0] - m - offset)
    return torch.nn.functional.pad(weights, pad, mode="replicate")
