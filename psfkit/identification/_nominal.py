"""What :func:`psfkit.estimate_psf` does with known optics: identify the PSF or return the nominal one (private).

The identification network and its refinement model a scalar widefield pupil
whose image is Nyquist-sampled (fc <= 0.27 cycles/pixel). Everything else a
user can describe with :class:`psfkit.Optics` -- a (Z, Y, X) stack, a confocal,
Airyscan or light-sheet image, an under-sampled image -- gets the aberration-free
PSF of its optics from :func:`psfkit.microscope_psf`: identifying 3-D and
non-widefield aberrations blindly is not done yet.
"""

import math

from psfkit.optics.microscope import Optics

IDENTIFIED, NOMINAL = "identified", "nominal"
# Largest lateral half-width of an automatic stack PSF, in pixels (the widefield cone of a deep stack is wider).
_MAX_REACH = 32


def check_optics(optics):
    """``optics`` as an :class:`Optics` or None."""
    if optics is not None and not isinstance(optics, Optics):
        raise TypeError(f"optics must be a psfkit.Optics or None, got {type(optics).__name__}")
    return optics


def route(ndim, optics, cutoff, identifiable_cutoff):
    """``(IDENTIFIED or NOMINAL, why)`` for an image of ``ndim`` dimensions.

    ``cutoff`` is the user's fc (None if unknown, ``optics``' when given);
    ``identifiable_cutoff`` the largest fc the network identifies.
    """
    if ndim == 3:
        return NOMINAL, "a (Z, Y, X) stack: the nominal 3-D PSF of its optics (3-D identification is not done yet)"
    if optics is not None and optics.modality != "widefield":
        return NOMINAL, f"{optics.modality} optics: the nominal PSF (the network identifies widefield blur only)"
    if cutoff is not None and cutoff > identifiable_cutoff:
        return NOMINAL, (
            f"fc {cutoff:.3g} cycles/pixel is above {identifiable_cutoff} (under-sampled): the nominal "
            "pixel-integrated PSF (aberrations are not identified on aliased images)"
        )
    return IDENTIFIED, "identified by the network"


def stack_psf_shape(optics, image_shape, size):
    """Odd (nz, ny, nx) of a stack's PSF: the whole depth, laterally ``size`` or the out-of-focus cone.

    ``size=None``: 4 Airy radii in focus, widened to the edge of the light cone
    at the deepest plane of the PSF, at most ``2 * 32 + 1`` pixels; sides stay within the image.
    """
    def odd_within(side, n):
        side = side if side % 2 else side + 1
        return max(1, min(side, n if n % 2 else n - 1))

    nz = odd_within(image_shape[0], image_shape[0])
    if size is None:
        lateral = 4 * 0.61 * optics.wavelength / optics.na / optics.pixel_size
        if optics.z_step is not None:
            sin = optics.na / optics.immersion_index
            cone = (nz // 2) * optics.z_step * sin / math.sqrt(1 - sin * sin) / optics.pixel_size
            lateral = max(lateral, cone)
        size = 2 * min(math.ceil(lateral), _MAX_REACH) + 1
    return (nz, odd_within(size, image_shape[1]), odd_within(size, image_shape[2]))


def nominal_psf(image_shape, optics, cutoff, size):
    """The aberration-free PSF of the optics (or, given fc only, of an in-focus widefield pupil at ``cutoff``)."""
    from psfkit.optics.microscope import microscope_psf

    if len(image_shape) == 3:
        if optics.z_step is None:
            raise ValueError("optics.z_step is required for a (Z, Y, X) stack (the axial step in um)")
        return microscope_psf(optics, stack_psf_shape(optics, image_shape, size))
    if optics is None:  # in focus and paraxial, a pixel-integrated Airy pattern depends on fc alone
        optics = Optics(na=cutoff, wavelength=1.0, pixel_size=1.0)
        return microscope_psf(optics, (size, size), model="born-wolf")
    return microscope_psf(optics, (size, size))
