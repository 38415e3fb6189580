"""Train the unrolled deblurring network (resumable, seeded).

Usage (the command that produced the bundled weights is in the model card)::

    python -m psfkit.training.train_unrolled --out runs/unrolled --steps 3000

Each sample: a 256 x 256 synthetic acquisition (specimen from
:mod:`psfkit.data` or a scikit-image crop, random Zernike PSF, Poisson-Gaussian
camera), the PSF the network is given -- half the time the one
:func:`psfkit.estimate_psf` identifies from that image (fc known or not), so
that the network learns to absorb identification errors, half the time the
true one -- and a random 96 x 96 patch of it, reflect-padded by the PSF
radius, with the noise map in the units the inference code uses. Loss: l1 on
the patch. Checkpoints (model, optimiser, step, every random state) are
written every ``--checkpoint-every`` steps and resumed from with the same
``--out``; ``--minutes`` stops a run early at a checkpoint.
"""

import math
import time
from pathlib import Path

import numpy as np
import torch

from psfkit.training._checkpoints import load_checkpoint, save_checkpoint, training_parser, write_info
from psfkit.learned.torch_optics import psf_to_otf
from psfkit.training.synthesis import NOLL, SpecimenPool, blur, random_parameters
from psfkit.learned.torch_optics import zernike_psf_torch
from psfkit.restoration.unrolled import PSF_SIZE, normalize, pad_field
from psfkit.learned.unrolled_net import FourierBlur, UnrolledDeblur

IMAGE = 256  # simulated acquisition (what estimate_psf sees)
PATCH = 96  # training patch (loss support)
MARGIN = PSF_SIZE // 2
DATA_RECIPE = (
    "synthetic only: specimens from psfkit.data.random_specimen (80%) and crops of scikit-image's bundled "
    "images (20%), random rot90/flip; Noll 4-11 coefficients U[-theta_max, theta_max], theta_max U[0.02, 0.25], "
    "fc U[0.125, 0.25], 33x33 PSF; camera in specimen units: background U[0, 0.1] (70%), Poisson-Gaussian "
    "(Gaussian form) with gain log-U[10, 1e4] photons/unit and read noise log-U[1e-3, 0.08], 15% noiseless; "
    "the network's PSF is estimate_psf's on the 256x256 acquisition (50%, fc given with probability 0.5) or "
    "the true PSF (50%); 96x96 patches reflect-padded by 16 px; noise map = true per-pixel std x "
    "U[0.8, 1.25] (the inference code estimates it with psfkit.estimate_noise)."
)
VALIDATION_SET = "48 samples (6 batches of 8), specimens and seeds disjoint from training (seed 10000 + seed)"


def _uniform(b, lo, hi, generator):
    return lo + (hi - lo) * torch.rand(b, 1, 1, generator=generator)


def _log_uniform(b, lo, hi, generator):
    return torch.exp(_uniform(b, math.log(lo), math.log(hi), generator))


def make_batch(pool, batch, generator, *, estimated_fraction=0.5):
    """``(y, target, noise_map, psf, estimated)``: padded network inputs and the patch target."""
    import psfkit

    coefficients, cutoff, _ = random_parameters(batch, generator)
    true_psfs = zernike_psf_torch(coefficients, cutoff, size=PSF_SIZE, indices=NOLL).float()
    specimens = pool.sample(batch, generator)
    blurred = blur(specimens, true_psfs)[:, MARGIN : MARGIN + IMAGE, MARGIN : MARGIN + IMAGE]
    clean = specimens[:, MARGIN : MARGIN + IMAGE, MARGIN : MARGIN + IMAGE]
    background = _uniform(batch, 0, 0.1, generator) * (torch.rand(batch, 1, 1, generator=generator) < 0.7)
    gain = _log_uniform(batch, 10, 1e4, generator)
    read = _log_uniform(batch, 1e-3, 0.08, generator)
    noiseless = torch.rand(batch, 1, 1, generator=generator) < 0.15
    signal = blurred.clamp_min(0) + background
    std = torch.where(noiseless, 1e-5, torch.sqrt(signal / gain + read.square()))
    images = signal + std * torch.randn(signal.shape, generator=generator)

    psfs = true_psfs.clone()
    estimated = torch.rand(batch, generator=generator) < estimated_fraction
    known = torch.rand(batch, generator=generator) < 0.5
    for i in torch.nonzero(estimated).flatten().tolist():
        fc = float(cutoff[i]) if known[i] else None
        psfs[i] = torch.from_numpy(psfkit.estimate_psf(images[i].numpy(), cutoff=fc, size=PSF_SIZE, refine=False)).float()

    # one normalisation per acquisition, exactly as at inference, then a random patch
    normed, lo, scale = normalize(images[:, None])
    target = (clean[:, None] + background[:, None] - lo) / scale
    noise_map = std[:, None] / scale * _uniform(batch, 0.8, 1.25, generator)[:, None]
    ys, ts, ns = [], [], []
    for i in range(batch):
        r, c = (int(v) for v in torch.randint(IMAGE - PATCH + 1, (2,), generator=generator))
        window = (slice(None), slice(r, r + PATCH), slice(c, c + PATCH))
        ys.append(normed[i][window])
        ts.append(target[i][window])
        ns.append(noise_map[i][window])
    y, target, noise_map = torch.stack(ys), torch.stack(ts), torch.stack(ns)
    return pad_field(y, MARGIN), target, pad_field(noise_map, MARGIN), psfs, estimated, scale


