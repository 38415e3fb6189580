r"""PSF calibration: fit :func:`psfkit.microscope_psf`'s pupil to a measured bead.

:func:`fit_psf` turns an image of a sub-resolution fluorescent bead -- a raw
stack with camera offset, background and shot noise, or an averaged,
normalised bead PSF -- into the parameters of the microscope's pupil (Zernike
aberrations, optionally the NA), the bead's position and size, and the
model PSF that goes with them.
"""

import dataclasses
import math
import numbers
import types

import numpy as np

from psfkit._validation import as_float_array, check_bool, check_choice, check_int, check_positive
from psfkit.optics import _bead
from psfkit.optics.microscope import _MAX_SIDE, Optics, _check_shape, _default_oversampling, _gl_error_bound

__all__ = ["PSFFit", "fit_psf"]

MODELS = ("scalar", "born-wolf")
NOISE_MODELS = ("poisson", "gaussian")
MODALITIES = ("widefield", "confocal", "lightsheet")
_DEFAULT_INDICES_3D = tuple(range(5, 16))  # defocus (4) is the axial position in a stack
_DEFAULT_INDICES_2D = tuple(range(4, 16))
_MAX_COEFFICIENT = 1.0  # waves RMS, per term: beyond, a bead image is no longer a PSF worth fitting
_WINDOW_FWHM = 3.0  # half-width of the automatic fit window, in FWHM of the bead
_REGION_FWHM = 2.0  # half-width of the region of the reported SNR, in FWHM of the model
_FIT_QUADRATURE = 1e-3  # error bound of the pixel integration while fitting
_Z_MARGIN = 3  # planes the source may move before the pupil grids are rebuilt
_NA_MARGIN = 1.05  # relative NA increase the pupil grids hold before they are rebuilt


@dataclasses.dataclass(frozen=True, eq=False)
class PSFFit:
    r"""The parameters :func:`fit_psf` found (read-only).

    Attributes
    ----------
    optics : Optics
        The input optics with the fitted ``na`` (and ``sheet_thickness``;
        a confocal ``pinhole`` rescaled to Airy units of the fitted NA, the
        same physical pinhole): ``microscope_psf(fit.optics, shape,
        aberrations=fit.aberrations, model=...)`` is the fitted PSF.
    aberrations : mapping
        ``{noll_index: waves RMS}`` of the fitted terms (read-only mapping).
    na : float
        Numerical aperture (the input one unless ``fit_na``).
    background : float
        Constant background in the units of the data (camera offset plus
        diffuse light).
    amplitude : float
        Signal of the bead above the background, summed over the fitted
        window, in the units of the data.
    centre : tuple of float
        Position of the bead (the point source) in voxels of the input
        array, ``(z, y, x)`` for a stack, ``(y, x)`` for an image.
    bead_diameter : float
        Diameter of the bead in um (the input one unless fitted).
    sheet_thickness : float or None
        Light-sheet FWHM in um (light-sheet stacks).
    snr : float
        :math:`10\log_{10}(\|m\|^2/\|m - f\|^2)` in dB over the central
        region, ``m`` the measured bead and ``f`` the fitted model, both
        less the fitted background.
    region : tuple of slice
        The central region of ``snr`` in the input array: every voxel within
        two FWHM of the centre along each axis (the model's FWHM), clipped
        to the fit window.
    residual : float
        Relative RMS residual over the whole fit window,
        :math:`\|d - f\| / \|d - b\|`.
    window : tuple of slice
        The part of the input the model was fitted to.
    model : ndarray
        The fitted bead image on the window (bead, background and all, in
        the units of the data; read-only): ``bead_stack[fit.window] -
        fit.model`` are the residuals.
    iterations : int
        Jacobian evaluations (Gauss-Newton steps) over all passes.
    success : bool
        Whether the last pass converged by its tolerances rather than
        stopping at ``max_iterations``.
    """

    optics: Optics
    aberrations: types.MappingProxyType
    na: float
    background: float
    amplitude: float
    centre: tuple
    bead_diameter: float
    sheet_thickness: float | None
    snr: float
    region: tuple
    residual: float
    window: tuple
    model: np.ndarray
    iterations: int
    success: bool


