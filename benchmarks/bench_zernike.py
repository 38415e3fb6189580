"""Speed and accuracy of psfkit.zernike_psf (NumPy) and its torch twin.

Run from the repository root::

    python benchmarks/bench_zernike.py [--repeat 3] [--batch 256] [--size 64]

Prints Markdown tables and writes ``benchmarks/results/zernike.json``.

Workload (from the issue): 256 PSFs of 64 x 64 with 8 coefficients, Noll 4-11.
Two settings: deepinv's defaults (fc = 0.2 shared, coefficients U[-0.075,
0.075], i.e. ``max_zernike_amplitude=0.15``) and a training-like batch (fc ~
U[0.125, 0.25] per PSF, coefficients U[-0.15, 0.15]).

deepinv's ``DiffractionBlurGenerator`` (default pupil grid of 256, float32)
is timed side by side on the first ``--deepinv-batch`` PSFs of each setting
(its cost per PSF does not drop with the batch) when ``import deepinv`` works
in the running interpreter (it is never a psfkit dependency;
deepinv 0.5 imports torchvision at top level, so on a machine without a CPU
torchvision build it has to be run from a throwaway environment with a
stub). Otherwise the speed ratio is taken against the 3-8 ms per PSF quoted
in the issue, and the table says so.

Accuracy: relative L2 error of the aberration-free PSF against the Airy
pattern, and of aberrated PSFs against a converged psfkit reference (pupil
grid of 384 samples). Timings are the minimum over ``--repeat`` runs after a
warm-up call (the machine may be shared; the minimum is the least disturbed).
Thread pools follow ``OMP_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS`` (recorded in
the JSON); on a busy shared machine ``=1`` gives steadier ratios.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from psfkit.optics.psf import airy_psf, zernike_psf  # noqa: E402
from _common import machine_info  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "zernike.json"
DEEPINV_QUOTED_MS = (3.0, 8.0)
NOLL = tuple(range(4, 12))


def timeit(func, repeat):
    func()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def relative_l2(estimate, reference):
    return float(np.linalg.norm(estimate - reference) / np.linalg.norm(reference))


def import_deepinv():
    try:
        import deepinv
        from deepinv.physics.generator import DiffractionBlurGenerator
    except Exception as error:  # ImportError, or deepinv's own import-time failures
        return None, f"{type(error).__name__}: {error}"
    return (deepinv.__version__, DiffractionBlurGenerator), None


def settings(batch, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "deepinv defaults": (rng.uniform(-0.075, 0.075, (batch, 8)), np.full(batch, 0.2)),
        "training-like": (rng.uniform(-0.15, 0.15, (batch, 8)), rng.uniform(0.125, 0.25, batch)),
    }


def psfkit_numpy(dtype):
    def run(thetas, cutoffs, size):
        cutoff = cutoffs[0] if np.all(cutoffs == cutoffs[0]) else cutoffs
        return zernike_psf(thetas, cutoff=cutoff, size=size, dtype=dtype)

    return run


def psfkit_torch(dtype_name):
    import torch

    from psfkit.learned.torch_optics import zernike_psf_torch

    dtype = getattr(torch, dtype_name)

    def run(thetas, cutoffs, size):
        cutoff = float(cutoffs[0]) if np.all(cutoffs == cutoffs[0]) else torch.from_numpy(cutoffs).to(dtype)
        return zernike_psf_torch(torch.from_numpy(thetas).to(dtype), cutoff, size=size, indices=NOLL).numpy()

    return run


def deepinv_runner(generator_class, chunk):
    import torch

    cache = {}

    def run(thetas, cutoffs, size):
        key = size
        if key not in cache:
            cache[key] = generator_class((size, size), zernike_index=NOLL, fc=0.2)
        generator = cache[key]
        out = []
        for start in range(0, len(thetas), chunk):
            coeff = torch.from_numpy(thetas[start : start + chunk]).float()
            fc = torch.from_numpy(cutoffs[start : start + chunk]).float()[:, None]
            out.append(generator.step(batch_size=len(coeff), coeff=coeff, fc=fc)["filter"][:, 0].double().numpy())
        return np.concatenate(out)

    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--check", type=int, default=16, help="PSFs per setting compared with the reference")
    parser.add_argument(
        "--deepinv-batch", type=int, default=32, help="PSFs timed for deepinv (its cost is linear in the batch)"
    )
    args = parser.parse_args()

    info = machine_info()
    deepinv, deepinv_error = import_deepinv()
    methods = {
        "psfkit numpy float64": psfkit_numpy(np.float64),
        "psfkit numpy float32": psfkit_numpy(np.float32),
    }
    if info["torch"]:
        methods["psfkit torch CPU float64"] = psfkit_torch("float64")
        methods["psfkit torch CPU float32"] = psfkit_torch("float32")
    if deepinv is not None:
        info["deepinv"] = deepinv[0]
        # deepinv imports torchvision at top level; a stub stands in where no CPU build exists
        info["torchvision"] = getattr(sys.modules.get("torchvision"), "__version__", None)
        for chunk in (16, args.deepinv_batch):
            methods[f"deepinv {deepinv[0]} float32 (chunks of {chunk})"] = deepinv_runner(deepinv[1], chunk)
    else:
        info["deepinv"] = None
        info["deepinv_import_error"] = deepinv_error

    print("## psfkit.zernike_psf benchmark\n")
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()))
    print(f"\nworkload: {args.batch} PSFs of {args.size}x{args.size}, 8 coefficients (Noll 4-11)\n")

    size = args.size
    results = {"machine": info, "batch": args.batch, "size": size, "settings": {}}

    # aberration-free accuracy (fc = 0.2) for every method
    airy = airy_psf(cutoff=0.2, size=size)
    zero = (np.zeros((1, 8)), np.array([0.2]))
    airy_error = {name: relative_l2(run(*zero, size)[0], airy) for name, run in methods.items()}

    for setting, (thetas, cutoffs) in settings(args.batch).items():
        check = slice(0, args.check)
        reference = zernike_psf(thetas[check], cutoff=cutoffs[check], size=size, pupil_samples=384)
        rows = {}
        for name, run in methods.items():
            n = min(args.deepinv_batch, args.batch) if name.startswith("deepinv") else args.batch
            seconds = timeit(lambda: run(thetas[:n], cutoffs[:n], size), args.repeat)
            errors = [relative_l2(p, r) for p, r in zip(run(thetas[check], cutoffs[check], size), reference)]
            rows[name] = {
                "psfs_timed": n,
                "ms_per_psf": 1e3 * seconds / n,
                "psfs_per_s": n / seconds,
                "airy_rel_l2": airy_error[name],
                "aberrated_rel_l2_median": float(np.median(errors)),
                "aberrated_rel_l2_max": float(np.max(errors)),
            }
        deepinv_names = [n for n in rows if n.startswith("deepinv")]
        if deepinv_names:
            best = min(rows[n]["ms_per_psf"] for n in deepinv_names)
            basis = f"measured deepinv ({best:.2f} ms/PSF, best chunking)"
            for row in rows.values():
                row["speedup_vs_deepinv"] = best / row["ms_per_psf"]
        else:
            low, high = DEEPINV_QUOTED_MS
            basis = f"deepinv not importable: ratio against the issue's {low:g}-{high:g} ms/PSF"
            for row in rows.values():
                row["speedup_vs_deepinv"] = [q / row["ms_per_psf"] for q in DEEPINV_QUOTED_MS]

        print(f"### {setting}: fc {'= 0.2' if np.all(cutoffs == 0.2) else '~ U[0.125, 0.25]'}, "
              f"|theta| <= {np.abs(thetas).max():.3f}\n")
        print(f"speed-up basis: {basis}\n")
        print("| method | ms / PSF | PSFs / s | speed-up vs deepinv | Airy rel. L2 "
              "| aberrated rel. L2 (median / max) |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, row in rows.items():
            speedup = row["speedup_vs_deepinv"]
            speedup = f"{speedup:.1f}x" if np.isscalar(speedup) else f"{speedup[0]:.0f}-{speedup[1]:.0f}x"
            print(f"| {name} | {row['ms_per_psf']:.3f} | {row['psfs_per_s']:.0f} | {speedup} | "
                  f"{row['airy_rel_l2']:.1e} | {row['aberrated_rel_l2_median']:.1e} / "
                  f"{row['aberrated_rel_l2_max']:.1e} |")
        print()
        results["settings"][setting] = {"speedup_basis": basis, "methods": rows}

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS}")


if __name__ == "__main__":
    main()
