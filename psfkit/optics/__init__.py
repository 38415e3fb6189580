"""Optics: pupils, Zernike polynomials and the PSFs they make.

The lowest layer of psfkit: NumPy only, imports nothing else from psfkit
but input validation.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "fit": ["PSFFit", "fit_psf"],
        "microscope": ["Optics", "microscope_psf"],
        "psf": ["airy_psf", "cutoff_frequency", "zernike_psf"],
        "zernike": ["noll_to_nm", "zernike_basis"],
    },
)
