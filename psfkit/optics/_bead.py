r"""Forward model of a measured bead stack and its Jacobian: the private engine of :func:`psfkit.fit_psf`.

The model is :func:`psfkit.microscope_psf`'s aberrated pupil (same pupil grid,
band-limited pupil weights, Zernike basis, non-paraxial or paraxial defocus),
evaluated by a matrix Fourier transform at the pixel quadrature nodes of a
fixed grid around the bead, with three additions a fit needs:

- a sub-voxel source position: a lateral shift moves the evaluation points
  (a phase ramp on the pupil), an axial one moves every plane's defocus;
- the derivatives of the intensity with respect to the Zernike coefficients
  and the position, analytic: :math:`\partial_\theta |E|^2 = 2\,\mathrm{Re}
  (\bar E\,\partial_\theta E)` with :math:`\partial_\theta E` the transform of
  the pupil field times :math:`i\,\partial_\theta\phi` -- one more transform
  per parameter;
- the bead: a uniformly fluorescent sphere of diameter ``d``, by its
  transfer function :math:`3(\sin u - u\cos u)/u^3`, :math:`u = \pi d |f|`,
  on a grid padded so that nothing wraps onto the fitted region.

Confocal stacks are point-sampled scans (``h_ex (h_em * D)``, the pinhole
disk ``D`` applied as a compact area-weighted kernel); light-sheet stacks
multiply each plane by the Gaussian sheet profile centred on the source.
Trusted inputs: :mod:`psfkit.optics.fit` validates them.
"""

import math

import numpy as np
from scipy import fft as _fft

from psfkit.optics import _radial
from psfkit.optics import psf as _psf
from psfkit.optics.microscope import _extended_cos

_LN2 = math.log(2.0)
_PINHOLE_TAIL = 3e-3  # kernel mass left outside the cut pinhole kernel: ~1e-4 of the peak against microscope_psf
_CHUNK_BYTES = 64 * 2**20  # single-precision pupil fields of one batch of derivative transforms


def _unit_wavefront(model, na, n, rho):
    """D(rho) with W(rho, s) = s D(rho) (um per um of stage), real, smooth outside the disk."""
    if model == "born-wolf":
        return na * na / (2.0 * n) * rho * rho
    return n - _extended_cos(n, na, rho).real


def _defocus_slope(model, na, n):
    """|dD/drho| at the pupil edge: waves per pupil radius per (um of defocus x 1/lambda)."""
    if model == "born-wolf":
        return na * na / n
    return na * na / math.sqrt(n * n - na * na)


def pupil_samples(model, na, n, wavelength, cutoff, reach, stage, slope):
    """Pupil grid size for one plane (a multiple of 16).

    The rule of :class:`psfkit.optics.microscope._PupilTransform` with the
    defocus spread weighted 6 instead of 24 cells per wave: it holds
    ~1e-4 of the peak against microscope_psf's 1e-5 rule (the accuracy a
    fit of noisy beads needs) on a grid 2-3 times smaller.
    """
    defocus = _defocus_slope(model, na, n) * abs(stage) / wavelength
    need = 2 * _psf._KERNEL_HALF_WIDTH + 3.2 * cutoff * reach + 8.0 * slope + 6.0 * defocus
    return max(_psf._MIN_SAMPLES, _psf._SAMPLES_STEP * math.ceil(need / _psf._SAMPLES_STEP))


def sphere_transfer(frequency, diameter):
    """Transfer function (DC gain 1) of a solid sphere and its derivative in ``diameter**2``.

    The square is the fitted parameter: the derivative in the diameter
    vanishes at 0, where a fit starting from a point source would stay.
    """
    u = np.pi * diameter * frequency
    small = u < 1e-3
    safe = np.where(small, 1.0, u)
    s, c = np.sin(safe), np.cos(safe)
    value = np.where(small, 1.0 - u * u / 10.0, 3.0 * (s - safe * c) / safe**3)
    # d/du of 3 (sin u - u cos u) / u^3 = 3 (3 u cos u + (u^2 - 3) sin u) / u^4, and du/d(d^2) = (pi f)^2 / (2 u)
    du_over_u = np.where(small, -1.0 / 5.0, 3.0 * (3.0 * safe * c + (safe * safe - 3.0) * s) / safe**5)
    return value, du_over_u * (np.pi * frequency) ** 2 / 2.0


