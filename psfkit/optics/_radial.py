r"""Radially symmetric PSFs: h(r, z) by Gauss-Legendre quadrature over the pupil radius.

Private engine of :mod:`psfkit.optics.microscope`; every function trusts its
inputs. Lengths are in micrometres, ``stage`` is the displacement of the
nominal focal plane from the coverslip (Gibson-Lanni's :math:`t_i^* - t_i`).

The field of an aberration-free, rotationally symmetric pupil is a Hankel
transform over the normalised pupil radius :math:`\rho \in [0, 1]`,

.. math::

    E_m(r, s) = \int_0^1 a(\rho)\, g_m(\rho)\, J_m(k\,\mathrm{NA}\,r\rho)\,
    e^{i k W(\rho, s)}\, \rho\, d\rho,

computed for a whole radial grid and all planes at once as one matrix
product (Bessel matrix times phase matrix). Pixel integration, the confocal
pinhole and the ISM detector sum are linear (or bilinear) maps of these
profiles that do not depend on the plane: they are built once as sparse
matrices and applied to every plane.
"""

import functools
import math
from typing import NamedTuple

import numpy as np
from scipy import sparse, special

_MIN_NODES = 48
_BLOCK_BYTES = 16 * 2**20  # Bessel block of the radial grid kept in cache
RADIAL_STEP = 0.02  # radial grid step in units of 1 / (intensity bandwidth 2 NA / lambda)


class Pupil(NamedTuple):
    """One illumination or detection path (trusted, lengths in um)."""

    na: float
    wavelength: float
    n_immersion: float
    n_sample: float
    depth: float
    model: str  # "born-wolf", "scalar" or "vectorial"


@functools.lru_cache(maxsize=16)
def gauss_legendre(n):
    """Gauss-Legendre nodes and weights on [0, 1] (read-only arrays)."""
    x, w = np.polynomial.legendre.leggauss(int(n))
    x, w = (x + 1.0) / 2.0, w / 2.0
    x.setflags(write=False)
    w.setflags(write=False)
    return x, w


def _cos_terms(pupil, rho):
    """n cos(theta) in the immersion and the sample, complex (evanescent beyond the sample's index)."""
    s2 = (pupil.na * rho) ** 2
    immersion = np.sqrt(pupil.n_immersion**2 - s2 + 0j)
    sample = np.sqrt(pupil.n_sample**2 - s2 + 0j)  # principal root: +i|.| past the critical angle
    return immersion, sample


def wavefront(pupil, rho, stage):
    """Optical path difference W(rho, s) in um, shape (len(rho), len(stage)), complex.

    Gibson-Lanni with the coverslip as designed: ``W = d n_s cos(theta_s) -
    s n_i cos(theta_i)``, minus its value on axis. With matched indices it is
    ``(d - s) (sqrt(n^2 - NA^2 rho^2) - n)``; the Born-Wolf model keeps the
    paraxial term ``(s - d) NA^2 rho^2 / (2 n)`` of it.
    """
    rho = np.asarray(rho, dtype=np.float64)[:, None]
    stage = np.asarray(stage, dtype=np.float64)[None, :]
    if pupil.model == "born-wolf":
        return ((stage - pupil.depth) * (pupil.na**2 / (2 * pupil.n_immersion)) * rho**2).astype(np.complex128)
    immersion, sample = _cos_terms(pupil, rho)
    return pupil.depth * (sample - pupil.n_sample) - stage * (immersion - pupil.n_immersion)


def phase_span(pupil, stage):
    """Largest variation of k W over the pupil among the planes (radians)."""
    rho = np.linspace(0.0, 1.0, 65)
    w = wavefront(pupil, rho, np.atleast_1d(stage)).real
    return float(2 * np.pi / pupil.wavelength * np.ptp(w, axis=0).max())


def nodes_needed(pupil, r_max, stage):
    """Gauss-Legendre nodes in rho for J_m(k NA r rho) exp(i k W) up to r_max, converged to ~1e-8."""
    k = 2 * np.pi / pupil.wavelength
    span = k * pupil.na * r_max + phase_span(pupil, stage)
    return _MIN_NODES + int(math.ceil(0.55 * span + 4.0 * span ** (1 / 3)))


