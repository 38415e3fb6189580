"""
Simulating an acquisition
=========================

:func:`psfkit.simulate_acquisition` turns a specimen (a fluorophore density)
into a realistic microscope image: blur by the PSF, Poisson shot noise,
Gaussian read noise, a camera offset, quantisation to a number of bits and
salt-and-pepper impulses (dead and hot pixels), in this order. Every stage is
optional. :func:`psfkit.estimate_noise` goes the other way for the noise: it
measures the Poisson-Gaussian parameters of an image without any reference.
"""

# %%
# A specimen and a PSF
# --------------------
# :mod:`psfkit.data` generates microscopy-like specimens in ``[0, 1]``
# (``filaments``, ``points``, ``cells``, ``dead_leaves`` and mixtures with
# ``random_specimen``); ``rng`` makes them reproducible. The PSF is a pupil PSF
# with a little defocus, astigmatism and coma (coefficients in waves, Noll
# indices), for a 1.2 NA objective at 520 nm with 65 nm pixels.

import matplotlib.pyplot as plt
import numpy as np

import psfkit

specimen = psfkit.data.filaments((256, 256), rng=0)
fc = psfkit.cutoff_frequency(1.2, 0.52, 0.065)  # NA, wavelength, pixel size -> cycles/pixel
psf = psfkit.zernike_psf({4: 0.1, 5: 0.05, 7: 0.05}, cutoff=fc, size=33)
blurred = psfkit.simulate_acquisition(specimen, psf)  # defaults: blur only, no noise
print(f"fc = {fc:.3f} cycles/pixel; specimen range [{specimen.min():.2f}, {specimen.max():.2f}]")
print(f"blurred image range [{blurred.min():.3f}, {blurred.max():.3f}]")

fig, axes = plt.subplots(1, 3, figsize=(12.5, 4), layout="constrained")
im = axes[0].imshow(specimen, cmap="gray")
axes[0].set_title("specimen (filaments)")
fig.colorbar(im, ax=axes[0], shrink=0.8)
im = axes[1].imshow(psf[8:25, 8:25] ** 0.5, cmap="magma", extent=[-8.5, 8.5, 8.5, -8.5])
axes[1].set_title(f"PSF (sqrt display), fc = {fc:.3f}")
axes[1].set_xlabel("pixels from the centre")
fig.colorbar(im, ax=axes[1], shrink=0.8, label="sqrt(PSF)")
im = axes[2].imshow(blurred, cmap="gray")
axes[2].set_title("blurred, noise-free")
fig.colorbar(im, ax=axes[2], shrink=0.8)

# %%
# Noise levels
# ------------
# The parameters are in the units of the image:
#
# * ``gain`` is the number of detected photons per unit of intensity: a pixel
#   of intensity ``z`` receives ``Poisson(gain * z)`` photons, divided back by
#   ``gain``, so its mean stays ``z`` and its variance is ``z / gain``
#   (smaller gain = fewer photons = noisier);
# * ``read_noise`` is the standard deviation of the additive Gaussian noise;
# * ``background`` is a constant camera offset (no shot noise), which keeps
#   dark pixels from being clipped at 0 by the quantisation;
# * ``bits`` quantises ``[0, full_scale]`` (by default the image maximum) to
#   ``2**bits`` levels;
# * ``salt_pepper`` is the probability that a pixel reads 0 or ``full_scale``.

settings = {
    "high light": dict(gain=2000, read_noise=0.005),
    "moderate": dict(gain=200, read_noise=0.01),
    "low light": dict(gain=30, read_noise=0.02),
    "8-bit, offset, impulses": dict(gain=200, read_noise=0.01, background=0.05, bits=8, salt_pepper=0.002),
}
images = {name: psfkit.simulate_acquisition(specimen, psf, rng=0, **kw) for name, kw in settings.items()}
for name, kw in settings.items():
    print(f"{name:24s} {kw}: about {kw['gain'] * blurred.max():.0f} photons at the brightest pixel")

