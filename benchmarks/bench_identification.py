"""Blind PSF identification on a fixed, seeded, held-out synthetic set.

Run from the repository root::

    python benchmarks/bench_identification.py [--quick] [--baselines]

Protocol (all seeds fixed; specimens and seeds never used in training):

- specimens: ``psfkit.data`` filaments / points / cells / dead-leaves drawn
  with seeds >= 10**6, and crops of the real bundled C. elegans image
  (a kind of image the network never saw; already blurred by the real
  microscope, whose blur is not part of the "true" PSF), 256 x 256;
- PSFs: ``zernike_psf`` with Noll 4-11 coefficients U[-0.15, 0.15] waves and
  fc U[0.125, 0.25], 33 x 33;
- noise (``simulate_acquisition``, 16-bit quantisation, salt-and-pepper 1e-5):
  "none"; "moderate" = gain 500 photons/unit + read noise 0.01;
  "strong" = gain 50 + read noise 0.05 (specimens in [0, 1]);
- metric: PSF SNR = 10 log10(||h||^2 / ||h - h_hat||^2), both sum-1 on the
  33 x 33 window, raw (no alignment) and aligned (best integer shift <= 3 px
  and point reflection).

Methods: ``estimate_psf`` with fc known / unknown: the network alone
(``refine=False``), with the test-time refinement (``refine=True``) and the
default (``refine=None``: refined when the network finds the PSF strongly
aberrated; derived from the two others, see ``_common.EstimateCache``); the
floors "Airy at true fc", "image-blind mean PSF at true fc" (average of 256
random PSFs: what a net that ignores the image converges to) and "delta";
with ``--baselines`` the l0-gradient (with the 33 x 33 box, and with a 17 x
17 box that fits the PSF cores) and Goldstein-Fattal blind methods (slow;
``--reuse-baselines`` runs l0 and copies the deterministic Goldstein-Fattal
rows of the committed results). Also: a space-varying "tilted sample"
(defocus varying linearly across the field) estimated as a 4 x 4 PSF map,
scored per local PSF; and latency (512^2 global, 8 x 8 map of 2048^2). A
second, mild set (coefficients U[-0.05, 0.05], a well-corrected microscope;
half as many images, seed 1_000_033) is scored with the same methods but no
baselines. Prints Markdown tables, writes
benchmarks/results/identification.json.
"""

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psfkit  # noqa: E402
from psfkit import data  # noqa: E402
from _common import EstimateCache, reused_rows  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
NOISE = {
    "none": {},
    "moderate": {"gain": 500.0, "read_noise": 0.01},
    "strong": {"gain": 50.0, "read_noise": 0.05},
}
KINDS = ("filaments", "points", "cells", "dead_leaves", "celegans")
NOLL = tuple(range(4, 12))
SIZE = 33
SMALL_BOX = 17  # holds the core of every PSF of the set (fc >= 0.125, <= 0.15 waves per term)


def specimen(kind, rng, shape=(256, 256)):
    if kind == "celegans":
        image = data.celegans().astype(np.float64)
        y = rng.integers(0, image.shape[0] - shape[0] + 1)
        x = rng.integers(0, image.shape[1] - shape[1] + 1)
        crop = image[y : y + shape[0], x : x + shape[1]]
        return (crop - crop.min()) / np.ptp(crop)
    return getattr(data, kind)(shape, rng=rng)


AMPLITUDE = 0.15  # waves: the held-out set's coefficients are U[-AMPLITUDE, AMPLITUDE]
MILD_AMPLITUDE = 0.05  # the mild set: a well-corrected microscope


def held_out_set(n_per_kind, seed=1_000_003, amplitude=AMPLITUDE):
    """Deterministic list of (kind, theta, fc, specimen)."""
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(n_per_kind):
        for kind in KINDS:
            theta = rng.uniform(-amplitude, amplitude, len(NOLL))
            fc = rng.uniform(0.125, 0.25)
            cases.append((kind, theta, fc, specimen(kind, rng)))
    return cases


def mean_psf(fc, rng, n=256, size=SIZE, amplitude=AMPLITUDE):
    thetas = rng.uniform(-amplitude, amplitude, (n, len(NOLL)))
    return psfkit.zernike_psf(thetas, cutoff=fc, size=size).mean(axis=0)


def _padded(psf):
    out = np.zeros((SIZE, SIZE))
    m = (SIZE - psf.shape[0]) // 2
    out[m : m + psf.shape[0], m : m + psf.shape[1]] = psf
    return out


