"""Calibration of the automatic stopping rule of ``deconvolve(method="rl" | "rl-tv")``.

Run ``python benchmarks/calibrate_stopping.py`` (about 10 minutes on 2 cores); it prints a table and writes
``benchmarks/results/stopping_calibration.json``.

Cases: 6 specimens (four real images -- the bundled C. elegans Airyscan image, scikit-image's cell, the DAPI
nucleus's plane of largest variance and the MPI-CBG grid's maximum projection, cropped to 256 x 256 and
normalised to [0, 1] by their 0.5 and 99.9 percentiles -- and psfkit's random specimen and filaments) x 2 pupil
PSFs (defocus + astigmatism + coma at fc 0.2; in focus at fc 0.15) x 3 noise levels (3000, 300, 30 photons at
the peak, read noise 0.005), by ``simulate_acquisition``. For every case one RL-TV run (automatic weight,
40 iterations) records, after each iteration k, the discrepancy of the iterate x_k under the fitted
Poisson-Gaussian noise model, ``mean((y - A x_k)^2 / (a A x_k + b))``, and its PSNR against the truth. Rules are
compared on these traces (loss to the best iteration, picked with the truth), against the blurred input and
scikit-image's ``richardson_lucy`` at its best of 5, 10, 20 or 40 iterations (picked with the truth: an oracle).
The rule deconvolve uses ("cross 1.0 +1": keep the update computed from the first point whose discrepancy is
<= 1) is then run for real, end to end, with ``deconvolve(y, psf, method=...)`` and its defaults.

These are the cases the rule was chosen on; ``benchmarks/bench_real.py`` tests it on measured PSFs it never saw.
"""

import json
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import psfkit  # noqa: E402
from psfkit.metrics import psnr  # noqa: E402
from psfkit.restoration._regularization import noise_model  # noqa: E402
from _common import machine_info  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results" / "stopping_calibration.json"
GAINS = (3000, 300, 30)
READ_NOISE = 0.005
SKIMAGE_COUNTS = (5, 10, 20, 40)


def normalised(image):
    image = np.asarray(image, dtype=float)
    image = image - np.percentile(image, 0.5)
    return np.clip(image / np.percentile(image, 99.9), 0, None)


def specimens():
    import skimage
    import tifffile

    out = {"celegans": normalised(psfkit.data.celegans())[:256, :256], "cell": normalised(skimage.data.cell())[:256, :256]}
    dapi = DATA / "deconwolf_dapi_widefield" / "dapi_001.tif"
    grid = DATA / "mpicbg_confocal_beads" / "DeconvolutionSampleVerticalGrid1AU-crop.tif"
    if dapi.is_file():
        stack = tifffile.imread(dapi)
        out["dapi"] = normalised(stack[np.argmax(stack.reshape(len(stack), -1).var(1))])
    if grid.is_file():
        out["grid"] = normalised(tifffile.imread(grid).max(0))[:256, :256]
    points = psfkit.data.random_specimen((256, 256), rng=5)
    filaments = psfkit.data.filaments((256, 256), rng=6)
    out["points"], out["filaments"] = points / points.max(), filaments / filaments.max()
    return out


PSFS = {
    "aberrated": lambda: psfkit.zernike_psf({4: 0.08, 5: -0.05, 7: 0.04}, cutoff=0.2, size=33),
    "in focus": lambda: psfkit.zernike_psf({}, cutoff=0.15, size=33),
}


def rule(threshold, after):
    """Index of the iterate kept: ``after`` iterations past the first with discrepancy <= threshold."""
    def pick(chi):
        below = np.flatnonzero(np.asarray(chi) <= threshold)
        return min(int(below[0]) + after, len(chi) - 1) if len(below) else len(chi) - 1
    return pick


RULES = {f"cross {t} +{a}": rule(t, a) for t in (1.0, 0.95, 0.9) for a in (0, 1, 2)}


