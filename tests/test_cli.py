"""The psfkit command line: run as a user would (subprocess), and in-process with instant stand-ins for the networks."""

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
    frames = [psfkit.simulate_acquisition(psfkit.data.cells((64, 64), rng=rng), psf, gain=1000.0, rng=rng) for _ in range(2)]
    path = folder / "stack.tif"
    tifffile.imwrite(path, (np.stack(frames) * 1000).astype(np.uint16))
    return path


def test_estimate_writes_a_psf_per_frame(image_file, tmp_path):
    out = tmp_path / "psf.tif"
    result = run("estimate", str(image_file), "-o", str(out), "--cutoff", "0.2", "--no-refine", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    psfs = tifffile.imread(out)
    assert psfs.shape == (2, 33, 33)
    np.testing.assert_allclose(psfs.sum(axis=(1, 2)), 1.0, rtol=1e-5)


def test_deblur_refuses_to_overwrite_without_force(image_file, tmp_path):
    out = tmp_path / "restored.tif"
    first = run("deblur", str(image_file), "-o", str(out), "--iterations", "2", "--no-refine", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert tifffile.imread(out).shape == (2, 64, 64)
    again = run("deblur", str(image_file), "-o", str(out), cwd=tmp_path)
    assert again.returncode == 2
    assert "exists" in again.stderr and "--force" in again.stderr
    assert "Traceback" not in again.stderr
    learned = run("deblur", str(image_file), "-o", str(out), "--method", "unrolled", "--no-refine", "--force", cwd=tmp_path)
    assert learned.returncode == 0, learned.stderr
    assert np.all(np.isfinite(tifffile.imread(out)))


@pytest.fixture
def tiny(tmp_path):
    """A valid 64 x 64 image and, beside it, the awkward files and folders users hand the command line."""
    rng = np.random.default_rng(0)
    tifffile.imwrite(tmp_path / "tiny.tif", rng.integers(100, 1000, (64, 64), dtype=np.uint16))
    (tmp_path / "afile").write_text("not a folder")
    (tmp_path / "folder.tif").mkdir()
    (tmp_path / "empty.tif").write_bytes(b"")
    (tmp_path / "notes.tif").write_text("x,y\n1,2\n")
    tifffile.imwrite(tmp_path / "trunc.tif", np.ones((64, 64), np.uint16))
    (tmp_path / "trunc.tif").write_bytes((tmp_path / "trunc.tif").read_bytes()[:3000])
    tifffile.imwrite(tmp_path / "line.tif", np.ones(64, np.uint16))
    tifffile.imwrite(tmp_path / "hyper.tif", np.ones((2, 2, 64, 64), np.uint16), photometric="minisblack")
    tifffile.imwrite(tmp_path / "rgb.tif", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), photometric="rgb")
    return tmp_path / "tiny.tif"


def assert_one_line_error(stderr, command, message):
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"psfkit {command}: error: " if command else "psfkit: error: "), stderr
    assert message in lines[0], stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["estimate", "missing.tif"], "not found"),
        (["estimate", "IMAGE", "--cutoff", "1.6"], "cutoff"),
        (["estimate", "IMAGE", "--na", "1.4"], "missing --wavelength, --pixel-size"),
        (["estimate", "IMAGE", "--na", "1.4", "--cutoff", "0.2"], "not both"),
        (["estimate", "IMAGE", "--z-step", "0.3"], "missing --na, --wavelength, --pixel-size"),  # a stack needs optics
        (["deblur", "IMAGE", "-o", "out.jpg"], "unsupported"),
        # outputs the file system refuses, found before any work is done
        (["estimate", "TINY", "-o", "afile/out.tif"], "not a directory"),
        (["deblur", "TINY", "-o", "afile/sub/out.tif"], "not a directory"),
        (["estimate", "TINY", "-o", "folder.tif", "--force"], "is a directory"),
        (["demo", "-o", "afile/out"], "not a directory"),
        (["demo", "-o", "afile"], "not a directory"),
        (["estimate", "IMAGE", "-o", "psf.png"], "PNG"),  # a stack's PSFs do not fit in a PNG
        # inputs that are not an image or a stack of frames
        (["estimate", "folder.tif"], "got a directory"),
        (["estimate", "empty.tif"], "empty"),
        (["estimate", "notes.tif"], "not a readable image"),
        (["estimate", "trunc.tif"], "truncated"),
        (["estimate", "line.tif"], "2-D image"),
        (["deblur", "hyper.tif", "-o", "out.tif"], "2-D image"),
        # option values and usage
        (["estimate", "TINY", "--grid", "0x4"], "grid"),
        (["estimate", "TINY", "--grid", "4"], "grid"),
        (["estimate", "TINY", "--size", "-3"], "--size"),
        (["deblur", "TINY", "-o", "out.tif", "--iterations", "0"], "--iterations"),
        (["deblur", "TINY", "-o", "out.tif", "--method", "nope"], "--method"),
        (["estimate", "TINY", "--na", "-1", "--wavelength", "0.5", "--pixel-size", "0.1"], "--na"),
        (["estimate", "TINY", "--cutoff", "nan"], "--cutoff"),
        (["estimate", "TINY", "--bogus"], "unrecognized"),
        (["deblur", "TINY"], "required"),
        ([], "required"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_errors_are_one_clear_line(image_file, tiny, args, message):
    args = [str(image_file) if a == "IMAGE" else str(tiny) if a == "TINY" else a for a in args]
    result = run(*args, cwd=tiny.parent)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert_one_line_error(result.stderr, args[0] if args and args[0] in ("demo", "estimate", "deblur") else None, message)
    assert not any(p.name.startswith(("out", "psf", ".")) for p in tiny.parent.iterdir())  # nothing written


@pytest.mark.parametrize(
    "args",
    [
        ["estimate", "missing.tif"],
        ["deblur", "TINY", "-o", "afile/out.tif"],
        ["deblur", "TINY", "-o", "out.tif", "--iterations", "0"],
        ["deblur", "TINY", "-o", "TINY"],  # exists, no --force
    ],
)
def test_user_errors_are_reported_before_torch_is_imported(tiny, args):
    # importing torch takes seconds: a typo must not
    code = (
        "import sys\nfrom psfkit.cli import main\ntry:\n    status = main(sys.argv[1:])\n"
        "except SystemExit as exit:\n    status = exit.code\nprint(status, 'torch' in sys.modules)"
    )
    args = [str(tiny) if a == "TINY" else a for a in args]
    result = subprocess.run([sys.executable, "-c", code, *args], cwd=tiny.parent, capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["2", "False"], result.stdout + result.stderr


@pytest.fixture
def fake_pipeline(monkeypatch):
    """Instant stand-ins for estimate_psf and deblur: the command line's own work, without the networks."""
    import psfkit.identification.estimate
    import psfkit.pipeline

    frames = []
    psf = np.full((5, 5), 1 / 25)

    def estimate_psf(frame, **kwargs):
        frames.append(frame.shape)
        return psf

    def deblur(frame, **kwargs):
        frames.append(frame.shape)
        return np.asarray(frame, dtype=float), psf

    monkeypatch.setattr(psfkit.identification.estimate, "estimate_psf", estimate_psf)
    monkeypatch.setattr(psfkit.pipeline, "deblur", deblur)
    return frames


def fail_on_call(monkeypatch, module, name, number, error):
    original = getattr(module, name)
    calls = []

    def failing(*args, **kwargs):
        calls.append(args)
        if len(calls) == number:
            raise error
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, failing)


def test_an_rgb_tiff_is_one_image_not_a_stack(fake_pipeline, tiny, tmp_path):
    from psfkit.cli import main

    assert main(["estimate", str(tiny.parent / "rgb.tif"), "-o", str(tmp_path / "psf.tif")]) == 0
    assert fake_pipeline == [(64, 64)]
    assert tifffile.imread(tmp_path / "psf.tif").shape == (5, 5)


def test_deblur_writes_both_outputs_or_neither(fake_pipeline, tiny, tmp_path, monkeypatch, capsys):
    from psfkit.cli import main

    out = tmp_path / "out" / "restored.tif"
    out.parent.mkdir()
    (out.parent / "restored_psf.tif").mkdir()  # the PSF output cannot be written
    assert main(["deblur", str(tiny), "-o", str(out), "--force"]) == 2
    assert_one_line_error(capsys.readouterr().err, "deblur", "is a directory")
    (out.parent / "restored_psf.tif").rmdir()
    # the disk fills up while the PSF is written: the restored image must not be left alone
    fail_on_call(monkeypatch, tifffile, "imwrite", 2, OSError(28, "No space left on device"))
    assert main(["deblur", str(tiny), "-o", str(out)]) == 2
    assert_one_line_error(capsys.readouterr().err, "deblur", "no space left on device")
    assert list(out.parent.iterdir()) == []
    monkeypatch.undo()


def test_demo_writes_its_four_files_or_none(fake_pipeline, tmp_path, monkeypatch, capsys):
    import imageio.v3

    from psfkit.cli import main

    assert main(["demo", "-o", str(tmp_path / "demo")]) == 0
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == ["figure.png", "input.tif", "psf.tif", "restored.tif"]
    fail_on_call(monkeypatch, imageio.v3, "imwrite", 1, OSError(28, "No space left on device"))
    assert main(["demo", "-o", str(tmp_path / "demo2" / "nested")]) == 2
    assert_one_line_error(capsys.readouterr().err, "demo", "no space left on device")
    assert not (tmp_path / "demo2").exists()  # not even the folders it made


def test_an_unwritable_output_folder_is_refused_before_the_work(fake_pipeline, tiny, tmp_path, monkeypatch, capsys):
    import os

    from psfkit.cli import main

    access = os.access  # tests run as root, where chmod 0o500 does not stop writes
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if str(path) == str(tmp_path) else access(path, mode, **kw))
    assert main(["estimate", str(tiny), "-o", str(tmp_path / "psf.tif")]) == 2
    assert_one_line_error(capsys.readouterr().err, "estimate", "not writable")
    assert fake_pipeline == []


