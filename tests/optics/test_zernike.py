import math

import numpy as np
import pytest

from psfkit.optics.zernike import noll_to_nm, zernike_basis, zernike_polynomial

# Noll (1976), table 1 / Wikipedia "Noll's sequential indices"
NOLL_TABLE = {
    1: (0, 0), 2: (1, 1), 3: (1, -1), 4: (2, 0), 5: (2, -2), 6: (2, 2), 7: (3, -1), 8: (3, 1),
    9: (3, -3), 10: (3, 3), 11: (4, 0), 12: (4, 2), 13: (4, -2), 14: (4, 4), 15: (4, -4),
    16: (5, 1), 17: (5, -1), 18: (5, 3), 19: (5, -3), 20: (5, 5), 21: (5, -5), 22: (6, 0),
    23: (6, -2), 24: (6, 2), 25: (6, -4), 26: (6, 4), 27: (6, -6), 28: (6, 6), 37: (8, 0),
}  # fmt: skip


@pytest.mark.parametrize("j", sorted(NOLL_TABLE))
def test_noll_to_nm_matches_table(j):
    assert noll_to_nm(j) == NOLL_TABLE[j]


def test_noll_to_nm_covers_each_mode_once():
    modes = [noll_to_nm(j) for j in range(1, 67)]  # radial orders 0 to 10
    assert len(set(modes)) == len(modes)
    assert all((n - abs(m)) % 2 == 0 and abs(m) <= n for n, m in modes)
    assert noll_to_nm(np.int64(11)) == (4, 0)


@pytest.mark.parametrize("bad", [0, -3])
def test_noll_to_nm_rejects_small_index(bad):
    with pytest.raises(ValueError, match="Noll index >= 1"):
        noll_to_nm(bad)


@pytest.mark.parametrize("bad", [1.5, 4.0, "4", True, None])
def test_noll_to_nm_rejects_non_integers(bad):
    with pytest.raises(TypeError, match="integer Noll index"):
        noll_to_nm(bad)


def _disk_quadrature(n_radial=40, n_angular=96):
    """Points and weights integrating polynomials of degree < 2*n_radial exactly over the unit disk, / pi."""
    t, w = np.polynomial.legendre.leggauss(n_radial)
    rho = np.sqrt((t + 1) / 2)  # Gauss-Legendre in rho^2: d(area) = rho drho dtheta = d(rho^2)/2 dtheta
    theta = 2 * np.pi * np.arange(n_angular) / n_angular
    x = (rho[:, None] * np.cos(theta)).ravel()
    y = (rho[:, None] * np.sin(theta)).ravel()
    weights = np.repeat(w / 2, n_angular) / n_angular  # sums to 1: mean over the disk
    return x, y, weights


def test_orthonormal_on_the_unit_disk():
    # exact quadrature: catches any wrong radial coefficient or normalisation
    # (deepinv shipped a wrong radial formula until 0.3.6)
    x, y, weights = _disk_quadrature()
    values = np.array([zernike_polynomial(j, x, y) for j in range(1, 67)])
    gram = (values * weights) @ values.T
    np.testing.assert_allclose(gram, np.eye(66), atol=1e-10)


def test_orthonormal_on_a_pixel_grid():
    basis = zernike_basis(range(1, 16), 400)
    inside = (basis[0] != 0).sum()
    gram = np.einsum("iyx,jyx->ij", basis, basis) / inside
    np.testing.assert_allclose(gram, np.eye(15), atol=0.02)


