"""Spectral-domain training samples of the MTF network and its resumable trainer."""

import json
import math

import pytest

torch = pytest.importorskip("torch")

from psfkit.learned.mtf_net import MTF_FLOOR, WINDOW, centred_radius  # noqa: E402
from psfkit.learned.ranges import CUTOFF_RANGE  # noqa: E402
from psfkit.training import train_mtf  # noqa: E402
from psfkit.training.spectral_synthesis import NOLL, synthesise  # noqa: E402

FLOOR = math.log10(MTF_FLOOR)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny problems: see tests/conftest.py


@pytest.fixture(scope="module")
def batch():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return synthesise(200, torch.Generator().manual_seed(0))
    finally:
        torch.set_num_threads(previous)


def test_shapes_and_finite_values(batch):
    log_p, given, fc, target, theta = batch
    assert log_p.shape == target.shape == (200, WINDOW, WINDOW)
    assert given.shape == fc.shape == (200,) and theta.shape == (200, len(NOLL)) == (200, 12)
    for x in (log_p, fc, target, theta):
        assert torch.all(torch.isfinite(x))
    assert torch.all((fc >= CUTOFF_RANGE[0]) & (fc <= CUTOFF_RANGE[1]))
    assert float(theta.abs().max()) <= 0.15 + 1e-6
    # the given cutoff is the true one where it is not hidden
    shown = torch.isfinite(given)
    torch.testing.assert_close(given[shown], fc[shown], rtol=0, atol=0)


def test_deterministic_for_a_generator_seed():
    a = synthesise(4, torch.Generator().manual_seed(3))
    b = synthesise(4, torch.Generator().manual_seed(3))
    c = synthesise(4, torch.Generator().manual_seed(4))
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=0, atol=0, equal_nan=True)
    assert not torch.equal(a[4], c[4])


def test_about_a_third_of_the_cutoffs_are_hidden(batch):
    hidden = float(torch.isnan(batch[1]).float().mean())
    assert 0.2 < hidden < 0.4  # 30 % by the recipe (measured 30.5 % of 400 on seed 0)


def test_targets_are_log_mtf_with_the_floor_beyond_the_support(batch):
    _, _, fc, target, _ = batch
    assert float(target.max()) <= math.log10(1 + MTF_FLOOR) + 1e-6  # MTF <= 1, equal at DC
    torch.testing.assert_close(target[:, WINDOW // 2, WINDOW // 2], torch.full((200,), math.log10(1 + MTF_FLOOR)))
    rr = centred_radius(WINDOW)[None]
    beyond = target[(rr > 2 * fc[:, None, None]).expand_as(target)]
    inside = target[(rr < 1.5 * fc[:, None, None]).expand_as(target)]
    # beyond 2 fc the MTF is zero, up to the leakage of the PSF's 33 x 33 window (measured: at most 1.5e-4, i.e.
    # log10 up to -3.45 on this batch; 95 % of the values within 0.1 of the floor)
    assert float(beyond.median()) == pytest.approx(FLOOR, abs=0.01)
    assert float(beyond.max()) < -3
    assert float((beyond - FLOOR).abs().quantile(0.9)) < 0.1
    assert float(inside.median()) > -3  # and inside the support, the transfer is well above it


def test_trainer_runs_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setattr(train_mtf, "_VALIDATION_SIZE", 8)  # the 256-sample validation set alone takes seconds
    args = ["--out", str(tmp_path), "--minutes", "0.05", "--total-minutes", "0.05", "--batch", "2", "--threads", "1"]
    train_mtf.main(args)
    assert (tmp_path / "checkpoint.pt").exists()
    first = json.loads((tmp_path / "training.json").read_text())
    assert first["step"] >= 1 and first["samples"] == 2 * first["step"] and first["indices"] == list(NOLL)
    record = first["history"][0]
    assert record["step"] == 1 and math.isfinite(record["nll"]) and math.isfinite(record["support_error"])
    # a second run with a longer schedule continues from the checkpoint instead of restarting
    train_mtf.main(args[:4] + ["--total-minutes", "0.1"] + args[6:])
    second = json.loads((tmp_path / "training.json").read_text())
    assert second["step"] > first["step"] and second["minutes"] >= first["minutes"]
    assert second["samples"] == 2 * second["step"] and second["history"][: len(first["history"])] == first["history"]
    assert second["history"][-1]["step"] == first["step"] + 1  # each run validates at its first step
