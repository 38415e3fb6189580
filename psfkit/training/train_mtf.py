"""Train the MTF identification network (:class:`psfkit.learned.mtf_net.MTFNet`) on spectral-domain samples.

Resumable: run it again with the same ``--out`` and it continues from the
checkpoint (model, optimiser, random state, wall time). The learning rate
follows a cosine from ``--lr`` to 1 % of it over ``--total-minutes`` of
training wall time, so a run cut into pieces follows the same schedule::

    python -m psfkit.training.train_mtf --out runs/mtf --total-minutes 120 --minutes 40   # x3
    python -m psfkit.training.export runs/mtf --name mtf

``--init`` warm-starts from the issue-#25 experiment's checkpoint
(``benchmarks/experiment_dense_mtf.py train``: 3 input channels, mean only);
the extra input channel and the spread head start at zero.
"""

import argparse
import json
import math
import platform
import time
from pathlib import Path

import torch

from psfkit.learned.mtf_net import MTFNet, centred_radius, gaussian_nll, network_inputs
from psfkit.training import spectral_synthesis
from psfkit.training.spectral_synthesis import NOLL, synthesise

_VALIDATION_SEED = 12345
_VALIDATION_SIZE = 256
DATA_RECIPE = " ".join(spectral_synthesis.__doc__.split())
VALIDATION_SET = (f"{_VALIDATION_SIZE} spectral-domain samples of the same recipe, torch seed {_VALIDATION_SEED}: Gaussian "
                  "NLL of log10 MTF and mean absolute log10 error inside the OTF support")


def _warm_start(net, path):
    old = torch.load(path, weights_only=True)["net"]
    state = net.state_dict()
    for name, value in old.items():
        if name == "e1.0.weight":
            state[name].zero_()
            state[name][:, :3] = value
        elif name == "out.weight":
            state[name].zero_()
            state[name][:1] = value
        elif name == "out.bias":
            state[name][:1] = value
            state[name][1] = math.log(math.expm1(0.29))  # spread 0.3 log10 at the start
        else:
            state[name] = value
    net.load_state_dict(state)


def validation_set():
    """A fixed synthetic set (seeded), the same for every run."""
    gen = torch.Generator().manual_seed(_VALIDATION_SEED)
    return synthesise(_VALIDATION_SIZE, gen)


@torch.no_grad()
def validate(net, data):
    log_p, given, fc, target, _ = data
    net.eval()
    mean, spread = net(network_inputs(log_p, given))
    net.train()
    nll = float(gaussian_nll(mean, spread, target, fc).mean())
    inside = centred_radius(mean.shape[-1])[None] < 2 * fc[:, None, None]
    error = (mean - target).abs()
    return {"nll": round(nll, 4), "support_error": round(float(error[inside].mean()), 4)}


def parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/mtf", help="run folder (checkpoint.pt, training.json)")
    p.add_argument("--minutes", type=float, default=40.0, help="stop (resumably) after this wall time")
    p.add_argument("--total-minutes", type=float, default=120.0, help="length of the cosine schedule")
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--init", default=None, help="warm start from the experiment's checkpoint")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / "checkpoint.pt"
    net, gen = MTFNet(), torch.Generator().manual_seed(args.seed)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    step, seen, elapsed, history = 0, 0, 0.0, []
    if checkpoint.exists():
        state = torch.load(checkpoint, weights_only=True)
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["rng"])
        step, seen, elapsed = int(state["step"]), int(state["seen"]), float(state["elapsed"])
        history = json.loads(state["history"])
    elif args.init:
        _warm_start(net, args.init)
    data = validation_set()

    def save():
        state = {"model": net.state_dict(), "optimizer": opt.state_dict(), "rng": gen.get_state(), "step": step,
                 "seen": seen, "elapsed": elapsed, "history": json.dumps(history)}
        torch.save(state, checkpoint.with_suffix(".tmp"))
        checkpoint.with_suffix(".tmp").replace(checkpoint)
        info = {"module": "psfkit.training.train_mtf", "args": vars(args), "step": step, "total_steps": None,
                "samples": seen, "minutes": round(elapsed / 60, 2), "device": "cpu", "indices": list(NOLL),
                "data_recipe": DATA_RECIPE, "validation_set": VALIDATION_SET, "hardware": f"{platform.processor() or platform.machine()}, "
                f"{args.threads} torch thread(s)", "history": history}
        (out / "training.json").write_text(json.dumps(info, indent=1))

    start = time.perf_counter()
    base, last_save, last_val = elapsed, start, -math.inf
    while elapsed < args.total_minutes * 60 and time.perf_counter() - start < args.minutes * 60:
        lr = args.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, elapsed / (args.total_minutes * 60)))))
        for group in opt.param_groups:
            group["lr"] = lr
        log_p, given, fc, target, _ = synthesise(args.batch, gen)
        mean, spread = net(network_inputs(log_p, given))
        loss = gaussian_nll(mean, spread, target, fc).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        step, seen = step + 1, seen + args.batch
        elapsed = base + time.perf_counter() - start
        if elapsed - last_val > 300:
            last_val = elapsed
            record = {"step": step, "samples": seen, "minutes": round(elapsed / 60, 2), "lr": lr,
                      "train_nll": round(loss.item(), 4), **validate(net, data)}
            history.append(record)
            print(json.dumps(record), flush=True)
        if time.perf_counter() - last_save > 120:
            save()
            last_save = time.perf_counter()
    save()


if __name__ == "__main__":
    main()