def test_closed_forms():
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-0.7, 0.7, (2, 50))
    r2 = x**2 + y**2
    expected = {
        1: np.ones_like(x),
        2: 2 * x,
        3: 2 * y,
        4: math.sqrt(3) * (2 * r2 - 1),
        5: 2 * math.sqrt(6) * x * y,
        6: math.sqrt(6) * (x**2 - y**2),
        7: math.sqrt(8) * y * (3 * r2 - 2),
        8: math.sqrt(8) * x * (3 * r2 - 2),
        9: math.sqrt(8) * y * (3 * x**2 - y**2),
        10: math.sqrt(8) * x * (x**2 - 3 * y**2),
        11: math.sqrt(5) * (6 * r2**2 - 6 * r2 + 1),
        12: math.sqrt(10) * (x**2 - y**2) * (4 * r2 - 3),
        13: 2 * math.sqrt(10) * x * y * (4 * r2 - 3),
        22: math.sqrt(7) * (20 * r2**3 - 30 * r2**2 + 12 * r2 - 1),
    }
    for j, values in expected.items():
        np.testing.assert_allclose(zernike_polynomial(j, x, y), values, atol=1e-12, err_msg=f"Z{j}")


def test_polar_form_uses_atan2_of_row_over_column():
    rng = np.random.default_rng(1)
    rho, theta = rng.uniform(0, 1, 20), rng.uniform(-np.pi, np.pi, 20)
    x, y = rho * np.cos(theta), rho * np.sin(theta)
    radial_7 = math.sqrt(8) * (3 * rho**3 - 2 * rho)
    np.testing.assert_allclose(zernike_polynomial(7, x, y), radial_7 * np.sin(theta), atol=1e-12)
    np.testing.assert_allclose(zernike_polynomial(8, x, y), radial_7 * np.cos(theta), atol=1e-12)
    np.testing.assert_allclose(zernike_polynomial(14, x, y), math.sqrt(10) * rho**4 * np.cos(4 * theta), atol=1e-12)
    np.testing.assert_allclose(zernike_polynomial(15, x, y), math.sqrt(10) * rho**4 * np.sin(4 * theta), atol=1e-12)


def test_basis_axes_x_columns_y_rows():
    tilt_x, tilt_y = zernike_basis([2, 3], 8)
    # x increases along the columns (last axis), y along the rows, with the index
    assert np.all(np.diff(tilt_x[4, 2:6]) > 0) and np.allclose(tilt_x[2:6, 4], tilt_x[2, 4])
    assert np.all(np.diff(tilt_y[2:6, 4]) > 0) and np.allclose(tilt_y[4, 2:6], tilt_y[4, 2])


@pytest.mark.parametrize("size", [7, 8])
def test_basis_grid_is_symmetric_and_masked(size):
    basis = zernike_basis([4, 8], size)
    assert basis.shape == (2, size, size) and basis.dtype == np.float64
    centres = (2 * np.arange(size) + 1 - size) / size
    outside = centres[:, None] ** 2 + centres[None, :] ** 2 > 1
    assert np.all(basis[:, outside] == 0)
    np.testing.assert_array_equal(basis[0], basis[0][::-1, ::-1])  # defocus is even
    np.testing.assert_array_equal(basis[1], -basis[1][:, ::-1])  # x-coma is odd in x


def test_basis_is_cached_and_read_only():
    first = zernike_basis((4, 5), 16)
    assert zernike_basis([4, 5], 16) is first
    with pytest.raises(ValueError):
        first[0, 0, 0] = 1.0


@pytest.mark.parametrize(
    ("indices", "size", "error"),
    [
        ([0, 4], 8, ValueError),
        ([4, 4], 8, ValueError),
        ([4.5], 8, TypeError),
        ("45", 8, TypeError),
        ([4], 0, ValueError),
        ([4], -2, ValueError),
        ([4], 2.5, TypeError),
    ],
)
def test_basis_rejects_bad_input(indices, size, error):
    with pytest.raises(error):
        zernike_basis(indices, size)


def test_polynomial_rejects_non_finite_points():
    with pytest.raises(ValueError, match="finite"):
        zernike_polynomial(4, [0.0, np.nan], 0.0)


def test_polynomial_broadcasts():
    values = zernike_polynomial(4, np.zeros((3, 1)), np.zeros(5))
    assert values.shape == (3, 5)
    np.testing.assert_allclose(values, -math.sqrt(3))
