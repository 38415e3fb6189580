"""The dense MTF network (issue #25) on the held-out sets of bench_identification.py, beside the floor.

Run from the repository root::

    python benchmarks/bench_identifier_network.py [--per-kind 4] [--mild-per-kind 2] [--no-refine]

Same specimens, PSFs (Noll 4-11, U[-0.15, 0.15] waves, and the mild set
U[-0.05, 0.05]; fc U[0.125, 0.25]), seeds and noise levels as
``bench_identification.py``: real convolutions (issue #25's rung 5).
Rows, mean PSF SNR (dB, raw: no alignment) per noise level, all in one process:

- *MTF network alone* (fc known / unknown): :class:`psfkit.learned.mtf_net.MTFNet`'s
  predicted MTF, the image-free fit of :mod:`psfkit.identification._mtf_fit`
  (8 starts, Noll 4-15), its best hypothesis oriented by ``choose_orientation``
  (which reads the image, for the point reflection only);
- *coefficient network alone*: ``estimate_psf(refine=False)``, the bundled
  coefficient network that ``estimate_psf`` returns without refinement;
- ``estimate_psf(refine=True)`` (26 starts + the sparsity fit), the default
  ``refine=None`` (derived: ``refine=True``'s result where
  ``refines_by_default`` says so, else ``refine=False``'s, and their summed
  time), and with ``--with-starts`` ``refine=True`` with the MTF network's
  hypotheses as extra starts (``estimate._NETWORK_STARTS``, off by default);
- the floor: the image-blind mean PSF at the true fc.

On the measured PSFs of ``bench_measured_psfs.py`` (light sheet, confocal;
fc as fitted there; the confocal image downsampled into the network's range):
the MTF network alone, the coefficient network alone and the Airy pattern at
that fc (the nominal aberration-free PSF).

Also: seconds per image, the mean absolute error per Noll term of the MTF
network's best hypothesis (the point reflection resolved against the truth;
terms 12-15 are zero in the truth), and the Spearman correlation between the
MTF network's uncertainty (``info["uncertainty"]``) and the actual error
(-PSF SNR) of the MTF network's estimate, of ``refine=False``'s and of the
default's, per noise level and pooled.
Writes results/identifier_network.json.
"""

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import psfkit  # noqa: E402
import bench_identification as bench  # noqa: E402
from psfkit.identification import _mtf_fit, estimate  # noqa: E402
from psfkit.identification._orientation import choose_orientation, odd_terms  # noqa: E402
from psfkit.learned._weights import model_card  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
FIT_NOLL = tuple(range(4, 16))
_ODD_FIT = odd_terms(FIT_NOLL)


def mtf_alone(y, cutoff):
    """(psf, seconds, coefficients (12,), uncertainty) of the MTF network and its image-free fit."""
    start = time.perf_counter()
    thetas, fcs, _, uncertainty = _mtf_fit.network_hypotheses(y, cutoff, indices=FIT_NOLL)
    theta = choose_orientation(y, thetas[:1], fcs[:1], indices=FIT_NOLL)[0]
    psf = psfkit.zernike_psf(theta, cutoff=float(fcs[0]), size=bench.SIZE, indices=FIT_NOLL)
    return psf, time.perf_counter() - start, theta, uncertainty


def timed(y, cutoff, refine, network_starts=False):
    default, estimate._NETWORK_STARTS = estimate._NETWORK_STARTS, network_starts
    try:
        start = time.perf_counter()
        psf, info = psfkit.estimate_psf(y, cutoff=cutoff, refine=refine, size=bench.SIZE, return_coefficients=True)
        return psf, time.perf_counter() - start, info
    finally:
        estimate._NETWORK_STARTS = default


def spearman(a, b):
    from scipy.stats import spearmanr

    return round(float(spearmanr(a, b).statistic), 3)


