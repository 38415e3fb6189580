"""Many files on dask.distributed (psfkit.batch and the command line's many-files mode), and OME-Zarr output.

The clusters here are in-process (``processes=False``: worker threads, up in a fraction of a second), so the
stand-in for the networks that a test patches in is the one the tasks run.
"""

import subprocess
import sys

import numpy as np
import pytest

tifffile = pytest.importorskip("tifffile")
zarr = pytest.importorskip("zarr")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

PSF = np.full((5, 5), 1 / 25)


@pytest.fixture(scope="module")
def scheduler():
    """The address of an in-process cluster of 2 one-thread workers, shared by the module's tests."""
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                       dashboard_address="127.0.0.1:0", worker_dashboard_address="127.0.0.1:0")
    yield cluster.scheduler_address
    cluster.close()


@pytest.fixture
def fake_deblur(monkeypatch):
    """An instant stand-in for psfkit.pipeline.deblur: twice the image, lazily for a dask array (its contract)."""
    import psfkit.pipeline

    calls = []

    def deblur(image, **kwargs):
        calls.append(type(image).__module__.split(".")[0])
        if hasattr(image, "dask"):
            return image.astype(np.float32) * 2, PSF
        return np.asarray(image, dtype=float) * 2, PSF

    monkeypatch.setattr(psfkit.pipeline, "deblur", deblur)
    return calls


def images(folder, names, shape=(64, 64)):
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(1)
    paths = []
    for name in names:
        tifffile.imwrite(folder / name, rng.integers(100, 1000, shape, dtype=np.uint16))
        paths.append(folder / name)
    return paths


def one_error_line_each(stderr, prefix):
    lines = [line for line in stderr.strip().splitlines() if line.startswith(prefix)]
    assert lines and "Traceback" not in stderr, stderr
    return lines


def test_a_failing_file_is_reported_and_skipped_and_leaves_nothing(fake_deblur, scheduler, tmp_path, monkeypatch,
                                                                   capsys):
    from psfkit.cli import main

    good = images(tmp_path / "in", ["a.tif", "b.tif", "full.tif"])
    (tmp_path / "in" / "corrupt.tif").write_bytes(b"II*\0 not a TIFF after all")
    # the disk fills up while full.tif's output is written: a partial file exists at that moment
    imwrite = tifffile.imwrite

    def filling(path, *args, **kwargs):
        if "full" in str(path):
            with open(path, "wb") as file:
                file.write(b"II*\0 half")
            raise OSError(28, "No space left on device")
        return imwrite(path, *args, **kwargs)

    monkeypatch.setattr(tifffile, "imwrite", filling)
    out = tmp_path / "out"
    inputs = [str(p) for p in sorted((tmp_path / "in").iterdir())]
    assert main(["deblur", *inputs, "-o", f"{out}/", "--cutoff", "0.2", "--scheduler", scheduler]) == 1
    captured = capsys.readouterr()
    errors = one_error_line_each(captured.err, "psfkit: ")
    assert len(errors) == 2
    assert any(line.startswith(f"psfkit: {tmp_path / 'in' / 'corrupt.tif'}: ") and "corrupt" in line for line in errors)
    assert any("full.tif" in line and "no space left on device" in line for line in errors)
    assert "2 of 4 files written" in captured.out
    # the good files are complete, the failed ones absent, and no temporary remains
    assert sorted(p.name for p in out.iterdir()) == ["a.tif", "a_psf.tif", "b.tif", "b_psf.tif"]
    for path in good[:2]:
        np.testing.assert_allclose(tifffile.imread(out / path.name), 2 * tifffile.imread(path))
        np.testing.assert_allclose(tifffile.imread(out / f"{path.stem}_psf.tif"), PSF, rtol=1e-6)


def test_the_warnings_of_a_file_are_reported_with_its_name(scheduler, tmp_path, monkeypatch, capsys):
    import warnings

    import psfkit.pipeline
    from psfkit.cli import main

    def deblur(image, **kwargs):
        warnings.warn(f"deblur: made-up advice about an image of mean {np.mean(image):.3f}", UserWarning)
        return np.asarray(image, dtype=float), PSF

    monkeypatch.setattr(psfkit.pipeline, "deblur", deblur)
    inputs = [str(p) for p in images(tmp_path / "in", ["a.tif", "b.tif"])]
    assert main(["deblur", *inputs, "-o", str(tmp_path / "out"), "--cutoff", "0.2", "--scheduler", scheduler]) == 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert sorted(line.split(": warning: ")[0] for line in lines) == [f"psfkit: {p}" for p in inputs], lines
    assert all("made-up advice" in line for line in lines)


