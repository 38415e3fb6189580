"""PSF calibration from measured beads: psfkit.fit_psf on real bead stacks, against the nominal PSF.

Run from the repository root::

    python benchmarks/bench_fit_psf.py [--threads 1] [--quick]

Prints a Markdown table and writes ``benchmarks/results/fit_psf.json``.

Data sets (``../shared/data``, see their READMEs):

- **LLSM bead** (``pycudadecon_llsm_bead_psf/psf.tif``): a raw lattice light-sheet bead, 61 x 128 x 128,
  0.1011 um pixels, 0.1 um z step, camera offset + background ~142. Detection NA 1.1 water (n 1.333),
  emission 0.52 um (pycudadecon's default; neither is stated for the file): ``modality='lightsheet'``
  (a widefield detection PSF times a Gaussian sheet profile), NA, sheet FWHM, bead size, background and
  shot-noise-weighted (``noise='poisson'``) fit.
- **MPI-CBG averaged confocal bead** (``mpicbg_confocal_beads/psf_beads_averaged_45cube.tif``): the average of
  4 beads, normalised to sum 1, 45^3, 22.49 nm x 125 nm voxels; NA and wavelengths not stated: NA 1.4 oil
  (n 1.515), excitation 0.488 / emission 0.52 um, 1-AU pinhole, point-sampled scan; NA, bead size and
  background fitted, unweighted (``noise='gaussian'``: an average is not raw counts).
  A second row adds the Noll 16-22 terms.
- **synthetic control**: a widefield bead made with ``microscope_psf`` (NA 1.15 water, 0.6 um, known
  aberrations), a half-plane and sub-pixel offset, 3e4 photons + 10 background + 100 offset, Poisson noise; the
  fit starts from NA 1.22.

SNR = 10 log10(||m||^2 / ||m - f||^2) over the central region of the full fit -- every voxel within two FWHM of
the fitted centre along each axis (the FWHM of the fitted model) -- with ``m`` the measured stack less the
full fit's background and ``m - f`` the residual of the model in question. "Nominal" is the aberration-free
``microscope_psf`` at the stated optics (NA fixed, point source; centre, amplitude and background fitted; for
the light sheet, whose thickness is not stated, the sheet FWHM fitted too) on the same window.
"""

import argparse
import sys

import _threads  # noqa: E402,F401  (first: sets the BLAS threads before numpy is imported)

import dataclasses  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from _common import machine_info  # noqa: E402
from psfkit.optics.fit import fit_psf  # noqa: E402
from psfkit.optics.microscope import Optics, microscope_psf  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "fit_psf.json"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
LLSM_FILE = SHARED / "pycudadecon_llsm_bead_psf" / "psf.tif"
MPICBG_FILE = SHARED / "mpicbg_confocal_beads" / "psf_beads_averaged_45cube.tif"

LLSM = Optics(na=1.1, wavelength=0.52, pixel_size=0.1011, z_step=0.1, immersion_index=1.333,
              modality="lightsheet", sheet_thickness=1.0)
MPICBG = Optics(na=1.4, wavelength=0.52, pixel_size=0.02249, z_step=0.125, modality="confocal", excitation=0.488)
SYNTHETIC = Optics(na=1.15, wavelength=0.6, pixel_size=0.1, z_step=0.25, immersion_index=1.33)
SYNTHETIC_ABERRATIONS = {5: 0.05, 7: -0.06, 11: 0.07}


def synthetic_bead(seed=0):
    """The control bead (as in tests/optics/test_fit.py): source at plane 4.5, (20.3, 8.6) in 10 x 27 x 23."""
    fine = dataclasses.replace(SYNTHETIC, z_step=SYNTHETIC.z_step / 2)
    big = microscope_psf(fine, (20, 33, 33), aberrations=SYNTHETIC_ABERRATIONS)[1::2]
    fy, fx = np.fft.fftfreq(33)[:, None], np.fft.fftfreq(33)[None, :]
    shifted = np.fft.ifft2(np.fft.fft2(big) * np.exp(-2j * np.pi * (fy * 0.3 + fx * -0.4))).real
    truth = np.clip(shifted, 0, None)[:, 8:-8, 8:-8]
    image = np.full((10, 27, 23), 10.0)
    image[:, 8:25, 1:18] += 3e4 * truth / truth.sum()
    return np.random.default_rng(seed).poisson(image) + 100, (4.5, 16.3, 8.6)


def central_snr(data, fit, model):
    """SNR (dB) of ``model`` (a bead image on ``fit.window``) over ``fit.region``, background of ``fit``."""
    region = tuple(slice(r.start - w.start, r.stop - w.start) for r, w in zip(fit.region, fit.window))
    measured = data[fit.window][region] - fit.background
    residual = data[fit.window][region] - model[region]
    return float(10 * np.log10(np.sum(measured**2) / np.sum(residual**2)))


