"""Helpers shared by the benchmark scripts: timing and machine description."""

import os
import platform
import time


def timeit(func, repeat):
    """Minimum wall-clock and process CPU seconds over ``repeat`` calls after a warm-up.

    The minimum is the least disturbed run on a shared machine; CPU seconds
    (all threads) are less sensitive to other load.
    """
    func()
    wall, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        func()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return min(wall), min(cpu)


def machine_info(**extra):
    """Versions, CPU count and load of the machine a benchmark runs on."""
    import numpy
    import scipy

    import psfkit

    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "psfkit": psfkit.__version__,
    }
    for name in ("pyfftw", "torch", "skimage"):
        try:
            info[name] = __import__(name).__version__
        except ImportError:
            info[name] = None
    import sys

    if "torch" in sys.modules:
        info["torch_threads"] = sys.modules["torch"].get_num_threads()
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        info[variable] = os.environ.get(variable)
    if hasattr(os, "getloadavg"):
        info["loadavg_1min"] = round(os.getloadavg()[0], 2)
    info.update(extra)
    return info


def reused_rows(path, n, prefixes, key="rows"):
    """Rows of a committed full run whose method starts with one of ``prefixes``, marked ``reused``.

    For slow deterministic baselines on the same held-out set and seeds: the
    file must have been made with ``n`` images per kind.
    """
    import json

    previous = json.loads(path.read_text()) if path.exists() else {}
    if previous.get("images_per_kind_and_noise") != n:
        raise SystemExit(f"--reuse-baselines: {path} was not made with {n} images per kind; rerun with --baselines")
    rows = [dict(r, reused=True) for r in previous.get(key, []) if r["method"].startswith(tuple(prefixes))]
    if not rows:
        raise SystemExit(f"--reuse-baselines: {path} has no baseline rows; rerun with --baselines")
    return rows