def trace(y, x, psf):
    a, b = noise_model(y)
    chi, quality = [], []

    def watch(k, estimate):
        model = psfkit.convolve(estimate, psf, boundary="reflect")
        chi.append(float(np.mean((y - model) ** 2 / np.maximum(a * np.maximum(model, 0) + b, 1e-12))))
        quality.append(psnr(estimate, x, data_range=1.0))

    psfkit.deconvolve(y, psf, method="rl-tv", iterations=40, callback=watch)
    return chi, quality


def main():
    from skimage.restoration import richardson_lucy

    warnings.simplefilter("ignore")
    cases = []
    for psf_name, make in PSFS.items():
        psf = make()
        for name, x in specimens().items():
            for gain in GAINS:
                y = psfkit.simulate_acquisition(x, psf, gain=gain, read_noise=READ_NOISE, rng=1)
                chi, quality = trace(y, x, psf)
                skimage_best = max(
                    psnr(richardson_lucy(np.clip(y, 0, None), psf, num_iter=k, clip=False), x, data_range=1.0)
                    for k in SKIMAGE_COUNTS
                )
                counts = {}
                auto = {}
                for method in ("rl", "rl-tv"):
                    calls = []
                    restored = psfkit.deconvolve(y, psf, method=method, callback=lambda k, e: calls.append(k))
                    auto[method], counts[method] = psnr(restored, x, data_range=1.0), len(calls)
                cases.append({
                    "psf": psf_name, "specimen": name, "photons": gain, "input": psnr(y, x, data_range=1.0),
                    "skimage_best": skimage_best, "discrepancy": chi, "psnr": quality, "auto": auto, "iterations": counts,
                })
                print(f"{psf_name:9s} {name:9s} {gain:5d}: input {cases[-1]['input']:.1f} skimage {skimage_best:.1f} "
                      f"rl {auto['rl']:.1f} ({counts['rl']} it) rl-tv {auto['rl-tv']:.1f} ({counts['rl-tv']} it) "
                      f"best {max(quality):.1f}", flush=True)
    summary = {}
    print("\n| rule (on the traces) | mean loss to best, dB | worst | mean vs skimage best | below skimage | below input |")
    print("|---|---|---|---|---|---|")
    for name, pick in RULES.items():
        kept = [c["psnr"][pick(c["discrepancy"])] for c in cases]
        loss = [max(c["psnr"]) - k for c, k in zip(cases, kept)]
        versus = [k - c["skimage_best"] for c, k in zip(cases, kept)]
        below_input = sum(k < c["input"] for c, k in zip(cases, kept))
        summary[name] = {"mean_loss": float(np.mean(loss)), "worst_loss": float(np.max(loss)),
                         "mean_vs_skimage": float(np.mean(versus)), "below_skimage": int(sum(v < 0 for v in versus)),
                         "below_input": int(below_input)}
        s = summary[name]
        print(f"| {name} | {s['mean_loss']:.2f} | {s['worst_loss']:.2f} | {s['mean_vs_skimage']:+.2f} | "
              f"{s['below_skimage']} | {s['below_input']} |")
    print("\n| deconvolve defaults, end to end | mean PSNR | vs skimage best | below skimage | below input |")
    print("|---|---|---|---|---|")
    for method in ("rl", "rl-tv"):
        values = [c["auto"][method] for c in cases]
        versus = [v - c["skimage_best"] for c, v in zip(cases, values)]
        summary[f"deconvolve {method}"] = {
            "mean_psnr": float(np.mean(values)), "mean_vs_skimage": float(np.mean(versus)),
            "below_skimage": int(sum(v < 0 for v in versus)),
            "below_input": int(sum(v < c["input"] for c, v in zip(cases, values))),
        }
        s = summary[f"deconvolve {method}"]
        print(f"| {method} | {s['mean_psnr']:.2f} | {s['mean_vs_skimage']:+.2f} | {s['below_skimage']} | {s['below_input']} |")
    RESULTS.write_text(json.dumps({"machine": machine_info(), "summary": summary, "cases": cases}, indent=1))
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
