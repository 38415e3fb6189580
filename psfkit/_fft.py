"""Real FFTs for the convolution and deconvolution code.

pyFFTW plans are used when pyFFTW is importable (planned once per shape, dtype
and thread, then reused inside iterative loops); otherwise ``scipy.fft`` with
worker threads. All transforms are over the last ``ndim`` axes, so a stack of
images is transformed in one call.
"""

import functools
import os
import threading

import numpy as np
import scipy.fft

try:  # optional fast backend
    import pyfftw
except ImportError:  # pragma: no cover - exercised only without pyfftw
    pyfftw = None

_WORKERS = max(1, os.cpu_count() or 1)
# below this many samples a threaded FFT loses to thread start-up and, on a
# busy machine, to contention (measured: 24 ms vs 0.56 ms for a small plan)
_THREADED_MIN_SIZE = 1 << 18


def _threads(shape):
    return _WORKERS if int(np.prod(shape)) >= _THREADED_MIN_SIZE else 1


def fast_shape(shape):
    """Smallest shape >= ``shape`` whose axes have only small prime factors."""
    return tuple(scipy.fft.next_fast_len(int(n), real=True) for n in shape)


@functools.lru_cache(maxsize=32)
def _pyfftw_plans(shape, dtype, ndim, thread):
    # ``thread`` is part of the key: a plan owns its buffers, so two threads
    # must never share one.
    del thread
    return _make_plans(shape, dtype, ndim)


def _make_plans(shape, dtype, ndim):
    axes = tuple(range(-ndim, 0))
    real = pyfftw.empty_aligned(shape, dtype=dtype)
    threads = _threads(shape)
    forward = pyfftw.builders.rfftn(real, axes=axes, threads=threads, planner_effort="FFTW_ESTIMATE")
    spectrum = pyfftw.empty_aligned(forward.output_shape, dtype=forward.output_dtype)
    inverse = pyfftw.builders.irfftn(
        spectrum, s=shape[-ndim:], axes=axes, threads=threads, planner_effort="FFTW_ESTIMATE"
    )
    return forward, inverse


def rfftn(x, ndim=2, *, cache=True):
    """Real FFT of the last ``ndim`` axes of ``x`` (a new array).

    ``cache=False`` plans the transform for this call only (the same plan, so
    the same bits): the plan's buffers are not kept for later calls, which
    matters for one-off transforms of large (3-D) grids.
    """
    if pyfftw is not None and x.dtype in (np.float32, np.float64):
        if cache:
            forward, _ = _pyfftw_plans(x.shape, x.dtype.str, ndim, threading.get_ident())
            return forward(x).copy()
        forward, _ = _make_plans(x.shape, x.dtype.str, ndim)
        return forward(x)
    return scipy.fft.rfftn(x, axes=tuple(range(-ndim, 0)), workers=_threads(x.shape))


def irfftn(spectrum, shape, ndim=2):
    """Inverse of :func:`rfftn`; ``shape`` is the full real shape of the result."""
    shape = tuple(shape)
    if pyfftw is not None and spectrum.dtype in (np.complex64, np.complex128):
        real_dtype = np.float32 if spectrum.dtype == np.complex64 else np.float64
        _, inverse = _pyfftw_plans(shape, np.dtype(real_dtype).str, ndim, threading.get_ident())
        return inverse(spectrum).copy()
    return scipy.fft.irfftn(spectrum, s=shape[-ndim:], axes=tuple(range(-ndim, 0)), workers=_threads(shape))


def pad_psf(psf, shape):
    """Zero-pad ``psf`` to ``shape`` with its centre (index ``n // 2``) moved to the origin.

    This is MATLAB's ``psf2otf`` placement: convolving with the padded kernel
    by FFT then does not translate the image.
    """
    ndim = len(shape)
    lead = psf.shape[:-ndim]
    padded = np.zeros(lead + tuple(shape), dtype=psf.dtype)
    kernel = psf.shape[-ndim:]
    padded[(...,) + tuple(slice(0, k) for k in kernel)] = psf
    shifts = tuple(-(k // 2) for k in kernel)
    return np.roll(padded, shifts, axis=tuple(range(-ndim, 0)))


def psf_to_otf(psf, shape, *, cache=True):
    """Real-FFT transfer function of ``psf`` on a grid of ``shape`` (last axes); ``cache`` as for :func:`rfftn`.

    Without the cache, a single kernel is placed straight into the plan's input buffer (no padded copies):
    a large 3-D grid then needs one real and one complex grid-sized buffer, and gives the same bits.
    """
    shape = tuple(shape)
    if cache or pyfftw is None or psf.ndim != len(shape) or psf.dtype not in (np.float32, np.float64):
        return rfftn(pad_psf(psf, shape), ndim=len(shape), cache=cache)
    forward = pyfftw.builders.rfftn(
        pyfftw.empty_aligned(shape, dtype=psf.dtype), axes=tuple(range(len(shape))), threads=_threads(shape),
        planner_effort="FFTW_ESTIMATE",
    )
    buffer = forward.input_array
    buffer.fill(0)
    # pad_psf's placement: index i of the kernel goes to (i - k // 2) mod n on every axis
    buffer[np.ix_(*[(np.arange(k) - k // 2) % n for k, n in zip(psf.shape, shape)])] = psf
    return forward()