def _critical_radius(pupil):
    """Pupil radius of the sample's critical angle, n_s / NA, when it lies inside the pupil and matters."""
    if pupil.model == "born-wolf" or pupil.depth == 0 or pupil.n_sample >= pupil.na:
        return None
    return pupil.n_sample / pupil.na


def pupil_quadrature(pupil, n_nodes):
    """Nodes rho and weights of the measure rho d rho on [0, 1].

    Plain Gauss-Legendre, except when the sample's critical angle falls inside
    the pupil: n_s cos(theta_s) then has a square-root branch point at
    rho_c = n_s / NA, where Gauss-Legendre converges only algebraically. Each
    side gets its own panel in the variable u = sqrt(|rho_c^2 - rho^2|)
    (rho d rho = u du), in which every factor of the integrand -- functions
    of rho^2 and of n cos(theta) -- is smooth.
    """
    critical = _critical_radius(pupil)
    if critical is None:
        rho, weight = gauss_legendre(n_nodes)
        return rho, rho * weight
    u, w = gauss_legendre(n_nodes)
    inner_u, outer_u = u * critical, u * math.sqrt(1.0 - critical**2)
    rho = np.concatenate([np.sqrt(critical**2 - inner_u**2), np.sqrt(critical**2 + outer_u**2)])
    weight = np.concatenate([inner_u * w * critical, outer_u * w * math.sqrt(1.0 - critical**2)])
    return rho, weight


def _pupil_terms(pupil, stage, n_nodes):
    """Per-node factors: rho nodes and, per Bessel order, a(rho) g_m(rho) (rho d rho) exp(i k W) (N, S)."""
    rho, weight = pupil_quadrature(pupil, n_nodes)
    phase = np.exp(1j * (2 * np.pi / pupil.wavelength) * wavefront(pupil, rho, stage))
    if pupil.model != "vectorial":
        return rho, [(0, weight[:, None] * phase, 1.0)]
    # Richards-Wolf, isotropic emitter: |I0|^2 + 2 |I1|^2 + |I2|^2; aplanatic amplitude sqrt(cos)
    # becomes 1 / sqrt(cos) in the measure rho d rho (sin d(theta) = (NA/n)^2 rho d rho / cos)
    sin = pupil.na * rho / pupil.n_immersion
    cos = np.sqrt(1.0 - sin**2)
    base = weight / np.sqrt(cos)
    return rho, [
        (0, (base * (1 + cos))[:, None] * phase, 1.0),
        (1, (base * sin)[:, None] * phase, 2.0),
        (2, (base * (1 - cos))[:, None] * phase, 1.0),
    ]


