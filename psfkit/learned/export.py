"""Export a training checkpoint as bundled weights with a model card.

Usage::

    python -m psfkit.learned.export RUN_DIR [--name identifier] [--validation FILE.json]

Writes ``psfkit/learned/weights/<name>.pt`` (the state dict only, loadable
with ``torch.load(..., weights_only=True)``) and ``<name>.json``, the model
card: SHA-256 of the weights, the exact training command, seed, hardware,
wall time and the validation history recorded by the run, plus any
benchmark table passed with ``--validation``.
"""

import argparse
import json
import shlex
from pathlib import Path

from ._weights import WEIGHTS_DIR, sha256


def export(run_dir, name="identifier", validation=None, notes=None):
    import torch

    run_dir = Path(run_dir)
    state = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    info_path = run_dir / "training.json"
    if info_path.exists():
        training = json.loads(info_path.read_text())
    else:  # a run still in progress: what its last checkpoint knows
        training = {"step": int(state["step"]), "total_steps": None, "minutes": round(float(state["elapsed"]) / 60, 2),
                    "hardware": "see training log", "device": "cpu", "history": json.loads(state["history"]),
                    "args": {"seed": None}}
    weights = {k: v.float() if v.is_floating_point() else v for k, v in state["model"].items()}
    WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    path = WEIGHTS_DIR / f"{name}.pt"
    torch.save(weights, path)
    args = training["args"]
    command = "python -m psfkit.learned.train_identifier " + " ".join(
        f"--{k.replace('_', '-')} {shlex.quote(str(v))}" if not isinstance(v, bool) else (f"--{k.replace('_', '-')}" if v else "")
        for k, v in args.items()
        if v is not None and k not in ("quiet",)
    )
    card = {
        "name": name,
        "file": path.name,
        "sha256": sha256(path),
        "parameters": int(sum(v.numel() for v in weights.values() if v.is_floating_point())),
        "training_command": " ".join(command.split()),
        "seed": args["seed"],
        "steps": training["step"],
        "schedule_steps": training["total_steps"],
        "wall_time_minutes": training["minutes"],
        "hardware": training["hardware"],
        "device": training["device"],
        "validation_history": training["history"],
        "data_recipe": (
            "synthetic only (psfkit.learned.synthesis): specimens from psfkit.data.random_specimen (80%) and "
            "crops of scikit-image's bundled images (20%, random scale 0.5-1.5 and gamma 0.5-2), random rot90/flip; "
            "Noll 4-11 coefficients U[-theta_max, theta_max], theta_max U[0.02, 0.25] (curriculum: upper bound "
            "0.1 -> 0.25 over the first quarter), fc U[0.125, 0.25]; blur by FFT with a 64x64 PSF; camera: gain "
            "log-U[5, 5000] photons/unit, background U[0, 0.1] (70%), read noise log-U[0.3, 10] e-, ADU gain "
            "U[0.5, 2], offset U[0, 500] ADU, 16-bit quantisation, salt-and-pepper 1e-5, 15% noiseless; "
            "crops 128/192/256 px; input = Welch log power spectrum (64x64 windows, half overlap, top half by "
            "contrast); fc and theta_max each given to the network with probability 0.5."
        ),
        "validation_set": "4 x 64 samples, crops 256 px, specimens and seeds disjoint from training (seed 10000 + seed)",
    }
    if validation is not None:
        card["benchmark"] = json.loads(Path(validation).read_text())
    if notes:
        card["notes"] = notes
    (WEIGHTS_DIR / f"{name}.json").write_text(json.dumps(card, indent=1) + "\n")
    return card


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir")
    p.add_argument("--name", default="identifier")
    p.add_argument("--validation", default=None, help="benchmark JSON to embed in the model card")
    p.add_argument("--notes", default=None)
    args = p.parse_args(argv)
    card = export(args.run_dir, args.name, args.validation, args.notes)
    print(f"wrote {WEIGHTS_DIR / card['file']} (sha256 {card['sha256'][:12]}...) and its model card")


if __name__ == "__main__":
    main()
