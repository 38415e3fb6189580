"""psfkit benchmark suites: one entry point.

Usage (from the repository root)::

    python benchmarks/run.py [SUITE ...] [--quick]

Suites: ``identification`` (PSF SNR of estimate_psf, the classical baselines
and the trivial floors; also over-sampled images, fc below the training range), ``deblurring`` (PSNR / SSIM of the blind pipeline,
the baselines and the non-blind oracle), ``speed`` (zernike_psf throughput,
convolution / product convolution, deconvolution iterations vs scikit-image,
identification latency), ``baselines`` (fidelity of l0-gradient and
Goldstein-Fattal against the IPOL reference figures) and ``deconvolution``
(non-blind quality). No suite named: all of them. ``--quick`` runs the
CI-sized version of each. Every script prints Markdown tables and writes
``benchmarks/results/<name>.json``; a full run then draws
``benchmarks/results/<name>.png`` (``plots.py``). See benchmarks/README.md for
the protocol.
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

SUITES = {
    "identification": (
        [["bench_identification.py", "--baselines"], ["bench_oversampled.py"], ["bench_measured_psfs.py"]],
        [["bench_identification.py", "--quick"], ["bench_oversampled.py", "--quick"], ["bench_measured_psfs.py", "--quick"]],
    ),
    "deblurring": (["bench_deblurring.py", "--baselines"], ["bench_deblurring.py", "--quick"]),
    "speed": (
        [["bench_zernike.py"], ["bench_convolution.py"], ["bench_deconvolution.py"], ["bench_deconvolution_3d.py"]],
        [["bench_zernike.py", "--batch", "64", "--repeat", "1"], ["bench_convolution.py", "--repeat", "1"],
         ["bench_deconvolution.py", "--size", "512", "--repeat", "1"], ["bench_deconvolution_3d.py", "--skip-speed"]],
    ),
    "baselines": (["bench_baselines.py"], ["bench_baselines.py", "--quick"]),
    "deconvolution": (["bench_deconvolution_quality.py"], ["bench_deconvolution_quality.py", "--quick"]),
}


def _commands(suite, quick):
    full, fast = SUITES[suite]
    chosen = fast if quick else full
    return chosen if isinstance(chosen[0], list) else [chosen]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("suites", nargs="*", metavar="SUITE", help=f"one or more of {', '.join(SUITES)} (default: all)")
    p.add_argument("--quick", action="store_true", help="CI-sized runs")
    args = p.parse_args(argv)
    unknown = [s for s in args.suites if s not in SUITES]
    if unknown:
        p.error(f"unknown suite(s) {', '.join(unknown)}; choose from {', '.join(SUITES)}")
    failed = []
    for suite in args.suites or list(SUITES):
        for command in _commands(suite, args.quick):
            print(f"\n# {suite}: {' '.join(command)}\n", flush=True)
            start = time.perf_counter()
            code = subprocess.call([sys.executable, str(HERE / command[0]), *command[1:]])
            print(f"\n({suite} finished in {time.perf_counter() - start:.0f} s, exit {code})", flush=True)
            if code:
                failed.append(" ".join(command))
    if not args.quick:  # figures of the full results only
        try:
            import plots

            for path in plots.write_all():
                print(f"wrote {path}")
        except ImportError as error:  # matplotlib is optional
            print(f"figures skipped: {error}")
    if failed:
        print("failed: " + "; ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
