"""The unrolled deblurring network: operators, inference path, training smoke test."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import psfkit  # noqa: E402
from psfkit.training import train_unrolled  # noqa: E402
from psfkit.learned.torch_optics import psf_to_otf  # noqa: E402
from psfkit.restoration.unrolled import normalize, pad_field  # noqa: E402
from psfkit.learned.unrolled_net import FourierBlur, ProductConvolutionBlur, ProxUNet, UnrolledDeblur  # noqa: E402
from psfkit.metrics import psnr  # noqa: E402

NOLL8 = [0.08, 0.04, -0.03, 0.05, 0.0, 0.02, 0.0, 0.03]


def _psfs(k, size=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(k, size, size, generator=g, dtype=torch.float64)
    return p / p.sum(dim=(1, 2), keepdim=True)


def _pc_operator(order, shape=(32, 36), k=3, seed=0):
    g = torch.Generator().manual_seed(seed + 1)
    weights = torch.rand(k, *shape, generator=g, dtype=torch.float64)
    weights = weights / weights.sum(dim=0, keepdim=True)
    otfs = psf_to_otf(_psfs(k, seed=seed), shape)
    y = torch.rand(1, 1, *shape, generator=g, dtype=torch.float64)
    return ProductConvolutionBlur(otfs, weights, y, mask_first=order == "mask-first", cg_iterations=60), y


@pytest.mark.parametrize("order", ["mask-first", "mask-last"])
def test_product_convolution_adjoint(order):
    op, _ = _pc_operator(order)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(1, 1, 32, 36, generator=g, dtype=torch.float64)
    r = torch.randn(1, 1, 32, 36, generator=g, dtype=torch.float64)
    lhs = (op.forward_op(x) * r).sum()
    rhs = (x * op.adjoint(r)).sum()
    assert abs(float(lhs - rhs)) < 1e-10 * float(abs(lhs))


@pytest.mark.parametrize("order", ["mask-first", "mask-last"])
def test_regularised_inverse_solves_the_normal_equations(order):
    op, y = _pc_operator(order)
    g = torch.Generator().manual_seed(6)
    z = torch.rand(1, 1, 32, 36, generator=g, dtype=torch.float64)
    inv_gamma = torch.tensor(0.05, dtype=torch.float64)
    x = op.inverse(z, inv_gamma)
    residual = op.adjoint(op.forward_op(x) - y) + inv_gamma * (x - z)
    assert float(residual.norm() / op.hty.norm()) < 1e-6


def test_space_varying_inverse_equals_fourier_inverse_for_one_psf():
    shape = (24, 28)
    psf = _psfs(1, seed=3)
    otf = psf_to_otf(psf, shape)
    g = torch.Generator().manual_seed(7)
    y, z = (torch.rand(1, 1, *shape, generator=g, dtype=torch.float64) for _ in range(2))
    inv_gamma = torch.tensor(0.02, dtype=torch.float64)
    exact = FourierBlur(otf[None], y).inverse(z, inv_gamma)
    weights = torch.full((2, *shape), 0.5, dtype=torch.float64)  # two identical terms
    cg = ProductConvolutionBlur(otf.repeat(2, 1, 1), weights, y).inverse(z, inv_gamma)
    assert torch.allclose(exact, cg, atol=1e-8)


def test_untrained_proximal_network_is_the_identity():
    net = ProxUNet()
    x = torch.rand(2, 1, 16, 20)
    assert torch.equal(net(x, torch.zeros_like(x)), x)


def test_normalize_and_pad():
    g = torch.Generator().manual_seed(0)
    images = 100 + 50 * torch.rand(2, 1, 40, 44, generator=g)
    normed, lo, scale = normalize(images)
    assert lo.shape == scale.shape == (2, 1, 1, 1)
    assert torch.allclose(normed * scale + lo, images)
    assert 0.0 <= float(torch.quantile(normed, 0.5)) <= 1.0
    padded = pad_field(normed, 5)
    assert padded.shape == (2, 1, 52, 56) and padded.shape[-1] % 4 == 0
    assert torch.equal(padded[..., 5:45, 5:49], normed)


@pytest.fixture(scope="module")
def acquisition():
    x = psfkit.data.cells((128, 128), rng=3)
    h = psfkit.zernike_psf(NOLL8, cutoff=0.18, size=33)
    y = psfkit.simulate_acquisition(x, h, gain=500, read_noise=0.01, rng=4)
    return x, h, y


def test_unrolled_deconvolution_restores(acquisition):
    x, h, y = acquisition
    before = y.copy()
    restored = psfkit.deconvolve(y, h, method="unrolled", device="cpu")
    np.testing.assert_array_equal(y, before)
    assert restored.shape == y.shape and restored.dtype == np.float64
    assert np.all(np.isfinite(restored))
    assert psnr(restored, x, data_range=1.0) > psnr(y, x, data_range=1.0) + 1.0


def test_unrolled_is_scale_equivariant_and_keeps_float32(acquisition):
    _, h, y = acquisition
    a = psfkit.deconvolve(y, h, method="unrolled")
    b = psfkit.deconvolve(1000.0 * y.astype(np.float32), h, method="unrolled")
    assert b.dtype == np.float32
    np.testing.assert_allclose(b / 1000.0, a, atol=2e-3 * np.ptp(a))


def test_unrolled_with_a_psf_grid(acquisition):
    _, h, y = acquisition
    y = y[:64, :80]
    single = psfkit.deconvolve(y, h, method="unrolled")
    grid = np.broadcast_to(h, (2, 2) + h.shape)
    varying = psfkit.deconvolve(y, grid, method="unrolled")
    np.testing.assert_allclose(varying, single, atol=1e-3 * np.ptp(single))


def test_unrolled_rejects_what_it_cannot_honour(acquisition):
    _, h, y = acquisition
    with pytest.raises(ValueError, match="2-D images"):
        psfkit.deconvolve(np.stack([y, y]), h[None], method="unrolled")  # a (2, M, N) stack, a (1, m, n) PSF
    with pytest.raises(ValueError, match="fixed by training"):
        psfkit.deconvolve(y, h, method="unrolled", iterations=3)
    with pytest.raises(ValueError, match="fixed by training"):
        psfkit.deconvolve(y, h, method="unrolled", regularization=0.1)
    with pytest.raises(ValueError, match="device"):
        psfkit.deconvolve(y, h, method="unrolled", device="tpu:7")


def test_unrolled_forward_shapes():
    net = UnrolledDeblur(steps=2, channels=(4, 8, 8))
    y = torch.rand(1, 1, 32, 32)
    otf = psf_to_otf(_psfs(1).float(), (32, 32))[None]
    outputs = net(y, FourierBlur(otf, y), torch.full_like(y, 0.01), return_all=True)
    assert len(outputs) == 2 and outputs[-1].shape == y.shape


def test_training_runs_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setattr(train_unrolled, "IMAGE", 128)
    monkeypatch.setattr(train_unrolled, "PATCH", 32)
    out = tmp_path / "run"
    args = ["--out", str(out), "--steps", "1", "--batch", "2", "--pool", "4", "--quiet", "--validate-every", "1",
            "--val-batches", "1"]
    train_unrolled.main(args)
    train_unrolled.main(args[:3] + ["2"] + args[4:])
    import json

    info = json.loads((out / "training.json").read_text())
    assert info["step"] == 2 and info["module"] == "psfkit.training.train_unrolled"
    assert [h["step"] for h in info["history"]] == [0, 1, 2]
    assert all(np.isfinite(h["psnr_input"]) for h in info["history"])


def test_deblur_with_the_unrolled_network(acquisition):
    _, _, y = acquisition
    restored, psf = psfkit.deblur(y, method="unrolled", cutoff=0.18)
    assert restored.shape == y.shape and psf.shape == (33, 33)
    assert np.all(np.isfinite(restored))
    with pytest.raises(ValueError, match="fixed by training"):
        psfkit.deblur(y, method="unrolled", iterations=4)


def test_normalize_large_images_by_subsampling(monkeypatch):
    import psfkit.restoration.unrolled as unrolled

    images = torch.linspace(0, 1, 64 * 64).reshape(1, 1, 64, 64)
    exact = normalize(images)
    monkeypatch.setattr(unrolled, "_QUANTILE_SAMPLES", 500)
    approx = unrolled.normalize(images)
    assert torch.allclose(exact[1], approx[1], atol=0.01) and torch.allclose(exact[2], approx[2], atol=0.02)
