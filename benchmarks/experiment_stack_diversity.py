"""Experiment (issue #25): does a stack's phase diversity help the MTF network identify the PSF?

Run from the repository root::

    python benchmarks/experiment_stack_diversity.py [--per-kind 2] [--planes 9] [--step 0.07]

Synthetic widefield stacks of a thin specimen (the held-out specimens and PSFs
of ``bench_identification.py``, Noll 4-11 U[-0.15, 0.15] waves, fc known):
plane ``k`` (``k = -P//2 .. P//2``) is the specimen blurred by the PSF with
``k * step`` waves of Noll-4 defocus added (0.07 waves a plane: a 0.2 um z
step at NA 1.4, 520 nm, oil; paraxially ``z NA^2 / (4 sqrt(3) n lambda)``),
then ``simulate_acquisition`` at the three noise levels. The network reads
each plane; the coefficients are fitted by ``_mtf_fit.fit_to_mtf``

- *2-D*: to the in-focus plane's predicted MTF alone;
- *stack*: to every plane's predicted MTF at once, with the planes' known
  defocus offsets (one set of coefficients; the defocus between planes is
  the diversity that fixes the sign of the even terms).

Both are the network alone (image-free fits); the point reflection is chosen
on the in-focus plane (``choose_orientation``). Scored: PSF SNR of the
in-focus PSF (raw) and seconds. Writes results/stack_diversity.json.
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
from psfkit.identification import _mtf_fit  # noqa: E402
from psfkit.identification._orientation import choose_orientation  # noqa: E402
from psfkit.learned._weights import bundled_network  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
FIT_NOLL = tuple(range(4, 16))


def identify(net, planes, offsets, fc, centre):
    start = time.perf_counter()
    mean, spread = _mtf_fit.predict_mtf(net, list(planes), [fc] * len(planes), "cpu")
    thetas, fcs, _ = _mtf_fit.fit_to_mtf(mean, spread, fc, indices=FIT_NOLL,
                                         defocus=offsets if len(planes) > 1 else None)
    theta = choose_orientation(centre, thetas[:1], fcs[:1], indices=FIT_NOLL)[0]
    return psfkit.zernike_psf(theta, cutoff=fc, size=bench.SIZE, indices=FIT_NOLL), time.perf_counter() - start


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--per-kind", type=int, default=2)
    p.add_argument("--planes", type=int, default=9)
    p.add_argument("--step", type=float, default=0.07, help="Noll-4 defocus between planes (waves)")
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")
    net = bundled_network("mtf", "cpu")
    offsets = (np.arange(args.planes) - args.planes // 2) * args.step
    results = {}
    for noise, kwargs in bench.NOISE.items():
        rng = np.random.default_rng({"none": 1, "moderate": 2, "strong": 3}[noise])
        scores = {"2-D (in-focus plane)": [], f"stack ({args.planes} planes)": []}
        seconds = {k: [] for k in scores}
        for kind, theta, fc, x in bench.held_out_set(args.per_kind):
            h = psfkit.zernike_psf(theta, cutoff=fc, size=bench.SIZE, indices=bench.NOLL)
            planes = []
            for d in offsets:
                hk = psfkit.zernike_psf(theta + np.r_[d, np.zeros(7)], cutoff=fc, size=bench.SIZE, indices=bench.NOLL)
                planes.append(psfkit.simulate_acquisition(x, hk, bits=16, salt_pepper=1e-5, rng=rng, **kwargs))
            centre = planes[args.planes // 2]
            for name, stack in zip(scores, ([centre], planes)):
                psf, sec = identify(net, stack, offsets, fc, centre)
                scores[name].append(psfkit.psf_snr(psf, h))
                seconds[name].append(sec)
            print(f"  {noise} {kind}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in scores.items()), flush=True)
        results[noise] = {**{k: round(float(np.mean(v)), 2) for k, v in scores.items()},
                          **{f"seconds, {k}": round(float(np.mean(v)), 2) for k, v in seconds.items()}}
        print(noise, json.dumps(results[noise]), flush=True)
    out = {"per_kind": args.per_kind, "images_per_noise_level": 5 * args.per_kind, "planes": args.planes,
           "defocus_step_waves": args.step, "results": results}
    (RESULTS / "stack_diversity.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
