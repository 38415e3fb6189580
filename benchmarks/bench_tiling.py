"""Tiled (dask) against whole-image deconvolution: seams and peak memory, side by side in one run.

Run from the repository root (needs ``pip install -e ".[dask]"``)::

    python benchmarks/bench_tiling.py [seams] [rl-tv] [memory] [--limit-gb 12]

Prints Markdown tables and writes ``benchmarks/results/tiling.json``.

1. **Seams.** A 2048^2 simulated acquisition (real-like specimen, 33^2 aberrated PSF) deconvolved whole and as a
   dask array of 512^2 chunks: ``deconvolve`` with its automatic settings (RL-TV, weight and stop decided once on
   the whole image) and plain RL with 50 iterations; a 64 x 512 x 512 widefield stack (31^3 PSF of its optics)
   whole and in (64, 256, 256) chunks, RL-TV (20 iterations, automatic weight) and RL (20 iterations). Reported,
   in float32 and float64: the largest ``|tiled - whole|`` over the image's range, within 4 px of a tile edge and
   elsewhere, at least one PSF size inside the image (the target: <= 1e-3), and the number of pixels above 1e-3;
   beside it the same measure between the whole-image results in float32 and float64 -- how far round-off alone
   moves the method (RL-TV's piecewise-flat regions move their edges with it).
2. **RL-TV and round-off** (``rl-tv``). A 32 x 192 x 192 bead stack deconvolved in float32 and float64 (20
   iterations): RL, RL-TV with a negligible weight, with the automatic weight, and without acceleration.
3. **Peak memory.** ``deblur`` of an 8192^2 float32 image (default settings) and of a 100 x 2048 x 2048 float32
   stack (its optics, RL-TV with 5 iterations: memory does not depend on the count), read from a zarr store and
   written to one, in chunks of 1024^2 and (100, 256, 256), against the same call on the whole image in memory.
   Each run is a fresh process whose resident memory is sampled every 20 ms; a run above ``--limit-gb`` is
   stopped and reported as out of memory. The inputs are written by another process beforehand. Tiles run on
   2 dask threads for the image, 1 for the stack (:data:`THREADS`).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from benchmarks._common import machine_info  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "tiling.json"
OPTICS_3D = dict(na=1.2, wavelength=0.52, pixel_size=0.1, z_step=0.25, immersion_index=1.33)
# dask threads of the tiled memory runs: a stack's tile (100 x 512 x 512 with its halo, extended by the PSF's
# reach to 200 x 576 x 576) needs about 2 GB, so one at a time keeps the stack under 4 GB
THREADS = {"2d": 2, "3d": 1}
# the memory runs' inputs: blocks of the 2-D image and of the stack (--quick: a try-out of the script only)
SIZES = {"2d": 8, "3d": (100, 4)}


# --------------------------------------------------------------------- data
def image_2d(shape, seed):
    import psfkit

    specimen = psfkit.data.random_specimen(shape, rng=seed)
    psf = psfkit.zernike_psf({4: 0.12, 7: 0.06, 11: 0.04}, cutoff=0.2, size=33)
    image = psfkit.simulate_acquisition(specimen, psf, gain=300, read_noise=0.01, rng=seed + 1)
    return image.astype(np.float32), psf


def beads_and_background(shape, seed):
    """A 3-D specimen: bright beads on a smooth varying background."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    specimen = (rng.random(shape) < 3e-4) * rng.uniform(200, 1000, shape)
    specimen += 20 * gaussian_filter(rng.random(shape), 8) ** 2
    return specimen


def stack_3d(shape, seed):
    import psfkit

    psf = psfkit.microscope_psf(psfkit.Optics(**OPTICS_3D), (31, 31, 31))
    stack = psfkit.simulate_acquisition(beads_and_background(shape, seed), psf, gain=5, read_noise=1, rng=seed + 1)
    return stack.astype(np.float32), psf


def differences(tiled, whole, chunk, border, value_range, band=4):
    """|tiled - whole| / range, ``border`` px or more inside the image: max near tile edges (+-``band`` px) and
    elsewhere, and the number of pixels above 1e-3; the max over the whole image."""
    diff = np.abs(tiled.astype(np.float64) - whole) / value_range
    near = np.zeros(diff.shape, bool)
    for axis, (n, c) in enumerate(zip(diff.shape, chunk)):
        for edge in range(c, n, c):
            index = [slice(None)] * diff.ndim
            index[axis] = slice(edge - band, edge + band)
            near[tuple(index)] = True
    inside = tuple(slice(b, n - b) if b else slice(None) for b, n in zip(border, diff.shape))
    interior, near = diff[inside], near[inside]
    return {
        "seams": float(interior[near].max()),
        "elsewhere": float(interior[~near].max()),
        "pixels_above_1e-3": int((interior > 1e-3).sum()),
        "everywhere": float(diff.max()),
    }


