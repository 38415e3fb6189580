r"""Microscope optics and their 2-D / 3-D PSFs: widefield, confocal, Airyscan, light-sheet.

:class:`Optics` holds what a microscope image needs to be modelled (NA,
wavelengths, voxel size, refractive indices, modality) in micrometres;
:func:`microscope_psf` turns it into a pixel-integrated PSF on a 2-D or 3-D
grid. The 2-D, aberration-free, in-focus widefield plane is the Airy pattern
of :func:`psfkit.zernike_psf` with ``cutoff = optics.cutoff_frequency``,
integrated over each pixel; Zernike aberrations use the same pupil, units
(waves RMS, Noll) and sign convention.

Axes and units: arrays are ``(z, y, x)``; lengths are micrometres; the axial
coordinate ``z`` is the position of the focal plane relative to the point
source, positive away from the objective (deeper into the sample).
"""

import dataclasses
import math
import os
import re
from collections.abc import Mapping

import numpy as np

from psfkit._validation import check_choice, check_int, check_positive
from psfkit.optics import _radial

__all__ = ["Optics", "microscope_psf"]

MODALITIES = ("widefield", "confocal", "airyscan", "lightsheet")
MODELS = ("born-wolf", "scalar", "vectorial")
_MAX_SIDE = 4096
_MAX_OVERSAMPLING = 15
_DEFAULT_PINHOLE = {"confocal": 1.0, "airyscan": 1.25}  # Airy units (diameters)
_GL_TOLERANCE = 1e-5  # bound on the pixel-quadrature error at the top of the intensity spectrum


# --------------------------------------------------------------------------- Optics