# --------------------------------------------------------------------------- validation


def _check_indices(indices, planar):
    from psfkit.optics.zernike import _check_indices as check

    if indices is None:
        return _DEFAULT_INDICES_2D if planar else _DEFAULT_INDICES_3D
    indices = check(indices, "indices")
    if len(set(indices)) != len(indices):
        raise ValueError(f"indices must not repeat a Noll index, got {indices}")
    tilts = sorted(j for j in indices if j <= 3)
    if tilts:
        raise ValueError(
            f"indices must be Noll indices >= 4: piston (1) does not change a PSF and tip/tilt (2, 3) are the "
            f"lateral position of the bead, which is always fitted; got {tilts}"
        )
    return indices


def _check_bead_diameter(value):
    if value is None:
        return 0.0, False
    if isinstance(value, str):
        if value != "fit":
            raise ValueError(f"bead_diameter must be a diameter in um, None or 'fit', got {value!r}")
        return 0.0, True
    if isinstance(value, np.generic):
        value = value.item()
    check_positive(value, "bead_diameter", strict=False)
    return float(value), False


def _check_background(value):
    if isinstance(value, str):
        if value != "fit":
            raise ValueError(f"background must be 'fit' or a number (the known constant background), got {value!r}")
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"background must be 'fit' or a real number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"background must be finite, got {value!r}")
    return float(value)


def _check_window(window, data_shape):
    if window is None:
        return None
    if isinstance(window, (str, bytes)) or not hasattr(window, "__len__") or len(window) != len(data_shape):
        raise TypeError(f"window must be a tuple of {len(data_shape)} integers (one size per axis), got {window!r}")
    return tuple(
        check_int(n, "window", minimum=3 if (len(data_shape) == 3 and i == 0) else 5, maximum=_MAX_SIDE)
        for i, n in enumerate(window)
    )


# --------------------------------------------------------------------------- locating the bead


def _fwhm_at(profile, peak):
    """Width (in samples) of ``profile`` at half its value at ``peak``, linear interpolation of the crossings."""
    half = profile[peak] / 2.0
    if not half > 0:
        return 1.0
    edges = []
    for step in (-1, 1):
        i = peak
        while 0 <= i + step < profile.size and profile[i + step] > half:
            i += step
        j = i + step
        if 0 <= j < profile.size:
            edges.append(i + step * (profile[i] - half) / (profile[i] - profile[j]))
        else:
            edges.append(i + step * 0.5)
    return max(abs(edges[1] - edges[0]), 1.0)


def _fwhm(volume, peak):
    """FWHM along each axis through ``peak`` (samples)."""
    widths = []
    for axis in range(volume.ndim):
        index = list(peak)
        index[axis] = slice(None)
        widths.append(_fwhm_at(volume[tuple(index)], peak[axis]))
    return np.array(widths)


def _nominal_fwhm(optics, planar):
    """Closed-form widefield FWHM (um): lateral 0.51 lambda / NA, axial 0.88 lambda / (n - n cos alpha)."""
    lateral = 0.51 * optics.wavelength / optics.na
    if planar:
        return np.array([lateral, lateral])
    n = optics.immersion_index
    axial = 0.88 * optics.wavelength / (n - math.sqrt(n * n - optics.na**2))
    if optics.modality == "lightsheet":
        axial = 1.0 / math.hypot(1.0 / axial, 1.0 / optics.sheet_thickness)
    return np.array([axial, lateral, lateral])


