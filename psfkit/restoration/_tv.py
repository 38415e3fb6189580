r"""Total-variation terms for the deconvolution solvers (private, numba).

Discretisation (Chambolle 2004), in 2-D and 3-D: forward differences with a
zero difference on the last row/column/plane,
:math:`(\nabla x)_a[i] = x[i + e_a] - x[i]`, and the backward-difference
divergence that is minus its adjoint, :math:`\operatorname{div} = -\nabla^T`.
With these, a field of unit vectors has :math:`|\operatorname{div}| \le 2d`,
which is what bounds the RL-TV denominator away from zero. Anisotropic voxels
weight the difference along axis :math:`a` by :math:`w_a = \min h / h_a \le 1`
(:func:`axis_weights`): the gradient per unit length, in units of the smallest
voxel side, which keeps both bounds.

Each kernel is one pass over the image (the unit normals of the previous
row/plane are kept in a small buffer), so the TV term costs about as much as
one element-wise NumPy operation instead of a dozen.
"""

import math

import numba
import numpy as np

__all__ = ["rl_tv_denominator", "fgp_primal", "fgp_dual", "tv_norm", "dual_shape", "axis_weights"]


@numba.njit(cache=True, nogil=True)
def _rl_tv_2d(x, lam, eps2, w, out):  # pragma: no cover - compiled
    n0, n1 = x.shape
    w0, w1 = w[0], w[1]
    prev0 = np.zeros(n1)
    for i in range(n0):
        prev1 = 0.0
        for j in range(n1):
            g0 = w0 * (x[i + 1, j] - x[i, j]) if i < n0 - 1 else 0.0
            g1 = w1 * (x[i, j + 1] - x[i, j]) if j < n1 - 1 else 0.0
            inv = 1.0 / math.sqrt(g0 * g0 + g1 * g1 + eps2)
            u0 = w0 * (g0 * inv)  # the divergence's weight is folded in (the same bits for weights 1)
            u1 = w1 * (g1 * inv)
            out[i, j] = 1.0 - lam * (u0 - prev0[j] + u1 - prev1)
            prev0[j] = u0
            prev1 = u1


@numba.njit(cache=True, nogil=True)
def _rl_tv_3d(x, lam, eps2, w, out):  # pragma: no cover - compiled
    n0, n1, n2 = x.shape
    w0, w1, w2 = w[0], w[1], w[2]
    prev0 = np.zeros((n1, n2))
    prev1 = np.zeros(n2)
    for i in range(n0):
        for j in range(n1):
            prev2 = 0.0
            for k in range(n2):
                g0 = w0 * (x[i + 1, j, k] - x[i, j, k]) if i < n0 - 1 else 0.0
                g1 = w1 * (x[i, j + 1, k] - x[i, j, k]) if j < n1 - 1 else 0.0
                g2 = w2 * (x[i, j, k + 1] - x[i, j, k]) if k < n2 - 1 else 0.0
                inv = 1.0 / math.sqrt(g0 * g0 + g1 * g1 + g2 * g2 + eps2)
                u0 = w0 * (g0 * inv)  # the divergence's weight is folded in (the same bits for weights 1)
                u1 = w1 * (g1 * inv)
                u2 = w2 * (g2 * inv)
                out[i, j, k] = 1.0 - lam * (u0 - prev0[j, k] + u1 - prev1[k] + u2 - prev2)
                prev0[j, k] = u0
                prev1[k] = u1
                prev2 = u2


def axis_weights(spacing, ndim):
    r"""Per-axis weights :math:`w_a = \min_b h_b / h_a \le 1` of the differences for voxel sides ``spacing``.

    The weighted gradient :math:`w_a (x[i + e_a] - x[i])` is the gradient per unit length in units of the
    smallest side, so isotropic voxels (``spacing=None``) give weights 1 (the unweighted operators, bit for bit)
    and :math:`|\operatorname{div}| \le 2 \sum_a w_a \le 2d`, :math:`\|\nabla\|^2 \le 4 \sum_a w_a^2 \le 4d`
    still hold.
    """
    if spacing is None:
        return np.ones(ndim)
    spacing = np.asarray(spacing, dtype=np.float64)
    return spacing.min() / spacing


