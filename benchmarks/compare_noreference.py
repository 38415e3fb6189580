"""Which no-reference criterion tells a restoration that is worse than its input? (issue #24, item 3)

Run ``python benchmarks/compare_noreference.py`` from the repository root (about 8 minutes on 2 cores); it prints a
table and writes ``benchmarks/results/noreference.json``. deepinv is not a psfkit dependency: its metrics are read
from a local copy given by ``--deepinv PATH`` (a folder holding the ``deepinv`` package, e.g. ``pip install
--no-deps --target PATH deepinv natsort h5py``; torchvision, which deepinv imports at the top but these metrics do
not use, is stubbed when its compiled operators do not match the installed torch). Without it those columns are
skipped.

Cases: the 36 two-dimensional cases of ``bench_real.py`` (same PSFs, specimens, noise levels and seeds). Outputs
judged against their input, each labelled *better* when its PSNR against the truth is >= the input's:

- ``identified + unrolled``: the network's PSF without optics and the unrolled network, background removed
  (``deblur(y)`` before the support test);
- ``identified + rl-tv``: the same PSF, ``deconvolve(y, psf)``;
- ``nominal + rl-tv``: the aberration-free PSF of the stated optics;
- ``oracle + rl-tv``: the true PSF.

Criteria, each answering "is the output better than the input?" without the truth: image decorrelation
resolution (``psfkit.decorrelation_resolution``: smaller after), deepinv's ``BlurStrength`` (smaller after) and
``SharpnessIndex`` (larger after), both on the pair scaled by the input's 0.1-99.9 percentile range, and psfkit's
support test (``deblur``'s: the PSF is not refuted; for the nominal and oracle PSFs always "better" by
construction of deblur, which trusts stated optics). Reported: accuracy, and *harm let through* -- outputs worse
than the input that the criterion calls better.
"""

import argparse
import sys

import _threads  # noqa: F401  (first: sets the BLAS threads before numpy is imported)

import json  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psfkit  # noqa: E402
import bench_real  # noqa: E402
from _common import machine_info  # noqa: E402
from calibrate_consistency import real_cases  # noqa: E402
from psfkit.identification._consistency import support_consistency  # noqa: E402
from psfkit.metrics import psnr  # noqa: E402
from psfkit.pipeline import camera_background  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "noreference.json"


def load_deepinv(path):
    """deepinv's (BlurStrength, SharpnessIndex) from a local copy, or None."""
    if path is None:
        return None
    import importlib.machinery
    from unittest import mock

    class Stub:  # torchvision: imported by deepinv's package, unused by these metrics
        def find_spec(self, name, _path, _target=None):
            if name.split(".")[0] == "torchvision":
                return importlib.machinery.ModuleSpec(name, self, is_package=True)

        def create_module(self, spec):
            module = mock.MagicMock()
            module.__path__, module.__spec__, module.__name__ = [], spec, spec.name
            return module

        def exec_module(self, module):
            pass

    sys.path.insert(0, str(path))
    try:
        import torchvision  # noqa: F401
    except Exception:
        sys.modules.pop("torchvision", None)
        sys.meta_path.insert(0, Stub())
    from deepinv.loss.metric import BlurStrength, SharpnessIndex

    return BlurStrength(), SharpnessIndex()


def scores(image, low, high, metrics):
    import torch

    out = {"decorrelation": float(psfkit.decorrelation_resolution(image))}
    if metrics is not None:
        x = torch.from_numpy(np.clip((image - low) / (high - low), 0, 1)[None, None].astype(np.float32))
        with torch.no_grad():
            out["BlurStrength"] = float(metrics[0](x).squeeze())
            out["SharpnessIndex"] = float(metrics[1](x).squeeze())
    return out


SHARPER = {"decorrelation": lambda a, b: a < b, "BlurStrength": lambda a, b: a < b,
           "SharpnessIndex": lambda a, b: a > b}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deepinv", type=Path, default=None)
    args = parser.parse_args()
    metrics = load_deepinv(args.deepinv)
    warnings.simplefilter("ignore")
    planes, _ = bench_real.load_specimens()
    rows = []
    for name, y, true_psf, nominal in real_cases():
        truth = bench_real.centre_crop(planes[name.split()[-2]], y.shape)
        net = psfkit.estimate_psf(y)
        outputs = {
            "identified + unrolled": psfkit.deconvolve(y, net, method="unrolled",
                                                       background=max(camera_background(y), 0.0)),
            "identified + rl-tv": psfkit.deconvolve(y, net),
            "nominal + rl-tv": psfkit.deconvolve(y, nominal),
            "oracle + rl-tv": psfkit.deconvolve(y, true_psf),
        }
        support = {"identified + unrolled": not support_consistency(y, net)["refuted"]}
        support["identified + rl-tv"] = support["identified + unrolled"]
        low, high = np.percentile(y, [0.1, 99.9])
        before = scores(y, low, high, metrics)
        base = psnr(y, truth, data_range=1)
        for label, out in outputs.items():
            after = scores(out, low, high, metrics)
            verdicts = {m: bool(SHARPER[m](after[m], before[m])) for m in after}
            verdicts["support test"] = support.get(label, True)
            gain = psnr(out, truth, data_range=1) - base
            rows.append({"case": name, "output": label, "gain_db": gain, "better": bool(gain >= 0),
                         "verdicts": verdicts, "before": before, "after": after})
        print(f"  {name:45s} " + "  ".join(f"{r['output'].split()[0][:5]} {r['gain_db']:+5.1f}"
                                           for r in rows[-4:]), flush=True)
    criteria = list(rows[0]["verdicts"])
    summary = {}
    print("\n| criterion | accuracy | harm let through (worse outputs called better) | good outputs rejected |")
    print("|---|---|---|---|")
    worse = sum(not r["better"] for r in rows)
    good = len(rows) - worse
    for c in criteria:
        acc = np.mean([r["verdicts"][c] == r["better"] for r in rows])
        let = sum(r["verdicts"][c] and not r["better"] for r in rows)
        rejected = sum(not r["verdicts"][c] and r["better"] for r in rows)
        summary[c] = {"accuracy": float(acc), "harm_let_through": int(let), "good_rejected": int(rejected)}
        print(f"| {c} | {acc:.2f} | {let}/{worse} | {rejected}/{good} |")
    OUT.write_text(json.dumps({"summary": summary, "outputs_worse_than_input": worse, "outputs": len(rows),
                               "rows": rows, "deepinv": metrics is not None, "machine": machine_info()}, indent=1))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
