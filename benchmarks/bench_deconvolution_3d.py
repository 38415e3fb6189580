"""3-D Richardson–Lucy: psfkit against scikit-image, peak memory, deconwolf's geometry, the DAPI stack.

Run ``python benchmarks/bench_deconvolution_3d.py`` (about 2 minutes on 2 cores); it writes
``benchmarks/results/deconvolution_3d.json``.

1. Speed: a 64×256×256 float32 stack blurred by a 33×33×33 PSF, ``deconvolve(method="rl")``
   (no acceleration, so both run the same multiplicative update) against
   :func:`skimage.restoration.richardson_lucy` (``clip=False``, ``filter_epsilon`` unset), both in
   float32, in the same process; seconds per iteration from the difference between two iteration
   counts (so the one-off setup is not counted). psfkit is timed with ``boundary="zero"``
   (scikit-image's model) and with its default ``"extend"`` on all CPUs, and (``zero``) on one thread
   like scipy's FFTs. Each of three rounds times every contender once, one after the other, so a
   round's ratio compares runs under the same load; the file keeps the medians and every round's ratio.
   Both use the same FFT grid (N + P - 1 rounded up, 96×288×288); scipy's ``fftconvolve`` transforms
   the PSF again at every convolution (6 FFTs per iteration against psfkit's 4), and psfkit skips the
   planes of a transform that are known to be zero or are not read (the 64 data planes in 96), and
   shares the planes out to its threads on demand. psfkit's FFTW plans are made with
   ``FFTW_ESTIMATE`` (bit-reproducible); ``FFTW_MEASURE`` would be ~1.6x faster per 3-D transform.
2. Memory: tracemalloc peak of one ``deconvolve`` call (``zero`` without acceleration, and the
   default: ``extend``, accelerated), in units of the image's float32 size.
3. deconwolf's geometry: accelerated RL (``deconvolve(method="rl", iterations=50)``, float32, default
   boundary) on a single thread (FFTW through ``workers=1``, numba, OpenMP and BLAS pools at 1 by
   environment, in a subprocess), whole-call wall time, next to deconwolf's 27-30 s measured
   elsewhere (deconwolf is not installed here). deconwolf's case is a 32×256×256 stack with a
   65×129×129 PSF; psfkit needs a PSF no taller than the stack, so it runs the case with the PSF cut to
   31 planes (a smaller grid, 63×384×384), and a 64×256×256 stack with a 33×129×129 PSF, whose grid
   is deconwolf's 96×384×384.
4. DAPI: ``psfkit deconvolve`` on deconwolf's widefield DAPI stack (40×201×101, NA 1.45, n 1.512,
   461 nm, 130 nm pixels, 300 nm steps) with the Born–Wolf PSF, wall time of the whole command.
"""
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "deconvolution_3d.json"
DAPI = ROOT.parent / "shared" / "data" / "deconwolf_dapi_widefield" / "dapi_001.tif"
SHAPE = (64, 256, 256)
PSF_SIZE = 33
DECONWOLF_SHAPE = (32, 256, 256)
DECONWOLF_PSF_SHAPE = (65, 129, 129)
DECONWOLF_ITERATIONS = 50
# every thread pool a run could use: FFTW's are set by deconvolve(workers=1)
SINGLE_THREAD = ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def gaussian_psf(size, sigmas):
    """Normalised 3-D Gaussian of ``size`` (an int or one length per axis)."""
    sizes = (size,) * 3 if np.isscalar(size) else size
    axes = np.meshgrid(*[np.arange(n) - n // 2 for n in sizes], indexing="ij")
    psf = np.exp(-sum(a**2 / (2 * s**2) for a, s in zip(axes, sigmas)))
    return (psf / psf.sum()).astype(np.float32)


def specimen(rng):
    x = np.zeros(SHAPE, np.float32)
    idx = tuple(rng.integers(0, n, 400) for n in SHAPE)
    x[idx] = rng.uniform(500, 2000, 400).astype(np.float32)
    return x + np.float32(10)


def seconds(run, n):
    start = time.perf_counter()
    run(n)
    return time.perf_counter() - start


def speed(image, psf, low=2, high=8, rounds=3):
    """Seconds per iteration, (t(high) - t(low)) / (high - low), of scikit-image and psfkit's variants.

    Each round times every contender once, one after the other, so a round's ratios compare runs made under
    the same machine load; the medians over the rounds are kept, and each round's skimage/psfkit ratio.
    """
    from skimage.restoration import richardson_lucy as sk_rl

    from psfkit import deconvolve

    def ours(boundary, workers=None):
        return lambda n: deconvolve(image, psf, method="rl", iterations=n, acceleration=False,
                                    boundary=boundary, dtype=np.float32, workers=workers)

    def theirs(n):
        out = sk_rl(image, psf, num_iter=n, clip=False)
        assert out.dtype == np.float32
        return out

    contenders = {"skimage": theirs, "psfkit_zero": ours("zero"), "psfkit_extend": ours("extend"),
                  "psfkit_zero_1_thread": ours("zero", workers=1)}  # scipy's FFTs run on one thread
    for run in contenders.values():
        run(1)  # warm-up (numba, FFTW plans)
    per_round = {name: [] for name in contenders}
    loads = []
    for _ in range(rounds):
        for name, run in contenders.items():
            per_round[name].append((seconds(run, high) - seconds(run, low)) / (high - low))
        loads.append(round(os.getloadavg()[0], 2))
    result = {"iterations_timed": [low, high], "rounds": rounds}
    for name, times in per_round.items():
        result[f"{name}_s_per_iteration"] = round(float(np.median(times)), 4)
    for name in contenders:
        if name != "skimage":
            ratios = [sk / ours for sk, ours in zip(per_round["skimage"], per_round[name])]
            result[f"speedup_{name.removeprefix('psfkit_')}"] = round(float(np.median(ratios)), 2)
            result[f"speedup_{name.removeprefix('psfkit_')}_per_round"] = [round(r, 2) for r in ratios]
    result["loadavg_1min_per_round"] = loads
    return result


def peak_memory(image, psf):
    """tracemalloc peak of whole ``deconvolve`` calls, in units of the image's size."""
    from psfkit import deconvolve

    peaks = {}
    for name, options in {"zero": dict(acceleration=False, boundary="zero"), "extend": {}}.items():
        tracemalloc.start()
        deconvolve(image, psf, method="rl", iterations=3, dtype=np.float32, **options)
        peaks[f"peak_memory_{name}_buffers"] = round(tracemalloc.get_traced_memory()[1] / image.nbytes, 2)
        tracemalloc.stop()
    return peaks


def deconwolf_child(stack, psf_shape):
    """Time deconvolve on one geometry in this (single-threaded) process; print the seconds as JSON."""
    from psfkit import deconvolve

    rng = np.random.default_rng(0)
    image = rng.poisson(100, stack).astype(np.float32)
    psf = gaussian_psf(psf_shape, (6.0, 2.0, 2.0))
    deconvolve(image[:8, :32, :32], gaussian_psf(5, (1.0, 1.0, 1.0)), method="rl", iterations=2)  # warm-up
    start = time.perf_counter()
    deconvolve(image, psf, method="rl", iterations=DECONWOLF_ITERATIONS, dtype=np.float32, workers=1)
    print(json.dumps({"wall_s": time.perf_counter() - start}))


def single_thread_wall(stack, psf_shape, repeat):
    env = dict(os.environ, **{name: "1" for name in SINGLE_THREAD})
    command = [sys.executable, __file__, "--deconwolf-child", ",".join(map(str, stack + psf_shape))]
    times = []
    for _ in range(repeat):
        out = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
        times.append(round(json.loads(out.stdout.strip().splitlines()[-1])["wall_s"], 1))
    return times


def deconwolf_geometry(repeat=2):
    """Wall time of accelerated RL on deconwolf's benchmark geometry, one thread, in subprocesses.

    psfkit needs a PSF no taller than the stack, so the 65-plane PSF is cut to its central 31 planes (an FFT
    grid of 64 x 384 x 384 against deconwolf's 96 x 384 x 384); a 64 x 256 x 256 stack with a 33 x 129 x 129
    PSF runs on deconwolf's grid, the work per iteration of deconwolf's case.
    """
    cropped = (31,) + DECONWOLF_PSF_SHAPE[1:]
    same_grid = ((64,) + DECONWOLF_SHAPE[1:], (33,) + DECONWOLF_PSF_SHAPE[1:])
    return {
        "deconwolf_case": {"shape": list(DECONWOLF_SHAPE), "psf_shape": list(DECONWOLF_PSF_SHAPE),
                           "iterations": DECONWOLF_ITERATIONS},
        "deconwolf_reference_wall_s": [27, 30],
        "deconwolf_reference": "deconwolf (C, FFTW), single-threaded, 50 accelerated iterations of the case above, "
        "measured on a machine like this one; deconwolf is not installed here, so it was not rerun",
        "call": 'deconvolve(image, psf, method="rl", iterations=50, dtype=np.float32, workers=1): default '
        'acceleration and boundary="extend", float32 Poisson data, the whole call timed',
        "environment": {name: "1" for name in SINGLE_THREAD},
        "psfkit_psf_cut_to_31_planes": {"shape": list(DECONWOLF_SHAPE), "psf_shape": list(cropped),
                                        "wall_s": single_thread_wall(DECONWOLF_SHAPE, cropped, repeat)},
        "psfkit_same_fft_grid": {"shape": list(same_grid[0]), "psf_shape": list(same_grid[1]),
                                 "wall_s": single_thread_wall(*same_grid, repeat)},
        "loadavg_1min_after": round(os.getloadavg()[0], 2),
    }


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-dapi", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-deconwolf", action="store_true")
    parser.add_argument("--deconwolf-child", help=argparse.SUPPRESS)  # stack and PSF shape, 6 integers
    args = parser.parse_args(argv)
    if args.deconwolf_child:
        sizes = tuple(int(n) for n in args.deconwolf_child.split(","))
        return deconwolf_child(sizes[:3], sizes[3:])
    from psfkit import convolve

    result = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    result["machine"] = machine_info()
    rng = np.random.default_rng(0)
    psf = gaussian_psf(PSF_SIZE, (4.0, 1.5, 1.5))
    image = convolve(specimen(rng), psf)
    image = np.maximum(image + rng.normal(0, 1, image.shape).astype(np.float32), 0).astype(np.float32)
    if not args.skip_speed:
        result["speed"] = {"shape": list(SHAPE), "psf_shape": [PSF_SIZE] * 3, "dtype": "float32",
                           **speed(image, psf), **peak_memory(image, psf),
                           "image_buffer_mb": round(image.nbytes / 2**20, 1)}
        print(json.dumps(result["speed"], indent=1))
    if not args.skip_deconwolf:
        result["deconwolf_geometry"] = deconwolf_geometry()
        print(json.dumps(result["deconwolf_geometry"], indent=1))
    if not args.skip_dapi and DAPI.exists():
        with tempfile.TemporaryDirectory() as tmp:
            command = [
                sys.executable, "-m", "psfkit.cli", "deconvolve", str(DAPI), "-o", os.path.join(tmp, "out.tif"),
                "--na", "1.45", "--immersion-index", "1.512", "--wavelength", "0.461", "--pixel-size", "0.130",
                "--z-step", "0.300", "--modality", "widefield", "--model", "born-wolf",
            ]
            start = time.perf_counter()
            subprocess.run(command, check=True)
            wall = time.perf_counter() - start
        result["dapi_cli"] = {"command": " ".join(["psfkit"] + command[3:5] + ["-o", "out.tif"] + command[7:]),
                              "wall_s": round(wall, 1), "target_s": 120}
        print(json.dumps(result["dapi_cli"], indent=1))
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
