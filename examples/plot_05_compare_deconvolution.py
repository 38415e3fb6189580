"""
Comparing deconvolution methods
===============================

:func:`psfkit.deconvolve` restores an image blurred by a known PSF with one of
several methods, selected by ``method``:

* ``"rl"``: Richardson-Lucy, accelerated; stopping early is its only
  regularisation (by default when the data are fitted to their measured noise
  level: the discrepancy principle);
* ``"rl-tv"`` (default): Richardson-Lucy with total-variation regularisation,
  suited to Poisson (photon) noise;
* ``"fista"``: least squares with a TV prior and positivity, for Gaussian noise;
* ``"wiener"``: the linear Wiener-Tikhonov filter (gradient penalty);
* ``"unrolled"``: a learned network that unrolls a deconvolution algorithm.

This example runs them on one simulated acquisition, next to
:func:`skimage.restoration.richardson_lucy` as an external reference, and
reports the PSNR against the true specimen and the run time.
"""

# %%
# A simulated acquisition
# -----------------------
# Cells from :mod:`psfkit.data`, a slightly defocused and astigmatic PSF and
# moderate Poisson-Gaussian noise (300 photons per unit intensity, read noise
# 0.01).

import time

import matplotlib.pyplot as plt
import numpy as np
from skimage.restoration import richardson_lucy

import psfkit
from psfkit.metrics import psnr

specimen = psfkit.data.cells((256, 256), rng=0)
psf = psfkit.zernike_psf({4: 0.1, 6: 0.05}, cutoff=0.15, size=33)
image = psfkit.simulate_acquisition(specimen, psf, gain=300, read_noise=0.01, rng=0)
print(f"acquired image: PSNR {psnr(image, specimen, data_range=1):.2f} dB")

# %%
# Running the methods
# -------------------
# All psfkit methods use their defaults: ``regularization="auto"`` sets the
# weight of the prior from the noise level that :func:`psfkit.estimate_noise`
# measures on the image, ``"rl"`` and ``"rl-tv"`` stop once the residual has
# the variance of that noise (the discrepancy principle), and
# ``boundary="extend"`` estimates the object on a field extended by the PSF
# size, so that the image borders neither wrap around nor ring. A ``callback``
# counts the iterations. Each method is run once before it is timed, so that
# the timings exclude one-time costs (imports, FFT planning for this image
# size, loading the network).
#
# The unrolled network's weights may still be a placeholder (see its model
# card in ``psfkit/learned/weights/unrolled.json``); its result is shown as it
# is.

METHODS = ["rl", "rl-tv", "fista", "wiener", "unrolled"]
for method in METHODS:  # warm-up
    psfkit.deconvolve(image, psf, method=method)

results, seconds, iterations = {}, {}, {}
for method in METHODS:
    count = []
    callback = None if method == "unrolled" else (lambda i, estimate: count.append(i))
    start = time.perf_counter()
    results[method] = psfkit.deconvolve(image, psf, method=method, callback=callback)
    seconds[method] = time.perf_counter() - start
    iterations[method] = count[-1] if count else None

# scikit-image's reference: plain RL with a zero boundary, 50 iterations (its default)
name = "skimage RL (50 it.)"
richardson_lucy(np.clip(image, 0, None), psf, num_iter=50, clip=False)  # warm-up
start = time.perf_counter()
results[name] = richardson_lucy(np.clip(image, 0, None), psf, num_iter=50, clip=False)
seconds[name] = time.perf_counter() - start
iterations[name] = 50

scores = {name: psnr(restored, specimen, data_range=1) for name, restored in results.items()}
print(f"{'method':22s} {'PSNR (dB)':>9s} {'time (s)':>9s} {'iterations':>10s}")
for name in results:
    its = "-" if iterations[name] is None else str(iterations[name])
    print(f"{name:22s} {scores[name]:9.2f} {seconds[name]:9.2f} {its:>10s}")

