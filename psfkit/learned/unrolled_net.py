"""The unrolled Douglas-Rachford deblurring network (compact Deep-Blur ``003``).

``T`` Douglas-Rachford steps for ``min_x 1/2 ||h * x - y||^2 + g(x)``::

    x_k     = R_gamma_k(z_k)          # regularised inverse, exact (FFT) or CG
    u_k     = prox_net(2 x_k - z_k, sigma_k)   # learned proximal step for g
    z_{k+1} = z_k + u_k - x_k

and the output is ``u_T``. ``R_gamma(z) = argmin_x 1/2 ||h * x - y||^2 +
1/(2 gamma) ||x - z||^2`` takes the PSF as an input, so one set of weights
serves every PSF, space-invariant or not (the operator is a parameter of
:meth:`UnrolledDeblur.forward`). The proximal network is one small residual
U-Net shared by every step (about 0.3 M parameters, so that it trains on a
CPU), conditioned on a per-pixel noise-level map; each step has its own
learned ``gamma_k`` and noise-map scale, both tied to the measured noise
level so that the same weights adapt from noiseless to photon-starved data.
"""

import math

import torch
from torch import nn


class _ResBlock(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return x + self.conv2(torch.relu(self.conv1(x)))


class ProxUNet(nn.Module):
    """Noise-conditioned residual U-Net (DRUNet-like, three scales).

    Input ``(B, 1, H, W)`` image and ``(B, 1, H, W)`` noise-level map, H and W
    multiples of 4; output the denoised image. The last layer starts at zero,
    so an untrained network is the identity.
    """

    def __init__(self, channels=(16, 32, 64)):
        super().__init__()
        c1, c2, c3 = channels
        self.head = nn.Conv2d(2, c1, 3, padding=1)
        self.enc1 = _ResBlock(c1)
        self.down1 = nn.Conv2d(c1, c2, 2, stride=2)
        self.enc2 = _ResBlock(c2)
        self.down2 = nn.Conv2d(c2, c3, 2, stride=2)
        self.body = nn.Sequential(_ResBlock(c3), _ResBlock(c3))
        self.up2 = nn.ConvTranspose2d(c3, c2, 2, stride=2)
        self.dec2 = _ResBlock(c2)
        self.up1 = nn.ConvTranspose2d(c2, c1, 2, stride=2)
        self.dec1 = _ResBlock(c1)
        self.tail = nn.Conv2d(c1, 1, 3, padding=1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def forward(self, x, sigma):
        f1 = self.enc1(self.head(torch.cat([x, sigma], dim=1)))
        f2 = self.enc2(self.down1(f1))
        f3 = self.body(self.down2(f2))
        g2 = self.dec2(self.up2(f3) + f2)
        g1 = self.dec1(self.up1(g2) + f1)
        return x + self.tail(g1)


class FourierBlur:
    """Space-invariant periodic blur on the (padded) field: exact regularised inverse by FFT.

    ``otf`` is the real-FFT transfer function ``(B, 1, H, W // 2 + 1)``.
    """

    def __init__(self, otf, y):
        self.otf = otf
        self.shape = y.shape[-2:]
        self.hty = torch.conj(otf) * torch.fft.rfft2(y)
        self.power = otf.real.square() + otf.imag.square()

    def inverse(self, z, inv_gamma):
        # argmin 1/2 ||Hx - y||^2 + inv_gamma/2 ||x - z||^2
        spectrum = (self.hty + inv_gamma * torch.fft.rfft2(z)) / (self.power + inv_gamma)
        return torch.fft.irfft2(spectrum, s=self.shape)


class UnrolledDeblur(nn.Module):
    """``T`` Douglas-Rachford steps with a shared learned proximal network.

    Per step ``k`` (learned scalars): ``1/gamma_k = exp(a_k) * s + exp(b_k)``
    with ``s`` the image's mean noise std (so regularisation follows the
    noise), and the proximal network sees the noise map scaled by
    ``exp(c_k)``.
    """

    def __init__(self, steps=4, channels=(16, 32, 64)):
        super().__init__()
        self.steps = steps
        self.prox = ProxUNet(channels)
        self.log_a = nn.Parameter(torch.zeros(steps))
        self.log_b = nn.Parameter(torch.full((steps,), math.log(1e-3)))
        self.log_c = nn.Parameter(torch.zeros(steps))

    def forward(self, y, operator, noise_map, *, return_all=False, level=None):
        """Deblur ``y`` (B, 1, H, W) under ``operator`` (``.inverse(z, inv_gamma)``).

        ``noise_map`` (B, 1, H, W) is the per-pixel noise std in the units of ``y``; ``level`` its mean (given
        for a tile of a bigger image: the whole image's).
        """
        if level is None:
            level = noise_map.mean(dim=(1, 2, 3), keepdim=True)
        z = y
        outputs = []
        for k in range(self.steps):
            inv_gamma = torch.exp(self.log_a[k]) * level + torch.exp(self.log_b[k])
            x = operator.inverse(z, inv_gamma)
            u = self.prox(2 * x - z, noise_map * torch.exp(self.log_c[k]))
            z = z + u - x
            outputs.append(u)
        return outputs if return_all else outputs[-1]


class ProductConvolutionBlur:
    """Space-varying blur ``sum_k h_k * (w_k x)`` (mask first) or ``sum_k w_k (h_k * x)`` (mask last).

    The regularised inverse is solved by conjugate gradients, preconditioned
    by the exact inverse for the mean transfer function (a few iterations
    suffice when the PSFs vary smoothly), warm-started at ``z``.

    ``otfs`` (K, H, W // 2 + 1) and ``weights`` (K, H, W) live on the padded
    field; ``y`` is (1, 1, H, W).
    """

    def __init__(self, otfs, weights, y, *, mask_first=True, cg_iterations=8):
        self.otfs = otfs
        self.weights = weights
        self.mask_first = mask_first
        self.shape = y.shape[-2:]
        self.cg_iterations = cg_iterations
        mean = otfs.mean(dim=0)
        self.mean_power = mean.real.square() + mean.imag.square()
        self.hty = self.adjoint(y)

    def _conv(self, x, otfs):
        return torch.fft.irfft2(torch.fft.rfft2(x) * otfs, s=self.shape)

    def forward_op(self, x):  # x (1, 1, H, W)
        if self.mask_first:
            return self._conv(self.weights * x[0], self.otfs).sum(dim=0)[None, None]
        return (self.weights * self._conv(x[0], self.otfs)).sum(dim=0)[None, None]

    def adjoint(self, r):
        conj = torch.conj(self.otfs)
        if self.mask_first:
            return (self.weights * self._conv(r[0], conj)).sum(dim=0)[None, None]
        return self._conv(self.weights * r[0], conj).sum(dim=0)[None, None]

    def inverse(self, z, inv_gamma):
        def normal(x):
            return self.adjoint(self.forward_op(x)) + inv_gamma * x

        def precondition(r):
            return torch.fft.irfft2(torch.fft.rfft2(r) / (self.mean_power + inv_gamma), s=self.shape)

        x = z
        r = self.hty + inv_gamma * z - normal(x)
        p = precondition(r)
        rz = (r * p).sum()
        for _ in range(self.cg_iterations):
            q = normal(p)
            alpha = rz / (p * q).sum().clamp_min(1e-30)
            x = x + alpha * p
            r = r - alpha * q
            s = precondition(r)
            rz_new = (r * s).sum()
            p = s + (rz_new / rz.clamp_min(1e-30)) * p
            rz = rz_new
        return x
