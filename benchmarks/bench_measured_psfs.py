"""Blind PSF identification against *measured* PSFs (real optics, synthetic specimens).

Run from the repository root::

    python benchmarks/bench_measured_psfs.py [--quick] [--per-kind N] [--data DIR]

Every other identification benchmark draws its PSFs from psfkit's own Zernike
model. Real PSFs are not exactly of that form (pixel integration, apodisation,
higher-order aberrations, confocal detection), so this benchmark blurs the
held-out specimens with two PSFs measured on real microscopes (real bead
images from ``../shared/data``, see its README for sources and licences):

- ``llsm``: the in-focus plane of a raw lattice light-sheet bead stack
  (pycudadecon's test PSF; 0.101 um pixels, camera offset removed by the
  median of the plane's top and bottom 8 rows, negatives clipped), 33 x 33;
- ``confocal``: the in-focus plane of an MPI-CBG confocal bead average
  (4 beads, 22 nm pixels, 45 x 45): finely sampled, so ``estimate_psf``
  works on the DCT-downsampled image.

Neither set-up states NA and wavelength with the PSF, so fc is taken from a
least-squares fit of ``zernike_psf`` (fc, tip/tilt and Noll 4-11 free, 8
starts) to the measured plane. That fit also gives the *model ceiling* (how
well the best Zernike PSF matches the measured one) and the tilt, i.e. the
sub-pixel offset of the bead, which is removed by a Fourier shift: blind
estimates are centred, and a translation is not identifiable from an image.
The bead image's noise beyond the OTF support (1.1 x 2 fc) is removed too
(``reference_psf``).

Specimens, noise levels and seeds are those of ``bench_identification.py``
(its held-out generator, with a distinct seed); images 256 x 256 (300 x 300
for the confocal PSF, which is downsampled 3x; the C. elegans crops limit
the size). Metric: PSF SNR, raw and aligned (``psf_snr(align=True)``),
against the recentred measured PSF.
Methods: ``estimate_psf`` (network alone, ``refine=True`` and the default
``refine=None``, which refines when the network finds the PSF strongly
aberrated) with fc known (= fitted) and, where fc lies in the network's
range, unknown, and (``llsm``) with fc given 5 % too low / too high, as a
nominal NA and wavelength may be; floors "Airy at the fitted fc" and
"image-blind mean PSF at the fitted fc".

Prints a Markdown table, writes benchmarks/results/measured_psfs.json.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy.ndimage import center_of_mass, fourier_shift
from scipy.optimize import least_squares

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psfkit  # noqa: E402
from _common import EstimateCache, machine_info  # noqa: E402
from bench_identification import KINDS, NOISE, RESULTS, mean_psf, specimen  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FIT_INDICES = (2, 3, *range(4, 12))  # tip/tilt absorb the bead's sub-pixel offset


def _tiff(path):
    import tifffile  # the "io" extra

    return tifffile.imread(path).astype(np.float64)


def _in_focus_plane(stack):
    return stack[int(np.argmax(stack.max(axis=(1, 2))))]


def llsm_psf(data, size=33):
    plane = _in_focus_plane(_tiff(data / "pycudadecon_llsm_bead_psf" / "psf.tif"))
    cy, cx = np.unravel_index(np.argmax(plane), plane.shape)
    r = size // 2
    window = plane[cy - r : cy + r + 1, cx - r : cx + r + 1]
    offset = np.median(np.concatenate([plane[:8].ravel(), plane[-8:].ravel()]))  # camera baseline + background
    window = np.clip(window - offset, 0, None)
    return window / window.sum()


def confocal_psf(data):
    plane = np.clip(_in_focus_plane(_tiff(data / "mpicbg_confocal_beads" / "psf_beads_averaged_45cube.tif")), 0, None)
    return plane / plane.sum()


def fit_zernike(measured, cutoff, *, starts=8, seed=0):
    """Least-squares Zernike fit (fc, tip/tilt, Noll 4-11) of a sum-1 PSF; returns (fc, coefficients by Noll)."""
    size = measured.shape[0]
    rng = np.random.default_rng(seed)

    def residual(p):
        return (psfkit.zernike_psf(p[1:], cutoff=p[0], size=size, indices=FIT_INDICES) - measured).ravel()

    k = len(FIT_INDICES)
    bounds = (np.r_[0.02, np.full(k, -0.6)], np.r_[0.5, np.full(k, 0.6)])
    scale = np.r_[0.01, np.full(k, 0.05)]
    best = None
    for start in range(starts):
        p0 = np.r_[cutoff, rng.uniform(-0.1, 0.1, k) if start else np.zeros(k)]
        result = least_squares(residual, p0, bounds=bounds, x_scale=scale)
        if best is None or result.cost < best.cost:
            best = result
    return float(best.x[0]), dict(zip(FIT_INDICES, best.x[1:]))


def _untilted(coefficients):
    return {j: a for j, a in coefficients.items() if j > 3}


def reference_psf(measured, cutoff, coefficients):
    """The measured PSF recentred and freed of the measurement noise outside the OTF support.

    The shift is minus the sub-pixel offset that the fitted tip/tilt
    explains. An optical PSF has no power beyond 2 fc; the bead image's
    noise does, and blurring with it would add an unphysical white
    component to the transfer function, so frequencies beyond 1.1 x 2 fc
    (a margin for the fitted fc) are removed.
    """
    size = measured.shape[0]
    tilted = psfkit.zernike_psf(coefficients, cutoff=cutoff, size=size)
    centred = psfkit.zernike_psf(_untilted(coefficients), cutoff=cutoff, size=size)
    shift = np.subtract(center_of_mass(centred), center_of_mass(tilted))
    spectrum = fourier_shift(np.fft.fft2(measured), shift)
    frequency = np.fft.fftfreq(size)
    spectrum[np.hypot(*np.meshgrid(frequency, frequency, indexing="ij")) > 1.1 * 2 * cutoff] = 0
    out = np.clip(np.fft.ifft2(spectrum).real, 0, None)
    return out / out.sum()


def set_ups(data):
    """(name, reference PSF, fitted fc, model ceiling in dB, image shape, fc-unknown allowed, fitted coefficients)."""
    out = []
    for name, measured, guess, shape in (
        ("llsm", llsm_psf(data), 0.2, (256, 256)),
        ("confocal", confocal_psf(data), 0.07, (300, 300)),
    ):
        fc, coefficients = fit_zernike(measured, guess)
        reference = reference_psf(measured, fc, coefficients)
        model = psfkit.zernike_psf(_untilted(coefficients), cutoff=fc, size=measured.shape[0])
        ceiling = float(psfkit.psf_snr(model, reference))
        out.append((name, reference, fc, ceiling, shape, 0.125 <= fc <= 0.25, coefficients))
    return out


def run(data, n_per_kind, seed=3_000_017):
    rows = []
    setups = []
    for name, reference, fc, ceiling, shape, unknown_ok, coefficients in set_ups(data):
        size = reference.shape[0]
        setups.append({"psf": name, "fitted_cutoff": fc, "model_ceiling_db": ceiling,
                       "fitted_coefficients": {str(j): float(a) for j, a in coefficients.items()}})
        cache = EstimateCache()  # keyed by fc label
        charged = {}  # the seconds the default would take: the network's, plus the refinement's when it refines
        default_refined = {}  # per fc label, for the current noise level: did the default refine each image?

        def both(y, f, label, refine):
            return cache.estimate(y, label, refine, cutoff=f, size=size)[0]

        def default(label):
            psf, charged[f"default (refine=None), {label}"], refined = cache.default(label)
            default_refined[label].append(refined)
            return psf

        labels = {"fc known": fc}
        if unknown_ok:
            labels["fc unknown"] = None
        if name == "llsm":  # a nominal fc is rarely exact: the same images with fc given 5 % off
            labels.update({"fc given 5 % low": fc * 0.95, "fc given 5 % high": fc * 1.05})
        methods = {}
        for label, f in labels.items():
            methods[f"network, {label}"] = lambda y, f=f, label=label: both(y, f, label, False)
            methods[f"refined (refine=True), {label}"] = lambda y, f=f, label=label: both(y, f, label, True)
            methods[f"default (refine=None), {label}"] = lambda y, label=label: default(label)
        methods["Airy at fitted fc (floor)"] = lambda y: psfkit.airy_psf(cutoff=fc, size=size)
        blind = mean_psf(fc, np.random.default_rng(7), size=size)
        methods["image-blind mean PSF at fitted fc (floor)"] = lambda y: blind
        for noise, kwargs in NOISE.items():
            rng = np.random.default_rng(seed)
            noise_rng = np.random.default_rng({"none": 1, "moderate": 2, "strong": 3}[noise])
            scores = {m: {"raw": [], "aligned": [], "seconds": []} for m in methods}
            default_refined.update({label: [] for label in labels})
            for _ in range(n_per_kind):
                for kind in KINDS:
                    x = specimen(kind, rng, shape)
                    y = psfkit.simulate_acquisition(x, reference, bits=16, salt_pepper=1e-5, rng=noise_rng, **kwargs)
                    for method, estimate in methods.items():
                        start = time.perf_counter()
                        h = estimate(y)
                        scores[method]["seconds"].append(charged.pop(method, time.perf_counter() - start))
                        scores[method]["raw"].append(float(psfkit.psf_snr(h, reference)))
                        scores[method]["aligned"].append(float(psfkit.psf_snr(h, reference, align=True)))
            for method, s in scores.items():
                rows.append({
                    "psf": name, "noise": noise, "method": method, "n": len(s["raw"]),
                    "psf_snr_raw_mean": float(np.mean(s["raw"])), "psf_snr_raw_median": float(np.median(s["raw"])),
                    "psf_snr_aligned_mean": float(np.mean(s["aligned"])),
                    "seconds_mean": float(np.mean(s["seconds"])),
                })
                if method.startswith("default"):  # how many images the default refined
                    rows[-1]["refined_by_default"] = int(np.sum(default_refined[method.split(", ", 1)[1]]))
            for r in rows[-len(scores):]:  # progress: this block's rows as they come
                print(f"  {name} / {noise} / {r['method']}: {r['psf_snr_raw_mean']:.2f} / {r['psf_snr_raw_median']:.2f}"
                      f" (aligned {r['psf_snr_aligned_mean']:.2f})", file=sys.stderr, flush=True)
    return setups, rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="one image per specimen kind (CI-sized)")
    p.add_argument("--per-kind", type=int, default=None, help="images per specimen kind and noise level")
    p.add_argument("--data", type=Path, default=DATA, help="the shared real-data folder (default ../shared/data)")
    args = p.parse_args(argv)
    if not (args.data / "pycudadecon_llsm_bead_psf").is_dir():
        print(f"measured PSFs not found under {args.data}: nothing to do")
        return
    n = args.per_kind or (1 if args.quick else 4)
    setups, rows = run(args.data, n)
    for s in setups:
        print(f"{s['psf']}: fitted fc {s['fitted_cutoff']:.4f}, Zernike model ceiling {s['model_ceiling_db']:.1f} dB")
    print("\n| PSF | noise | method | PSF SNR raw mean / median | aligned mean | s / image |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['psf']} | {r['noise']} | {r['method']} | {r['psf_snr_raw_mean']:.2f} / {r['psf_snr_raw_median']:.2f}"
              f" | {r['psf_snr_aligned_mean']:.2f} | {r['seconds_mean']:.2f} |")
    RESULTS.mkdir(exist_ok=True)
    name = "measured_psfs_quick.json" if args.quick else "measured_psfs.json"
    out = {"machine": machine_info(), "images_per_kind_and_noise": n, "set_ups": setups, "rows": rows}
    (RESULTS / name).write_text(json.dumps(out, indent=1))
    print(f"\nwrote {RESULTS / name}")


if __name__ == "__main__":
    main()
