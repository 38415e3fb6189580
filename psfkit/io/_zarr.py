"""OME-Zarr output: a single-scale OME-NGFF 0.4 image (zarr format 2), written with zarr alone.

Layout, as napari-ome-zarr, Fiji (MoBIE/n5-viewer) and ``ome-zarr`` read it::

    image.ome.zarr/
        .zgroup, .zattrs     "multiscales": axes (z, y, x or y, x; micrometer) and the scale of "0"
        0/                   the pixels, chunked

The writer never leaves a partial image under the final name: it writes to a
hidden temporary directory beside it and renames that when complete.
"""

import contextlib
import errno
import math
import os
import secrets
import shutil
from pathlib import Path

import numpy as np

_ZARR_SUFFIX = ".zarr"
_DEFAULT_CHUNK = 1024  # y and x; one plane per chunk in z


def _zarr():
    try:
        import zarr
    except ImportError as error:
        raise ImportError("writing OME-Zarr needs zarr: pip install psfkit[dask]") from error
    return zarr


def _is_dask(array):
    try:
        import dask
    except ImportError:
        return False
    return dask.is_dask_collection(array)


def _positive_or_none(value, name):
    if value is None:
        return None
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number (um), got {value!r}")
    return value


def ome_multiscales(ndim, *, pixel_size=None, z_step=None, name=None):
    """The ``multiscales`` attribute (OME-NGFF 0.4) of a single-scale ``ndim``-D image.

    A 3-D image is (z, y, x) when ``z_step`` is known, else a series of planes
    (t, y, x) of unit step. Axes in space carry ``unit: micrometer`` when their
    size is known; unknown sizes are written as scale 1 without a unit.
    """
    if ndim not in (2, 3):
        raise ValueError(f"an OME-Zarr image here is 2-D or 3-D, got {ndim} dimensions")
    pixel_size = _positive_or_none(pixel_size, "pixel_size")
    z_step = _positive_or_none(z_step, "z_step")

    def space(axis, size):
        return {"name": axis, "type": "space", **({"unit": "micrometer"} if size is not None else {})}

    axes = [space("y", pixel_size), space("x", pixel_size)]
    scale = [pixel_size or 1.0] * 2
    if ndim == 3:
        axes.insert(0, space("z", z_step) if z_step is not None else {"name": "t", "type": "time"})
        scale.insert(0, z_step or 1.0)
    entry = {
        "version": "0.4",
        "axes": axes,
        "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}],
    }
    if name:
        entry["name"] = name
    return [entry]


def _chunk_shape(shape, chunks):
    """Regular chunk sides: ``chunks`` (an int for y and x, or one side per axis) or up to 1024 x 1024 per plane."""
    if chunks is None:
        sides = (1,) * (len(shape) - 2) + (_DEFAULT_CHUNK, _DEFAULT_CHUNK)
    elif isinstance(chunks, (int, np.integer)):
        sides = (1,) * (len(shape) - 2) + (int(chunks),) * 2
    else:
        sides = tuple(int(c) for c in chunks)
        if len(sides) == 2 and len(shape) == 3:
            sides = (1, *sides)
    if len(sides) != len(shape) or min(sides) < 1:
        raise ValueError(f"chunks must be positive sides for a {len(shape)}-D image, got {chunks!r}")
    return tuple(min(c, s) for c, s in zip(sides, shape))


def create_ome_zarr(path, shape, dtype, *, pixel_size=None, z_step=None, chunks=None, name=None):
    """Create an empty OME-Zarr image at ``path`` (which must not exist) and return its zarr array "0".

    ``name`` (stored in the metadata) defaults to the file name before its first dot.
    """
    zarr = _zarr()
    shape = tuple(int(s) for s in shape)
    group = zarr.open_group(str(path), mode="w-", zarr_format=2)
    array = group.create_array("0", shape=shape, dtype=np.dtype(dtype), chunks=_chunk_shape(shape, chunks),
                               fill_value=0)
    group.attrs["multiscales"] = ome_multiscales(len(shape), pixel_size=pixel_size, z_step=z_step,
                                                 name=name or Path(path).name.lstrip(".").split(".")[0])
    return array


