"""Numba inner loops of the Goldstein-Fattal estimator.

Projections along rational directions: a direction ``(a, b)`` (``a`` along x = columns, ``b`` along y = rows, coprime
integers) is projected with a nearest-pixel shear: for ``|b| <= a`` pixel
``(y, x)`` goes to bin ``x + round(y b / a)`` (bin spacing ``cos(theta)``
along the direction), otherwise to bin ``y + round(x a / b)`` (spacing
``|sin(theta)|``). The 1-D DFT of length ``L`` of a projection's
autocorrelation then samples the 2-D spectrum at the grid points
``i (a, b)`` of an ``L x L`` DFT with index ``j = i max(a, |b|)``.
"""

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _project_one(gx, gy, cx, cy, a, b, out):
    m, n = gx.shape
    if abs(b) <= a:
        slope = b / a
        lo = 0
        hi = 0
        for y in range(m):
            s = int(np.floor(y * slope + 0.5))
            lo = min(lo, s)
            hi = max(hi, s)
        length = n + hi - lo
        for i in range(length):
            out[i] = 0.0
        for y in range(m):
            s = int(np.floor(y * slope + 0.5)) - lo
            for x in range(n):
                out[x + s] += cx * gx[y, x] + cy * gy[y, x]
    else:
        slope = a / b
        lo = 0
        hi = 0
        for x in range(n):
            s = int(np.floor(x * slope + 0.5))
            lo = min(lo, s)
            hi = max(hi, s)
        length = m + hi - lo
        for i in range(length):
            out[i] = 0.0
        for y in range(m):
            for x in range(n):
                s = int(np.floor(x * slope + 0.5)) - lo
                out[y + s] += cx * gx[y, x] + cy * gy[y, x]
    return length


@numba.njit(cache=True, nogil=True)
def projection_autocorrelations(gx, gy, cx, cy, dir_a, dir_b, max_lag, standardise):
    """Autocorrelation (lags 0..max_lag) of the projection of ``cx gx + cy gy`` per direction.

    With ``standardise`` each projection is centred and scaled to unit l2 norm
    first (so lag 0 is 1); otherwise the raw autocorrelation is returned.
    """
    m, n = gx.shape
    count = dir_a.shape[0]
    result = np.zeros((count, max_lag + 1))
    buffer = np.empty(m + n + max(m, n))
    for k in range(count):
        length = _project_one(gx, gy, cx[k], cy[k], dir_a[k], dir_b[k], buffer)
        p = buffer[:length]
        if standardise:
            p = p - p.mean()
            norm = np.sqrt((p * p).sum())
            if norm > 0:
                p = p / norm
        for lag in range(min(max_lag + 1, length)):
            acc = 0.0
            for i in range(length - lag):
                acc += p[i] * p[i + lag]
            result[k, lag] = acc
    return result


@numba.njit(cache=True, nogil=True)
def relax_modulus(spectrum, magnitude, weight):
    """In place: ``G <- ((1 - weight) M + weight |G|) G / |G|`` (phase 0 where G = 0).

    ``spectrum`` is a stack ``(T, M, K)`` of half spectra, ``magnitude`` the
    ``(M, K)`` target modulus shared by the stack.
    """
    count, rows, cols = spectrum.shape
    for t in range(count):
        for i in range(rows):
            for j in range(cols):
                g = spectrum[t, i, j]
                re = g.real
                im = g.imag
                modulus = np.sqrt(re * re + im * im)
                target = (1.0 - weight) * magnitude[i, j] + weight * modulus
                if modulus > 0:
                    scale = target / modulus
                    spectrum[t, i, j] = complex(re * scale, im * scale)
                else:
                    spectrum[t, i, j] = target


@numba.njit(cache=True, nogil=True)
def raar_object_step(g, projected, beta, support):
    """In place RAAR object step with positivity and the ``support x support`` corner box.

    Where the reflection ``2 P g - g`` is negative or outside the box:
    ``g <- beta g + (1 - 2 beta) P g``; elsewhere ``g <- P g``.
    """
    count, rows, cols = g.shape
    for t in range(count):
        for i in range(rows):
            for j in range(cols):
                p = projected[t, i, j]
                if i >= support or j >= support or 2.0 * p - g[t, i, j] < 0.0:
                    g[t, i, j] = beta * g[t, i, j] + (1.0 - 2.0 * beta) * p
                else:
                    g[t, i, j] = p


@numba.njit(cache=True, nogil=True)
def lipschitz_lower_envelope(values, slope):
    """Largest circular sequence below ``values`` changing by at most ``slope`` per index.

    Forward and backward sweeps, each twice around the circle so that the
    constraint propagates across the wrap-around.
    """
    n = values.size
    out = values.copy()
    for sweep in range(2 * n):
        i = sweep % n
        j = (i - 1) % n
        if out[j] + slope < out[i]:
            out[i] = out[j] + slope
    for sweep in range(2 * n):
        i = (n - 1 - sweep) % n
        j = (i + 1) % n
        if out[j] + slope < out[i]:
            out[i] = out[j] + slope
    return out
