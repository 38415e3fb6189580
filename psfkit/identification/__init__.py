"""Identification: the PSF of an image, estimated blindly.

The network's estimate (:mod:`psfkit.learned`), its orientation, and the
spectral maximum-likelihood refinement; global PSFs or maps of local PSFs.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "estimate": ["estimate_psf"],
    },
)