def _positive(value, name, *, allow_zero=False, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    check_positive(value, name, strict=not allow_zero)
    return float(value)


@dataclasses.dataclass(frozen=True)
class Optics:
    r"""A microscope's optics, in micrometres: the input of :func:`microscope_psf`.

    Parameters
    ----------
    na : float
        Numerical aperture of the objective, ``0 < na < immersion_index``.
    wavelength : float
        Emission (detection) wavelength in um.
    pixel_size : float
        Pixel size in the sample plane in um (camera pixel / magnification,
        or the scan step of a point-scanning system).
    z_step : float, optional
        Axial step of a stack in um; needed for 3-D PSFs.
    immersion_index : float
        Refractive index of the immersion medium (default 1.515, oil).
    sample_index : float, optional
        Refractive index of the sample (default: ``immersion_index``, no
        mismatch). A mismatch matters for sources below the coverslip (the
        ``depth`` of :func:`microscope_psf`).
    modality : {'widefield', 'confocal', 'airyscan', 'lightsheet'}
        Imaging mode (see :func:`microscope_psf` for the models).
    excitation : float, optional
        Excitation wavelength in um; required for ``'confocal'`` and
        ``'airyscan'``, ignored otherwise.
    pinhole : float, optional
        Confocal pinhole diameter in Airy units (1 AU = 1.22 ``wavelength`` /
        ``na`` back-projected to the sample), ``>= 0`` (0 is a closed
        pinhole); for ``'airyscan'`` the diameter of the detector array.
        Defaults: 1.0 AU (confocal), 1.25 AU (Airyscan); ignored otherwise.
    reassignment : float
        Airyscan pixel-reassignment factor :math:`\beta \in [0, 1]` (default
        1/2: each detector element's signal is placed halfway between the
        excitation spot and the element).
    sheet_thickness : float, optional
        Light-sheet FWHM thickness in um along z; required for
        ``'lightsheet'``, ignored otherwise.

    Raises
    ------
    TypeError
        For a non-numeric field.
    ValueError
        For non-positive or non-finite values, ``na >= immersion_index``, an
        unknown modality, or a field the modality requires but is missing;
        the message names the field.

    See Also
    --------
    microscope_psf : the PSF of these optics.
    psfkit.cutoff_frequency : the same :math:`f_c` from separate numbers.

    Notes
    -----
    :attr:`cutoff_frequency` is the pupil radius
    :math:`f_c = \mathrm{NA}\,\Delta x/\lambda` in cycles/pixel used by
    :func:`psfkit.zernike_psf`; the widefield OTF extends to :math:`2 f_c`
    (under-sampled above 0.25). A confocal or Airyscan PSF is the product of
    the excitation and (pinhole-filtered) emission PSFs, so its OTF extends
    to :math:`2 f_c + 2 f_{c,ex}` with
    :math:`f_{c,ex} = \mathrm{NA}\,\Delta x/\lambda_{ex}` -- about twice the
    widefield support, which the pinhole and the detector array weight down
    rather than cut.

    The class is frozen: use :func:`dataclasses.replace` to change a field.

    Examples
    --------
    >>> from psfkit.optics.microscope import Optics
    >>> optics = Optics(na=1.4, wavelength=0.52, pixel_size=0.065, z_step=0.2)
    >>> round(optics.cutoff_frequency, 4), optics.sample_index
    (0.175, 1.515)
    >>> Optics(na=1.4, wavelength=0.52, pixel_size=0.05, modality="confocal", excitation=0.488).pinhole
    1.0
    >>> Optics(na=1.6, wavelength=0.52, pixel_size=0.065)
    Traceback (most recent call last):
    ...
    ValueError: na must be smaller than immersion_index (1.515), got 1.6
    """

    na: float
    wavelength: float
    pixel_size: float
    z_step: float | None = None
    immersion_index: float = 1.515
    sample_index: float | None = None
    modality: str = "widefield"
    excitation: float | None = None
    pinhole: float | None = None
    reassignment: float = 0.5
    sheet_thickness: float | None = None

    def __post_init__(self):
        set_ = object.__setattr__.__get__(self)  # frozen: normalise the fields once, here
        for name in ("na", "wavelength", "pixel_size", "immersion_index"):
            set_(name, _positive(getattr(self, name), name))
        for name in ("z_step", "sample_index", "excitation", "sheet_thickness"):
            set_(name, _positive(getattr(self, name), name, allow_none=True))
        set_("pinhole", _positive(self.pinhole, "pinhole", allow_zero=True, allow_none=True))
        set_("reassignment", _positive(self.reassignment, "reassignment", allow_zero=True))
        if self.immersion_index < 1:
            raise ValueError(f"immersion_index must be >= 1, got {self.immersion_index!r}")
        if self.sample_index is None:
            set_("sample_index", self.immersion_index)
        elif self.sample_index < 1:
            raise ValueError(f"sample_index must be >= 1, got {self.sample_index!r}")
        if self.na >= self.immersion_index:
            raise ValueError(f"na must be smaller than immersion_index ({self.immersion_index:g}), got {self.na:g}")
        if not isinstance(self.modality, str):
            raise TypeError(f"modality must be a string, got {self.modality!r}")
        check_choice(self.modality, "modality", MODALITIES)
        if self.reassignment > 1:
            raise ValueError(f"reassignment must be in [0, 1], got {self.reassignment!r}")
        if self.modality in _DEFAULT_PINHOLE:
            if self.excitation is None:
                raise ValueError(f"excitation (the excitation wavelength in um) is required for {self.modality!r}")
            if self.pinhole is None:
                set_("pinhole", _DEFAULT_PINHOLE[self.modality])
            if self.modality == "airyscan" and self.pinhole == 0:
                raise ValueError("pinhole (the Airyscan detector array diameter) must be > 0, got 0.0")
        if self.modality == "lightsheet" and self.sheet_thickness is None:
            raise ValueError("sheet_thickness (the light sheet's FWHM in um) is required for 'lightsheet'")

    @property
    def cutoff_frequency(self):
        """Pupil radius :math:`f_c = \\mathrm{NA}\\,\\Delta x / \\lambda` in cycles/pixel (emission)."""
        return self.na * self.pixel_size / self.wavelength

    @property
    def airy_unit(self):
        """One Airy unit, ``1.22 wavelength / na``, in um (the diameter of the Airy disk)."""
        return 1.22 * self.wavelength / self.na

    @classmethod
    def from_tiff(cls, path, **fields):
        r"""Optics with the voxel size (and what else is stored) read from a TIFF file.

        Parameters
        ----------
        path : str or os.PathLike
            A TIFF file with ImageJ or OME-XML metadata.
        **fields
            The other :class:`Optics` fields (``na``, ``wavelength``,
            ``modality``, ...). A field given here overrides the file.

        Returns
        -------
        optics : Optics

        Raises
        ------
        ImportError
            Without tifffile (``pip install psfkit[io]``).
        ValueError
            When a required field (``na``, ``wavelength``, ``pixel_size``) is
            neither in the file nor in ``fields``, or the file's x and y pixel
            sizes differ.

        Notes
        -----
        Read, in this order of precedence (all converted to um):

        - OME-XML: ``Pixels`` ``PhysicalSizeX/Y/Z`` with their units, the
          objective's ``LensNA``, the first channel's ``EmissionWavelength``
          and ``ExcitationWavelength``, ``ObjectiveSettings``
          ``RefractiveIndex``;
        - ImageJ: the ``XResolution``/``YResolution`` tags (pixels per unit)
          with the ``unit`` (or ``yunit``) of the ImageJ description, and its
          ``spacing`` (z step, in ``zunit`` or ``unit``);
        - plain TIFF: ``XResolution``/``YResolution`` with ``ResolutionUnit``
          centimetre. Inch resolutions are display dots-per-inch, not a
          calibration, and are ignored, as are files with no unit.

        Examples
        --------
        >>> import tempfile, pathlib, numpy as np, tifffile
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "stack.tif"
        >>> tifffile.imwrite(path, np.zeros((3, 8, 8), np.uint16), imagej=True,
        ...                  resolution=(1 / 0.1, 1 / 0.1), metadata={"unit": "um", "spacing": 0.3})
        >>> optics = Optics.from_tiff(path, na=1.4, wavelength=0.52)
        >>> round(optics.pixel_size, 6), round(optics.z_step, 6)
        (0.1, 0.3)
        """
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
        try:
            import tifffile
        except ImportError as error:  # pragma: no cover - optional extra
            raise ImportError("Optics.from_tiff needs tifffile (pip install psfkit[io])") from error
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(fields) - names)
        if unknown:
            expected = ", ".join(sorted(names))
            raise TypeError(f"unknown Optics field(s) {', '.join(unknown)}; expected some of {expected}")
        with tifffile.TiffFile(path) as tif:
            found = _tiff_metadata(tif)
        values = {**found, **fields}
        missing = [name for name in ("na", "wavelength", "pixel_size") if values.get(name) is None]
        if missing:
            stored = ", ".join(f"{k}={v:g}" for k, v in sorted(found.items())) or "nothing usable"
            raise ValueError(
                f"{', '.join(missing)} not found in the metadata of {os.fspath(path)} (it gives {stored}); "
                f"pass {', '.join(m + '=...' for m in missing)} (lengths in um)"
            )
        return cls(**values)


