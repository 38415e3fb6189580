"""Block plus halo: the one way psfkit maps a function over a dask array."""

import itertools
import math
import sys

import numpy as np


def is_dask(array):
    """Whether ``array`` is a dask array (without importing dask when it was never imported)."""
    if "dask" not in sys.modules:
        return False
    import dask

    return dask.is_dask_collection(array) and hasattr(array, "chunks")


def check_dask_image(image, name="image", *, ndim=(2, 3)):
    """Shape and dtype checks of a dask image (its values are checked block by block, when computed)."""
    if ndim is not None and image.ndim not in ndim:
        raise ValueError(f"{name} must be 2-D or 3-D, got a {image.ndim}-D dask array of shape {image.shape}")
    if image.ndim == 0:
        raise ValueError(f"{name} must be an array with at least one axis, got a 0-D dask array")
    if any(n == 0 for n in image.shape):
        raise ValueError(f"{name} must not be empty, got a dask array of shape {image.shape}")
    if image.dtype.kind == "c":
        raise ValueError(f"{name} must be real-valued, got complex dtype {image.dtype}")
    if image.dtype == object or image.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be a numeric array, got dtype {image.dtype}")
    if any(math.isnan(n) for n in image.shape):
        raise ValueError(f"{name} must have a known shape; call compute_chunk_sizes() on it first")


def halo_depth(kernel_shape, shape, factor=2):
    """Halo of a tile, per axis: ``factor`` PSF half-sizes, at most the image's side.

    One half-size (``factor=1``) is exact for one convolution; iterative deconvolution spreads each pixel
    further with every iteration and needs more (:data:`psfkit.restoration.tiled.HALO`).
    """
    return tuple(min(factor * (k // 2), n) for k, n in zip(kernel_shape, shape))


def central_window(shape, max_size):
    """Slices of the central window of ``shape`` with at most ``max_size`` elements.

    Stacks keep all their planes when they can (the PSF is long in z): only the lateral sides shrink, evenly.
    """
    shape = tuple(int(n) for n in shape)
    if math.prod(shape) <= max_size:
        return tuple(slice(0, n) for n in shape)
    sides = list(shape)
    lateral = sides[-2:]
    rest = math.prod(sides[:-2])
    if rest > max_size // 64**2:  # too many planes to keep: shrink every axis alike
        factor = (max_size / math.prod(sides)) ** (1 / len(sides))
        sides = [max(1, int(n * factor)) for n in sides]
    else:
        factor = math.sqrt(max_size / (rest * math.prod(lateral)))
        sides = sides[:-2] + [max(1, int(n * factor)) for n in lateral]
    return tuple(slice((n - m) // 2, (n - m) // 2 + m) for n, m in zip(shape, sides))


def read_window(array, window):
    """``array[window]`` as a NumPy array, computed in the calling thread."""
    return np.asarray(array[window].compute(scheduler="synchronous"))


class _Source:
    """The source array, opaque to dask: a task receives the array object, not its blocks."""

    def __init__(self, array):
        self.array = array

    def read(self, window):
        return read_window(self.array, window)


def _tile(source, outer, inner, func, dtype):
    piece = source.read(outer)
    result = func(piece, outer)
    return np.asarray(result[inner], dtype=dtype)


def _grown(window, least, n):
    """``window`` grown evenly to at least ``least`` pixels, inside ``[0, n)``."""
    missing = least - (window.stop - window.start)
    if missing <= 0:
        return window
    start = max(window.start - (missing + 1) // 2, 0)
    stop = min(max(window.stop + missing // 2, start + least), n)
    return slice(max(min(start, stop - least), 0), stop)


def map_blocks_with_halo(func, array, depth, *, dtype, min_shape=None, name="psfkit-tile", token=None):
    """Lazy ``func`` over ``array``, block by block, each from its block plus ``depth`` pixels around.

    Parameters
    ----------
    func : callable
        ``func(piece, window)``: ``piece`` is the NumPy array ``array[window]``, the block grown by the halo
        and clipped at the image's edges (``window``, slices in the whole image, tells where it lies); it
        returns an array of ``piece``'s shape.
    array : dask.array.Array
    depth : tuple of int
        Halo per axis.
    min_shape : tuple of int, optional
        Least shape of a piece (a small last block gets a wider halo): the PSF's, for a function that needs
        the kernel to fit.
    dtype : dtype
        Of the result.
    name : str
        Prefix of the graph's keys.
    token : object, optional
        What else, beside ``array`` and ``depth``, makes the result (parameters): part of the keys.

    Returns
    -------
    dask.array.Array
        Same shape and chunks as ``array``.
    """
    import dask.array as da
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    dtype = np.dtype(dtype)
    key = f"{name}-{tokenize(array.name, depth, token, dtype.str, func)}"
    source = _Source(array)
    starts = [np.cumsum((0,) + c) for c in array.chunks]
    graph = {}
    for index in itertools.product(*(range(len(c)) for c in array.chunks)):
        block = [(int(s[i]), int(s[i + 1])) for s, i in zip(starts, index)]
        outer = tuple(slice(max(a - d, 0), min(b + d, n)) for (a, b), d, n in zip(block, depth, array.shape))
        if min_shape is not None:
            outer = tuple(_grown(o, m, n) for o, m, n in zip(outer, min_shape, array.shape))
        inner = tuple(slice(a - o.start, b - o.start) for (a, b), o in zip(block, outer))
        graph[(key,) + index] = (_tile, source, outer, inner, func, dtype)
    layer = HighLevelGraph.from_collections(key, graph, dependencies=[])
    return da.Array(layer, key, array.chunks, meta=np.empty((0,) * array.ndim, dtype=dtype))
