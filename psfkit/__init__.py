"""psfkit: model, identify blindly and remove the blur of microscope images.

The public API is a set of plain functions taking and returning NumPy arrays.
Submodules are imported lazily so that ``import psfkit`` stays cheap and never
imports torch; the learned parts import it on first use.
"""

import importlib

__version__ = "0.1.0"

# public name -> submodule that defines it (resolved on first attribute access)
_LAZY = {
    # optics
    "zernike_psf": "psfkit.psf",
    "cutoff_frequency": "psfkit.psf",
    "airy_psf": "psfkit.psf",
    "zernike_basis": "psfkit.zernike",
    "noll_to_nm": "psfkit.zernike",
    # forward models
    "convolve": "psfkit.convolution",
    "product_convolution": "psfkit.space_varying",
    "ProductConvolution": "psfkit.space_varying",
    "grid_weights": "psfkit.space_varying",
    "simulate_acquisition": "psfkit.acquisition",
    "estimate_noise": "psfkit.acquisition",
    # restoration
    "deconvolve": "psfkit.deconvolution",
    # identification
    "estimate_psf": "psfkit.learned.identification",
    "deblur": "psfkit.blind",
    # metrics
    "psf_snr": "psfkit.metrics",
}

_SUBMODULES = {"data", "metrics", "baselines", "learned"}

__all__ = sorted(_LAZY) + sorted(_SUBMODULES) + ["__version__"]


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        module = importlib.import_module(f"psfkit.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'psfkit' has no attribute {name!r}")


def __dir__():
    return __all__
