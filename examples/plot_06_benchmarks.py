"""
Benchmark figures
=================

The figures and tables below are drawn from the result files committed in ``benchmarks/results/``, written by
``python benchmarks/run.py`` (see ``benchmarks/README.md`` for the protocol). Nothing is recomputed here: the
documentation shows exactly what the last full benchmark run measured, on the machine described in each
file.
"""

import sys
from pathlib import Path

import matplotlib.pyplot as plt

try:  # the benchmark scripts live next to the package, not inside it
    root = Path(__file__).resolve().parents[1]
except NameError:  # interactive session started from examples/
    root = Path.cwd().parent
sys.path.insert(0, str(root / "benchmarks"))

import plots  # noqa: E402


def table(rows, metrics):
    """Print rows of a result file as a Markdown table: noise, method, then ``(header, key, format)`` metrics."""
    print("| noise | method | " + " | ".join(header for header, _, _ in metrics) + " |")
    print("|" + "---|" * (2 + len(metrics)))
    for row in rows:
        values = [format(row[key], spec) for _, key, spec in metrics]
        print("| " + " | ".join([row["noise"], row["method"], *values]) + " |")


# %%
# Blind PSF identification
# ------------------------
# PSF SNR (dB, no alignment) of :func:`psfkit.estimate_psf` against the trivial floors -- the aberration-free
# Airy PSF and the image-blind mean PSF (what a network that ignores the image would return) -- and, when the
# run included them, the classical blind baselines.

result = plots.load("identification")
plots.identification_figure(result)
table(
    result["global"],
    [("PSF SNR raw (dB)", "psf_snr_raw_mean", ".2f"), ("aligned (dB)", "psf_snr_aligned_mean", ".2f"),
     ("s / image", "seconds_mean", ".3f")],
)

# %%
# The same on mildly aberrated PSFs (coefficients up to 0.05 waves, a well-corrected microscope): here the
# network alone does better than the refinement under noise, and the default (``refine=None``) keeps the
# network's estimate on most images (it refines when the network's largest coefficient exceeds 0.065 waves).

table(
    result.get("global_mild", []),
    [("PSF SNR raw (dB)", "psf_snr_raw_mean", ".2f"), ("aligned (dB)", "psf_snr_aligned_mean", ".2f"),
     ("s / image", "seconds_mean", ".3f")],
)

# %%
# Blind deblurring
# ----------------
# PSNR of the restored images against the clean specimens: the blurry input, the blind pipelines, the
# classical baselines and the non-blind oracle that knows the true PSF.

result = plots.load("deblurring")
plots.deblurring_figure(result)
table(
    result["rows"],
    [("PSNR (dB)", "psnr", ".2f"), ("SSIM", "ssim", ".3f"), ("s / image", "seconds", ".2f")],
)

# %%
# Non-blind deconvolution
# -----------------------
# With the true PSF, psfkit's methods against scikit-image's Richardson-Lucy at its best iteration count.

plots.deconvolution_figure(plots.load("deconvolution_quality"))

# %%
# Speed
# -----
# Time per Richardson-Lucy iteration on a 1024 x 1024 image, psfkit and scikit-image measured in the same run.

plots.speed_figure(plots.load("deconvolution_speed"))
plt.show()
