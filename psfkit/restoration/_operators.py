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

import concurrent.futures
import itertools
import math
import threading

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


# Tasks of the chunked in-place FFT: planes of about this many bytes (an L2 cache, few Python calls), and
# the first axis in about this many column chunks (enough to share out, few Python calls).
_TASK_BYTES = 1 << 18
_FIRST_AXIS_TASKS = 16


def _chunk(item_bytes, target):
    """About ``target`` items (at least 1), rounded up so that a chunk of them keeps the next one SIMD-aligned."""
    step = pyfftw.simd_alignment // math.gcd(item_bytes, pyfftw.simd_alignment)
    return -(-max(target, 1) // step) * step


def _covering(start, stop, size, length):
    """``(start, stop)`` of the chunks of ``size`` items (the last one of ``range(length)`` shorter) covering
    ``start:stop``."""
    return [(a, min(a + size, length)) for a in range(start // size * size, stop, size)]


class InPlaceFFT:
    """Planned in-place real FFT of one shape: ``real`` and ``spectrum`` are views of one buffer.

    The buffer's last axis is padded to ``2 (n // 2 + 1)`` (FFTW's in-place layout), so a solver needs one
    grid-sized array where an out-of-place transform needs a real and a complex one. The inverse is
    unnormalised.

    With pyFFTW the transform runs in chunks: the other axes of a few planes (first-axis indices) at a time,
    out of place through a small scratch, then the first axis, a few columns at a time. FFTW's own in-place
    r2c copies every row and was ~10-20 % slower than out-of-place; the chunks are ~10 % faster than
    out-of-place (96 x 288 x 288 float32, one thread), give the same bits, and skip planes known to be zero
    (``nonzero``) or not wanted (``wanted``). Threads take chunks one at a time with single-threaded plans, so
    the bits do not depend on the thread count, and a thread that another process holds up takes fewer. FFTW's
    own threads split every call in fixed shares and wait for the slowest: on a 2-core machine with one core
    busy, 2 threads were slower than 1 (3-D plans, the multi-threaded RL "slower than one thread") or 3x
    slower (threaded plans per plane).
    """

    def __init__(self, shape, dtype, workers=None):
        self.shape = tuple(int(n) for n in shape)
        self.threads = threads(workers) if math.prod(self.shape) >= _THREADED_SIZE else 1
        self.buffer = empty(self.shape[:-1] + (2 * (self.shape[-1] // 2 + 1),), dtype)
        self.real = self.buffer[..., : self.shape[-1]]
        self.spectrum = self.buffer.view(complex_dtype(dtype))
        if pyfftw is None:
            return
        plane, column = self.spectrum.strides[:2]
        self._planes = _chunk(plane, _TASK_BYTES // plane)
        self._columns = _chunk(column, self.spectrum.shape[1] // _FIRST_AXIS_TASKS)
        if math.prod(self.shape) < _THREADED_SIZE:  # one task per pass: more would cost more calls than they save
            self._planes, self._columns = self.shape[0], self.spectrum.shape[1]
        self._plans = [self._thread_plans() for _ in range(self.threads)]
        self._pool = concurrent.futures.ThreadPoolExecutor(self.threads - 1) if self.threads > 1 else None

    def _thread_plans(self):
        """One thread's plans, by chunk size (a full chunk and the shorter last one): scratch, r2c and c2r of the
        other axes of a few planes, and forward and inverse of the first axis of a few columns."""
        forward = dict(threads=1, flags=(_PLANNER,))
        backward = dict(direction="FFTW_BACKWARD", threads=1, flags=(_PLANNER, "FFTW_DESTROY_INPUT"))
        rest = tuple(range(1, len(self.shape)))
        planes, columns = {}, {}
        for _, stop in _covering(0, self.shape[0], self._planes, self.shape[0])[-2:]:
            count = stop % self._planes or min(self._planes, self.shape[0])
            scratch = empty((count,) + self.spectrum.shape[1:], self.spectrum.dtype)
            real = self.real[:count]
            planes[count] = (scratch, pyfftw.FFTW(real, scratch, axes=rest, **forward),
                             pyfftw.FFTW(scratch, real, axes=rest, **backward))
        width = self.spectrum.shape[1]
        for _, stop in _covering(0, width, self._columns, width)[-2:]:
            count = stop % self._columns or min(self._columns, width)
            chunk = self.spectrum[:, :count]
            columns[count] = (pyfftw.FFTW(chunk, chunk, axes=(0,), **forward),
                              pyfftw.FFTW(chunk, chunk, axes=(0,), **backward))
        return planes, columns

    def _share(self, tasks, step):
        """Run ``step(plans, task)`` for every task, the threads taking them on demand."""
        tasks = iter(tasks)
        lock = threading.Lock()

        def worker(plans):
            while True:
                with lock:
                    task = next(tasks, None)
                if task is None:
                    return
                step(plans, task)

        helpers = [self._pool.submit(worker, plans) for plans in self._plans[1:]] if self._pool else []
        worker(self._plans[0])
        for helper in helpers:
            helper.result()

    def _first_axis(self, inverse):
        def step(plans, piece):
            start, stop = piece
            columns = self.spectrum[:, start:stop]
            plan = plans[1][stop - start][inverse]
            plan.update_arrays(columns, columns)
            plan.execute()

        width = self.spectrum.shape[1]
        self._share(_covering(0, width, self._columns, width), step)

    def _planes_forward(self, nonzero):
        pieces = _covering(*nonzero.indices(self.shape[0])[:2], self._planes, self.shape[0])
        self.spectrum[: pieces[0][0]] = 0
        self.spectrum[pieces[-1][1] :] = 0

        def step(plans, piece):
            start, stop = piece
            scratch, plan, _ = plans[0][stop - start]
            plan.update_arrays(self.real[start:stop], scratch)
            plan.execute()
            self.spectrum[start:stop] = scratch

        self._share(pieces, step)

    def _planes_inverse(self, wanted):
        def step(plans, piece):
            start, stop = piece
            scratch, _, plan = plans[0][stop - start]
            scratch[...] = self.spectrum[start:stop]
            plan.update_arrays(scratch, self.real[start:stop])
            plan.execute()

        self._share(_covering(*wanted.indices(self.shape[0])[:2], self._planes, self.shape[0]), step)

    def forward(self, nonzero=slice(None)):
        """``spectrum`` <- real FFT of ``real``, whose planes (first axis) outside ``nonzero`` are zero."""
        if pyfftw is None:
            import scipy.fft

            self.spectrum[...] = scipy.fft.rfftn(self.real, workers=self.threads)
            return
        self._planes_forward(nonzero)
        self._first_axis(False)

    def inverse(self, wanted=slice(None)):
        """``real`` <- unnormalised inverse real FFT of ``spectrum``, on the planes ``wanted`` (others: garbage)."""
        if pyfftw is None:
            import scipy.fft

            self.real[...] = scipy.fft.irfftn(self.spectrum, s=self.shape, norm="forward", workers=self.threads)
            return
        self._first_axis(True)
        self._planes_inverse(wanted)

    def filter(self, otf, conjugate, nonzero=slice(None), wanted=slice(None)):
        """``real`` <- unnormalised inverse FFT of FFT(``real``) times ``otf`` (conjugated if ``conjugate``).

        ``nonzero`` and ``wanted`` as for :meth:`forward` and :meth:`inverse`. A chunk of columns is multiplied
        between its two first-axis transforms, while it is in cache: two passes over the spectrum fewer.
        """
        if pyfftw is None:
            self.forward()
            _cmul(_flat(self.spectrum), _flat(otf), conjugate)
            return self.inverse()
        self._planes_forward(nonzero)

        def step(plans, piece):
            start, stop = piece
            columns = self.spectrum[:, start:stop]
            forward, inverse = plans[1][stop - start]
            forward.update_arrays(columns, columns)
            forward.execute()
            _cmul_3d(_columns_3d(columns), _columns_3d(otf[:, start:stop]), conjugate)
            inverse.update_arrays(columns, columns)
            inverse.execute()

        width = self.spectrum.shape[1]
        self._share(_covering(0, width, self._columns, width), step)
        self._planes_inverse(wanted)


class _OutOfPlaceFFT:
    """Work buffer of a 2-D grid: a real array and its spectrum, transformed out of place by :class:`RealFFT`.

    On 2-D grids FFTW's out-of-place plans were faster than :class:`InPlaceFFT` (RL on a 1056² grid, two
    threads: 12.6 against 17 ms per iteration), and the spectrum's memory matters little there.
    """

    def __init__(self, shape, dtype, workers=None):
        self._fft = RealFFT(shape, dtype, workers)
        self.real = empty(shape, dtype)
        self.spectrum = empty(self._fft.spectrum_shape, self._fft.cdtype)

    def filter(self, otf, conjugate, nonzero=None, wanted=None):
        """As :meth:`InPlaceFFT.filter` (``nonzero`` and ``wanted`` are not used)."""
        self._fft.forward(self.real, self.spectrum)
        _cmul(_flat(self.spectrum), _flat(otf), conjugate)
        self._fft.inverse(self.spectrum, self.real)


class _GridWork:
    """Work buffer of an out-of-place operator used in place: ``real`` plus a copy of it for the input."""

    def __init__(self, shape, dtype):
        self.real = empty(shape, dtype)
        self.input = empty(shape, dtype)


def transfer_function(psf, shape, dtype):
    """OTF of ``psf`` on ``shape`` with the inverse FFT's 1/N folded in."""
    psf = np.asarray(psf, dtype=np.float64)
    if math.prod(shape) < _THREADED_SIZE or pyfftw is None:
        otf = _fft.psf_to_otf(psf, tuple(shape))
    else:  # a large grid: one float64 buffer transformed in place, not cached (same bits as psf_to_otf)
        otf = _large_otf(psf, tuple(shape))
    otf /= math.prod(shape)
    out = empty(otf.shape, complex_dtype(dtype))
    out[...] = otf
    return out


def _large_otf(psf, shape):
    fft = InPlaceFFT(shape, np.float64)
    fft.real.fill(0)
    # pad_psf's placement: index i of the kernel goes to (i - k // 2) mod n on every axis
    fft.real[np.ix_(*[(np.arange(k) - k // 2) % n for k, n in zip(psf.shape, shape)])] = psf
    fft.forward()
    return fft.spectrum


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
def _cmul_3d(spectrum, otf, conjugate):  # pragma: no cover - compiled
    """``_cmul`` on strided 3-D views (column chunks of an in-place spectrum)."""
    n0, n1, n2 = spectrum.shape
    for i in range(n0):
        for j in range(n1):
            if conjugate:
                for k in range(n2):
                    spectrum[i, j, k] = spectrum[i, j, k] * otf[i, j, k].conjugate()
            else:
                for k in range(n2):
                    spectrum[i, j, k] = spectrum[i, j, k] * otf[i, j, k]


def _columns_3d(columns):
    return columns if columns.ndim == 3 else columns[:, :, None]


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
        self.workers = workers
        self.mean_psf = np.asarray(psf, dtype=np.float64)
        self.otf = transfer_function(psf, self.shape, dtype)
        if np.array_equal(self.mean_psf, np.flip(self.mean_psf)):
            # a point-symmetric (odd) kernel has a real OTF: FFTW's imaginary parts are round-off, and the real
            # part is half the memory and half the reads
            self.otf = np.ascontiguousarray(self.otf.real)
        self._fft = None  # out-of-place plans and spectrum, made on first use: RL works in place

    def _apply(self, x, out, conjugate):
        if self._fft is None:
            self._fft = RealFFT(self.shape, self.dtype, self.workers)
            self._spectrum = empty(self._fft.spectrum_shape, self._fft.cdtype)
        self._fft.forward(x, self._spectrum)
        _cmul(_flat(self._spectrum), _flat(self.otf), conjugate)
        return self._fft.inverse(self._spectrum, out)

    def forward(self, x, out):
        return self._apply(x, out, False)

    def adjoint(self, y, out):
        return self._apply(y, out, True)

    def workspace(self):
        """A work buffer for :meth:`apply_in_place`, owned by the caller: one grid-sized buffer in 3-D."""
        work = InPlaceFFT if len(self.shape) == 3 else _OutOfPlaceFFT
        return work(self.shape, self.dtype, self.workers)

    def apply_in_place(self, work, adjoint, nonzero=slice(None), wanted=slice(None)):
        """Replace ``work.real`` by ``A work.real`` (``adjoint``: ``A^T work.real``).

        ``nonzero`` and ``wanted`` are the planes (first axis) where the input may be non-zero and where the
        result is read: the others are skipped (see :class:`InPlaceFFT`).
        """
        work.filter(self.otf, adjoint, nonzero, wanted)

    def box_column_sums(self, box):
        r"""Column sums :math:`A^T M 1` of the box mask ``box`` (slices) as ``(table, indices)``, or None if it wraps.

        The value at grid index ``(i, j, ...)`` is ``table[indices[0][i], indices[1][j], ...]``. At a point
        :math:`x`, :math:`\sum_{y \in box} h(y - x)` sums the PSF over one interval per axis, and an axis has
        only a few distinct intervals (about four reaches), so the table is small and summed exactly in float64
        instead of a grid-sized FFT result.
        """
        table, indices = self.mean_psf, []
        for axis, (part, size, length) in enumerate(zip(box, self.shape, self.mean_psf.shape)):
            start, stop, _ = part.indices(size)
            reach = length // 2
            if start == 0 and stop == size:  # the whole periodic axis: every point sees the whole kernel
                bounds = np.tile([0, length], (size, 1))
            elif start >= reach and stop + reach <= size:  # nothing wraps around
                x = np.arange(size)
                bounds = np.clip(np.stack([start - x + reach, stop - x + reach], axis=1), 0, length)
                bounds[bounds[:, 0] >= bounds[:, 1]] = 0  # empty intervals: one class
            else:
                return None
            bounds, inverse = np.unique(bounds, axis=0, return_inverse=True)
            cumulative = np.concatenate([np.zeros_like(table.take([0], axis)), np.cumsum(table, axis)], axis)
            table = cumulative.take(bounds[:, 1], axis) - cumulative.take(bounds[:, 0], axis)
            indices.append(inverse.reshape(-1))
        return table, indices


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

    def workspace(self):
        """A work buffer for :meth:`apply_in_place` (the caller owns it)."""
        return _GridWork(self.shape, self.dtype)

    def apply_in_place(self, work, adjoint, nonzero=None, wanted=None):
        """Replace ``work.real`` by ``A work.real`` (``adjoint``: ``A^T work.real``); ``nonzero`` and ``wanted``
        (see :meth:`Convolution.apply_in_place`) are not used."""
        np.copyto(work.input, work.real)  # the windowed products read their input after writing the output
        (self.adjoint if adjoint else self.forward)(work.input, work.real)

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
        self.shape = op.shape if unknown is None else tuple(s.stop - s.start for s in unknown)
        self._embedded = None  # made on first use, like the adjoint's buffer: RL works in its own buffer
        self._adjoint_out = None

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
            if self._embedded is None:
                self._embedded = zeros(self.op.shape, self.op.dtype)
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

    def workspace(self):
        """A grid-shaped work buffer ``work.real`` for :meth:`apply_in_place`, owned by the caller."""
        return self.op.workspace()

    def apply_in_place(self, work, adjoint=False):
        """Replace ``work.real`` (a grid array) by ``A work.real``, or ``A^T work.real`` if ``adjoint``.

        The input must be zero off the unknown (``A``) or off the observed region (``A^T``); the result is only
        valid on the observed region (``A``) or on the unknown (``A^T``).
        """
        unknown = slice(None) if self.unknown is None else self.unknown[0]
        observed = self.observed[0]
        if adjoint:
            self.op.apply_in_place(work, True, nonzero=observed, wanted=unknown)
        else:
            self.op.apply_in_place(work, False, nonzero=unknown, wanted=observed)

    def column_sums(self):
        r"""Column sums :math:`A^T M 1` on the unknown as ``(table, indices)``.

        The value at index ``(i, j, ...)`` of the unknown is ``table[indices[0][i], indices[1][j], ...]``: a
        small table for a single PSF, the grid-sized result of an adjoint otherwise.
        """
        compact = getattr(self.op, "box_column_sums", None)
        sums = compact(self.observed) if compact is not None else None
        if sums is None:
            mask = self.new_grid(0.0)
            mask[self.observed] = 1
            table = np.array(self.adjoint(mask, self.new_grid()), copy=True)
            return table, [np.arange(n) for n in self.shape]
        table, indices = sums
        if self.unknown is not None:
            indices = [index[part] for index, part in zip(indices, self.unknown)]
        return table, indices

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
