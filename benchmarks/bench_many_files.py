"""Throughput of ``psfkit deblur DIR/*.tif -o OUT/`` on dask.distributed: 1 worker against 2, side by side in one run.

Run from the repository root, with nothing else of yours running (it measures how well the CPUs are shared)::

    python benchmarks/bench_many_files.py [--files 16] [--size 512] [--repeat 2] [--command deblur]

Prints a Markdown table and writes ``benchmarks/results/many_files.json``.

``--files`` images of ``size x size`` (blurred, noisy cells: ``psfkit.data.cells`` through a mildly aberrated
33 x 33 PSF, uint16) are generated deterministically in a temporary folder. Each is then processed by the command
line's many-files runner (:func:`psfkit.batch.run_many`, the function ``psfkit deblur IN/*.tif -o OUT/`` calls)
with the command's default options (blind PSF identification and the learned deconvolution; ``--command
deconvolve`` instead runs RL-TV with the nominal PSF of stated optics, NumPy only):

- *serial*: every file in this process, one after the other, one thread (the reference for the cost of a file);
- *1 worker* and *2 workers*: a ``LocalCluster`` of that many worker processes (one thread each, BLAS/OpenMP/torch
  limited to one thread, :data:`psfkit.batch.LOCAL_CLUSTER`).

Two wall times per cluster: *end to end* (start the cluster, run all files, close it: what a user waits for,
including each worker's imports and network loading) and *steady* (a started cluster whose workers have each
processed one warm-up image; only the files). Runs are interleaved (1, 2, 1, 2, ...) and the minimum over
``--repeat`` is kept. Throughput ratio = wall(1 worker) / wall(2 workers).
"""

import _threads  # noqa: F401  (first: one BLAS/OpenMP thread in this process)

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import psfkit  # noqa: E402
import psfkit.batch as batch  # noqa: E402
import psfkit.cli as cli  # noqa: E402
from _common import machine_info  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "many_files.json"


def make_files(folder, n, size):
    import tifffile

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2026)
    paths = []
    for i in range(n):
        psf = psfkit.zernike_psf({4: 0.08 + 0.01 * (i % 4), 5: 0.03}, cutoff=0.2, size=33)
        image = psfkit.simulate_acquisition(psfkit.data.cells((size, size), rng=rng) * 1000 + 20, psf, gain=1.0,
                                            rng=rng)
        path = folder / f"image{i:02d}.tif"
        tifffile.imwrite(path, np.clip(image, 0, 65535).astype(np.uint16), imagej=True,
                         resolution=(1 / 0.1, 1 / 0.1), metadata={"unit": "um", "axes": "YX"})
        paths.append(path)
    return paths


def command_options(command):
    """The options the command line gives the task for ``psfkit <command> IN/*.tif -o OUT/`` (+ the optics for
    deconvolve), and the equivalent command."""
    if command == "deblur":
        args = cli.parser().parse_args(["deblur", "in.tif", "-o", "out/"])
        return cli._deblur_file, cli._options(args, cli._DEBLUR_OPTIONS), "psfkit deblur IN/*.tif -o OUT/"
    extra = ["--na", "1.2", "--wavelength", "0.5", "--iterations", "30", "--method", "rl-tv"]
    args = cli.parser().parse_args(["deconvolve", "in.tif", "-o", "out/", *extra])
    return (cli._deconvolve_file, cli._options(args, cli._DECONVOLVE_OPTIONS),
            "psfkit deconvolve IN/*.tif -o OUT/ " + " ".join(extra))


def serial(compute, paths, options, out):
    """Every file in this process, one after the other; per-file seconds."""
    seconds = []
    for path, output, psf_output in batch.plan(paths, out):
        seconds.append(batch.process_file(compute, path, output, psf_output, options, run="serial")[0])
    return seconds


def quiet_run(compute, jobs, options, **kwargs):
    done, failed = batch.run_many(compute, jobs, options, progress=False, out=open(os.devnull, "w"), **kwargs)
    if failed:
        raise SystemExit(f"files failed: {failed}")
    return [seconds for _, seconds in done]


def worker_threads():
    """What each worker's libraries would use (run on the workers)."""
    import os as _os
    import sys as _sys

    torch = _sys.modules.get("torch")
    return {
        "OMP_NUM_THREADS": _os.environ.get("OMP_NUM_THREADS"),
        "MALLOC_TRIM_THRESHOLD_": _os.environ.get("MALLOC_TRIM_THRESHOLD_"),
        "torch_threads": torch.get_num_threads() if torch is not None else None,
    }


