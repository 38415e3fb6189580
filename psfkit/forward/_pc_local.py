"""Local (overlap-add) evaluation of product-convolution terms.

Grid weights are compactly supported: with bilinear weights on a ``g x g``
grid each map covers about ``(2 / g)^2`` of the image. Convolving each term on
an FFT grid that only covers its support (plus the PSF margin) and adding the
results back costs about ``2 * 2^d`` image-sized transforms whatever ``K``,
instead of ``K + 1`` for the global method. The arithmetic is the same
``R C_k E`` model as :mod:`psfkit.forward._fftconv`: every term's circular convolution
on the global buffer is replaced by a linear convolution of its support,
added back modulo the buffer size, so results and adjoints are identical to
round-off.
"""

import itertools

import numpy as np

from psfkit._fft import fast_shape, irfftn, rfftn


def _segments(start, length, period, keep=None):
    """Contiguous pieces of the positions ``(start + i) % period``, ``i < length``.

    Returns ``(local slice, global slice)`` pairs, restricted to global
    indices in ``keep = (lo, hi)`` when given.
    """
    lo, hi = (0, period) if keep is None else keep
    pieces = []
    i = 0
    while i < length:
        g = (start + i) % period
        run = min(length - i, period - g)
        a, b = max(g, lo), min(g + run, hi)
        if a < b:
            pieces.append((slice(i + a - g, i + b - g), slice(a, b)))
        i += run
    return pieces


def _blocks(starts, lengths, periods, keeps=None):
    keeps = keeps or [None] * len(starts)
    per_axis = [_segments(s, n, p, k) for s, n, p, k in zip(starts, lengths, periods, keeps)]
    for combo in itertools.product(*per_axis):
        yield tuple(c[0] for c in combo), tuple(c[1] for c in combo)


def _support(array):
    """Bounding box (start, shape) of the non-zeros of ``array``, or None."""
    nonzero = array != 0
    if not nonzero.any():
        return None
    start, shape = [], []
    for axis in range(array.ndim):
        hits = np.flatnonzero(nonzero.any(axis=tuple(a for a in range(array.ndim) if a != axis)))
        start.append(int(hits[0]))
        shape.append(int(hits[-1] - hits[0] + 1))
    return tuple(start), tuple(shape)


def plan(weight_maps, kernel_shape):
    """Group the terms by the FFT shape of their supports.

    Parameters
    ----------
    weight_maps : iterable of ndarray
        For each term, its weight map where its support is read: ``E w_k`` on
        the buffer for mask first, the output-grid weights for mask last.
    kernel_shape : tuple of int

    Returns
    -------
    groups : dict
        FFT shape -> list of ``(k, start, shape, patch)``; terms with an
        all-zero map are dropped.
    cost : int
        Number of FFT samples of one pass over all terms.
    """
    groups = {}
    cost = 0
    for k, weights in enumerate(weight_maps):
        box = _support(weights)
        if box is None:
            continue
        start, shape = box
        fft = fast_shape([s + p - 1 for s, p in zip(shape, kernel_shape)])
        groups.setdefault(fft, []).append((k, start, shape, weights[_box(start, shape)].copy()))
        cost += int(np.prod(fft))
    return groups, cost


