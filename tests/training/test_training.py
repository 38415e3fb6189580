"""Training pipeline of the identification network: features, synthesis, resumable runs."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from psfkit.training import synthesis

from psfkit.training import train_identifier# noqa: E402
from psfkit.learned.identifier_net import IdentifierNet  # noqa: E402
from psfkit.learned.spectral import welch_log_spectrum  # noqa: E402


def test_welch_spectrum_is_invariant_to_offset_and_scale():
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 160, 160, generator=g)
    a = welch_log_spectrum(image)
    b = welch_log_spectrum(3.5 * image + 100.0)
    assert a.shape == (1, 64, 64)
    assert torch.allclose(a, b, atol=1e-4)


def test_welch_spectrum_matches_full_fft_periodogram():
    # the rfft + mirror shortcut must equal the plain complex periodogram
    g = torch.Generator().manual_seed(1)
    image = torch.rand(1, 64, 64, generator=g, dtype=torch.float64)
    spectrum = welch_log_spectrum(image, keep=1.0)
    x = (image[0] - image.mean()) / image.std()
    from psfkit.learned.spectral import hann_window

    w = hann_window(64, dtype=torch.float64)
    x = (x - (x * w).sum() / w.sum()) * w
    power = torch.fft.fftshift(torch.fft.fft2(x).abs() ** 2 / (w**2).sum())
    assert torch.allclose(spectrum[0], torch.log10(power.clamp_min(1e-7)), atol=1e-9)


def test_blurred_spectrum_shows_the_cutoff():
    # beyond the OTF support 2 fc the noiseless spectrum collapses
    g = torch.Generator().manual_seed(2)
    specimen = torch.rand(1, 192, 192, generator=g)
    coefficients = torch.zeros(1, 8)
    psf = synthesis.zernike_psf_torch(coefficients, torch.tensor([0.125]), size=64, indices=synthesis.NOLL)
    blurred = synthesis.blur(specimen, psf)
    spectrum = welch_log_spectrum(blurred)[0]
    f = torch.fft.fftshift(torch.fft.fftfreq(64))
    radius = torch.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    inside = spectrum[(radius > 0.05) & (radius < 0.15)].mean()
    outside = spectrum[radius > 0.3].mean()
    assert inside - outside > 3  # more than three decades


def test_sign_variants_leave_the_psf_or_reflect_it():
    theta = torch.tensor([[0.1, -0.05, 0.08, 0.07, -0.06, 0.05, 0.04, -0.03]], dtype=torch.float64)
    variants = synthesis.sign_variants(theta)[0]
    psfs = synthesis.zernike_psf_torch(variants, 0.2, size=33, indices=synthesis.NOLL)
    assert torch.allclose(psfs[0], psfs[2], atol=1e-10)  # even terms flipped: same PSF
    assert torch.allclose(psfs[1], psfs[0].flip(0, 1), atol=1e-10)  # odd flipped: point reflection
    assert not torch.allclose(psfs[0], psfs[1], atol=1e-4)


def test_psf_error_ignores_point_reflection():
    g = torch.Generator().manual_seed(3)
    h = torch.rand(2, 9, 9, generator=g)
    assert torch.allclose(train_identifier.psf_error(h.flip(1, 2), h), torch.zeros(2))
    assert (train_identifier.psf_error(h + 0.1, h) > 0).all()


def test_acquisition_is_seeded_and_16_bit():
    blurred = torch.rand(4, 96, 96, generator=torch.Generator().manual_seed(4))
    a = synthesis.acquire(blurred, torch.Generator().manual_seed(5))
    b = synthesis.acquire(blurred, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 65535
    assert torch.equal(a, a.round())


def test_network_shapes_and_known_cutoff_passthrough():
    net = IdentifierNet().eval()
    spectra = torch.randn(3, 64, 64)
    cutoff = torch.tensor([0.2, float("nan"), 0.15])
    amplitude = torch.tensor([float("nan"), 0.1, 0.2])
    with torch.no_grad():
        theta, fc = net(spectra, cutoff, amplitude)
    assert theta.shape == (3, 8) and fc.shape == (3,)
    assert fc[0] == pytest.approx(0.2) and fc[2] == pytest.approx(0.15)
    assert 0.1 <= float(fc[1]) <= 0.27


def test_training_runs_and_resumes_exactly(tmp_path):
    args = ["--out", str(tmp_path), "--steps", "2", "--batch", "4", "--pool", "6", "--val-batches", "1", "--val-batch", "4",
            "--validate-every", "2", "--checkpoint-every", "1", "--quiet", "--threads", "1"]
    parser = train_identifier.parser()
    first = train_identifier.train(parser.parse_args(args))
    assert first["step"] == 2
    assert (tmp_path / "checkpoint.pt").exists()
    history = json.loads((tmp_path / "training.json").read_text())["history"]
    assert np.isfinite(history[-1]["psf_snr_known_mean"])
    # a second run with a longer schedule resumes from step 2 instead of restarting
    second = train_identifier.train(parser.parse_args(args[:3] + ["3"] + args[4:]))
    assert second["step"] == 3
