"""psfkit.io: reading any image file a user has, writing without ever leaving a partial file."""

import os
import stat
import sys

import numpy as np
import pytest

from psfkit.io import check_writable, read_image, write_image, write_images

tifffile = pytest.importorskip("tifffile")
iio = pytest.importorskip("imageio.v3")

LUMINANCE = np.array([0.2126, 0.7152, 0.0722])


@pytest.fixture
def rgb():
    return np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)


def listing(folder):
    return sorted(p.name for p in folder.iterdir())


# ------------------------------------------------------------------- reading
@pytest.mark.parametrize("shape", [(64, 64), (2, 64, 64), (1, 64, 64)])
def test_grey_tiffs_keep_their_pixels_and_dtype(tmp_path, shape):
    data = np.arange(np.prod(shape), dtype=np.uint16).reshape(shape)
    tifffile.imwrite(tmp_path / "a.tif", data)
    image = read_image(tmp_path / "a.tif")
    assert image.dtype == np.uint16
    np.testing.assert_array_equal(image, np.squeeze(data))


def test_an_rgb_tiff_is_one_colour_image_not_a_stack_of_narrow_frames(tmp_path, rgb):
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    image = read_image(str(tmp_path / "rgb.tif"))
    assert image.shape == (64, 64)
    np.testing.assert_allclose(image, rgb @ LUMINANCE)


@pytest.mark.parametrize(
    "layout",
    [
        dict(photometric="rgb", planarconfig="separate"),  # (3, 64, 64) on disk
        dict(photometric="minisblack"),  # 64 pages of 64 x 3: no colour tag, the last axis says it
        dict(photometric="rgb", alpha=True),
    ],
)
def test_other_colour_tiff_layouts_become_luminance(tmp_path, rgb, layout):
    data = rgb
    if layout.get("alpha"):
        layout = {"photometric": "rgb", "extrasamples": ["unassalpha"]}
        data = np.dstack([rgb, np.full((64, 64), 255, np.uint8)])
    elif layout.get("planarconfig"):
        data = np.moveaxis(rgb, -1, 0)
    tifffile.imwrite(tmp_path / "c.tif", data, **layout)
    np.testing.assert_allclose(read_image(tmp_path / "c.tif"), rgb @ LUMINANCE)


def test_colour_and_grey_alpha_pngs(tmp_path, rgb):
    iio.imwrite(tmp_path / "rgb.png", rgb)
    np.testing.assert_allclose(read_image(tmp_path / "rgb.png"), rgb @ LUMINANCE)
    grey_alpha = np.dstack([rgb[..., 0], np.full((64, 64), 255, np.uint8)])
    iio.imwrite(tmp_path / "la.png", grey_alpha)
    np.testing.assert_array_equal(read_image(tmp_path / "la.png"), rgb[..., 0])


def test_the_format_comes_from_the_content_not_the_name(tmp_path):
    data = np.eye(64, dtype=np.float32)
    tifffile.imwrite(tmp_path / "really_a_tiff.png", data)
    np.testing.assert_array_equal(read_image(tmp_path / "really_a_tiff.png"), data)


def test_files_that_cannot_be_opened(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        read_image(tmp_path / "missing.tif")
    with pytest.raises(IsADirectoryError):
        read_image(tmp_path)


def truncated(path):
    tifffile.imwrite(path, np.ones((64, 64), np.uint16))
    path.write_bytes(path.read_bytes()[:3000])


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.write_text("x,y\n1,2\n"), "not a readable image"),
        (lambda p: p.write_bytes(b"II*\0" + b"\xff" * 20), "cannot read the TIFF"),
        (truncated, "truncated"),
        (lambda p: tifffile.imwrite(p, np.arange(64, dtype=np.uint16)), "2-D image or a stack"),
        (lambda p: tifffile.imwrite(p, np.zeros((2, 2, 64, 64), np.uint16), photometric="minisblack"), "got shape"),
        (lambda p: tifffile.imwrite(p, np.zeros((0, 64), np.uint16)), "no pixels"),
        (lambda p: tifffile.imwrite(p, np.zeros((64, 64), bool)), "dtype bool"),
        (lambda p: tifffile.imwrite(p, np.zeros((64, 64), complex)), "dtype complex"),
        (lambda p: tifffile.imwrite(p, np.zeros((5, 64, 64), np.uint8), photometric="minisblack", planarconfig="separate"),
         "5 samples"),
    ],
)
@pytest.mark.parametrize("name", ["in.tif", "in.png"])
@pytest.mark.filterwarnings("ignore:.*zero-size array")  # tifffile, writing the zero-size case
def test_unusable_files_are_a_value_error_naming_the_file(tmp_path, make, message, name):
    path = tmp_path / name
    make(path)
    with pytest.raises(ValueError, match=message) as info:
        read_image(path)
    assert str(path) in str(info.value)
    assert len(str(info.value).splitlines()) == 1


