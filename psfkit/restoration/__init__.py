"""Restoration: deconvolution with a known PSF or PSF map.

Richardson-Lucy (accelerated), RL-TV, FISTA-TV, Wiener and the learned
unrolled network, space-invariant and space-varying, with the automatic
regularisation. Uses :mod:`psfkit.forward` and, for the unrolled network only,
:mod:`psfkit.learned`.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "deconvolution": ["deconvolve"],
    },
)