def main_terms(aberrations, n=4):
    top = sorted(aberrations.items(), key=lambda item: -abs(item[1]))[:n]
    return ", ".join(f"Z{j} {c:+.3f}" for j, c in top)


def run_case(name, data, optics, full, nominal, notes):
    data = np.asarray(data, dtype=np.float64)
    start = time.perf_counter()
    _, fit = fit_psf(data, optics, **full)
    seconds = time.perf_counter() - start
    window = tuple(s.stop - s.start for s in fit.window)
    start = time.perf_counter()
    _, base = fit_psf(data, optics, indices=(), window=window, shape=window, **nominal)
    nominal_seconds = time.perf_counter() - start
    assert base.window == fit.window
    row = {
        "data": name,
        "modality": optics.modality,
        "na_nominal": optics.na,
        "na": fit.na,
        "background": fit.background,
        "bead_diameter_um": fit.bead_diameter,
        "sheet_thickness_um": fit.sheet_thickness,
        "aberrations": {str(j): c for j, c in fit.aberrations.items()},
        "centre": list(fit.centre),
        "snr_db": central_snr(data, fit, fit.model),
        "snr_db_reported": fit.snr,
        "snr_nominal_db": central_snr(data, fit, base.model),
        "residual": fit.residual,
        "residual_nominal": base.residual,
        "region": [[s.start, s.stop] for s in fit.region],
        "window": [[s.start, s.stop] for s in fit.window],
        "iterations": fit.iterations,
        "success": fit.success,
        "seconds": seconds,
        "seconds_nominal": nominal_seconds,
        "options": {k: v for k, v in full.items() if k != "shape"},
        "notes": notes,
    }
    return row, fit


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", default="1", help="BLAS threads (default 1)")
    parser.add_argument("--quick", action="store_true", help="synthetic control only")
    args = parser.parse_args()

    rows = []
    stack, centre = synthetic_bead()
    row, fit = run_case(
        "synthetic (NA 1.15, Z5 +0.05, Z7 -0.06, Z11 +0.07)", stack, dataclasses.replace(SYNTHETIC, na=1.22),
        dict(indices=(5, 6, 7, 8, 11), fit_na=True), dict(),
        "truth: NA 1.15, background 110, centre (4.5, 16.3, 8.6); fit starts at NA 1.22",
    )
    row["truth"] = {"na": 1.15, "background": 110.0, "centre": list(centre),
                    "aberrations": {str(j): c for j, c in SYNTHETIC_ABERRATIONS.items()}}
    rows.append(row)
    if not args.quick:
        import tifffile

        if LLSM_FILE.is_file():
            row, _ = run_case(
                "LLSM bead (pycudadecon)", tifffile.imread(LLSM_FILE), LLSM,
                dict(fit_na=True, bead_diameter="fit", fit_sheet=True),
                dict(fit_sheet=True),
                "NA 1.1 water, 0.52 um assumed (not stated); sheet starts at 1.0 um FWHM",
            )
            rows.append(row)
        if MPICBG_FILE.is_file():
            row, _ = run_case(
                "MPI-CBG confocal bead average", tifffile.imread(MPICBG_FILE), MPICBG,
                dict(fit_na=True, bead_diameter="fit", noise="gaussian"),
                dict(noise="gaussian"),
                "NA 1.4 oil, 488/520 nm, 1 AU assumed (not stated); averaged bead: unweighted fit",
            )
            rows.append(row)
            row, _ = run_case(
                "MPI-CBG confocal bead average, Noll 5-22", tifffile.imread(MPICBG_FILE), MPICBG,
                dict(fit_na=True, bead_diameter="fit", noise="gaussian", indices=tuple(range(5, 23))),
                dict(noise="gaussian"),
                "as above with the 5th-order terms (secondary coma, trefoil, spherical ...) too",
            )
            rows.append(row)

    print("| data | fitted NA (nominal) | background | bead (um) | sheet (um) | main coefficients (waves RMS) "
          "| SNR fit (dB) | SNR nominal (dB) | iterations | time (s) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        sheet = f"{r['sheet_thickness_um']:.3f}" if r["sheet_thickness_um"] else "-"
        terms = main_terms({int(k): v for k, v in r["aberrations"].items()})
        print(f"| {r['data']} | {r['na']:.3f} ({r['na_nominal']:g}) | {r['background']:.4g} "
              f"| {r['bead_diameter_um']:.3f} | {sheet} | {terms} "
              f"| {r['snr_db']:.2f} | {r['snr_nominal_db']:.2f} | {r['iterations']} | {r['seconds']:.1f} |")
    info = machine_info(threads=args.threads)
    print(f"\n{info['platform']}, {info['cpu_count']} CPUs, load {info.get('loadavg_1min')}, BLAS threads "
          f"{args.threads}")
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps({"machine": info, "rows": rows}, indent=2) + "\n")
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
