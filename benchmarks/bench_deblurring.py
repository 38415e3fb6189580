"""Blind deblurring quality: PSNR / SSIM of restored images on the held-out set.

Run from the repository root::

    python benchmarks/bench_deblurring.py [--quick] [--baselines]

Same held-out specimens, PSFs and noise levels as ``bench_identification.py``
(specimens in [0, 1], 256 x 256). Methods, all scored against the clean
specimen (data range 1): the blurry input; the blind pipeline
``estimate_psf`` -> ``deconvolve(method="rl-tv")`` with fc unknown and known;
the non-blind oracle (the same deconvolution with the true PSF: the ceiling
the blind pipeline should approach), each with ``rl-tv`` and with the
learned ``unrolled`` network (the PSF is estimated once per image and shared;
its time is counted in the first method that uses it); ``estimate_psf`` with
``refine=True`` followed by ``unrolled`` (what ``deblur`` does when the network
finds the PSF strongly aberrated, as on this set); with ``--baselines``
the l0-gradient and Goldstein-Fattal blind methods (their own final TV deconvolution, on the
[0, 1]-normalised input as they document; rescaled back). Prints a Markdown
table, writes benchmarks/results/deblurring.json.
"""

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
from skimage.metrics import structural_similarity

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import psfkit  # noqa: E402
from _common import reused_rows  # noqa: E402
from bench_identification import NOISE, SIZE, held_out_set  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def scores(estimate, clean):
    return psfkit.metrics.psnr(estimate, clean, data_range=1.0), float(structural_similarity(estimate, clean, data_range=1.0))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--baselines", action="store_true")
    p.add_argument("--reuse-baselines", action="store_true",
                   help="copy the (slow, deterministic) baseline rows of the committed results instead of recomputing them")
    p.add_argument("--per-kind", type=int, default=None)
    args = p.parse_args(argv)
    n = args.per_kind or (1 if args.quick else 4)
    cases = held_out_set(n)

    def rescaled(method):
        def run(y, fc, h):
            lo, hi = y.min(), y.max()
            _, restored = method((y - lo) / (hi - lo))
            return restored * (hi - lo) + lo

        return run

    # the PSFs are estimated once per image and shared by the deconvolutions that use them
    cache = {"image": None}

    def estimated(y, fc, known, refine=False):
        if cache["image"] is not y:
            cache.clear()
            cache["image"] = y
        if (known, refine) not in cache:
            cache[known, refine] = psfkit.estimate_psf(y, cutoff=fc if known else None, refine=refine)
        return cache[known, refine]

    methods = {"blurry input": lambda y, fc, h: y}
    for name in ("rl-tv", "unrolled"):
        methods[f"blind: estimate_psf (fc unknown) + {name}"] = lambda y, fc, h, m=name: psfkit.deconvolve(y, estimated(y, fc, False), method=m)
        methods[f"blind: estimate_psf (fc known) + {name}"] = lambda y, fc, h, m=name: psfkit.deconvolve(y, estimated(y, fc, True), method=m)
        methods[f"oracle: true PSF + {name}"] = lambda y, fc, h, m=name: psfkit.deconvolve(y, h, method=m)
    for known in (False, True):
        label = "known" if known else "unknown"
        methods[f"blind: estimate_psf(refine=True) (fc {label}) + unrolled"] = (
            lambda y, fc, h, k=known: psfkit.deconvolve(y, estimated(y, fc, k, refine=True), method="unrolled"))
    if args.baselines:
        from psfkit import baselines

        methods["l0-gradient (blind)"] = rescaled(lambda z: baselines.l0_gradient(z, SIZE))
        methods["Goldstein-Fattal (blind)"] = rescaled(lambda z: baselines.goldstein_fattal(z, SIZE, rng=0))
    rows = []
    for noise, kwargs in NOISE.items():
        rng = np.random.default_rng({"none": 1, "moderate": 2, "strong": 3}[noise])
        acc = {name: {"psnr": [], "ssim": [], "seconds": []} for name in methods}
        for kind, theta, fc, x in cases:
            h = psfkit.zernike_psf(theta, cutoff=fc, size=SIZE)
            y = psfkit.simulate_acquisition(x, h, bits=16, salt_pepper=1e-5, rng=rng, **kwargs)
            for name, method in methods.items():
                start = time.perf_counter()
                restored = method(y, fc, h)
                acc[name]["seconds"].append(time.perf_counter() - start)
                a, b = scores(restored, x)
                acc[name]["psnr"].append(a)
                acc[name]["ssim"].append(b)
        for name, v in acc.items():
            rows.append({"noise": noise, "method": name, "psnr": float(np.mean(v["psnr"])), "ssim": float(np.mean(v["ssim"])),
                         "seconds": float(np.mean(v["seconds"])), "n": len(v["psnr"])})
    print(f"machine: cpus={__import__('os').cpu_count()} python={platform.python_version()} numpy={np.__version__}")
    print("\n| noise | method | PSNR (dB) | SSIM | s / image |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['noise']} | {r['method']} | {r['psnr']:.2f} | {r['ssim']:.3f} | {r['seconds']:.2f} |")
    RESULTS.mkdir(exist_ok=True)
    if args.reuse_baselines:
        rows += reused_rows(RESULTS / "deblurring.json", n, ("l0-gradient", "Goldstein"))
    name = "deblurring_quick.json" if args.quick else "deblurring.json"
    (RESULTS / name).write_text(json.dumps({"images_per_kind_and_noise": n, "rows": rows}, indent=1))
    print(f"\nwrote {RESULTS / name}")


if __name__ == "__main__":
    main()