def store_into(array, target, **compute_options):
    """Write ``array`` (NumPy or dask) into the zarr array ``target``; a dask array chunk by chunk.

    A dask array is rechunked to the target's chunks when they differ, so that
    no two tasks write one zarr chunk (no lock needed) and memory stays bounded
    by a few chunks per thread. ``compute_options`` go to dask's compute
    (``scheduler=``, ``callbacks=``).
    """
    if _is_dask(array):
        import dask.array as da

        if array.chunks != da.core.normalize_chunks(target.chunks, array.shape):
            array = array.rechunk(target.chunks)
        da.store(array.astype(target.dtype), target, lock=False, **compute_options)
    else:
        target[...] = np.asarray(array, dtype=target.dtype)


def write_ome_zarr(path, array, *, pixel_size=None, z_step=None, chunks=None, overwrite=False):
    """Write a 2-D image or a 3-D stack as a single-scale OME-Zarr (OME-NGFF 0.4, zarr format 2).

    Parameters
    ----------
    path : str or path-like
        Output directory, by convention ending in ``.ome.zarr``.
    array : (M, N) or (P, M, N) ndarray or dask array
        The image. A dask array is computed chunk by chunk straight into the
        store (memory bounded by a few chunks per thread), never as a whole.
    pixel_size : float, optional
        Pixel size in um (y and x); unknown: scale 1, no unit.
    z_step : float, optional
        Axial step in um of a (z, y, x) stack. Without it a 3-D array is a
        series of planes, axes (t, y, x).
    chunks : int or sequence of int, optional
        Chunk sides: an int for y and x (one plane per chunk in z), or one
        side per axis. Default: up to 1024 x 1024 per plane.
    overwrite : bool, optional
        Whether an existing image at ``path`` may be replaced (default: refuse).

    Returns
    -------
    path : pathlib.Path

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is False.
    ValueError
        An array that is not 2-D or 3-D real numbers, or bad sizes or chunks.
    ImportError
        zarr is not installed (``pip install psfkit[dask]``).

    Notes
    -----
    The image is written to a hidden directory beside ``path`` and renamed
    onto it when complete; on any error it is removed. The ``multiscales``
    attribute holds the axes and a ``scale`` transformation (um per pixel)
    of the one dataset ``"0"``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> import zarr
    >>> from psfkit.io import write_ome_zarr
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> path = write_ome_zarr(folder / "image.ome.zarr", np.ones((64, 64), np.float32), pixel_size=0.1, chunks=32)
    >>> group = zarr.open_group(path, mode="r")
    >>> group["0"].chunks, group.attrs["multiscales"][0]["datasets"][0]["coordinateTransformations"]
    ((32, 32), [{'type': 'scale', 'scale': [0.1, 0.1]}])
    """
    path = Path(path)
    if not _is_dask(array):
        array = np.asarray(array)
    dtype = np.dtype(array.dtype)
    if dtype.kind not in "uif":
        raise ValueError(f"{path}: can only write real-valued integer or float images, got dtype {dtype}")
    if array.ndim not in (2, 3) or 0 in array.shape:
        raise ValueError(f"{path}: expected a 2-D image or a 3-D stack with pixels, got shape {array.shape}")
    if path.exists() and not overwrite:
        raise FileExistsError(errno.EEXIST, "the output exists", str(path))
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        target = create_ome_zarr(temporary, array.shape, dtype, pixel_size=pixel_size, z_step=z_step, chunks=chunks,
                                 name=path.name.split(".")[0])
        store_into(array, target)
        replace_directory(temporary, path)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return path


def replace_directory(source, destination):
    """Rename ``source`` onto ``destination``, replacing an existing file or directory there.

    An existing destination is first moved aside (a directory cannot be
    renamed onto a non-empty one), then removed once the new one is in place.
    """
    source, destination = Path(source), Path(destination)
    aside = None
    if destination.exists() or destination.is_symlink():
        aside = destination.with_name(f".{destination.name}.{secrets.token_hex(6)}.old")
        os.replace(destination, aside)
    try:
        os.replace(source, destination)
    except BaseException:
        if aside is not None:
            os.replace(aside, destination)  # put the old one back
        raise
    if aside is not None:
        with contextlib.suppress(OSError):
            shutil.rmtree(aside) if aside.is_dir() and not aside.is_symlink() else aside.unlink()
