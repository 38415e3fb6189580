"""The PSF identification network: spectrum in, Zernike coefficients out.

A compact ResNet-style encoder reads the Welch log power spectrum of the
image (see :mod:`psfkit.learned.spectral`) plus frequency-coordinate
channels, and regresses the Noll 4-11 coefficients (waves) and the cut-off
frequency. Known acquisition parameters -- the cut-off ``fc`` and the
aberration range ``theta_max`` -- enter as input channels and through FiLM
(feature-wise scale and shift) in every stage; a zero value with a zero
"known" flag is the learned "unknown" token.
"""

import torch
from torch import nn

from psfkit.learned.ranges import FC_RANGE
from psfkit.learned.spectral import WINDOW

CONDITION_SIZE = 4


def condition_vector(cutoff, max_amplitude, batch, device):
    """Conditioning vector ``(B, 4)``: [fc known, fc, theta_max known, theta_max].

    ``cutoff`` / ``max_amplitude`` are tensors (B,) with NaN where unknown.
    """
    out = torch.zeros(batch, CONDITION_SIZE, device=device)
    for i, (value, centre, scale) in enumerate(((cutoff, 0.1875, 0.0625), (max_amplitude, 0.15, 0.1))):
        known = torch.isfinite(value)
        out[:, 2 * i] = known.float()
        out[:, 2 * i + 1] = torch.where(known, (value - centre) / scale, torch.zeros_like(value))
    return out


def _frequency_channels(window, device):
    f = torch.fft.fftshift(torch.fft.fftfreq(window, device=device))
    fy, fx = torch.meshgrid(f, f, indexing="ij")
    radius = torch.sqrt(fy**2 + fx**2)
    return torch.stack([fy / 0.5, fx / 0.5, radius / 0.5]), radius


class _FiLMBlock(nn.Module):
    """Residual block (stride 2) whose output is modulated by the condition."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=2, bias=False), nn.BatchNorm2d(cout))
        self.film = nn.Linear(CONDITION_SIZE, 2 * cout)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def forward(self, x, condition):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        scale, shift = self.film(condition).chunk(2, dim=1)
        y = y * (1 + scale[:, :, None, None]) + shift[:, :, None, None]
        return torch.relu(y + self.skip(x))


class IdentifierNet(nn.Module):
    """Spectrum -> (Zernike coefficients, cut-off) regression network.

    Parameters
    ----------
    n_coefficients : int
        Number of Zernike coefficients (Noll 4, 5, ...).
    widths : tuple of int
        Channels of the stem and of each stride-2 stage.
    """

    def __init__(self, n_coefficients=8, widths=(32, 48, 96, 160), window=WINDOW, hidden=256):
        super().__init__()
        self.n_coefficients = n_coefficients
        self.window = window
        coords, radius = _frequency_channels(window, "cpu")
        self.register_buffer("coords", coords, persistent=False)
        self.register_buffer("radius", radius, persistent=False)
        self.stem = nn.Sequential(
            nn.Conv2d(5, widths[0], 5, stride=2, padding=2, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()
        )
        self.blocks = nn.ModuleList(_FiLMBlock(a, b) for a, b in zip(widths[:-1], widths[1:]))
        side = window // 2 ** len(widths)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(widths[-1] * side * side + CONDITION_SIZE, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, n_coefficients + 1),
        )

    def forward(self, log_spectrum, cutoff, max_amplitude):
        """Return ``(coefficients (B, K), cutoff (B,))``.

        ``cutoff`` / ``max_amplitude``: (B,) tensors, NaN where unknown. A
        known cutoff is returned unchanged.
        """
        batch = log_spectrum.shape[0]
        condition = condition_vector(cutoff, max_amplitude, batch, log_spectrum.device)
        known_fc = torch.isfinite(cutoff)
        # cut-off ring: |w| / (2 fc), the strongest cue in the spectrum when fc is known
        ring = self.radius / (2 * torch.where(known_fc, cutoff, torch.ones_like(cutoff)))[:, None, None]
        ring = torch.where(known_fc[:, None, None], ring.clamp(max=2.0), torch.zeros_like(ring))
        x = torch.cat(
            [((log_spectrum + 3) / 2)[:, None], ring[:, None], self.coords.expand(batch, -1, -1, -1)], dim=1
        )
        x = self.stem(x)
        for block in self.blocks:
            x = block(x, condition)
        out = self.head(torch.cat([x.flatten(1), condition], dim=1))
        coefficients = 0.1 * out[:, : self.n_coefficients]
        lo, hi = FC_RANGE
        fc = lo + (hi - lo) * torch.sigmoid(out[:, self.n_coefficients])
        fc = torch.where(known_fc, cutoff, fc)
        return coefficients, fc
