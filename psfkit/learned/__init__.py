"""The learned models (PyTorch): network architectures, differentiable optics, bundled weights.

Inference lives with its use (:mod:`psfkit.restoration.unrolled`,
:mod:`psfkit.identification.estimate`), training in :mod:`psfkit.training`.
Importing this package is cheap; torch is imported by its submodules only, so
``import psfkit`` and the NumPy API never pull in torch.
"""