def _weights(w, ndim):
    return np.ones(ndim) if w is None else np.ascontiguousarray(w, dtype=np.float64)


def rl_tv_denominator(x, lam, eps, out, weights=None):
    r"""Write :math:`1 - \lambda \operatorname{div}_w(\nabla_w x / \sqrt{|\nabla_w x|^2 + \varepsilon^2})` into ``out``.

    ``weights`` (one per axis, at most 1; default 1) scale the differences
    along each axis (:func:`axis_weights`). Positive whenever
    :math:`\lambda < 1/(2d)`.
    """
    kernel = _rl_tv_2d if x.ndim == 2 else _rl_tv_3d
    kernel(x, float(lam), float(eps) ** 2, _weights(weights, x.ndim), out)
    return out


@numba.njit(cache=True, nogil=True)
def _primal_2d(v, p, mu, lower, w, out):  # pragma: no cover - compiled
    n0, n1 = v.shape
    w0, w1 = w[0], w[1]
    for i in range(n0):
        for j in range(n1):
            d = w0 * p[0, i, j] + w1 * p[1, i, j]
            if i > 0:
                d -= w0 * p[0, i - 1, j]
            if j > 0:
                d -= w1 * p[1, i, j - 1]
            value = v[i, j] + mu * d
            out[i, j] = value if value > lower else lower


@numba.njit(cache=True, nogil=True)
def _primal_3d(v, p, mu, lower, w, out):  # pragma: no cover - compiled
    n0, n1, n2 = v.shape
    w0, w1, w2 = w[0], w[1], w[2]
    for i in range(n0):
        for j in range(n1):
            for k in range(n2):
                d = w0 * p[0, i, j, k] + w1 * p[1, i, j, k] + w2 * p[2, i, j, k]
                if i > 0:
                    d -= w0 * p[0, i - 1, j, k]
                if j > 0:
                    d -= w1 * p[1, i, j - 1, k]
                if k > 0:
                    d -= w2 * p[2, i, j, k - 1]
                value = v[i, j, k] + mu * d
                out[i, j, k] = value if value > lower else lower


@numba.njit(cache=True, nogil=True)
def _dual_2d(x, p, q, step, beta, w):  # pragma: no cover - compiled
    n0, n1 = x.shape
    w0, w1 = w[0], w[1]
    for i in range(n0):
        for j in range(n1):
            g0 = w0 * (x[i + 1, j] - x[i, j]) if i < n0 - 1 else 0.0
            g1 = w1 * (x[i, j + 1] - x[i, j]) if j < n1 - 1 else 0.0
            a0 = q[0, i, j] + step * g0
            a1 = q[1, i, j] + step * g1
            norm = math.sqrt(a0 * a0 + a1 * a1)
            if norm > 1.0:
                a0 /= norm
                a1 /= norm
            q[0, i, j] = a0 + beta * (a0 - p[0, i, j])
            q[1, i, j] = a1 + beta * (a1 - p[1, i, j])
            p[0, i, j] = a0
            p[1, i, j] = a1


@numba.njit(cache=True, nogil=True)
def _dual_3d(x, p, q, step, beta, w):  # pragma: no cover - compiled
    n0, n1, n2 = x.shape
    w0, w1, w2 = w[0], w[1], w[2]
    for i in range(n0):
        for j in range(n1):
            for k in range(n2):
                g0 = w0 * (x[i + 1, j, k] - x[i, j, k]) if i < n0 - 1 else 0.0
                g1 = w1 * (x[i, j + 1, k] - x[i, j, k]) if j < n1 - 1 else 0.0
                g2 = w2 * (x[i, j, k + 1] - x[i, j, k]) if k < n2 - 1 else 0.0
                a0 = q[0, i, j, k] + step * g0
                a1 = q[1, i, j, k] + step * g1
                a2 = q[2, i, j, k] + step * g2
                norm = math.sqrt(a0 * a0 + a1 * a1 + a2 * a2)
                if norm > 1.0:
                    a0 /= norm
                    a1 /= norm
                    a2 /= norm
                q[0, i, j, k] = a0 + beta * (a0 - p[0, i, j, k])
                q[1, i, j, k] = a1 + beta * (a1 - p[1, i, j, k])
                q[2, i, j, k] = a2 + beta * (a2 - p[2, i, j, k])
                p[0, i, j, k] = a0
                p[1, i, j, k] = a1
                p[2, i, j, k] = a2