# --------------------------------------------------------------------------- TIFF metadata

_UNITS = {
    "m": 1e6,
    "cm": 1e4,
    "mm": 1e3,
    "um": 1.0,
    "µm": 1.0,
    "μm": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "micrometre": 1.0,
    "nm": 1e-3,
    "nanometer": 1e-3,
    "nanometre": 1e-3,
    "pm": 1e-6,
    "å": 1e-4,
    "angstrom": 1e-4,
}


def _unit_scale(unit):
    """Micrometres per ``unit`` (ImageJ writes non-ASCII as ``\\u00B5``), or None."""
    if not isinstance(unit, str):
        return None
    unit = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), unit).strip()
    return _UNITS.get(unit) or _UNITS.get(unit.lower())


def _resolution(page, tag):
    """Pixels per unit from an X/YResolution tag, or None."""
    entry = page.tags.get(tag)
    if entry is None:
        return None
    value = entry.value
    ratio = value[0] / value[1] if isinstance(value, tuple) and value[1] else float(value)
    return ratio if ratio > 0 and math.isfinite(ratio) else None


def _pixel_from(page, x_scale, y_scale):
    x_res, y_res = _resolution(page, "XResolution"), _resolution(page, "YResolution")
    if x_res is None or x_scale is None:
        return None
    px = x_scale / x_res
    py = y_scale / y_res if (y_res is not None and y_scale is not None) else px
    if abs(px - py) > 1e-3 * px:
        raise ValueError(f"the file has anisotropic pixels ({px:g} x {py:g} um); pass pixel_size=... explicitly")
    return px


def _tiff_metadata(tif):
    """The Optics fields stored in an open tifffile.TiffFile (lengths in um)."""
    found = {}
    page = tif.pages[0]
    if tif.is_ome and tif.ome_metadata:
        found.update(_ome_metadata(tif.ome_metadata))
    ij = tif.imagej_metadata or {}
    if ij and "pixel_size" not in found:
        x_scale = _unit_scale(ij.get("unit"))
        y_scale = _unit_scale(ij.get("yunit", ij.get("unit")))
        pixel = _pixel_from(page, x_scale, y_scale)
        if pixel is not None:
            found["pixel_size"] = pixel
    if ij and "z_step" not in found and ij.get("spacing"):
        z_scale = _unit_scale(ij.get("zunit", ij.get("unit")))
        if z_scale is not None:
            found["z_step"] = float(ij["spacing"]) * z_scale
    unit = page.tags.get("ResolutionUnit")
    if "pixel_size" not in found and unit is not None and int(unit.value) == 3:  # centimetre
        pixel = _pixel_from(page, 1e4, 1e4)
        if pixel is not None:
            found["pixel_size"] = pixel
    return found


def _ome_metadata(xml):
    """PhysicalSize, NA, wavelengths and immersion index from OME-XML (first image, first channel)."""
    import xml.etree.ElementTree as ElementTree

    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError:
        return {}

    def local(element):
        return element.tag.rsplit("}", 1)[-1]

    def length(element, name, default_unit):
        value = element.get(name)
        scale = _unit_scale(element.get(name + "Unit", default_unit))
        if value is None or scale is None:
            return None
        value = float(value) * scale
        return value if value > 0 and math.isfinite(value) else None

    found = {}
    elements = list(root.iter())
    pixels = next((e for e in elements if local(e) == "Pixels"), None)
    if pixels is not None:
        px, py = length(pixels, "PhysicalSizeX", "µm"), length(pixels, "PhysicalSizeY", "µm")
        if px is not None:
            if py is not None and abs(px - py) > 1e-3 * px:
                raise ValueError(f"the file has anisotropic pixels ({px:g} x {py:g} um); pass pixel_size=...")
            found["pixel_size"] = px
        pz = length(pixels, "PhysicalSizeZ", "µm")
        if pz is not None:
            found["z_step"] = pz
        channel = next((e for e in pixels if local(e) == "Channel"), None)
        if channel is not None:
            for name, key in (("EmissionWavelength", "wavelength"), ("ExcitationWavelength", "excitation")):
                value = length(channel, name, "nm")
                if value is not None:
                    found[key] = value
    objective = next((e for e in elements if local(e) == "Objective"), None)
    if objective is not None and objective.get("LensNA"):
        found["na"] = float(objective.get("LensNA"))
    settings = next((e for e in elements if local(e) == "ObjectiveSettings"), None)
    if settings is not None and settings.get("RefractiveIndex"):
        found["immersion_index"] = float(settings.get("RefractiveIndex"))
    return found


# --------------------------------------------------------------------------- microscope_psf


def _check_shape(shape):
    if isinstance(shape, (str, bytes)) or not hasattr(shape, "__len__"):
        raise TypeError(f"shape must be a tuple (ny, nx) or (nz, ny, nx) of integers, got {shape!r}")
    if len(shape) not in (2, 3):
        raise ValueError(f"shape must have 2 or 3 entries, (ny, nx) or (nz, ny, nx), got {tuple(shape)!r}")
    return tuple(check_int(n, "shape", minimum=1, maximum=_MAX_SIDE) for n in shape)


