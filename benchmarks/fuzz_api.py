"""Fuzz the public API with thousands of random calls (not part of CI).

Every call draws valid arguments for one public function (random, constant,
two-level and extreme-scale images, integer and float16 dtypes, lists,
non-contiguous, read-only and big-endian arrays, tiny and large options) and
replaces 0 to 2 of them by invalid values (NaN/inf, empty, wrongly shaped,
complex, object or string arrays, None, ragged lists, wrong option types,
unknown option values, out-of-range numbers, strings or ints for flags).
The call runs in a worker process with a per-call timeout and an address
space limit, and is classified as:

- ``ok``: valid arguments, finite result, inputs untouched;
- ``rejected``: invalid arguments, ValueError/TypeError naming one of them;
- ``unnamed``: ValueError/TypeError that names none of the invalid arguments;
- ``accepted``: invalid arguments silently accepted;
- ``refused``: valid arguments refused with ValueError/TypeError (a generator
  corner or a validation too strict: read the message);
- ``crash``: another exception; ``hang``: past the timeout; ``nonfinite``:
  NaN/inf in the result; ``mutated``: an input array changed.

Usage::

    python benchmarks/fuzz_api.py --calls 4000 --timeout 20
    python benchmarks/fuzz_api.py --only deconvolve --calls 300
    python benchmarks/fuzz_api.py --replay deconvolve 1234   # one call, in this process

Each finding prints its function, seed and arguments; ``--replay`` re-runs it.
"""

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
import traceback
from collections import Counter, defaultdict

import numpy as np

# ----------------------------------------------------------------------------- value pools


def pick(r, pool, size=None, replace=True):
    """A random element of ``pool`` (any objects, unlike ``Generator.choice``), or a list of ``size``."""
    pool = list(pool)
    if size is None:
        return pool[r.integers(len(pool))]
    return [pool[i] for i in r.choice(len(pool), size, replace=replace)]


def _image(rng, shape, *, allow_negative=False, extreme=True, constant=True):
    """A valid image of ``shape`` in one of many layouts; returns (array or list, tag)."""
    kind = rng.choice(["random", "random", "random", "constant" if constant else "random", "two-level", "sparse",
                       "scaled", "int", "float16", "float32", "list", "strided", "fortran", "readonly", "bigendian",
                       "negative", "extreme"])
    base = 10 + 100 * rng.random(shape)
    tag = kind
    if kind == "constant":
        base = np.full(shape, float(rng.choice([0.0, 1.0, 7.5])))
    elif kind == "two-level":
        base = np.where(rng.random(shape) < 0.5, 1.0, 3.0)
    elif kind == "sparse":
        base = np.zeros(shape)
        base.flat[rng.integers(0, base.size, 3)] = 100.0
    elif kind == "scaled":
        base = base * float(rng.choice([1e-6, 1e-3, 1e3, 1e6]))
    elif kind == "int":
        base = (base * 10).astype(rng.choice([np.uint8, np.uint16, np.int32, np.int64]))
    elif kind == "float16":
        base = base.astype(np.float16)
    elif kind == "float32":
        base = base.astype(np.float32)
    elif kind == "list":
        return base.tolist(), tag
    elif kind == "strided":
        big = 10 + 100 * rng.random(tuple(2 * n for n in shape))
        base = big[(slice(None, None, 2),) * len(shape)]
    elif kind == "fortran":
        base = np.asfortranarray(base)
    elif kind == "readonly":
        base.flags.writeable = False
    elif kind == "bigendian":
        base = base.astype(">f8")
    elif kind == "negative":
        base = base - 60 if allow_negative else base
        tag = "negative" if allow_negative else "random"
    elif kind == "extreme":
        if extreme:
            base = base * float(rng.choice([1e-310, 1e-300, 1e300, 1e200]))
        else:
            tag = "random"
    return base, tag


