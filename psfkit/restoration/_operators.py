r"""Blur operators on the solve grid of the deconvolution solvers (private).

Every operator here is a *circular* product convolution on a grid of shape
``grid_shape``,

.. math::

    A x = \sum_{k=1}^{K} h_k \circledast (w_k \odot x) \quad\text{("mask-first")}
    \qquad\text{or}\qquad
    A x = \sum_{k=1}^{K} w_k \odot (h_k \circledast x) \quad\text{("mask-last")},

with a single PSF being the case ``K = 1, w_1 = 1``. The boundary models of
:func:`psfkit.deconvolve` (field extension, reflection, zero, periodic) are
built on top of it by choosing the grid, where the data sit in it and where the
unknown lives (:class:`Problem`); the operator itself never needs to know.

Speed matters more than anything here: transfer functions are computed once,
with the FFT normalisation folded in, the transforms are real FFTs with
pre-planned pyFFTW objects writing into caller-owned aligned buffers, and the
complex products are fused numba loops. A space-varying operator whose weights
have compact support (the bilinear weights of a PSF grid) is applied window by
window, each term on the smallest FFT grid holding its support plus the PSF,
instead of ``K + 1`` transforms of the whole grid.

Methods called ``forward``/``adjoint`` write into an ``out`` array supplied by
the caller; input arrays are never modified.
"""

import itertools
import math

import numba
import numpy as np

from psfkit import _fft
from psfkit._fft import fast_shape

try:  # optional fast backend, as in psfkit._fft
    import pyfftw
except ImportError:  # pragma: no cover - exercised only without pyfftw
    pyfftw = None

# Transforms smaller than this run on one thread: thread start-up (and, on a
# busy machine, contention) costs more than it saves (as in psfkit._fft).
_THREADED_SIZE = 1 << 18
# FFTW_MEASURE times candidate algorithms and keeps the fastest, which depends
# on the machine's load: results then differed between processes by ~1e-10 of
# the peak (RL-TV amplifies round-off). FFTW_ESTIMATE picks the algorithm from
# the problem alone, so results are bit-reproducible (unless the process loads
# FFTW wisdom, which FFTW then uses). Cost on a 512 x 512 RL-TV (546² grid,
# one thread): first call about as fast (no measuring), later calls ~5-10 %
# slower.
_PLANNER = "FFTW_ESTIMATE"


def fft_shape(shape):
    """Smallest shape >= ``shape`` with FFT-friendly axis lengths for the backend in use.

    FFTW is fast on lengths with factors 2, 3, 5, 7, 11 and 13; pocketfft's
    real transforms prefer 2, 3 and 5 (:func:`psfkit._fft.fast_shape`).
    """
    if pyfftw is not None:
        return tuple(int(pyfftw.next_fast_len(int(n))) for n in shape)
    return fast_shape(shape)


