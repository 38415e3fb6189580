"""Deconvolution of dask arrays: every setting decided once on the whole image, then replayed on each tile.

A tile deconvolved on its own differs from the same pixels deconvolved as part of the image wherever the call
derives something from its data: the automatic weight and iteration count, the noise fit, the intensity scale,
the positivity offset and floors, the flat start, the step of FISTA, the unrolled network's normalisation
(per-tile automatic settings moved the result by 0.12-0.35 of the mean, ``../shared/notes/napari_dask.md``).
So :func:`deconvolve_dask` first measures the image's range and mean (one pass over the array), decides the
rest on a central window that is the whole image up to :data:`DECISION_SIZE` pixels (a deconvolution of that
window with automatic settings, whose report gives them), and then deconvolves every block plus a halo of
twice the PSF's size (:data:`HALO`) with those numbers (:func:`psfkit.tiling.map_blocks_with_halo`).
"""

import math
from types import SimpleNamespace

import numpy as np

from psfkit._validation import as_psf, float_dtype, scale_exponent
from psfkit.tiling import central_window, check_dask_image, halo_depth, map_blocks_with_halo, read_window

# The window the automatic settings are decided on: the whole image up to 2048^2 pixels or 2^24 voxels (a stack
# of 64 x 512 x 512), else its centre (a stack keeps all its planes). Deciding costs one deconvolution of it.
DECISION_SIZE = {2: 1 << 22, 3: 1 << 24}

# The halo, in PSF half-sizes. Accelerated RL spreads a pixel further than plain RL: with a 17^2 aberrated PSF,
# 128^2 tiles and 100 iterations, 2 half-sizes left 7e-2 of the mean at the seams, 4 left 4e-4 (1e-6 plain RL);
# 10 and 30 iterations: 1.3e-3 and 1.5e-3 against 1.5e-5 and 3.4e-5 (tests/test_tiling.py checks the seams).
HALO = 4

# What a deconvolution derives from its data (the keys of _deconvolve's report and settings).
DERIVED = ("exponent", "offset", "levels", "lam", "iterations", "lipschitz", "normalization", "noise_floor", "fit",
           "noise_level", "schedule")


def deconvolve_dask(image, psf, options, solve, *, noise=None, report=None):
    """Lazy :func:`psfkit.deconvolve` of the dask array ``image`` (same shape and chunks).

    ``options`` are the keywords of ``solve``, :func:`psfkit.restoration.deconvolution._deconvolve` (passed in:
    this module sits beside it, not below); ``noise`` the image's Poisson-Gaussian fit in its units (or a
    callable giving it) when the caller measured it on the decision window; ``report`` (dict) receives the
    settings every tile gets and the window they were decided on.
    """
    import dask

    check_dask_image(image)
    options = dict(options)
    if options["callback"] is not None:
        raise ValueError(
            "callback follows the iterations of one image; a dask array is deconvolved tile by tile: "
            "follow it with dask's progress tools instead (dask.diagnostics.ProgressBar, distributed.progress)"
        )
    if options["boundary"] == "periodic":
        raise ValueError(
            'boundary="periodic" wraps the whole image around, which a tile cannot; use "extend" (default), '
            '"reflect" or "zero" for a dask array'
        )
    if options["acceleration"] == "biggs-andrews":
        raise ValueError(
            'acceleration="biggs-andrews" takes its steps from inner products over the whole image, which a tile '
            'cannot replay; use acceleration=True (scaled heavy ball) for a dask array'
        )
    dtype = np.dtype(options["dtype"]) if options["dtype"] is not None else float_dtype(image.dtype)
    options["dtype"] = dtype
    model = _TiledBlur(psf, image.shape)
    window = central_window(image.shape, DECISION_SIZE[image.ndim])
    crop = read_window(image, window)

    given = {}
    if crop.shape != image.shape:  # the whole image's range and mean (one pass): its scale, offset and flat start
        low, high, mean = (float(v) for v in dask.compute(image.min(), image.max(), image.mean(dtype=np.float64)))
        k = scale_exponent(np.array([low, high]), float(options["background"]))
        offset = max(-math.ldexp(low, -k), 0.0) if options["method"] in ("rl", "rl-tv") else 0.0
        low, high, mean = (math.ldexp(v, -k) for v in (low, high, mean))
        given = {"exponent": k, "offset": offset, "levels": (mean + offset, max(abs(low + offset), high + offset))}
    # else the window is the image: the settings are derived exactly as for a NumPy array
    decided = {}
    deciding = {**options, "progress": False}
    if options["method"] in ("rl", "rl-tv") and options["iterations"] is not None:
        deciding["iterations"] = 1  # RL derives everything before its first iteration: no need to run them all
    # the unrolled network's settings are its input's statistics: it need not run on the window
    deciding_given = {**given, "settings_only": True} if options["method"] == "unrolled" else given
    solve(crop, model.window(window), **deciding, noise=noise, report=decided, settings=deciding_given)
    if options["iterations"] is not None:
        decided["iterations"] = options["iterations"]
    settings = {key: decided[key] for key in DERIVED if key in decided}
    settings.update(given)
    if report is not None:
        report.update(settings, window=window)
    depth = halo_depth(model.kernel_shape, image.shape, factor=HALO)
    tile_options = {**options, "progress": False}

    def tile(piece, outer):
        return solve(piece, model.window(outer), **tile_options, settings=settings)

    return map_blocks_with_halo(tile, image, depth, dtype=dtype, name="psfkit-deconvolve",
                                min_shape=tuple(k + 1 - k % 2 for k in model.kernel_shape),
                                token=(model.token, sorted(tile_options.items(), key=str), sorted(settings.items())))