def end_to_end(compute, paths, options, out, workers):
    start = time.perf_counter()
    per_file = quiet_run(compute, batch.plan(paths, out), options, workers=workers)
    return time.perf_counter() - start, per_file


def steady(compute, paths, options, out, warm, workers):
    client, cluster = batch.start_client(workers)
    try:
        # one warm-up image per worker, each on its own worker: imports, network weights, FFT plans
        addresses = list(client.scheduler_info()["workers"])
        for i, address in enumerate(addresses):
            (source, output, psf_output), = batch.plan([warm], out / f"warm{i}")
            client.submit(batch.process_file, compute, str(source), output, psf_output, options, run="warm",
                          workers=[address], pure=False).result()
        start = time.perf_counter()
        per_file = quiet_run(compute, batch.plan(paths, out / "files"), options, client=client)
        wall = time.perf_counter() - start
        threads = client.run(worker_threads)
    finally:
        client.close()
        cluster.close()
    return wall, per_file, list(threads.values())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--command", choices=("deblur", "deconvolve"), default="deblur")
    parser.add_argument("--threads", default="1", help="BLAS/OpenMP threads of this process (see _threads.py)")
    args = parser.parse_args(argv)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    compute, options, command = command_options(args.command)
    info = machine_info(dask=__import__("dask").__version__, distributed=__import__("distributed").__version__)
    print("machine:", ", ".join(f"{k} {v}" for k, v in info.items()), flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()

    root = Path(tempfile.mkdtemp(prefix="psfkit-bench-many-"))
    try:
        paths = make_files(root / "in", args.files, args.size)
        (warm,) = make_files(root / "warm", 1, args.size)
        print(f"\n{args.files} files of {args.size}x{args.size} in {root / 'in'}; {command}", flush=True)

        start = time.perf_counter()
        serial_seconds = serial(compute, paths, options, root / "serial")
        serial_wall = time.perf_counter() - start
        print(f"  serial, in this process: {serial_wall:.1f} s ({np.median(serial_seconds):.2f} s per file)",
              flush=True)

        runs = {1: {"end_to_end": [], "steady": []}, 2: {"end_to_end": [], "steady": []}}
        per_file, threads = {1: [], 2: []}, {}
        for r in range(args.repeat):
            for workers in (1, 2):
                wall, seconds = end_to_end(compute, paths, options, root / f"e{r}-{workers}", workers)
                runs[workers]["end_to_end"].append(wall)
                per_file[workers] += seconds
                print(f"  {workers} worker(s), end to end: {wall:.1f} s", flush=True)
            for workers in (1, 2):
                wall, seconds, threads[workers] = steady(compute, paths, options, root / f"s{r}-{workers}", warm,
                                                         workers)
                runs[workers]["steady"].append(wall)
                per_file[workers] += seconds
                print(f"  {workers} worker(s), steady: {wall:.1f} s", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    best = {w: {k: min(v) for k, v in r.items()} for w, r in runs.items()}
    ratio = {k: best[1][k] / best[2][k] for k in ("end_to_end", "steady")}
    rows = [
        {"setting": "serial (this process)", "workers": 0, "wall_s": serial_wall,
         "files_per_minute": 60 * args.files / serial_wall, "median_s_per_file": float(np.median(serial_seconds))},
    ]
    for workers in (1, 2):
        for kind in ("end_to_end", "steady"):
            rows.append({"setting": f"{workers} worker{'s' * (workers > 1)}, {kind.replace('_', ' ')}",
                         "workers": workers, "kind": kind, "wall_s": best[workers][kind],
                         "all_walls_s": runs[workers][kind], "files_per_minute": 60 * args.files / best[workers][kind],
                         "median_s_per_file": float(np.median(per_file[workers]))})
    print(f"\n| setting | wall s | files/min | median s/file (in its task) |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['setting']} | {row['wall_s']:.1f} | {row['files_per_minute']:.1f} | "
              f"{row['median_s_per_file']:.2f} |")
    print(f"\nthroughput 2 workers / 1 worker: end to end x{ratio['end_to_end']:.2f}, steady x{ratio['steady']:.2f} "
          f"(target x1.7); worker threads: {threads}")
    info["loadavg_1min_after"] = round(os.getloadavg()[0], 2)
    result = {
        "machine": info, "commit": commit, "command": command, "files": args.files, "size": args.size,
        "repeat": args.repeat, "benchmark": " ".join([sys.executable.split("/")[-1], *sys.argv]),
        "rows": rows, "ratio_2_vs_1": ratio, "worker_threads": {str(k): v for k, v in threads.items()},
        "serial_s_per_file": serial_seconds,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":  # the worker processes must not run the benchmark again
    main()