def _locate(data, optics, planar, window):
    """Fit window (slices), initial centre in it, background guess and the data's FWHM (samples)."""
    from scipy import ndimage

    steps = np.array([optics.pixel_size] * 2 if planar else [optics.z_step] + [optics.pixel_size] * 2)
    nominal = _nominal_fwhm(optics, planar) / steps
    smooth = ndimage.gaussian_filter(data, nominal / 2.355 / 2, mode="nearest")
    background = float(np.percentile(smooth, 10))
    peak = np.unravel_index(int(np.argmax(smooth)), smooth.shape)
    measured = _fwhm(smooth - background, peak)
    if window is None:
        halves = np.ceil(_WINDOW_FWHM * np.maximum(nominal, measured)).astype(int)
        floors = np.array([4, 4] if planar else [3, 4, 4])
        window = tuple(2 * np.maximum(halves, floors) + 1)
    slices = []
    for n, size, p in zip(data.shape, window, peak):
        size = min(size, n)
        start = int(min(max(p - size // 2, 0), n - size))
        slices.append(slice(start, start + int(size)))
    centre = np.array([p - s.start for p, s in zip(peak, slices)], dtype=np.float64)
    return tuple(slices), centre, background, measured


# --------------------------------------------------------------------------- the fit


class _Problem:
    """Packing of the free parameters, residuals and Jacobian for scipy's least_squares.

    The solver sees every parameter as ``(value - offset) / unit``, all of
    order one (its ``xtol`` test is on the norm of that vector: a raw
    amplitude of 1e5 counts would end the fit after any step).
    """

    def __init__(self, engine, data, names, fixed, scale, offsets, units):
        self.engine = engine
        self.data = data
        self.names = names  # the free parameters in order; 'c<j>' per coefficient
        self.fixed = dict(fixed)  # values of every parameter (free ones are overwritten)
        self.scale = scale  # 1 / (sum of the unscaled image at the start): amplitude ~ total signal
        self.offsets = np.array([offsets.get(name, 0.0) for name in names])
        self.units = np.array([units.get(name, 1.0) for name in names])
        self.weights = np.ones(data.shape)

    def unpack(self, x):
        values = dict(self.fixed)
        for name, value in zip(self.names, self.offsets + self.units * np.asarray(x)):
            values[name] = float(value)
        return values

    def pack(self, values):
        return (np.array([values[name] for name in self.names]) - self.offsets) / self.units

    def bounds(self, bounds):
        lower = (np.array([bounds[name][0] for name in self.names]) - self.offsets) / self.units
        upper = (np.array([bounds[name][1] for name in self.names]) - self.offsets) / self.units
        return lower, upper

    def coefficients(self, values):
        return np.array([values[f"c{j}"] for j in self.engine.indices])

    def model(self, values, derivatives=False):
        image, jac = self.engine.image(
            self.coefficients(values),
            values["na"],
            (values["cz"], values["cy"], values["cx"]),
            math.sqrt(max(values["d2"], 0.0)),
            values["sheet"],
            derivatives=derivatives,
            na_step=1e-5 * values["na"] if (derivatives and "na" in self.names) else None,
        )
        return image * self.scale, jac

    def residuals(self, x):
        values = self.unpack(x)
        image, _ = self.model(values)
        return self.weights * (values["amplitude"] * image + values["background"] - self.data)

    def jacobian(self, x):
        values = self.unpack(x)
        image, jac = self.model(values, derivatives=True)
        a = values["amplitude"] * self.scale
        columns = []
        for name in self.names:
            if name == "amplitude":
                column = image
            elif name == "background":
                column = np.ones(image.shape)
            elif name.startswith("c") and name[1:].isdigit():
                column = a * jac["coefficients"][self.engine.indices.index(int(name[1:]))]
            elif name in ("cz", "cy", "cx"):
                column = a * jac["centre"]["zyx".index(name[1])]
            elif name == "na":
                column = a * jac["na"]
            elif name == "d2":
                column = a * jac["diameter_sq"]
            else:  # sheet
                column = a * jac["sheet"]
            columns.append((self.weights * column).ravel())
        return np.stack(columns, axis=1) * self.units


def _solve(problem, bounds, max_nfev):
    from scipy.optimize import least_squares

    lower, upper = problem.bounds(bounds)
    x0 = np.clip(problem.pack(problem.fixed), lower, upper)
    result = least_squares(
        lambda x: problem.residuals(x).ravel(),
        x0,
        jac=problem.jacobian,
        bounds=(lower, upper),
        method="trf",
        x_scale="jac",
        max_nfev=max_nfev,
        ftol=1e-5,  # 4e-5 dB of the fit's SNR: noisy beads need no more
        xtol=1e-5,
        gtol=1e-8,
    )
    values = problem.unpack(result.x)
    return values, int(result.njev or 0), bool(result.status > 0)


def _variance_model(data, model, background):
    """Poisson-Gaussian variance ``a + g (model - background)`` fitted to the squared residuals."""
    signal = np.clip(model - background, 0.0, None)
    r2 = (data - model) ** 2
    dim = signal <= 0.01 * signal.max()
    a = float(r2[dim].mean()) if dim.any() else float(np.median(r2))
    g = float(np.sum((r2 - a) * signal) / max(np.sum(signal * signal), 1e-300))
    a = max(a, 1e-12 * float(np.mean(r2)) + 1e-300)
    return a + max(g, 0.0) * signal


def _zernike_slope(indices, coefficients):
    from psfkit.optics.psf import _gradient_basis

    if not indices:
        return 0.0
    gx, gy = _gradient_basis(tuple(indices))
    c = np.asarray(coefficients, dtype=np.float64)
    return float(np.sqrt((c @ gx) ** 2 + (c @ gy) ** 2).max())


def _engine(optics, model, shape, indices, oversampling, bead_reach, planar, cz, slope, na, na_max):
    lo, hi = cz - _Z_MARGIN, cz + _Z_MARGIN
    return _bead.BeadModel(
        optics, model, shape, indices, oversampling=oversampling, bead_reach=bead_reach,
        z_reach=(lo, hi), slope=slope, planar=planar, grid_na=min(max(na, optics.na) * _NA_MARGIN, na_max),
    )


def fit_psf(
    bead_stack,
    optics,
    *,
    model="scalar",
    indices=None,
    fit_na=False,
    bead_diameter=None,
    background="fit",
    fit_sheet=False,
    noise="poisson",
    window=None,
    shape=None,
    max_iterations=30,
):
    r"""Fit the pupil of :func:`microscope_psf` (aberrations, NA) to a measured bead.

    Parameters
    ----------
    bead_stack : (Z, Y, X) or (Y, X) array_like
        Image of one isolated fluorescent bead: a raw stack (camera offset,
        background, shot noise) or an averaged bead PSF. The brightest blob
        is fitted, in a window around it. Never modified.
    optics : Optics
        The microscope: voxel size (``z_step`` is required for a stack),
        wavelengths, immersion index, modality (``'widefield'``,
        ``'confocal'`` or ``'lightsheet'``). ``optics.na`` is the nominal
        NA: fixed, or the starting point with ``fit_na=True``.
    model : {'scalar', 'born-wolf'}
        Defocus model of the pupil (see :func:`microscope_psf`).
    indices : sequence of int, optional
        Noll indices of the fitted Zernike terms (>= 4). Default: 5 to 15
        for a stack (astigmatism, coma, trefoil, spherical, secondary
        astigmatism, quadrafoil; defocus is the bead's axial position),
        4 to 15 for a single image (which has no axial position). ``()``
        fits an aberration-free pupil.
    fit_na : bool
        Also fit the NA (when it is unknown or only approximate).
    bead_diameter : float, None or 'fit'
        Bead diameter in um (a uniformly fluorescent sphere), ``None`` for a
        point source, or ``'fit'`` to fit it.
    background : 'fit' or float
        Fit a constant background, or the known constant (e.g. the camera
        offset of a background-free bead) in the units of the data.
    fit_sheet : bool
        Light-sheet stacks: also fit the sheet's FWHM (starting from
        ``optics.sheet_thickness``).
    noise : {'poisson', 'gaussian'}
        ``'poisson'``: weighted least squares with the variance
        ``a + g (model - background)`` of shot noise plus read noise, its
        two constants estimated from the residuals (for raw beads, in any
        units: no gain or offset needs to be known). ``'gaussian'``:
        unweighted least squares (averaged or processed bead PSFs).
    window : tuple of int, optional
        Size of the region fitted around the bead, in voxels. Default: three
        times the bead's FWHM on each side of it (measured, or the nominal
        one where larger), at most the input.
    shape : tuple of int, optional
        Shape of the returned PSF; default the input's shape.
    max_iterations : int
        Most model evaluations of each least-squares pass (up to three
        passes, see Notes).

    Returns
    -------
    psf : ndarray
        The fitted PSF (point source: without the bead) on ``shape``,
        centred at ``n // 2`` on each axis, float64, summing to 1: that of
        ``microscope_psf(fit.optics, shape, aberrations=fit.aberrations)``
        (point-sampled for confocal stacks).
    fit : PSFFit
        The fitted parameters, the SNR of the model in the central region
        and convergence information.

    Raises
    ------
    TypeError
        If ``optics`` is not an :class:`Optics`, or for arguments of the
        wrong type.
    ValueError
        For a bead stack that is not 2-D or 3-D, empty, too small or not
        finite, a stack without ``optics.z_step``, bad indices, options or
        an unsupported modality.
        Also for ``model='vectorial'`` or ``optics.modality='airyscan'``,
        which the fit does not support.

    See Also
    --------
    microscope_psf : The model fitted.

    Notes
    -----
    The measured stack :math:`d` is fitted by

    .. math::

        f(\mathbf x) = A\,\bigl(h_{\theta}\ast S_d\bigr)(\mathbf x - \mathbf c) + b,

    with :math:`h_\theta` the PSF of :func:`microscope_psf` for the pupil
    :math:`\theta` (Zernike coefficients in waves RMS, Noll, the NA),
    :math:`S_d` a uniformly fluorescent sphere of diameter :math:`d`, a
    sub-voxel centre :math:`\mathbf c`, an amplitude :math:`A` and a
    background :math:`b`. Widefield and light-sheet PSFs are integrated
    over each pixel; confocal stacks are point-sampled scans
    (:math:`h_{ex}\,(h_{em}\ast D)` with the pinhole disk :math:`D`).

    The fit is a trust-region least-squares fit (SciPy's ``least_squares``)
    with analytic derivatives: the derivative of the intensity
    :math:`|E|^2` in a pupil-phase parameter is
    :math:`2\,\mathrm{Re}(\bar E\,\partial E)`, one more matrix Fourier
    transform per parameter; the NA by a finite difference. It runs in
    passes: first without aberrations (position, amplitude, background,
    NA, bead size, sheet), then everything; with ``noise='poisson'`` the
    residuals of one pass give the variance model of the next (iteratively
    reweighted least squares, the Gaussian approximation of the Poisson
    likelihood with read noise). The bead's size is fitted through its
    square (the image depends on :math:`d^2` to first order).

    Defocus and the axial position are nearly the same parameter in a
    stack, and piston and tip/tilt are not fitted; the spherical terms
    absorb the index mismatch of a bead at depth (oil NA 1.4 into water:
    about +0.09 waves of Noll 11 per um of depth at 520 nm). A single image
    is taken in focus, and cannot tell the sign of the even terms
    (astigmatism, spherical: :math:`\varphi(\mathbf u)` and
    :math:`-\varphi(-\mathbf u)` give the same in-focus PSF): fit the odd
    ones (coma, trefoil) from an image, the rest from a stack. The NA, the
    bead size and (light sheet) the sheet thickness all widen the bead and
    are partly interchangeable; fix the ones you know.

    References
    ----------
    .. [1] B. M. Hanser, M. G. L. Gustafsson, D. A. Agard and J. W. Sedat,
           "Phase-retrieved pupil functions in wide-field fluorescence
           microscopy", J. Microsc. 216, 32-48 (2004).
           :doi:`10.1111/j.0022-2720.2004.01393.x`
    .. [2] S. Liu, E. B. Kromann, W. D. Krueger, J. Bewersdorf and
           K. A. Lidke, "Three dimensional single molecule localization using
           a phase retrieved pupil function", Opt. Express 21, 29462 (2013).
           :doi:`10.1364/OE.21.029462`

    Examples
    --------
    A noisy bead with 0.08 waves of vertical coma, a background and a camera
    offset:

    >>> import numpy as np
    >>> from psfkit.optics.microscope import Optics, microscope_psf
    >>> from psfkit.optics.fit import fit_psf
    >>> optics = Optics(na=1.2, wavelength=0.6, pixel_size=0.1, z_step=0.25, immersion_index=1.33)
    >>> truth = microscope_psf(optics, (9, 15, 15), aberrations={7: 0.08})
    >>> rng = np.random.default_rng(0)
    >>> stack = rng.poisson(2e4 * truth + 5.0) + 100  # photons + background + camera offset
    >>> psf, fit = fit_psf(stack, optics, indices=(7, 8, 11))
    >>> round(fit.aberrations[7], 2), round(fit.background), fit.snr > 15
    (0.08, 105, True)
    >>> psf.shape, round(float(psf.sum()), 6)
    ((9, 15, 15), 1.0)
    """
    if not isinstance(optics, Optics):
        raise TypeError(f"optics must be a psfkit Optics, got {type(optics).__name__}")
    data = as_float_array(bead_stack, "bead_stack", ndim=(2, 3), dtype=np.float64)
    planar = data.ndim == 2
    if min(data.shape[-2:]) < 5 or (not planar and data.shape[0] < 3):
        raise ValueError(f"bead_stack must be at least 5 x 5 pixels (and 3 planes), got shape {data.shape}")
    if not planar and optics.z_step is None:
        raise ValueError("optics.z_step is needed for a 3-D bead_stack (Z, Y, X); set Optics(z_step=...)")
    if not isinstance(model, str):
        raise TypeError(f"model must be a string, got {model!r}")
    if model == "vectorial":
        raise ValueError("model='vectorial' is not supported by fit_psf (it fits an aberrated pupil, which the "
                         "vectorial model does not have); use model='scalar'")
    check_choice(model, "model", MODELS)
    if optics.modality == "airyscan":
        raise ValueError("optics.modality='airyscan' is not supported by fit_psf; fit Airyscan stacks as "
                         "'confocal' with a small pinhole")
    indices = _check_indices(indices, planar)
    fit_na = check_bool(fit_na, "fit_na")
    fit_sheet = check_bool(fit_sheet, "fit_sheet")
    if fit_sheet and (optics.modality != "lightsheet" or planar):
        raise ValueError("fit_sheet=True needs a light-sheet stack (optics.modality='lightsheet', 3-D bead_stack)")
    diameter, fit_bead = _check_bead_diameter(bead_diameter)
    known_background = _check_background(background)
    if not isinstance(noise, str):
        raise TypeError(f"noise must be a string, got {noise!r}")
    check_choice(noise, "noise", NOISE_MODELS)
    window = _check_window(window, data.shape)
    out_shape = data.shape if shape is None else _check_shape(shape)
    if len(out_shape) != data.ndim:
        raise ValueError(f"shape must have {data.ndim} entries like bead_stack, got {tuple(out_shape)!r}")
    max_iterations = check_int(max_iterations, "max_iterations", minimum=1, maximum=10_000)

    stack = data if not planar else data[None]
    lam_min = min(optics.wavelength, optics.excitation or optics.wavelength)
    na_max = min(0.999 * optics.immersion_index, 0.5 * lam_min / optics.pixel_size)
    if optics.na > na_max:
        raise ValueError(f"optics.na ({optics.na:g}) must be below {na_max:g}: the pupil must fit the pixel band")
    if not data.max() > data.min():
        raise ValueError("bead_stack is constant: there is no bead to fit")
    slices, centre, background0, _ = _locate(data, optics, planar, window)
    region = stack[(slice(None),) + slices] if planar else stack[slices]
    if planar:
        centre = np.concatenate([[0.0], centre])
    if optics.modality == "confocal":
        oversampling = output_oversampling = 1  # a point scan
    else:
        output_oversampling = _default_oversampling(2 * optics.cutoff_frequency)
        # while fitting, pixel integration to ~1e-3 (below shot noise) instead of 1e-5
        oversampling = next(m for m in range(1, output_oversampling + 1)
                            if _gl_error_bound(m, 2 * optics.cutoff_frequency) <= _FIT_QUADRATURE)
    bead_reach = 0.0
    if fit_bead:
        bead_reach = optics.airy_unit  # a calibration bead is smaller than the Airy disk
    elif diameter > 0:
        bead_reach = diameter

    values = {f"c{j}": 0.0 for j in indices}
    values.update(
        na=optics.na, cz=centre[0], cy=centre[1], cx=centre[2], d2=diameter**2,
        sheet=optics.sheet_thickness if optics.modality == "lightsheet" else 1.0,
        background=background0 if known_background is None else known_background, amplitude=1.0,
    )
    lateral = np.array(region.shape[1:], dtype=np.float64)
    bounds = {f"c{j}": (-_MAX_COEFFICIENT, _MAX_COEFFICIENT) for j in indices}
    bounds.update(
        cz=(-0.5, region.shape[0] - 0.5) if not planar else (0.0, 0.0),
        cy=(-0.5, lateral[0] - 0.5), cx=(-0.5, lateral[1] - 0.5),
        na=(0.1, na_max), d2=(0.0, bead_reach**2), sheet=(0.05, 100.0),
        background=(-np.inf, np.inf), amplitude=(0.0, np.inf),
    )
    base = ["amplitude", "cy", "cx"] + ([] if planar else ["cz"])
    base += (["background"] if known_background is None else []) + (["na"] if fit_na else [])
    base += (["d2"] if fit_bead else []) + (["sheet"] if fit_sheet else [])
    aberration_names = [f"c{j}" for j in indices]

    slope = 4.0  # waves per pupil radius the grids hold for aberrations; grown if the fit needs more
    engine_cz = values["cz"]
    engine = _engine(optics, model, region.shape, indices, oversampling, bead_reach, planar, values["cz"], slope,
                     values["na"], na_max)
    image, _ = engine.image(np.zeros(len(indices)), optics.na, (values["cz"], values["cy"], values["cx"]),
                            diameter, values["sheet"])
    scale = 1.0 / image.sum()
    values["amplitude"] = max(float(np.sum(region - values["background"])), 1e-12)
    peak = max(float(np.max(region) - values["background"]), 1e-12 * values["amplitude"])
    offsets = {"cz": values["cz"], "cy": values["cy"], "cx": values["cx"], "background": values["background"]}
    units = {"amplitude": values["amplitude"], "background": peak}

    passes = [base] + ([base + aberration_names] if aberration_names else [])
    passes += passes[-1:] if noise == "poisson" else []
    iterations = 0
    weights = np.ones(region.shape)
    success = True
    for number, names in enumerate(passes):
        for _ in range(3):  # rebuild the pupil grids if the source or the aberrations outgrew them
            problem = _Problem(engine, region, names, values, scale, offsets, units)
            problem.weights = weights
            values, njev, success = _solve(problem, bounds, max_iterations)
            iterations += njev
            need = _zernike_slope(indices, problem.coefficients(values))
            moved = abs(values["cz"] - engine_cz) > _Z_MARGIN - 0.5 or values["na"] > engine.grid_na
            if need <= slope and not moved:
                break
            slope = max(slope, 1.5 * need)
            engine_cz = values["cz"]
            engine = _engine(optics, model, region.shape, indices, oversampling, bead_reach, planar,
                             values["cz"], slope, values["na"], na_max)
        if noise == "poisson" and number < len(passes) - 1:
            fitted = problem.residuals(problem.pack(values)) / problem.weights + region
            weights = 1.0 / np.sqrt(_variance_model(region, fitted, values["background"]))
    return _finish(data, optics, model, planar, slices, region, problem, values, iterations, success, out_shape,
                   output_oversampling)


def _finish(data, optics, model, planar, slices, region, problem, values, iterations, success, out_shape,
            oversampling):
    indices = problem.engine.indices
    coefficients = problem.coefficients(values)
    image, _ = problem.model(values)
    fitted = values["amplitude"] * image + values["background"]
    signal = fitted - values["background"]
    peak = np.unravel_index(int(np.argmax(signal)), signal.shape)
    widths = _fwhm(signal, peak)
    centre = np.array([values["cz"], values["cy"], values["cx"]])
    box = []
    for axis, (n, width) in enumerate(zip(region.shape, widths)):
        if planar and axis == 0:
            box.append(slice(0, 1))
            continue
        c = int(round(centre[axis]))
        half = int(math.ceil(_REGION_FWHM * width))
        box.append(slice(max(c - half, 0), int(min(c + half + 1, n))))
    box = tuple(box)
    measured = region[box] - values["background"]
    snr = 10 * math.log10(np.sum(measured**2) / max(np.sum((region[box] - fitted[box]) ** 2), 1e-300))
    residual = float(np.linalg.norm(region - fitted) / max(np.linalg.norm(region - values["background"]), 1e-300))
    changes = {"na": values["na"]}
    if optics.modality == "lightsheet":
        changes["sheet_thickness"] = values["sheet"]
    if optics.modality == "confocal":  # the same physical pinhole, in Airy units of the fitted NA
        changes["pinhole"] = optics.pinhole * values["na"] / optics.na
    fitted_optics = dataclasses.replace(optics, **changes)
    starts = [s.start for s in slices]
    if planar:
        offset = np.array(starts, dtype=np.float64)
        position = tuple(float(v) for v in centre[1:] + offset)
        region_slices = tuple(slice(b.start + s, b.stop + s) for b, s in zip(box[1:], starts))
    else:
        position = tuple(float(v) for v in centre + np.array(starts))
        region_slices = tuple(slice(b.start + s, b.stop + s) for b, s in zip(box, starts))
    bead_image = fitted[0] if planar else fitted
    bead_image.setflags(write=False)
    out = (1, *out_shape) if planar else tuple(out_shape)
    engine = _bead.BeadModel(
        fitted_optics, model, out, indices, oversampling=oversampling, bead_reach=0.0,
        z_reach=(out[0] // 2, out[0] // 2), slope=_zernike_slope(indices, coefficients), planar=planar,
    )
    psf, _ = engine.image(coefficients, values["na"], (out[0] // 2, out[1] // 2, out[2] // 2), 0.0,
                          values["sheet"])
    psf = np.clip(psf, 0.0, None)
    psf /= psf.sum()
    fit = PSFFit(
        optics=fitted_optics,
        aberrations=types.MappingProxyType({j: float(c) for j, c in zip(indices, coefficients)}),
        na=float(values["na"]),
        background=float(values["background"]),
        amplitude=float(np.sum(signal)),
        centre=position,
        bead_diameter=math.sqrt(max(values["d2"], 0.0)),
        sheet_thickness=float(values["sheet"]) if optics.modality == "lightsheet" else None,
        snr=float(snr),
        region=region_slices,
        residual=residual,
        window=slices,
        model=bead_image,
        iterations=int(iterations),
        success=bool(success),
    )
    return (psf[0] if planar else psf), fit
