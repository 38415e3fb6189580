"""Wall time of ``psfkit.deblur`` against issue #24's speed targets (2 cores): 512 x 512 <= 5 s, 64 x 256 x 256 <= 60 s.

Run ``python benchmarks/bench_deblur_speed.py`` (about 1-2 minutes); it prints a table and writes
``benchmarks/results/deblur_speed.json``.

Cases, each timed end to end (PSF + deconvolution, default options, the second of two runs so that one-off costs
-- imports, numba compilation, loading the network -- are excluded; the first run's time is recorded too):

- 512 x 512 widefield image without optics (the network, and its refinement when it finds a strong aberration);
- the same with widefield optics sampled for the network (identified at the optics' fc);
- 512 x 512 Airyscan image with its optics (the nominal PSF);
- a 64 x 256 x 256 widefield stack with its optics (the nominal 3-D PSF, RL-TV in float32).

Specimens from :mod:`psfkit.data`, blurred by their own optics' PSF (a defocused Zernike pupil for the blind case),
Poisson noise at 300 photons.
"""

import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import psfkit  # noqa: E402
from _common import machine_info  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "deblur_speed.json"
TARGETS = {2: 5.0, 3: 60.0}


def cases():
    widefield = psfkit.Optics(na=1.4, wavelength=0.52, pixel_size=0.18 * 0.52 / 1.4)
    airyscan = psfkit.Optics(na=1.4, wavelength=0.52, pixel_size=0.0426, modality="airyscan", excitation=0.488)
    stack_optics = psfkit.Optics(na=1.4, wavelength=0.52, pixel_size=0.1, z_step=0.3)
    image = psfkit.data.cells((512, 512), rng=0)
    blind = psfkit.simulate_acquisition(image, psfkit.zernike_psf({4: 0.12, 6: 0.05}, cutoff=0.18, size=33),
                                        gain=300, rng=0)
    fine = psfkit.simulate_acquisition(image, psfkit.microscope_psf(airyscan, (33, 33)), gain=300, rng=0)
    specimen = np.zeros((64, 256, 256))
    rng = np.random.default_rng(0)
    specimen[tuple(rng.integers(0, n, 2000) for n in specimen.shape)] = rng.uniform(50, 200, 2000)
    stack = psfkit.simulate_acquisition(specimen + 1, psfkit.microscope_psf(stack_optics, (31, 65, 65)), gain=10,
                                        rng=0)
    return [
        ("512x512 widefield, no optics (blind)", blind, {}),
        ("512x512 widefield, optics (identified at fc)", blind, {"optics": widefield}),
        ("512x512 Airyscan, optics (nominal PSF)", fine, {"optics": airyscan}),
        ("64x256x256 widefield stack, optics (nominal 3-D PSF)", stack.astype(np.float32), {"optics": stack_optics}),
    ]


def main():
    warnings.simplefilter("ignore")
    rows = []
    print("| case | first run s | timed run s | target s | met | PSF source | method | iterations |")
    print("|---|---|---|---|---|---|---|---|")
    for name, image, options in cases():
        times = []
        for _ in range(2):
            start = time.perf_counter()
            _, _, info = psfkit.deblur(image, return_info=True, **options)
            times.append(time.perf_counter() - start)
        target = TARGETS[image.ndim]
        row = {"case": name, "shape": list(image.shape), "first_s": times[0], "seconds": times[1], "target_s": target,
               "met": times[1] <= target, "source": info["source"], "method": info["method"],
               "iterations": info["iterations"]}
        rows.append(row)
        print(f"| {name} | {times[0]:.2f} | {times[1]:.2f} | {target:g} | {'yes' if row['met'] else 'NO'} | "
              f"{info['source']} | {info['method']} | {info['iterations']} |", flush=True)
    RESULTS.write_text(json.dumps({"machine": machine_info(), "rows": rows}, indent=1))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