def _check_aberrations(aberrations):
    """Return ``(indices, coefficients)`` of the non-zero terms that change the PSF (piston dropped)."""
    if aberrations is None:
        return (), np.zeros(0)
    if not isinstance(aberrations, Mapping):
        kind = type(aberrations).__name__
        raise TypeError(f"aberrations must be a mapping {{noll_index: waves}} or None, got {kind}")
    from psfkit.optics.psf import _parse_coefficients

    try:
        coef, indices, _ = _parse_coefficients(dict(aberrations), None)
    except (TypeError, ValueError) as error:  # zernike_psf's messages name its own argument
        raise type(error)(str(error).replace("coefficients", "aberrations", 1)) from None
    keep = [i for i, j in enumerate(indices) if j != 1 and coef[0, i] != 0]
    return tuple(indices[i] for i in keep), coef[0, keep]


def _gl_error_bound(m, bandwidth):
    """Gauss-Legendre error bound for the pixel average of exp(2 i pi f x), |f| <= bandwidth (cycles/pixel)."""
    c = math.factorial(m) ** 4 / ((2 * m + 1) * math.factorial(2 * m) ** 3)
    return c * (2 * np.pi * bandwidth) ** (2 * m)


def _default_oversampling(bandwidth):
    """Fewest Gauss-Legendre nodes per pixel axis whose error bound at the top frequency is <= 1e-5."""
    for m in range(1, _MAX_OVERSAMPLING + 1):
        if _gl_error_bound(m, bandwidth) <= _GL_TOLERANCE:
            return m
    return _MAX_OVERSAMPLING