class LocalTerms:
    """Per-term FFTs over the weights' supports, batched by FFT shape.

    Parameters
    ----------
    psfs : (K, *P) ndarray
    groups : dict
        From :func:`plan`.
    order : str
    geom : Geometry
    dtype : dtype
    """

    def __init__(self, psfs, groups, order, geom, dtype):
        self.order, self.geom = order, geom
        kernel = geom.kernel_shape
        self.groups = []
        for fft, members in groups.items():
            placed = np.zeros((len(members),) + fft, dtype=dtype)
            placed[(slice(None),) + tuple(slice(0, p) for p in kernel)] = psfs[[m[0] for m in members]]
            patches = [(start, shape, patch.astype(dtype, copy=False)) for _, start, shape, patch in members]
            self.groups.append((fft, patches, rfftn(placed, len(fft))))

    def _origin(self, start):
        """Global-buffer index of local position 0 of a term's linear convolution."""
        geom = self.geom
        if self.order == "mask-first":
            # Supports are on the buffer; the result starts ``anchor`` before.
            return tuple(s - a for s, a in zip(start, geom.anchor))
        # Supports are on the output grid; the input window starts P - 1 - anchor before.
        return tuple(c + s - (p - 1) + a for c, s, p, a in zip(geom.crop_start, start, geom.kernel_shape, geom.anchor))

    def apply(self, extended, output):
        """Add the terms to ``output``; ``extended`` is ``E x`` on the buffer."""
        geom, nd = self.geom, self.geom.ndim
        periods, kernel = geom.fft_shape, geom.kernel_shape
        keep = [(c, c + m) for c, m in zip(geom.crop_start, geom.output_shape)]
        for fft, members, otf in self.groups:
            buf = np.zeros((len(members),) + fft, dtype=output.dtype)
            for i, (start, shape, patch) in enumerate(members):
                if self.order == "mask-first":
                    window = extended[_box(start, shape)]
                    np.multiply(patch, window, out=buf[(i,) + _box(0, shape)])
                else:
                    full = tuple(s + p - 1 for s, p in zip(shape, kernel))
                    for local, glob in _blocks(self._origin(start), full, periods):
                        buf[(i,) + local] = extended[glob]
            spectra = rfftn(buf, nd)
            spectra *= otf
            conv = irfftn(spectra, buf.shape, nd)
            for i, (start, shape, patch) in enumerate(members):
                if self.order == "mask-first":
                    full = tuple(s + p - 1 for s, p in zip(shape, kernel))
                    for local, glob in _blocks(self._origin(start), full, periods, keep):
                        target = tuple(slice(g.start - c, g.stop - c) for g, c in zip(glob, geom.crop_start))
                        output[target] += conv[(i,) + local]
                else:
                    valid = tuple(slice(p - 1, p - 1 + n) for p, n in zip(kernel, shape))
                    output[_box(start, shape)] += patch * conv[(i,) + valid]
        return output

    def adjoint(self, data, accumulator):
        """Add the adjoint terms of ``data`` to ``accumulator`` (a buffer, before ``E^T``).

        For mask first ``data`` is ``R^T y`` on the buffer; for mask last it is
        ``y`` on the output grid.
        """
        geom, nd = self.geom, self.geom.ndim
        periods, kernel = geom.fft_shape, geom.kernel_shape
        for fft, members, otf in self.groups:
            buf = np.zeros((len(members),) + fft, dtype=accumulator.dtype)
            for i, (start, shape, patch) in enumerate(members):
                if self.order == "mask-first":
                    full = tuple(s + p - 1 for s, p in zip(shape, kernel))
                    for local, glob in _blocks(self._origin(start), full, periods):
                        buf[(i,) + local] = data[glob]
                else:
                    np.multiply(patch, data[_box(start, shape)], out=buf[(i,) + _box(0, shape)])
            spectra = rfftn(buf, nd)
            spectra *= otf.conj()
            corr = irfftn(spectra, buf.shape, nd)
            for i, (start, shape, patch) in enumerate(members):
                if self.order == "mask-first":
                    accumulator[_box(start, shape)] += patch * corr[(i,) + _box(0, shape)]
                else:
                    # Full correlation: local position n sits at index n - (P - 1) of corr.
                    shifted = np.roll(corr[i], [p - 1 for p in kernel], axis=tuple(range(nd)))
                    full = tuple(s + p - 1 for s, p in zip(shape, kernel))
                    for local, glob in _blocks(self._origin(start), full, periods):
                        accumulator[glob] += shifted[local]
        return accumulator


def _box(start, shape):
    if isinstance(start, int):
        start = (start,) * len(shape)
    return tuple(slice(s, s + n) for s, n in zip(start, shape))
