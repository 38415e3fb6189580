"""On-the-fly synthetic training data for the identification network.

Everything after the specimen is generated in batched torch code: random
Zernike PSFs (Noll 4-11, ``theta ~ U[-theta_max, theta_max]``, ``fc ~
U[0.125, 0.25]``), blur by FFT, the acquisition model of
:func:`psfkit.simulate_acquisition` (Poisson with random gain, background,
Gaussian read noise, camera offset and ADU gain, 16-bit quantisation,
salt-and-pepper 1e-5), then the Welch spectrum the network reads.
Specimens come from :mod:`psfkit.data` (procedural microscopy-like specimens
and the images scikit-image ships), kept in a pool that is refreshed as
training goes.
"""

import math
from dataclasses import dataclass

import numpy as np
import torch

from psfkit.learned.spectral import welch_log_spectrum
from psfkit.learned.ranges import CUTOFF_RANGE
from psfkit.learned.torch_optics import psf_to_otf, zernike_psf_torch

NOLL = tuple(range(4, 12))  # defocus, astigmatisms, comas, trefoils, spherical
EVEN = torch.tensor([True, True, True, False, False, False, False, True])  # sign-blind terms
RENDER_SIZE = 64  # PSF window used to blur (tails beyond 32 px are negligible)


@dataclass
class Batch:
    spectra: torch.Tensor  # (B, 64, 64) network input
    coefficients: torch.Tensor  # (B, 8) true Noll 4-11 coefficients (waves)
    cutoff: torch.Tensor  # (B,) true fc
    max_amplitude: torch.Tensor  # (B,) theta_max the coefficients were drawn with
    images: torch.Tensor = None  # (B, C, C) raw simulated images (kept only on request)


def _skimage_specimens():
    from skimage import color, data

    names = ["camera", "moon", "text", "page", "coins", "brick", "grass", "gravel", "cell", "astronaut", "coffee", "chelsea", "rocket", "retina", "immunohistochemistry", "hubble_deep_field", "colorwheel"]
    images = []
    for name in names:
        try:
            image = getattr(data, name)()
        except Exception:  # noqa: BLE001 - images that need a download are skipped
            continue
        if image.ndim == 3:
            image = color.rgb2gray(image[..., :3])
        image = image.astype(np.float64)
        image = (image - image.min()) / max(np.ptp(image), 1e-12)
        images.append(image)
    return images


class SpecimenPool:
    """A refreshable pool of square specimens in [0, 1] (float32 tensor).

    Parameters
    ----------
    count : int
        Number of specimens kept.
    size : int
        Side of each specimen.
    rng : numpy.random.Generator
        Source of all randomness (specimen generation and refresh).
    natural_fraction : float
        Share of crops of scikit-image's bundled images (random scale and
        orientation); the rest are procedural microscopy specimens.
    """

    def __init__(self, count, size, rng, *, natural_fraction=0.2):
        from psfkit import data

        self._data = data
        self.size = size
        self.rng = rng
        self.natural_fraction = natural_fraction
        self._natural = _skimage_specimens()
        self.images = torch.stack([self._make() for _ in range(count)])

    def _make(self):
        rng = self.rng
        if self._natural and rng.random() < self.natural_fraction:
            from skimage.transform import rescale

            image = self._natural[rng.integers(len(self._natural))]
            scale = rng.uniform(0.5, 1.5)
            scaled = rescale(image, scale, order=1, anti_aliasing=scale < 1)
            if min(scaled.shape) < self.size:
                scaled = rescale(image, self.size / min(image.shape) * 1.01, order=1)
            y = rng.integers(scaled.shape[0] - self.size + 1)
            x = rng.integers(scaled.shape[1] - self.size + 1)
            crop = scaled[y : y + self.size, x : x + self.size]
            crop = crop ** rng.uniform(0.5, 2.0)  # vary contrast / sparsity
        else:
            crop = self._data.random_specimen((self.size, self.size), rng=rng)
        return torch.from_numpy(np.ascontiguousarray(crop, dtype=np.float32))

    def refresh(self, count):
        """Replace ``count`` random specimens by new ones."""
        for index in self.rng.choice(len(self.images), size=count, replace=False):
            self.images[index] = self._make()

    def sample(self, batch, generator):
        """``batch`` specimens with random rotation by 90 degrees and flips."""
        index = torch.randint(len(self.images), (batch,), generator=generator)
        out = self.images[index]
        k = int(torch.randint(4, (1,), generator=generator))
        out = torch.rot90(out, k, dims=(1, 2))
        if bool(torch.randint(2, (1,), generator=generator)):
            out = out.flip(2)
        return out


def random_parameters(batch, generator, *, max_amplitude_range=(0.02, 0.25)):
    """Random ``(coefficients, cutoff, max_amplitude)`` for a batch."""
    lo, hi = max_amplitude_range
    theta_max = lo + (hi - lo) * torch.rand(batch, generator=generator)
    coefficients = (2 * torch.rand(batch, len(NOLL), generator=generator) - 1) * theta_max[:, None]
    cutoff = CUTOFF_RANGE[0] + (CUTOFF_RANGE[1] - CUTOFF_RANGE[0]) * torch.rand(batch, generator=generator)
    return coefficients, cutoff, theta_max


