"""Speed of psfkit.deconvolve, measured side by side with scikit-image in one run.

Run from the repository root::

    python benchmarks/bench_deconvolution.py [--size 1024] [--repeat 3]

Prints Markdown tables and writes ``benchmarks/results/deconvolution_speed.json``.

1. Per-iteration time of plain Richardson-Lucy on a ``size x size`` image with a
   33 x 33 PSF: :func:`skimage.restoration.richardson_lucy` (``clip=False``)
   against ``deconvolve(method="rl", boundary="zero", acceleration=False)``,
   which is the same model and update, so both outputs after 10 iterations
   are compared (relative L2 difference). The per-iteration time is
   ``(T(12) - T(2)) / 10`` from the minimum over ``--repeat`` interleaved runs
   of each total time ``T(n)``, which removes the set-up (planning, transfer
   functions) from both. Rows: same dtype (float32, float64), psfkit's
   float32 path against scikit-image's float64 default (``img_as_float``),
   psfkit with one FFT thread (its default, like scikit-image's FFTs) and with
   all CPUs (``workers=-1``).
2. Acceleration: the iteration at which accelerated RL (scaled heavy ball,
   Biggs-Andrews) first reaches the relative error to the ground truth that
   100 plain RL iterations reach, on a 512 x 512 simulated acquisition.
3. Space-varying: per-iteration time of RL with a 4 x 4 PSF grid against a
   single PSF (``boundary="extend"``, float32), and of RL-TV.
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import scipy
import skimage
from skimage.restoration import richardson_lucy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from psfkit import data, deconvolve, simulate_acquisition, zernike_psf  # noqa: E402
from _common import machine_info  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "deconvolution_speed.json"
PSF_SIZE = 33
N_LOW, N_HIGH = 2, 12


def per_iteration(runs, repeat):
    """``runs``: name -> callable(n_iterations). Interleaved; returns name -> seconds per iteration."""
    totals = {name: {N_LOW: [], N_HIGH: []} for name in runs}
    for name, run in runs.items():  # warm-up: plans, JIT, caches
        run(N_LOW)
    for _ in range(repeat):
        for n in (N_LOW, N_HIGH):
            for name, run in runs.items():
                start = time.perf_counter()
                run(n)
                totals[name][n].append(time.perf_counter() - start)
    return {name: (min(t[N_HIGH]) - min(t[N_LOW])) / (N_HIGH - N_LOW) for name, t in totals.items()}


def relative(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def skimage_comparison(size, repeat):
    rng = np.random.default_rng(0)
    specimen = data.cells((size, size), rng=rng) + 0.05
    psf = zernike_psf({4: 0.2}, cutoff=0.15, size=PSF_SIZE)
    image = simulate_acquisition(specimen * 1000, psf, gain=1.0, boundary="constant", rng=rng)
    image = np.maximum(image, 0) + 1.0  # strictly positive data: no division guard involved

    def sk(dtype):
        y, h = image.astype(dtype), psf.astype(dtype)
        return lambda n: richardson_lucy(y, h, num_iter=n, clip=False)

    def ps(dtype, workers):
        y, h = image.astype(dtype), psf.astype(dtype)
        return lambda n: deconvolve(y, h, method="rl", boundary="zero", acceleration=False, iterations=n,
                                    workers=workers)

    rows = []
    configs = [
        ("float32", np.float32, np.float32, 1),
        ("float32", np.float32, np.float32, -1),
        ("float64", np.float64, np.float64, 1),
        ("float64", np.float64, np.float64, -1),
        ("skimage float64 vs psfkit float32", np.float64, np.float32, 1),
        ("skimage float64 vs psfkit float32", np.float64, np.float32, -1),
    ]
    for label, sk_dtype, ps_dtype, workers in configs:
        times = per_iteration({"skimage": sk(sk_dtype), "psfkit": ps(ps_dtype, workers)}, repeat)
        reference = sk(sk_dtype)(10)
        ours = ps(ps_dtype, workers)(10)
        row = {
            "setting": label,
            "workers": workers if workers > 0 else os.cpu_count(),
            "skimage_s_per_iteration": times["skimage"],
            "psfkit_s_per_iteration": times["psfkit"],
            "speedup": times["skimage"] / times["psfkit"],
            "relative_difference_after_10": relative(ours, reference),
        }
        rows.append(row)
        print(
            f"  {label:34s} workers {row['workers']}: skimage {1e3 * row['skimage_s_per_iteration']:6.1f} ms  "
            f"psfkit {1e3 * row['psfkit_s_per_iteration']:6.1f} ms  x{row['speedup']:.2f}  "
            f"diff {row['relative_difference_after_10']:.1e}",
            flush=True,
        )
    return rows


def acceleration(size=512):
    rng = np.random.default_rng(1)
    c = PSF_SIZE // 2
    specimen = data.random_specimen((size + PSF_SIZE - 1,) * 2, rng=rng) * 3000
    psf = zernike_psf({4: 0.3, 5: 0.1}, cutoff=0.15, size=PSF_SIZE)
    y = simulate_acquisition(specimen, psf, gain=1.0, read_noise=2.0, boundary="valid", rng=rng).astype(np.float32)
    truth = specimen[c : c + size, c : c + size]

    def errors(acc, n):
        out = []
        deconvolve(y, psf, method="rl", acceleration=acc, iterations=n,
                   callback=lambda k, e: out.append(relative(e, truth)))
        return out

    plain = errors(False, 100)
    target = plain[-1]
    result = {"size": size, "plain_100_relative_error": target, "plain_best": min(plain)}
    for acc in ("shb", "biggs-andrews"):
        errs = errors(acc, 60)
        reach = next((k + 1 for k, e in enumerate(errs) if e <= target), None)
        result[acc] = {"iterations_to_reach_plain_100": reach, "error_at_30": errs[29], "best": min(errs)}
        print(f"  {acc:14s} reaches the error of 100 plain RL iterations ({target:.4f}) at iteration {reach}; "
              f"error at 30: {errs[29]:.4f}", flush=True)
    return result


def space_varying(size, repeat):
    rng = np.random.default_rng(2)
    image = (data.cells((size, size), rng=rng) * 1000 + 10).astype(np.float32)
    psf = zernike_psf({4: 0.2}, cutoff=0.15, size=PSF_SIZE)
    grid = np.stack([np.stack([zernike_psf({4: 0.1 * (i + j)}, cutoff=0.15, size=PSF_SIZE) for j in range(4)])
                     for i in range(4)])
    rows = []
    for workers in (1, -1):
        runs = {
            "single": lambda n: deconvolve(image, psf, method="rl", iterations=n, workers=workers),
            "grid 4x4": lambda n: deconvolve(image, grid, method="rl", iterations=n, workers=workers),
            "single rl-tv": lambda n: deconvolve(image, psf, method="rl-tv", iterations=n, workers=workers),
        }
        times = per_iteration(runs, repeat)
        row = {"workers": workers if workers > 0 else os.cpu_count(), "size": size,
               "single_s_per_iteration": times["single"], "grid_s_per_iteration": times["grid 4x4"],
               "rl_tv_s_per_iteration": times["single rl-tv"], "ratio": times["grid 4x4"] / times["single"]}
        rows.append(row)
        print(f"  workers {row['workers']}: single PSF {1e3 * times['single']:.1f} ms/it "
              f"(rl-tv {1e3 * times['single rl-tv']:.1f}), 4x4 grid {1e3 * times['grid 4x4']:.1f} ms/it: "
              f"ratio {row['ratio']:.2f}", flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    info = machine_info()
    print("machine:", ", ".join(f"{k} {v}" for k, v in info.items()))

    print(f"\n1. Plain RL per iteration, {args.size}x{args.size}, PSF {PSF_SIZE}x{PSF_SIZE}, zero boundary:")
    rows = skimage_comparison(args.size, args.repeat)
    print("\n| dtypes | FFT threads | skimage ms/it | psfkit ms/it | speed-up | rel. difference (10 it) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['setting']} | {r['workers']} | {1e3 * r['skimage_s_per_iteration']:.1f} | "
              f"{1e3 * r['psfkit_s_per_iteration']:.1f} | {r['speedup']:.2f}x | "
              f"{r['relative_difference_after_10']:.1e} |")

    print("\n2. Acceleration (512x512, relative error to the ground truth):")
    acc = acceleration()
    print("\n3. Space-varying iteration cost:")
    sv = space_varying(args.size, args.repeat)

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"machine": info, "size": args.size, "psf_size": PSF_SIZE,
                                   "richardson_lucy_vs_skimage": rows, "acceleration": acc,
                                   "space_varying": sv}, indent=2))
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
