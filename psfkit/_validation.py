"""Input checks shared by the public functions.

Validation happens once, at the public boundary, with messages that name the
argument; inner loops trust their inputs (the SciPy habit).
"""

import math
import numbers

import numpy as np


def float_dtype(dtype):
    """Floating type used to compute on data of ``dtype`` (scikit-image's rule).

    float32 stays float32, float64 stays float64, float16 becomes float32,
    integers and booleans become float64; complex is rejected by the callers.
    """
    dtype = np.dtype(dtype)
    if dtype == np.float32 or dtype == np.float16:
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def as_float_array(array, name, *, ndim=None, min_size=1, dtype=None, nonnegative=False):
    """Return ``array`` as a finite floating array (a new array if converted).

    Parameters
    ----------
    array : array_like
        The user's data; never modified.
    name : str
        Argument name used in error messages.
    ndim : int or tuple of int, optional
        Accepted numbers of dimensions.
    min_size : int
        Smallest accepted length of every axis.
    dtype : dtype, optional
        Floating type to convert to; by default :func:`float_dtype` of the input.
    nonnegative : bool
        Reject negative values.
    """
    if isinstance(array, (str, bytes)) or array is None:
        raise TypeError(f"{name} must be an array of numbers, got {type(array).__name__}")
    try:
        array = np.asarray(array)
    except (TypeError, ValueError) as error:  # ragged nested lists, objects numpy cannot convert
        raise TypeError(f"{name} must be an array of numbers (nested lists of equal lengths), got {error}") from None
    if array.dtype == object or array.dtype.kind not in "biuf":
        if array.dtype.kind == "c":
            raise ValueError(f"{name} must be real-valued, got complex dtype {array.dtype}")
        raise TypeError(f"{name} must be a numeric array, got dtype {array.dtype}")
    if array.ndim == 0:
        raise ValueError(f"{name} must be an array with at least one axis, got a scalar")
    if ndim is not None:
        accepted = (ndim,) if isinstance(ndim, numbers.Integral) else tuple(ndim)
        if array.ndim not in accepted:
            expected = " or ".join(f"{d}-D" for d in accepted)
            raise ValueError(f"{name} must be {expected}, got shape {array.shape}")
    if array.size == 0 or min(array.shape, default=1) < min_size:
        raise ValueError(f"{name} must have at least {min_size} element(s) along every axis, got shape {array.shape}")
    target = float_dtype(array.dtype) if dtype is None else np.dtype(dtype)
    original = array
    with np.errstate(over="ignore"):
        array = array.astype(target, copy=False)
    if not np.all(np.isfinite(array)):
        if original is not array and np.all(np.isfinite(original)):
            raise ValueError(f"{name} has values beyond the range of {target} ({np.abs(original).max():g})")
        raise ValueError(f"{name} contains NaN or infinite values")
    if nonnegative and array.min() < 0:
        raise ValueError(f"{name} must be non-negative, got minimum {array.min():g}")
    return array


def as_psf(psf, name="psf", *, ndim=2, dtype=np.float64):
    """Validate a PSF and return it non-negative and normalised to sum 1.

    Negative values within floating-point round-off of zero (as left by FFT
    based PSF generators or averaging) are clipped; real negative lobes are an
    error because a PSF is an intensity.
    """
    # checked and normalised in float64, then cast: a PSF of tiny or huge values
    # (1e-300, 1e300) is fine once normalised, not in float32 before
    psf = as_float_array(psf, name, ndim=ndim, dtype=np.float64)
    peak = np.abs(psf).max()
    if psf.min() < -1e-6 * peak:
        raise ValueError(f"{name} must be non-negative, got minimum {psf.min():g} (maximum {psf.max():g})")
    psf = np.clip(psf, 0, None)
    total = psf.sum()
    if not total > 0:
        raise ValueError(f"{name} must have a positive sum, got {total:g}")
    if not np.isfinite(total):  # values near the float64 maximum: scale before summing
        psf = psf / peak
        total = psf.sum()
    return (psf / total).astype(dtype, copy=False)


