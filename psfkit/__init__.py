"""psfkit: model, identify blindly and remove the blur of microscope images.

The public API is a set of plain functions taking and returning NumPy arrays.
The subpackages follow the physics, each depending only on those before it:

- :mod:`psfkit.optics` -- pupils, Zernike polynomials, PSFs;
- :mod:`psfkit.forward` -- convolution, space-varying blur, acquisition noise;
- :mod:`psfkit.learned` -- network architectures and bundled weights (torch);
- :mod:`psfkit.restoration` -- deconvolution;
- :mod:`psfkit.identification` -- blind PSF estimation;
- :mod:`psfkit.pipeline` -- :func:`deblur`, estimate then deconvolve;

with :mod:`psfkit.data`, :mod:`psfkit.metrics`, :mod:`psfkit.baselines` and
:mod:`psfkit.io` beside them, and :mod:`psfkit.cli` on top. Everything is
imported lazily, so ``import psfkit`` stays cheap and never imports torch.
"""

import lazy_loader

__version__ = "0.1.0"

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submodules=["baselines", "data", "io", "learned", "metrics"],
    submod_attrs={
        "optics.fit": ["PSFFit", "fit_psf"],
        "optics.microscope": ["Optics", "microscope_psf"],
        "optics.psf": ["airy_psf", "cutoff_frequency", "zernike_psf"],
        "optics.zernike": ["noll_to_nm", "zernike_basis"],
        "forward.convolution": ["convolve"],
        "forward.space_varying": ["ProductConvolution", "grid_weights", "product_convolution"],
        "forward.acquisition": ["estimate_noise", "simulate_acquisition"],
        "restoration.deconvolution": ["deconvolve"],
        "identification.estimate": ["estimate_psf"],
        "pipeline": ["deblur"],
        "metrics": ["decorrelation_resolution", "psf_snr"],
    },
)
__all__ = [*__all__, "__version__"]