def test_outputs_that_exist_are_refused_before_anything_runs(fake_deblur, scheduler, tmp_path, capsys):
    from psfkit.cli import main

    inputs = [str(p) for p in images(tmp_path / "in", ["a.tif", "b.tif"])]
    out = tmp_path / "out"
    out.mkdir()
    (out / "b_psf.tif").write_bytes(b"precious")
    assert main(["deblur", *inputs, "-o", str(out), "--cutoff", "0.2", "--scheduler", scheduler]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("psfkit deblur: error: ") and "exists; use --force" in lines[0]
    assert fake_deblur == [] and sorted(p.name for p in out.iterdir()) == ["b_psf.tif"]
    assert (out / "b_psf.tif").read_bytes() == b"precious"
    assert main(["deblur", *inputs, "-o", str(out), "--cutoff", "0.2", "--scheduler", scheduler, "--force"]) == 0
    assert tifffile.imread(out / "b_psf.tif").shape == (5, 5)


@pytest.mark.parametrize(
    "args, message",
    [
        (["IN/a.tif", "IN/b.tif", "-o", "OUT/one.tif"], "need an output folder"),
        (["IN/a.tif", "IN/sub/a.tif", "-o", "OUT/"], "would both be written to"),
        (["IN/a.tif", "IN/missing.tif", "-o", "OUT/"], "not found"),
        (["IN/a.tif", "-o", "IN/"], "would overwrite its input"),
        (["IN/a.tif", "-o", "OUT/x.tif", "--format", "zarr", "--workers", "1"], "does not match"),
        (["IN/a.tif", "-o", "OUT/x.tif", "--format", "zarr"], "does not match"),
        (["IN/a.tif", "-o", "OUT/", "--workers", "2", "--scheduler", "tcp://127.0.0.1:8786"], "its own"),
        (["IN/a.tif", "-o", "OUT/", "--chunks", "8"], "--chunks"),
        (["IN/a.tif", "-o", "OUT/a.png", "--chunks", "32"], "written as .tif or .ome.zarr"),
        (["IN/a.tif", "-o", "OUT/", "--workers", "0"], "--workers"),
        (["IN/a.tif", "-o", "OUT/", "--scheduler", "nowhere"], "cannot reach the dask scheduler nowhere"),
    ],
)
def test_usage_errors_of_many_files_are_one_line_and_write_nothing(fake_deblur, tmp_path, capsys, args, message):
    from psfkit.cli import main

    images(tmp_path / "in", ["a.tif", "b.tif"])
    images(tmp_path / "in" / "sub", ["a.tif"])
    args = [a.replace("IN", str(tmp_path / "in")).replace("OUT", str(tmp_path / "out")) for a in args]
    try:
        status = main(["deblur", *args, "--cutoff", "0.2"])
    except SystemExit as exit:  # argparse's usage errors
        status = exit.code
    assert status == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert fake_deblur == [] and not (tmp_path / "out").exists()
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["a.tif", "b.tif", "sub"]


def test_many_files_without_dask_distributed_is_a_clear_error(fake_deblur, tmp_path, monkeypatch, capsys):
    import psfkit.batch
    from psfkit.cli import main

    monkeypatch.setattr(psfkit.batch, "have_distributed", lambda: False)
    inputs = [str(p) for p in images(tmp_path / "in", ["a.tif", "b.tif"])]
    assert main(["deblur", *inputs, "-o", str(tmp_path / "out") + "/", "--cutoff", "0.2"]) == 2
    assert "pip install psfkit[dask]" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_default_local_cluster_runs_the_files(fake_deblur, tmp_path, monkeypatch, capsys):
    import psfkit.batch
    from psfkit.cli import main

    # the local cluster of the command line, in this process (worker processes would not see the stand-in)
    monkeypatch.setitem(psfkit.batch.LOCAL_CLUSTER, "processes", False)
    inputs = [str(p) for p in images(tmp_path / "in", ["a.tif", "b.tif", "c.tif"])]
    assert main(["deblur", *inputs, "-o", str(tmp_path / "out") + "/", "--cutoff", "0.2", "--workers", "2"]) == 0
    assert "3 of 3 files written" in capsys.readouterr().out
    assert len(list((tmp_path / "out").iterdir())) == 6 and fake_deblur == ["numpy"] * 3


def test_import_psfkit_cli_does_not_import_dask():
    code = "import sys, psfkit.cli; print(sorted(m for m in ('dask', 'distributed', 'zarr') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# ---------------------------------------------------------------- OME-Zarr


def read_ome_zarr(path):
    """(pixels, axes names, scale) of a single-scale OME-NGFF 0.4 image, read with zarr alone."""
    group = zarr.open_group(str(path), mode="r")
    assert group.metadata.zarr_format == 2
    (multiscale,) = group.attrs["multiscales"]
    assert multiscale["version"] == "0.4"
    (dataset,) = multiscale["datasets"]
    (transform,) = dataset["coordinateTransformations"]
    assert transform["type"] == "scale"
    return group[dataset["path"]], [axis["name"] for axis in multiscale["axes"]], transform["scale"]


def test_write_ome_zarr_from_numpy_and_dask(tmp_path):
    from psfkit.io import write_ome_zarr

    stack = np.random.default_rng(2).random((3, 70, 50)).astype(np.float32)
    path = write_ome_zarr(tmp_path / "stack.ome.zarr", stack, pixel_size=0.1, z_step=0.3, chunks=32)
    array, axes, scale = read_ome_zarr(path)
    assert axes == ["z", "y", "x"] and scale == [0.3, 0.1, 0.1] and array.chunks == (1, 32, 32)
    np.testing.assert_array_equal(array[:], stack)
    units = [axis.get("unit") for axis in zarr.open_group(str(path), mode="r").attrs["multiscales"][0]["axes"]]
    assert units == ["micrometer"] * 3
    # a dask array is stored chunk by chunk, rechunked to the store's chunks; an existing image needs overwrite
    lazy = da.from_array(stack, chunks=(2, 25, 20)) + 1
    with pytest.raises(FileExistsError):
        write_ome_zarr(path, lazy)
    write_ome_zarr(path, lazy, chunks=(2, 40, 40), overwrite=True)
    array, axes, scale = read_ome_zarr(path)
    assert axes == ["t", "y", "x"] and scale == [1.0, 1.0, 1.0] and array.chunks == (2, 40, 40)  # planes, no z step
    np.testing.assert_array_equal(array[:], stack + 1)
    assert [p.name for p in tmp_path.iterdir()] == ["stack.ome.zarr"]  # no temporary left
    with pytest.raises(ValueError, match="2-D image or a 3-D stack"):
        write_ome_zarr(tmp_path / "line.ome.zarr", np.ones(5))
    assert not (tmp_path / "line.ome.zarr").exists()


def test_zarr_outputs_round_trip_with_their_voxel_size(scheduler, tmp_path, capsys):
    from psfkit.cli import main

    rng = np.random.default_rng(4)
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("s1.tif", "s2.tif"):  # ImageJ stacks with their voxel size (0.1 um pixels, 0.3 um steps)
        stack = rng.poisson(20.0, (6, 32, 32)).astype(np.uint16)
        stack[3, 16, 16] = 2000
        tifffile.imwrite(folder / name, stack, imagej=True, resolution=(10, 10),
                         metadata={"unit": "um", "spacing": 0.3, "axes": "ZYX"})
    common = ["--na", "1.2", "--wavelength", "0.5", "--iterations", "2", "--psf-shape", "5x9x9"]
    out = tmp_path / "out"
    inputs = [str(folder / "s1.tif"), str(folder / "s2.tif")]
    assert main(["deconvolve", *inputs, "-o", str(out), "--format", "zarr", "--scheduler", scheduler, *common]) == 0
    assert main(["deconvolve", inputs[0], "-o", str(tmp_path / "single.tif"), *common]) == 0  # the one-file command
    assert sorted(p.name for p in out.iterdir()) == ["s1.ome.zarr", "s1_psf.tif", "s2.ome.zarr", "s2_psf.tif"]
    array, axes, scale = read_ome_zarr(out / "s1.ome.zarr")
    assert axes == ["z", "y", "x"] and scale == pytest.approx([0.3, 0.1, 0.1])
    assert array.dtype == np.float32 and array.shape == (6, 32, 32)
    np.testing.assert_allclose(array[:], tifffile.imread(tmp_path / "single.tif"), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tifffile.imread(out / "s1_psf.tif"), tifffile.imread(tmp_path / "single_psf.tif"))
    # a single output named .ome.zarr is OME-Zarr too, written in this process
    assert main(["deconvolve", inputs[1], "-o", str(tmp_path / "s2.ome.zarr"), *common]) == 0
    np.testing.assert_array_equal(read_ome_zarr(tmp_path / "s2.ome.zarr")[0][:], read_ome_zarr(out / "s2.ome.zarr")[0][:])
    assert (tmp_path / "s2_psf.tif").exists()


# ------------------------------------------------------------------ tiles


def test_chunks_open_the_file_lazily_and_store_tile_by_tile(fake_deblur, scheduler, tmp_path, capsys):
    from psfkit.cli import main

    (path,) = images(tmp_path / "in", ["wide.tif"], shape=(80, 100))
    # one file, in this process: to a TIFF through a memory map, then to OME-Zarr chunked as the tiles
    assert main(["deblur", str(path), "-o", str(tmp_path / "tiled.tif"), "--cutoff", "0.2", "--chunks", "32"]) == 0
    assert main(["deblur", str(path), "-o", str(tmp_path / "tiled2.ome.zarr"), "--cutoff", "0.2", "--chunks", "32x48"]) == 0
    assert fake_deblur == ["dask", "dask"]  # the computation saw a dask array, not the pixels
    expected = 2 * tifffile.imread(path).astype(np.float32)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "tiled.tif"), expected)
    array, _, _ = read_ome_zarr(tmp_path / "tiled2.ome.zarr")
    assert array.chunks == (32, 48)
    np.testing.assert_array_equal(array[:], expected)
    # many files on the cluster, lazily too
    assert main(["deblur", str(path), "-o", str(tmp_path / "out") + "/", "--cutoff", "0.2", "--chunks", "32",
                 "--format", "zarr", "--scheduler", scheduler]) == 0
    np.testing.assert_array_equal(read_ome_zarr(tmp_path / "out" / "wide.ome.zarr")[0][:], expected)
    assert not [p for p in tmp_path.rglob(".*") if not p.name.startswith((".zgroup", ".zattrs", ".zarray"))]