def crop_patch(field):
    return field[..., MARGIN : MARGIN + PATCH, MARGIN : MARGIN + PATCH]


def forward(net, y, noise_map, psfs):
    otf = psf_to_otf(psfs, y.shape[-2:])[:, None]
    return crop_patch(net(y, FourierBlur(otf, y), noise_map))


def validate(net, batches):
    """Mean PSNR (dB, specimen units, data range 1) on fixed batches, by PSF source."""
    net.eval()
    rows = {"estimated_psf": [], "true_psf": [], "input": []}
    with torch.no_grad():
        for y, target, noise_map, psfs, estimated, scale in batches:
            out = forward(net, y, noise_map, psfs)
            mse = ((out - target) * scale).square().mean(dim=(1, 2, 3))
            mse_in = ((crop_patch(y) - target) * scale).square().mean(dim=(1, 2, 3))
            psnr = -10 * torch.log10(mse)
            rows["estimated_psf"] += psnr[estimated].tolist()
            rows["true_psf"] += psnr[~estimated].tolist()
            rows["input"] += (-10 * torch.log10(mse_in)).tolist()
    net.train()
    return {f"psnr_{k}": round(float(np.mean(v)), 3) for k, v in rows.items() if v}


def train(args):
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint_path = out / "checkpoint.pt"
    device = torch.device("cpu")  # data synthesis is CPU-bound; the network is small

    torch.manual_seed(args.seed)
    np_rng = np.random.default_rng(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    net = UnrolledDeblur().to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr)
    step, elapsed, history = 0, 0.0, []
    if checkpoint_path.exists():
        step, elapsed, history = load_checkpoint(checkpoint_path, net, optimizer, generator, np_rng, device)
        print(f"resumed from step {step} ({elapsed / 60:.1f} min trained)")

    val_gen = torch.Generator().manual_seed(10_000 + args.seed)
    val_pool = SpecimenPool(8 * args.val_batches, IMAGE + 2 * MARGIN, np.random.default_rng(10_000 + args.seed))
    val_batches = [make_batch(val_pool, 8, val_gen) for _ in range(args.val_batches)]
    pool = SpecimenPool(args.pool, IMAGE + 2 * MARGIN, np_rng)

    def checkpoint():
        save_checkpoint(checkpoint_path, net, optimizer, step, time.perf_counter() - start, generator, np_rng, history)
        write_info(out, args, step, time.perf_counter() - start, history, device, module="psfkit.training.train_unrolled",
                   data_recipe=DATA_RECIPE, validation_set=VALIDATION_SET)

    from tqdm import tqdm

    bar = tqdm(total=args.steps, initial=step, disable=args.quiet, dynamic_ncols=True, mininterval=10)
    start = time.perf_counter() - elapsed
    deadline = time.perf_counter() + 60 * args.minutes if args.minutes else math.inf
    if step == 0:
        history.append({"step": 0, "minutes": 0.0, **validate(net, val_batches)})
        bar.write(str(history[-1]))
    while step < args.steps and time.perf_counter() < deadline:
        for group in optimizer.param_groups:  # cosine decay
            group["lr"] = args.lr * max(0.5 * (1 + math.cos(math.pi * step / args.steps)), 0.02)
        y, target, noise_map, psfs, _, _ = make_batch(pool, args.batch, generator)
        loss = (forward(net, y, noise_map, psfs) - target).abs().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        step += 1
        pool.refresh(args.refresh)
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if step % args.validate_every == 0 or step == args.steps:
            history.append({"step": step, "minutes": round((time.perf_counter() - start) / 60, 2), **validate(net, val_batches)})
            bar.write(str(history[-1]))
        if step % args.checkpoint_every == 0:
            checkpoint()
    checkpoint()
    bar.close()


def parser():
    p = training_parser(__doc__, out="runs/unrolled", steps=3000, batch=8, lr=5e-4, pool=300, validate_every=250,
                        checkpoint_every=100, threads=1)
    p.add_argument("--refresh", type=int, default=1, help="specimens replaced every step")
    p.add_argument("--val-batches", type=int, default=6, help="validation batches of 8 samples")
    return p


def main(argv=None):
    train(parser().parse_args(argv))


if __name__ == "__main__":
    main()