def _psf(rng, shape):
    kind = rng.choice(["random", "random", "delta", "gaussian", "roundoff", "tiny", "int", "list"])
    if kind == "delta" and len(shape) <= 2:
        psf = np.zeros(shape)
        psf[tuple(n // 2 for n in shape)] = 1.0
    elif kind == "gaussian":
        grids = np.meshgrid(*[np.arange(n) - n // 2 for n in shape], indexing="ij")
        psf = np.exp(-sum(g**2 for g in grids) / (2 * rng.uniform(0.3, 3) ** 2))
    elif kind == "roundoff" and np.prod(shape) > 1:
        psf = rng.random(shape) + 0.01
        psf.flat[0] = -1e-12
    elif kind == "tiny":
        psf = rng.random(shape) * 1e-300
    elif kind == "int":
        psf = rng.integers(0, 5, shape)
        psf.flat[0] = 1
    else:
        psf = rng.random(shape) + 0.01
    return (psf.tolist() if kind == "list" else psf), kind


def _bad_array(rng, valid, *, ndims=(2,), psf=False, larger=True, empty=True):
    valid = np.asarray(valid, dtype=np.float64)
    choices = ["nan", "inf", "empty", "0d", "wrong-ndim", "complex", "object", "str", "none", "ragged", "dict",
               "string-in-list", "datetime", "bool-scalar"]
    if psf:
        choices += ["zeros", "negative"] + ["larger"] * larger
    if all(d in ndims for d in range(1, 6)):
        choices.remove("wrong-ndim")
    if not empty:
        choices.remove("empty")
    kind = rng.choice(choices)
    if kind == "nan":
        out = valid.copy()
        out.flat[rng.integers(0, out.size)] = np.nan
        return out
    if kind == "inf":
        out = valid.copy()
        out.flat[rng.integers(0, out.size)] = rng.choice([np.inf, -np.inf])
        return out
    if kind == "empty":
        d = int(rng.choice(list(ndims)))
        return np.ones(tuple(0 if i == 0 else 3 for i in range(d)))
    if kind == "0d":
        return np.float64(rng.random())
    if kind == "wrong-ndim":
        d = int(rng.choice([d for d in range(1, 6) if d not in ndims]))
        return np.ones((3,) * d)
    if kind == "complex":
        return valid + 1j
    if kind == "object":
        return valid.astype(object)
    if kind == "str":
        return pick(rng, ["image", valid.astype(str)])
    if kind == "none":
        return None
    if kind == "ragged":
        return [[1.0, 2.0, 3.0], [1.0, 2.0]]
    if kind == "dict":
        return {"a": 1}
    if kind == "string-in-list":
        rows = valid.tolist()
        if isinstance(rows[0], list):
            rows[0][0] = "x"
        else:
            rows[0] = "x"
        return rows
    if kind == "datetime":
        return np.full(valid.shape, np.datetime64("2024-01-01"))
    if kind == "bool-scalar":
        return True
    if kind == "zeros":
        return np.zeros_like(valid)
    if kind == "negative":
        return -valid - 1
    return np.ones(tuple(n + 50 for n in valid.shape))  # larger


def _bad_real(rng, *, strict=True, high=None, below=None, allow_none=False):
    pool = [None] * (not allow_none) + ["1", True, [1.0], np.array([1.0, 2.0]), 1j, np.nan, np.inf, -np.inf, -1.0]
    pool.append(-1e300)
    if strict:
        pool.append(0.0)
    if high is not None:
        pool += [high * 1.5 + 1e-3, 1e300]
    if below is not None:
        pool += [below, below * 2]
    return pool[rng.integers(len(pool))]


def _bad_int(rng, minimum=None, maximum=None, allow_none=False):
    pool = [2.5, "3", True, 1j, [3], np.float64(3.0), np.nan] + [None] * (not allow_none)
    if minimum is not None:
        pool += [minimum - 1, minimum - 10**6]
    if maximum is not None:
        pool += [maximum + 1, 10**30]
    return pool[rng.integers(len(pool))]


def _bad_flag(rng):
    pool = ["no", "yes", "False", "", 0, 1, 1.0, None, [True], np.array([True, False])]
    return pool[rng.integers(len(pool))]


def _bad_choice(rng, choices):
    pool = [None, 1, 1.5, True, [choices[0]], np.array([choices[0]] * 2), choices[0].encode(), choices[0].upper() + "x",
            "", " " + choices[0], "unknown"]
    return pool[rng.integers(len(pool))]


def _bad_rng(rng):
    pool = ["seed", 1.5, -1, [1, 2], np.random.RandomState(0), True, object()]
    return pool[rng.integers(len(pool))]


def _ndim(value):
    try:
        return max(np.ndim(value), 1)
    except ValueError:  # a ragged list
        return 2


def _shape2(rng, low=8, high=32):
    return (int(rng.integers(low, high + 1)), int(rng.integers(low, high + 1)))


# ----------------------------------------------------------------------------- specs


def _specs():
    import psfkit
    from psfkit import metrics
    from psfkit.baselines import goldstein_fattal, l0_gradient
    from psfkit.data import cells, dead_leaves, filaments, points, random_specimen, sample_info, skimage_image

    specs = {}

    def spec(name, call, valid, invalid, weight=1.0):
        specs[name] = (call, valid, invalid, weight)

    # -- optics
    def zpsf_valid(r):
        k = int(r.integers(0, 6))
        first = int(r.integers(1, 200))
        kind = pick(r, ["array", "mapping", "batch", "none"])
        kw = dict(cutoff=float(r.uniform(1e-4, 0.5)), size=int(r.integers(1, 40)),
                  dtype=pick(r, [np.float64, np.float32, np.float16, "float32"]))
        if kind == "array":
            kw["coefficients"] = r.uniform(-1, 1, k)
            kw["indices"] = list(range(first, first + k))
        elif kind == "mapping":
            kw["coefficients"] = {int(j): float(r.uniform(-1, 1)) for j in pick(r, np.arange(1, 232), k, False)}
        elif kind == "batch":
            kw["coefficients"] = r.uniform(-0.3, 0.3, (int(r.integers(1, 4)), k))
            if r.random() < 0.5:
                kw["cutoff"] = r.uniform(0.05, 0.5, kw["coefficients"].shape[0]).tolist()
        if r.random() < 0.2:
            kw["pupil_samples"] = int(2 * r.integers(10, 200))
        return kw

    spec("zernike_psf", psfkit.zernike_psf, zpsf_valid, {
        "coefficients": lambda r, kw: pick(r, [_bad_array(r, [0.1, 0.2], ndims=(1, 2), empty=False), {0: 0.1},
                                                {10**12: 0.1},
                                                {4: np.nan}, {4: "x"}, {"a": 1.0}, [1e300, 0.0], {4: 1e4}]),
        "cutoff": lambda r, kw: _bad_real(r, high=0.5),
        "size": lambda r, kw: _bad_int(r, 1, 4097),
        "indices": lambda r, kw: pick(r, [[0], [4, 4], [10**12], "45", [4.5], [True]]),
        "dtype": lambda r, kw: pick(r, [np.int32, complex, "foo", None, "U3", object]),
        "pupil_samples": lambda r, kw: pick(r, [_bad_int(r, 20, 4096, allow_none=True), 63, 18]),
    }, 1.5)
    spec("airy_psf", psfkit.airy_psf,
         lambda r: dict(cutoff=float(r.uniform(1e-6, 0.5)), size=int(r.integers(1, 64)),
                        dtype=pick(r, [np.float64, np.float32])),
         {"cutoff": lambda r, kw: _bad_real(r, high=0.5), "size": lambda r, kw: _bad_int(r, 1, 4097),
          "dtype": lambda r, kw: pick(r, [np.int32, complex, "foo", None])}, 0.5)
    spec("cutoff_frequency", psfkit.cutoff_frequency,
         lambda r: dict(numerical_aperture=float(10 ** r.uniform(-100, 100)),
                        wavelength=float(10 ** r.uniform(-100, 100)),
                        pixel_size=float(10 ** r.uniform(-100, 100)), on_undersampling=pick(r, ["ignore", "warn"])),
         {"numerical_aperture": lambda r, kw: _bad_real(r), "wavelength": lambda r, kw: _bad_real(r),
          "pixel_size": lambda r, kw: _bad_real(r),
          "on_undersampling": lambda r, kw: _bad_choice(r, ("raise", "warn", "ignore"))}, 0.5)
    spec("zernike_basis", psfkit.zernike_basis,
         lambda r: dict(indices=[int(j) for j in pick(r, np.arange(1, 232), int(r.integers(1, 5)), False)],
                        size=int(r.integers(1, 48))),
         {"indices": lambda r, kw: pick(r, [[0], [4, 4], [10**12], "45", [4.5], None, [True], 3.5]),
          "size": lambda r, kw: _bad_int(r, 1, 4097)}, 0.5)
    spec("noll_to_nm", psfkit.noll_to_nm, lambda r: dict(j=int(10 ** r.uniform(0, 30))),
         {"j": lambda r, kw: _bad_int(r, 1)}, 0.3)

    # -- forward
    def conv_valid(r):
        ndim = int(pick(r, [1, 2, 2, 2, 3]))
        shape = tuple(int(r.integers(3, 20)) for _ in range(ndim))
        boundary = pick(r, ["reflect", "periodic", "constant", "zero", "valid", "full"])
        big = boundary in ("constant", "zero", "full") and r.random() < 0.3
        psf_shape = tuple(int(r.integers(1, (n + 8) if big else n + 1)) for n in shape)
        image, tag = _image(r, shape, allow_negative=True)
        psf, _ = _psf(r, psf_shape)
        return dict(image=image, psf=psf, boundary=boundary), tag

    spec("convolve", psfkit.convolve, conv_valid, {
        "image": lambda r, kw: _bad_array(r, np.ones((8, 8)), ndims=(1, 2, 3, 4, 5)),
        "psf": lambda r, kw: _bad_array(r, np.ones((3,) * _ndim(kw["image"])), ndims=(_ndim(kw["image"]),),
                                        psf=True, larger=str(kw.get("boundary")) in ("reflect", "periodic", "valid")),
        "boundary": lambda r, kw: _bad_choice(r, ("reflect", "periodic")),
    }, 2.0)

    def pc_valid(r):
        shape = _shape2(r)
        grid = (int(r.integers(1, 4)), int(r.integers(1, 4)))
        boundary = pick(r, ["reflect", "periodic", "constant", "zero", "valid"])
        order = pick(r, ["mask-first", "mask-last"])
        side = int(r.integers(1, 8))
        weights = psfkit.grid_weights(shape, grid, interpolation=pick(r, ["nearest", "bilinear", "smoothstep"]))
        psfs = np.stack([np.asarray(_psf(r, (side, side))[0], dtype=float) for _ in range(weights.shape[0])])
        if r.random() < 0.2:  # signed eigen-PSF-like kernels are allowed
            psfs[1:] -= psfs[1:].mean()
        adjoint = bool(r.random() < 0.5)
        operator = psfkit.ProductConvolution(psfs, weights, order=order, boundary=boundary)
        image, tag = _image(r, operator.output_shape if adjoint else operator.shape, allow_negative=True)
        return dict(image=image, psfs=psfs, weights=weights, adjoint=adjoint, order=order, boundary=boundary), tag

    spec("product_convolution", psfkit.product_convolution, pc_valid, {
        "image": lambda r, kw: _bad_array(r, np.ones((8, 8))),
        "psfs": lambda r, kw: pick(r, [_bad_array(r, np.ones((1, 3, 3)), ndims=(2, 3, 4)), np.zeros((1, 3, 3))]),
        "weights": lambda r, kw: _bad_array(r, np.ones((1, 8, 8)), ndims=(2, 3, 4)),
        "adjoint": lambda r, kw: _bad_flag(r),
        "order": lambda r, kw: _bad_choice(r, ("mask-first", "mask-last")),
        "boundary": lambda r, kw: _bad_choice(r, ("reflect", "periodic")),
    }, 1.5)

    def pc_method(method, **kwargs):
        operator = psfkit.ProductConvolution(kwargs.pop("psfs"), kwargs.pop("weights"))
        return getattr(operator, method)(**kwargs)

    def local_valid(r):
        shape = _shape2(r)
        weights = psfkit.grid_weights(shape, (2, 2))
        psfs = r.random((4, 3, 3))
        index = (int(r.integers(0, shape[0])), pick(r, [int, np.int64, np.uint16])(r.integers(0, shape[1])))
        return dict(psfs=psfs, weights=weights, index=index)

    spec("ProductConvolution.local_psf", lambda **kw: pc_method("local_psf", **kw), local_valid, {
        "index": lambda r, kw: pick(r, [(-1, 0), (0, -5), (10**6, 0), (1.5, 2), "ab", 3, (0,), None, (True, 0),
                                         (0, 0, 0), ("1", 2)]),
    }, 0.5)

    def from_grid_valid(r):
        grid = (int(r.integers(1, 4)), int(r.integers(1, 4)))
        side = int(r.integers(1, 8))
        psf_grid = r.random(grid + (side, side)) + 0.01
        rank = None if r.random() < 0.5 else int(r.integers(1, grid[0] * grid[1] + 1))
        return dict(psf_grid=psf_grid, shape=_shape2(r), interpolation=pick(r, ["nearest", "bilinear", "smoothstep"]),
                    rank=rank, order=pick(r, ["mask-first", "mask-last"]),
                    boundary=pick(r, ["reflect", "periodic", "constant", "zero", "valid"]))

    spec("ProductConvolution.from_grid", lambda **kw: psfkit.ProductConvolution.from_grid(**kw)(
        np.ones(kw["shape"])), from_grid_valid, {
        "psf_grid": lambda r, kw: _bad_array(r, np.ones((2, 2, 3, 3)), ndims=(4,), psf=True),
        "shape": lambda r, kw: pick(r, [(0, 8), (-1, 8), "ab", None, (8.5, 8), (True, 8), (), 3.5]),
        "interpolation": lambda r, kw: _bad_choice(r, ("nearest", "bilinear")),
        "rank": lambda r, kw: _bad_int(r, 1, 1000, allow_none=True),
    }, 0.7)
    spec("grid_weights", psfkit.grid_weights,
         lambda r: (lambda s: dict(shape=s, grid=(int(r.integers(1, s[0] + 1)), int(r.integers(1, s[1] + 1))),
                                   interpolation=pick(r, ["nearest", "bilinear", "smoothstep"]),
                                   dtype=pick(r, [np.float64, np.float32, np.float16])))(_shape2(r, 1, 40)),
         {"shape": lambda r, kw: pick(r, [(0, 8), (-1, 8), None, (8.5, 8), (True, 8), (), (10**6, 10**6)]),
          "grid": lambda r, kw: pick(r, [(0, 1), (10**3, 2), (1, 2, 3), 2.5, None, (True, 2)]),
          "interpolation": lambda r, kw: _bad_choice(r, ("nearest", "bilinear")),
          "dtype": lambda r, kw: pick(r, [np.int32, complex, "foo", None, object])}, 0.5)

    def sim_valid(r):
        shape = _shape2(r)
        image, tag = _image(r, shape)
        side = int(r.integers(1, 8))
        psf, _ = _psf(r, (side, side))
        bits = None if r.random() < 0.4 else int(r.integers(1, 33))
        return dict(image=image, psf=psf, gain=None if r.random() < 0.3 else float(10 ** r.uniform(-3, 6)),
                    read_noise=float(pick(r, [0.0, r.uniform(0, 10)])), bits=bits,
                    salt_pepper=float(pick(r, [0.0, r.uniform(0, 1)])), background=float(pick(r, [0.0, 5.0])),
                    boundary=pick(r, ["reflect", "periodic", "valid", "constant"]),
                    noise_model=pick(r, ["poisson-gaussian", "approximate"]),
                    full_scale=None if r.random() < 0.7 else float(r.uniform(1, 1000)),
                    output="counts" if bits is not None and r.random() < 0.5 else "intensity",
                    rng=int(r.integers(0, 2**31))), tag

    spec("simulate_acquisition", psfkit.simulate_acquisition, sim_valid, {
        "image": lambda r, kw: _bad_array(r, np.ones((8, 8)), ndims=(2, 3)),
        "psf": lambda r, kw: _bad_array(r, np.ones((3, 3)), psf=True, larger=str(kw.get("boundary")) != "constant"),
        "gain": lambda r, kw: _bad_real(r, allow_none=True),
        "read_noise": lambda r, kw: _bad_real(r, strict=False),
        "bits": lambda r, kw: _bad_int(r, 1, 32, allow_none=True),
        "salt_pepper": lambda r, kw: _bad_real(r, strict=False, high=1.0),
        "background": lambda r, kw: _bad_real(r, strict=False),
        "boundary": lambda r, kw: _bad_choice(r, ("reflect", "zero")),
        "noise_model": lambda r, kw: _bad_choice(r, ("poisson-gaussian",)),
        "full_scale": lambda r, kw: _bad_real(r, allow_none=True),
        "output": lambda r, kw: _bad_choice(r, ("intensity", "counts")),
        "rng": lambda r, kw: _bad_rng(r),
    }, 1.5)
    spec("estimate_noise", psfkit.estimate_noise,
         lambda r: (lambda im: (dict(image=im[0], bins=int(r.integers(4, 10**5 + 1)) if r.random() < 0.2
                                     else int(r.integers(4, 300))), im[1]))(_image(r, _shape2(r, 22, 64))),
         {"image": lambda r, kw: pick(r, [_bad_array(r, np.ones((24, 24))), np.ones((21, 40))]),
          "bins": lambda r, kw: _bad_int(r, 4, 10**5)}, 1.0)

    # -- restoration
    def deconv_valid(r):
        ndim = int(pick(r, [2, 2, 2, 3]))
        shape = (int(r.integers(2, 5)),) * (ndim == 3) + _shape2(r, 6, 24)
        image, tag = _image(r, shape, allow_negative=True)
        side = int(r.integers(1, min(8, *shape) + 1))
        if ndim == 2 and r.random() < 0.2:
            psf = r.random((2, 2, side, side)) + 0.01
        else:
            psf, _ = _psf(r, (side,) * ndim)
        method = pick(r, ["rl-tv", "rl", "fista", "wiener"])
        kw = dict(image=image, psf=psf, method=method, iterations=int(r.integers(1, 5)),
                  boundary=pick(r, ["extend", "reflect", "periodic", "zero"]),
                  acceleration=pick(r, [True, False, "shb", "biggs-andrews"]),
                  background=float(pick(r, [0.0, r.uniform(0, 5)])),
                  dtype=pick(r, [None, np.float32, np.float64]))
        if r.random() < 0.3:
            kw["regularization"] = {"rl": 0.0, "rl-tv": float(r.uniform(0, 0.2)), "fista": float(r.uniform(0, 10)),
                                    "wiener": float(r.uniform(0, 10))}[method]
        if method == "fista" and r.random() < 0.5:
            kw["prior"] = "wavelet"
        if r.random() < 0.3:
            kw.pop("iterations")
        return kw, tag

    spec("deconvolve", psfkit.deconvolve, deconv_valid, {
        "image": lambda r, kw: _bad_array(r, np.ones((8, 8)), ndims=(2, 3)),
        "psf": lambda r, kw: _bad_array(r, np.ones((3, 3)), ndims=(2, 4), psf=True),
        "method": lambda r, kw: _bad_choice(r, ("rl-tv", "rl")),
        "iterations": lambda r, kw: _bad_int(r, 1, allow_none=True),
        "regularization": lambda r, kw: pick(r, ["none", None, [0.1], np.nan, np.inf, -1.0, True, 1j]
                                             + [0.3] * (kw.get("method") in ("rl", "rl-tv"))),
        "boundary": lambda r, kw: _bad_choice(r, ("extend", "reflect")),
        "acceleration": lambda r, kw: pick(r, ["fast", 1, 0, 2.5, [True]]),
        "background": lambda r, kw: _bad_real(r, strict=False),
        "prior": lambda r, kw: _bad_choice(r, ("tv", "wavelet")),
        "progress": lambda r, kw: _bad_flag(r),
        "callback": lambda r, kw: pick(r, [3, "print", [print]]),
        "dtype": lambda r, kw: pick(r, [np.float16, np.int32, complex, "foo", "U3", object, 5]),
        "workers": lambda r, kw: pick(r, [0, -10**6, 2.5, "2", True]),
    }, 3.0)

    # -- learned (slow): mostly invalid arguments
    image64 = 100 * random_specimen((64, 64), rng=0) + 5
    spec("deconvolve[unrolled]", psfkit.deconvolve,
         lambda r: dict(image=image64[: int(r.integers(16, 65)), : int(r.integers(16, 65))],
                        psf=_psf(r, (3, 3))[0], method="unrolled", device="cpu"),
         {"image": lambda r, kw: _bad_array(r, np.ones((16, 16)), ndims=(2, 3)),
          "psf": lambda r, kw: _bad_array(r, np.ones((3, 3)), psf=True),
          "device": lambda r, kw: pick(r, [5, "foo", 1.5, ["cpu"]]),
          "iterations": lambda r, kw: int(r.integers(1, 5)),
          "regularization": lambda r, kw: 0.1}, 0.4)
    spec("estimate_psf", psfkit.estimate_psf,
         lambda r: dict(image=image64, refine=False, size=int(r.integers(1, 40)),
                        cutoff=None if r.random() < 0.5 else float(r.uniform(0.13, 0.27)),
                        max_amplitude=None if r.random() < 0.5 else float(r.uniform(0.01, 0.3)),
                        return_coefficients=bool(r.random() < 0.5)),
         {"image": lambda r, kw: pick(r, [_bad_array(r, np.ones((64, 64))), np.ones((63, 128))]),
          "cutoff": lambda r, kw: _bad_real(r, high=0.27, allow_none=True),
          "max_amplitude": lambda r, kw: _bad_real(r, high=0.3, allow_none=True),
          "size": lambda r, kw: _bad_int(r, 1, 4097),
          "refine": lambda r, kw: pick(r, ["yes", 1, 0, "False", 1.0]),
          "device": lambda r, kw: pick(r, [5, "foo", 1.5]),
          "return_coefficients": lambda r, kw: _bad_flag(r)}, 0.6)
    spec("deblur", psfkit.deblur,
         lambda r: dict(image=image64, refine=False, method="rl", iterations=int(r.integers(1, 3)),
                        size=int(r.integers(1, 20))),
         {"image": lambda r, kw: pick(r, [_bad_array(r, np.ones((64, 64))), np.ones((63, 128))]),
          "cutoff": lambda r, kw: _bad_real(r, high=0.27, allow_none=True),
          "method": lambda r, kw: _bad_choice(r, ("auto", "rl")),
          "iterations": lambda r, kw: _bad_int(r, 1, allow_none=True),
          "regularization": lambda r, kw: pick(r, ["none", None, [0.1], np.nan, -1.0, 0.5, True]),
          "size": lambda r, kw: _bad_int(r, 1, 4097),
          "refine": lambda r, kw: pick(r, ["yes", 1, 0]),
          "device": lambda r, kw: pick(r, [5, "foo"]),
          "progress": lambda r, kw: _bad_flag(r)}, 0.6)

    # -- metrics
    def snr_valid(r):
        shape = _shape2(r, 1, 9)
        full = shape if r.random() < 0.7 else (int(r.integers(1, 4)),) + shape
        return dict(estimate=_psf(r, full)[0], reference=_psf(r, full)[0], align=bool(r.random() < 0.5),
                    max_shift=int(pick(r, [0, 1, 3, 10, 10**9])))

    spec("psf_snr", psfkit.psf_snr, snr_valid, {
        "estimate": lambda r, kw: _bad_array(r, np.ones((5, 5)), ndims=(2, 3), psf=True),
        "reference": lambda r, kw: _bad_array(r, np.ones((5, 5)), ndims=(2, 3), psf=True),
        "align": lambda r, kw: _bad_flag(r),
        "max_shift": lambda r, kw: _bad_int(r, 0),
    }, 0.8)
    spec("psnr", metrics.psnr,
         lambda r: (lambda s: dict(image=_image(r, s)[0], reference=_image(r, s, extreme=False)[0],
                                   data_range=None if r.random() < 0.5 else float(10 ** r.uniform(-300, 300))))(
             _shape2(r, 1, 16)),
         {"image": lambda r, kw: _bad_array(r, np.ones((8, 8))),
          "reference": lambda r, kw: _bad_array(r, np.ones((8, 8))),
          "data_range": lambda r, kw: _bad_real(r, allow_none=True)}, 0.6)

    # -- baselines
    spec("l0_gradient", l0_gradient,
         lambda r: (lambda im: (dict(image=im[0], psf_size=pick(r, [3, 5, np.int64(7), np.uint8(3)]),
                                     iterations=int(r.integers(1, 3)), multiscale=bool(r.random() < 0.5),
                                     scale=float(r.uniform(0.05, 0.95)), lam=float(10 ** r.uniform(-5, 0)),
                                     kernel_threshold=float(r.uniform(0, 0.99)), remove_isolated=bool(r.random() < .5),
                                     gamma=float(10 ** r.uniform(-3, 4)), tv_lambda=float(10 ** r.uniform(0, 5))),
                                im[1]))(_image(r, _shape2(r, 12, 40), constant=False)),
         {"image": lambda r, kw: _bad_array(r, np.ones((24, 24))),
          "psf_size": lambda r, kw: pick(r, [_bad_int(r, 3), 4, 101, "9"]),
          "lam": lambda r, kw: _bad_real(r), "lam_ratio": lambda r, kw: _bad_real(r, high=1.0),
          "gamma": lambda r, kw: _bad_real(r), "iterations": lambda r, kw: _bad_int(r, 1),
          "multiscale": lambda r, kw: _bad_flag(r), "scale": lambda r, kw: _bad_real(r, below=1.0),
          "kernel_threshold": lambda r, kw: _bad_real(r, strict=False, below=1.0),
          "remove_isolated": lambda r, kw: _bad_flag(r), "tv_lambda": lambda r, kw: _bad_real(r),
          "rng": lambda r, kw: _bad_rng(r)}, 1.0)
    spec("goldstein_fattal", goldstein_fattal,
         lambda r: (lambda im: (dict(image=im[0], psf_size=pick(r, [3, 5, np.int64(3)]), n_tries=int(r.integers(1, 4)),
                                     n_outer=int(r.integers(1, 3)), n_inner=int(r.integers(1, 20)),
                                     compensation=float(r.uniform(0, 4)), median_filter=bool(r.random() < 0.5),
                                     patch_size=int(r.integers(6, 40)), tv_lambda=float(10 ** r.uniform(0, 5)),
                                     rng=int(r.integers(0, 100))),
                                im[1]))(_image(r, _shape2(r, 20, 40), constant=False)),
         {"image": lambda r, kw: _bad_array(r, np.ones((32, 32))),
          "psf_size": lambda r, kw: pick(r, [_bad_int(r, 3), 4, 101, "9", np.uint8(251)]),
          "n_tries": lambda r, kw: _bad_int(r, 1), "n_inner": lambda r, kw: _bad_int(r, 1),
          "compensation": lambda r, kw: _bad_real(r, strict=False),
          "median_filter": lambda r, kw: _bad_flag(r), "patch_size": lambda r, kw: _bad_int(r, 1),
          "tv_lambda": lambda r, kw: _bad_real(r), "rng": lambda r, kw: _bad_rng(r)}, 1.0)

    # -- data
    def pair(r, low, high):
        a, b = sorted(10 ** r.uniform(np.log10(low), np.log10(high), 2))
        return (float(a), float(b)) if r.random() < 0.8 else float(a)

    spec("filaments", filaments,
         lambda r: dict(shape=_shape2(r, 8, 64), rng=int(r.integers(0, 2**31)),
                        count=None if r.random() < 0.5 else int(r.integers(0, 200)), width=pair(r, 1e-3, 100),
                        persistence=pair(r, 1e-300, 1e300), intensity=pair(r, 1e-300, 1e300)),
         {"shape": lambda r, kw: pick(r, [(7, 16), -5, "64", (16.0, 16), None, (10**6, 16)]),
          "count": lambda r, kw: pick(r, [_bad_int(r, 0, allow_none=True), 10**9]),
          "width": lambda r, kw: pick(r, [(4, 1), 0, -1, (1, np.nan), "1", None, (1, 1e6)]),
          "persistence": lambda r, kw: pick(r, [0, -1, (1, np.inf), "a", None]),
          "intensity": lambda r, kw: pick(r, [-1, (1, 0), np.nan, "1", None]),
          "rng": lambda r, kw: _bad_rng(r)}, 0.7)
    spec("points", points,
         lambda r: dict(shape=_shape2(r, 8, 64), rng=int(r.integers(0, 2**31)),
                        count=None if r.random() < 0.5 else int(r.integers(0, 300)),
                        radius=pair(r, 1e-3, 50) if r.random() < 0.9 else 0.0, intensity=pair(r, 1e-300, 1e300),
                        hollow=float(r.random())),
         {"shape": lambda r, kw: pick(r, [(7, 16), -5, None, (10**6, 10**6)]),
          "count": lambda r, kw: pick(r, [_bad_int(r, 0, allow_none=True), 10**9]),
          "radius": lambda r, kw: pick(r, [(-1, 2), (2, 1), np.inf, "2", None, (0, 1e5)]),
          "intensity": lambda r, kw: pick(r, [0, -1, (1, 0), np.nan, "1"]),
          "hollow": lambda r, kw: pick(r, [-0.1, 1.5, np.nan, "0.5", None, True]),
          "rng": lambda r, kw: _bad_rng(r)}, 0.7)
    spec("cells", cells,
         lambda r: dict(shape=_shape2(r, 8, 64), rng=int(r.integers(0, 2**31)),
                        count=None if r.random() < 0.5 else int(r.integers(0, 50)), radius=pair(r, 1e-3, 1e3),
                        texture=float(pick(r, [0.0, r.uniform(0, 1e3)]))),
         {"shape": lambda r, kw: pick(r, [(7, 16), -5, None]),
          "count": lambda r, kw: pick(r, [_bad_int(r, 0, allow_none=True), 10**9]),
          "radius": lambda r, kw: pick(r, [0, (-1, 2), (2, 1), np.inf, "2", (1, 1e300)]),
          "texture": lambda r, kw: pick(r, [-0.1, np.inf, np.nan, "0.5", None]),
          "rng": lambda r, kw: _bad_rng(r)}, 0.7)
    spec("dead_leaves", dead_leaves,
         lambda r: dict(shape=_shape2(r, 8, 64), rng=int(r.integers(0, 2**31)), radius=pair(r, 0.3, 1e4),
                        exponent=float(r.uniform(1e-3, 10))),
         {"shape": lambda r, kw: pick(r, [(7, 16), -5, None]),
          "radius": lambda r, kw: pick(r, [(0, 5), (1e-3, 1e-3), (5e-324, 1), (1, 1e300), (5, 1), "2", np.nan]),
          "exponent": lambda r, kw: pick(r, [0, -1, np.inf, np.nan, "3", None, 1e300]),
          "rng": lambda r, kw: _bad_rng(r)}, 0.7)
    kinds = ["filaments", "points", "cells", "dead_leaves"]
    spec("random_specimen", random_specimen,
         lambda r: dict(shape=_shape2(r, 8, 64), rng=int(r.integers(0, 2**31)),
                        kinds=tuple(pick(r, kinds, int(r.integers(1, 5)))), max_kinds=int(r.integers(1, 5)),
                        background=float(r.uniform(0, 0.999))),
         {"shape": lambda r, kw: pick(r, [(7, 16), -5, None]),
          "kinds": lambda r, kw: pick(r, [("stars",), (), [["points"]], 3, None, ("points", 5)]),
          "max_kinds": lambda r, kw: _bad_int(r, 1), "background": lambda r, kw: _bad_real(r, strict=False, below=1.0),
          "rng": lambda r, kw: _bad_rng(r)}, 0.7)
    spec("sample_info", sample_info, lambda r: dict(name=pick(r, ["celegans", "cell"])),
         {"name": lambda r, kw: pick(r, ["", "CELEGANS", None, ["celegans"], 3, b"cell"])}, 0.1)
    spec("skimage_image", skimage_image, lambda r: dict(name=pick(r, list(psfkit.data.skimage_images()))),
         {"name": lambda r, kw: pick(r, ["", "Camera", None, ["camera"], 3])}, 0.2)
    return specs


# ----------------------------------------------------------------------------- one call


def _describe(value):
    if isinstance(value, np.ndarray):
        flags = "" if value.flags.writeable else " read-only"
        flags += "" if value.flags.c_contiguous else " non-contiguous"
        if value.size <= 4:
            return f"array({value.tolist()!r}, dtype={value.dtype}){flags}"
        finite = value[np.isfinite(value)] if value.dtype.kind in "fc" else value
        rng = (f" range [{finite.min():.3g}, {finite.max():.3g}]" if value.dtype.kind in "biuf" and finite.size
               else "")
        return f"array(shape={value.shape}, dtype={value.dtype}{rng}){flags}"
    if isinstance(value, list) and len(repr(value)) > 60:
        return f"list(shape={np.shape(value) if _regular(value) else 'ragged'})"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _regular(value):
    try:
        np.asarray(value, dtype=float)
        return True
    except (TypeError, ValueError):
        return False


def _outputs(result):
    if isinstance(result, tuple) and not hasattr(result, "_fields"):
        return [r for r in result if isinstance(r, (np.ndarray, float, int, np.generic))]
    if hasattr(result, "_fields"):  # NoiseEstimate
        return [float(v) for v in result]
    if isinstance(result, dict):
        return [v for v in result.values() if isinstance(v, (int, float))]
    return [result]


def run_one(specs, name, seed, p_invalid=0.5):
    """Build and run one call; returns a dict describing its outcome."""
    import warnings

    call, valid, invalid, _ = specs[name]
    r = np.random.default_rng(seed)
    bad = []
    try:
        built = valid(r)
        kwargs, tag = built if isinstance(built, tuple) else (built, "")
        if r.random() < p_invalid:
            count = 1 if r.random() < 0.8 else 2
            for argument in pick(r, sorted(invalid), min(count, len(invalid)), replace=False):
                kwargs[str(argument)] = invalid[argument](r, kwargs)
                bad.append(str(argument))
    except Exception as error:  # noqa: BLE001 - a bug of this script, not of psfkit
        return dict(function=name, seed=seed, outcome="generator", detail=f"{type(error).__name__}: {error}",
                    invalid=bad, tag="")
    snapshot = [(k, v, v.copy()) for k, v in kwargs.items() if isinstance(v, np.ndarray) and v.dtype != object]
    list_snapshot = [(k, v, repr(v)) for k, v in kwargs.items() if isinstance(v, list)]
    record = dict(function=name, seed=seed, invalid=bad, tag=tag,
                  arguments={k: _describe(v) for k, v in kwargs.items()})
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with np.errstate(all="ignore"):
                result = call(**kwargs)
    except (ValueError, TypeError) as error:
        message = f"{type(error).__name__}: {error}"
        if bad:
            named = any(argument in str(error) for argument in bad)
            record["outcome"] = "rejected" if named else "unnamed"
        else:
            record["outcome"] = "refused"
        record["detail"] = message[:300]
    except Exception as error:  # noqa: BLE001 - the point is to catch everything else
        record["outcome"] = "crash"
        record["detail"] = f"{type(error).__name__}: {error}"[:300]
        record["where"] = traceback.format_exc().strip().splitlines()[-3][:200]
    else:
        values = [np.asarray(v) for v in _outputs(result)]
        numeric = [v for v in values if v.dtype.kind in "biufc"]
        if bad:
            record["outcome"] = "accepted"
            record["detail"] = f"returned {_describe(values[0]) if values else type(result).__name__}"
        elif not all(np.all(np.isfinite(v)) for v in numeric):
            record["outcome"] = "nonfinite"
            record["detail"] = "; ".join(_describe(v) for v in numeric)
        else:
            record["outcome"] = "ok"
    record["seconds"] = round(time.perf_counter() - start, 3)
    for key, original, copy in snapshot:
        if original.shape != copy.shape or not np.array_equal(original, copy, equal_nan=original.dtype.kind == "f"):
            record["outcome"], record["detail"] = "mutated", f"argument {key} was modified"
    for key, original, text in list_snapshot:
        if repr(original) != text:
            record["outcome"], record["detail"] = "mutated", f"list argument {key} was modified"
    return record


def _worker(connection, memory_bytes):
    if memory_bytes:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    specs = _specs()
    connection.send("ready")
    while True:
        job = connection.recv()
        if job is None:
            return
        connection.send(run_one(specs, *job))


class Worker:
    def __init__(self, memory_bytes):
        self.memory = memory_bytes
        self.start()

    def start(self):
        context = mp.get_context("spawn")
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_worker, args=(child, self.memory), daemon=True)
        self.process.start()
        if not self.connection.poll(300):
            raise RuntimeError("worker did not start")
        self.connection.recv()

    def run(self, name, seed, p_invalid, timeout):
        self.connection.send((name, seed, p_invalid))
        if self.connection.poll(timeout):
            try:
                return self.connection.recv()
            except EOFError:
                pass
            outcome = "crash"
            detail = f"worker died (exit code {self.process.exitcode}: killed, out of memory?)"
        else:
            outcome, detail = "hang", f"no answer in {timeout} s"
        self.process.kill()
        self.process.join()
        self.start()
        return dict(function=name, seed=seed, outcome=outcome, detail=detail, invalid=[], tag="")

    def close(self):
        try:
            self.connection.send(None)
        except (BrokenPipeError, OSError):
            pass
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()


# ----------------------------------------------------------------------------- main


BAD_OUTCOMES = ("crash", "hang", "nonfinite", "accepted", "unnamed", "mutated", "refused", "generator")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per call")
    parser.add_argument("--memory", type=float, default=4.0, help="address space limit of the worker, GiB (0: none)")
    parser.add_argument("--p-invalid", type=float, default=0.5, help="probability that a call has invalid arguments")
    parser.add_argument("--only", nargs="*", help="function names to fuzz")
    parser.add_argument("--output", help="write every finding (and the counts) to this JSON file")
    parser.add_argument("--replay", nargs=2, metavar=("FUNCTION", "SEED"), help="run one call here and print it")
    args = parser.parse_args(argv)

    if args.replay:
        record = run_one(_specs(), args.replay[0], int(args.replay[1]), args.p_invalid)
        print(json.dumps(record, indent=2, default=str))
        return 0

    names_and_weights = _weights(args.only)
    names = [n for n, _ in names_and_weights]
    weights = np.array([w for _, w in names_and_weights])
    plan = np.random.default_rng(args.seed).choice(len(names), args.calls, p=weights / weights.sum())
    worker = Worker(int(args.memory * 2**30))
    counts = defaultdict(Counter)
    findings = []
    seconds = Counter()
    start = time.perf_counter()
    try:
        for i, index in enumerate(plan):
            name = names[index]
            seed = args.seed * 10**6 + i
            record = worker.run(name, seed, args.p_invalid, args.timeout)
            counts[name][record["outcome"]] += 1
            seconds[name] += record.get("seconds", args.timeout)
            if record["outcome"] in BAD_OUTCOMES:
                findings.append(record)
                print(f"[{i}] {record['outcome']:9s} {name} seed={seed} tag={record.get('tag')} "
                      f"invalid={record.get('invalid')}\n      {record.get('detail')}\n      "
                      f"{record.get('arguments')}", flush=True)
            if (i + 1) % 250 == 0:
                print(f"... {i + 1} calls, {time.perf_counter() - start:.0f} s", flush=True)
    finally:
        worker.close()
    outcomes = ["ok", "rejected", *BAD_OUTCOMES]
    print(f"\n{args.calls} calls in {time.perf_counter() - start:.0f} s\n")
    print("| function | calls | " + " | ".join(outcomes) + " | mean s |")
    print("|---" * (len(outcomes) + 3) + "|")
    for name in names:
        total = sum(counts[name].values())
        if total:
            cells = " | ".join(str(counts[name][o]) for o in outcomes)
            print(f"| {name} | {total} | {cells} | {seconds[name] / total:.3f} |")
    totals = Counter()
    for c in counts.values():
        totals.update(c)
    print(f"| **all** | {sum(totals.values())} | " + " | ".join(str(totals[o]) for o in outcomes) + " | |")
    if args.output:
        with open(args.output, "w") as file:
            json.dump({"calls": args.calls, "seed": args.seed, "counts": {k: dict(v) for k, v in counts.items()},
                       "findings": findings}, file, indent=1, default=str)
    return 0


def _weights(only):
    """(name, relative call frequency) of the fuzzed functions, in the order of ``_specs``."""
    table = {name: spec[3] for name, spec in _specs().items()}
    if only:
        unknown = set(only) - set(table)
        if unknown:
            sys.exit(f"unknown function(s): {', '.join(sorted(unknown))}; expected some of {', '.join(table)}")
        table = {k: v for k, v in table.items() if k in only}
    return list(table.items())


if __name__ == "__main__":
    sys.exit(main())
