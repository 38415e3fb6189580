"""Image files: TIFF (tifffile) and PNG/JPEG (imageio), read and written safely.

Reading always gives a 2-D image or a stack of 2-D frames, or a ValueError
that names the file and what was expected. Writing never leaves a partial
file behind: each image goes to a temporary file in the output directory,
renamed onto its final name only once every image has been written.
"""

import contextlib
import errno
import importlib
import math
import os
import secrets
import warnings
from pathlib import Path

import numpy as np

_TIFF_MAGIC = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")  # classic and BigTIFF, both byte orders
_TIFF_SUFFIXES = (".tif", ".tiff")
_PNG_SUFFIXES = (".png",)
_LUMINANCE = np.array([0.2126, 0.7152, 0.0722])  # Rec. 709 (sRGB) weights
_EXPECTED = "a 2-D image or a stack of 2-D frames"


def _require(module, hint):
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f"reading and writing image files needs {module.split('.')[0]}: {hint}") from error


def _tifffile():
    return _require("tifffile", "pip install psfkit[io]")


def _imageio():
    return _require("imageio.v3", "pip install psfkit[io] imageio")


def _reason(error):
    # readers put whole paragraphs in their messages; the first line is the informative one
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


# ------------------------------------------------------------------- reading
def read_image(path):
    """Read a grey image, a stack of frames or a colour image from a file.

    Parameters
    ----------
    path : str or path-like
        A TIFF file (any number of pages; recognised by its content, not its
        name) or any image format imageio reads (PNG, JPEG, ...).

    Returns
    -------
    image : (M, N) or (P, M, N) ndarray
        The pixels in the file's own numeric dtype. A colour image (an RGB or
        RGBA TIFF, or a last axis of 3 or 4 samples) is converted to float64
        luminance (Rec. 709 weights, alpha ignored); a grey + alpha image keeps
        its grey channel. Singleton axes are removed.

    Raises
    ------
    FileNotFoundError, IsADirectoryError, PermissionError
        The file cannot be opened.
    ValueError
        The file is empty, not an image, truncated or corrupt, or holds data
        that is not a 2-D image or a stack of 2-D frames of real numbers.
    ImportError
        tifffile is needed for TIFF files (``pip install psfkit[io]``).

    Notes
    -----
    A TIFF that says it is RGB is read as a colour image. tifffile writes a
    (3, M, N) or (4, M, N) array as planar RGB(A) unless told otherwise: write a
    stack of 3 or 4 frames with ``photometric='minisblack'``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> from psfkit.io import read_image, write_image
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> path = write_image(folder / "frames.tif", np.zeros((2, 64, 64), np.uint16))
    >>> image = read_image(path)
    >>> image.shape, image.dtype
    ((2, 64, 64), dtype('uint16'))
    """
    path = Path(path)
    try:
        file = open(path, "rb")  # the OS's own errors for a directory or a forbidden file
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "image file not found", str(path)) from None
    except IsADirectoryError:
        raise IsADirectoryError(errno.EISDIR, "expected an image file, got a directory", str(path)) from None
    with file:
        header = file.read(4)
    if not header:
        raise ValueError(f"{path}: the file is empty; expected a TIFF, PNG or JPEG image")
    image, has_samples = _read_tiff(path) if header in _TIFF_MAGIC else _read_other(path)
    if image.dtype.kind not in "uif":
        raise ValueError(f"{path}: expected real-valued integer or float pixels, got dtype {image.dtype}")
    if image.size == 0:
        raise ValueError(f"{path}: the image has no pixels (shape {image.shape})")
    shape = image.shape
    # the last axis holds samples (grey+alpha, RGB, RGBA) when the TIFF says so, or when it is
    # 2-4 long after an axis that is not: a stack of 2- to 4-pixel-wide frames is not an image
    if has_samples or (image.ndim >= 3 and image.shape[-1] in (2, 3, 4) and image.shape[-2] > 4):
        image = _grey(image, path)
    image = np.squeeze(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"{path}: expected {_EXPECTED}, got shape {shape}")
    return image


def _read_tiff(path):
    tifffile = _tifffile()
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            image, axes = series.asarray(), series.axes
    except MemoryError:
        raise
    except Exception as error:  # noqa: BLE001 - corrupt files fail anywhere in the reader
        raise ValueError(f"{path}: cannot read the TIFF ({_reason(error)}); the file may be truncated or corrupt") from error
    if "S" in axes and len(axes) == image.ndim:  # samples per pixel: RGB(A), possibly planar
        return np.moveaxis(image, axes.index("S"), -1), True
    return image, False


