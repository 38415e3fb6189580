import numpy as np
import pytest

torch = pytest.importorskip("torch")

from psfkit.learned.torch_optics import zernike_psf_torch  # noqa: E402
from psfkit.optics.psf import zernike_psf  # noqa: E402

RNG = np.random.default_rng(7)
THETAS = RNG.uniform(-0.15, 0.15, size=(6, 8))
CUTOFFS = np.array([0.1, 0.125, 0.18, 0.2, 0.25, 0.4])


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny problems: see tests/conftest.py


def test_equals_numpy_with_per_sample_cutoffs_float64():
    expected = zernike_psf(THETAS, cutoff=CUTOFFS, size=33)
    psf = zernike_psf_torch(torch.from_numpy(THETAS), torch.from_numpy(CUTOFFS), size=33)
    assert psf.dtype == torch.float64 and psf.shape == (6, 33, 33)
    np.testing.assert_allclose(psf.numpy(), expected, rtol=0, atol=1e-12 * expected.max())


def test_equals_numpy_float32():
    expected = zernike_psf(THETAS, cutoff=CUTOFFS, size=20)
    psf = zernike_psf_torch(torch.from_numpy(THETAS).float(), torch.from_numpy(CUTOFFS).float(), size=20)
    assert psf.dtype == torch.float32
    np.testing.assert_allclose(psf.numpy(), expected, rtol=0, atol=2e-6 * expected.max())


@pytest.mark.parametrize("size", [16, 17])
def test_scalar_cutoff_and_indices(size):
    theta = THETAS[:2, :3]
    expected = zernike_psf(theta, cutoff=0.2, size=size, indices=[11, 7, 5])
    for cutoff in (0.2, torch.tensor(0.2, dtype=torch.float64), torch.tensor([0.2], dtype=torch.float64)):
        psf = zernike_psf_torch(torch.from_numpy(theta), cutoff, size=size, indices=[11, 7, 5])
        np.testing.assert_allclose(psf.numpy(), expected, rtol=0, atol=1e-12 * expected.max())


def test_normalised_non_negative_and_centred():
    psf = zernike_psf_torch(torch.zeros(3, 8), torch.tensor([0.12, 0.2, 0.25]), size=16)
    assert torch.all(psf >= 0)
    np.testing.assert_allclose(psf.sum(dim=(-2, -1)).numpy(), 1.0, atol=1e-6)
    assert all(int(p.argmax()) == 8 * 16 + 8 for p in psf)


def test_gradcheck_coefficients_and_cutoff():
    theta = torch.tensor([[0.1, -0.05, 0.08], [0.02, 0.1, -0.07]], dtype=torch.float64, requires_grad=True)
    cutoff = torch.tensor([0.2, 0.23], dtype=torch.float64, requires_grad=True)

    def psf(theta, cutoff):
        return zernike_psf_torch(theta, cutoff, size=6, indices=(4, 7, 8), pupil_samples=32)

    assert torch.autograd.gradcheck(psf, (theta, cutoff), eps=1e-6, atol=1e-7)


def test_gradient_matches_numpy_finite_difference():
    # independent of autograd: d h[c, c] / d theta_defocus against the NumPy model
    theta = torch.tensor([[0.1, 0.05]], dtype=torch.float64, requires_grad=True)
    value = zernike_psf_torch(theta, 0.2, size=15, pupil_samples=64)[0, 7, 7]
    (grad,) = torch.autograd.grad(value, theta)
    step = 1e-6
    plus = zernike_psf([0.1 + step, 0.05], cutoff=0.2, size=15, pupil_samples=64)[7, 7]
    minus = zernike_psf([0.1 - step, 0.05], cutoff=0.2, size=15, pupil_samples=64)[7, 7]
    assert float(grad[0, 0]) == pytest.approx((plus - minus) / (2 * step), rel=1e-5)


def test_huge_predicted_aberrations_stay_bounded():
    # an untrained network may output several waves: the automatic grid is capped
    psf = zernike_psf_torch(torch.full((2, 8), 5.0), 0.25, size=16)
    assert torch.isfinite(psf).all()
    np.testing.assert_allclose(psf.sum(dim=(-2, -1)).numpy(), 1.0, atol=1e-6)


@pytest.mark.parametrize(
    ("coefficients", "kwargs", "error", "match"),
    [
        (np.zeros((2, 3)), {}, TypeError, "torch.Tensor"),
        (torch.zeros(3), {}, ValueError, r"\(B, K\)"),
        (torch.zeros(0, 3), {}, ValueError, r"\(B, K\)"),
        (torch.zeros(2, 3, dtype=torch.int64), {}, TypeError, "float32 or float64"),
        (torch.full((2, 3), float("nan")), {}, ValueError, "NaN"),
        (torch.zeros(2, 3), {"cutoff": 0.6}, ValueError, "cutoff"),
        (torch.zeros(2, 3), {"cutoff": torch.tensor([0.2, 0.0])}, ValueError, "cutoff"),
        (torch.zeros(2, 3), {"cutoff": torch.tensor([0.2, 0.2, 0.2])}, ValueError, "shape"),
        (torch.zeros(2, 3), {"cutoff": "0.2"}, TypeError, "cutoff"),
        (torch.zeros(2, 3), {"indices": (4, 5)}, ValueError, "indices"),
        (torch.zeros(2, 3), {"indices": (0, 4, 5)}, ValueError, "Noll index"),
        (torch.zeros(2, 3), {"size": 0}, ValueError, "size"),
        (torch.zeros(2, 3), {"pupil_samples": 31}, ValueError, "pupil_samples"),
    ],
)
def test_rejects_bad_input(coefficients, kwargs, error, match):
    with pytest.raises(error, match=match):
        zernike_psf_torch(coefficients, **kwargs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    theta = torch.from_numpy(THETAS)
    cutoff = torch.from_numpy(CUTOFFS)
    cpu = zernike_psf_torch(theta, cutoff, size=33)
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 2e-6)):
        gpu = zernike_psf_torch(theta.to("cuda", dtype), cutoff.to("cuda", dtype), size=33)
        assert gpu.device.type == "cuda" and gpu.dtype == dtype
        np.testing.assert_allclose(gpu.double().cpu().numpy(), cpu.numpy(), rtol=0, atol=tol * float(cpu.max()))