def run(cases, amplitude, with_refinement, with_starts=False):
    rows, terms, uncertainty, pooled = {}, {}, {}, []
    for noise, kwargs in bench.NOISE.items():
        rng = np.random.default_rng({"none": 1, "moderate": 2, "strong": 3}[noise])
        floor_rng = np.random.default_rng(11)
        scores, seconds = {}, {}
        errors, spreads, mtf_errors, default_errors, coefficient_errors = [], [], [], [], []

        def add(name, psf, h, sec=None):
            scores.setdefault(name, []).append(psfkit.psf_snr(psf, h))
            if sec is not None:
                seconds.setdefault(name, []).append(sec)

        for kind, theta, fc, x in cases:
            h = psfkit.zernike_psf(theta, cutoff=fc, size=bench.SIZE, indices=bench.NOLL)
            y = psfkit.simulate_acquisition(x, h, bits=16, salt_pepper=1e-5, rng=rng, **kwargs)
            psf, sec, best, spread = mtf_alone(y, fc)
            add("MTF network alone, fc known", psf, h, sec)
            truth = np.concatenate([theta, np.zeros(len(FIT_NOLL) - len(theta))])
            errors.append(min(np.abs(best - truth), np.abs(np.where(_ODD_FIT, -best, best) - truth), key=np.sum))
            spreads.append(spread)
            mtf_errors.append(-scores["MTF network alone, fc known"][-1])
            add("MTF network alone, fc unknown", mtf_alone(y, None)[0], h)
            network_psf, network_sec, info = timed(y, fc, False)
            add("coefficient network alone (refine=False), fc known", network_psf, h, network_sec)
            coefficient_errors.append(-scores["coefficient network alone (refine=False), fc known"][-1])
            if with_refinement:
                refined_psf, sec, _ = timed(y, fc, True)
                add("refine=True, fc known", refined_psf, h, sec)
                # the default refines exactly when refines_by_default says so: derived, not run a third time
                refines = estimate.refines_by_default(info["coefficients"])
                add("default (refine=None), fc known", refined_psf if refines else network_psf, h,
                    network_sec + sec if refines else network_sec)
                default_errors.append(-scores["default (refine=None), fc known"][-1])
                if with_starts:
                    psf, sec, _ = timed(y, fc, True, network_starts=True)
                    add("refine=True with the MTF network's hypotheses as extra starts, fc known", psf, h, sec)
            add("image-blind mean PSF", bench.mean_psf(fc, floor_rng, amplitude=amplitude), h)
            print(f"  {noise} {kind}: " + ", ".join(f"{k.split(',')[0]} {v[-1]:.1f}" for k, v in scores.items()),
                  flush=True)
        rows[noise] = {k: round(float(np.mean(v)), 2) for k, v in scores.items()}
        rows[noise].update({f"seconds, {k}": round(float(np.mean(v)), 3) for k, v in seconds.items()})
        terms[noise] = dict(zip([f"Z{j}" for j in FIT_NOLL], np.round(np.mean(errors, axis=0), 4).tolist()))
        uncertainty[noise] = {"vs MTF network error": spearman(spreads, mtf_errors),
                              "vs refine=False error": spearman(spreads, coefficient_errors)}
        if default_errors:
            uncertainty[noise]["vs default error"] = spearman(spreads, default_errors)
        pooled.append((spreads, mtf_errors, coefficient_errors, default_errors))
    spreads, mtf_errors, coefficient_errors, default_errors = (np.concatenate(v) for v in zip(*pooled))
    uncertainty["all levels"] = {"vs MTF network error": spearman(spreads, mtf_errors),
                                 "vs refine=False error": spearman(spreads, coefficient_errors)}
    if len(default_errors):
        uncertainty["all levels"]["vs default error"] = spearman(spreads, default_errors)
    return rows, terms, uncertainty