crop = (slice(64, 160), slice(64, 160))
display = dict(cmap="gray", vmin=0, vmax=0.55)  # one intensity scale for all panels
fig, axes = plt.subplots(2, 4, figsize=(13, 6.8), layout="constrained")
for col, (name, y) in enumerate(images.items()):
    im = axes[0, col].imshow(y, **display)
    axes[0, col].add_patch(plt.Rectangle((63.5, 63.5), 96, 96, fill=False, color="y", lw=1))
    axes[0, col].set_title(f"{name}\ngain={settings[name]['gain']}, read_noise={settings[name]['read_noise']}", fontsize=9)
    axes[1, col].imshow(y[crop], **display)
    axes[1, col].set_title("zoom on the yellow square", fontsize=9)
for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
fig.colorbar(im, ax=axes, shrink=0.6, label="intensity (same scale in every panel)")

# %%
# With ``output="counts"`` the camera's integer counts are returned instead of
# intensities (the smallest unsigned type that holds them):

counts = psfkit.simulate_acquisition(specimen, psf, gain=200, read_noise=0.01, background=0.05, bits=12,
                                     output="counts", rng=0)
print("counts:", counts.dtype, counts.min(), counts.max())

# %%
# Estimating the noise from the image alone
# -----------------------------------------
# :func:`psfkit.estimate_noise` fits the model
# ``Var[y] = alpha * E[y] + beta`` (Foi et al. 2008) to one image. For
# :func:`~psfkit.simulate_acquisition`, ``alpha = 1 / gain``; with an offset
# ``b``, ``E[y] = z + b`` so ``beta = read_noise**2 - alpha * b``, plus about
# ``step**2 / 12`` for a quantisation step ``step``. The estimate also gives
# ``gain`` and ``sigma`` (the noise standard deviation at zero intensity,
# ``sqrt(max(beta, 0))``).


def true_parameters(y, kw):
    alpha = 1 / kw["gain"]
    beta = kw["read_noise"] ** 2 - alpha * kw.get("background", 0.0)
    if "bits" in kw:  # full_scale defaults to the image maximum
        beta += (y.max() / (2 ** kw["bits"] - 1)) ** 2 / 12
    return alpha, beta


estimates = {name: psfkit.estimate_noise(y) for name, y in images.items()}
print(f"{'setting':24s} {'alpha true':>11s} {'estimated':>10s} {'beta true':>11s} {'estimated':>10s} {'gain est.':>9s}")
for name, y in images.items():
    alpha, beta = true_parameters(y, settings[name])
    est = estimates[name]
    print(f"{name:24s} {alpha:11.5f} {est.alpha:10.5f} {beta:11.2e} {est.beta:10.2e} {est.gain:9.1f}")

# %%
# The variance curve
# ------------------
# Because the noise-free image is known here, the variance of the noise can be
# measured directly: group the pixels by their noise-free level ``E[y]`` and
# compute the variance of ``y - E[y]`` in each group of at least 100 pixels
# (impulses excluded). The straight lines are the true model and the blind
# estimate.

fig, axes = plt.subplots(1, len(images), figsize=(14, 3.6), layout="constrained")
for ax, (name, y) in zip(axes, images.items()):
    kw = settings[name]
    expected = blurred + kw.get("background", 0.0)
    keep = np.ones(y.shape, dtype=bool)
    if kw.get("salt_pepper"):
        keep = (y > 0) & (y < y.max())  # drop the impulses (they read exactly 0 or full_scale)
    edges = np.linspace(expected.min(), np.quantile(expected, 0.999), 21)
    level = np.digitize(expected, edges[1:-1])
    groups = [keep & (level == k) for k in range(20)]
    groups = [g for g in groups if g.sum() >= 100]
    centres = np.array([expected[g].mean() for g in groups])
    variances = np.array([(y - expected)[g].var() for g in groups])
    ax.plot(centres, variances, "o", ms=4, label="measured (noise-free known)")
    grid = np.linspace(0, expected.max(), 50)
    alpha, beta = true_parameters(y, kw)
    ax.plot(grid, alpha * grid + beta, "k-", label="true model")
    est = estimates[name]
    ax.plot(grid, est.alpha * grid + est.beta, "r--", label="estimate_noise (blind)")
    ax.set_title(name, fontsize=10)
    ax.set_xlabel("E[y] (intensity)")
axes[0].set_ylabel("noise variance")
axes[0].legend(fontsize=8)
fig.suptitle("Noise variance against intensity: measured, true and blindly estimated")

plt.show()
