r"""Zernike polynomials in Noll's indexing, orthonormal on the unit disk.

Conventions (shared by every psfkit function that takes Zernike coefficients):

* **Noll indexing** [1]_: ``j = 1`` piston, ``2, 3`` tip/tilt, ``4`` defocus,
  ``5, 6`` astigmatism, ``7, 8`` coma, ``9, 10`` trefoil, ``11`` spherical, ...
  Even ``j`` carry :math:`\cos(m\theta)`, odd ``j`` carry :math:`\sin(|m|\theta)`.
* **RMS normalisation**: :math:`\frac{1}{\pi}\int_{\rho\le 1} Z_i Z_j = \delta_{ij}`,
  so a coefficient is the RMS wavefront error of its term (in waves for psfkit).
* **Axes**: on an image-like array, ``x`` runs along the columns (last axis) and
  ``y`` along the rows (first axis), both increasing with the index, and
  :math:`\theta = \operatorname{atan2}(y, x)`. This is the convention of deepinv's
  ``DiffractionBlurGenerator`` (0.5), so coefficients are interchangeable.

References
----------
.. [1] R. J. Noll, "Zernike polynomials and atmospheric turbulence",
       J. Opt. Soc. Am. 66(3), 207-211 (1976). :doi:`10.1364/JOSA.66.000207`
"""

import functools
import math
import numbers

import numpy as np

from psfkit._validation import check_int

__all__ = ["noll_to_nm", "zernike_polynomial", "zernike_basis"]

# Largest Noll index evaluated: the end of radial order 20, (20 + 1)(20 + 2)/2.
# Beyond it the factorial coefficients of the radial polynomials lose their
# round-off accuracy (see zernike_polynomial), and absurd indices (10**12) would
# spend minutes computing factorials.
MAX_NOLL = 231
# Largest side of a sampled grid (zernike_basis, zernike_psf, airy_psf).
MAX_SIZE = 4097
# Largest number of values of one sampled result (2 GiB of float64).
MAX_VALUES = 2**28


def _check_noll(j, name="j", maximum=None):
    if isinstance(j, (bool, np.bool_)) or not isinstance(j, numbers.Integral):
        raise TypeError(f"{name} must be an integer Noll index >= 1, got {j!r}")
    if j < 1:
        raise ValueError(f"{name} must be a Noll index >= 1, got {j}")
    if maximum is not None and j > maximum:
        raise ValueError(f"{name} must be a Noll index <= {maximum} (radial order <= 20), got {j}")
    return int(j)


def _check_indices(indices, name="indices"):
    """Validate a sequence of Noll indices (1 to ``MAX_NOLL``) and return it as a tuple of int."""
    if isinstance(indices, numbers.Integral) and not isinstance(indices, (bool, np.bool_)):
        indices = (indices,)
    if isinstance(indices, (str, bytes)) or not hasattr(indices, "__iter__"):
        raise TypeError(f"{name} must be a sequence of Noll indices, got {indices!r}")
    try:
        entries = np.asarray(indices, dtype=object).ravel()
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a flat sequence of Noll indices, got {indices!r}") from None
    indices = tuple(_check_noll(j, f"{name} entry", MAX_NOLL) for j in entries)
    if len(set(indices)) != len(indices):
        raise ValueError(f"{name} must not repeat a Noll index, got {indices}")
    return indices


