"""napari reader: TIFF and OME-TIFF images with their pixel sizes.

The pixels are read by :func:`psfkit.io.read_image`; the calibration (pixel
size, z step) by the same code as :meth:`psfkit.Optics.from_tiff` (OME-XML,
ImageJ or centimetre resolution tags). The pixel sizes become the layer's
``scale`` in micrometres; every optics field found (NA, wavelengths,
immersion index, pixel size, z step) is kept in ``metadata["optics"]``,
which the widgets use to prefill their optics.
"""

import os
import warnings

_SUFFIXES = (".tif", ".tiff")


def get_reader(path):
    """The reader of ``path`` if it is one TIFF file, else None (napari's reader contribution).

    Parameters
    ----------
    path : str or list of str
        What napari asks about.

    Returns
    -------
    reader : callable or None
        :func:`read_tiff`, or None for other files, directories and several
        paths.

    Examples
    --------
    >>> get_reader("cells.ome.tif").__name__, get_reader("cells.png")
    ('read_tiff', None)
    """
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path).lower().endswith(_SUFFIXES):
        return None
    return read_tiff


def read_tiff(path):
    """Read a TIFF or OME-TIFF file as a napari layer, calibrated in micrometres.

    Parameters
    ----------
    path : str, path-like or list of one of them
        The file.

    Returns
    -------
    layers : list of (data, kwargs, "image")
        One image layer: the pixels (2-D, or a 3-D stack of frames), and
        ``scale`` / ``units`` (um) from the pixel size and z step when the
        file states them (else 1 pixel), ``metadata`` with ``"optics"`` (the
        :class:`psfkit.Optics` fields found in the file) and ``"path"``.
    """
    import tifffile

    from psfkit.io import read_image
    from psfkit.optics.microscope import _tiff_metadata

    if isinstance(path, (list, tuple)):
        path = path[0]
    path = os.fspath(path)
    data = read_image(path)
    try:
        with tifffile.TiffFile(path) as tif:
            optics = _tiff_metadata(tif)
    except ValueError as error:  # anisotropic pixels: no single pixel size; shown uncalibrated
        warnings.warn(f"{path}: {error}; the layer is not calibrated", UserWarning, stacklevel=2)
        optics = {}
    pixel, z_step = optics.get("pixel_size"), optics.get("z_step")
    scale, units = [1.0] * data.ndim, ["pixel"] * data.ndim
    if pixel is not None:
        scale[-2:], units[-2:] = [pixel, pixel], ["micrometer", "micrometer"]
    if data.ndim == 3 and z_step is not None:
        scale[0], units[0] = z_step, "micrometer"
    name = os.path.basename(path)
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    kwargs = {"name": name, "scale": tuple(scale), "units": tuple(units), "metadata": {"optics": optics, "path": path}}
    return [(data, kwargs, "image")]
