import functools

import numpy as np
import pytest

from psfkit.forward import _fftconv

from psfkit.forward import _pc_local
from psfkit.forward.convolution import convolve
from psfkit.forward.space_varying import ProductConvolution, grid_weights, product_convolution

BOUNDARIES = ["reflect", "periodic", "constant", "zero", "valid"]
ORDERS = ["mask-first", "mask-last"]
ENGINES = ["global", "local"]


def _random_terms(k, psf_shape, image_shape, seed=0):
    rng = np.random.default_rng(seed)
    psfs = rng.random((k,) + psf_shape)
    weights = rng.random((k,) + image_shape)
    return psfs, weights


def _source_map(n, p, boundary):
    """Extended 1-D source positions and the image pixel each one copies (None: zero)."""
    before, after = p - 1 - p // 2, p // 2
    if boundary == "reflect":
        positions = np.arange(-before, n + after)
        mirrored = np.where(positions >= n, 2 * n - 1 - positions, positions)
        return positions, np.where(positions < 0, -positions - 1, mirrored)
    positions = np.arange(n)
    return positions, positions


def _direct_space_varying(image, psf_at, psf_shape, boundary):
    """Mask-first space-varying blur by a direct sum over source pixels.

    Each (extended) source pixel spreads ``image[s] * psf_at(s)`` around
    itself; ``psf_at(s)`` is the PSF of image pixel ``s``.
    """
    (n0, n1), (p0, p1) = image.shape, psf_shape
    c0, c1 = p0 // 2, p1 // 2
    offset = (p0 - 1 - c0, p1 - 1 - c1) if boundary == "valid" else (0, 0)
    out_shape = (n0 - p0 + 1, n1 - p1 + 1) if boundary == "valid" else image.shape
    out = np.zeros(out_shape)
    rows, row_src = _source_map(n0, p0, boundary)
    cols, col_src = _source_map(n1, p1, boundary)
    for r, rs in zip(rows, row_src):
        for c, cs in zip(cols, col_src):
            patch = image[rs, cs] * psf_at((rs, cs))
            tr = np.arange(r - c0, r - c0 + p0) - offset[0]
            tc = np.arange(c - c1, c - c1 + p1) - offset[1]
            if boundary == "periodic":
                np.add.at(out, np.ix_(tr % n0, tc % n1), patch)
                continue
            keep_r = (tr >= 0) & (tr < out_shape[0])
            keep_c = (tc >= 0) & (tc < out_shape[1])
            out[np.ix_(tr[keep_r], tc[keep_c])] += patch[np.ix_(keep_r, keep_c)]
    return out


def _direct_gather(image, psf_at, psf_shape, boundary):
    """Mask-last: each output pixel gathers with the PSF at its own position."""
    (p0, p1), (n0, n1) = psf_shape, image.shape
    c0, c1 = p0 // 2, p1 // 2
    mode = {"reflect": "symmetric", "periodic": "wrap"}.get(boundary, "constant")
    if boundary == "valid":
        padded, shift, out_shape = image, (p0 - 1 - c0, p1 - 1 - c1), (n0 - p0 + 1, n1 - p1 + 1)
    else:
        padded = np.pad(image, [(p0 - 1 - c0, c0), (p1 - 1 - c1, c1)], mode=mode)
        shift, out_shape = (0, 0), image.shape
    out = np.zeros(out_shape)
    for i in range(out_shape[0]):
        for j in range(out_shape[1]):
            window = padded[i : i + p0, j : j + p1]
            out[i, j] = np.sum(window[::-1, ::-1] * psf_at((i + shift[0], j + shift[1])))
    return out


# -- grid weights -------------------------------------------------------------


