"""Checkpoint plumbing shared by the training scripts (resumable, seeded runs)."""

import json
import platform

import torch


def save_checkpoint(path, net, optimizer, step, elapsed, generator, np_rng, history):
    """Write model, optimiser, step, wall time, every random state and the history atomically."""
    state = {
        "model": net.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": step,
        "elapsed": elapsed,
        "rng_torch": generator.get_state(),
        "rng_numpy": json.dumps(np_rng.bit_generator.state),
        "history": json.dumps(history),
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_checkpoint(path, net, optimizer, generator, np_rng, device):
    """Restore a run saved by :func:`save_checkpoint`; returns ``(step, elapsed, history)``."""
    state = torch.load(path, map_location=device, weights_only=True)
    net.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["rng_torch"])
    np_rng.bit_generator.state = json.loads(state["rng_numpy"])
    return int(state["step"]), float(state["elapsed"]), json.loads(state["history"])


def write_info(out, args, step, elapsed, history, device, **extra):
    """``training.json``: what export.py turns into the model card."""
    info = {
        "step": step,
        "total_steps": args.steps,
        "minutes": round(elapsed / 60, 2),
        "device": str(device),
        "hardware": f"{platform.processor() or platform.machine()}, {args.threads} torch thread(s)"
        + (f", {torch.cuda.get_device_name()}" if device.type == "cuda" else ""),
        "args": vars(args),
        "history": history,
        **extra,
    }
    (out / "training.json").write_text(json.dumps(info, indent=1))
    return info


def training_parser(doc, *, out, steps, batch, lr, pool, validate_every, checkpoint_every, threads):
    """Argument parser with the options every training script shares (schedule, data pool, run control)."""
    import argparse

    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=out, help="run folder (checkpoint, logs)")
    p.add_argument("--steps", type=int, default=steps, help="total optimisation steps of the schedule")
    p.add_argument("--batch", type=int, default=batch)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pool", type=int, default=pool, help="specimens kept in memory")
    p.add_argument("--validate-every", type=int, default=validate_every)
    p.add_argument("--checkpoint-every", type=int, default=checkpoint_every)
    p.add_argument("--minutes", type=float, default=None, help="stop (resumably) after this wall time")
    p.add_argument("--threads", type=int, default=threads)
    p.add_argument("--quiet", action="store_true")
    return p