def compare(label, image, psf, chunks, border, **kwargs):
    """Whole and tiled in float32 and float64; the whole image's float32-float64 gap is the round-off floor."""
    import dask.array as da

    import psfkit

    value_range = float(np.ptp(image))
    row = {"case": label, "chunks": list(chunks)}
    results = {}
    for dtype in (np.float32, np.float64):
        name = np.dtype(dtype).name
        start = time.perf_counter()
        whole = psfkit.deconvolve(image, psf, dtype=dtype, **kwargs)
        row[f"whole_s_{name}"] = round(time.perf_counter() - start, 1)
        start = time.perf_counter()
        tiled = psfkit.deconvolve(da.from_array(image, chunks=chunks), psf, dtype=dtype, **kwargs).compute()
        row[f"tiled_s_{name}"] = round(time.perf_counter() - start, 1)
        row[name] = differences(tiled, whole, chunks, border, value_range)
        results[name] = whole
    row["round_off_floor"] = differences(results["float32"], results["float64"], chunks, border, value_range)
    print(row, flush=True)
    return row


def seams():
    image, psf = image_2d((2048, 2048), 11)
    rows = [
        compare("2-D 2048^2, RL-TV automatic", image, psf, (512, 512), (33, 33)),
        compare("2-D 2048^2, RL 50 iterations", image, psf, (512, 512), (33, 33), method="rl", iterations=50),
    ]
    stack, psf3 = stack_3d((64, 512, 512), 21)
    rows.append(compare("3-D 64x512x512, RL-TV 20 iterations, automatic weight", stack, psf3, (64, 256, 256),
                        (0, 31, 31), method="rl-tv", iterations=20, spacing=(OPTICS_3D["z_step"], 0.1, 0.1)))
    rows.append(compare("3-D 64x512x512, RL 20 iterations", stack, psf3, (64, 256, 256), (0, 31, 31),
                        method="rl", iterations=20))
    return rows


def rl_tv_round_off():
    """How far round-off alone moves RL-TV: a 32 x 192 x 192 bead stack, float32 against float64, 20 iterations."""
    import psfkit

    psf = psfkit.microscope_psf(psfkit.Optics(**OPTICS_3D), (31, 31, 31))
    stack = psfkit.simulate_acquisition(beads_and_background((32, 192, 192), 5), psf, gain=5, read_noise=1,
                                        rng=6).astype(np.float32)
    rows = []
    for label, kwargs in [("rl", {"method": "rl"}), ("rl-tv, weight 1e-6", {"regularization": 1e-6}),
                          ("rl-tv, automatic weight", {}), ("rl-tv, automatic weight, no acceleration",
                                                             {"acceleration": False})]:
        kwargs = {"method": "rl-tv", "iterations": 20, "spacing": (OPTICS_3D["z_step"], 0.1, 0.1), **kwargs}
        single = psfkit.deconvolve(stack, psf, **kwargs)
        double = psfkit.deconvolve(stack, psf, dtype=np.float64, **kwargs)
        diff = np.abs(single - double) / float(np.ptp(stack))
        rows.append({"case": label, "max": float(diff.max()), "voxels_above_1e-3": int((diff > 1e-3).sum())})
        print(rows[-1], flush=True)
    return rows


# --------------------------------------------------------------------- memory
def _watch(limit_bytes, peak):
    """Sample this process's resident memory; stop it above the limit."""
    page = os.sysconf("SC_PAGE_SIZE")
    while True:
        with open("/proc/self/statm") as f:
            rss = int(f.read().split()[1]) * page
        peak[0] = max(peak[0], rss)
        if rss > limit_bytes:
            print(json.dumps({"peak_gb": round(rss / 2**30, 2), "out_of_memory": True}), flush=True)
            os._exit(0)
        time.sleep(0.02)