@pytest.mark.parametrize("interpolation", ["bilinear", "smoothstep", "nearest"])
@pytest.mark.parametrize("shape, grid", [((40, 56), (4, 4)), ((33, 20), (3, 2)), ((16, 16), (1, 3))])
def test_grid_weights_partition_of_unity(shape, grid, interpolation):
    weights = grid_weights(shape, grid, interpolation=interpolation)
    assert weights.shape == (grid[0] * grid[1],) + shape
    assert weights.min() >= 0
    np.testing.assert_allclose(weights.sum(axis=0), 1.0, rtol=0, atol=4e-16)


@pytest.mark.parametrize("interpolation", ["bilinear", "smoothstep", "nearest"])
def test_grid_weights_interpolate_at_patch_centres(interpolation):
    shape, grid = (64, 48), (4, 3)
    weights = grid_weights(shape, grid, interpolation=interpolation)
    for i in range(grid[0]):
        for j in range(grid[1]):
            centre = (int((i + 0.5) * shape[0] / grid[0]), int((j + 0.5) * shape[1] / grid[1]))
            expected = np.zeros(grid[0] * grid[1])
            expected[i * grid[1] + j] = 1.0
            np.testing.assert_array_equal(weights[(slice(None),) + centre], expected)


def test_grid_weights_extrapolate_constantly_and_reproduce_linear_fields():
    weights = grid_weights((64, 64), (4, 4))
    # Nothing changes before the first centre (row 8) or after the last (row 56).
    np.testing.assert_array_equal(weights[:, :8, :], np.broadcast_to(weights[:, 8:9, :], (16, 8, 64)))
    np.testing.assert_array_equal(weights[:, 56:, :], np.broadcast_to(weights[:, 56:57, :], (16, 8, 64)))
    # Bilinear weights are exact for a PSF parameter varying linearly between the centres.
    node_rows = np.repeat(8 + 16 * np.arange(4.0), 4)
    interpolated = np.tensordot(node_rows, weights, axes=1)
    np.testing.assert_allclose(interpolated[8:57, 20], np.arange(8.0, 57.0), atol=1e-12)


def test_grid_weights_smoothstep_is_c1():
    a = grid_weights((1, 400), (1, 4), interpolation="smoothstep")[:, 0, :]
    b = grid_weights((1, 400), (1, 4), interpolation="bilinear")[:, 0, :]
    # Slope jumps across a node: ~ 2 / step for tents, ~ 0 for smoothstep.
    jump = lambda w: np.abs(np.diff(w, 2, axis=1)).max()  # noqa: E731
    assert jump(b) > 0.015
    assert jump(a) < 0.003


def test_grid_weights_nearest_is_patch_membership():
    weights = grid_weights((12, 9), (3, 3), interpolation="nearest")
    labels = np.argmax(weights, axis=0)
    expected = (np.arange(12)[:, None] // 4) * 3 + np.arange(9)[None, :] // 3
    np.testing.assert_array_equal(labels, expected)


def test_grid_weights_nd_and_int_grid():
    weights = grid_weights((8, 10, 12), 2)
    assert weights.shape == (8, 8, 10, 12)
    np.testing.assert_allclose(weights.sum(axis=0), 1.0, atol=1e-15)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(shape=(8, 8), grid=(9, 2)), ValueError, "more nodes than pixels"),
        (dict(shape=(8, 8), grid=(2, 2, 2)), ValueError, "one entry per image axis"),
        (dict(shape=(8, 8), grid=(0, 2)), ValueError, "grid must be > 0"),
        (dict(shape=(8, -8), grid=2), ValueError, "shape must be > 0"),
        (dict(shape=(8, 8.5), grid=2), TypeError, "shape must be an integer"),
        (dict(shape=(8, 8), grid=2, interpolation="cubic"), ValueError, "unknown interpolation 'cubic'"),
    ],
)
def test_grid_weights_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        grid_weights(**kwargs)


# -- exactness ----------------------------------------------------------------


def _operator(psfs, weights, engine, **kwargs):
    op = ProductConvolution(psfs, weights, **kwargs)
    op._engine = engine
    return op


