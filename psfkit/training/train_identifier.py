"""Train the PSF identification network (resumable, seeded).

Usage (the command that produced the bundled weights is in the model card)::

    python -m psfkit.training.train_identifier --out runs/identifier --steps 20000

The run writes ``checkpoint.pt`` (model, optimiser, step and every random
state) every ``--checkpoint-every`` steps and at the end, and resumes from it
when started again with the same ``--out``. ``--minutes`` stops a run early
(at a checkpoint) so training can be spread over several sessions. CUDA is
used when available (``--device``).
"""

import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from psfkit.training._checkpoints import load_checkpoint, save_checkpoint, training_parser, write_info
from psfkit.learned.identifier_net import IdentifierNet
from psfkit.training.synthesis import NOLL, SpecimenPool, canonical, make_batch, sign_variants
from psfkit.learned.torch_optics import zernike_psf_torch

CROPS = (128, 192, 256)
CROP_WEIGHTS = (0.3, 0.3, 0.4)
PSF_SIZE = 33
DATA_RECIPE = (
    "synthetic only (psfkit.training.synthesis): specimens from psfkit.data.random_specimen (80%) and "
    "crops of scikit-image's bundled images (20%, random scale 0.5-1.5 and gamma 0.5-2), random rot90/flip; "
    "Noll 4-11 coefficients U[-theta_max, theta_max], theta_max U[0.02, 0.25] (curriculum: upper bound "
    "0.1 -> 0.25 over the first quarter), fc U[0.125, 0.25]; blur by FFT with a 64x64 PSF; camera: gain "
    "log-U[5, 5000] photons/unit, background U[0, 0.1] (70%), read noise log-U[0.3, 10] e-, ADU gain "
    "U[0.5, 2], offset U[0, 500] ADU, 16-bit quantisation, salt-and-pepper 1e-5, 15% noiseless; "
    "crops 128/192/256 px; input = Welch log power spectrum (64x64 windows, half overlap, top half by "
    "contrast); fc and theta_max each given to the network with probability 0.5."
)
VALIDATION_SET = "4 x 64 samples, crops 256 px, specimens and seeds disjoint from training (seed 10000 + seed)"


def psf_error(estimate, reference):
    """Normalised squared error ||h - h_hat||^2 / ||h||^2 with the point reflection ambiguity."""
    energy = reference.square().sum(dim=(1, 2))
    direct = (estimate - reference).square().sum(dim=(1, 2))
    flipped = (estimate.flip(1, 2) - reference).square().sum(dim=(1, 2))
    return torch.minimum(direct, flipped) / energy


def coefficient_error(predicted, coefficients, scale):
    """Squared coefficient error, min over the 4 MTF-equivalent sign choices."""
    variants = sign_variants(coefficients)
    error = (predicted[:, None, :] - variants).square().mean(dim=2)
    return error.min(dim=1).values / scale.square()


def _schedule(step, total):
    """Curricula and loss weights at ``step`` of a ``total``-step run.

    - targets: canonical sign variant first (breaks the symmetry), then the
      min over the MTF-equivalent variants (no penalty at the canonical
      boundaries), then the PSF-space loss once coefficients are roughly right
      (the notes: an early PSF-space phase pulls the net back to the
      compromise PSF);
    - aberration range theta_max <= 0.1 -> 0.25 over the first quarter;
    - noise: mostly clean data first (noiseless share 0.5 -> 0.15, lowest gain
      200 -> 5 photons/unit over the first 40 %);
    - learning rate: cosine decay.
    """
    fraction = step / total
    ramp = min(1.0, fraction / 0.4)
    return {
        "canonical": fraction < 0.3,
        "psf_weight": min(1.0, max(0.0, (fraction - 0.45) / 0.2)),
        "amplitude_hi": 0.1 + 0.15 * min(1.0, fraction / 0.25),
        "noiseless_fraction": 0.5 - 0.35 * ramp,
        "min_gain": math.exp(math.log(200) + (math.log(5) - math.log(200)) * ramp),
        "lr": 0.5 * (1 + math.cos(math.pi * fraction)),
    }


def losses(net, batch, generator, psf_weight, canonical_targets=False):
    b = batch.coefficients.shape[0]
    known_fc = torch.rand(b, generator=generator) < 0.5
    known_amp = torch.rand(b, generator=generator) < 0.5
    nan = torch.full((b,), float("nan"))
    cutoff_in = torch.where(known_fc, batch.cutoff, nan)
    amp_in = torch.where(known_amp, batch.max_amplitude, nan)
    predicted, fc = net(batch.spectra, cutoff_in, amp_in)
    scale = batch.max_amplitude + 0.03
    if canonical_targets:
        coef = ((predicted - canonical(batch.coefficients)) / scale[:, None]).square().mean(dim=1).mean()
    else:
        coef = coefficient_error(predicted, batch.coefficients, scale).mean()
    fc_loss = ((fc - batch.cutoff) / 0.01).square()[~known_fc].mean() if (~known_fc).any() else fc.sum() * 0
    total = coef + 0.1 * fc_loss
    psf = torch.zeros(())
    if psf_weight > 0:
        estimate = zernike_psf_torch(predicted, fc, size=PSF_SIZE, indices=NOLL)
        reference = zernike_psf_torch(batch.coefficients, batch.cutoff, size=PSF_SIZE, indices=NOLL)
        psf = psf_error(estimate, reference).mean()
        total = total + psf_weight * 3 * psf
    return total, {"coef": coef.item(), "fc": fc_loss.item(), "psf": psf.item()}