def test_out_of_memory_is_a_user_error_but_a_bug_is_not(fake_pipeline, tiny, tmp_path, monkeypatch, capsys):
    import psfkit.pipeline
    from psfkit.cli import main

    fail_on_call(monkeypatch, psfkit.pipeline, "deblur", 1, MemoryError("Unable to allocate 8.00 GiB"))
    assert main(["deblur", str(tiny), "-o", str(tmp_path / "out.tif")]) == 2
    assert_one_line_error(capsys.readouterr().err, "deblur", "out of memory")
    fail_on_call(monkeypatch, psfkit.pipeline, "deblur", 1, KeyError("internal"))
    with pytest.raises(KeyError):  # a traceback and exit status 1: a bug to report, not a user error
        main(["deblur", str(tiny), "-o", str(tmp_path / "out.tif")])
    assert not (tmp_path / "out.tif").exists()


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


# ------------------------------------------------------------ deconvolve (known optics)


@pytest.fixture
def stacks(tmp_path):
    """Tiny synthetic files: an ImageJ stack with its voxel size, a stack and an image without metadata."""
    rng = np.random.default_rng(4)
    stack = rng.poisson(20.0, (8, 32, 32)).astype(np.uint16)
    stack[4, 16, 16] = 2000
    tifffile.imwrite(tmp_path / "imagej.tif", stack, imagej=True, resolution=(1 / 0.1, 1 / 0.1),
                     metadata={"unit": "um", "spacing": 0.3, "axes": "ZYX"})
    tifffile.imwrite(tmp_path / "bare.tif", stack, photometric="minisblack")
    tifffile.imwrite(tmp_path / "plane.tif", stack[4])
    return tmp_path


