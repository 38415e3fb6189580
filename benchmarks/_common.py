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


class EstimateCache:
    """This image's network and ``refine=True`` estimates, and ``estimate_psf``'s default derived from them.

    ``estimate_psf(refine=None)`` returns the refined estimate exactly when
    ``refines_by_default`` says so for the network's coefficients (a test
    checks the rule on ``estimate_psf`` itself), so the default's rows reuse
    the two fits of the same image instead of running the refinement a third
    time. They equal a direct call up to the refinement's small run-to-run
    variation (FFTW plans), and are charged the time the default would take.
    """

    def __init__(self):
        self.last = {}

    def estimate(self, y, key, refine, **kwargs):
        """``estimate_psf(y, refine=refine, **kwargs)`` as (psf, info), remembered under ``key``."""
        import psfkit

        start = time.perf_counter()
        psf, info = psfkit.estimate_psf(y, refine=refine, return_coefficients=True, **kwargs)
        self.last[key, refine] = psf, info, time.perf_counter() - start
        return psf, info

    def default(self, key):
        """(psf, seconds, refined) of ``estimate_psf(refine=None)`` on the image last estimated under ``key``."""
        from psfkit.identification.estimate import refines_by_default

        network, info, seconds = self.last[key, False]
        if refines_by_default(info["coefficients"]):
            refined, _, refine_seconds = self.last[key, True]
            return refined, seconds + refine_seconds, True
        return network, seconds, False