def check_positive(value, name, *, strict=True, integer=False, allow_none=False):
    """Check a scalar option (``> 0`` if strict, else ``>= 0``) and return it."""
    if value is None and allow_none:
        return None
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, kind):
        expected = "an integer" if integer else "a real number"
        raise TypeError(f"{name} must be {expected}, got {value!r}")
    if not isinstance(value, numbers.Integral):  # integers are finite (np.isfinite overflows on huge ones)
        try:
            finite = math.isfinite(float(value))
        except (OverflowError, ValueError):
            finite = False
        if not finite:
            raise ValueError(f"{name} must be finite, got {value!r}")
    if (strict and value <= 0) or (not strict and value < 0):
        bound = "> 0" if strict else ">= 0"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return value


def check_choice(value, name, choices):
    """Check that ``value`` is one of ``choices`` (strings) and return it."""
    # a string test first: ``array in choices`` would compare elementwise
    if not isinstance(value, str) or value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise ValueError(f"unknown {name} {value!r}; expected one of {options}")
    return value


def check_rng(rng):
    """Normalise ``rng`` (None, seed or Generator) to a ``numpy.random.Generator``."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (bool, np.bool_)):
        raise TypeError(f"rng must be None, an int seed or a numpy.random.Generator, got {rng!r}")
    if rng is None or isinstance(rng, (numbers.Integral, np.random.SeedSequence, np.random.BitGenerator)):
        if isinstance(rng, numbers.Integral) and rng < 0:
            raise ValueError(f"rng seed must be a non-negative integer, got {rng}")
        return np.random.default_rng(rng)
    raise TypeError(f"rng must be None, an int seed or a numpy.random.Generator, got {type(rng).__name__}")


def check_bool(value, name):
    """Check a flag: a real ``bool`` (or NumPy bool), never a string or number taken for one."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {value!r}")


def check_int(value, name, *, minimum=None, maximum=None, allow_none=False):
    """Check an integer option within ``[minimum, maximum]`` and return it as ``int``.

    Upper bounds keep absurd requests (``size=10**6``) from running for
    minutes into a ``MemoryError``; they are stated in the message.
    """
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def check_float_dtype(dtype, name="dtype"):
    """Check a floating ``dtype`` argument and return it by :func:`float_dtype`'s rule.

    float16 becomes float32; integer, complex, string and other types are
    rejected rather than silently computed in float64.
    """
    try:
        converted = np.dtype(dtype)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a floating dtype (float32 or float64), got {dtype!r}") from None
    if dtype is None or converted.kind != "f":
        raise ValueError(f"{name} must be a floating dtype (float32 or float64), got {dtype!r}")
    return float_dtype(converted)


# ------------------------------------------------- exact power-of-two scaling
# Multiplying by 2**k is exact in binary floating point (barring underflow and
# overflow) and commutes with every sum, product, quotient and square root, so
# computing on x * 2**-k and returning result * 2**k gives the bits of the
# unscaled computation wherever those are representable. With k chosen to
# bring the data's peak into [0.5, 1), FFT sums and squares cannot overflow,
# subnormal data keep their precision and the absolute constants of the
# algorithms (floors, epsilons) act at a fixed level relative to the data:
# the public functions become scale-equivariant over the whole float range.


def peak_magnitude(array):
    """Largest absolute value of ``array``, as a float."""
    return max(float(np.max(array)), -float(np.min(array)))


def scale_exponent(*values):
    """``k`` with the largest ``|value|`` of the arrays or scalars in ``[2**(k - 1), 2**k)``; 0 if all are 0."""
    top = max(peak_magnitude(np.asarray(v)) for v in values)
    return int(np.frexp(top)[1]) if top > 0 else 0


def scale_back(array, k, name="image"):
    """``array * 2**k`` in place, or a ValueError naming ``name`` when that overflows the array's type."""
    if k:
        top = peak_magnitude(array)
        with np.errstate(over="ignore"):
            overflows = not np.isfinite(np.ldexp(array.dtype.type(top), k))
        if overflows:
            magnitude = math.log10(top) + k * math.log10(2)
            raise ValueError(
                f"the result for this {name} reaches about 1e{magnitude:.0f}, beyond the range of {array.dtype}; "
                f"divide {name} by a constant (the result scales with it)"
            )
        np.ldexp(array, k, out=array)
    return array