@numba.njit(cache=True, nogil=True)
def _tv_2d(x, w):  # pragma: no cover - compiled
    n0, n1 = x.shape
    w0, w1 = w[0], w[1]
    total = 0.0
    for i in range(n0):
        for j in range(n1):
            g0 = w0 * (x[i + 1, j] - x[i, j]) if i < n0 - 1 else 0.0
            g1 = w1 * (x[i, j + 1] - x[i, j]) if j < n1 - 1 else 0.0
            total += math.sqrt(g0 * g0 + g1 * g1)
    return total


@numba.njit(cache=True, nogil=True)
def _tv_3d(x, w):  # pragma: no cover - compiled
    n0, n1, n2 = x.shape
    w0, w1, w2 = w[0], w[1], w[2]
    total = 0.0
    for i in range(n0):
        for j in range(n1):
            for k in range(n2):
                g0 = w0 * (x[i + 1, j, k] - x[i, j, k]) if i < n0 - 1 else 0.0
                g1 = w1 * (x[i, j + 1, k] - x[i, j, k]) if j < n1 - 1 else 0.0
                g2 = w2 * (x[i, j, k + 1] - x[i, j, k]) if k < n2 - 1 else 0.0
                total += math.sqrt(g0 * g0 + g1 * g1 + g2 * g2)
    return total


def dual_shape(shape):
    return (len(shape),) + tuple(shape)


def fgp_primal(v, p, mu, lower, out, weights=None):
    r"""Write :math:`\max(v + \mu \operatorname{div}_w p, \text{lower})` into ``out``."""
    kernel = _primal_2d if v.ndim == 2 else _primal_3d
    kernel(v, p, float(mu), float(lower), _weights(weights, v.ndim), out)
    return out


def fgp_dual(x, p, q, step, beta, weights=None):
    r"""One projected gradient step of the TV dual (Beck & Teboulle's FGP), in place.

    ``p`` becomes :math:`P(q + \text{step}\,\nabla x)` (projection of every
    vector onto the unit ball: isotropic TV) and ``q`` its extrapolation
    :math:`p_{new} + \beta (p_{new} - p_{old})`.
    """
    kernel = _dual_2d if x.ndim == 2 else _dual_3d
    kernel(x, p, q, float(step), float(beta), _weights(weights, x.ndim))


def tv_norm(x, weights=None):
    """Isotropic total variation :math:`\\sum_i |\\nabla_w x|_i` (axis weights ``weights``, default 1)."""
    w = _weights(weights, x.ndim)
    return float(_tv_2d(x, w) if x.ndim == 2 else _tv_3d(x, w))


def tv_prox(v, mu, p, *, iterations=10, lower=0.0, out=None, scratch=None, weights=None):
    r"""Approximate :math:`\arg\min_x \tfrac12\|x - v\|^2 + \mu\,\mathrm{TV}(x) + \iota_{x \ge \text{lower}}`.

    Dual fast gradient projection (FGP, Beck & Teboulle 2009) warm-started
    from the dual field ``p`` (updated in place, shape ``(d, *v.shape)``).
    """
    out = np.empty_like(v) if out is None else out
    if mu <= 0:
        np.maximum(v, lower, out=out)
        return out
    q = p.copy() if scratch is None else scratch
    if scratch is not None:
        q[...] = p
    step = 1.0 / (4 * v.ndim * mu)
    t = 1.0
    for _ in range(iterations):
        fgp_primal(v, q, mu, lower, out, weights)
        t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
        fgp_dual(out, p, q, step, (t - 1) / t_next, weights)
        t = t_next
    return fgp_primal(v, p, mu, lower, out, weights)
