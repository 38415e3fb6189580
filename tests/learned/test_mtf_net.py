"""MTFNet: the U-Net that reads a Welch log-periodogram and predicts the mean and spread of log10 MTF."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from psfkit.learned.ranges import CUTOFF_RANGE  # noqa: E402
from psfkit.learned.mtf_net import (  # noqa: E402
    MTF_FLOOR,
    WINDOW,
    MTFNet,
    full_plane,
    gaussian_nll,
    half_plane,
    network_inputs,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny problems: see tests/conftest.py


def test_network_output_shapes_and_positive_spread():
    torch.manual_seed(0)
    net = MTFNet().eval()
    x = network_inputs(torch.randn(3, WINDOW, WINDOW), torch.tensor([0.2, float("nan"), 0.15]))
    with torch.no_grad():
        mean, spread = net(x)
    assert mean.shape == spread.shape == (3, WINDOW, WINDOW)
    assert torch.all(torch.isfinite(mean)) and torch.all(spread > 0)


def test_full_and_half_plane_round_trip_on_an_even_spectrum():
    # the power spectrum of a real image is even (P(-f) = P(f)): the rfft half holds all of it
    rng = np.random.default_rng(0)
    image = torch.from_numpy(rng.standard_normal((2, WINDOW, WINDOW)))
    half = torch.fft.rfft2(image).abs().square()
    full = full_plane(half)
    assert full.shape == (2, WINDOW, WINDOW)
    expected = torch.fft.fftshift(torch.fft.fft2(image).abs().square(), dim=(-2, -1))
    torch.testing.assert_close(full, expected, rtol=1e-10, atol=1e-8)
    torch.testing.assert_close(half_plane(full), half, rtol=0, atol=0)
    # DC in the middle of the centred plane
    assert full[0, WINDOW // 2, WINDOW // 2] == pytest.approx(float(image[0].sum()) ** 2)


def test_network_inputs_channels_and_the_unknown_cutoff_flag():
    log_p = torch.randn(2, WINDOW, WINDOW) + 5.0
    x = network_inputs(log_p, torch.tensor([0.2, float("nan")]))
    assert x.shape == (2, 4, WINDOW, WINDOW) and torch.all(torch.isfinite(x))
    # periodogram channel: zero mean (offset-invariant)
    torch.testing.assert_close(x[:, 0].mean((1, 2)), torch.zeros(2), rtol=0, atol=1e-5)
    torch.testing.assert_close(x[:, 0], log_p - log_p.mean((1, 2), keepdim=True))
    # flag channel: 0 for a known cutoff, 1 for an unknown one
    assert torch.all(x[0, 3] == 0) and torch.all(x[1, 3] == 1)
    # radius over 2 fc for the known one: 1 on the support's edge
    assert float(x[0, 1, WINDOW // 2, WINDOW // 2]) == 0.0
    assert float(x[0, 1].max()) == pytest.approx(math.sqrt(0.5) / 0.4, rel=1e-5)
    torch.testing.assert_close(x[0, 2], torch.full((WINDOW, WINDOW), 0.8))
    # an unknown cutoff: both optical channels at the middle of the supported range, not NaN
    middle = 0.5 * (CUTOFF_RANGE[0] + CUTOFF_RANGE[1])
    torch.testing.assert_close(x[1, 2], torch.full((WINDOW, WINDOW), 4 * middle))


def test_gaussian_nll_is_minimal_at_the_target_for_a_fixed_spread():
    rng = np.random.default_rng(1)
    target = torch.from_numpy(rng.uniform(math.log10(MTF_FLOOR), 0, (1, WINDOW, WINDOW)))
    spread = torch.full_like(target, 0.1)
    fc = torch.tensor([0.2], dtype=torch.float64)
    best = gaussian_nll(target, spread, target, fc)
    assert best.shape == (1,)
    for offset in (-0.2, -0.01, 0.01, 0.3):
        assert float(gaussian_nll(target + offset, spread, target, fc)) > float(best)
    noise = torch.from_numpy(rng.standard_normal(target.shape)) * 0.05
    assert float(gaussian_nll(target + noise, spread, target, fc)) > float(best)


def test_bundled_mtf_weights_load_and_match_their_model_card():
    from psfkit.learned._weights import WEIGHTS_DIR, bundled_network, model_card, sha256

    card = model_card("mtf")
    assert card["name"] == "mtf"
    assert sha256(WEIGHTS_DIR / card["file"]) == card["sha256"]
    net = bundled_network("mtf", "cpu")
    assert isinstance(net, MTFNet) and not net.training
    assert sum(p.numel() for p in net.parameters()) == card["parameters"]
    x = network_inputs(torch.zeros(1, WINDOW, WINDOW), torch.tensor([0.2]))
    with torch.no_grad():
        mean, spread = net(x)
    assert torch.all(torch.isfinite(mean)) and torch.all(spread > 0)