def _read_other(path):
    iio = _imageio()
    try:
        with warnings.catch_warnings():
            # imageio tries every plugin on an unknown file, some of which warn that they are deprecated
            warnings.simplefilter("ignore", DeprecationWarning)
            image = np.asarray(iio.imread(path))
    except MemoryError:
        raise
    except Exception as error:  # noqa: BLE001 - imageio raises OSError, SyntaxError, ... for non-images
        reason = _reason(error)
        detail = "" if reason.startswith("Could not find a backend") else f" ({reason})"  # no plugin knows it
        raise ValueError(f"{path}: not a readable image{detail}; expected a TIFF, PNG or JPEG file") from error
    return image, False


def _grey(image, path):
    samples = image.shape[-1]
    if samples <= 2:  # grey, or grey + alpha
        return image[..., 0]
    if samples <= 4:  # RGB, or RGBA
        return image[..., :3].astype(np.float64) @ _LUMINANCE
    raise ValueError(f"{path}: expected grey, RGB or RGBA pixels, got {samples} samples per pixel")


# ------------------------------------------------------------------- writing
def check_writable(path, *, overwrite=False, parents=False):
    """Raise the error that writing an image to ``path`` would raise, before any work is done.

    Parameters
    ----------
    path : str or path-like
        Output file name, ending in ``.tif``, ``.tiff`` or ``.png``.
    overwrite : bool, optional
        Whether an existing file may be replaced.
    parents : bool, optional
        Whether missing parent directories may be created.

    Returns
    -------
    path : pathlib.Path

    Raises
    ------
    ValueError
        Unsupported file name extension.
    ImportError
        The writer for the format is not installed.
    FileExistsError, IsADirectoryError, NotADirectoryError, FileNotFoundError, PermissionError
        The output exists (and ``overwrite`` is False) or is a directory, a
        parent is a regular file, the directory is missing (and ``parents`` is
        False) or cannot be written to.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _TIFF_SUFFIXES + _PNG_SUFFIXES:
        raise ValueError(f"{path}: unsupported output format {path.suffix!r}; use .tif, .tiff or .png")
    (_tifffile if suffix in _TIFF_SUFFIXES else _imageio)()  # a missing writer, before the work rather than after
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "the output is a directory", str(path))
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise FileExistsError(errno.EEXIST, "the output exists", str(path))
    directory = path.parent
    while parents and not directory.exists() and directory != directory.parent:
        directory = directory.parent  # the first ancestor that exists must be a directory we may write to
    if not directory.exists():
        raise FileNotFoundError(errno.ENOENT, "the output directory does not exist", str(directory))
    if not directory.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "not a directory, cannot hold the output", str(directory))
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, "the output directory is not writable", str(directory))
    return path


def write_image(path, array, *, overwrite=False, parents=False, spacing=None):
    """Write an image or a stack of frames to a TIFF or PNG file, atomically.

    Parameters
    ----------
    path : str or path-like
        Output file name. ``.tif``/``.tiff``: the array as it is (any real
        dtype, 2-D or more). ``.png``: a 2-D array; uint8 and uint16 are
        written unchanged, other dtypes scaled to 8 bits between their 0.1 and
        99.9 percentiles.
    array : array_like
        The image.
    overwrite : bool, optional
        Whether an existing file may be replaced (default: refuse).
    parents : bool, optional
        Whether to create missing parent directories.
    spacing : (dy, dx) or (dz, dy, dx) sequence of float, optional
        Pixel (voxel) size in um, stored in a TIFF so that ImageJ/Fiji,
        :meth:`psfkit.Optics.from_tiff` and other readers calibrate it: as
        ImageJ metadata (unit um, ``spacing`` = dz) for uint8, uint16 and
        float32 arrays, as centimetre ``X/YResolution`` tags (no z) for
        other dtypes. Ignored for PNG.

    Returns
    -------
    path : pathlib.Path

    Raises
    ------
    ValueError
        Unsupported extension, or an array the format cannot hold.
    OSError
        As :func:`check_writable`, or from the file system while writing. The
        image is written to a temporary file in the same directory and renamed
        onto ``path`` (:func:`os.replace`), so ``path`` is never left
        half-written.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> from psfkit.io import write_image
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> write_image(folder / "image.png", np.eye(64)).name
    'image.png'
    >>> write_image(folder / "image.png", np.eye(64))
    Traceback (most recent call last):
    ...
    FileExistsError: [Errno 17] the output exists: '...image.png'
    """
    return write_images({path: array}, overwrite=overwrite, parents=parents, spacing=spacing)[0]


def write_images(images, *, overwrite=False, parents=False, spacing=None):
    """Write several images, all or none of them.

    Every image is checked, then written to a temporary file beside its
    output; only when all have been written are they renamed onto their
    names. On any error the temporary files (and directories this call
    created) are removed, and the error is raised. Only the final renames,
    each within one directory, could in principle fail part-way.

    Parameters
    ----------
    images : mapping of path to array_like
        Output file name and image, as for :func:`write_image`.
    overwrite, parents : bool, optional
        As for :func:`write_image`.
    spacing : sequence of float, optional
        As for :func:`write_image`, for every TIFF written.

    Returns
    -------
    paths : list of pathlib.Path
    """
    spacing = _check_spacing(spacing)
    items = [
        (check_writable(path, overwrite=overwrite, parents=parents), _encodable(path, array))
        for path, array in images.items()
    ]
    created, temporaries = [], []
    try:
        for path, _ in items:
            _make_directories(path.parent, created)
        for path, array in items:
            temporaries.append(_write_temporary(path, array, spacing))
        for temporary, (path, _) in zip(temporaries, items):
            os.replace(temporary, path)
    except BaseException:
        for temporary in temporaries:
            temporary.unlink(missing_ok=True)
        for directory in reversed(created):
            with contextlib.suppress(OSError):  # not ours to empty if someone else wrote there
                directory.rmdir()
        raise
    return [path for path, _ in items]


def _encodable(path, array):
    """The array as the format stores it, or the error the writer would give after a long computation."""
    array = np.asarray(array)
    if array.dtype.kind not in "uif":
        raise ValueError(f"{path}: can only write real-valued integer or float images, got dtype {array.dtype}")
    if array.size == 0:
        raise ValueError(f"{path}: cannot write an image without pixels (shape {array.shape})")
    if Path(path).suffix.lower() in _PNG_SUFFIXES:
        if array.ndim != 2:
            raise ValueError(f"{path}: a PNG holds one 2-D image, got shape {array.shape}; write a stack as .tif")
        if array.dtype not in (np.uint8, np.uint16):
            array = to_uint8(array)
    elif array.ndim < 2:
        raise ValueError(f"{path}: expected {_EXPECTED}, got shape {array.shape}")
    return array


def _make_directories(directory, created):
    """Create ``directory`` and its missing parents, appending each to ``created`` (outermost first)."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for directory in reversed(missing):
        directory.mkdir()
        created.append(directory)