@functools.lru_cache(maxsize=None)
def _direct_case(order, boundary, psf_shape):
    """Random terms (one with partial support), an image and the direct-sum result."""
    image_shape = (28, 26)
    psfs, weights = _random_terms(3, psf_shape, image_shape, seed=1)
    weights[1, :, :10] = 0
    weights[2, 17:, :] = 0
    image = np.random.default_rng(2).random(image_shape)

    def psf_at(s):
        return np.tensordot(weights[:, s[0], s[1]], psfs, axes=1)

    direct = _direct_space_varying if order == "mask-first" else _direct_gather
    return psfs, weights, image, direct(image, psf_at, psf_shape, boundary)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("psf_shape", [(5, 5), (4, 3)])
def test_mask_first_equals_direct_sum_of_interpolated_psfs(boundary, psf_shape, engine):
    psfs, weights, image, expected = _direct_case("mask-first", boundary, psf_shape)
    result = _operator(psfs, weights, engine, boundary=boundary)(image)
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-10 * np.abs(expected).max())


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_mask_last_equals_direct_gather(boundary, engine):
    psfs, weights, image, expected = _direct_case("mask-last", boundary, (4, 5))
    result = _operator(psfs, weights, engine, order="mask-last", boundary=boundary)(image)
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-10 * np.abs(expected).max())


