"""
A Zernike PSF zoo
=================

:func:`psfkit.zernike_psf` computes the point-spread function (PSF) of a
microscope from the phase aberration of its pupil, written as a sum of Zernike
polynomials. This example shows the PSF of each low-order aberration on its
own, next to the aberration-free Airy pattern, and the effect of the cut-off
frequency ``fc``, which sets the size of the PSF in pixels.

Conventions used throughout psfkit:

* a PSF is a non-negative array that **sums to 1**, with its centre at index
  ``(size // 2, size // 2)``; arrays are ``(row, column)``;
* aberrations are given as Zernike coefficients in **waves** (RMS wavefront
  error of each term), in **Noll order**: 4 defocus, 5-6 astigmatisms, 7-8
  comas, 9-10 trefoils, 11 spherical (1-3, piston and tip/tilt, only shift the
  PSF and are left out by default);
* ``fc`` is the radius of the pupil in the Fourier domain, in **cycles per
  pixel** (``NA * pixel_size / wavelength``).
"""

# %%
# The Zernike polynomials
# -----------------------
# :func:`psfkit.zernike_basis` samples the polynomials on the unit disk, and
# :func:`psfkit.noll_to_nm` gives the radial order ``n`` and azimuthal
# frequency ``m`` of a Noll index. Each polynomial is normalised to unit RMS
# over the disk, so a coefficient of 0.15 means 0.15 waves RMS of that shape.

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm

import psfkit

NAMES = {
    4: "defocus",
    5: "oblique astigmatism",
    6: "vertical astigmatism",
    7: "vertical coma",
    8: "horizontal coma",
    9: "vertical trefoil",
    10: "oblique trefoil",
    11: "spherical",
}

basis = psfkit.zernike_basis(range(4, 12), 128)
disk = basis[0] != 0
fig, axes = plt.subplots(2, 4, figsize=(10, 5.4), layout="constrained")
for ax, j, z in zip(axes.flat, NAMES, basis):
    n, m = psfkit.noll_to_nm(j)
    shown = np.where(disk, z, np.nan)
    im = ax.imshow(shown, cmap="RdBu_r", vmin=-3.5, vmax=3.5)
    ax.set_title(f"Z{j}: {NAMES[j]}\n(n={n}, m={m})", fontsize=9)
    ax.axis("off")
fig.colorbar(im, ax=axes, shrink=0.8, label="phase per unit coefficient")
fig.suptitle("Noll Zernike polynomials 4 to 11 on the pupil (RMS-normalised)")

# %%
# One aberration at a time
# ------------------------
# ``zernike_psf`` takes either a mapping ``{noll_index: waves}`` or an array
# whose columns are Noll 4, 5, 6, ... A 2-D array returns one PSF per row in a
# single vectorised call; here the eight rows of ``0.15 * identity`` give the
# eight single-term PSFs. Without coefficients the result is the Airy pattern.
#
# The PSFs are shown with a gamma of 0.4 (``(psf / psf.max()) ** 0.4``) so
# that the faint rings and side lobes are visible next to the bright core.

amplitude = 0.15  # waves RMS
fc = 0.2  # cycles/pixel
size = 33

single_terms = psfkit.zernike_psf(amplitude * np.eye(8), cutoff=fc, size=size)  # (8, 33, 33)
airy = psfkit.zernike_psf(cutoff=fc, size=size)
print("batch shape:", single_terms.shape, "| sums:", np.round(single_terms.sum(axis=(1, 2)), 6))
print("Airy peak at", np.unravel_index(airy.argmax(), airy.shape), "for size", size)


def gamma(psf, g=0.4):
    return (psf / psf.max()) ** g


