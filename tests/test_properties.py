"""Property-based tests of the public API: invalid inputs and valid random ones.

Every public function (``psfkit.__all__``, :func:`psfkit.metrics.psnr`, the
blind baselines and the :mod:`psfkit.data` generators) is checked for:

- invalid arguments (NaN/inf, empty or wrongly shaped arrays, complex,
  object and string dtypes, ``None``, ragged lists, wrong option types,
  unknown option values, out-of-range numbers, strings or ints for flags):
  a ``ValueError`` or ``TypeError`` whose message names the argument, never
  another exception, and the caller's arrays untouched;
- valid random arguments: finite results of the documented shape and dtype,
  the caller's arrays untouched, and lists of numbers taken like arrays.

The learned functions (``estimate_psf``, ``deblur``, ``deconvolve`` with
``method="unrolled"``) are slow, so they get invalid inputs (rejected before
any computation) and a single valid example each. The whole module runs in
about 20 s on two (shared) cores; ``benchmarks/fuzz_api.py`` runs a larger fuzz.
"""

import signal
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import psfkit
from psfkit import metrics
from psfkit.baselines import goldstein_fattal, l0_gradient
from psfkit.data import cells, dead_leaves, filaments, points, random_specimen, sample_info, skimage_image

FAST = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VALID = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ----------------------------------------------------------------------------- helpers


@contextmanager
def fails_fast(seconds=10):
    """Turn a hang (an unbounded argument computing for minutes) into a test failure."""
    if not hasattr(signal, "SIGALRM"):  # pragma: no cover - Windows
        yield
        return

    def timeout(signum, frame):
        raise AssertionError(f"the call ran for more than {seconds} s instead of rejecting its input")

    previous = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _snapshot(values):
    """Copies of the NumPy arrays among ``values`` (to check they are not modified)."""
    return [(v, v.copy()) for v in values if isinstance(v, np.ndarray) and v.dtype != object]


def _check_untouched(snapshot):
    for original, copy in snapshot:
        np.testing.assert_array_equal(original, copy, err_msg="the caller's array was modified")


def rejects(call, name, /, *args, **kwargs):
    """``call(*args, **kwargs)`` raises ValueError/TypeError naming ``name``; arrays untouched."""
    snapshot = _snapshot([*args, *kwargs.values()])
    with fails_fast():
        with pytest.raises((ValueError, TypeError)) as info:
            call(*args, **kwargs)
    assert name in str(info.value), f"{type(info.value).__name__} does not name {name!r}: {info.value}"
    _check_untouched(snapshot)
    return info.value


def finite(array):
    return bool(np.all(np.isfinite(array)))


def expected_dtype(dtype):
    dtype = np.dtype(dtype)
    return np.dtype(np.float32) if dtype in (np.float16, np.float32) else np.dtype(np.float64)


