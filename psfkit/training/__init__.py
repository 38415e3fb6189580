"""Training of the bundled networks (PyTorch): synthetic data, training loops, export.

Run as scripts, e.g. ``python -m psfkit.training.train_identifier --help``;
nothing in the library imports this package.
"""
