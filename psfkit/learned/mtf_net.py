"""The dense MTF network: a Welch periodogram in, the blur's MTF (and its uncertainty) out.

The network predicts, on the 64 x 64 frequency grid of the Welch periodogram,
the mean and the spread of ``log10(MTF + 1e-5)`` of the blur: a dense,
specimen-free image of the transfer function instead of a handful of
coefficients after global pooling (issue #25: regressing coefficients stayed at
the image-blind floor; the exact MTF determines the PSF up to a point
reflection, so the coefficients are fitted to the predicted MTF afterwards, see
:mod:`psfkit.identification._mtf_fit`). The spread is trained by the Gaussian
negative log-likelihood, so frequencies the network cannot read (drowned in
noise, or beyond the cut-off) carry little weight in that fit.

What psfkit uses it for today: its spread, ``info["uncertainty"]`` of
:func:`psfkit.estimate_psf`. Its fitted coefficients are measured in
``benchmarks/bench_identifier_network.py`` and do not beat the coefficient
network's estimate on mild or measured PSFs (see the user guide's page on the
learned models).

Inputs are three channels on the centred (DC in the middle) full plane: the
log10 periodogram less its mean, the radius over ``2 fc`` and ``4 fc``. When
the cut-off is unknown both optical channels use the middle of the supported
range and a fourth channel says so; the network then has to read the support
from the data.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from psfkit.learned.ranges import CUTOFF_RANGE

WINDOW = 64  # Welch window and output grid (cycles/pixel resolution 1/64)
MTF_FLOOR = 1e-5  # log10(MTF + MTF_FLOOR) is what the network predicts
_MIN_SPREAD = 0.01  # log10 units
_UNKNOWN_CUTOFF = 0.5 * (CUTOFF_RANGE[0] + CUTOFF_RANGE[1])


def centred_radius(window=WINDOW, *, device=None, dtype=torch.float32):
    """Radial frequency (cycles/pixel) of the centred full ``window`` x ``window`` plane."""
    f = torch.fft.fftshift(torch.fft.fftfreq(window, device=device, dtype=dtype))
    return torch.sqrt(f[:, None] ** 2 + f[None, :] ** 2)


def full_plane(half):
    """``(B, W, W//2+1)`` rfft layout -> ``(B, W, W)`` full plane, DC centred (a power spectrum is even)."""
    w = half.shape[-2]
    full = half.new_empty(half.shape[0], w, w)
    full[:, :, : w // 2 + 1] = half
    full[:, :, w // 2 + 1 :] = torch.roll(half[:, :, 1 : w // 2].flip(-1).flip(1), 1, dims=1)
    return torch.fft.fftshift(full, dim=(-2, -1))


def half_plane(full):
    """Inverse of :func:`full_plane`: centred ``(B, W, W)`` -> rfft layout ``(B, W, W//2+1)``."""
    w = full.shape[-1]
    return torch.fft.ifftshift(full, dim=(-2, -1))[..., : w // 2 + 1]


def network_inputs(log_periodogram, cutoff):
    """Channels of :class:`MTFNet` from a centred log10 periodogram ``(B, W, W)`` and cut-offs ``(B,)``.

    ``cutoff`` entries that are NaN mean "unknown".
    """
    batch, w = log_periodogram.shape[0], log_periodogram.shape[-1]
    known = torch.isfinite(cutoff)
    fc = torch.where(known, cutoff, torch.full_like(cutoff, _UNKNOWN_CUTOFF))
    rr = centred_radius(w, device=log_periodogram.device, dtype=log_periodogram.dtype)[None].expand(batch, w, w)
    x = log_periodogram - log_periodogram.mean((1, 2), keepdim=True)
    plane = torch.ones_like(x)
    return torch.stack([x, rr / (2 * fc[:, None, None]), 4 * fc[:, None, None] * plane,
                        (~known).to(x.dtype)[:, None, None] * plane], 1)


def _block(i, o):
    return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.GELU(), nn.Conv2d(o, o, 3, padding=1), nn.GELU())


class MTFNet(nn.Module):
    """A small U-Net (about 230 k parameters): periodogram channels -> mean and spread of log10 MTF."""

    def __init__(self, channels=(16, 32, 48, 64), in_channels=4, outputs=2):
        super().__init__()
        c = channels
        self.e1, self.e2 = _block(in_channels, c[0]), _block(c[0], c[1])
        self.e3, self.e4 = _block(c[1], c[2]), _block(c[2], c[3])
        self.u3, self.u2, self.u1 = _block(c[3] + c[2], c[2]), _block(c[2] + c[1], c[1]), _block(c[1] + c[0], c[0])
        self.out = nn.Conv2d(c[0], outputs, 1)

    def features(self, x):
        """The U-Net's raw output maps, ``(B, outputs, W, W)``."""
        e1 = self.e1(x)
        e2 = self.e2(F.avg_pool2d(e1, 2))
        e3 = self.e3(F.avg_pool2d(e2, 2))
        e4 = self.e4(F.avg_pool2d(e3, 2))
        d3 = self.u3(torch.cat([F.interpolate(e4, scale_factor=2), e3], 1))
        d2 = self.u2(torch.cat([F.interpolate(d3, scale_factor=2), e2], 1))
        d1 = self.u1(torch.cat([F.interpolate(d2, scale_factor=2), e1], 1))
        return self.out(d1)

    def forward(self, x):
        """``(B, 4, W, W)`` -> ``(mean, spread)``, each ``(B, W, W)`` in log10 units."""
        out = self.features(x)
        mean = out[:, 0] + math.log10(MTF_FLOOR) / 2
        spread = F.softplus(out[:, 1]) + _MIN_SPREAD
        return mean, spread


def gaussian_nll(mean, spread, target, cutoff, *, support_weight=4.0):
    """Per-sample Gaussian negative log-likelihood, the true OTF support (radius < 2 ``cutoff``) weighted
    ``1 + support_weight``: the MTF outside it is known to be zero, inside it is what identifies the blur."""
    rr = centred_radius(mean.shape[-1], device=mean.device, dtype=mean.dtype)[None]
    weight = 1.0 + support_weight * (rr < 2 * cutoff[:, None, None]).to(mean.dtype)
    nll = 0.5 * ((mean - target) / spread) ** 2 + torch.log(spread)
    return (nll * weight).mean((1, 2))