def random_image(seed, shape, *, scale=100.0, offset=5.0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return (offset + scale * rng.random(shape)).astype(dtype)


def random_psf(seed, shape):
    rng = np.random.default_rng(seed)
    return rng.random(shape) + 0.01


# ----------------------------------------------------------------------------- invalid-value strategies


NOT_ARRAYS = [None, "image", b"raw", {"a": 1.0}, object(), 1.5 + 2j]
FLAG_VALUES = ["no", "yes", "False", "", 0, 1, 1.0, None, [True], np.array([True, False]), "True"]


def bad_arrays(valid, *, allowed_ndims, psf=False):
    """Invalid versions of the valid array ``valid`` (finite, positive)."""
    valid = np.asarray(valid, dtype=np.float64)

    def with_nonfinite(args):
        index, value = args
        out = valid.copy()
        out.flat[index % out.size] = value
        return out

    nonfinite = st.tuples(st.integers(0, 10**6), st.sampled_from([np.nan, np.inf, -np.inf])).map(with_nonfinite)
    wrong_ndim = st.sampled_from([d for d in range(0, 6) if d not in allowed_ndims]).map(
        lambda d: np.ones((3,) * d) if d else np.float64(1.0)
    )
    empty = st.sampled_from(sorted(allowed_ndims)).flatmap(
        lambda d: st.integers(0, d - 1).map(lambda axis: np.ones(tuple(0 if i == axis else 3 for i in range(d))))
    )
    ragged = st.just([[1.0, 2.0, 3.0], [1.0, 2.0]] if 2 in allowed_ndims else [[[1.0], [1.0, 2.0]]])
    options = [
        nonfinite,
        wrong_ndim,
        empty,
        ragged,
        st.sampled_from(NOT_ARRAYS),
        st.just(valid + 1j),
        st.just(valid.astype(object)),
        st.just(valid.astype(str)),
        st.just(np.full(valid.shape, np.datetime64("2024-01-01"))),
        st.just(valid.tolist()).map(lambda rows: _put_string(rows)),
    ]
    if psf:
        options += [st.just(np.zeros_like(valid)), st.just(-valid)]
    return st.one_of(options)


def _put_string(rows):
    rows = [list(r) if isinstance(r, list) else r for r in rows]
    if isinstance(rows[0], list):
        rows[0][0] = "x"
    else:
        rows[0] = "x"
    return rows


def bad_reals(*, strict=True, low=None, high=None, below=None, allow_none=False):
    """Invalid real-number options (negative or zero where not allowed, NaN, strings, ...).

    Values ``> high`` or ``>= below`` are invalid too.
    """
    values = ["1", b"1", True, False, [1.0], np.array([1.0, 2.0]), 1j, np.nan, np.inf, -np.inf]
    if not allow_none:
        values.append(None)
    options = [st.sampled_from(values)]
    floor = 0.0 if low is None else low
    if strict:
        options.append(st.floats(max_value=floor, allow_nan=False, allow_infinity=False))
    else:
        options.append(st.floats(max_value=floor, exclude_max=True, allow_nan=False, allow_infinity=False))
    if high is not None:
        options.append(st.floats(min_value=high, exclude_min=True, allow_nan=False, allow_infinity=False))
    if below is not None:
        options.append(st.floats(min_value=below, allow_nan=False, allow_infinity=False))
    return st.one_of(options)


# anything but a psfkit.Optics or None, where optics are optional
NOT_OPTIONAL_OPTICS = st.sampled_from([1.2, "widefield", {"na": 1.2}, (1.2, 0.5, 0.1), object()])


def bad_ints(minimum=None, maximum=None, *, allow_none=False):
    values = [2.5, 3.0, "3", b"3", True, False, 1j, [3], np.float64(3.0), np.nan]
    if not allow_none:
        values.append(None)
    options = [st.sampled_from(values)]
    if minimum is not None:
        options.append(st.integers(max_value=minimum - 1, min_value=minimum - 10**12))
    if maximum is not None:
        options.append(st.integers(min_value=maximum + 1, max_value=10**30))
    return st.one_of(options)


def bad_flags():
    return st.sampled_from(FLAG_VALUES)


def bad_choices(choices):
    unknown = st.text(max_size=12).filter(lambda s: s not in choices)
    first = choices[0]
    fixed = [None, 1, 1.5, True, [first], (first,), np.array([first, first]), first.encode(), first.upper() + "_"]
    return st.one_of(unknown, st.sampled_from(fixed))


def bad_rngs():
    return st.sampled_from(["seed", 1.5, -1, [1, 2], np.random.RandomState(0), True, object()])


# ----------------------------------------------------------------------------- the table of invalid calls
#
# Each entry: a function taking keyword arguments, a factory of valid keyword
# arguments (small inputs: the call with them succeeds), and for each argument
# a strategy of invalid values; the error must name the argument (or the name
# given as the third element of a tuple).

IMG = random_image(0, (16, 16))
IMG64 = random_image(1, (64, 64))
PSF = random_psf(1, (3, 3))
WEIGHTS = psfkit.grid_weights((16, 16), (2, 2))
PSFS = np.stack([random_psf(k, (3, 3)) for k in range(4)])
ESTIMATE = random_psf(2, (5, 5))
REFERENCE = random_psf(3, (5, 5))
L0_IMAGE = random_image(4, (24, 24))
GF_IMAGE = random_image(5, (32, 32))


def _pc_call(method, **kwargs):
    """Call a ProductConvolution method on a valid operator."""
    operator = psfkit.ProductConvolution(PSFS, WEIGHTS)
    return getattr(operator, method)(**kwargs)


def _from_grid(**kwargs):
    return psfkit.ProductConvolution.from_grid(**kwargs)


def _compress(rank):
    return psfkit.ProductConvolution(PSFS, WEIGHTS).compress(rank)


CASES = {
    "zernike_psf": (
        psfkit.zernike_psf,
        lambda: dict(coefficients=[0.1, -0.05], cutoff=0.2, size=9),
        {
            "coefficients": st.one_of(
                bad_arrays(np.array([0.1, 0.2]), allowed_ndims={1, 2}).filter(
                    lambda v: not (isinstance(v, np.ndarray) and v.ndim in (1, 2) and v.size == 0)
                    and not isinstance(v, dict)
                    and v is not None
                ),
                st.sampled_from(
                    [{0: 0.1}, {-3: 0.1}, {10**12: 0.1}, {232: 0.1}, {"a": 0.1}, {2.5: 0.1}, {True: 0.1},
                     {4: np.nan}, {4: "x"}, {4: None}, {4: [0.1, 0.2]}, {4: True}, {4: 1e4}, [1e300, 0.0]]
                ),
            ),
            "cutoff": st.one_of(bad_reals(high=0.5), st.just([[0.1, 0.2], [0.1]]), st.just(np.ones((2, 2)) * 0.2)),
            "size": bad_ints(1, 4097),
            "dtype": st.sampled_from([np.int32, complex, "foo", None, "U3", object, 5, bool]),
            "pupil_samples": st.one_of(bad_ints(1, 4096, allow_none=True), st.sampled_from([63, 2, 18])),
        },
    ),
    "zernike_psf indices": (
        psfkit.zernike_psf,
        lambda: dict(coefficients=[0.1, -0.05], indices=[4, 5], size=9),
        {"indices": st.sampled_from([[0, 4], [4, 4], [4, 10**12], "45", [4.5, 5], [[4], [5, 6]], [4, True],
                                     [4, 5, 6]])},
    ),
    "airy_psf": (
        psfkit.airy_psf,
        lambda: dict(cutoff=0.2, size=9),
        {"cutoff": bad_reals(high=0.5), "size": bad_ints(1, 4097),
         "dtype": st.sampled_from([np.int32, complex, "foo", None])},
    ),
    "cutoff_frequency": (
        psfkit.cutoff_frequency,
        lambda: dict(numerical_aperture=1.4, wavelength=0.52, pixel_size=0.065),
        {
            "numerical_aperture": bad_reals(),
            "wavelength": bad_reals(),
            "pixel_size": bad_reals(),
            "on_undersampling": bad_choices(("raise", "warn", "ignore")),
        },
    ),
    "zernike_basis": (
        psfkit.zernike_basis,
        lambda: dict(indices=[4, 5], size=8),
        {
            "indices": st.sampled_from([[0, 4], [4, 4], [10**12], "45", [4.5], None, [[4], [5, 6]], [True], 3.5]),
            "size": bad_ints(1, 4097),
        },
    ),
    "noll_to_nm": (psfkit.noll_to_nm, lambda: dict(j=4), {"j": bad_ints(1)}),
    "convolve": (
        psfkit.convolve,
        lambda: dict(image=IMG, psf=PSF),
        {
            "image": bad_arrays(IMG, allowed_ndims={1, 2, 3, 4, 5}).filter(
                lambda v: not (isinstance(v, np.ndarray) and v.ndim == 1 and v.size)
            ),
            "psf": st.one_of(bad_arrays(PSF, allowed_ndims={2}, psf=True), st.just(np.ones((3, 3, 3)))),
            "boundary": bad_choices(("reflect", "periodic", "constant", "zero", "valid", "full")),
        },
    ),
    "convolve larger psf": (
        psfkit.convolve,
        lambda: dict(image=IMG[:5, :5], psf=np.ones((7, 7)), boundary="constant"),
        {"boundary": st.sampled_from(["reflect", "periodic", "valid"])},
        "psf",
    ),
    "product_convolution": (
        psfkit.product_convolution,
        lambda: dict(image=IMG, psfs=PSFS, weights=WEIGHTS),
        {
            "image": bad_arrays(IMG, allowed_ndims={2}),
            "psfs": st.one_of(bad_arrays(PSFS, allowed_ndims={3}), st.just(np.zeros((4, 3, 3))),
                              st.just(np.ones((4, 17, 17))), st.just(np.ones((3, 3, 3)))),
            "weights": st.one_of(bad_arrays(WEIGHTS, allowed_ndims={3}), st.just(WEIGHTS[:3])),
            "adjoint": bad_flags(),
            "order": bad_choices(("mask-first", "mask-last")),
            "boundary": bad_choices(("reflect", "periodic", "constant", "zero", "valid")),
        },
    ),
    "ProductConvolution": (
        psfkit.ProductConvolution,
        lambda: dict(psfs=PSFS, weights=WEIGHTS),
        {
            "psfs": st.one_of(bad_arrays(PSFS, allowed_ndims={2, 3, 4}), st.just(np.zeros((4, 3, 3)))),
            "weights": bad_arrays(WEIGHTS, allowed_ndims={2, 3, 4}),
            "order": bad_choices(("mask-first", "mask-last")),
            "boundary": bad_choices(("reflect", "periodic", "constant", "zero", "valid")),
        },
    ),
    "ProductConvolution.local_psf": (
        lambda **kw: _pc_call("local_psf", **kw),
        lambda: dict(index=(3, 4)),
        {"index": st.one_of(
            st.tuples(st.integers(-100, -1), st.integers(0, 15)),
            st.tuples(st.integers(0, 15), st.integers(16, 10**6)),
            st.sampled_from([(0.5, 1), (1.0, 2), "ab", 3, (0,), (0, 0, 0), None, (True, 0), ("1", 2),
                             (np.float64(1), 2)]),
        )},
    ),
    "ProductConvolution.apply": (
        lambda **kw: _pc_call("apply", **kw),
        lambda: dict(image=IMG),
        {"image": st.one_of(bad_arrays(IMG, allowed_ndims={2}), st.just(np.ones((15, 16))))},
    ),
    "ProductConvolution.adjoint": (
        lambda **kw: _pc_call("adjoint", **kw),
        lambda: dict(data=IMG),
        {"data": st.one_of(bad_arrays(IMG, allowed_ndims={2}), st.just(np.ones((16, 17))))},
    ),
    "ProductConvolution.from_grid": (
        _from_grid,
        lambda: dict(psf_grid=PSFS.reshape(2, 2, 3, 3), shape=(16, 16)),
        {
            "psf_grid": st.one_of(bad_arrays(PSFS.reshape(2, 2, 3, 3), allowed_ndims={4}, psf=True)),
            "shape": st.sampled_from([(0, 16), (-1, 16), "ab", None, (16.5, 16), (True, 16), (), (16,), 3.5]),
            "interpolation": bad_choices(("nearest", "bilinear", "smoothstep")),
            "rank": bad_ints(1, 4, allow_none=True),
            "order": bad_choices(("mask-first", "mask-last")),
            "boundary": bad_choices(("reflect", "periodic", "constant", "zero", "valid")),
        },
    ),
    "ProductConvolution.compress": (_compress, lambda: dict(rank=2), {"rank": bad_ints(1, 4)}),
    "grid_weights": (
        psfkit.grid_weights,
        lambda: dict(shape=(8, 8), grid=(2, 2)),
        {
            "shape": st.sampled_from([(0, 8), (-1, 8), None, (8.5, 8), (True, 8), (), 2.5, ("8", 8),
                                      (10**6, 10**6)]),
            "grid": st.sampled_from([(0, 1), (9, 2), (1, 2, 3), 2.5, None, (True, 2), (-2, 2), ("2", 2)]),
            "interpolation": bad_choices(("nearest", "bilinear", "smoothstep")),
            "dtype": st.sampled_from([np.int32, complex, "foo", None, "U3", object]),
        },
    ),
    "simulate_acquisition": (
        psfkit.simulate_acquisition,
        lambda: dict(image=IMG, psf=PSF, gain=1.0, bits=8, rng=0),
        {
            "image": st.one_of(bad_arrays(IMG, allowed_ndims={2, 3}), st.just(-IMG)),
            "psf": st.one_of(bad_arrays(PSF, allowed_ndims={2}, psf=True), st.just(np.ones((17, 17))),
                             st.just(np.ones((3, 3, 3)))),
            "gain": bad_reals(allow_none=True),
            "read_noise": bad_reals(strict=False),
            "bits": st.one_of(bad_ints(1, 32, allow_none=True)),
            "salt_pepper": bad_reals(strict=False, high=1.0),
            "background": bad_reals(strict=False),
            "boundary": bad_choices(("reflect", "periodic", "valid", "constant")),
            "noise_model": bad_choices(("poisson-gaussian", "approximate")),
            "full_scale": bad_reals(allow_none=True),
            "output": bad_choices(("intensity", "counts")),
            "rng": bad_rngs(),
        },
    ),
    "simulate_acquisition counts": (
        psfkit.simulate_acquisition,
        lambda: dict(image=IMG, psf=PSF, output="counts", bits=8),
        {"bits": st.just(None)},
        "bits",
    ),
    "estimate_noise": (
        psfkit.estimate_noise,
        lambda: dict(image=random_image(2, (24, 24))),
        {
            "image": st.one_of(bad_arrays(random_image(2, (24, 24)), allowed_ndims={2}), st.just(np.ones((21, 40)))),
            "bins": bad_ints(4, 10**5),
        },
    ),
    "deconvolve": (
        psfkit.deconvolve,
        lambda: dict(image=IMG, psf=PSF, iterations=2),
        {
            "image": bad_arrays(IMG, allowed_ndims={2, 3}),
            "psf": st.one_of(
                bad_arrays(PSF, allowed_ndims={2, 4}, psf=True),
                st.sampled_from([np.ones((17, 3)), np.ones((3, 3, 3)), np.zeros((2, 2, 3, 3)),
                                 np.ones((17, 17, 3, 3))]),
            ),
            "method": bad_choices(("rl-tv", "rl", "fista", "wiener", "unrolled")),
            "iterations": bad_ints(1, allow_none=True),
            "regularization": st.one_of(
                st.sampled_from(["none", "AUTO", None, [0.1], np.nan, np.inf, -1.0, 0.25, 1.0, True, 1j]),
                st.floats(max_value=0, exclude_max=True, allow_nan=False, allow_infinity=False),
            ),
            "boundary": bad_choices(("extend", "reflect", "periodic", "zero")),
            "acceleration": st.sampled_from(["fast", 1, 0, 2.5, [True], "SHB"]),
            "background": bad_reals(strict=False),
            "prior": st.one_of(bad_choices(("tv", "wavelet")), st.just("wavelet")),
            "spacing": st.sampled_from([(1.0, 1.0, 1.0), (1.0,), (1.0, -1.0), (0.0, 1.0), (np.nan, 1.0), (np.inf, 1.0),
                                        "1,1", 1.0, (True, 1.0), (None, 1.0), ("1", 1.0), (1j, 1.0)]),
            "progress": bad_flags(),
            "callback": st.sampled_from([3, "print", [print], 1.5]),
            "dtype": st.sampled_from([np.float16, np.int32, complex, "foo", "U3", object, 5]),
            "workers": st.one_of(bad_ints(allow_none=True).filter(lambda v: v is not np.nan),
                                 st.sampled_from([0, -10**6])),
        },
    ),
    "deconvolve unrolled": (
        psfkit.deconvolve,
        lambda: dict(image=IMG, psf=PSF, method="unrolled"),
        {
            "device": st.sampled_from([5, "foo", 1.5, ["cpu"], "gpu"]),
            "iterations": st.integers(1, 10),
            "regularization": st.floats(0.001, 0.1),
            "image": st.just(np.stack([IMG, IMG])),
        },
        {"iterations": "iterations", "regularization": "regularization", "image": "image", "device": "device"},
    ),
    "estimate_psf": (
        psfkit.estimate_psf,
        lambda: dict(image=IMG64, refine=False),
        {
            "image": st.one_of(bad_arrays(IMG64, allowed_ndims={2}), st.just(np.ones((63, 128)))),
            "cutoff": bad_reals(high=1.0, allow_none=True),
            "optics": NOT_OPTIONAL_OPTICS,
            "max_amplitude": bad_reals(high=0.3, allow_none=True),
            "size": bad_ints(1, 4097, allow_none=True),
            "refine": st.sampled_from(["yes", 1, 0, "False", 1.0, [True]]),
            "device": st.sampled_from([5, "foo", 1.5, ["cpu"]]),
            "return_coefficients": bad_flags(),
        },
    ),
    "deblur": (
        psfkit.deblur,
        lambda: dict(image=IMG64, refine=False, method="rl", iterations=2, size=9),
        {
            "image": st.one_of(bad_arrays(IMG64, allowed_ndims={2}), st.just(np.ones((63, 128)))),
            "cutoff": bad_reals(high=1.0, allow_none=True),
            "optics": NOT_OPTIONAL_OPTICS,
            "max_amplitude": bad_reals(high=0.3, allow_none=True),
            "method": bad_choices(("auto", "unrolled", "rl-tv", "rl", "fista", "wiener")),
            "iterations": bad_ints(1, allow_none=True),
            "regularization": st.sampled_from(["none", None, [0.1], np.nan, -1.0, 0.5, True]),
            "size": bad_ints(1, 4097, allow_none=True),
            "refine": st.sampled_from(["yes", 1, 0, "False", 1.0]),
            "device": st.sampled_from([5, "foo", 1.5]),
            "progress": bad_flags(),
            "return_info": bad_flags(),
        },
    ),
    "psf_snr": (
        psfkit.psf_snr,
        lambda: dict(estimate=ESTIMATE, reference=REFERENCE),
        {
            "estimate": st.one_of(bad_arrays(ESTIMATE, allowed_ndims={2, 3}), st.just(np.zeros((5, 5)))),
            "reference": st.one_of(bad_arrays(REFERENCE, allowed_ndims={2, 3}), st.just(np.zeros((5, 5))),
                                   st.just(np.ones((5, 6)))),
            "align": bad_flags(),
            "max_shift": bad_ints(0),
        },
    ),
    "decorrelation_resolution": (
        psfkit.decorrelation_resolution,
        lambda: dict(image=IMG),
        {
            "image": st.one_of(bad_arrays(IMG, allowed_ndims={2, 3}), st.just(np.ones((15, 16)))),
            "pixel_size": bad_reals(allow_none=True),
            "n_radii": bad_ints(10, 1000),
            "n_highpass": bad_ints(5, 100),
            "return_info": bad_flags(),
        },
    ),
    "psnr": (
        metrics.psnr,
        lambda: dict(image=IMG, reference=IMG + 1.0),
        {
            "image": st.one_of(bad_arrays(IMG, allowed_ndims={1, 2, 3, 4, 5}).filter(
                lambda v: not (isinstance(v, np.ndarray) and v.ndim != 2 and v.size)
            ), st.just(np.ones((16, 15)))),
            "reference": st.one_of(bad_arrays(IMG, allowed_ndims={1, 2, 3, 4, 5}).filter(
                lambda v: not (isinstance(v, np.ndarray) and v.ndim != 2 and v.size)
            ), st.just(np.ones((16, 16)))),
            "data_range": bad_reals(allow_none=True),
        },
    ),
    "l0_gradient": (
        l0_gradient,
        lambda: dict(image=L0_IMAGE, psf_size=3, iterations=1),
        {
            "image": st.one_of(bad_arrays(L0_IMAGE, allowed_ndims={2}), st.just(np.ones((24, 24)))),
            "psf_size": st.one_of(bad_ints(3), st.sampled_from([4, 10, 25, 101, np.uint8(24)])),
            "lam": bad_reals(),
            "lam_ratio": bad_reals(high=1.0),
            "lam_min": bad_reals(strict=False),
            "gamma": bad_reals(),
            "iterations": bad_ints(1),
            "multiscale": bad_flags(),
            "scale": bad_reals(below=1.0),
            "kernel_threshold": bad_reals(strict=False, below=1.0),
            "remove_isolated": bad_flags(),
            "tv_lambda": bad_reals(),
            "rng": bad_rngs(),
        },
    ),
    "goldstein_fattal": (
        goldstein_fattal,
        lambda: dict(image=GF_IMAGE, psf_size=3, n_tries=2, n_outer=1, n_inner=5, patch_size=16),
        {
            "image": st.one_of(bad_arrays(GF_IMAGE, allowed_ndims={2}), st.just(np.ones((32, 32)))),
            "psf_size": st.one_of(bad_ints(3), st.sampled_from([4, 13, 101, "9", np.uint8(251)])),
            "n_tries": bad_ints(1),
            "n_outer": bad_ints(1),
            "n_inner": bad_ints(1),
            "compensation": bad_reals(strict=False),
            "median_filter": bad_flags(),
            "patch_size": st.one_of(bad_ints(1), st.sampled_from([3, 2])),
            "tv_lambda": bad_reals(),
            "rng": bad_rngs(),
        },
    ),
    "filaments": (
        filaments,
        lambda: dict(shape=(16, 16), rng=0),
        {
            "shape": st.sampled_from([(7, 16), (0, 0), -5, "64", (16.0, 16), (16, 16, 3), None, (True, 16),
                                      (10**6, 16), [[16], 16]]),
            "rng": bad_rngs(),
            "count": st.one_of(bad_ints(0, allow_none=True), st.just(10**9)),
            "width": st.sampled_from([(4, 1), 0, -1, (1, np.nan), "1", (1, 2, 3), None, (1, 1e6), (True, 2)]),
            "persistence": st.sampled_from([0, -1, (1, np.inf), "a", None, ("1", "2")]),
            "intensity": st.sampled_from([-1, (1, 0), np.nan, "1", None]),
        },
    ),
    "points": (
        points,
        lambda: dict(shape=(16, 16), rng=0),
        {
            "shape": st.sampled_from([(7, 16), -5, "64", (16.0, 16), None, (10**6, 10**6)]),
            "count": st.one_of(bad_ints(0, allow_none=True), st.just(10**9)),
            "radius": st.sampled_from([(-1, 2), (2, 1), np.inf, "2", None, (0, 1e5), (0, 1e300)]),
            "intensity": st.sampled_from([0, -1, (1, 0), np.nan, "1", None]),
            "hollow": st.sampled_from([-0.1, 1.5, np.nan, "0.5", None, True]),
            "rng": bad_rngs(),
        },
    ),
    "cells": (
        cells,
        lambda: dict(shape=(16, 16), rng=0),
        {
            "shape": st.sampled_from([(7, 16), -5, "64", None, (10**6, 10**6)]),
            "count": st.one_of(bad_ints(0, allow_none=True), st.just(10**9)),
            "radius": st.sampled_from([0, (-1, 2), (2, 1), np.inf, "2", None, (1, 1e300)]),
            "texture": st.sampled_from([-0.1, np.inf, np.nan, "0.5", None, True]),
            "rng": bad_rngs(),
        },
    ),
    "dead_leaves": (
        dead_leaves,
        lambda: dict(shape=(16, 16), rng=0),
        {
            "shape": st.sampled_from([(7, 16), -5, "64", None, (10**6, 10**6)]),
            "radius": st.sampled_from([(0, 5), (1e-3, 1e-3), (5e-324, 1), (1, 1e300), (5, 1), "2", None, np.nan]),
            "exponent": st.sampled_from([0, -1, np.inf, np.nan, "3", None, True, 1e300]),
            "rng": bad_rngs(),
        },
    ),
    "random_specimen": (
        random_specimen,
        lambda: dict(shape=(16, 16), rng=0),
        {
            "shape": st.sampled_from([(7, 16), -5, "64", None, (10**6, 10**6)]),
            "kinds": st.sampled_from([("stars",), (), [["points"]], 3, None, ("points", 5)]),
            "max_kinds": bad_ints(1),
            "background": bad_reals(strict=False, below=1.0),
            "rng": bad_rngs(),
        },
    ),
    "sample_info": (
        sample_info,
        lambda: dict(name="celegans"),
        {"name": st.one_of(st.text(max_size=10).filter(lambda s: s not in ("celegans", "cell")),
                           st.sampled_from([None, ["celegans"], 3, b"celegans"]))},
    ),
    "skimage_image": (
        skimage_image,
        lambda: dict(name="camera"),
        {"name": st.one_of(st.text(max_size=10).filter(lambda s: s not in psfkit.data.skimage_images()),
                           st.sampled_from([None, ["camera"], 3, b"camera"]))},
    ),
}

OPTICS = psfkit.Optics(na=1.2, wavelength=0.5, pixel_size=0.1, z_step=0.2)
BEAD = psfkit.microscope_psf(OPTICS, (15, 15)) * 1000 + 10
NOT_OPTICS = st.sampled_from([None, 1.2, "widefield", {"na": 1.2}, (1.2, 0.5, 0.1), object()])

CASES.update({
    "Optics": (
        psfkit.Optics,
        lambda: dict(na=1.2, wavelength=0.5, pixel_size=0.1, z_step=0.2, modality="widefield"),
        {
            "na": bad_reals(below=1.515),
            "wavelength": bad_reals(),
            "pixel_size": bad_reals(),
            "z_step": bad_reals(allow_none=True),
            "immersion_index": bad_reals(),
            "modality": bad_choices(("widefield", "confocal", "airyscan", "lightsheet")),
        },
    ),
    "microscope_psf": (
        psfkit.microscope_psf,
        lambda: dict(optics=OPTICS, shape=(5, 9, 9)),
        {
            "optics": NOT_OPTICS,
            "shape": st.sampled_from([(9,), (1, 2, 3, 4), (0, 9), (9, -1), (9.5, 9), "9x9", None, 9, (10**6, 10**6)]),
            "model": bad_choices(("scalar", "born-wolf", "vectorial")),
            "aberrations": st.sampled_from([{0: 0.1}, {10**12: 0.1}, {4: np.nan}, {4: "x"}, "defocus", [[0.1]]]),
            "depth": bad_reals(strict=False),
        },
    ),
    "fit_psf": (
        psfkit.fit_psf,
        lambda: dict(bead_stack=BEAD, optics=OPTICS, max_iterations=2),
        {
            "bead_stack": bad_arrays(BEAD, allowed_ndims={2, 3}),
            "optics": NOT_OPTICS,
            "model": bad_choices(("scalar", "born-wolf")),
            "fit_na": bad_flags(),
            "noise": bad_choices(("poisson", "gaussian")),
            "max_iterations": bad_ints(1, 10**4),
        },
    ),
})


INVALID = [
    pytest.param(case, argument, id=f"{case}-{argument}")
    for case, spec in CASES.items()
    for argument in spec[2]
]
SLOW_CASES = ("estimate_psf", "deblur", "deconvolve unrolled")


def _expected_name(case, argument):
    spec = CASES[case]
    if len(spec) > 3:
        return spec[3] if isinstance(spec[3], str) else spec[3][argument]
    return argument


@pytest.mark.parametrize("case, argument", INVALID)
@FAST
@given(data=st.data())
def test_invalid_argument_is_named(case, argument, data):
    call, valid, bad = CASES[case][:3]
    kwargs = valid()
    kwargs[argument] = data.draw(bad[argument], label=argument)
    rejects(call, _expected_name(case, argument), **kwargs)


@pytest.mark.parametrize("case", [c for c in CASES if c not in SLOW_CASES])
def test_valid_call_of_the_table_succeeds(case):
    # the table's valid arguments are valid: each invalid call differs by one argument
    call, valid = CASES[case][:2]
    kwargs = valid()
    snapshot = _snapshot(kwargs.values())
    result = call(**kwargs)
    _check_untouched(snapshot)
    for part in result if isinstance(result, tuple) else (result,):
        if isinstance(part, np.ndarray):
            assert finite(part)


# ----------------------------------------------------------------------------- regressions (bugs found)


@pytest.mark.parametrize("flag", ["no", "False", "", 0, 1, None])
def test_string_or_int_flags_are_not_taken_for_booleans(flag):
    rejects(psfkit.product_convolution, "adjoint", IMG, PSFS, WEIGHTS, adjoint=flag)
    rejects(psfkit.psf_snr, "align", ESTIMATE, REFERENCE, align=flag)
    rejects(psfkit.deconvolve, "progress", IMG, PSF, iterations=1, progress=flag)
    rejects(psfkit.estimate_psf, "return_coefficients", IMG64, refine=False, return_coefficients=flag)
    rejects(psfkit.deblur, "progress", IMG64, refine=False, method="rl", iterations=1, progress=flag)


def test_absurd_sizes_fail_at_once():
    rejects(psfkit.zernike_psf, "coefficients", {10**12: 0.1})
    rejects(psfkit.zernike_psf, "size", size=10**6)
    rejects(psfkit.zernike_psf, "pupil_samples", pupil_samples=10**6)
    rejects(psfkit.zernike_basis, "indices", [10**12], 8)
    rejects(psfkit.zernike_basis, "size", [4], 10**6)
    rejects(psfkit.airy_psf, "size", size=10**6)
    rejects(psfkit.estimate_noise, "bins", random_image(0, (32, 32)), bins=10**9)
    rejects(psfkit.estimate_psf, "size", IMG64, size=10**6)
    rejects(psfkit.grid_weights, "grid", (10**5, 10**5), 2)
    rejects(filaments, "shape", (10**6, 10**6))
    rejects(filaments, "count", (16, 16), count=10**7)
    rejects(dead_leaves, "radius", (16, 16), radius=(1e-3, 1e-3))
    rejects(points, "radius", (16, 16), radius=(0, 1e5))


def test_baselines_validate_psf_size_before_using_it():
    np.testing.assert_array_equal(
        l0_gradient(L0_IMAGE, np.uint8(5), iterations=1)[0], l0_gradient(L0_IMAGE, 5, iterations=1)[0]
    )
    rejects(goldstein_fattal, "psf_size", GF_IMAGE, "9")
    # np.uint8(251) + 10 overflows to 5: the margin must come from the validated int
    rejects(goldstein_fattal, "psf_size", random_image(0, (300, 300)), np.uint8(251))


def test_local_psf_checks_its_index():
    operator = psfkit.ProductConvolution(PSFS, WEIGHTS)
    rejects(operator.local_psf, "index", (-1, 0))
    rejects(operator.local_psf, "index", (0, 16))
    rejects(operator.local_psf, "index", (1.5, 2))
    rejects(operator.local_psf, "index", 3)
    np.testing.assert_allclose(operator.local_psf((np.int64(15), 15)).sum(), sum(
        WEIGHTS[k, 15, 15] * PSFS[k].sum() for k in range(4)
    ))


@pytest.mark.parametrize("boundary", ["reflect", "periodic", "valid"])
def test_psf_larger_than_image_is_named(boundary):
    rejects(psfkit.convolve, "psf", IMG[:5, :5], np.ones((7, 7)), boundary=boundary)
    weights = psfkit.grid_weights((5, 5), (1, 1))
    rejects(psfkit.product_convolution, "psfs", IMG[:5, :5], np.ones((1, 7, 7)), weights, boundary=boundary)


@pytest.mark.parametrize("boundary", ["extend", "reflect", "periodic", "zero"])
def test_deconvolve_rejects_psf_larger_than_image(boundary):
    rejects(psfkit.deconvolve, "psf", IMG[:5, :5], np.ones((7, 7)), boundary=boundary)


@pytest.mark.parametrize("boundary", ["constant", "zero", "full"])
def test_zero_padding_boundaries_accept_a_larger_psf(boundary):
    # documented: with zeros outside the image any PSF size is well defined
    result = psfkit.convolve(IMG[:5, :5], random_psf(0, (7, 7)), boundary=boundary)
    assert finite(result) and result.shape == ((11, 11) if boundary == "full" else (5, 5))


def test_ragged_and_zero_dimensional_arrays_are_named():
    rejects(psfkit.convolve, "image", [[1.0, 2.0], [3.0]], PSF)
    rejects(psfkit.convolve, "image", np.float64(3.0), np.float64(1.0))
    rejects(psfkit.deconvolve, "psf", IMG, [[1.0, 2.0], [3.0]])
    rejects(metrics.psnr, "image", 3.0, 2.0, data_range=1.0)


def test_psf_snr_large_max_shift_on_non_square_windows():
    a = random_psf(0, (3, 5))
    assert np.isfinite(psfkit.psf_snr(a, a, align=True, max_shift=4))
    with fails_fast():
        assert np.isfinite(psfkit.psf_snr(a, a, align=True, max_shift=10**9))


def test_huge_aberrations_are_rejected_not_nan():
    rejects(psfkit.zernike_psf, "coefficients", {4: 1e39}, dtype=np.float32)
    rejects(psfkit.zernike_psf, "coefficients", [1e300, 1e300, 1e300])


def test_cutoff_frequency_overflow_is_an_error():
    rejects(psfkit.cutoff_frequency, "pixel_size", 1e300, 1e-300, 1e300, on_undersampling="ignore")
    rejects(psfkit.cutoff_frequency, "pixel_size", 1e-200, 1e200, 1e-200)


def test_unhashable_names_and_kinds():
    rejects(sample_info, "name", ["celegans"])
    rejects(random_specimen, "kinds", (16, 16), kinds=[["points"]])
    rejects(psfkit.convolve, "boundary", IMG, PSF, boundary=np.array(["reflect", "zero"]))


# ----------------------------------------------------------------------------- valid inputs


shapes_2d = st.tuples(st.integers(8, 32), st.integers(8, 32))
float_dtypes = st.sampled_from([np.float64, np.float32, np.float16, np.int32, np.uint8])
seeds = st.integers(0, 2**31)


@pytest.mark.filterwarnings("ignore:aberrations with slopes:UserWarning")  # high orders, documented
@VALID
@given(
    coefficients=st.lists(st.floats(-0.5, 0.5), max_size=6),
    cutoff=st.floats(0.02, 0.5),
    size=st.integers(1, 24),
    single=st.booleans(),
    first=st.integers(1, 200),
)
def test_zernike_psf_valid(coefficients, cutoff, size, single, first):
    dtype = np.float32 if single else np.float64
    indices = list(range(first, first + len(coefficients)))
    arr = np.array(coefficients)
    snapshot = _snapshot([arr])
    psf = psfkit.zernike_psf(arr, cutoff=cutoff, size=size, dtype=dtype, indices=indices)
    _check_untouched(snapshot)
    assert psf.shape == (size, size) and psf.dtype == dtype
    assert finite(psf) and psf.min() >= 0 and np.isclose(psf.sum(), 1, rtol=1e-4)
    # a list and a mapping describe the same PSF
    as_list = psfkit.zernike_psf(coefficients, cutoff=cutoff, size=size, dtype=dtype, indices=indices)
    as_mapping = psfkit.zernike_psf(dict(zip(indices, coefficients)), cutoff=cutoff, size=size, dtype=dtype)
    np.testing.assert_allclose(as_list, psf, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(as_mapping, psf, rtol=1e-5, atol=1e-7)


@VALID
@given(batch=st.integers(1, 3), k=st.integers(0, 4), size=st.integers(2, 16), seed=seeds, per_psf=st.booleans())
def test_zernike_psf_batched_valid(batch, k, size, seed, per_psf):
    rng = np.random.default_rng(seed)
    coefficients = rng.uniform(-0.2, 0.2, (batch, k))
    cutoff = rng.uniform(0.05, 0.4, batch).tolist() if per_psf else 0.2
    psf = psfkit.zernike_psf(coefficients, cutoff=cutoff, size=size)
    assert psf.shape == (batch, size, size) and finite(psf)
    np.testing.assert_allclose(psf.sum(axis=(1, 2)), 1.0, rtol=1e-9)


@VALID
@given(cutoff=st.floats(1e-3, 0.5), size=st.integers(1, 40), single=st.booleans())
def test_airy_psf_valid(cutoff, size, single):
    dtype = np.float32 if single else np.float64
    psf = psfkit.airy_psf(cutoff=cutoff, size=size, dtype=dtype)
    assert psf.shape == (size, size) and psf.dtype == dtype and finite(psf)
    assert psf[size // 2, size // 2] == psf.max()


@VALID
@given(
    na=st.floats(0.01, 1.7),
    wavelength=st.floats(0.3, 1.0),
    pixel=st.floats(0.001, 0.5),
    policy=st.sampled_from(["warn", "ignore"]),
)
def test_cutoff_frequency_valid(na, wavelength, pixel, policy):
    with np.errstate(all="raise"):
        with pytest.warns(UserWarning) if na * pixel / wavelength > 0.25 and policy == "warn" else _nothing():
            fc = psfkit.cutoff_frequency(na, wavelength, pixel, on_undersampling=policy)
    assert np.isfinite(fc) and fc > 0
    assert fc == pytest.approx(na * pixel / wavelength)


@contextmanager
def _nothing():
    yield


@VALID
@given(indices=st.lists(st.integers(1, 231), min_size=1, max_size=4, unique=True), size=st.integers(1, 24))
def test_zernike_basis_valid(indices, size):
    basis = psfkit.zernike_basis(indices, size)
    assert basis.shape == (len(indices), size, size) and basis.dtype == np.float64 and finite(basis)
    np.testing.assert_array_equal(psfkit.zernike_basis(tuple(np.array(indices)), size), basis)


@settings(max_examples=50, deadline=None)
@given(j=st.integers(1, 10**12))
def test_noll_to_nm_valid(j):
    n, m = psfkit.noll_to_nm(j)
    assert n * (n + 1) // 2 < j <= (n + 1) * (n + 2) // 2
    assert abs(m) <= n and (n - abs(m)) % 2 == 0
    assert psfkit.noll_to_nm(np.int64(j) if j < 2**62 else j) == (n, m)


@VALID
@given(
    ndim=st.integers(1, 3),
    data=st.data(),
    boundary=st.sampled_from(["reflect", "periodic", "constant", "zero", "valid", "full"]),
    dtype=float_dtypes,
    seed=seeds,
)
def test_convolve_valid(ndim, data, boundary, dtype, seed):
    shape = data.draw(st.tuples(*[st.integers(4, 16)] * ndim), label="shape")
    psf_shape = data.draw(st.tuples(*[st.integers(1, 4)] * ndim), label="psf_shape")
    image = random_image(seed, shape, dtype=dtype)
    psf = random_psf(seed + 1, psf_shape)
    snapshot = _snapshot([image, psf])
    result = psfkit.convolve(image, psf, boundary=boundary)
    _check_untouched(snapshot)
    expected = {
        "valid": tuple(n - p + 1 for n, p in zip(shape, psf_shape)),
        "full": tuple(n + p - 1 for n, p in zip(shape, psf_shape)),
    }.get(boundary, shape)
    assert result.shape == expected and result.dtype == expected_dtype(dtype) and finite(result)
    np.testing.assert_allclose(psfkit.convolve(image.tolist(), psf.tolist(), boundary=boundary), result.astype(
        np.float64), rtol=1e-3 if result.dtype == np.float32 else 1e-9, atol=1e-3)


@VALID
@given(
    shape=shapes_2d,
    grid=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    psf_side=st.integers(1, 5),
    order=st.sampled_from(["mask-first", "mask-last"]),
    boundary=st.sampled_from(["reflect", "periodic", "constant", "zero", "valid"]),
    adjoint=st.booleans(),
    single=st.booleans(),
    seed=seeds,
)
def test_product_convolution_valid(shape, grid, psf_side, order, boundary, adjoint, single, seed):
    dtype = np.float32 if single else np.float64
    weights = psfkit.grid_weights(shape, grid, dtype=dtype)
    psfs = np.stack([random_psf(seed + k, (psf_side, psf_side)) for k in range(weights.shape[0])]).astype(dtype)
    operator = psfkit.ProductConvolution(psfs, weights, order=order, boundary=boundary)
    image = random_image(seed, operator.output_shape if adjoint else operator.shape, dtype=dtype)
    snapshot = _snapshot([image, psfs, weights])
    result = psfkit.product_convolution(image, psfs, weights, adjoint=adjoint, order=order, boundary=boundary)
    _check_untouched(snapshot)
    assert result.shape == (operator.shape if adjoint else operator.output_shape)
    assert result.dtype == dtype and finite(result)
    listed = psfkit.product_convolution(image.tolist(), psfs.tolist(), weights.tolist(), adjoint=adjoint,
                                        order=order, boundary=boundary)
    np.testing.assert_allclose(listed, result, rtol=1e-3 if single else 1e-9, atol=1e-2 if single else 1e-9)
    # the operator's methods agree
    method = operator.adjoint if adjoint else operator.apply
    np.testing.assert_allclose(method(image), result, rtol=1e-5, atol=1e-5)
    index = tuple(int(i) // 2 for i in operator.shape)
    local = operator.local_psf(index)
    assert local.shape == (psf_side, psf_side) and finite(local)


@VALID
@given(
    grid=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    interpolation=st.sampled_from(["nearest", "bilinear", "smoothstep"]),
    data=st.data(),
    seed=seeds,
)
def test_from_grid_and_compress_valid(grid, interpolation, data, seed):
    psf_grid = random_psf(seed, grid + (5, 5))
    rank = data.draw(st.none() | st.integers(1, grid[0] * grid[1]), label="rank")
    snapshot = _snapshot([psf_grid])
    operator = psfkit.ProductConvolution.from_grid(psf_grid, (16, 16), interpolation=interpolation, rank=rank)
    _check_untouched(snapshot)
    assert operator.n_terms == (grid[0] * grid[1] if rank is None else rank)
    result = operator(random_image(seed, (16, 16)))
    assert result.shape == (16, 16) and finite(result)


@VALID
@given(
    shape=st.tuples(st.integers(1, 20), st.integers(1, 20)),
    data=st.data(),
    interpolation=st.sampled_from(["nearest", "bilinear", "smoothstep"]),
    dtype=st.sampled_from([np.float64, np.float32, np.float16, "float32"]),
)
def test_grid_weights_valid(shape, data, interpolation, dtype):
    grid = data.draw(st.tuples(st.integers(1, shape[0]), st.integers(1, shape[1])), label="grid")
    weights = psfkit.grid_weights(list(shape), list(grid), interpolation=interpolation, dtype=dtype)
    assert weights.shape == (grid[0] * grid[1],) + shape and weights.dtype == expected_dtype(dtype)
    assert finite(weights) and weights.min() >= 0
    np.testing.assert_allclose(weights.sum(axis=0), 1.0, rtol=1e-5)


@VALID
@given(
    shape=shapes_2d,
    psf_side=st.integers(1, 7),
    gain=st.none() | st.floats(0.01, 1e3),
    read_noise=st.floats(0, 10),
    bits=st.none() | st.integers(1, 32),
    salt_pepper=st.floats(0, 1),
    background=st.floats(0, 100),
    boundary=st.sampled_from(["reflect", "periodic", "valid", "constant"]),
    noise_model=st.sampled_from(["poisson-gaussian", "approximate"]),
    counts=st.booleans(),
    dtype=float_dtypes,
    seed=seeds,
)
def test_simulate_acquisition_valid(
    shape, psf_side, gain, read_noise, bits, salt_pepper, background, boundary, noise_model, counts, dtype, seed
):
    image = random_image(seed, shape, dtype=dtype)
    psf = random_psf(seed, (psf_side, psf_side))
    snapshot = _snapshot([image, psf])
    output = "counts" if counts and bits is not None else "intensity"
    kwargs = dict(gain=gain, read_noise=read_noise, bits=bits, salt_pepper=salt_pepper, background=background,
                  boundary=boundary, noise_model=noise_model, output=output)
    result = psfkit.simulate_acquisition(image, psf, rng=seed, **kwargs)
    _check_untouched(snapshot)
    expected_shape = tuple(n - psf_side + 1 for n in shape) if boundary == "valid" else shape
    assert result.shape == expected_shape and finite(result)
    if output == "counts":
        assert result.dtype.kind == "u" and int(result.max()) <= 2**bits - 1
    else:
        assert result.dtype == expected_dtype(dtype)
    # same seed, same image; lists work like arrays
    np.testing.assert_array_equal(psfkit.simulate_acquisition(image.tolist(), psf.tolist(), rng=seed, **kwargs)
                                  .astype(np.float64), psfkit.simulate_acquisition(
                                      image.astype(np.float64), psf, rng=seed, **kwargs).astype(np.float64))


@VALID
@given(shape=st.tuples(st.integers(22, 48), st.integers(22, 48)), bins=st.integers(4, 300), seed=seeds,
       scale=st.sampled_from([1e-3, 1.0, 100.0]), dtype=float_dtypes)
def test_estimate_noise_valid(shape, bins, seed, scale, dtype):
    image = random_image(seed, shape, scale=scale * 100, offset=scale, dtype=dtype)
    snapshot = _snapshot([image])
    noise = psfkit.estimate_noise(image, bins=bins)
    _check_untouched(snapshot)
    assert np.isfinite(noise.alpha) and noise.alpha >= 0 and np.isfinite(noise.beta)
    assert psfkit.estimate_noise(image.tolist(), bins=bins) == noise


@VALID
@given(
    shape=st.tuples(st.integers(8, 24), st.integers(8, 24)),
    psf_side=st.integers(1, 7),
    method=st.sampled_from(["rl-tv", "rl", "fista", "wiener"]),
    boundary=st.sampled_from(["extend", "reflect", "periodic", "zero"]),
    acceleration=st.sampled_from([True, False, "shb", "biggs-andrews"]),
    iterations=st.integers(1, 3),
    background=st.floats(0, 3),
    dtype=float_dtypes,
    seed=seeds,
    grid=st.booleans(),
)
def test_deconvolve_valid(shape, psf_side, method, boundary, acceleration, iterations, background, dtype, seed,
                          grid):
    image = random_image(seed, shape, dtype=dtype)
    psf = random_psf(seed, (2, 2, psf_side, psf_side) if grid else (psf_side, psf_side))
    snapshot = _snapshot([image, psf])
    calls = []
    restored = psfkit.deconvolve(image, psf, method=method, boundary=boundary, acceleration=acceleration,
                                 iterations=iterations, background=background,
                                 callback=lambda i, x: calls.append(i))
    _check_untouched(snapshot)
    assert restored.shape == shape and restored.dtype == expected_dtype(dtype) and finite(restored)
    if method != "wiener":
        assert restored.min() >= 0
        assert calls == list(range(1, iterations + 1))
    listed = psfkit.deconvolve(image.tolist(), psf.tolist(), method=method, boundary=boundary,
                               acceleration=acceleration, iterations=iterations, background=background)
    reference = psfkit.deconvolve(image.astype(np.float64), psf, method=method, boundary=boundary,
                                  acceleration=acceleration, iterations=iterations, background=background)
    np.testing.assert_allclose(listed, reference, rtol=1e-9, atol=1e-9)


@VALID
@given(shape=st.tuples(st.integers(3, 8), st.integers(3, 8)), batch=st.none() | st.integers(1, 3),
       align=st.booleans(), max_shift=st.integers(0, 12), seed=seeds)
def test_psf_snr_valid(shape, batch, align, max_shift, seed):
    full = shape if batch is None else (batch,) + shape
    estimate, reference = random_psf(seed, full), random_psf(seed + 1, full)
    snapshot = _snapshot([estimate, reference])
    snr = psfkit.psf_snr(estimate, reference, align=align, max_shift=max_shift)
    _check_untouched(snapshot)
    assert np.all(np.isfinite(snr)) and np.shape(snr) == (() if batch is None else (batch,))
    np.testing.assert_allclose(psfkit.psf_snr(estimate.tolist(), reference.tolist(), align=align,
                                              max_shift=max_shift), snr)
    if align:
        assert np.all(snr >= psfkit.psf_snr(estimate, reference) - 1e-9)


@VALID
@given(shape=st.tuples(st.integers(1, 10), st.integers(1, 10)), seed=seeds, data_range=st.none() | st.floats(1e-3, 1e3))
def test_psnr_valid(shape, seed, data_range):
    image, reference = random_image(seed, shape), random_image(seed + 1, shape)
    if data_range is None and np.ptp(reference) == 0:
        data_range = 1.0
    value = metrics.psnr(image, reference, data_range=data_range)
    assert isinstance(value, float) and np.isfinite(value)
    assert metrics.psnr(image.tolist(), reference.tolist(), data_range=data_range) == value


@SLOW
@given(psf_size=st.sampled_from([3, 5]), seed=seeds, dtype=st.sampled_from([np.float64, np.float32, np.uint8]),
       multiscale=st.booleans())
def test_l0_gradient_valid(psf_size, seed, dtype, multiscale):
    image = random_image(seed, (24, 24), dtype=dtype)
    snapshot = _snapshot([image])
    psf, restored = l0_gradient(image, psf_size, iterations=1, multiscale=multiscale)
    _check_untouched(snapshot)
    assert psf.shape == (psf_size, psf_size) and restored.shape == image.shape
    assert psf.dtype == restored.dtype == expected_dtype(dtype) and finite(psf) and finite(restored)
    assert psf.min() >= 0 and np.isclose(psf.sum(), 1, rtol=1e-5)
    listed = l0_gradient(image.tolist(), psf_size, iterations=1, multiscale=multiscale)
    np.testing.assert_allclose(listed[0], psf, rtol=1e-4, atol=1e-6)


@SLOW
@given(psf_size=st.sampled_from([3, 5]), seed=seeds, dtype=st.sampled_from([np.float64, np.float32]))
def test_goldstein_fattal_valid(psf_size, seed, dtype):
    image = random_image(seed, (32, 32), dtype=dtype)
    snapshot = _snapshot([image])
    psf, restored = goldstein_fattal(image, psf_size, n_tries=2, n_outer=1, n_inner=5, patch_size=16, rng=seed)
    _check_untouched(snapshot)
    assert psf.shape == (psf_size, psf_size) and restored.shape == image.shape
    assert psf.dtype == restored.dtype == expected_dtype(dtype) and finite(psf) and finite(restored)
    assert psf.min() >= 0 and np.isclose(psf.sum(), 1, rtol=1e-5)


@VALID
@given(
    kind=st.sampled_from(["filaments", "points", "cells", "dead_leaves", "random_specimen"]),
    shape=st.tuples(st.integers(8, 32), st.integers(8, 32)),
    seed=seeds,
    as_list=st.booleans(),
)
def test_specimens_valid(kind, shape, seed, as_list):
    generator = getattr(psfkit.data, kind)
    image = generator(list(shape) if as_list else shape, rng=seed)
    assert image.shape == shape and image.dtype == np.float64 and finite(image)
    assert image.min() >= 0 and image.max() <= 1
    np.testing.assert_array_equal(generator(shape, rng=np.random.default_rng(seed)), image)


@VALID
@given(count=st.integers(0, 50), radius=st.tuples(st.floats(0.1, 20), st.floats(0.1, 20)).map(sorted),
       seed=seeds, kind=st.sampled_from(["points", "cells"]))
def test_specimen_options_valid(count, radius, seed, kind):
    image = getattr(psfkit.data, kind)((16, 16), rng=seed, count=count, radius=tuple(radius))
    assert image.shape == (16, 16) and finite(image) and image.min() >= 0 and image.max() <= 1


def test_real_samples_valid():
    image = psfkit.data.celegans()
    assert image.shape == (316, 316) and image.dtype == np.float32 and finite(image)
    image[0, 0] = -1  # a new array at every call
    assert psfkit.data.celegans()[0, 0] > 0
    names = psfkit.data.skimage_images()
    assert isinstance(names, tuple) and "camera" in names
    camera = skimage_image("camera")
    assert camera.ndim == 2 and camera.dtype == np.float64 and finite(camera)
    assert sample_info("celegans")["pixel_size"] > 0


# ----------------------------------------------------------------------------- learned functions: one valid example


def test_estimate_psf_valid_example():
    image = IMG64.copy()
    snapshot = _snapshot([image])
    psf, info = psfkit.estimate_psf(image.tolist(), refine=False, size=9, return_coefficients=np.True_)
    _check_untouched(snapshot)
    assert psf.shape == (9, 9) and psf.dtype == np.float64 and finite(psf) and psf.min() >= 0
    assert np.isclose(psf.sum(), 1) and np.all(np.isfinite(info["coefficients"]))


def test_deblur_valid_example():
    image = IMG64.astype(np.float32)
    snapshot = _snapshot([image])
    restored, psf = psfkit.deblur(image, refine=False, method="rl", iterations=2, size=9)
    _check_untouched(snapshot)
    assert restored.shape == image.shape and finite(restored) and psf.shape == (9, 9) and finite(psf)


def test_deconvolve_unrolled_valid_example():
    image = random_image(3, (24, 24), dtype=np.float32)
    snapshot = _snapshot([image, PSF])
    restored = psfkit.deconvolve(image, PSF, method="unrolled", device="cpu")
    _check_untouched(snapshot)
    assert restored.shape == image.shape and restored.dtype == np.float32 and finite(restored)


def test_every_public_name_is_in_the_table():
    # a public function added without its row here would escape the hardening checks
    covered = {spec[0] for spec in CASES.values()}
    covered |= {psfkit.ProductConvolution, psfkit.PSFFit}  # methods have rows; PSFFit is a result record
    public = [getattr(psfkit, name) for name in psfkit.__all__ if callable(getattr(psfkit, name))]
    missing = [f.__name__ for f in public if f not in covered]
    assert missing == []