@torch.no_grad()
def validate(net, batches):
    """PSF SNR (dB, orientation-oracle) and per-term errors on fixed batches."""
    net.eval()
    rows = {"known": [], "unknown": []}
    term_errors = []
    for batch in batches:
        b = batch.coefficients.shape[0]
        nan = torch.full((b,), float("nan"))
        reference = zernike_psf_torch(batch.coefficients, batch.cutoff, size=PSF_SIZE, indices=NOLL)
        for name, cutoff_in in (("known", batch.cutoff), ("unknown", nan)):
            predicted, fc = net(batch.spectra, cutoff_in, nan)
            estimate = zernike_psf_torch(predicted, fc, size=PSF_SIZE, indices=NOLL)
            rows[name].append(-10 * torch.log10(psf_error(estimate, reference)))
            if name == "known":
                variants = sign_variants(batch.coefficients)
                best = (predicted[:, None] - variants).square().sum(2).argmin(1)
                matched = variants[torch.arange(b), best]
                term_errors.append((predicted - matched).abs() / batch.max_amplitude[:, None])
    net.train()
    snr = {name: torch.cat(values) for name, values in rows.items()}
    terms = torch.cat(term_errors).mean(0)
    return {
        "psf_snr_known_mean": float(snr["known"].mean()),
        "psf_snr_known_median": float(snr["known"].median()),
        "psf_snr_unknown_mean": float(snr["unknown"].mean()),
        "relative_term_error": [round(float(t), 3) for t in terms],
    }


def train(args):
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint_path = out / "checkpoint.pt"
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))

    torch.manual_seed(args.seed)
    np_rng = np.random.default_rng(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    net = IdentifierNet().to(device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    step = 0
    elapsed = 0.0
    history = []
    if checkpoint_path.exists():
        step, elapsed, history = load_checkpoint(checkpoint_path, net, optimizer, generator, np_rng, device)
        print(f"resumed from step {step} ({elapsed / 60:.1f} min trained)")

    # the validation set uses its own specimens and seeds, never seen in training
    val_rng = np.random.default_rng(10_000 + args.seed)
    val_gen = torch.Generator().manual_seed(10_000 + args.seed)
    val_pool = SpecimenPool(min(64, args.pool), 256 + 64, val_rng)
    val_batches = [make_batch(val_pool, args.val_batch, val_gen, crop=256) for _ in range(args.val_batches)]

    pool = SpecimenPool(args.pool, 256 + 64, np_rng)
    from tqdm import tqdm

    bar = tqdm(total=args.steps, initial=step, disable=args.quiet, dynamic_ncols=True)
    start = time.perf_counter() - elapsed
    deadline = time.perf_counter() + 60 * args.minutes if args.minutes else math.inf
    while step < args.steps and time.perf_counter() < deadline:
        plan = _schedule(step, args.steps)
        for group in optimizer.param_groups:
            group["lr"] = args.lr * max(plan["lr"], 0.01)
        crop = int(np.asarray(CROPS)[torch.multinomial(torch.tensor(CROP_WEIGHTS), 1, generator=generator)])
        batch = make_batch(
            pool, args.batch, generator, crop=crop, max_amplitude_range=(0.02, plan["amplitude_hi"]),
            noiseless_fraction=plan["noiseless_fraction"], min_gain=plan["min_gain"],
        )
        loss, parts = losses(net, batch, generator, plan["psf_weight"], canonical_targets=plan["canonical"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        optimizer.step()
        step += 1
        if step % args.refresh_every == 0:
            pool.refresh(args.refresh)
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}", psf=f"{parts['psf']:.3f}", coef=f"{parts['coef']:.3f}")
        if step % args.validate_every == 0 or step == args.steps:
            metrics = validate(net, val_batches)
            metrics.update(step=step, minutes=round((time.perf_counter() - start) / 60, 2))
            history.append(metrics)
            bar.write(json.dumps(metrics))
        if step % args.checkpoint_every == 0 or step == args.steps:
            _save(checkpoint_path, net, optimizer, step, time.perf_counter() - start, generator, np_rng, history, args)
    _save(checkpoint_path, net, optimizer, step, time.perf_counter() - start, generator, np_rng, history, args)
    bar.close()
    return _write_info(out, args, step, time.perf_counter() - start, history, device)


def _save(path, net, optimizer, step, elapsed, generator, np_rng, history, args=None):
    save_checkpoint(path, net, optimizer, step, elapsed, generator, np_rng, history)
    if args is not None:
        _write_info(path.parent, args, step, elapsed, history, next(net.parameters()).device)


def _write_info(out, args, step, elapsed, history, device):
    return write_info(out, args, step, elapsed, history, device, module="psfkit.training.train_identifier",
                      data_recipe=DATA_RECIPE, validation_set=VALIDATION_SET)


def parser():
    p = training_parser(__doc__, out="runs/identifier", steps=20000, batch=32, lr=1e-3, pool=2000, validate_every=1000,
                        checkpoint_every=500, threads=2)
    p.add_argument("--refresh", type=int, default=4, help="specimens replaced every --refresh-every steps")
    p.add_argument("--refresh-every", type=int, default=1)
    p.add_argument("--val-batches", type=int, default=4)
    p.add_argument("--val-batch", type=int, default=64, help="size of each validation batch")
    p.add_argument("--device", default=None)
    return p


def main(argv=None):
    train(parser().parse_args(argv))


if __name__ == "__main__":
    main()
