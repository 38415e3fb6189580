"""Training samples for the MTF network, synthesised directly in the spectral domain.

A blurred, noisy image's Welch periodogram has the expectation
``((MTF x S) * |w^|^2) + noise`` (``S`` the specimen's spectrum, ``w`` the
Hann window, ``*`` a convolution): this module draws that expectation and its
chi-square fluctuation without ever making an image, about 5 ms a sample
instead of the convolution, acquisition and Welch transform of a 256^2
specimen (issue #25's rungs 2-4). The recipe:

- Zernike coefficients, Noll 4-15, each ``U[-a, a]`` waves with ``a = 0.15``
  (70 %) or ``a ~ U[0.02, 0.15]`` (30 %, so that mildly aberrated blurs are
  not rare); terms 12-15 are zero in half the samples (the Noll 4-11 family
  stays common); ``fc ~ U[0.125, 0.25]`` (:data:`psfkit.learned.ranges.CUTOFF_RANGE`);
- the specimen spectrum a power law ``|f|^-beta``, ``beta ~ U[1, 4]``, with an
  anisotropic term ``cos 2(phi - phi0)`` of amplitude ``U[0, 0.8]^2`` growing
  with ``log |f|``;
- the window's leakage modelled exactly (the transform of the autocovariance
  times the window's autocorrelation, as :mod:`psfkit.identification._spectral_fit`);
- white noise at ``10^U[-9, 0]`` of the signal power at 0.03-0.06 cycles/pixel;
- the Welch average of ``k ~ U[10, 100]`` windows: Gamma(k)/k fluctuations;
- the cut-off hidden from the network in 30 % of the samples (the "fc unknown" mode).
"""

import math

import torch

from psfkit.learned.mtf_net import MTF_FLOOR, WINDOW, full_plane
from psfkit.learned.ranges import CUTOFF_RANGE
from psfkit.learned.spectral import hann_window
from psfkit.learned.torch_optics import psf_to_otf, zernike_psf_torch

NOLL = tuple(range(4, 16))
PSF_SIZE = 33
_FINE = 2 * WINDOW  # model grid: holds every lag of the window's autocorrelation


def _polar(n):
    fy = torch.fft.fftfreq(n)[:, None]
    fx = torch.fft.rfftfreq(n)[None]
    return torch.sqrt(fy**2 + fx**2), torch.atan2(fy.expand(n, fx.shape[1]), fx.expand(n, fx.shape[1]))


_R_FINE, _PHI_FINE = _polar(_FINE)
_R_WINDOW, _ = _polar(WINDOW)
_TAPER = hann_window(WINDOW, dtype=torch.float32)
_LAG = (_FINE, _FINE)
_WINDOW_AC = torch.fft.irfft2(torch.fft.rfft2(_TAPER, s=_LAG).abs().square(), s=_LAG) / _TAPER.square().sum()
_LAGS = torch.cat([torch.arange(WINDOW), torch.arange(_FINE - WINDOW, _FINE)])


def mtf(theta, cutoff, n, indices=NOLL):
    """``|OTF|^2`` on the ``n`` x ``n`` rfft grid of the PSFs ``zernike_psf(theta, cutoff)`` (33^2 support)."""
    return psf_to_otf(zernike_psf_torch(theta, cutoff, size=PSF_SIZE, indices=indices), (n, n)).abs().square()


def draw_coefficients(batch, generator):
    """Noll 4-15 coefficients (waves) of the recipe above."""
    u = torch.rand(batch, len(NOLL), generator=generator) * 2 - 1
    mild = torch.rand(batch, generator=generator) < 0.3
    amplitude = torch.where(mild, 0.02 + 0.13 * torch.rand(batch, generator=generator), torch.full((batch,), 0.15))
    theta = u * amplitude[:, None]
    high_off = torch.rand(batch, generator=generator) < 0.5
    theta[high_off, 8:] = 0.0
    return theta


def periodogram_and_target(theta, fc, generator, indices=NOLL):
    """A random specimen spectrum, noise and Welch statistics for the blurs ``(theta, fc)``.

    Returns ``(log10 periodogram, log10 MTF target)`` on the centred
    ``WINDOW`` x ``WINDOW`` plane; draws from ``generator`` in a fixed order
    (spectrum slope, anisotropy and its angle, noise, window count, Gamma).
    """
    batch = theta.shape[0]
    beta = 1.0 + 3.0 * torch.rand(batch, generator=generator)
    aniso = 0.8 * torch.rand(batch, generator=generator) ** 2
    phi0 = math.pi * torch.rand(batch, generator=generator)
    r = _R_FINE.clamp_min(0.5 / _FINE)
    log_s = -beta[:, None, None] * torch.log(r / 0.1) + aniso[:, None, None] * torch.cos(
        2 * (_PHI_FINE - phi0[:, None, None])) * torch.log(r / 0.02).clamp_min(0)
    with torch.no_grad():
        density = mtf(theta.double(), fc.double(), _FINE, indices).float() * torch.exp(log_s)
        cov = torch.fft.irfft2(density, s=_LAG)[:, _LAGS][:, :, _LAGS] * _WINDOW_AC
        w = WINDOW
        folded = cov[:, :w, :w] + cov[:, w:, :w] + cov[:, :w, w:] + cov[:, w:, w:]
        signal = torch.fft.rfft2(folded).real.clamp_min(0)
        reference = signal[:, (_R_WINDOW > 0.03) & (_R_WINDOW < 0.06)].mean(1)
        noise = reference * 10 ** (-9 * torch.rand(batch, generator=generator))
        p = signal + noise[:, None, None]
        p = p / p.mean((1, 2), keepdim=True)
        k = 10 + 90 * torch.rand(batch, generator=generator)
        gamma = torch._standard_gamma(k[:, None, None].expand_as(p).contiguous(), generator=generator)
        p = p * gamma / k[:, None, None]
        target = torch.log10(mtf(theta.double(), fc.double(), WINDOW, indices).float() + MTF_FLOOR)
    return full_plane(torch.log10(p.clamp_min(1e-12))), full_plane(target)


def synthesise(batch, generator):
    """One batch: ``(log10 periodogram, cutoff given to the network, true cutoff, log10 MTF target, theta)``.

    Periodogram and target on the centred ``WINDOW`` x ``WINDOW`` plane; the
    cutoff given to the network is NaN where it is hidden.
    """
    theta = draw_coefficients(batch, generator)
    fc = CUTOFF_RANGE[0] + (CUTOFF_RANGE[1] - CUTOFF_RANGE[0]) * torch.rand(batch, generator=generator)
    log_p, target = periodogram_and_target(theta, fc, generator)
    hidden = torch.rand(batch, generator=generator) < 0.3
    given = torch.where(hidden, torch.full_like(fc, float("nan")), fc)
    return log_p, given, fc, target, theta