def blur(specimens, psfs):
    """Circular FFT convolution of (B, S, S) specimens with (B, P, P) centred PSFs."""
    shape = specimens.shape[-2:]
    return torch.fft.irfft2(torch.fft.rfft2(specimens) * psf_to_otf(psfs, shape), s=shape)


def acquire(blurred, generator, *, noiseless_fraction=0.15, min_gain=5.0):
    """Random realistic camera acquisition of (B, H, W) intensities in ~[0, 1].

    Photons: mean ``gain * (z + background)`` with gain log-uniform in
    [5, 5000] photons per unit intensity; Gaussian read noise 0.3-10 e-;
    ADU gain 0.5-2 e-/ADU, camera offset 0-500 ADU, 16-bit quantisation and
    salt-and-pepper with probability 1e-5. A fraction of the batch is
    noiseless apart from the 16-bit quantisation.

    Shot and read noise are drawn together in the Poisson-Gaussian form
    ``N(lambda, lambda + sigma^2)`` (Foi et al. 2008, as in Deep-Blur): the
    network reads a Welch spectrum, a second-order statistic that this form
    reproduces exactly, and it is ten times cheaper than Poisson sampling.
    """
    b = blurred.shape[0]

    def uniform(lo, hi):
        return lo + (hi - lo) * torch.rand(b, 1, 1, generator=generator)

    def log_uniform(lo, hi):
        return torch.exp(uniform(math.log(lo), math.log(hi)))

    z = blurred.clamp_min(0)
    z = z / z.amax(dim=(1, 2), keepdim=True).clamp_min(1e-12)
    gain = log_uniform(min_gain, 5000)
    background = uniform(0, 0.1) * (torch.rand(b, 1, 1, generator=generator) < 0.7)
    photons = gain * (z + background)
    read_noise = log_uniform(0.3, 10)
    electrons = photons + torch.sqrt(photons + read_noise.square()) * torch.randn(z.shape, generator=generator)
    adu_per_electron = 1 / uniform(0.5, 2)
    counts = uniform(0, 500) + electrons * adu_per_electron
    # noiseless samples: the clean signal spread over the 16-bit range
    clean = 100 + z * 60000
    noiseless = torch.rand(b, 1, 1, generator=generator) < noiseless_fraction
    counts = torch.where(noiseless, clean, counts).round_().clamp_(0, 65535)
    # salt and pepper (probability 1e-5): draw the few hit pixels directly
    flat = counts.view(-1)
    hits = int(torch.poisson(torch.tensor([flat.numel() * 1e-5]), generator=generator))
    if hits:
        where = torch.randint(flat.numel(), (hits,), generator=generator)
        flat[where] = 65535.0 * torch.randint(2, (hits,), generator=generator).float()
    return counts


def make_batch(
    pool, batch, generator, *, crop=256, max_amplitude_range=(0.02, 0.25), noiseless_fraction=0.15, min_gain=5.0,
    keep_images=False,
):
    """One training batch: random PSFs, blurred noisy images and their spectra."""
    coefficients, cutoff, theta_max = random_parameters(batch, generator, max_amplitude_range=max_amplitude_range)
    psfs = zernike_psf_torch(coefficients, cutoff, size=RENDER_SIZE, indices=NOLL)
    specimens = pool.sample(batch, generator)
    margin = RENDER_SIZE // 2
    start = int(torch.randint(pool.size - crop - 2 * margin + 1, (1,), generator=generator))
    specimens = specimens[:, start : start + crop + 2 * margin, start : start + crop + 2 * margin]
    blurred = blur(specimens, psfs.to(specimens.dtype))
    # crop away the circular-convolution seam
    blurred = blurred[:, margin : margin + crop, margin : margin + crop]
    images = acquire(blurred, generator, noiseless_fraction=noiseless_fraction, min_gain=min_gain)
    spectra = welch_log_spectrum(images)
    return Batch(spectra, coefficients, cutoff, theta_max, images if keep_images else None)


def canonical(coefficients):
    """The MTF-equivalent sign variant with defocus >= 0 and odd terms summing to >= 0.

    A fixed choice breaks the symmetry that makes an untrained network sit at
    zero under a min-over-variants loss (measured: it never leaves it).
    """
    even = EVEN.to(coefficients.device)
    se = torch.where(coefficients[:, 0] < 0, -1.0, 1.0)
    so = torch.where(coefficients[:, ~even].sum(dim=1) < 0, -1.0, 1.0)
    return coefficients * torch.where(even, se[:, None], so[:, None])


def sign_variants(coefficients):
    """The 4 coefficient vectors with the same MTF: +-even terms x +-odd terms.

    Flipping the even terms leaves the PSF unchanged; flipping the odd ones
    point-reflects it, which the power spectrum cannot see.
    """
    even = EVEN.to(coefficients.device)
    variants = []
    for se in (1.0, -1.0):
        for so in (1.0, -1.0):
            variants.append(coefficients * torch.where(even, se, so))
    return torch.stack(variants, dim=1)  # (B, 4, K)
