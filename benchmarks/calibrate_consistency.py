"""Calibrate deblur's no-reference support test (``psfkit.identification._consistency``).

Run ``python benchmarks/calibrate_consistency.py`` from the repository root (about 6 minutes on 2 cores: one
network estimate per case); it prints a table and writes ``benchmarks/results/consistency_calibration.json``.

Cases: the 36 two-dimensional cases of ``bench_real.py`` (measured PSFs -- MPI-CBG confocal bead, LLSM bead,
deconwolf's Born-Wolf DAPI PSF -- in focus and defocused, real specimens, three noise levels; the same seeds) and
24 synthetic ones (psfkit's random specimen, filaments and scikit-image's cell, 256^2, through random Zernike PSFs:
Noll 4-13 uniform in +-0.15 waves, fc uniform in [0.10, 0.27], 3000 / 300 / 30 / 10^6 photons, read noise 0.005,
seed 7). For each: ``support_consistency`` of the true PSF, of the nominal one (real cases) and of the network's
estimate without optics (``estimate_psf(y)``), at the shipped dead-zone level and at 10x and 0.1x it.

What must hold: the true and the nominal PSFs are never refuted (their z well below the threshold 6).
"""

import sys

import _threads  # noqa: F401  (first: sets the BLAS threads before numpy is imported)

import json  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psfkit  # noqa: E402
import psfkit.identification._consistency as consistency  # noqa: E402
import bench_real  # noqa: E402
from _common import machine_info  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "consistency_calibration.json"
SCALES = (0.1, 1.0, 10.0)  # multiples of the shipped dead-zone level


def real_cases():
    psfs = bench_real.load_psfs()
    planes, _ = bench_real.load_specimens()
    names = list(planes)
    for i, (psf_name, (psf3, optics, dz, _)) in enumerate(psfs.items()):
        cube = bench_real.around_max(psf3, (2 * dz + 1, bench_real.SIDE, bench_real.SIDE))
        nominal = psfkit.microscope_psf(optics, (bench_real.SIDE, bench_real.SIDE))
        for j, (plane_name, plane) in enumerate((("in-focus", dz), (f"defocus +{dz}", 2 * dz))):
            true_psf = cube[plane] / cube[plane].sum()
            k = 2 * i + j
            for level in bench_real.NOISE:
                for spec in (names[k % 4], names[(k + 2) % 4]):
                    seed = 1000 * i + 100 * j + 10 * names.index(spec) + list(bench_real.NOISE).index(level)
                    y = psfkit.simulate_acquisition(planes[spec], true_psf, gain=bench_real.NOISE[level],
                                                    read_noise=bench_real.READ_NOISE, boundary="valid", rng=seed)
                    yield f"{psf_name} {plane_name} {spec} {level}", y, true_psf, nominal


def synthetic_cases():
    import skimage.data

    rng = np.random.default_rng(7)
    cell = bench_real.normalise(np.asarray(skimage.data.cell(), dtype=np.float64))[:256, :256]
    specimens = {"random": psfkit.data.random_specimen((256, 256), rng=3),
                 "filaments": psfkit.data.filaments((256, 256), rng=4), "cell": cell}
    for name, x in specimens.items():
        x = x / x.max()
        for k in range(8):
            fc = rng.uniform(0.1, 0.27)
            theta = rng.uniform(-0.15, 0.15, 10)
            true_psf = psfkit.zernike_psf(theta, cutoff=fc, size=33, indices=tuple(range(4, 14)))
            gain = (3000, 300, 30, 1e6)[k % 4]
            y = psfkit.simulate_acquisition(x, true_psf, gain=gain, read_noise=0.005, rng=k)
            yield f"{name} fc {fc:.2f} photons {gain:g}", y, true_psf, None


def tests(y, psfs):
    """name -> {scale: check} for each candidate PSF."""
    shipped = consistency._dead_level
    out = {}
    try:
        for scale in SCALES:
            consistency._dead_level = lambda p, r, n, s=scale: min(s * shipped(p, r, n), 1.0)
            for name, psf in psfs.items():
                out.setdefault(name, {})[scale] = consistency.support_consistency(y, psf)
    finally:
        consistency._dead_level = shipped
    return out


def main():
    warnings.simplefilter("ignore")
    rows = []
    print("| case | true z | nominal z | network z (refuted?) |")
    print("|---|---|---|---|")
    for kind, cases in (("real", real_cases()), ("synthetic", synthetic_cases())):
        for name, y, true_psf, nominal in cases:
            psfs = {"true": true_psf, "network": psfkit.estimate_psf(y)}
            if nominal is not None:
                psfs["nominal"] = nominal
            checks = tests(y, psfs)
            rows.append({"kind": kind, "case": name, "checks": {k: {str(s): c for s, c in v.items()}
                                                                 for k, v in checks.items()}})
            nom = f"{checks['nominal'][1.0]['z']:.1f}" if "nominal" in checks else "-"
            net = checks["network"][1.0]
            print(f"| {kind}: {name} | {checks['true'][1.0]['z']:.1f} | {nom} | {net['z']:.1f} "
                  f"({'refuted' if net['refuted'] else 'kept'}) |", flush=True)
    summary = {}
    for scale in SCALES:
        key = str(scale)
        truth_z = [r["checks"][c][key]["z"] for r in rows for c in ("true", "nominal") if c in r["checks"]]
        summary[key] = {
            "max_true_or_nominal_z": float(max(truth_z)),
            "true_or_nominal_refuted": sum(r["checks"][c][key]["refuted"] for r in rows
                                           for c in ("true", "nominal") if c in r["checks"]),
            "network_refuted_real": [r["case"] for r in rows if r["kind"] == "real"
                                     and r["checks"]["network"][key]["refuted"]],
            "network_refuted_synthetic": [r["case"] for r in rows if r["kind"] == "synthetic"
                                          and r["checks"]["network"][key]["refuted"]],
        }
    print()
    print("| dead-zone level | max z (true / nominal PSFs) | true / nominal refuted | network refuted (real) "
          "| network refuted (synthetic) |")
    print("|---|---|---|---|---|")
    for key, s in summary.items():
        print(f"| {key} x shipped | {s['max_true_or_nominal_z']:.1f} | {s['true_or_nominal_refuted']} | "
              f"{len(s['network_refuted_real'])} | {len(s['network_refuted_synthetic'])} |")
    OUT.write_text(json.dumps({"summary": summary, "rows": rows, "machine": machine_info()}, indent=1))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