# %%
# The restored images, full field and zoomed on the yellow square (one
# intensity scale for all panels):

panels = {"specimen (truth)": specimen, "acquired": image, **results}
crop = (slice(160, 250), slice(40, 130))
vmax = np.percentile(specimen, 99.9)
fig, axes = plt.subplots(4, 4, figsize=(13, 14), layout="constrained")
for k, (name, shown) in enumerate(panels.items()):
    row, col = 2 * (k // 4), k % 4
    im = axes[row, col].imshow(shown, cmap="gray", vmin=0, vmax=vmax)
    axes[row, col].add_patch(plt.Rectangle((39.5, 159.5), 90, 90, fill=False, color="y", lw=1))
    label = name if name == "specimen (truth)" else f"{name}\nPSNR {psnr(shown, specimen, data_range=1):.2f} dB"
    axes[row, col].set_title(label, fontsize=10)
    axes[row + 1, col].imshow(shown[crop], cmap="gray", vmin=0, vmax=vmax)
    axes[row + 1, col].set_title("zoom", fontsize=9)
for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
fig.colorbar(im, ax=axes, shrink=0.4, label="intensity")

# %%
# PSNR and run time
# -----------------
# Timings are single runs on the machine that built this page, so they are
# only indicative.

names = list(results)
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
y = np.arange(len(names))
axes[0].barh(y, [scores[n] for n in names], color="C0")
axes[0].axvline(psnr(image, specimen, data_range=1), color="k", ls="--", label="acquired image")
axes[0].set_xlim(min(scores.values()) - 2, max(scores.values()) + 1)
axes[0].set_xlabel("PSNR against the specimen (dB)")
axes[0].legend(loc="lower right", fontsize=8)
axes[1].barh(y, [seconds[n] for n in names], color="C1")
axes[1].set_xlabel("run time (s)")
for ax in axes:
    ax.set_yticks(y, names)
    ax.invert_yaxis()
fig.suptitle("Deconvolution of a 256 x 256 image with a 33 x 33 PSF")

# %%
# The automatic regularisation
# ----------------------------
# ``regularization`` also accepts a number: for ``"rl-tv"`` it is scale-free
# and bounded above (beyond the bound the TV factor could change sign):

try:
    psfkit.deconvolve(image, psf, regularization=0.3)
except ValueError as error:
    print(error)

# %%
# A sweep shows where the automatic choice falls on this image (RL-TV's
# automatic weight is not returned, so its PSNR is drawn as a horizontal
# line).

weights = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05]
sweep = [psnr(psfkit.deconvolve(image, psf, regularization=w), specimen, data_range=1) for w in weights]
fig, ax = plt.subplots(figsize=(6, 3.6), layout="constrained")
ax.semilogx(weights, sweep, "o-", label="rl-tv, fixed weight")
ax.axhline(scores["rl-tv"], color="C3", ls="--", label='rl-tv, regularization="auto"')
ax.set_xlabel("regularization weight")
ax.set_ylabel("PSNR (dB)")
ax.set_title("RL-TV: PSNR against the regularisation weight")
ax.legend(fontsize=8)
for w, s in zip(weights, sweep):
    print(f"rl-tv, regularization={w}: PSNR {s:.2f} dB")

# %%
# Boundaries
# ----------
# The boundary model matters near the image borders. ``"extend"`` (default)
# leaves the object free outside the field of view, ``"reflect"`` mirrors the
# image, ``"periodic"`` wraps it around and ``"zero"`` assumes a dark outside
# (the model of scikit-image's ``richardson_lucy``). The PSNR is measured on
# the whole image, borders included.

for boundary in ["extend", "reflect", "periodic", "zero"]:
    restored = psfkit.deconvolve(image, psf, boundary=boundary)
    print(f"rl-tv, boundary={boundary!r:11s}: PSNR {psnr(restored, specimen, data_range=1):.2f} dB")

plt.show()