def pinhole_kernel(radius, band):
    """Discrete kernel of the pinhole disk (``radius`` pixels) for intensities band-limited to ``band``.

    Convolving the samples of an intensity whose spectrum vanishes beyond
    ``band`` cycles/pixel with this kernel gives the samples of its
    continuous convolution with the disk: the kernel's spectrum is the
    disk's, 2 J1(2 pi R f) / (2 pi R f), up to ``band``, then tapered to 0 at
    Nyquist by a raised cosine, so that it is compact: it is cut where less
    than 0.3 % of its absolute mass lies outside. Sum 1.
    """
    from scipy.special import j1

    n = 4 * (int(math.ceil(radius)) + 16)
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n), indexing="ij"))
    x = 2 * np.pi * radius * f
    disk = np.where(x < 1e-8, 1.0, 2 * j1(np.maximum(x, 1e-8)) / np.maximum(x, 1e-8))
    lo = min(band * 1.02, 0.45)
    taper = np.where(f <= lo, 1.0, np.where(f >= 0.5, 0.0, 0.5 + 0.5 * np.cos(np.pi * (f - lo) / (0.5 - lo))))
    kernel = np.fft.fftshift(np.fft.ifft2(disk * taper).real)
    # the smallest square holding all but _PINHOLE_TAIL of the kernel's absolute mass
    distance = np.abs(np.arange(n) - n // 2)
    ring = np.maximum(distance[:, None], distance[None, :])
    mass = np.bincount(ring.ravel(), np.abs(kernel).ravel())
    outside = mass.sum() - np.cumsum(mass)
    keep = int(np.argmax(outside <= _PINHOLE_TAIL * mass.sum()))
    kernel = kernel[n // 2 - keep : n // 2 + keep + 1, n // 2 - keep : n // 2 + keep + 1]
    return kernel / kernel.sum()


def _right(fields, fx):
    """``fields @ fx`` for a stack of pupil fields (..., M, M), as one large matrix product."""
    m = fields.shape[-1]
    return (fields.reshape(-1, m) @ fx).reshape(*fields.shape[:-1], fx.shape[1])


def _left(fy, halves):
    """``fy @ halves`` for a stack (..., M, N), as one large matrix product (a few large products thread
    and pipeline far better than many small ones)."""
    *lead, m, n = halves.shape
    stacked = np.moveaxis(halves.reshape(-1, m, n), 1, 0).reshape(m, -1)
    out = (fy @ stacked).reshape(fy.shape[0], -1, n)
    return np.moveaxis(out, 1, 0).reshape(*lead, fy.shape[0], n)


class BeadModel:
    """The bead image on a fixed grid (nz, ny, nx), unscaled, and its derivatives.

    Parameters (trusted)
    --------------------
    optics : Optics
    model : 'scalar' or 'born-wolf'
    shape : (nz, ny, nx) of the fitted region; nz = 1 for a single image
        (in focus: no axial position).
    indices : tuple of Noll indices fitted.
    oversampling : Gauss-Legendre nodes per pixel axis (1 for point scans).
    bead_reach : largest bead diameter (um) the padding must hold.
    z_reach : (low, high) plane offsets, in planes, the source may take
        relative to plane 0 of the region (sets the pupil grids).
    slope : Zernike slope budget (waves per pupil radius) for the grids.
    planar : a single image (nz = 1, in focus, no axial position).
    grid_na : largest NA the pupil grids and the pinhole kernel must serve
        (default ``optics.na``). The pinhole keeps the physical size of
        ``optics.pinhole`` Airy units of ``optics.na`` whatever NA is asked.
    """

    def __init__(self, optics, model, shape, indices, *, oversampling, bead_reach, z_reach, slope, planar=False,
                 grid_na=None):
        self.optics = optics
        self.model = model
        self.shape = tuple(shape)
        self.indices = tuple(indices)
        self.oversampling = oversampling
        nz, ny, nx = self.shape
        self.planar = planar
        px = optics.pixel_size
        dz = optics.z_step or 1.0
        grid_na = optics.na if grid_na is None else grid_na
        self.grid_na = grid_na
        radius = bead_reach / 2.0
        self.bead = radius > 0
        self.confocal = optics.modality == "confocal"
        self.pinhole = None
        pad_xy = int(math.ceil(radius / px)) + 2 if radius > 0 else 0
        self.margin = 0  # the emission field's extra margin, for the pinhole
        if self.confocal:
            band = 2 * grid_na * px / optics.wavelength
            self.pinhole = pinhole_kernel(optics.pinhole * optics.airy_unit / 2.0 / px, band)
            self.margin = self.pinhole.shape[0] // 2
        pad_z = 0 if (self.planar or radius == 0) else int(math.ceil(radius / dz)) + 1
        self.pad = (pad_z, pad_xy, pad_xy)
        self.padded = (nz + 2 * pad_z, ny + 2 * pad_xy, nx + 2 * pad_xy)
        self.t, self.w = _radial.pixel_nodes(oversampling)
        # pupil grid per plane, fixed for the whole fit (the objective must not jump)
        reach = max(self.padded[1:]) + 2 * self.margin + 1
        wavelengths = [optics.wavelength] + ([optics.excitation] if self.confocal else [])
        lo, hi = z_reach
        offsets = np.arange(self.padded[0]) - pad_z  # plane index in region coordinates
        farthest = np.maximum(np.abs(offsets - lo), np.abs(offsets - hi)) * (0.0 if self.planar else dz)
        na = grid_na
        samples = []
        for stage in farthest:
            m = 0
            for lam in wavelengths:
                fc = na * px / lam
                m = max(m, pupil_samples(model, na, optics.immersion_index, lam, fc, reach, stage, slope))
            samples.append(m)
        self.samples = np.array(samples)
        self.groups = [(m, np.flatnonzero(self.samples == m)) for m in np.unique(self.samples)]

    # ------------------------------------------------------------------ fields

    def _grids(self, m):
        nu = _psf._pupil_coordinates(m)
        rho = np.hypot(nu[:, None], nu[None, :])
        return nu, rho, _psf._pupil_weights(m), _psf._pupil_basis(self.indices, m)

    def _intensity(self, lam, fc, na, phase_zernike, stages, centre, derivatives, margin=0):
        """Pixel-averaged |E|^2 on the padded grid (nz_p, ny_p, nx_p) (+ ``margin`` pixels) and derivatives.

        ``phase_zernike(m)`` gives -2 pi sum c_j Z_j on the m-grid (radians);
        derivatives: (K + 3, nz_p, ny_p, nx_p) for the coefficients, then
        (cz, cy, cx), or None.
        """
        optics = self.optics
        nzp, nyp, nxp = self.padded
        nyp, nxp = nyp + 2 * margin, nxp + 2 * margin
        os_ = self.oversampling
        _, cy, cx = centre
        ys = ((np.arange(nyp) - self.pad[1] - margin - cy)[:, None] + self.t[None, :]).ravel()
        xs = ((np.arange(nxp) - self.pad[2] - margin - cx)[:, None] + self.t[None, :]).ravel()
        k = 2 * np.pi / lam
        n_k = len(self.indices)
        out = np.empty((nzp, nyp, nxp))
        jac = np.empty((n_k + 3, nzp, nyp, nxp)) if derivatives else None
        dz = 0.0 if self.planar else (optics.z_step or 0.0)
        w = self.w
        weights2 = w[:, None, None] * w[None, None, :]  # (os, 1, os): the pixel's quadrature weights

        def average(values):
            if os_ == 1:
                return values
            return (values.reshape(values.shape[0], nyp, os_, nxp, os_) * weights2).sum(axis=(2, 4))

        for m, planes in self.groups:
            nu, rho, weights, basis = self._grids(m)
            d = _unit_wavefront(self.model, na, optics.immersion_index, rho)
            fy = np.exp(-2j * np.pi * fc * np.outer(ys, nu))
            fx = np.exp(-2j * np.pi * fc * np.outer(nu, xs))
            phase = phase_zernike(m, basis)[None] + k * stages[planes, None, None] * d[None]
            # the cell area: the same scale for every grid size (planes with different grids)
            field = (weights * (nu[1] - nu[0]) ** 2)[None] * np.exp(1j * phase)
            # the field and its lateral-shift derivatives (phase ramps on either side of the transform)
            # from one pair of large products: [fy; ramp fy] @ field @ [fx, ramp fx]
            ramp = 2j * np.pi * fc * nu
            nx2, ny2 = fx.shape[1], fy.shape[0]
            if not derivatives:
                e = _left(fy, _right(field, fx))
                out[planes] = average(e.real**2 + e.imag**2)
                continue
            rows = np.concatenate([fy, fy * ramp[None, :]])
            both = _left(rows, _right(field, np.concatenate([fx, ramp[:, None] * fx], axis=1)))
            e = both[:, :ny2, :nx2]
            out[planes] = average(e.real**2 + e.imag**2)
            er, ei = e.real, e.imag

            def derivative(de):
                return average(2.0 * (er * de.real + ei * de.imag))

            jac[n_k + 2, planes] = derivative(both[:, :ny2, nx2:])
            jac[n_k + 1, planes] = derivative(both[:, ny2:, :nx2])
            # Zernike terms and the axial position: one transform each, batched, in single precision
            multipliers = [-2j * np.pi * (lam / optics.wavelength) * basis[j] for j in range(n_k)]
            # the source deeper by one plane: every focal plane is one step less deep relative to it
            multipliers.append(-1j * k * dz * d)
            field32, fy32, fx32 = field.astype(np.complex64), fy.astype(np.complex64), fx.astype(np.complex64)
            chunk = max(1, _CHUNK_BYTES // (8 * field.size))
            for start in range(0, len(multipliers), chunk):
                block = np.stack(multipliers[start : start + chunk]).astype(np.complex64)
                de = _left(fy32, _right(block[:, None] * field32[None], fx32))
                for i in range(block.shape[0]):
                    jac[(start + i) if start + i < n_k else n_k, planes] = derivative(de[i])
        return out, jac

    def image(self, coefficients, na, centre, diameter, sheet, *, derivatives=False, na_step=None):
        """Unscaled bead image on the region, and (if asked) its derivatives.

        Returns ``(image (nz, ny, nx), jac)`` with ``jac`` a dict: 'coefficients'
        (K, ...), 'centre' (3, ...), 'na', 'diameter', 'sheet' (arrays of the
        region's shape; 'na' by a forward difference of step ``na_step``).
        """
        h, jac = self._point_image(coefficients, na, centre, sheet, derivatives)
        if derivatives and na_step:
            h2, _ = self._point_image(coefficients, na + na_step, centre, sheet, False)
            jac["na"] = (h2 - h) / na_step
        image, dd = self._bead(h, jac, diameter, derivatives)
        if derivatives:
            jac["diameter_sq"] = dd
        return image, jac

    def _point_image(self, coefficients, na, centre, sheet, derivatives):
        optics = self.optics
        lam = optics.wavelength
        nzp = self.padded[0]
        dz = optics.z_step or 0.0
        cz = centre[0]
        z = np.zeros(nzp) if self.planar else (np.arange(nzp) - self.pad[0] - cz) * dz  # focal plane - source
        coefficients = np.asarray(coefficients, dtype=np.float64)

        def zernike(scale):
            def phase(m, basis):
                if len(self.indices) == 0:
                    return np.zeros((m, m))
                return -2 * np.pi * scale * np.tensordot(coefficients, basis, axes=1)

            return phase

        em, d_em = self._intensity(
            lam, na * optics.pixel_size / lam, na, zernike(1.0), z, centre, derivatives, self.margin
        )
        if self.confocal:
            lam_ex = optics.excitation
            ex, d_ex = self._intensity(
                lam_ex, na * optics.pixel_size / lam_ex, na, zernike(lam / lam_ex), z, centre, derivatives
            )
            detected = self._pinhole(em)
            h = ex * detected
            if derivatives:
                d_h = d_ex * detected[None] + ex[None] * self._pinhole(d_em)
        else:
            h = em
            d_h = d_em
        jac = {}
        if derivatives:
            n_k = len(self.indices)
            jac["coefficients"] = d_h[:n_k]
            jac["centre"] = d_h[n_k:]
        if optics.modality == "lightsheet" and not self.planar:
            profile = np.exp(-4 * _LN2 * (z / sheet) ** 2)
            h = h * profile[:, None, None]
            if derivatives:
                jac["coefficients"] = jac["coefficients"] * profile[:, None, None]
                jac["centre"] = jac["centre"] * profile[:, None, None]
                # d profile / d cz = profile * 8 ln2 z dz / sheet^2; d / d sheet = profile * 8 ln2 z^2 / sheet^3
                jac["centre"][0] += h * (8 * _LN2 * z * dz / sheet**2)[:, None, None]
                jac["sheet"] = h * (8 * _LN2 * z**2 / sheet**3)[:, None, None]
        return h, jac

    def _pinhole(self, values):
        """values * pinhole disk over the last two axes, less the margin (no wrap onto the region)."""
        from scipy.signal import fftconvolve

        kernel = self.pinhole.reshape((1,) * (values.ndim - 2) + self.pinhole.shape)
        return fftconvolve(values, kernel, mode="valid", axes=(-2, -1))

    def _bead(self, h, jac, diameter, derivatives):
        """Convolve with the sphere, crop to the region; the derivative in diameter**2 if asked."""
        pz, py, px_ = self.pad
        nz, ny, nx = self.shape
        region = (slice(pz, pz + nz), slice(py, py + ny), slice(px_, px_ + nx))
        if not self.bead:
            for key in list(jac):
                jac[key] = jac[key][(Ellipsis, *region)]
            return h[region], (np.zeros(self.shape) if derivatives else None)
        optics = self.optics
        shape = h.shape
        fy, fx = _fft.fftfreq(shape[1], optics.pixel_size), _fft.rfftfreq(shape[2], optics.pixel_size)
        fz = np.zeros(1) if self.planar else _fft.fftfreq(shape[0], optics.z_step)
        f = np.sqrt(fz[:, None, None] ** 2 + fy[None, :, None] ** 2 + fx[None, None, :] ** 2)
        transfer, d_transfer = sphere_transfer(f, diameter)
        if self.planar:  # a single image: the sphere's projection (the PSF's own z-variation neglected)
            transfer, d_transfer = transfer[0], d_transfer[0]
        axes = (-2, -1) if self.planar else (-3, -2, -1)
        s = shape[-2:] if self.planar else shape

        def convolve(spectrum, kernel):
            return _fft.irfftn(spectrum * kernel, s=s, axes=axes, workers=-1)[(Ellipsis, *region)]

        spectrum = _fft.rfftn(h, axes=axes, workers=-1)
        image = convolve(spectrum, transfer)
        d_diameter = None
        if derivatives:
            d_diameter = convolve(spectrum, d_transfer)
            for key in list(jac):
                jac[key] = convolve(_fft.rfftn(jac[key], axes=axes, workers=-1), transfer)
        return image, d_diameter