def delta():
    h = np.zeros((SIZE, SIZE))
    h[SIZE // 2, SIZE // 2] = 1
    return h


_KEPT = []  # info["refined"] of the refinement calls since the last reset
_CACHE = EstimateCache()  # keyed by "fc unknown?"
_DEFAULT_SECONDS = [0.0]  # what the last default call would have taken


def _estimate(y, cutoff, refine):
    psf, info = _CACHE.estimate(y, cutoff is None, refine, cutoff=cutoff, size=SIZE)
    if refine:
        _KEPT.append(info["refined"])
    return psf


def _default(known):
    psf, _DEFAULT_SECONDS[0], _ = _CACHE.default(not known)
    return psf


def run_identification(cases, with_baselines, seed=7, amplitude=AMPLITUDE):
    methods = {
        "network, fc known": lambda y, fc: _estimate(y, fc, False),
        "network, fc unknown": lambda y, fc: _estimate(y, None, False),
        "network + refinement (refine=True), fc known": lambda y, fc: _estimate(y, fc, True),
        "network + refinement (refine=True), fc unknown": lambda y, fc: _estimate(y, None, True),
        "default (refine=None), fc known": lambda y, fc: _default(True),
        "default (refine=None), fc unknown": lambda y, fc: _default(False),
        "Airy at true fc (floor)": lambda y, fc: psfkit.airy_psf(cutoff=fc, size=SIZE),
        "image-blind mean PSF at true fc (floor)": None,  # filled per case below
        "delta (floor)": lambda y, fc: delta(),
    }
    if with_baselines:
        from psfkit import baselines

        methods["l0-gradient (Anger et al.)"] = lambda y, fc: baselines.l0_gradient(y / y.max(), SIZE)[0]
        # the same with a kernel box that fits the PSF's core (the IPOL set-up), zero-padded to 33 x 33
        methods[f"l0-gradient (Anger et al.), {SMALL_BOX}x{SMALL_BOX} box"] = lambda y, fc: _padded(
            baselines.l0_gradient(y / y.max(), SMALL_BOX)[0])
        if with_baselines != "fast":
            methods["Goldstein-Fattal"] = lambda y, fc: baselines.goldstein_fattal(y / y.max(), SIZE, rng=0)[0]
    rows = []
    mean_rng = np.random.default_rng(seed)
    for noise, kwargs in NOISE.items():
        rng = np.random.default_rng({"none": 1, "moderate": 2, "strong": 3}[noise])
        per_method = {name: {"raw": [], "aligned": [], "seconds": []} for name in methods}
        per_kind = {name: {kind: [] for kind in KINDS} for name in methods}
        kept = {name: [] for name in methods}
        for kind, theta, fc, x in cases:
            h = psfkit.zernike_psf(theta, cutoff=fc, size=SIZE)
            y = psfkit.simulate_acquisition(x, h, bits=16, salt_pepper=1e-5, rng=rng, **kwargs)
            for name, method in methods.items():
                start = time.perf_counter()
                _KEPT.clear()
                estimate = mean_psf(fc, mean_rng, amplitude=amplitude) if method is None else method(y, fc)
                kept[name] += _KEPT
                elapsed = _DEFAULT_SECONDS[0] if name.startswith("default") else time.perf_counter() - start
                per_method[name]["seconds"].append(elapsed)
                raw = psfkit.psf_snr(estimate, h)
                per_method[name]["raw"].append(raw)
                per_method[name]["aligned"].append(psfkit.psf_snr(estimate, h, align=True))
                per_kind[name][kind].append(raw)
        for name, values in per_method.items():
            print(f"  {noise} / {name}: {np.mean(values['raw']):.2f}", file=sys.stderr, flush=True)
            rows.append(
                {
                    "noise": noise,
                    "method": name,
                    "psf_snr_raw_mean": float(np.mean(values["raw"])),
                    "psf_snr_raw_median": float(np.median(values["raw"])),
                    "psf_snr_aligned_mean": float(np.mean(values["aligned"])),
                    "seconds_mean": float(np.mean(values["seconds"])),
                    "by_specimen_raw_mean": {k: float(np.mean(v)) for k, v in per_kind[name].items()},
                    **({"refinement_kept_fraction": float(np.mean(kept[name]))} if kept[name] else {}),
                    "n": len(values["raw"]),
                }
            )
    return rows


def tilted_sample(quick):
    """Defocus varying linearly across the field; 4 x 4 map scored per local PSF."""
    shape = (256, 256) if quick else (512, 512)
    grid = (4, 4)
    fine = 8
    rng = np.random.default_rng(11)
    fc = 0.2
    astig = 0.04

    def theta_at(u):  # u in [0, 1] along x
        t = np.zeros(len(NOLL))
        t[0] = -0.15 + 0.3 * u  # defocus from -0.15 to +0.15 waves
        t[1] = astig
        return t

    # ground-truth operator: a fine 8 x 8 grid of exact PSFs blended by product convolution
    psf_grid = np.stack(
        [[psfkit.zernike_psf(theta_at((j + 0.5) / fine), cutoff=fc, size=SIZE) for j in range(fine)] for _ in range(fine)]
    )
    operator = psfkit.ProductConvolution.from_grid(psf_grid, shape)
    x = data.random_specimen(shape, rng=rng)
    clean = operator.apply(x)
    y = psfkit.simulate_acquisition(clean, delta(), gain=500.0, read_noise=0.01, bits=16, rng=rng)
    results = {}
    for label, cutoff in (("fc known", fc), ("fc unknown", None)):
        estimate = psfkit.estimate_psf(y, grid=grid, cutoff=cutoff, size=SIZE)
        snrs = [
            psfkit.psf_snr(estimate[i, j], psfkit.zernike_psf(theta_at((j + 0.5) / grid[1]), cutoff=fc, size=SIZE))
            for i in range(grid[0])
            for j in range(grid[1])
        ]
        results[label] = {"mean": float(np.mean(snrs)), "min": float(np.min(snrs)), "per_psf": [round(s, 2) for s in snrs]}
    # what a single global PSF would score against the local truths
    single = psfkit.estimate_psf(y, cutoff=fc, size=SIZE, refine=False)
    snrs = [psfkit.psf_snr(single, psfkit.zernike_psf(theta_at((j + 0.5) / grid[1]), cutoff=fc, size=SIZE)) for j in range(grid[1])]
    results["single global PSF, fc known"] = {"mean": float(np.mean(snrs)), "min": float(np.min(snrs))}
    return {"shape": shape, "grid": grid, "noise": "moderate", **results}


def latency(quick):
    rng = np.random.default_rng(5)
    h = psfkit.zernike_psf(rng.uniform(-0.1, 0.1, 8), cutoff=0.2, size=SIZE)
    out = {}
    big = (1024, 1024) if quick else (2048, 2048)
    for label, shape, grid in (("global, 512x512", (512, 512), None), (f"8x8 map, {big[0]}x{big[1]}", big, (8, 8))):
        y = psfkit.simulate_acquisition(data.random_specimen(shape, rng=rng), h, gain=500.0, rng=rng)
        psfkit.estimate_psf(y[:256, :256], refine=False)  # warm-up: weights, plans, JIT
        times = []
        for _ in range(3):
            start = time.perf_counter()
            psfkit.estimate_psf(y, grid=grid, refine=False)  # the network (a map is never refined)
            times.append(time.perf_counter() - start)
        out[label] = float(min(times))
    return out


def table(rows):
    lines = ["| noise | method | PSF SNR raw (mean / median) | aligned (mean) | s / image |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['noise']} | {r['method']} | {r['psf_snr_raw_mean']:.2f} / {r['psf_snr_raw_median']:.2f} | "
            f"{r['psf_snr_aligned_mean']:.2f} | {r['seconds_mean']:.3f} |"
        )
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="few images (CI-sized)")
    p.add_argument("--baselines", action="store_true", help="also run l0-gradient and Goldstein-Fattal (slow)")
    p.add_argument("--reuse-baselines", action="store_true",
                   help="run the l0 baselines but copy the (slow) Goldstein-Fattal rows of the committed results "
                        "(same set and seeds: they are deterministic) instead of recomputing them")
    p.add_argument("--per-kind", type=int, default=None, help="images per specimen kind and noise level")
    p.add_argument("--mild-per-kind", type=int, default=None,
                   help="the same for the mild-aberration set (default: half of --per-kind, at least 1)")
    args = p.parse_args(argv)
    n = args.per_kind or (2 if args.quick else 12)
    n_mild = args.mild_per_kind or max(1, n // 2)
    import torch

    machine = {"cpus": __import__("os").cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
               "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "platform": platform.platform()}
    print(f"machine: {machine}")
    cases = held_out_set(n)
    rows = run_identification(cases, "fast" if args.reuse_baselines else args.baselines)
    if args.reuse_baselines:
        rows += reused_rows(RESULTS / "identification.json", n, ("Goldstein",), key="global")
    print("\n## Global PSF identification (held-out set)\n")
    print(table(rows))
    mild = run_identification(held_out_set(n_mild, seed=1_000_033, amplitude=MILD_AMPLITUDE), False, amplitude=MILD_AMPLITUDE)
    print(f"\n## Global PSF identification, mild aberrations (coefficients U[-{MILD_AMPLITUDE}, {MILD_AMPLITUDE}])\n")
    print(table(mild))
    tilted = tilted_sample(args.quick)
    print("\n## Space-varying map, tilted sample (defocus -0.15 -> +0.15 waves across x)\n")
    for k, v in tilted.items():
        print(f"- {k}: {v}")
    speed = latency(args.quick)
    print("\n## Latency (CPU)\n")
    for k, v in speed.items():
        print(f"- {k}: {v:.3f} s")
    RESULTS.mkdir(exist_ok=True)
    name = "identification_quick.json" if args.quick else "identification.json"
    out = {"machine": machine, "images_per_kind_and_noise": n, "global": rows,
           "mild_images_per_kind_and_noise": n_mild, "global_mild": mild, "tilted_sample": tilted, "latency_s": speed}
    (RESULTS / name).write_text(json.dumps(out, indent=1))
    print(f"\nwrote {RESULTS / name}")


if __name__ == "__main__":
    main()
