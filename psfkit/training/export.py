"""Export a training checkpoint as bundled weights with a model card.

Usage::

    python -m psfkit.training.export RUN_DIR [--name identifier] [--validation FILE.json]

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

from psfkit.learned._weights import WEIGHTS_DIR, sha256


_MODULES = {"identifier": "psfkit.training.train_identifier", "mtf": "psfkit.training.train_mtf"}


def _recipe(module):
    """The data recipe and validation set that the training module ``module`` documents."""
    import importlib

    trainer = importlib.import_module(module)
    return trainer.DATA_RECIPE, trainer.VALIDATION_SET


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
    module = training.get("module", _MODULES.get(name, "psfkit.training.train_identifier"))
    recipe, validation_set = _recipe(module)
    command = f"python -m {module} " + " ".join(
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
        "schedule_steps": training.get("total_steps"),
        "wall_time_minutes": training["minutes"],
        "hardware": training["hardware"],
        "device": training.get("device", "cpu"),
        "validation_history": training["history"],
        "data_recipe": training.get("data_recipe", recipe),
        "validation_set": training.get("validation_set", validation_set),
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