fig, axes = plt.subplots(3, 3, figsize=(8, 8.6), layout="constrained")
panels = [("aberration-free (Airy)", airy)] + [
    (f"Z{j} {NAMES[j]}, {amplitude} waves", psf) for j, psf in zip(NAMES, single_terms)
]
for ax, (title, psf) in zip(axes.flat, panels):
    im = ax.imshow(gamma(psf), cmap="magma", vmin=0, vmax=1)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([0, size // 2, size - 1])
    ax.set_yticks([0, size // 2, size - 1])
    ax.text(1, size - 2, f"peak {psf.max():.3f}", color="w", fontsize=8)
fig.colorbar(im, ax=axes, shrink=0.6, label="(PSF / max) ** 0.4")
fig.suptitle(f"Single-term PSFs, fc = {fc} cycles/pixel, {size} x {size} pixels")

# %%
# Every aberration lowers the peak of the PSF (the Strehl ratio): the energy
# that leaves the core goes to the rings and lobes. Coma and trefoil (odd
# ``m``) are not point-symmetric: changing the sign of their coefficient
# point-reflects the PSF, while changing the sign of an even term (defocus,
# astigmatism, spherical) leaves an in-focus PSF unchanged.

coma_plus = psfkit.zernike_psf({7: 0.15}, cutoff=fc, size=size)
coma_minus = psfkit.zernike_psf({7: -0.15}, cutoff=fc, size=size)
defocus_minus = psfkit.zernike_psf({4: -0.15}, cutoff=fc, size=size)
print("coma(-0.15) == point reflection of coma(+0.15):", np.allclose(coma_minus, coma_plus[::-1, ::-1]))
print("defocus(-0.15) == defocus(+0.15):", np.allclose(defocus_minus, single_terms[0]))
print("peak / Airy peak (about the Strehl ratio):")
for j, psf in zip(NAMES, single_terms):
    print(f"  Z{j:<2d} {NAMES[j]:<21s} {psf.max() / airy.max():.3f}")

# %%
# From microscope parameters to ``fc``
# ------------------------------------
# The pupil radius in cycles/pixel is ``fc = NA * pixel_size / wavelength``,
# with the pixel size measured in the object plane (camera pixel divided by
# the magnification). :func:`psfkit.cutoff_frequency` computes it and refuses
# under-sampled settings: the incoherent transfer function extends to
# ``2 fc``, which must stay below the Nyquist frequency 0.5, i.e. ``fc <= 0.25``.

fc_oil = psfkit.cutoff_frequency(1.4, 0.52, 0.065)  # NA, wavelength, pixel size (same length unit)
print(f"NA 1.4, 520 nm, 65 nm pixels: fc = {fc_oil:.4f} cycles/pixel")
fc_air = psfkit.cutoff_frequency(0.75, 0.52, 0.1)
print(f"NA 0.75, 520 nm, 100 nm pixels: fc = {fc_air:.4f} cycles/pixel")
try:
    psfkit.cutoff_frequency(1.4, 0.52, 0.1)
except ValueError as error:
    print("NA 1.4, 520 nm, 100 nm pixels ->", error)

# %%
# The effect of ``fc``
# --------------------
# A smaller ``fc`` (lower NA or smaller pixels) gives a wider PSF in pixels:
# the first dark ring of the Airy pattern is at ``0.61 / fc`` pixels. Its
# modulation transfer function (MTF, the modulus of the Fourier transform of
# the PSF, shown on a log scale) is supported on a disk of radius ``2 fc``:
# finer details are not transmitted at all. With the same aberration in waves,
# the PSF keeps its shape and scales with ``1 / fc`` (middle row: defocus plus
# vertical astigmatism, 0.1 waves each). The PSFs are computed on
# 65 x 65 windows (for the MTF) and shown on their central 41 x 41 pixels.

cutoffs = [0.1, fc_oil, 0.25]
size_big = 65
fig, axes = plt.subplots(3, 3, figsize=(9.5, 9.5), layout="constrained")
radius = np.arange(size_big // 2 + 1)
centre = size_big // 2
view = slice(centre - 20, centre + 21)
pixels = [-20.5, 20.5, 20.5, -20.5]  # axes in pixels from the PSF centre
for col, c in enumerate(cutoffs):
    airy_c = psfkit.zernike_psf(cutoff=c, size=size_big)
    aberrated = psfkit.zernike_psf({4: 0.1, 6: 0.1}, cutoff=c, size=size_big)
    mtf = np.abs(np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(airy_c))))
    freq = np.fft.fftshift(np.fft.fftfreq(size_big))

    ax = axes[0, col]
    im0 = ax.imshow(gamma(airy_c[view, view]), cmap="magma", vmin=0, vmax=1, extent=pixels)
    ax.add_patch(plt.Circle((0, 0), 0.61 / c, fill=False, color="c", ls="--", lw=1))
    ax.set_title(f"Airy, fc = {c:.3f}\nfirst zero at {0.61 / c:.1f} px (dashed)", fontsize=9)

    ax = axes[1, col]
    ax.imshow(gamma(aberrated[view, view]), cmap="magma", vmin=0, vmax=1, extent=pixels)
    ax.set_title(f"Z4 = Z6 = 0.1 waves, fc = {c:.3f}", fontsize=9)
    ax.set_xlabel("pixels from the centre")

    ax = axes[2, col]
    im2 = ax.imshow(
        np.maximum(mtf, 1e-4), cmap="viridis", norm=LogNorm(1e-4, 1), extent=[freq[0], freq[-1], freq[-1], freq[0]]
    )
    ax.add_patch(plt.Circle((0, 0), 2 * c, fill=False, color="w", ls="--", lw=1))
    ax.set_title(f"MTF of the Airy PSF\nsupport radius 2 fc = {2 * c:.3f} (dashed)", fontsize=9)
    ax.set_xlabel("cycles/pixel")
    print(f"fc = {c:.3f}: Airy first zero at {0.61 / c:.2f} px, peak value {airy_c.max():.4f}")
fig.colorbar(im0, ax=axes[:2], shrink=0.6, label="(PSF / max) ** 0.4")
fig.colorbar(im2, ax=axes[2], shrink=0.8, label="MTF (log scale)")
fig.suptitle("Effect of the cut-off frequency: Airy PSF, defocus + astigmatism, MTF")

# %%
# A radial profile on a log scale shows the rings and their positions. The
# closed-form :func:`psfkit.airy_psf` gives the same pattern as the pupil model
# without aberration.

fig, ax = plt.subplots(figsize=(6.5, 4), layout="constrained")
for c in cutoffs:
    airy_c = psfkit.zernike_psf(cutoff=c, size=size_big)
    closed = psfkit.airy_psf(cutoff=c, size=size_big)
    profile = airy_c[size_big // 2, size_big // 2 :]
    (line,) = ax.semilogy(radius, profile, label=f"zernike_psf, fc = {c:.3f}")
    ax.semilogy(radius, closed[size_big // 2, size_big // 2 :], "o", ms=3, color=line.get_color(), mfc="none")
    ax.axvline(0.61 / c, color=line.get_color(), ls=":", lw=1)
    print(f"fc = {c:.3f}: max |zernike_psf - airy_psf| = {np.abs(airy_c - closed).max():.2e}")
ax.plot([], [], "ko", ms=3, mfc="none", label="airy_psf (closed form)")
ax.set_xlabel("distance from the centre (pixels)")
ax.set_ylabel("PSF value (sum 1)")
ax.set_ylim(1e-7, 1)
ax.set_title("Airy profiles; dotted lines at 0.61 / fc")
ax.legend(fontsize=8)

plt.show()