class _TiledBlur:
    """The blur of the whole image, cut to any window: one PSF, a ``(gy, gx, h, w)`` grid, or a product
    convolution whose weights have the image's shape."""

    def __init__(self, psf, shape):
        self.shape = tuple(shape)
        ndim = len(shape)
        if hasattr(psf, "psfs") and hasattr(psf, "weights"):
            weights = np.asarray(psf.weights)
            if weights.shape[1:] != self.shape:
                raise ValueError(
                    f"psf.weights must have the image shape {self.shape} for a dask image, got {weights.shape[1:]}"
                )
            self.psfs, self.weights, self.order = np.asarray(psf.psfs), weights, getattr(psf, "order", "mask-first")
            self.grid = None
        else:
            array = np.asarray(psf) if not isinstance(psf, (str, bytes)) and psf is not None else None
            if array is None or array.dtype == object:
                raise TypeError(f"psf must be an array or a ProductConvolution, got {type(psf).__name__}")
            if array.ndim == 4 and ndim == 2:  # each PSF normalised as deconvolve does for a NumPy image
                self.grid = array.shape[:2]
                gx = self.grid[1]
                self.psfs = np.stack([as_psf(p, f"psf[{i // gx}, {i % gx}]", ndim=2)
                                      for i, p in enumerate(array.reshape(-1, *array.shape[2:]))])
            elif array.ndim == ndim:
                self.grid, self.psfs = None, as_psf(array, "psf", ndim=ndim)[None]
            else:
                raise ValueError(
                    f"psf must be a {ndim}-D PSF, a (gy, gx, h, w) PSF grid (2-D images) or a ProductConvolution; "
                    f"got shape {array.shape} for an image of shape {self.shape}"
                )
            self.weights, self.order = None, "mask-first"
            if self.grid is not None and self.grid[0] * self.grid[1] == 1:
                self.grid = None
        self.kernel_shape = self.psfs.shape[1:]
        self.token = (self.psfs, self.weights, self.order, self.grid)

    def window(self, window):
        """The blur of ``image[window]``: its PSF, or the product convolution restricted to the window."""
        if self.weights is None and self.grid is None:
            return self.psfs[0]
        if self.weights is not None:
            weights = self.weights[(slice(None),) + tuple(window)]
        else:
            weights = _grid_weights_in(self.shape, self.grid, window)
        used = weights.reshape(len(weights), -1).max(axis=1) > 0  # terms with no weight here cost FFTs for nothing
        return SimpleNamespace(psfs=self.psfs[used], weights=weights[used], order=self.order)


def _grid_weights_in(shape, grid, window):
    """:func:`psfkit.grid_weights` of the whole image, cut to ``window`` (computed for the window only)."""
    from psfkit.forward.space_varying import grid_weights

    rows = grid_weights((shape[0],), (grid[0],))[:, window[0]]
    cols = grid_weights((shape[1],), (grid[1],))[:, window[1]]
    return (rows[:, None, :, None] * cols[None, :, None, :]).reshape(grid[0] * grid[1], rows.shape[1], cols.shape[1])