def test_deconvolve_a_stack_with_the_optics_of_its_metadata(stacks, capsys):
    import psfkit
    from psfkit.cli import main

    out = stacks / "out" / "restored.tif"
    args = ["deconvolve", str(stacks / "imagej.tif"), "-o", str(out), "--na", "1.2", "--wavelength", "0.5",
            "--iterations", "3"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "restored_psf.tif" in printed
    restored, psf = tifffile.imread(out), tifffile.imread(out.parent / "restored_psf.tif")
    assert restored.shape == (8, 32, 32) and restored.dtype == np.float32 and restored.min() >= 0
    assert psf.ndim == 3 and psf.sum() == pytest.approx(1, rel=1e-5)
    # the PSF is the nominal one of the file's voxel size (0.1 um pixels, 0.3 um steps) and the options
    optics = psfkit.Optics(na=1.2, wavelength=0.5, pixel_size=0.1, z_step=0.3)
    np.testing.assert_allclose(psf, psfkit.microscope_psf(optics, psf.shape), rtol=1e-5, atol=1e-7)
    # command-line values override the metadata; born-wolf and another method run too
    args = [*args[:-2], "--pixel-size", "0.2", "--z-step", "0.5", "--model", "born-wolf", "--method", "rl",
            "--iterations", "2", "--psf-shape", "7x9x9", "--force"]
    assert main(args) == 0
    psf = tifffile.imread(out.parent / "restored_psf.tif")
    optics = psfkit.Optics(na=1.2, wavelength=0.5, pixel_size=0.2, z_step=0.5)
    np.testing.assert_allclose(psf, psfkit.microscope_psf(optics, (7, 9, 9), model="born-wolf"), rtol=1e-5, atol=1e-7)


def test_deconvolve_a_2d_image_from_a_subprocess(stacks):
    out = stacks / "plane_restored.tif"
    result = run("deconvolve", str(stacks / "plane.tif"), "-o", str(out), "--na", "1.0", "--wavelength", "0.5",
                 "--pixel-size", "0.1", "--iterations", "3", cwd=stacks)
    assert result.returncode == 0, result.stderr
    assert tifffile.imread(out).shape == (32, 32)
    assert tifffile.imread(stacks / "plane_restored_psf.tif").ndim == 2


@pytest.mark.parametrize(
    "file, extra, message",
    [
        ("imagej.tif", ["--wavelength", "0.5"], "missing --na"),
        ("bare.tif", ["--na", "1.2", "--wavelength", "0.5", "--pixel-size", "0.1"], "missing --z-step"),
        ("plane.tif", ["--na", "1.2"], "missing --wavelength, --pixel-size"),
        ("imagej.tif", ["--na", "1.6", "--wavelength", "0.5"], "na must be smaller than immersion_index"),
        ("imagej.tif", ["--na", "1.2", "--wavelength", "0.5", "--psf-shape", "9x9"], "--psf-shape"),
        ("imagej.tif", ["--na", "1.2", "--wavelength", "0.5", "--psf-shape", "9x0x9"], "--psf-shape"),
        ("imagej.tif", ["--na", "1.2", "--wavelength", "0.5", "--model", "gaussian"], "--model"),
        ("imagej.tif", ["--na", "1.2", "--wavelength", "0.5", "--method", "unrolled"], "--method"),
        ("imagej.tif", ["--na", "1.2", "--wavelength", "0.5", "--modality", "confocal"], "excitation"),
        ("imagej.tif", ["--na", "0", "--wavelength", "0.5"], "--na"),
        ("missing.tif", ["--na", "1.2"], "not found"),
    ],
)
def test_deconvolve_errors_are_one_line(stacks, capsys, file, extra, message):
    from psfkit.cli import main

    try:
        status = main(["deconvolve", str(stacks / file), "-o", str(stacks / "out.tif"), *extra])
    except SystemExit as exit:  # argparse's usage errors
        status = exit.code
    assert status == 2
    assert_one_line_error(capsys.readouterr().err, "deconvolve", message)
    assert not (stacks / "out.tif").exists() and not (stacks / "out_psf.tif").exists()


def test_deconvolve_writes_both_outputs_or_neither(stacks, monkeypatch, capsys):
    from psfkit.cli import main

    out = stacks / "res" / "restored.tif"
    out.parent.mkdir()
    (out.parent / "restored_psf.tif").mkdir()  # the PSF output cannot be written
    args = ["deconvolve", str(stacks / "imagej.tif"), "-o", str(out), "--na", "1.2", "--wavelength", "0.5",
            "--iterations", "2"]
    assert main([*args, "--force"]) == 2
    assert_one_line_error(capsys.readouterr().err, "deconvolve", "is a directory")
    (out.parent / "restored_psf.tif").rmdir()
    fail_on_call(monkeypatch, tifffile, "imwrite", 2, OSError(28, "No space left on device"))
    assert main(args) == 2
    assert_one_line_error(capsys.readouterr().err, "deconvolve", "no space left on device")
    assert list(out.parent.iterdir()) == []
    monkeypatch.undo()


def test_restored_files_carry_their_voxel_size(stacks):
    import psfkit
    from psfkit.cli import main

    out = stacks / "restored.tif"
    assert main(["deconvolve", str(stacks / "imagej.tif"), "-o", str(out), "--na", "1.2", "--wavelength", "0.5",
                 "--pixel-size", "0.12", "--iterations", "2"]) == 0
    for path in (out, stacks / "restored_psf.tif"):  # Fiji and psfkit read the calibration back
        optics = psfkit.Optics.from_tiff(path, na=1.2, wavelength=0.5)
        assert optics.pixel_size == pytest.approx(0.12) and optics.z_step == pytest.approx(0.3)


# ------------------------------------------------------- estimate / deblur with optics


def test_deblur_a_stack_with_the_nominal_psf_of_its_optics(stacks, capsys):
    import psfkit
    from psfkit.cli import main

    out = stacks / "deblurred.tif"
    assert main(["deblur", str(stacks / "imagej.tif"), "-o", str(out), "--na", "1.2", "--wavelength", "0.5",
                 "--size", "9", "--iterations", "3"]) == 0
    assert "nominal 3-D PSF" in capsys.readouterr().out  # the user is told what was done
    restored, psf = tifffile.imread(out), tifffile.imread(stacks / "deblurred_psf.tif")
    assert restored.shape == (8, 32, 32)
    optics = psfkit.Optics(na=1.2, wavelength=0.5, pixel_size=0.1, z_step=0.3)
    np.testing.assert_allclose(psf, psfkit.microscope_psf(optics, (7, 9, 9)), rtol=1e-5, atol=1e-7)
    assert psfkit.Optics.from_tiff(out, na=1.2, wavelength=0.5).z_step == pytest.approx(0.3)


def test_estimate_takes_a_stack_as_frames_when_asked(stacks, capsys):
    from psfkit.cli import main

    stack = stacks / "imagej.tif"
    common = ["--na", "1.2", "--wavelength", "0.5", "--modality", "confocal", "--excitation", "0.45", "--size", "9"]
    assert main(["estimate", str(stack), "-o", str(stacks / "one.tif"), *common]) == 0
    assert tifffile.imread(stacks / "one.tif").shape == (7, 9, 9)  # one 3-D PSF
    assert main(["estimate", str(stack), "-o", str(stacks / "per_frame.tif"), "--frames", *common]) == 0
    assert tifffile.imread(stacks / "per_frame.tif").shape == (8, 9, 9)  # a confocal in-focus PSF per frame
    assert "confocal optics: the nominal PSF" in capsys.readouterr().out


def test_the_demo_sharpens_the_real_sample_without_a_warning(tmp_path):
    # the README's first command, as a new user runs it: no warning, a measurably sharper image
    import re

    result = run("demo", "-o", str(tmp_path / "demo"), cwd=tmp_path)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert "assumed" in result.stdout  # the optics the file does not state are named
    before, after = map(float, re.search(r"(\d+) nm -> (\d+) nm", result.stdout).groups())
    assert after < 0.85 * before
    restored = tifffile.imread(tmp_path / "demo" / "restored.tif")
    assert restored.shape == (316, 316) and np.isfinite(restored).all() and restored.min() >= 0
