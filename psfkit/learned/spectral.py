"""Spectral features for PSF identification.

Averaged over many windows of one image, the power spectrum of a blurred
image is ``|H(w)|^2 S_x(w) + noise``: an image of the modulation transfer
function (MTF) seen through the specimen's smooth spectrum. The
identification network reads this Welch estimate instead of raw pixels, which
makes it far more sample-efficient to train and independent of image size.
The same torch code computes the features for training and for inference.
"""

import math

import torch

WINDOW = 64  # Welch window (pixels): spectral resolution 1/64 cycle/pixel
FLOOR = 1e-7  # relative power floor before the log (16-bit quantisation is ~1e-10)


def hann_window(size, *, device=None, dtype=torch.float32):
    """Separable 2-D Hann window of ``size`` x ``size``."""
    n = torch.arange(size, device=device, dtype=dtype)
    w = 0.5 - 0.5 * torch.cos(2 * math.pi * (n + 0.5) / size)
    return w[:, None] * w[None, :]


def tapered_power(patches):
    """Periodograms (rfft layout) of (..., w, w) windows under a Hann taper, normalised by its energy."""
    window = patches.shape[-1]
    taper = hann_window(window, device=patches.device, dtype=patches.dtype)
    # remove each window's weighted mean so the DC leakage does not swamp low frequencies
    mean = torch.einsum("...ij,ij->...", patches, taper) / taper.sum()
    patches = (patches - mean[..., None, None]) * taper
    return torch.view_as_real(torch.fft.rfft2(patches)).square().sum(-1) / taper.square().sum()


def half_overlapping_windows(images, window):
    """(B, H, W) -> (B, P, window, window): every window at a stride of ``window // 2``."""
    patches = images.unfold(1, window, window // 2).unfold(2, window, window // 2)
    b, py, px = patches.shape[:3]
    return patches.reshape(b, py * px, window, window)


def welch_log_spectrum(images, *, window=WINDOW, keep=0.5):
    """Log10 Welch power spectrum of each image, DC at the centre.

    Parameters
    ----------
    images : (B, H, W) tensor
        Raw images, any offset and scale (each image is standardised here).
    window : int
        Window size; H and W must be at least ``window``.
    keep : float
        Fraction of windows, the most contrasted ones, that are averaged, so
        that empty background windows do not dilute the blur signature.

    Returns
    -------
    (B, window, window) tensor
        ``log10`` of the averaged periodogram of the standardised image.
    """
    images = images - images.mean(dim=(1, 2), keepdim=True)
    images = images / images.std(dim=(1, 2), keepdim=True).clamp_min(1e-12)
    stride = window // 2
    windows = images.unfold(1, window, stride).unfold(2, window, stride)  # view (B, py, px, w, w)
    batch, py, px = windows.shape[:3]
    n_keep = max(1, int(round(keep * py * px)))
    # pick the most contrasted windows from pooled moments before copying any of them
    pooled = torch.nn.functional.avg_pool2d(images[:, None], window, stride)
    pooled_sq = torch.nn.functional.avg_pool2d(images[:, None].square(), window, stride)
    variance = (pooled_sq - pooled.square()).reshape(batch, -1)
    index = variance.topk(n_keep, dim=1).indices
    rows = torch.arange(batch, device=images.device)[:, None]
    patches = windows[rows, index // px, index % px]  # (B, n_keep, w, w)
    half = tapered_power(patches).mean(dim=1)
    power = _full_plane(half, window)
    power = torch.fft.fftshift(power, dim=(-2, -1))
    return torch.log10(power.clamp_min(FLOOR))


def _full_plane(half, window):
    # a real image's power spectrum is centrosymmetric, P(-k) = P(k): rebuild the
    # columns that rfft2 leaves out instead of paying for a complex FFT
    mirrored = torch.roll(torch.flip(half, dims=[-2]), shifts=1, dims=-2)
    return torch.cat([half, mirrored[..., 1 : window - half.shape[-1] + 1].flip(-1)], dim=-1)