def _check_spacing(spacing):
    """``spacing`` as 2 or 3 positive finite floats (um), or None."""
    if spacing is None:
        return None
    try:
        values = tuple(float(v) for v in spacing)
    except (TypeError, ValueError):
        values = ()
    if len(values) not in (2, 3) or not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"spacing must be 2 or 3 positive numbers (dz, dy, dx) in um, got {spacing!r}")
    return values


def _tiff_calibration(array, spacing):
    """tifffile.imwrite keywords storing ``spacing`` (see :func:`write_image`)."""
    if spacing is None:
        return {}
    dy, dx = spacing[-2:]
    if array.dtype in (np.uint8, np.uint16, np.float32) and array.ndim in (2, 3):  # what ImageJ reads
        metadata = {"unit": "um", "axes": "YX"}
        if array.ndim == 3:  # a z stack with a z step, else a series of planes
            metadata.update({"axes": "ZYX", "spacing": spacing[0]} if len(spacing) == 3 else {"axes": "TYX"})
        return {"imagej": True, "resolution": (1 / dx, 1 / dy), "metadata": metadata}
    return {"resolution": (1e4 / dx, 1e4 / dy), "resolutionunit": "CENTIMETER"}


def _write_temporary(path, array, spacing=None):
    # hidden, in the output's directory (os.replace cannot cross file systems), same extension so
    # the writer picks the format; created with 0o666 like open() would (mkstemp gives 0o600)
    temporary = path.with_name(f".{path.stem}.{secrets.token_hex(6)}.tmp{path.suffix}")
    os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # claim the name
    try:
        if path.suffix.lower() in _TIFF_SUFFIXES:
            # grey always: tifffile would otherwise write a (..., 3 or 4, M, N) array as planar RGB(A)
            options = {"photometric": "minisblack", **_tiff_calibration(array, spacing)}
            _tifffile().imwrite(temporary, array, **options)
        else:
            _imageio().imwrite(temporary, array)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary


def to_uint8(array, *, gamma=1.0):
    """Scale to 8 bits between the 0.1 and 99.9 percentiles, then apply ``gamma``."""
    array = np.asarray(array, dtype=np.float64)
    lo, hi = np.nanpercentile(array, [0.1, 99.9])
    scaled = np.clip((array - lo) / max(hi - lo, 1e-12), 0, 1) ** gamma
    return np.round(255 * np.nan_to_num(scaled)).astype(np.uint8)