def test_a_task_reports_each_stored_tile(tmp_path):
    from pathlib import Path

    import psfkit.cli as cli
    from psfkit.batch import process_file

    (path,) = images(tmp_path, ["plane.tif"], shape=(96, 96))
    options = {name: None for name in (*cli._DECONVOLVE_OPTIONS, *cli._OPTICS_OPTIONS)}
    options.update(na=1.2, wavelength=0.5, pixel_size=0.1, iterations=3, method="rl", model="scalar", background=0.0)
    events = []
    _, warned = process_file(cli._deconvolve_file, path, Path(tmp_path / "r.tif"), Path(tmp_path / "r_psf.tif"), options,
                 run="test", chunks=(32, 32), threads=1, report=lambda n, total=None: events.append((n, total)))
    assert events[0] == (0, 9) and events[1:] == [(1, None)] * 9 and warned == []  # 3 x 3 tiles
    untiled, _, _ = cli._deconvolve_file(path, options)
    tiled = tifffile.imread(tmp_path / "r.tif")
    assert np.max(np.abs(tiled - untiled)) / np.mean(untiled) < 1e-3  # the seams of the halo'd tiles


def test_a_file_opened_lazily_is_the_file_read_whole(tmp_path):
    from psfkit.batch import open_image
    from psfkit.io import read_image

    rng = np.random.default_rng(5)
    tifffile.imwrite(tmp_path / "stack.tif", rng.integers(0, 999, (3, 40, 50), dtype=np.uint16), imagej=True,
                     metadata={"axes": "ZYX", "spacing": 0.3})
    tifffile.imwrite(tmp_path / "rgb.tif", rng.integers(0, 256, (40, 50, 3), dtype=np.uint8), photometric="rgb")
    tifffile.imwrite(tmp_path / "single.tif", rng.random((1, 40, 50)).astype(np.float32))
    for name in ("stack.tif", "rgb.tif", "single.tif"):
        lazy = open_image(tmp_path / name, (16, 32))
        assert hasattr(lazy, "dask"), name
        assert lazy.chunks[-2:] == ((16, 16, 8), (32, 18)) and lazy.chunks[:-2] == tuple((n,) for n in lazy.shape[:-2])  # a stack: all planes
        whole = read_image(tmp_path / name)
        assert lazy.shape == whole.shape
        np.testing.assert_allclose(lazy.compute(), whole)
    (tmp_path / "cut.tif").write_bytes((tmp_path / "stack.tif").read_bytes()[:200])
    with pytest.raises(ValueError):  # when the tiles are read (a many-files run prefixes the file's name)
        open_image(tmp_path / "cut.tif", (16, 16)).compute()