def microscope_psf(optics, shape, *, model="scalar", aberrations=None, depth=0.0, oversampling=None):
    r"""Pixel-integrated 2-D or 3-D PSF of a widefield, confocal, Airyscan or light-sheet microscope.

    Parameters
    ----------
    optics : Optics
        The microscope (NA, wavelengths, voxel size, indices, modality).
    shape : tuple of int
        ``(ny, nx)`` for the in-focus plane, ``(nz, ny, nx)`` for a stack
        (needs ``optics.z_step``). Odd or even sizes; the PSF is centred at
        index ``n // 2`` on every axis (for even ``n`` the extra row is on
        the negative side: offsets ``-n/2 .. n/2 - 1``).
    model : {'scalar', 'born-wolf', 'vectorial'}
        Diffraction model (see Notes). ``'born-wolf'`` is the paraxial model
        of deconwolf and most deconvolution software; ``'scalar'`` (default)
        is non-paraxial and models index mismatch; ``'vectorial'`` adds
        high-NA polarisation (Richards-Wolf), without aberrations.
    aberrations : mapping, optional
        Zernike coefficients ``{noll_index: waves RMS}`` of the detection
        pupil at ``optics.wavelength`` -- the convention of
        :func:`psfkit.zernike_psf` (for confocal and Airyscan the same
        wavefront, in um, also aberrates the excitation). Aberrations break
        the rotational symmetry and switch to a slower 2-D pupil transform
        (confocal and Airyscan: one per node of the pinhole / detector disk);
        not available for ``'vectorial'``.
    depth : float
        Depth of the point source below the coverslip in um (``>= 0``).
        With ``optics.sample_index != optics.immersion_index`` it sets the
        Gibson-Lanni spherical aberration; the PSF stays centred on its best
        focus (the focal shift is removed).
    oversampling : int, optional
        Gauss-Legendre nodes per pixel axis for the integration over each
        pixel's area (``1``: point samples at the pixel centres). By default
        the fewest nodes whose error bound at the top of the PSF's spectrum
        is below 1e-5 (3 to 7 for common optics).

    Returns
    -------
    psf : (ny, nx) or (nz, ny, nx) ndarray
        Non-negative float64 PSF summing to 1 over the array.

    Raises
    ------
    TypeError
        If ``optics`` is not an :class:`Optics`, or for arguments of the
        wrong type.
    ValueError
        For a bad shape, model, depth or oversampling, a 3-D shape without
        ``optics.z_step``, or a Born-Wolf PSF asked for a depth in a
        mismatched sample.
        Also for ``aberrations`` with ``model='vectorial'`` (the vectorial
        model is aberration-free here).

    See Also
    --------
    Optics : the microscope description.
    psfkit.zernike_psf : the 2-D point-sampled PSF of an aberrated pupil.

    Notes
    -----
    **Pupil models** (:math:`k = 2\pi/\lambda`, :math:`\rho` the normalised
    pupil radius, :math:`\mathrm{NA} = n \sin\alpha`). The scalar field of an
    aberration-free pupil is a Hankel transform

    .. math::

        h(r, z) = \Bigl|\int_0^1 J_0(k\,\mathrm{NA}\,r\rho)\,
        e^{i k W(\rho, z)}\,\rho\,d\rho\Bigr|^2,

    - ``'born-wolf'`` (paraxial [1]_):
      :math:`W = z\,\mathrm{NA}^2\rho^2/(2n)`; FWHM
      :math:`\approx 0.51\lambda/\mathrm{NA}` laterally,
      :math:`1.77\,n\lambda/\mathrm{NA}^2` axially -- the latter 1.46x too
      long at NA 1.45. What deconwolf's ``dw_bw`` computes.
    - ``'scalar'`` (Gibson-Lanni [2]_): :math:`W = d\,n_s\cos\theta_s -
      s\,n_i\cos\theta_i` with :math:`n\cos\theta = \sqrt{n^2 -
      \mathrm{NA}^2\rho^2}` (complex, i.e. evanescent, past the critical
      angle), ``d`` the depth, ``s`` the stage (nominal focus) position
      and ``z = s - s*`` with ``s*`` the best focus; with matched indices
      :math:`W = -z\sqrt{n^2 - \mathrm{NA}^2\rho^2}`, the angular-spectrum
      propagator. The coverslip is assumed as designed.
    - ``'vectorial'`` (Richards-Wolf [3]_, isotropic emitter):
      :math:`|I_0|^2 + 2|I_1|^2 + |I_2|^2` with
      :math:`I_m = \int_0^1 g_m J_m(k\,\mathrm{NA}\,r\rho)\,e^{ikW}\rho\,d\rho
      / \sqrt{\cos\theta}`, :math:`g_0 = 1 + \cos\theta`,
      :math:`g_1 = \sin\theta`, :math:`g_2 = 1 - \cos\theta` (aplanatic
      :math:`\sqrt{\cos\theta}` apodisation); index mismatch enters through
      ``W`` only (no Fresnel coefficients).

    In zernike_psf's convention (pupil phase :math:`e^{-2i\pi\varphi}`,
    forward transform) these phases are :math:`\varphi = -W/\lambda`: a
    focal plane deeper than the source (``z > 0``) acts like a Noll-4
    coefficient :math:`-z\,\mathrm{NA}^2/(4\sqrt3\,n\lambda)` waves
    (paraxially). Aberrations add :math:`\sum_j a_j Z_j(\rho, \theta)`.

    **Modalities.** With :math:`h_{em}` at ``wavelength`` and
    :math:`h_{ex}` at ``excitation`` (same NA, same aberrations in um):

    - widefield: :math:`h_{em}`;
    - confocal: :math:`h_{ex}\,(h_{em} \ast D)`, ``D`` the disk of diameter
      ``pinhole`` x 1.22 ``wavelength``/``na`` (back-projected pinhole);
    - Airyscan / image scanning microscopy with pixel reassignment [4]_ [5]_:
      :math:`h(\mathbf r) = \int_{|\mathbf d| \le D/2}
      h_{ex}(\mathbf r + \beta\mathbf d)\,
      h_{em}(\mathbf r - (1-\beta)\mathbf d)\,d\mathbf d`, the detector
      array (32 elements of ~0.2 AU on a ``pinhole`` = 1.25 AU hexagon)
      modelled as a continuous disk, :math:`\beta` = ``reassignment``. This is
      the raw reassigned image; Zeiss's processed Airyscan output
      additionally deconvolves (~0.2-AU confocal resolution [6]_);
    - light-sheet: :math:`h_{em}(x, y, z)\,S(z)`,
      :math:`S = \exp(-4\ln 2\,z^2/\mathrm{FWHM}^2)` with FWHM =
      ``sheet_thickness``, the sheet taken uniform across the field
      (its Rayleigh length much larger than the PSF window).

    **Sampling.** Each value is the average of the PSF over its pixel's area
    (the camera pixel), by Gauss-Legendre quadrature with ``oversampling``
    nodes per axis, so under-sampled optics (:math:`f_c > 0.25`) give the
    correct aliased, pixel-integrated PSF; the axial direction is
    point-sampled (the focal plane is a plane), as in deconwolf. For
    point-scanning modalities pass ``oversampling=1`` to get point samples.
    Without aberrations the PSF is rotationally symmetric: ``h(r, z)`` is
    computed once on a fine radial grid (Gauss-Legendre in :math:`\rho`,
    cubic interpolation, error ~1e-6) and every pixel average is a fixed
    sparse combination of it, shared by all planes. Aberrated PSFs use the
    band-limited pupil of :func:`psfkit.zernike_psf` and a matrix Fourier
    transform evaluated at the quadrature nodes (no wrap-around, relative
    error ~1e-5 against the radial model); at ``z = 0`` and ``depth = 0``
    with ``oversampling=1`` they equal ``zernike_psf``. The pinhole and
    detector-disk integrals use polar Gauss-Legendre nodes, a shifted
    field being a phase ramp on the pupil. With a sample index below the
    NA (evanescent angles) and a depth, aberrated PSFs are accurate to
    ~1e-3 only: the sample's :math:`\cos\theta_s` has a branch point inside
    the pupil, which the radial model handles and the 2-D grid does not.

    References
    ----------
    .. [1] M. Born and E. Wolf, *Principles of Optics*, 7th ed., Cambridge
           University Press (1999), section 8.8.
    .. [2] S. F. Gibson and F. Lanni, "Experimental test of an analytical
           model of aberration in an oil-immersion objective lens used in
           three-dimensional light microscopy", J. Opt. Soc. Am. A 8,
           1601-1613 (1991). :doi:`10.1364/JOSAA.8.001601`
    .. [3] B. Richards and E. Wolf, "Electromagnetic diffraction in optical
           systems II", Proc. R. Soc. Lond. A 253, 358-379 (1959).
           :doi:`10.1098/rspa.1959.0200`
    .. [4] C. J. R. Sheppard, "Super-resolution in confocal imaging", Optik
           80, 53-54 (1988).
    .. [5] C. B. Müller and J. Enderlein, "Image scanning microscopy", Phys.
           Rev. Lett. 104, 198101 (2010). :doi:`10.1103/PhysRevLett.104.198101`
    .. [6] T. Korobchevskaya, L. Lagomarsino, et al., "Exploring the
           potential of Airyscan microscopy for live cell imaging",
           Photonics 4, 41 (2017). :doi:`10.3390/photonics4030041`

    Examples
    --------
    >>> import numpy as np
    >>> from psfkit.optics.microscope import Optics, microscope_psf
    >>> optics = Optics(na=1.4, wavelength=0.52, pixel_size=0.065, z_step=0.2)
    >>> psf = microscope_psf(optics, (21, 32, 32))
    >>> psf.shape, psf.dtype, round(float(psf.sum()), 12)
    ((21, 32, 32), dtype('float64'), 1.0)
    >>> np.unravel_index(psf.argmax(), psf.shape)
    (np.int64(10), np.int64(16), np.int64(16))

    The in-focus plane with coma, in zernike_psf's convention:

    >>> plane = microscope_psf(optics, (33, 33), aberrations={7: 0.1}, oversampling=1)
    >>> from psfkit import zernike_psf
    >>> reference = zernike_psf({7: 0.1}, cutoff=optics.cutoff_frequency, size=33)
    >>> bool(np.abs(plane - reference).max() < 1e-6 * reference.max())
    True

    A confocal PSF is narrower than the widefield one:

    >>> import dataclasses
    >>> confocal = dataclasses.replace(optics, modality="confocal", excitation=0.488)
    >>> float(microscope_psf(confocal, (33, 33)).max()) > float(microscope_psf(optics, (33, 33)).max())
    True
    """
    if not isinstance(optics, Optics):
        raise TypeError(f"optics must be a psfkit Optics, got {type(optics).__name__}")
    shape = _check_shape(shape)
    if not isinstance(model, str):
        raise TypeError(f"model must be a string, got {model!r}")
    check_choice(model, "model", MODELS)
    indices, coefficients = _check_aberrations(aberrations)
    depth = _positive(depth, "depth", allow_zero=True)
    oversampling = check_int(oversampling, "oversampling", minimum=1, maximum=_MAX_OVERSAMPLING, allow_none=True)
    if len(shape) == 3 and optics.z_step is None:
        raise ValueError("optics.z_step is needed for a 3-D shape (nz, ny, nx); set Optics(z_step=...)")
    mismatch = optics.sample_index != optics.immersion_index
    if model == "born-wolf" and mismatch and depth > 0:
        raise ValueError(
            "model 'born-wolf' has no index mismatch: use model='scalar' for a depth in a sample whose index "
            f"({optics.sample_index:g}) differs from the immersion's ({optics.immersion_index:g})"
        )
    if indices and model == "vectorial":
        raise ValueError("aberrations are not supported with model='vectorial' (aberration-free only); use model='scalar'")

    nz, ny, nx = (1, *shape) if len(shape) == 2 else shape
    z = (np.arange(nz) - nz // 2) * (optics.z_step or 0.0)
    bandwidth = 2 * optics.cutoff_frequency  # of the intensity, cycles/pixel
    if optics.modality in ("confocal", "airyscan"):
        bandwidth += 2 * optics.na * optics.pixel_size / optics.excitation
    if oversampling is None:
        oversampling = _default_oversampling(bandwidth)
    pupils = _pupils(optics, model, depth)
    focus = _radial.best_focus(pupils)
    if indices:
        psf = _aberrated(optics, pupils, (ny, nx), focus + z, oversampling, indices, coefficients)
    else:
        psf = _symmetric(optics, pupils, (ny, nx), focus + z, oversampling)
    if optics.modality == "lightsheet":
        psf *= np.exp(-4 * math.log(2) * (z / optics.sheet_thickness) ** 2)[:, None, None]
    psf = np.clip(psf, 0.0, None)  # interpolation round-off far in the tails
    psf /= psf.sum()
    return psf[0] if len(shape) == 2 else psf


def _pupils(optics, model, depth):
    """Emission pupil, then the excitation one for confocal and Airyscan."""
    emission = _radial.Pupil(optics.na, optics.wavelength, optics.immersion_index, optics.sample_index, depth, model)
    if optics.modality not in ("confocal", "airyscan"):
        return [emission]
    return [emission, emission._replace(wavelength=optics.excitation)]


def _symmetric(optics, pupils, plane, stage, oversampling):
    """Aberration-free PSF (nz, ny, nx), unnormalised, from radial profiles."""
    ny, nx = plane
    a, b, index = _radial.octant_layout(ny, nx)
    reach = int(a.max())
    r_max = optics.pixel_size * math.hypot(reach + 0.5, reach + 0.5)
    bandwidths = [2 * p.na / p.wavelength for p in pupils]  # cycles/um of each intensity
    grid = _radial.RadialGrid.covering(r_max, _radial.RADIAL_STEP / sum(bandwidths))
    profile = _modality_profile(optics, pupils, grid, stage)
    pixels = _radial.pixel_matrix(a, b, optics.pixel_size, oversampling, grid)
    values = pixels @ profile  # (octant pixels, planes)
    return np.ascontiguousarray(values.T)[:, index]


def _modality_profile(optics, pupils, grid, stage):
    """Radial profile h(r, s) of the modality on ``grid`` (unnormalised, no light sheet), (grid.size, S)."""
    emission = pupils[0]
    bandwidths = [2 * p.na / p.wavelength for p in pupils]
    r_max = grid.radii[-1]
    if optics.modality in ("widefield", "lightsheet"):
        return _radial.intensity(emission, grid.radii, stage)
    if optics.modality == "confocal":
        radius = optics.pinhole * optics.airy_unit / 2
        wide = _radial.RadialGrid.covering(r_max + radius, grid.step)
        pinhole = _radial.pinhole_matrix(grid, wide, radius, bandwidths[0])
        detected = pinhole @ _radial.intensity(emission, wide.radii, stage)
        return _radial.intensity(pupils[1], grid.radii, stage) * detected
    return _ism_profile(optics, pupils, grid, r_max, stage, bandwidths)


def _continuous_fwhm(optics, *, model="scalar", depth=0.0, step=None):
    """Lateral and axial FWHM (um) of the continuous PSF (no pixels), through its best focus.

    Lateral: the radial profile in the best-focus plane; axial: the on-axis
    profile (times the light sheet). Half-maximum crossings by cubic
    interpolation on fine grids. For tests and benchmarks.
    """
    from scipy.interpolate import CubicSpline

    pupils = _pupils(optics, model, depth)
    focus = _radial.best_focus(pupils)
    lateral_scale = 0.51 * optics.wavelength / optics.na
    grid = _radial.RadialGrid.covering(3 * lateral_scale, lateral_scale / 400)
    radial = _modality_profile(optics, pupils, grid, np.array([focus]))[:, 0]
    axial_scale = 2 * optics.immersion_index * optics.wavelength / optics.na**2
    reach = 4 * axial_scale + 2 * depth * abs(1 - optics.sample_index / optics.immersion_index)
    z = np.arange(-reach, reach, axial_scale / 400 if step is None else step)
    on_axis = _modality_profile(optics, pupils, _radial.RadialGrid(grid.step, 4), focus + z)[1]
    if optics.modality == "lightsheet":
        on_axis = on_axis * np.exp(-4 * math.log(2) * (z / optics.sheet_thickness) ** 2)

    def width(x, y):
        peak = int(y.argmax())
        half = y[peak] / 2
        above = y >= half
        right = peak + int(np.argmin(above[peak:]))
        left = peak - int(np.argmin(above[peak::-1]))
        edges = []
        for i, j in ((left, left + 1), (right - 1, right)):
            spline = CubicSpline(x[max(i - 2, 0) : j + 3], y[max(i - 2, 0) : j + 3] - half)
            roots = [r for r in spline.roots(extrapolate=False) if x[i] <= r <= x[j]]
            edges.append(roots[0])
        return edges[1] - edges[0]

    radii = grid.radii
    mirrored = np.concatenate([-radii[:1:-1], radii[1:]]), np.concatenate([radial[:1:-1], radial[1:]])
    return width(*mirrored), width(z, on_axis)


def _ism_profile(optics, pupils, grid, r_max, stage, bandwidths):
    """Reassigned ISM profile on ``grid``: detector-disk integral of h_ex(r + beta d) h_em(r - (1 - beta) d)."""
    beta = optics.reassignment
    radius = optics.pinhole * optics.airy_unit / 2
    wide = _radial.RadialGrid.covering(r_max + max(beta, 1 - beta) * radius, grid.step)
    to_ex, to_em, weights = _radial.ism_matrices(grid, wide, radius, beta, max(bandwidths))
    excitation = _radial.intensity(pupils[1], wide.radii, stage)
    emission = _radial.intensity(pupils[0], wide.radii, stage)
    n_nodes = weights.size
    out = np.empty((grid.size, stage.size))
    chunk = max(1, (32 * 2**20) // (8 * grid.size * n_nodes))
    for start in range(0, stage.size, chunk):
        cols = slice(start, start + chunk)
        product = (to_ex @ excitation[:, cols]) * (to_em @ emission[:, cols])
        out[:, cols] = np.einsum("rqz,q->rz", product.reshape(grid.size, n_nodes, -1), weights)
    return out


# --------------------------------------------------------------------------- aberrated (2-D pupil) path


def _extended_cos(n, na, rho):
    """n cos(theta) = sqrt(n^2 - NA^2 rho^2) inside the pupil, continued by its cubic Taylor polynomial
    beyond rho = 1 (where only the band-limited pupil's edge kernel lives), so the phase stays smooth
    there even when the branch point n / NA lies just outside the pupil."""
    c, q = n * n + 0j, na * na
    f1 = np.sqrt(c - q)
    d1, d2, d3 = -q / f1, -q * c / f1**3, -3 * q * q * c / f1**5
    t = rho - 1.0
    outside = f1 + t * (d1 + t * (d2 / 2 + t * d3 / 6))
    return np.where(rho <= 1.0, np.sqrt(c - q * np.minimum(rho, 1.0) ** 2), outside)


def _pupil_wavefront(pupil, rho, stage):
    """W(rho, s) (um) on the 2-D pupil grid, complex, with the smooth continuation outside the disk."""
    if pupil.model == "born-wolf":
        return ((stage - pupil.depth) * pupil.na**2 / (2 * pupil.n_immersion) * rho**2).astype(np.complex128)
    immersion = _extended_cos(pupil.n_immersion, pupil.na, rho)
    sample = _extended_cos(pupil.n_sample, pupil.na, rho)
    return pupil.depth * (sample - pupil.n_sample) - stage * (immersion - pupil.n_immersion)


class _PupilTransform:
    """Field of one aberrated pupil in one plane, at a separable grid of points (in pixels).

    The pupil is zernike_psf's band-limited ``M x M`` grid; a matrix Fourier
    transform evaluates the field only where it is needed, so nothing wraps.
    A lateral shift of the evaluation points is a phase ramp on the pupil.
    """

    def __init__(self, pupil, cutoff, coefficients, indices, stage, ys, xs, reach):
        from psfkit.optics import psf as _psf

        # the flat band of the pupil kernel must hold the evaluated region plus the spread of the
        # phase: the Zernike slope with zernike_psf's factor 8; the defocus term (slope of W in waves
        # per pupil radius, largest at the edge, and curving fast there) needs 24 for ~1e-5
        # (calibrated against the radial model at NA 0.8-1.45, tests/optics/test_microscope.py); with
        # defocus the window and the spread add up (small windows need it), in focus zernike_psf's rule
        _, zernike_slope = _psf._required_pupil_samples(coefficients[None, :], indices, np.array([cutoff]), reach)
        edge = _radial.wavefront(pupil, np.array([0.999, 1.0]), np.array([stage]))[:, 0].real
        defocus_slope = abs(edge[1] - edge[0]) / 0.001 / pupil.wavelength
        spread = 8.0 * zernike_slope + 24.0 * defocus_slope
        window = 3.2 * cutoff * reach
        need = 2 * _psf._KERNEL_HALF_WIDTH + (window + spread if defocus_slope else math.hypot(window, spread))
        samples = max(_psf._MIN_SAMPLES, _psf._SAMPLES_STEP * math.ceil(need / _psf._SAMPLES_STEP))
        nu = _psf._pupil_coordinates(samples)
        phi = np.tensordot(coefficients, _psf._pupil_basis(indices, samples), axes=1)  # waves
        rho = np.hypot(nu[:, None], nu[None, :])
        phase = -2 * np.pi * phi + (2 * np.pi / pupil.wavelength) * _pupil_wavefront(pupil, rho, stage)
        # cell area / 2 pi: the scale of the radial integral, whatever the grid of the plane
        self.field = _psf._pupil_weights(samples) * np.exp(1j * phase) * ((nu[1] - nu[0]) ** 2 / (2 * np.pi))
        self.ramp = 2j * np.pi * cutoff * nu
        self.fy = np.exp(-2j * np.pi * cutoff * np.outer(ys, nu))
        self.fx = np.exp(-2j * np.pi * cutoff * np.outer(nu, xs))

    def intensity(self):
        """|E|^2 at the points, (len(ys), len(xs))."""
        image = self.fy @ (self.field @ self.fx)
        return image.real**2 + image.imag**2

    def shifted(self, dy, dx):
        """|E(y - dy_q, x - dx_q)|^2 for the nodes q, (Q, len(ys), len(xs)).

        All shifted fields go through two large matrix products rather than
        2 Q small ones (which thread pools handle badly).
        """
        samples, ny, nx = self.field.shape[0], self.fy.shape[0], self.fx.shape[1]
        ramps_y, ramps_x = np.exp(np.outer(dy, self.ramp)), np.exp(np.outer(dx, self.ramp))
        fields = self.field[None] * ramps_y[:, :, None] * ramps_x[:, None, :]
        half = (fields.reshape(dy.size * samples, samples) @ self.fx).reshape(dy.size, samples, nx)
        image = (self.fy @ half.transpose(1, 0, 2).reshape(samples, dy.size * nx)).reshape(ny, dy.size, nx)
        return (image.real**2 + image.imag**2).transpose(1, 0, 2)


def _aberrated(optics, pupils, plane, stage, oversampling, indices, coefficients):
    """PSF (nz, ny, nx) of an aberrated pupil: intensities at the pixel quadrature nodes, then averaged.

    Confocal and Airyscan sum over the nodes of the pinhole / detector disk,
    each a shifted emission (and excitation) field, i.e. one more transform
    per node: exact, but the cost grows with the disk's quadrature.
    """
    ny, nx = plane
    t, w = _radial.pixel_nodes(oversampling)
    ys = ((np.arange(ny) - ny // 2)[:, None] + t[None, :]).ravel()
    xs = ((np.arange(nx) - nx // 2)[:, None] + t[None, :]).ravel()
    modality = optics.modality
    if modality in ("confocal", "airyscan"):
        radius = optics.pinhole * optics.airy_unit / 2
        bandwidth = 2 * optics.na / optics.wavelength
        dy, dx, node_weights = _radial.disk_nodes(radius / optics.pixel_size, bandwidth * optics.pixel_size)
        beta = optics.reassignment if modality == "airyscan" else 0.0
    else:
        dy = dx = np.zeros(1)
        node_weights, beta = np.ones(1), 0.0
    reach = max(ny, nx) + 1 + 2 * math.ceil(np.hypot(dy, dx).max())
    out = np.empty((stage.size, ny, nx))
    for i, s in enumerate(stage):
        emission = _PupilTransform(pupils[0], optics.cutoff_frequency, coefficients, indices, s, ys, xs, reach)
        if modality in ("confocal", "airyscan"):
            ratio = optics.wavelength / optics.excitation  # the same wavefront (um) in waves of the excitation
            fc = optics.na * optics.pixel_size / optics.excitation
            excitation = _PupilTransform(pupils[1], fc, coefficients * ratio, indices, s, ys, xs, reach)
            values = np.zeros((ys.size, xs.size))
            samples = max(emission.field.shape[0], excitation.field.shape[0])
            chunk = max(1, (48 * 2**20) // (16 * samples * max(samples, ys.size, xs.size)))
            for start in range(0, dy.size, chunk):
                q = slice(start, start + chunk)
                detected = emission.shifted((1 - beta) * dy[q], (1 - beta) * dx[q])
                if modality == "airyscan":
                    detected *= excitation.shifted(-beta * dy[q], -beta * dx[q])
                values += np.einsum("qyx,q->yx", detected, node_weights[q])
            if modality == "confocal":
                values *= excitation.intensity()
        else:
            values = emission.intensity()
        out[i] = np.einsum("aibj,i,j->ab", values.reshape(ny, oversampling, nx, oversampling), w, w)
    return out