def _smooth3(n):
    """Smallest 2**a * 3**b >= n."""
    best = 1 << max(int(n - 1).bit_length(), 0)
    power3 = 1
    while power3 < best:
        candidate = power3 << max(int(-(-n // power3) - 1).bit_length(), 0)
        best = min(best, candidate)
        power3 *= 3
    return best


def window_shape(shape):
    """FFT shape of the product-convolution windows: a 2**a 3**b length if at most 7 % larger.

    Such lengths run FFTW's fastest codelets; on the window sizes of a PSF
    grid (a few hundred pixels) they beat the nearest 7-, 11- or 13-smooth
    length by about 20 % (measured on 543: 576 = 2**6 3**2 against 546).
    """
    fallback = fft_shape(shape)
    return tuple(m if (m := _smooth3(n)) <= 1.07 * n else f for n, f in zip(shape, fallback))


def threads(workers):
    """FFT threads for a ``workers`` value (None: all CPUs; negative values count back from them, -1: all)."""
    if workers is None:
        return _fft._WORKERS
    workers = int(workers)
    return workers if workers > 0 else max(1, _fft._WORKERS + 1 + workers)


def empty(shape, dtype):
    """Uninitialised array aligned for SIMD FFTs (plain ``np.empty`` without pyFFTW)."""
    if pyfftw is not None:
        return pyfftw.empty_aligned(tuple(shape), dtype=dtype)
    return np.empty(tuple(shape), dtype=dtype)


def zeros(shape, dtype):
    array = empty(shape, dtype)
    array.fill(0)
    return array


def complex_dtype(dtype):
    return np.dtype(np.complex64) if np.dtype(dtype) == np.float32 else np.dtype(np.complex128)


def spectrum_shape(shape):
    shape = tuple(shape)
    return shape[:-1] + (shape[-1] // 2 + 1,)


def odd_psf(psf, lead=0):
    """Pad even axes of a PSF with one trailing zero so every axis is odd.

    The centre index ``n // 2`` is unchanged (``2m`` and ``2m + 1`` both have
    centre ``m``), and an odd kernel has the same reach ``(n - 1) / 2`` on both
    sides, so convolution and correlation share one window geometry.
    """
    pads = [(0, 0)] * lead + [(0, 1 - n % 2) for n in psf.shape[lead:]]
    if any(after for _, after in pads):
        psf = np.pad(psf, pads)
    return psf


class RealFFT:
    """Planned real FFT and inverse of one shape; the inverse is unnormalised."""

    def __init__(self, shape, dtype, workers=None):
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)
        self.cdtype = complex_dtype(dtype)
        self.spectrum_shape = spectrum_shape(self.shape)
        self.size = math.prod(self.shape)
        self.axes = tuple(range(len(self.shape)))
        self.threads = threads(workers) if self.size >= _THREADED_SIZE else 1
        self._real = None
        if pyfftw is not None:
            # planning arrays: the plans let go of them at their first call (update_arrays), so a solver whose
            # inputs conform never holds a scratch buffer (one grid-sized array less)
            real = empty(self.shape, self.dtype)
            spectrum = empty(self.spectrum_shape, self.cdtype)
            real.fill(0)
            kwargs = dict(threads=self.threads)
            self._forward = pyfftw.FFTW(real, spectrum, axes=self.axes, flags=(_PLANNER,), **kwargs)
            self._inverse = pyfftw.FFTW(
                spectrum, real, axes=self.axes, direction="FFTW_BACKWARD",
                flags=(_PLANNER, "FFTW_DESTROY_INPUT"), **kwargs,
            )

    @property
    def real(self):
        """Scratch real array of the transform's shape (non-conforming inputs are copied here), made on first use."""
        if self._real is None:
            self._real = empty(self.shape, self.dtype)
        return self._real

    def _conforms(self, array, dtype, shape):
        return (
            array.dtype == dtype
            and array.shape == shape
            and array.flags.c_contiguous
            and (pyfftw is None or array.ctypes.data % pyfftw.simd_alignment == 0)
        )

    def forward(self, x, out):
        """Write the real FFT of ``x`` (not modified) into ``out``."""
        if not self._conforms(x, self.dtype, self.shape):
            np.copyto(self.real, x)
            x = self.real
        if pyfftw is None:
            import scipy.fft

            out[...] = scipy.fft.rfftn(x, axes=self.axes, workers=self.threads)
            return out
        self._forward.update_arrays(x, out)
        self._forward.execute()
        return out

    def inverse(self, spectrum, out):
        """Write the unnormalised inverse real FFT of ``spectrum`` into ``out``; destroys ``spectrum``."""
        if pyfftw is None:
            import scipy.fft

            out[...] = scipy.fft.irfftn(spectrum, s=self.shape, axes=self.axes, norm="forward", workers=self.threads)
            return out
        self._inverse.update_arrays(spectrum, out)
        self._inverse.execute()
        return out


def transfer_function(psf, shape, dtype):
    """OTF of ``psf`` on ``shape`` with the inverse FFT's 1/N folded in."""
    # a large grid's float64 plan is not cached: its buffers would stay in memory after the solve
    otf = _fft.psf_to_otf(np.asarray(psf, dtype=np.float64), tuple(shape), cache=math.prod(shape) < _THREADED_SIZE)
    otf /= math.prod(shape)
    out = empty(otf.shape, complex_dtype(dtype))
    out[...] = otf
    return out


# ---------------------------------------------------------------- fused loops
# All take flat contiguous arrays (``reshape(-1)`` views).


@numba.njit(cache=True, nogil=True)
def _cmul(spectrum, otf, conjugate):  # pragma: no cover - compiled
    if conjugate:
        for i in range(spectrum.size):
            spectrum[i] = spectrum[i] * otf[i].conjugate()
    else:
        for i in range(spectrum.size):
            spectrum[i] = spectrum[i] * otf[i]


@numba.njit(cache=True, nogil=True)
def _cmul_into(out, spectrum, otf, conjugate):  # pragma: no cover - compiled
    if conjugate:
        for i in range(out.size):
            out[i] = spectrum[i] * otf[i].conjugate()
    else:
        for i in range(out.size):
            out[i] = spectrum[i] * otf[i]


@numba.njit(cache=True, nogil=True)
def _cmul_add(acc, spectrum, otf, conjugate):  # pragma: no cover - compiled
    if conjugate:
        for i in range(acc.size):
            acc[i] += spectrum[i] * otf[i].conjugate()
    else:
        for i in range(acc.size):
            acc[i] += spectrum[i] * otf[i]


@numba.njit(cache=True, nogil=True)
def _mul_into(out, a, b):  # pragma: no cover - compiled
    for i in range(out.size):
        out[i] = a[i] * b[i]


@numba.njit(cache=True, nogil=True)
def _mul_add(out, a, b):  # pragma: no cover - compiled
    for i in range(out.size):
        out[i] += a[i] * b[i]


@numba.njit(cache=True, nogil=True)
def _mul_add_2d(out, a, b):  # pragma: no cover - compiled
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] += a[i, j] * b[i, j]


@numba.njit(cache=True, nogil=True)
def _mul_add_3d(out, a, b):  # pragma: no cover - compiled
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            for k in range(out.shape[2]):
                out[i, j, k] += a[i, j, k] * b[i, j, k]


def _mul_add_view(out, a, b):
    """``out += a * b`` in one pass, for strided 2-D or 3-D views."""
    (_mul_add_2d if out.ndim == 2 else _mul_add_3d)(out, a, b)


def _flat(array):
    return array.reshape(-1)


# ----------------------------------------------------------------- operators


class Convolution:
    """Circular convolution by one PSF on ``grid_shape``: 2 real FFTs per application."""

    def __init__(self, psf, grid_shape, dtype, workers=None):
        self.shape = tuple(grid_shape)
        self.dtype = np.dtype(dtype)
        self.fft = RealFFT(self.shape, dtype, workers)
        self.otf = transfer_function(psf, self.shape, dtype)
        self._spectrum = empty(self.fft.spectrum_shape, self.fft.cdtype)
        self.mean_psf = np.asarray(psf, dtype=np.float64)

    def _apply(self, x, out, conjugate):
        self.fft.forward(x, self._spectrum)
        _cmul(_flat(self._spectrum), _flat(self.otf), conjugate)
        return self.fft.inverse(self._spectrum, out)

    def forward(self, x, out):
        return self._apply(x, out, False)

    def adjoint(self, y, out):
        return self._apply(y, out, True)


def _segments(start, length, size):
    """Pieces ``(window_slice, grid_slice)`` of window positions ``start + j`` taken modulo ``size``."""
    pieces = []
    j = 0
    while j < length:
        g = (start + j) % size
        n = min(length - j, size - g)
        pieces.append((slice(j, j + n), slice(g, g + n)))
        j += n
    return pieces


def _pieces(starts, lengths, shape):
    per_axis = [_segments(s, n, size) for s, n, size in zip(starts, lengths, shape)]
    return [tuple(zip(*combo)) for combo in itertools.product(*per_axis)]


def _support_box(weight):
    """Bounding box ``(starts, stops)`` of the non-zero part of ``weight`` (None if all zero)."""
    starts, stops = [], []
    for axis in range(weight.ndim):
        other = tuple(a for a in range(weight.ndim) if a != axis)
        nonzero = np.flatnonzero(np.any(weight != 0, axis=other))
        if nonzero.size == 0:
            return None
        starts.append(int(nonzero[0]))
        stops.append(int(nonzero[-1]) + 1)
    return tuple(starts), tuple(stops)


def _fft_cost(shape):
    n = math.prod(shape)
    return n * math.log2(max(n, 2))


class _Window:
    """One product-convolution term restricted to the bounding box of its weight."""

    def __init__(self, psf, weight, box, reach, grid_shape, dtype):
        starts, stops = box
        self.box = tuple(slice(a, b) for a, b in zip(starts, stops))
        lengths = tuple(b - a for a, b in zip(starts, stops))
        self.fft_shape = tuple(n + 2 * r for n, r in zip(lengths, reach))
        self.weight = np.ascontiguousarray(weight[self.box], dtype=dtype)
        self.psf = psf
        # Buffer positions 0 .. n + 2r - 1 stand for grid positions start - r
        # onwards (wrapped): the box plus the PSF reach on both sides. Weight
        # then convolve writes the weighted box at offset r and scatters the
        # whole linear result; convolve then weight gathers that region and
        # keeps the box, where the circular result equals the linear one.
        self.inner = tuple(slice(r, r + n) for r, n in zip(reach, lengths))
        outer = tuple(n + 2 * r for n, r in zip(lengths, reach))
        self.pieces = _pieces(tuple(a - r for a, r in zip(starts, reach)), outer, grid_shape)
        self.otf = None  # set by the operator, which owns the FFT plans


class ProductConvolution:
    r"""Circular product convolution :math:`\sum_k h_k \circledast (w_k \odot x)` on a grid.

    Parameters
    ----------
    psfs : (K, ...) ndarray
        Odd-sized kernels (see :func:`odd_psf`), centre at ``n // 2``.
    weights : (K, *grid_shape) ndarray
        Weights on the grid.
    order : {"mask-first", "mask-last"}
        Which product comes first.
    strategy : {"auto", "windowed", "fourier"}
        ``"windowed"`` transforms each term on the bounding box of its weight
        plus the PSF reach; ``"fourier"`` transforms every term on the whole
        grid and sums the spectra (``K + 1`` transforms per application);
        ``"auto"`` picks the cheaper by an ``n log n`` cost model.
    """

    def __init__(self, psfs, weights, grid_shape, dtype, *, order="mask-first", strategy="auto", workers=None):
        self.shape = tuple(grid_shape)
        self.dtype = np.dtype(dtype)
        self.order = order
        self.workers = workers
        psfs = np.asarray(psfs, dtype=np.float64)
        reach = tuple(n // 2 for n in psfs.shape[1:])
        terms = []
        for k in range(psfs.shape[0]):
            box = _support_box(weights[k])
            if box is not None:
                terms.append((psfs[k], weights[k], box))
        if not terms:
            raise ValueError("every weight of the product convolution is zero")
        self.mean_psf = psfs.mean(axis=0)
        windows = [_Window(p, w, box, reach, self.shape, dtype) for p, w, box in terms]
        # One FFT shape for all windows: a single plan to make, and the few
        # windows that are smaller than the largest cost little extra.
        common = window_shape(tuple(max(win.fft_shape[a] for win in windows) for a in range(len(self.shape))))
        for win in windows:
            win.fft_shape = common
        windowed = 2 * len(windows) * _fft_cost(common)
        fourier = (len(terms) + 1) * _fft_cost(self.shape)
        if strategy == "auto":
            strategy = "windowed" if windowed < 0.8 * fourier else "fourier"
        self.strategy = strategy
        self._plans = {}
        if strategy == "windowed":
            self.windows = windows
            for win in windows:
                plan = self._plan(win.fft_shape)
                win.otf = transfer_function(win.psf, win.fft_shape, dtype)
                win.plan = plan
        else:
            plan = self._plan(self.shape)
            self.fft = plan
            self.otfs = [transfer_function(p, self.shape, dtype) for p, _, _ in terms]
            self.weights = [np.ascontiguousarray(w, dtype=dtype) for _, w, _ in terms]
            self._acc = empty(plan.spectrum_shape, plan.cdtype)

    def _plan(self, shape):
        if shape not in self._plans:
            plan = RealFFT(shape, self.dtype, self.workers)
            plan.spectrum = empty(plan.spectrum_shape, plan.cdtype)
            plan.result = empty(shape, self.dtype)
            self._plans[shape] = plan
        return self._plans[shape]

    # mask-first forward / mask-last adjoint: weight, then (de)convolve, then sum
    def _weight_then_convolve(self, x, out, conjugate):
        if self.strategy == "fourier":
            plan = self.fft
            acc = _flat(self._acc)
            acc.fill(0)
            for weight, otf in zip(self.weights, self.otfs):
                _mul_into(_flat(plan.real), _flat(weight), _flat(x))
                plan.forward(plan.real, plan.spectrum)
                _cmul_add(acc, _flat(plan.spectrum), _flat(otf), conjugate)
            return plan.inverse(self._acc, out)
        out.fill(0)
        for win in self.windows:
            plan = win.plan
            plan.real.fill(0)
            np.multiply(win.weight, x[win.box], out=plan.real[win.inner])
            plan.forward(plan.real, plan.spectrum)
            _cmul(_flat(plan.spectrum), _flat(win.otf), conjugate)
            result = plan.inverse(plan.spectrum, plan.result)
            for window_part, grid_part in win.pieces:
                out[grid_part] += result[window_part]
        return out

    # mask-last forward / mask-first adjoint: (de)convolve, then weight, then sum
    def _convolve_then_weight(self, x, out, conjugate):
        if self.strategy == "fourier":
            plan = self.fft
            plan.forward(x, self._acc)
            out.fill(0)
            for weight, otf in zip(self.weights, self.otfs):
                _cmul_into(_flat(plan.spectrum), _flat(self._acc), _flat(otf), conjugate)
                result = plan.inverse(plan.spectrum, plan.result)
                _mul_add(_flat(out), _flat(weight), _flat(result))
            return out
        out.fill(0)
        for win in self.windows:
            plan = win.plan
            plan.real.fill(0)
            for window_part, grid_part in win.pieces:
                plan.real[window_part] = x[grid_part]
            plan.forward(plan.real, plan.spectrum)
            _cmul(_flat(plan.spectrum), _flat(win.otf), conjugate)
            result = plan.inverse(plan.spectrum, plan.result)
            _mul_add_view(out[win.box], win.weight, result[win.inner])
        return out

    def forward(self, x, out):
        if self.order == "mask-first":
            return self._weight_then_convolve(x, out, False)
        return self._convolve_then_weight(x, out, False)

    def adjoint(self, y, out):
        if self.order == "mask-first":
            return self._convolve_then_weight(y, out, True)
        return self._weight_then_convolve(y, out, True)


# ------------------------------------------------------------------- problem


class Problem:
    """A blur operator plus where the data and the unknown sit on its grid.

    Attributes
    ----------
    op : Convolution or ProductConvolution
        Circular operator on ``op.shape``.
    data : ndarray
        Observations (already shifted by the RL offset if any), shape of the
        ``observed`` region.
    observed : tuple of slice
        Region of the grid where ``data`` lies (the data mask ``M``).
    unknown : tuple of slice or None
        Region of the grid where the estimate lives (None: the whole grid).
    crop : tuple of slice
        Region of the estimate returned to the user.
    normalize : bool
        Whether RL divides by :math:`A^T M 1` (Bertero-Boccacci weights).
    circulant : bool
        Single PSF observed on the whole (periodic) grid: Fourier-diagonal.
    periodic : bool
        The unknown is periodic on the grid (quadratic priors wrap around too).
    """

    def __init__(self, op, data, observed, unknown, crop, *, normalize=True, circulant=False, periodic=False,
                 workers=None):
        self.op = op
        self.periodic = periodic
        self.workers = workers
        self.data = data
        self.observed = observed
        self.unknown = unknown
        self.crop = crop
        self.normalize = normalize
        self.circulant = circulant
        self.dtype = op.dtype
        self.grid_shape = op.shape
        if unknown is None:
            self.shape = op.shape
        else:
            self.shape = tuple(s.stop - s.start for s in unknown)
            self._embedded = zeros(op.shape, op.dtype)
        self._adjoint_out = None  # made on first use: RL passes its own buffer

    def new(self, fill=None):
        """A work array of the unknown's shape."""
        array = empty(self.shape, self.dtype)
        if fill is not None:
            array.fill(fill)
        return array

    def new_grid(self, fill=None):
        array = empty(self.grid_shape, self.dtype)
        if fill is not None:
            array.fill(fill)
        return array

    def forward(self, x, out):
        """``A x`` on the whole grid (``out`` is a grid array); read ``out[observed]``."""
        if self.unknown is not None:
            self._embedded[self.unknown] = x
            x = self._embedded
        return self.op.forward(x, out)

    def adjoint(self, residual, out=None):
        """``A^T r`` restricted to the unknown, for a grid array ``r`` that is zero off ``observed``.

        Returns a view into ``out`` (a grid array; an internal buffer if None).
        """
        if out is None:
            if self._adjoint_out is None:
                self._adjoint_out = empty(self.op.shape, self.op.dtype)
            out = self._adjoint_out
        self.op.adjoint(residual, out)
        return out if self.unknown is None else out[self.unknown]

    def lipschitz(self):
        r"""Upper bound of :math:`\|M A\|_2^2` by Schur's test (exact row/column sums of a non-negative operator).

        For signed kernels (eigen-PSFs) the bound uses absolute values and
        falls back to a power iteration.
        """
        ones = self.new(1.0)
        rows = self.forward(ones, self.new_grid())[self.observed]
        mask = self.new_grid(0.0)
        mask[self.observed] = 1
        columns = self.adjoint(mask)
        if rows.min() >= 0 and columns.min() >= 0:
            return float(rows.max()) * float(columns.max())
        return self._power_iteration()

    def _power_iteration(self, iterations=30):
        rng = np.random.default_rng(0)
        x = self.new()
        x[...] = rng.random(self.shape)
        grid = self.new_grid()
        residual = self.new_grid(0.0)
        norm = 1.0
        for _ in range(iterations):
            x /= np.linalg.norm(x)
            self.forward(x, grid)
            residual[self.observed] = grid[self.observed]
            x[...] = self.adjoint(residual)
            norm = float(np.linalg.norm(x))
        return 1.05 * norm