def test_from_grid_full_rank_equals_direct_interpolated_blur():
    rng = np.random.default_rng(5)
    grid = rng.random((2, 2, 5, 5))
    grid /= grid.sum(axis=(2, 3), keepdims=True)
    image = rng.random((32, 32))
    weights = grid_weights((32, 32), (2, 2))
    flat = grid.reshape(4, 5, 5)

    def psf_at(s):
        return np.tensordot(weights[:, s[0], s[1]], flat, axes=1)

    for rank in (None, 4):
        op = ProductConvolution.from_grid(grid, (32, 32), rank=rank, boundary="reflect")
        expected = _direct_space_varying(image, psf_at, (5, 5), "reflect")
        np.testing.assert_allclose(op(image), expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("psf_shape", [(5, 5), (4, 7)])
def test_adjoint(boundary, order, psf_shape, engine):
    psfs = np.random.default_rng(6).random((4,) + psf_shape)
    weights = grid_weights((24, 19), (2, 2))  # compact supports: local pieces wrap and overlap the borders
    op = _operator(psfs - 0.3, weights, engine, order=order, boundary=boundary)
    rng = np.random.default_rng(7)
    x = rng.standard_normal(op.shape)
    y = rng.standard_normal(op.output_shape)
    lhs, rhs = np.vdot(op.apply(x), y), np.vdot(x, op.adjoint(y))
    assert abs(lhs - rhs) <= 1e-10 * abs(lhs)
    np.testing.assert_allclose(
        product_convolution(y, psfs - 0.3, weights, adjoint=True, order=order, boundary=boundary), op.adjoint(y)
    )


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("boundary", ["reflect", "periodic", "valid"])
def test_adjoint_3d(boundary, engine):
    psfs = np.random.default_rng(8).random((8, 3, 4, 3))
    weights = grid_weights((7, 9, 8), 2)
    for order in ORDERS:
        op = _operator(psfs, weights, engine, order=order, boundary=boundary)
        rng = np.random.default_rng(9)
        x, y = rng.standard_normal(op.shape), rng.standard_normal(op.output_shape)
        assert np.isclose(np.vdot(op(x), y), np.vdot(x, op.adjoint(y)), rtol=1e-10, atol=0)


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("order", ORDERS)
def test_constant_psf_reduces_to_convolve(boundary, order):
    psf = np.random.default_rng(10).random((5, 4))
    psf /= psf.sum()
    weights = grid_weights((21, 26), (2, 3), interpolation="smoothstep")
    image = np.random.default_rng(11).random((21, 26))
    result = product_convolution(image, np.repeat(psf[None], 6, axis=0), weights, order=order, boundary=boundary)
    np.testing.assert_allclose(result, convolve(image, psf, boundary=boundary), atol=1e-13)


def test_orders_differ_near_psf_changes():
    sharp = np.zeros((5, 5))
    sharp[2, 2] = 1
    wide = np.full((5, 5), 1 / 25)
    weights = np.zeros((2, 16, 16))
    weights[0, :, :8] = 1
    weights[1, :, 8:] = 1
    image = np.random.default_rng(12).random((16, 16))
    first = product_convolution(image, np.stack([sharp, wide]), weights, boundary="periodic")
    last = product_convolution(image, np.stack([sharp, wide]), weights, order="mask-last", boundary="periodic")
    away = np.r_[4:6, 12:14]
    np.testing.assert_allclose(first[:, away], last[:, away], atol=1e-13)
    assert np.abs(first - last)[:, 6:10].max() > 0.01
    # Only mask first conserves flux for an arbitrary image.
    assert np.isclose(first.sum(), image.sum(), rtol=1e-13)
    assert not np.isclose(last.sum(), image.sum(), rtol=1e-6)


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("order", ORDERS)
def test_local_and_global_evaluations_agree(boundary, order):
    rng = np.random.default_rng(20)
    psfs = rng.random((12, 6, 5))
    weights = grid_weights((30, 41), (3, 4), interpolation="smoothstep")
    ops = [_operator(psfs, weights, engine, order=order, boundary=boundary) for engine in ENGINES]
    x, y = rng.random(ops[0].shape), rng.random(ops[0].output_shape)
    np.testing.assert_allclose(ops[0](x), ops[1](x), atol=1e-13)
    np.testing.assert_allclose(ops[0].adjoint(y), ops[1].adjoint(y), atol=1e-13)
    np.testing.assert_allclose(ops[1](x.astype(np.float32)), ops[0](x), atol=1e-5)


def test_cost_model_picks_local_for_grids_and_global_for_eigen_psfs():
    grid = np.random.default_rng(21).random((4, 4, 9, 9))
    op = ProductConvolution.from_grid(grid, (128, 128))
    assert isinstance(op._terms(np.dtype(np.float64)), _pc_local.LocalTerms)
    compressed = op.compress(4)
    assert isinstance(compressed._terms(np.dtype(np.float64)), tuple)


# -- grid constructor, eigen-PSFs, flux -----------------------------------------


def _gaussian_grid(grid=(4, 4), size=9, seed=13):
    """Anisotropic Gaussians whose widths and orientation change over the grid."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: size, : size] - size // 2
    psfs = np.empty(grid + (size, size))
    for i in range(grid[0]):
        for j in range(grid[1]):
            sy, sx = 0.8 + 0.5 * i + 0.1 * rng.random(), 0.8 + 0.4 * j
            shift = 0.3 * (i - j)
            psfs[i, j] = np.exp(-((yy - shift) ** 2) / (2 * sy**2) - xx**2 / (2 * sx**2))
    return psfs / psfs.sum(axis=(2, 3), keepdims=True)


@pytest.mark.parametrize("rank", [None, 16])
@pytest.mark.parametrize("interpolation", ["bilinear", "smoothstep", "nearest"])
def test_dirac_comb_reproduces_grid_psfs(rank, interpolation):
    grid = _gaussian_grid()
    op = ProductConvolution.from_grid(grid, (64, 64), rank=rank, interpolation=interpolation, boundary="periodic")
    comb = np.zeros((64, 64))
    comb[8::16, 8::16] = 1.0
    response = op(comb)
    for i in range(4):
        for j in range(4):
            cy, cx = 8 + 16 * i, 8 + 16 * j
            np.testing.assert_allclose(response[cy - 4 : cy + 5, cx - 4 : cx + 5], grid[i, j], atol=1e-13)
            np.testing.assert_allclose(op.local_psf((cy, cx)), grid[i, j], atol=1e-13)


def test_dirac_comb_rectangular_grid_orientation():
    # Distinct PSFs on a 2 x 3 grid catch transposed reshapes.
    grid = _gaussian_grid(grid=(2, 3), size=7)
    op = ProductConvolution.from_grid(grid, (40, 60), rank=6, boundary="constant")
    comb = np.zeros((40, 60))
    comb[10::20, 10::20] = 1.0
    response = op(comb)
    for i in range(2):
        for j in range(3):
            cy, cx = 10 + 20 * i, 10 + 20 * j
            np.testing.assert_allclose(response[cy - 3 : cy + 4, cx - 3 : cx + 4], grid[i, j], atol=1e-13)


@pytest.mark.parametrize("rank", [None, 1, 3, 6, 16])
def test_flux_is_conserved_exactly_at_every_rank(rank):
    op = ProductConvolution.from_grid(_gaussian_grid(), (48, 40), rank=rank, boundary="periodic")
    flux_map = np.tensordot(op.psfs.sum(axis=(1, 2)), op.weights, axes=1)
    np.testing.assert_allclose(flux_map, 1.0, rtol=0, atol=1e-13)
    image = np.random.default_rng(14).random((48, 40)) * 1000
    assert np.isclose(op(image).sum(), image.sum(), rtol=1e-13, atol=0)


def test_compression_error_decreases_with_rank_and_vanishes_at_full_rank():
    grid = _gaussian_grid()
    image = np.random.default_rng(15).random((48, 48))
    exact = ProductConvolution.from_grid(grid, (48, 48))(image)
    errors = [
        np.linalg.norm(ProductConvolution.from_grid(grid, (48, 48), rank=r)(image) - exact) / np.linalg.norm(exact)
        for r in (1, 2, 4, 8, 16)
    ]
    assert all(a >= b for a, b in zip(errors, errors[1:]))
    assert errors[0] > 1e-3
    assert errors[-1] < 1e-13


def test_eigen_psfs_are_orthonormal_zero_sum():
    op = ProductConvolution.from_grid(_gaussian_grid(), (32, 32), rank=5)
    flat = op.psfs.reshape(5, -1)
    np.testing.assert_allclose(flat[0].sum(), 1.0, rtol=1e-14)
    np.testing.assert_allclose(flat[1:].sum(axis=1), 0.0, atol=1e-15)
    np.testing.assert_allclose(flat[1:] @ flat[1:].T, np.eye(4), atol=1e-12)
    np.testing.assert_allclose(op.weights[0], 1.0, atol=1e-15)


# -- dtypes, memory, input handling -----------------------------------------------


def test_float32_stays_float32():
    op = ProductConvolution.from_grid(_gaussian_grid(), (48, 48))
    x = np.random.default_rng(16).random((48, 48))
    single = op(x.astype(np.float32))
    assert single.dtype == np.float32
    assert op.adjoint(x.astype(np.float32)).dtype == np.float32
    assert op(np.ones((48, 48), np.uint16)).dtype == np.float64
    np.testing.assert_allclose(single, op(x), atol=1e-6)


def test_chunked_terms_match_single_batch(monkeypatch):
    psfs, weights = _random_terms(5, (5, 5), (20, 20), seed=17)
    x = np.random.default_rng(18).random((20, 20))
    expected = {order: _operator(psfs, weights, "global", order=order) for order in ORDERS}
    expected = {order: (op(x), op.adjoint(x)) for order, op in expected.items()}
    monkeypatch.setattr(_fftconv, "CHUNK_BYTES", 1)
    for order in ORDERS:
        op = _operator(psfs, weights, "global", order=order)
        assert len(_fftconv.chunks(op.n_terms, op._geom, 8)) == 5
        np.testing.assert_allclose(op(x), expected[order][0], atol=1e-13)
        np.testing.assert_allclose(op.adjoint(x), expected[order][1], atol=1e-13)


def test_inputs_copied_and_attributes_read_only():
    psfs, weights = _random_terms(2, (3, 3), (8, 8))
    psfs_copy = psfs.copy()
    op = ProductConvolution(psfs, weights)
    psfs[0] = 0
    np.testing.assert_array_equal(op.psfs, psfs_copy)
    with pytest.raises(ValueError):
        op.weights[0, 0, 0] = 1
    image = np.random.default_rng(19).random((8, 8))
    image_copy = image.copy()
    op(image)
    op.adjoint(image)
    np.testing.assert_array_equal(image, image_copy)
    assert op.shape == (8, 8) and op.output_shape == (8, 8) and op.n_terms == 2
    assert "n_terms=2" in repr(op)


@pytest.mark.parametrize(
    "psfs, weights, kwargs, match",
    [
        (np.ones((2, 3, 3)), np.ones((3, 8, 8)), {}, "same number of terms K"),
        (np.ones((2, 3, 3)), np.ones((2, 8)), {}, "weights must have shape"),
        (np.ones((3, 3)), np.ones((2, 8, 8)), {}, "weights must have shape"),
        (np.ones((2, 3, 3, 3, 3)), np.ones((2, 3, 3, 3, 3)), {}, "psfs must be 2-D or 3-D or 4-D"),
        (np.ones((2, 9, 3)), np.ones((2, 8, 8)), {}, "psfs of shape .* is larger than the image"),
        (np.ones((2, 9, 3)), np.ones((2, 8, 8)), dict(boundary="valid"), "larger than the image"),
        (np.full((2, 3, 3), np.nan), np.ones((2, 8, 8)), {}, "psfs contains NaN"),
        (np.ones((2, 3, 3)), np.full((2, 8, 8), np.inf), {}, "weights contains NaN or infinite"),
        (np.ones((2, 3, 3)), np.ones((2, 8, 8)), dict(boundary="mirror"), "unknown boundary"),
        (np.ones((2, 3, 3)), np.ones((2, 8, 8)), dict(order="first"), "unknown order"),
    ],
)
def test_bad_operator_input(psfs, weights, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ProductConvolution(psfs, weights, **kwargs)


def test_bad_image_input():
    op = ProductConvolution(np.ones((2, 3, 3)), np.ones((2, 8, 8)), boundary="valid")
    with pytest.raises(ValueError, match=r"image must have shape \(8, 8\)"):
        op(np.ones((6, 6)))
    with pytest.raises(ValueError, match=r"data must have shape \(6, 6\)"):
        op.adjoint(np.ones((8, 8)))
    with pytest.raises(ValueError, match="image contains NaN"):
        op(np.full((8, 8), np.nan))
    with pytest.raises(ValueError, match="image must be real-valued"):
        product_convolution(np.ones((8, 8)) * 1j, np.ones((2, 3, 3)), np.ones((2, 8, 8)))
    with pytest.raises(ValueError, match="index must have 2 entries"):
        op.local_psf((1,))


@pytest.mark.parametrize(
    "grid, kwargs, error, match",
    [
        (np.ones((2, 2, 3)), {}, ValueError, "psf_grid must have shape"),
        (-np.ones((2, 2, 3, 3)), {}, ValueError, "psf_grid must be non-negative"),
        (np.zeros((2, 2, 3, 3)), {}, ValueError, "positive sum"),
        (np.ones((2, 2, 3, 3)), dict(rank=5), ValueError, "rank must be between 1 and"),
        (np.ones((2, 2, 3, 3)), dict(rank=0), ValueError, "rank must be between 1 and"),
        (np.ones((2, 2, 3, 3)), dict(rank=2.0), TypeError, "rank must be an integer"),
        (np.ones((2, 2, 3, 3)), dict(interpolation="cubic"), ValueError, "unknown interpolation"),
    ],
)
def test_bad_grid_input(grid, kwargs, error, match):
    with pytest.raises(error, match=match):
        ProductConvolution.from_grid(grid, (16, 16), **kwargs)