def noll_to_nm(j):
    r"""Radial order and azimuthal frequency of the Noll index ``j``.

    Parameters
    ----------
    j : int
        Noll index, ``j >= 1``.

    Returns
    -------
    n : int
        Radial order.
    m : int
        Signed azimuthal frequency: ``m > 0`` for :math:`\cos(m\theta)` terms
        (even ``j``), ``m < 0`` for :math:`\sin(|m|\theta)` terms (odd ``j``),
        ``0`` for rotationally symmetric terms.

    Notes
    -----
    Within the radial order ``n`` (indices ``n(n+1)/2 + 1`` to
    ``(n+1)(n+2)/2``) the terms are sorted by increasing :math:`|m|`; each
    :math:`|m| > 0` appears twice, the cosine on the even index [1]_.

    References
    ----------
    .. [1] R. J. Noll, J. Opt. Soc. Am. 66(3), 207-211 (1976).
           :doi:`10.1364/JOSA.66.000207`

    Examples
    --------
    >>> [noll_to_nm(j) for j in range(4, 12)]
    [(2, 0), (2, -2), (2, 2), (3, -1), (3, 1), (3, -3), (3, 3), (4, 0)]
    """
    j = _check_noll(j)
    n = int((math.isqrt(8 * j - 7) - 1) // 2)  # largest n with n(n+1)/2 < j
    k = j - n * (n + 1) // 2 - 1  # position inside the radial order
    abs_m = 2 * ((k + 1) // 2) if n % 2 == 0 else 2 * (k // 2) + 1
    return n, (-abs_m if (j % 2 == 1 and abs_m != 0) else abs_m)


@functools.lru_cache(maxsize=None)
def _radial_coefficients(n, abs_m):
    # R_n^m(rho) = rho^|m| * sum_k c_k (rho^2)^((n-|m|)/2 - k); integer
    # factorials keep the coefficients exact (a wrong radial formula shipped in
    # deepinv < 0.3.6, hence the orthonormality tests).
    return tuple(
        (-1) ** k
        * math.factorial(n - k)
        / (math.factorial(k) * math.factorial((n + abs_m) // 2 - k) * math.factorial((n - abs_m) // 2 - k))
        for k in range((n - abs_m) // 2 + 1)
    )


def _evaluate(j, x, y):
    """Z_j at Cartesian points (trusted float arrays), no mask."""
    n, m = noll_to_nm(j)
    abs_m = abs(m)
    r2 = x * x + y * y
    radial = np.zeros_like(r2)
    for c in _radial_coefficients(n, abs_m):  # Horner in rho^2, highest power first
        radial = radial * r2 + c
    # rho^|m| cos(m theta) = Re (x + iy)^|m| (a polynomial: no atan2 singularity
    # at the origin, and exact sign symmetry under x -> -x, y -> -y)
    re, im = np.ones_like(x), np.zeros_like(x)
    for _ in range(abs_m):
        re, im = re * x - im * y, re * y + im * x
    angular = re if m >= 0 else im
    norm = math.sqrt(n + 1) if m == 0 else math.sqrt(2 * (n + 1))
    return norm * radial * angular


def zernike_polynomial(j, x, y):
    r"""Evaluate the Noll Zernike polynomial :math:`Z_j` at Cartesian points.

    Parameters
    ----------
    j : int
        Noll index, ``1 <= j <= 231`` (radial order at most 20).
    x, y : array_like
        Coordinates on the unit disk (broadcast together); ``x`` is the column
        axis and ``y`` the row axis of an image, :math:`\theta = \operatorname{atan2}(y, x)`.
        Points outside the disk get the polynomial's value (no mask).

    Returns
    -------
    z : ndarray
        :math:`Z_j(x, y)`, float64, the broadcast shape of ``x`` and ``y``.

    Notes
    -----
    With :math:`(n, m)` = :func:`noll_to_nm` ``(j)``,

    .. math::

        Z_j = N_n^m R_n^{|m|}(\rho)
        \begin{cases} \cos(m\theta) & m > 0 \\ \sin(|m|\theta) & m < 0 \\ 1 & m = 0\end{cases},
        \quad N_n^m = \sqrt{(2 - \delta_{m0})(n + 1)},

        R_n^{|m|}(\rho) = \sum_{k=0}^{(n-|m|)/2} \frac{(-1)^k (n-k)!}
        {k!\,(\frac{n+|m|}{2}-k)!\,(\frac{n-|m|}{2}-k)!}\rho^{n-2k},

    which makes the polynomials orthonormal for the mean over the unit disk.
    The sum is evaluated by Horner's rule in :math:`\rho^2`; it is accurate to
    round-off for the orders used in optics (say ``n <= 20``).

    Examples
    --------
    Defocus is :math:`\sqrt{3}(2\rho^2 - 1)`:

    >>> zernike_polynomial(4, [0.0, 1.0], [0.0, 0.0])
    array([-1.73205081,  1.73205081])

    Vertical coma (``j = 7``) varies along ``y``, the row axis:

    >>> float(zernike_polynomial(7, 0.0, 1.0)), float(zernike_polynomial(7, 1.0, 0.0))
    (2.8284271247461903, 0.0)
    """
    j = _check_noll(j, maximum=MAX_NOLL)
    for name, value in (("x", x), ("y", y)):
        if isinstance(value, (str, bytes)) or value is None:
            raise TypeError(f"{name} must be an array of real numbers, got {type(value).__name__}")
        try:
            value = np.asarray(value)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be an array of real numbers") from None
        if value.dtype.kind not in "biuf":
            raise TypeError(f"{name} must be an array of real numbers, got dtype {value.dtype}")
        if not np.all(np.isfinite(value)):
            raise ValueError(f"{name} must be finite")
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    try:
        x, y = np.broadcast_arrays(x, y)
    except ValueError:
        raise ValueError(f"x and y must broadcast together, got shapes {x.shape} and {y.shape}") from None
    return _evaluate(j, x, y)


@functools.lru_cache(maxsize=32)
def _basis(indices, size):
    centres = (2 * np.arange(size) + 1 - size) / size  # exactly antisymmetric
    y, x = np.meshgrid(centres, centres, indexing="ij")
    inside = x * x + y * y <= 1
    basis = np.zeros((len(indices), size, size))
    for i, j in enumerate(indices):
        basis[i][inside] = _evaluate(j, x[inside], y[inside])
    basis.setflags(write=False)
    return basis


def zernike_basis(indices, size):
    r"""Zernike polynomials sampled on a square grid covering the unit disk.

    Parameters
    ----------
    indices : int or sequence of int
        Noll indices (``1`` to ``231``, no repeats).
    size : int
        Number of samples along each axis, 1 to 4097 (and at most 2**28
        values in all). Sample ``k`` of an axis sits at the
        pixel centre :math:`(2k + 1 - \text{size}) / \text{size}`, so the grid
        is symmetric about the disk centre for odd and even ``size``.

    Returns
    -------
    basis : (K, size, size) ndarray
        ``basis[i]`` is :math:`Z_{j_i}` (float64), zero outside the unit disk.
        ``x`` runs along the last axis, ``y`` along the middle one. The array
        is cached per ``(indices, size)`` and therefore read-only; copy it
        before modifying it.

    See Also
    --------
    zernike_polynomial : evaluation at arbitrary points.
    psfkit.zernike_psf : PSFs from Zernike coefficients.

    Examples
    --------
    >>> basis = zernike_basis(range(4, 12), 64)
    >>> basis.shape
    (8, 64, 64)

    The polynomials are orthonormal for the mean over the disk (up to the
    discretisation of the disk edge):

    >>> inside = basis[0] != 0
    >>> gram = np.einsum("ixy,jxy->ij", basis, basis) / inside.sum()
    >>> bool(np.allclose(gram, np.eye(8), atol=0.05))
    True
    """
    indices = _check_indices(indices)
    size = check_int(size, "size", minimum=1, maximum=MAX_SIZE)
    if len(indices) * size * size > MAX_VALUES:
        raise ValueError(
            f"indices and size ask for {len(indices)} x {size} x {size} values, more than {MAX_VALUES}; "
            "evaluate fewer indices at a time"
        )
    return _basis(indices, size)
