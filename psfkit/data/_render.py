"""Rasterisation kernels for the procedural specimens.

Objects are drawn with anti-aliasing on a float64 canvas: sub-pixel samples are
splatted bilinearly (curves), small analytic profiles are evaluated on patches
around each object and accumulated with ``np.bincount`` (blobs, cells), and
occluding discs are composited front to back (dead leaves, the only loop that
needs numba).
"""

import functools

import numpy as np
from scipy import fft as sfft


def splat(shape, rows, cols, weights, layers=None, n_layers=1):
    """Bilinearly splat point masses at sub-pixel ``(rows, cols)`` onto a canvas.

    The splat conserves the total weight of the points inside the canvas and is
    the anti-aliased rendering of a point; points outside are dropped. With
    ``layers`` (an integer per point) the points go to ``n_layers`` separate
    canvases, returned as an ``(n_layers,) + shape`` stack.
    """
    height, width = shape
    r0 = np.floor(rows)
    c0 = np.floor(cols)
    fr = rows - r0
    fc = cols - c0
    gr = 1 - fr
    gc = 1 - fc
    r0 = r0.astype(np.intp)
    c0 = c0.astype(np.intp)
    base = r0 * width + c0
    if layers is not None:
        base = base + layers * (height * width)
    index = np.concatenate((base, base + 1, base + width, base + width + 1))
    weight = np.concatenate((gr * gc * weights, gr * fc * weights, fr * gc * weights, fr * fc * weights))
    r1 = r0 + 1
    c1 = c0 + 1
    row_ok_0 = (r0 >= 0) & (r0 < height)
    row_ok_1 = (r1 >= 0) & (r1 < height)
    col_ok_0 = (c0 >= 0) & (c0 < width)
    col_ok_1 = (c1 >= 0) & (c1 < width)
    inside = np.concatenate((row_ok_0 & col_ok_0, row_ok_0 & col_ok_1, row_ok_1 & col_ok_0, row_ok_1 & col_ok_1))
    size = n_layers * height * width
    canvas = np.bincount(index[inside], weights=weight[inside], minlength=size)
    return canvas.reshape((n_layers, height, width) if layers is not None else (height, width))


def patch_offsets(half):
    """Integer offsets ``(dr, dc)`` of a ``(2 half + 1)**2`` patch, each of shape (1, P, P)."""
    ax = np.arange(-half, half + 1, dtype=np.float64)
    return ax[None, :, None], ax[None, None, :]


def accumulate_patches(shape, top, left, values):
    """Add patches ``values`` (K, P, P) whose corners are ``(top, left)`` to a zero canvas.

    Pixels falling outside the canvas are dropped; overlapping patches add.
    """
    height, width = shape
    count, p, _ = values.shape
    ax = np.arange(p)
    rows = top[:, None, None] + ax[None, :, None]
    cols = left[:, None, None] + ax[None, None, :]
    inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    index = (rows * width + cols)[inside]
    return np.bincount(index, weights=values[inside], minlength=height * width).reshape(shape)


@functools.lru_cache(maxsize=32)
def _texture_transfer(shape, components):
    """Fourier filter turning unit white noise into a unit-variance texture.

    ``components`` is a tuple of ``(weight, scale, exponent)``: a Gaussian of
    length ``scale`` pixels when ``exponent`` is None, else a power law
    ``|f|**(-exponent/2)`` cut at frequency ``~1/scale``. The weights set the
    variance share of each component.
    """
    fy = sfft.fftfreq(shape[0])[:, None]
    fx = sfft.rfftfreq(shape[1])[None, :]
    f2 = fy**2 + fx**2
    # rfft bins that stand for two conjugate bins of the full spectrum
    multiplicity = np.full(f2.shape, 2.0)
    multiplicity[:, 0] = 1.0
    if shape[1] % 2 == 0:
        multiplicity[:, -1] = 1.0
    total = np.zeros(f2.shape)
    for weight, scale, exponent in components:
        if exponent is None:
            transfer = np.exp(-2 * np.pi**2 * scale**2 * f2)
        else:
            transfer = np.maximum(f2, 1.0 / (2 * max(shape)) ** 2) ** (-exponent / 4)
            transfer = transfer * np.exp(-(scale**2) * f2)
        transfer[0, 0] = 0.0
        # Parseval: variance of the filtered unit white noise
        variance = (multiplicity * transfer**2).sum() / (shape[0] * shape[1])
        if variance > 0:
            total += weight * transfer / np.sqrt(variance)
    total.flags.writeable = False
    return total


def smooth_noise(shape, rng, *, scale, exponent=None, components=None):
    """Random smooth field of zero mean and (about) unit standard deviation.

    White noise filtered in Fourier space (see :func:`_texture_transfer`);
    ``components`` overrides ``scale``/``exponent`` with a weighted sum of
    filters applied to the same noise. Periodic, which is invisible for
    random textures.
    """
    shape = tuple(int(n) for n in shape)
    if components is None:
        components = ((1.0, float(scale), exponent),)
    transfer = _texture_transfer(shape, tuple(components))
    spectrum = sfft.rfft2(rng.standard_normal(shape))
    spectrum *= transfer
    return sfft.irfft2(spectrum, s=shape)


def _numba():
    import numba

    return numba


@functools.lru_cache(maxsize=1)
def _composite_kernel():
    numba = _numba()

    @numba.njit(cache=True, nogil=True)
    def composite(height, width, cy, cx, radius, value, fill):  # pragma: no cover - compiled
        out = np.zeros((height, width))
        transmit = np.ones((height, width))
        remaining = height * width
        for k in range(cy.shape[0]):
            r = radius[k]
            r0 = max(int(np.floor(cy[k] - r - 1.0)), 0)
            r1 = min(int(np.ceil(cy[k] + r + 1.0)), height - 1)
            c0 = max(int(np.floor(cx[k] - r - 1.0)), 0)
            c1 = min(int(np.ceil(cx[k] + r + 1.0)), width - 1)
            v = value[k]
            for i in range(r0, r1 + 1):
                dy = i - cy[k]
                for j in range(c0, c1 + 1):
                    t = transmit[i, j]
                    if t == 0.0:
                        continue
                    dx = j - cx[k]
                    # pixel coverage of the disc, linear across a 1-pixel edge
                    a = r + 0.5 - np.sqrt(dy * dy + dx * dx)
                    if a <= 0.0:
                        continue
                    if a >= 1.0:
                        out[i, j] += t * v
                        transmit[i, j] = 0.0
                        remaining -= 1
                    else:
                        out[i, j] += t * a * v
                        t *= 1.0 - a
                        if t < 1e-4:
                            t = 0.0
                            remaining -= 1
                        transmit[i, j] = t
            if remaining == 0:
                break
        for i in range(height):
            for j in range(width):
                out[i, j] += transmit[i, j] * fill
        return out

    return composite


def composite_discs(shape, cy, cx, radius, value, fill):
    """Front-to-back anti-aliased compositing of opaque discs (first = front)."""
    kernel = _composite_kernel()
    return kernel(
        int(shape[0]),
        int(shape[1]),
        np.ascontiguousarray(cy, dtype=np.float64),
        np.ascontiguousarray(cx, dtype=np.float64),
        np.ascontiguousarray(radius, dtype=np.float64),
        np.ascontiguousarray(value, dtype=np.float64),
        float(fill),
    )
