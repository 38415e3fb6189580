"""Blind PSF identification of over-sampled images (known fc below the network's training range).

Run from the repository root::

    python benchmarks/bench_oversampled.py [--quick] [--per-kind N]

Confocal and high-magnification set-ups sample the PSF finely: fc = NA / wavelength
x pixel size below the 0.125-0.25 cycles/pixel the identifier was trained on.
``estimate_psf(image, cutoff=fc)`` then identifies the PSF on the image
downsampled by an integer factor (``psfkit.identification.resampling``) and renders
it back at fc. Protocol (seeds fixed, distinct from the other benchmarks):

- specimens: ``psfkit.data`` filaments / points / cells / dead-leaves,
  512 x 512 (seeds >= 2 * 10**6);
- PSFs: Noll 4-11 coefficients U[-0.15, 0.15] waves, fc U[0.05, 0.12],
  rendered and scored on a 65 x 65 window (a 33 x 33 one would truncate the
  wider PSFs);
- noise as in ``bench_identification.py``: none / moderate / strong;
- metric: PSF SNR (raw, no alignment) of ``estimate_psf`` with and without
  ``refine``, beside the floors "image-blind mean PSF at the true fc" and
  "Airy at the true fc".

Prints a Markdown table, writes benchmarks/results/oversampled.json.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psfkit  # noqa: E402
from psfkit import data  # noqa: E402
from psfkit.identification.resampling import oversampling_factor  # noqa: E402
from _common import machine_info  # noqa: E402
from bench_identification import NOISE, RESULTS, mean_psf  # noqa: E402  (the same noise levels and floor)

KINDS = ("filaments", "points", "cells", "dead_leaves")
SIZE = 65
SHAPE = (512, 512)


def cases(n_per_kind, seed=2_000_003):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_per_kind):
        for kind in KINDS:
            theta = rng.uniform(-0.15, 0.15, 8)
            fc = rng.uniform(0.05, 0.12)
            out.append((kind, theta, fc, getattr(data, kind)(SHAPE, rng=rng)))
    return out


def run(n_per_kind):
    methods = {
        "network, fc known": lambda y, fc: psfkit.estimate_psf(y, cutoff=fc, size=SIZE, refine=False),
        "network + refinement (refine=True), fc known": lambda y, fc: psfkit.estimate_psf(y, cutoff=fc, size=SIZE, refine=True),
        "Airy at true fc (floor)": lambda y, fc: psfkit.airy_psf(cutoff=fc, size=SIZE),
    }
    mean_rng = np.random.default_rng(7)
    rows = []
    for noise, kwargs in NOISE.items():
        rng = np.random.default_rng({"none": 1, "moderate": 2, "strong": 3}[noise])
        scores = {name: [] for name in [*methods, "image-blind mean PSF at true fc (floor)"]}
        seconds = {name: [] for name in scores}
        factors = []
        for kind, theta, fc, x in cases(n_per_kind):
            h = psfkit.zernike_psf(theta, cutoff=fc, size=SIZE)
            y = psfkit.simulate_acquisition(x, h, bits=16, salt_pepper=1e-5, rng=rng, **kwargs)
            factors.append(oversampling_factor(fc))
            for name, method in methods.items():
                start = time.perf_counter()
                estimate = method(y, fc)
                seconds[name].append(time.perf_counter() - start)
                scores[name].append(psfkit.psf_snr(estimate, h))
            blind = mean_psf(fc, mean_rng, size=SIZE)
            scores["image-blind mean PSF at true fc (floor)"].append(psfkit.psf_snr(blind, h))
            seconds["image-blind mean PSF at true fc (floor)"].append(0.0)
        for name, values in scores.items():
            rows.append({
                "noise": noise, "method": name, "psf_snr_raw_mean": float(np.mean(values)),
                "psf_snr_raw_median": float(np.median(values)), "psf_snr_raw_min": float(np.min(values)),
                "seconds_mean": float(np.mean(seconds[name])), "n": len(values),
                "downsampling_factors": sorted(set(factors)),
            })
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="one image per kind (CI-sized)")
    p.add_argument("--per-kind", type=int, default=None, help="images per specimen kind and noise level")
    args = p.parse_args(argv)
    n = args.per_kind or (1 if args.quick else 4)
    rows = run(n)
    print("| noise | method | PSF SNR mean / median / min (dB) | s / image |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['noise']} | {r['method']} | {r['psf_snr_raw_mean']:.2f} / {r['psf_snr_raw_median']:.2f} / "
              f"{r['psf_snr_raw_min']:.2f} | {r['seconds_mean']:.2f} |")
    RESULTS.mkdir(exist_ok=True)
    name = "oversampled_quick.json" if args.quick else "oversampled.json"
    out = {"machine": machine_info(), "images_per_kind_and_noise": n, "psf_size": SIZE, "image_shape": SHAPE, "rows": rows}
    (RESULTS / name).write_text(json.dumps(out, indent=1))
    print(f"\nwrote {RESULTS / name}")


if __name__ == "__main__":
    main()