def measured(per_kind, data):
    """The MTF network alone on the measured PSFs of bench_measured_psfs.py, beside the Airy pattern (nominal)."""
    import bench_measured_psfs as measured_bench

    from psfkit.identification.resampling import dct_downsample, oversampling_factor

    rows = {}
    for name, reference, fc, _, shape, _, _ in measured_bench.set_ups(data):
        size = reference.shape[0]
        factor = oversampling_factor(fc)
        for noise, kwargs in bench.NOISE.items():
            rng = np.random.default_rng(3_000_017)
            noise_rng = np.random.default_rng({"none": 1, "moderate": 2, "strong": 3}[noise])
            scores = {"MTF network alone": [], "coefficient network alone (refine=False)": [],
                      "Airy at fitted fc (nominal)": []}
            for _ in range(per_kind):
                for kind in bench.KINDS:
                    x = measured_bench.specimen(kind, rng, shape)
                    y = psfkit.simulate_acquisition(x, reference, bits=16, salt_pepper=1e-5, rng=noise_rng, **kwargs)
                    small = dct_downsample(y, factor) if factor > 1 else y
                    thetas, fcs, _, _ = _mtf_fit.network_hypotheses(small, fc * factor, indices=FIT_NOLL)
                    theta = choose_orientation(small, thetas[:1], fcs[:1], indices=FIT_NOLL)[0]
                    estimates = {
                        "MTF network alone": psfkit.zernike_psf(theta, cutoff=fc, size=size, indices=FIT_NOLL),
                        "coefficient network alone (refine=False)": psfkit.estimate_psf(
                            y, cutoff=fc, refine=False, size=size),
                        "Airy at fitted fc (nominal)": psfkit.airy_psf(cutoff=fc, size=size),
                    }
                    for method, h in estimates.items():
                        scores[method].append(float(psfkit.psf_snr(h, reference)))
            rows[f"{name}, {noise}"] = {k: round(float(np.mean(v)), 2) for k, v in scores.items()}
            print(f"  measured {name} {noise}: {rows[f'{name}, {noise}']}", flush=True)
    return rows


def table(rows):
    names = list(next(iter(rows.values())))
    lines = ["| | " + " | ".join(rows) + " |", "|---" * (len(rows) + 1) + "|"]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(f"{rows[n].get(name, float('nan')):.2f}" for n in rows) + " |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--per-kind", type=int, default=4, help="images per specimen kind and noise level (5 kinds)")
    p.add_argument("--mild-per-kind", type=int, default=2, help="the same for the mild set (0: skip)")
    p.add_argument("--no-refine", action="store_true", help="skip the refinement rows (slow: ~6 s per image)")
    p.add_argument("--with-starts", action="store_true",
                   help="also refine=True with the MTF network's hypotheses as extra starts (~7 s per image)")
    p.add_argument("--measured-per-kind", type=int, default=2, help="images per kind on the measured PSFs (0: skip)")
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    p.add_argument("--out", default=str(RESULTS / "identifier_network.json"))
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")
    import torch

    torch.set_num_threads(2)
    card = model_card("mtf")
    source = f"bundled mtf.pt (sha256 {card['sha256'][:12]}, {card['wall_time_minutes']} min of training in its last run)"
    print(f"network: {source}")
    out = {"machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads", "network": source,
           "images_per_noise_level": 5 * args.per_kind}
    rows, terms, unc = run(bench.held_out_set(args.per_kind), bench.AMPLITUDE, not args.no_refine, args.with_starts)
    print("\n## Strongly aberrated held-out set (Noll 4-11, U[-0.15, 0.15] waves)\n")
    print(table(rows))
    print("\nper-term mean absolute error (waves), MTF network alone, fc known:")
    for noise, t in terms.items():
        print(f"  {noise}: " + ", ".join(f"{k} {v:.3f}" for k, v in t.items()))
    print("\nSpearman (uncertainty vs PSF error):", json.dumps(unc))
    out.update({"strong_set": rows, "per_term_error": terms, "uncertainty_spearman": unc})
    if args.mild_per_kind:
        cases = bench.held_out_set(args.mild_per_kind, seed=1_000_033, amplitude=bench.MILD_AMPLITUDE)
        mild, _, mild_unc = run(cases, bench.MILD_AMPLITUDE, False)
        print("\n## Mild set (U[-0.05, 0.05] waves)\n")
        print(table(mild))
        out.update({"mild_set": mild, "mild_uncertainty_spearman": mild_unc,
                    "mild_images_per_noise_level": 5 * args.mild_per_kind})
    if args.measured_per_kind:
        out["measured_psfs"] = measured(args.measured_per_kind, Path(args.data))
        out["measured_images_per_noise_level"] = 5 * args.measured_per_kind
    Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
