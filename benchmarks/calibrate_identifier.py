"""Calibrate what the dense MTF network adds to ``estimate_psf``, on images that are not the held-out set.

Run from the repository root::

    python benchmarks/calibrate_identifier.py [--per-kind 2]

The specimens and PSFs of ``bench_identification.py`` drawn with other seeds
(31337 and 31338; the held-out sets use 1_000_003 and 1_000_033), strongly
aberrated (U[-0.15, 0.15] waves) and mild (U[-0.05, 0.05]) PSFs, the three
noise levels, fc known. For each image, side by side in one process:
the network alone (``refine=False``), the default, and the refinement with
and without the MTF network's hypotheses among its starting points
(``estimate._NETWORK_STARTS``), with the seconds each took and the MTF
network's uncertainty; then the Spearman correlation between that
uncertainty and the error (-PSF SNR) of the default estimate. Writes
results/identifier_calibration.json.
"""

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import psfkit  # noqa: E402
import bench_identification as bench  # noqa: E402
from psfkit.identification import estimate  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
CONFIGS = {"refined, with the MTF network's starts": True, "refined, without (previous design)": False}


def run(per_kind):
    records, default = [], estimate._NETWORK_STARTS
    for amplitude, seed in ((bench.AMPLITUDE, 31337), (bench.MILD_AMPLITUDE, 31338)):
        cases = bench.held_out_set(per_kind, seed=seed, amplitude=amplitude)
        for noise, kwargs in bench.NOISE.items():
            rng = np.random.default_rng(seed + len(noise))
            for kind, theta, fc, x in cases:
                h = psfkit.zernike_psf(theta, cutoff=fc, size=bench.SIZE, indices=bench.NOLL)
                y = psfkit.simulate_acquisition(x, h, bits=16, salt_pepper=1e-5, rng=rng, **kwargs)
                record = {"amplitude": amplitude, "noise": noise, "kind": kind}
                for refine in (False, None):
                    start = time.perf_counter()
                    psf, info = psfkit.estimate_psf(y, cutoff=fc, refine=refine, return_coefficients=True)
                    name = "network" if refine is False else "default"
                    record.update({name: psfkit.psf_snr(psf, h), name + " seconds": time.perf_counter() - start,
                                   "uncertainty": info["uncertainty"]})
                    if refine is None:
                        record["default refined"] = bool(info["hypotheses"] is not None)
                for name, starts in CONFIGS.items():
                    estimate._NETWORK_STARTS = starts
                    start = time.perf_counter()
                    psf = psfkit.estimate_psf(y, cutoff=fc, refine=True)
                    record[name] = psfkit.psf_snr(psf, h)
                    record[name + " seconds"] = time.perf_counter() - start
                estimate._NETWORK_STARTS = default
                records.append(record)
                print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in record.items()}), flush=True)
    return records


def summary(records):
    from scipy.stats import spearmanr

    out = {}
    names = ["network", "default", *CONFIGS]
    for amplitude in sorted({r["amplitude"] for r in records}, reverse=True):
        for noise in bench.NOISE:
            rows = [r for r in records if r["amplitude"] == amplitude and r["noise"] == noise]
            line = {}
            for name in names:
                line[name] = np.mean([r[name] for r in rows])
                line[name + " seconds"] = np.mean([r[name + " seconds"] for r in rows])
            line["default refined (fraction)"] = np.mean([r["default refined"] for r in rows])
            out[f"amplitude {amplitude}, noise {noise}"] = {k: round(float(v), 2) for k, v in line.items()}
    rho = spearmanr([r["uncertainty"] for r in records], [-r["default"] for r in records]).statistic
    out["spearman(uncertainty, default error), all images"] = round(float(rho), 3)
    for noise in bench.NOISE:
        rows = [r for r in records if r["noise"] == noise]
        rho = spearmanr([r["uncertainty"] for r in rows], [-r["default"] for r in rows]).statistic
        out[f"spearman(uncertainty, default error), noise {noise}"] = round(float(rho), 3)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--per-kind", type=int, default=2)
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")
    records = run(args.per_kind)
    table = summary(records)
    for key, line in table.items():
        print(key, json.dumps(line))
    (RESULTS / "identifier_calibration.json").write_text(
        json.dumps({"per_kind": args.per_kind, "summary": table, "records": records}, indent=1))


if __name__ == "__main__":
    main()