def intensity(pupil, r, stage, n_nodes=None):
    """Intensity h(r, s) on radii ``r`` (um) and stage positions ``stage``, shape (len(r), len(stage)).

    Unnormalised, with the same scale for every call of one pupil model at
    one wavelength (so excitation and emission profiles can be multiplied).
    """
    r = np.asarray(r, dtype=np.float64)
    stage = np.atleast_1d(np.asarray(stage, dtype=np.float64))
    if n_nodes is None:
        n_nodes = nodes_needed(pupil, float(np.abs(r).max(initial=0.0)), stage)
    rho, terms = _pupil_terms(pupil, stage, n_nodes)
    kr = (2 * np.pi / pupil.wavelength) * pupil.na
    out = np.zeros((r.size, stage.size))
    block = max(64, _BLOCK_BYTES // (8 * rho.size))
    for start in range(0, r.size, block):
        arg = kr * r[start : start + block, None] * rho[None, :]
        bessel = {0: special.j0(arg)}
        if len(terms) > 1:
            bessel[1] = special.j1(arg)
            # J2 = 2 J1 / x - J0, with its series x^2 / 8 - x^4 / 96 where the recurrence cancels
            small = arg < 1e-2
            safe = np.where(small, 1.0, arg)
            bessel[2] = np.where(small, arg**2 / 8 - arg**4 / 96, 2 * bessel[1] / safe - bessel[0])
        for order, factor, scale in terms:
            field = bessel[order] @ factor
            out[start : start + block] += scale * (field.real**2 + field.imag**2)
    return out


def best_focus(pupils, *, products=True):
    """Stage position maximising the on-axis intensity (the product over ``pupils``).

    Without a depth or without index mismatch this is ``depth`` itself; with
    a mismatch the focus moves (Gibson-Lanni focal shift), found by a scan
    and a bounded refinement.
    """
    first = pupils[0]
    depth = first.depth
    if depth == 0 or all(p.n_sample == p.n_immersion or p.model == "born-wolf" for p in pupils):
        return depth
    from scipy.optimize import minimize_scalar

    paraxial = depth * first.n_immersion / first.n_sample
    axial = max(2 * p.n_immersion * p.wavelength / p.na**2 for p in pupils)
    lo, hi = min(depth, paraxial) - 3 * axial, max(depth, paraxial) + 3 * axial
    scan = np.linspace(lo, hi, int(np.ceil((hi - lo) / (axial / 30))) + 1)

    def on_axis(stage):
        value = np.ones(np.size(stage))
        for p in pupils:
            value = value * intensity(p, np.zeros(1), np.atleast_1d(stage))[0]
        return value

    values = on_axis(scan)
    i = int(values.argmax())
    step = scan[1] - scan[0]
    result = minimize_scalar(
        lambda s: -on_axis(s)[0], bounds=(scan[i] - step, scan[i] + step), method="bounded",
        options={"xatol": 1e-6 * axial},
    )
    return float(result.x)


# --------------------------------------------------------------------------- linear maps of profiles


class RadialGrid(NamedTuple):
    """Uniform radial grid ``r_i = (i - 1) step``, i = 0..size-1 (one node below 0 for the cubic)."""

    step: float
    size: int

    @property
    def radii(self):
        return (np.arange(self.size) - 1.0) * self.step

    @classmethod
    def covering(cls, r_max, step):
        return cls(step, int(math.ceil(r_max / step)) + 4)


def cubic_weights(r, grid):
    """Columns and weights (P, 4) of 4-point Lagrange interpolation of a profile on ``grid`` at ``r >= 0``.

    The profiles are even in r, so the node at -step holds h(step) and no
    special case is needed at the origin; the error is O(step^4).
    """
    t = np.asarray(r, dtype=np.float64) / grid.step + 1.0
    base = np.floor(t).astype(np.intp)
    f = t - base
    columns = base[..., None] + np.arange(-1, 3)
    fm1, fp1, fm2 = f - 1.0, f + 1.0, f - 2.0
    weights = np.stack(
        [-f * fm1 * fm2 / 6.0, fp1 * fm1 * fm2 / 2.0, -fp1 * f * fm2 / 2.0, fp1 * f * fm1 / 6.0], axis=-1
    )
    return columns, weights


def interpolation_matrix(r, point_weights, grid, rows=None, n_rows=None):
    """Sparse (n_rows, grid.size) matrix: row i = sum over its points of weight x cubic interpolation.

    ``r`` and ``point_weights`` are (R, Q): Q quadrature points per output row.
    """
    r = np.asarray(r, dtype=np.float64)
    n_rows = r.shape[0] if n_rows is None else n_rows
    columns, weights = cubic_weights(r, grid)
    data = (weights * point_weights[..., None]).reshape(r.shape[0], -1)
    indices = columns.reshape(r.shape[0], -1)
    per_row = data.shape[1]
    indptr = np.arange(0, per_row * r.shape[0] + 1, per_row)
    # duplicated column indices inside a row are summed by the product (scipy keeps them)
    matrix = sparse.csr_matrix((data.ravel(), indices.ravel(), indptr), shape=(r.shape[0], grid.size))
    matrix.sum_duplicates()
    return matrix


def pixel_nodes(oversampling):
    """Gauss-Legendre offsets in [-1/2, 1/2] and weights (sum 1) for one pixel axis."""
    if oversampling == 1:
        return np.zeros(1), np.ones(1)
    x, w = np.polynomial.legendre.leggauss(oversampling)
    return x / 2.0, w / 2.0


def octant_layout(ny, nx):
    """Octant pixel offsets (a >= b >= 0) and, per output pixel, the index of its octant pixel."""
    reach = max(ny // 2, nx // 2, (ny - 1) - ny // 2, (nx - 1) - nx // 2)
    a, b = np.tril_indices(reach + 1)  # rows a, columns b <= a
    oy = np.abs(np.arange(ny) - ny // 2)[:, None]
    ox = np.abs(np.arange(nx) - nx // 2)[None, :]
    hi, lo = np.maximum(oy, ox), np.minimum(oy, ox)
    return a, b, hi * (hi + 1) // 2 + lo


def pixel_matrix(a, b, pixel_size, oversampling, grid):
    """Sparse map from a radial profile to the pixel-averaged values of the octant pixels (a, b)."""
    t, w = pixel_nodes(oversampling)
    y = (a[:, None, None] + t[None, :, None]) * pixel_size
    x = (b[:, None, None] + t[None, None, :]) * pixel_size
    r = np.sqrt(y**2 + x**2).reshape(a.size, -1)
    weights = np.broadcast_to((w[:, None] * w[None, :]).ravel(), r.shape)
    return interpolation_matrix(r, weights, grid)


def disk_quadrature(radius, bandwidth):
    """Polar nodes of a disk of ``radius`` centred at 0: (t, cos(phi), weight), weights sum to its area.

    Gauss-Legendre in t, midpoint rule on the half circle (the integrands
    here are even in phi); both converge fast for the band-limited profiles.
    """
    if radius == 0:
        return np.zeros(1), np.ones(1), np.ones(1)
    cycles = radius * bandwidth  # oscillations of the profile across the radius
    n_t = 8 + int(math.ceil(6 * cycles))
    n_phi = 8 + int(math.ceil(8 * cycles))
    t, wt = gauss_legendre(n_t)
    phi = (np.arange(n_phi) + 0.5) * np.pi / n_phi
    t = t * radius
    weight = (wt * radius * t)[:, None] * np.full(n_phi, 2 * np.pi / n_phi)[None, :]
    t, cos = np.broadcast_arrays(t[:, None], np.cos(phi)[None, :])
    return t.ravel(), cos.ravel(), weight.ravel()


def pinhole_matrix(out_grid, in_grid, radius, bandwidth):
    """Sparse map: profile h on ``in_grid`` -> (h * disk of ``radius``)(r) on ``out_grid``, unnormalised."""
    t, cos, weight = disk_quadrature(radius, bandwidth)
    r = out_grid.radii.clip(0.0)[:, None]
    points = np.sqrt(np.clip(r**2 + t**2 + 2 * r * t * cos, 0.0, None))
    return interpolation_matrix(points, np.broadcast_to(weight, points.shape), in_grid)


def ism_matrices(out_grid, in_grid, radius, beta, bandwidth):
    """Interpolation matrices for h_ex(r + beta d) and h_em(r - (1 - beta) d), d over the detector disk.

    Returns ``(ex, em, weights)``: ``ex`` and ``em`` map a profile to its
    values at the (out radius, detector node) pairs, rows laid out (R, Q).
    """
    t, cos, weight = disk_quadrature(radius, bandwidth)
    r = out_grid.radii.clip(0.0)[:, None]
    to_ex = np.sqrt(np.clip(r**2 + (beta * t) ** 2 + 2 * r * beta * t * cos, 0.0, None))
    to_em = np.sqrt(np.clip(r**2 + ((1 - beta) * t) ** 2 - 2 * r * (1 - beta) * t * cos, 0.0, None))
    ones = np.ones((to_ex.size, 1))
    ex = interpolation_matrix(to_ex.reshape(-1, 1), ones, in_grid)
    em = interpolation_matrix(to_em.reshape(-1, 1), ones, in_grid)
    return ex, em, weight


def disk_nodes(radius, bandwidth):
    """Cartesian nodes (dy, dx) and weights (sum: the area) of a disk of ``radius`` centred at 0.

    Gauss-Legendre in the radius, midpoint rule on the full circle; for
    integrands without rotational symmetry (aberrated PSFs). A zero radius
    gives the single node 0 with weight 1.
    """
    if radius == 0:
        return np.zeros(1), np.zeros(1), np.ones(1)
    cycles = radius * bandwidth
    n_t = 4 + int(math.ceil(4 * cycles))
    n_phi = 8 + int(math.ceil(8 * cycles))
    t, wt = gauss_legendre(n_t)
    phi = (np.arange(n_phi) + 0.5) * 2 * np.pi / n_phi
    t = t * radius
    weight = (wt * radius * t)[:, None] * np.full(n_phi, 2 * np.pi / n_phi)[None, :]
    return (t[:, None] * np.sin(phi)).ravel(), (t[:, None] * np.cos(phi)).ravel(), weight.ravel()
