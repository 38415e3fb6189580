"""Figures of the committed benchmark results (``benchmarks/results/*.json`` -> ``*.png``).

Run from the repository root (``benchmarks/run.py`` calls it after the suites)::

    python benchmarks/plots.py

Each function takes the parsed JSON of one suite and returns a matplotlib
figure; the documentation gallery (``examples/plot_benchmarks.py``) draws the
same figures. Missing result files are skipped.
"""

import json
import sys
import textwrap
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
NOISES = ("none", "moderate", "strong")


def _grouped_bars(ax, rows, value, methods, ylabel):
    width = 0.8 / len(methods)
    import matplotlib.pyplot as plt

    colors = plt.get_cmap("tab20").colors  # distinct colours for up to 20 methods (tab10 repeats after 10)
    for i, method in enumerate(methods):
        values = []
        for noise in NOISES:
            match = [r[value] for r in rows if r["method"] == method and r["noise"] == noise]
            values.append(match[0] if match else np.nan)
        ax.bar(np.arange(len(NOISES)) + (i - (len(methods) - 1) / 2) * width, values, width, label=method,
               color=colors[i % len(colors)])
    ax.set_xticks(np.arange(len(NOISES)), [f"noise: {n}" for n in NOISES])
    ax.set_ylabel(ylabel)
    ax.axhline(0, color="k", lw=0.5)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))


def identification_figure(result):
    """PSF SNR (raw mean, dB) by method and noise level."""
    import matplotlib.pyplot as plt

    rows = result["global"]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    fig, ax = plt.subplots(figsize=(9, 3.6), layout="constrained")
    _grouped_bars(ax, rows, "psf_snr_raw_mean", methods, "PSF SNR (dB, raw)")
    ax.set_title(f"Blind PSF identification, held-out set ({result['images_per_kind_and_noise'] * 5} images per noise level)")
    return fig


def deblurring_figure(result):
    """PSNR of restored images by method and noise level."""
    import matplotlib.pyplot as plt

    rows = result["rows"]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    fig, ax = plt.subplots(figsize=(9, 3.6), layout="constrained")
    _grouped_bars(ax, rows, "psnr", methods, "PSNR (dB)")
    low = min(r["psnr"] for r in rows)
    ax.set_ylim(max(low - 3, 0), max(r["psnr"] for r in rows) + 1)
    ax.set_title(f"Blind deblurring, held-out set ({result['images_per_kind_and_noise'] * 5} images per noise level)")
    return fig


def deconvolution_figure(result):
    """Non-blind quality: PSNR by method at each noise level."""
    import matplotlib.pyplot as plt

    means = result["space_invariant"]["mean"]
    levels = list(means)
    methods = list(means[levels[0]])
    fig, ax = plt.subplots(figsize=(9, 3.4), layout="constrained")
    width = 0.8 / len(methods)
    colors = plt.get_cmap("tab20").colors  # distinct colours for up to 20 methods (tab10 repeats after 10)
    for i, method in enumerate(methods):
        ax.bar(np.arange(len(levels)) + (i - (len(methods) - 1) / 2) * width, [means[l][method][0] for l in levels], width, label=method)
    ax.set_xticks(np.arange(len(levels)), [f"noise: {l}" for l in levels])
    ax.set_ylabel("PSNR (dB)")
    ax.set_ylim(min(means[l][m][0] for l in levels for m in methods) - 2, None)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.set_title("Non-blind deconvolution with the true PSF (mean over specimens)")
    return fig


def speed_figure(result):
    """Seconds per Richardson-Lucy iteration, psfkit vs scikit-image, per setting."""
    import matplotlib.pyplot as plt

    rows = result["richardson_lucy_vs_skimage"]
    labels = ["\n".join(textwrap.wrap(r["setting"], 14)) + f"\n{r['workers']} worker(s)" for r in rows]
    fig, ax = plt.subplots(figsize=(8, 3.6), layout="constrained")
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [1e3 * r["skimage_s_per_iteration"] for r in rows], 0.4, label="skimage.restoration.richardson_lucy")
    ax.bar(x + 0.2, [1e3 * r["psfkit_s_per_iteration"] for r in rows], 0.4, label="psfkit (rl)")
    for xi, r in zip(x, rows):
        ax.annotate(f"{r['speedup']:.1f}x", (xi + 0.2, 1e3 * r["psfkit_s_per_iteration"]), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("ms per iteration")
    ax.set_title(f"Richardson-Lucy iteration, {result['size']}x{result['size']} image, {result['psf_size']}x{result['psf_size']} PSF")
    ax.legend(fontsize=8)
    return fig


FIGURES = {
    "identification": identification_figure,
    "deblurring": deblurring_figure,
    "deconvolution_quality": deconvolution_figure,
    "deconvolution_speed": speed_figure,
}


def load(name):
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def write_all(names=None):
    """Write ``results/<name>.png`` for every result file present; returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for name in names or FIGURES:
        result = load(name)
        if result is None:
            continue
        fig = FIGURES[name](result)
        path = RESULTS / f"{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_all(sys.argv[1:] or None):
        print(f"wrote {path}")
