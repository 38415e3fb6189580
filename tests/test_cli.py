"""The psfkit command line, run as a user would (subprocess)."""

import subprocess
import sys

import numpy as np
import pytest

tifffile = pytest.importorskip("tifffile")


def run(*args, cwd):
    return subprocess.run([sys.executable, "-m", "psfkit.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def image_file(tmp_path_factory):
    import psfkit

    folder = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(3)
    psf = psfkit.zernike_psf({4: 0.08}, cutoff=0.2, size=33)
    frames = [psfkit.simulate_acquisition(psfkit.data.cells((96, 96), rng=rng), psf, gain=1000.0, rng=rng) for _ in range(2)]
    path = folder / "stack.tif"
    tifffile.imwrite(path, (np.stack(frames) * 1000).astype(np.uint16))
    return path


def test_estimate_writes_a_psf_per_frame(image_file, tmp_path):
    out = tmp_path / "psf.tif"
    result = run("estimate", str(image_file), "-o", str(out), "--cutoff", "0.2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    psfs = tifffile.imread(out)
    assert psfs.shape == (2, 33, 33)
    np.testing.assert_allclose(psfs.sum(axis=(1, 2)), 1.0, rtol=1e-5)


def test_deblur_refuses_to_overwrite_without_force(image_file, tmp_path):
    out = tmp_path / "restored.tif"
    first = run("deblur", str(image_file), "-o", str(out), "--iterations", "3", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert tifffile.imread(out).shape == (2, 96, 96)
    again = run("deblur", str(image_file), "-o", str(out), cwd=tmp_path)
    assert again.returncode == 2
    assert "exists" in again.stderr and "--force" in again.stderr
    assert "Traceback" not in again.stderr
    learned = run("deblur", str(image_file), "-o", str(out), "--method", "unrolled", "--force", cwd=tmp_path)
    assert learned.returncode == 0, learned.stderr
    assert np.all(np.isfinite(tifffile.imread(out)))


@pytest.mark.parametrize(
    "args, message",
    [
        (["estimate", "missing.tif"], "not found"),
        (["estimate", "IMAGE", "--cutoff", "0.6"], "cutoff"),
        (["estimate", "IMAGE", "--na", "1.4"], "together"),
        (["deblur", "IMAGE", "-o", "out.jpg"], "unsupported"),
    ],
)
def test_errors_are_one_clear_line(image_file, tmp_path, args, message):
    args = [str(image_file) if a == "IMAGE" else a for a in args]
    result = run(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_refinement_follows_estimate_psf_by_default_and_can_be_forced():
    from psfkit.cli import parser

    for command in ("estimate", "deblur"):
        extra = ["-o", "out.tif"] if command == "deblur" else []
        assert parser().parse_args([command, "in.tif", *extra]).refine is None  # estimate_psf decides (a strongly aberrated global PSF: on)
        assert parser().parse_args([command, "in.tif", *extra, "--refine"]).refine is True
        assert parser().parse_args([command, "in.tif", *extra, "--no-refine"]).refine is False


def test_warnings_are_one_readable_line(image_file, tmp_path, monkeypatch, capsys):
    # a rejected refinement warns (see estimate_psf); the command line prints the advice, not a source location
    import warnings

    import psfkit.identification._refine as refine_module
    from psfkit.cli import main

    monkeypatch.setattr(refine_module, "refine", lambda image, theta, fc, **kw: (theta[None], np.array([fc]), np.ones(1), False))
    original = warnings.showwarning
    assert main(["estimate", str(image_file), "-o", str(tmp_path / "psf.tif"), "--refine"]) == 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines and all(line.startswith("psfkit: warning: estimate_psf: the refinement rejected its fit") for line in lines)
    assert warnings.showwarning is original