def child(case, mode, folder, limit_gb):
    import psfkit  # noqa: F401  (imported before the clock and the memory baseline)

    peak = [0]
    threading.Thread(target=_watch, args=(limit_gb * 2**30, peak), daemon=True).start()
    import dask.array as da
    import zarr

    source = zarr.open_array(os.path.join(folder, f"{case}.zarr"), mode="r")
    options = {} if case == "2d" else {"optics": psfkit.Optics(**OPTICS_3D), "iterations": 5}
    chunks = (1024, 1024) if case == "2d" else (source.shape[0], 256, 256)
    start = time.perf_counter()
    if mode == "tiled":
        restored, _ = psfkit.deblur(da.from_zarr(source, chunks=chunks), **options)
        target = zarr.open_array(os.path.join(folder, f"{case}-out.zarr"), mode="w", shape=restored.shape,
                                 chunks=chunks, dtype=restored.dtype)
        da.store(restored, target, lock=False, num_workers=THREADS[case])
    else:
        restored, _ = psfkit.deblur(np.asarray(source[...]), **options)
    seconds = time.perf_counter() - start
    import resource

    peak[0] = max(peak[0], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    print(json.dumps({"peak_gb": round(peak[0] / 2**30, 2), "out_of_memory": False, "seconds": round(seconds, 1)}))


def write_inputs(folder):
    """The two inputs, written block by block (this process never holds them whole)."""
    import dask.array as da

    import psfkit

    psf = psfkit.zernike_psf({4: 0.12, 7: 0.06, 11: 0.04}, cutoff=0.2, size=33)

    def specimen_2d(block_info=None):
        seed = int(np.ravel_multi_index(block_info[None]["chunk-location"], block_info[None]["num-chunks"]))
        return psfkit.data.random_specimen(block_info[None]["chunk-shape"], rng=seed)

    n = SIZES["2d"]
    specimen = da.map_blocks(specimen_2d, chunks=((1024,) * n, (1024,) * n), dtype=np.float64)
    image = psfkit.simulate_acquisition(specimen, psf, gain=300, read_noise=0.01, rng=1).astype(np.float32)
    da.to_zarr(image, os.path.join(folder, "2d.zarr"), overwrite=True)

    psf3 = psfkit.microscope_psf(psfkit.Optics(**OPTICS_3D), (31, 31, 31))

    def specimen_3d(block_info=None):
        seed = int(np.ravel_multi_index(block_info[None]["chunk-location"], block_info[None]["num-chunks"]))
        return beads_and_background(block_info[None]["chunk-shape"], seed)

    planes, n = SIZES["3d"]
    specimen = da.map_blocks(specimen_3d, chunks=((planes,), (512,) * n, (512,) * n), dtype=np.float64)
    stack = psfkit.simulate_acquisition(specimen, psf3, gain=5, read_noise=1, rng=2).astype(np.float32)
    da.to_zarr(stack, os.path.join(folder, "3d.zarr"), overwrite=True)


def memory(limit_gb, quick=False):
    rows = []
    with tempfile.TemporaryDirectory(prefix="psfkit-tiling-") as folder:
        subprocess.run([sys.executable, __file__, "_inputs", folder] + (["--quick"] if quick else []), check=True)
        for case, label in [("2d", "deblur 8192^2 float32 (default settings)"),
                            ("3d", "deblur 100x2048x2048 float32 stack (optics, 5 iterations)")]:
            row = {"case": label}
            for mode in ("tiled", "whole"):
                out = subprocess.run([sys.executable, __file__, "_child", case, mode, folder, str(limit_gb)],
                                     capture_output=True, text=True)
                lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
                if not lines:
                    row[mode] = {"error": (out.stderr.strip().splitlines() or ["no output"])[-1],
                                 "returncode": out.returncode}
                else:
                    row[mode] = json.loads(lines[-1])
                print(case, mode, row[mode], flush=True)
            row["chunks"] = [1024, 1024] if case == "2d" else [100, 256, 256]
            row["threads"] = THREADS[case]
            rows.append(row)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parts", nargs="*", default=["seams", "memory"])
    parser.add_argument("--limit-gb", type=float, default=12.0)
    parser.add_argument("--quick", action="store_true", help="small memory inputs, results not written")
    args = parser.parse_args()
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    command = "python benchmarks/bench_tiling.py " + " ".join(args.parts)
    if "seams" in args.parts:
        results["seams"] = {"rows": seams(), "command": command, "machine": machine_info()}
    if "rl-tv" in args.parts:
        results["rl_tv_round_off"] = {"rows": rl_tv_round_off(), "command": command, "machine": machine_info()}
    if "memory" in args.parts:
        results["memory"] = {"rows": memory(args.limit_gb, args.quick), "limit_gb": args.limit_gb, "command": command,
                             "machine": machine_info()}
    if not args.quick:
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    if "seams" in results:
        print("\n| case | chunks | float32: near seams / elsewhere / pixels > 1e-3 | float64: same | "
              "round-off floor (whole float32 vs float64) | seconds whole / tiled (float32) |")
        print("|---|---|---|---|---|---|")
        for r in results["seams"]["rows"]:
            cells = [f"{r[k]['seams']:.1e} / {r[k]['elsewhere']:.1e} / {r[k]['pixels_above_1e-3']}"
                     for k in ("float32", "float64", "round_off_floor")]
            print(f"| {r['case']} | {r['chunks']} | {cells[0]} | {cells[1]} | {cells[2]} | "
                  f"{r['whole_s_float32']} / {r['tiled_s_float32']} |")
    if "memory" in results:
        print("\n| case | chunks, threads | tiled: peak RSS GB, s | whole image: peak RSS GB, s |")
        print("|---|---|---|---|")
        for r in results["memory"]["rows"]:
            cells = []
            for mode in ("tiled", "whole"):
                m = r[mode]
                if "error" in m:
                    cells.append(f"failed: {m['error']}")
                elif m["out_of_memory"]:
                    cells.append(f"out of memory (> {results['memory']['limit_gb']:g} GB, stopped)")
                else:
                    cells.append(f"{m['peak_gb']} GB, {m['seconds']} s")
            print(f"| {r['case']} | {r['chunks']}, {r['threads']} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        child(sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]))
    elif len(sys.argv) > 1 and sys.argv[1] == "_inputs":
        if "--quick" in sys.argv:
            SIZES.update({"2d": 2, "3d": (32, 1)})
        write_inputs(sys.argv[2])
    else:
        main()