def test_a_missing_tifffile_says_how_to_install_it(tmp_path, monkeypatch):
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((64, 64), np.uint8))
    monkeypatch.setitem(sys.modules, "tifffile", None)  # import tifffile now raises ImportError
    with pytest.raises(ImportError, match=r"pip install psfkit\[io\]"):
        read_image(tmp_path / "a.tif")


# ------------------------------------------------------------------- writing
def test_round_trips_and_png_scaling(tmp_path):
    stack = np.random.default_rng(1).random((2, 64, 64)).astype(np.float32)
    assert write_image(tmp_path / "s.tif", stack) == tmp_path / "s.tif"
    np.testing.assert_array_equal(read_image(tmp_path / "s.tif"), stack)
    write_image(tmp_path / "f.png", stack[0])
    png = read_image(tmp_path / "f.png")
    assert png.dtype == np.uint8 and png.min() == 0 and png.max() == 255
    counts = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)
    write_image(tmp_path / "c.png", counts)  # uint16: unchanged
    np.testing.assert_array_equal(read_image(tmp_path / "c.png"), counts)
    assert listing(tmp_path) == ["c.png", "f.png", "s.tif"]  # no temporaries left


def test_outputs_are_created_with_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        write_image(tmp_path / "a.tif", np.zeros((8, 8)))
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "a.tif").stat().st_mode) == 0o644


def test_an_existing_file_is_kept_unless_overwrite(tmp_path):
    path = tmp_path / "a.tif"
    write_image(path, np.zeros((8, 8)))
    with pytest.raises(FileExistsError):
        write_image(path, np.ones((8, 8)))
    assert read_image(path).max() == 0
    write_image(path, np.ones((8, 8)), overwrite=True)
    assert read_image(path).min() == 1


def test_unusable_output_paths_are_refused_before_writing(tmp_path):
    (tmp_path / "afile").write_text("")
    (tmp_path / "folder.tif").mkdir()
    with pytest.raises(NotADirectoryError, match="afile"):
        check_writable(tmp_path / "afile" / "out.tif", parents=True)
    with pytest.raises(NotADirectoryError):
        write_image(tmp_path / "afile" / "deeper" / "out.tif", np.zeros((8, 8)), parents=True)
    with pytest.raises(IsADirectoryError):
        write_image(tmp_path / "folder.tif", np.zeros((8, 8)), overwrite=True)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_image(tmp_path / "new" / "out.tif", np.zeros((8, 8)))
    with pytest.raises(ValueError, match="unsupported"):
        write_image(tmp_path / "out.jpg", np.zeros((8, 8)))
    with pytest.raises(ValueError, match="one 2-D image"):
        write_image(tmp_path / "out.png", np.zeros((2, 8, 8)))
    with pytest.raises(ValueError, match="dtype bool"):
        write_image(tmp_path / "out.tif", np.zeros((8, 8), bool))
    assert listing(tmp_path) == ["afile", "folder.tif"]
    write_image(tmp_path / "new" / "deeper" / "out.tif", np.zeros((8, 8)), parents=True)
    assert (tmp_path / "new" / "deeper" / "out.tif").is_file()


def test_write_images_is_all_or_nothing(tmp_path, monkeypatch):
    calls = []

    def failing_imwrite(path, array, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            with open(path, "wb") as file:
                file.write(b"II*\0 half")  # the writer dies half-way
            raise OSError(28, "No space left on device")
        return original(path, array, **kwargs)

    original = tifffile.imwrite
    monkeypatch.setattr(tifffile, "imwrite", failing_imwrite)
    outputs = {tmp_path / "new" / "a.tif": np.zeros((8, 8)), tmp_path / "new" / "b.tif": np.ones((8, 8))}
    with pytest.raises(OSError, match="No space"):
        write_images(outputs, parents=True)
    assert listing(tmp_path) == []  # neither output, no temporary, not even the folder it made
    monkeypatch.setattr(tifffile, "imwrite", original)
    assert write_images(outputs, parents=True) == list(outputs)
    assert listing(tmp_path / "new") == ["a.tif", "b.tif"]
