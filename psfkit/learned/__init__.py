"""Learned parts of psfkit (PyTorch): differentiable optics, networks, training.

Importing this package is cheap; torch is imported by its submodules only, so
``import psfkit`` and the NumPy API never pull in torch.
"""
