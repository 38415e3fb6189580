"""Forward models: how a specimen becomes an image.

Convolution with boundary handling, space-varying blur (product convolution
from a PSF grid, eigen-PSFs), and the acquisition model (Poisson-Gaussian
noise, quantisation) with its blind noise estimator. Depends on
:mod:`psfkit.optics` only through the PSFs it is given.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "convolution": ["convolve"],
        "space_varying": ["ProductConvolution", "grid_weights", "product_convolution"],
        "acquisition": ["estimate_noise", "simulate_acquisition"],
    },
)
