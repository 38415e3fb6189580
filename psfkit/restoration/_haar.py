r"""Orthonormal multi-level Haar transform of arrays of any shape (private, NumPy).

Along an axis of length ``n`` one level maps pairs to
:math:`a = (x_{2i} + x_{2i+1})/\sqrt2` and :math:`d = (x_{2i} - x_{2i+1})/\sqrt2`
(an odd last sample is kept as an approximation coefficient), stored as
``[a, d]``; the next level transforms the approximation block again. Every step
is an orthogonal map, so the inverse is the transpose and the soft threshold of
the detail coefficients is the exact proximal map of their :math:`\ell_1` norm.
"""

import math

import numpy as np

__all__ = ["haar_forward", "haar_inverse", "detail_mask", "default_levels"]

_SQRT2 = math.sqrt(2.0)


def default_levels(shape, coarsest=8):
    """Number of levels until the approximation block is about ``coarsest`` pixels wide."""
    smallest = min(shape)
    return max(1, int(math.floor(math.log2(max(smallest / coarsest, 1.0)))))


def _approximation_sizes(shape, levels):
    sizes = [tuple(shape)]
    for _ in range(levels):
        sizes.append(tuple((n + 1) // 2 for n in sizes[-1]))
    return sizes


def _analysis(block, axis):
    n = block.shape[axis]
    m = n // 2
    x = np.moveaxis(block, axis, 0)
    out = np.empty_like(x)
    even, odd = x[0 : 2 * m : 2], x[1 : 2 * m : 2]
    na = n - m
    np.add(even, odd, out=out[:m])
    out[:m] /= _SQRT2
    if n % 2:
        out[m] = x[n - 1]
    np.subtract(even, odd, out=out[na:])
    out[na:] /= _SQRT2
    return np.moveaxis(out, 0, axis)


def _synthesis(block, axis):
    n = block.shape[axis]
    m = n // 2
    na = n - m
    c = np.moveaxis(block, axis, 0)
    out = np.empty_like(c)
    a, d = c[:m], c[na:]
    np.add(a, d, out=out[0 : 2 * m : 2])
    out[0 : 2 * m : 2] /= _SQRT2
    np.subtract(a, d, out=out[1 : 2 * m : 2])
    out[1 : 2 * m : 2] /= _SQRT2
    if n % 2:
        out[n - 1] = c[m]
    return np.moveaxis(out, 0, axis)


def haar_forward(x, levels):
    """Haar coefficients of ``x`` (a new array of the same shape)."""
    coefficients = np.array(x, copy=True)
    for size in _approximation_sizes(x.shape, levels)[:-1]:
        region = tuple(slice(0, n) for n in size)
        block = coefficients[region]
        for axis in range(x.ndim):
            block = _analysis(block, axis)
        coefficients[region] = block
    return coefficients


def haar_inverse(coefficients, levels):
    """Inverse (= transpose) of :func:`haar_forward`."""
    x = np.array(coefficients, copy=True)
    for size in reversed(_approximation_sizes(x.shape, levels)[:-1]):
        region = tuple(slice(0, n) for n in size)
        block = x[region]
        for axis in reversed(range(x.ndim)):
            block = _synthesis(block, axis)
        x[region] = block
    return x


def detail_mask(shape, levels):
    """Boolean mask of the detail coefficients (everything but the coarsest approximation)."""
    mask = np.ones(shape, dtype=bool)
    size = _approximation_sizes(shape, levels)[-1]
    mask[tuple(slice(0, n) for n in size)] = False
    return mask


def haar_prox(v, mu, dual, mask, levels, *, iterations=10, lower=0.0, out=None):
    r"""Approximate :math:`\arg\min_x \tfrac12\|x - v\|^2 + \mu\|(Wx)_{detail}\|_1 + \iota_{x \ge lower}`.

    Without the bound this is the exact soft threshold :math:`W^T S_\mu(Wv)`;
    with it, the dual problem (variable ``dual`` in :math:`[-1, 1]` on the
    details, warm-started, updated in place) is solved by FGP, as for TV.
    """
    if mu <= 0:
        out = np.maximum(v, lower) if out is None else np.maximum(v, lower, out=out)
        return out
    if lower == -np.inf:
        c = haar_forward(v, levels)
        shrunk = np.sign(c) * np.maximum(np.abs(c) - mu, 0)
        c = np.where(mask, shrunk, c)
        result = haar_inverse(c, levels)
        if out is None:
            return result
        out[...] = result
        return out
    q = dual.copy()
    t = 1.0
    for _ in range(iterations):
        x = np.maximum(v - mu * haar_inverse(q, levels), lower)
        t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
        new = np.clip(q + haar_forward(x, levels) / mu, -1, 1)
        new[~mask] = 0
        q = new + ((t - 1) / t_next) * (new - dual)
        dual[...] = new
        t = t_next
    result = np.maximum(v - mu * haar_inverse(dual, levels), lower)
    if out is None:
        return result
    out[...] = result
    return out
