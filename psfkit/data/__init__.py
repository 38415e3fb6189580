"""Specimens and sample images.

Procedural microscopy-like specimens (fluorophore densities, float64 in
[0, 1], fast enough to be generated on the fly for network training):

- :func:`filaments` -- microtubule/actin-like smooth random curves,
- :func:`points` -- point sources and vesicles,
- :func:`cells` -- cells and nuclei with texture,
- :func:`dead_leaves` -- occluding discs with natural-image statistics,
- :func:`random_specimen` -- a random mixture of the above on a smooth background.

Their sizes are bounded so that absurd requests fail at once with a
``ValueError``: images at most 8192 pixels a side, radii at most 10000
pixels, filament widths at most 100, and object counts and sizes whose work
arrays would exceed 16 values per image pixel (or 2**22 values on small
images; the defaults use about one).

Real images:

- :func:`celegans` -- bundled 2D Airyscan image (42.6 nm pixels, BSD-3-Clause),
- :func:`skimage_images`, :func:`skimage_image` -- the images shipped inside
  scikit-image (no download),
- :func:`sample_info` -- pixel size, source and licence of the real samples.
"""

from psfkit.data._samples import celegans, sample_info, skimage_image, skimage_images
from psfkit.data._specimens import cells, dead_leaves, filaments, points, random_specimen

__all__ = [
    "cells",
    "celegans",
    "dead_leaves",
    "filaments",
    "points",
    "random_specimen",
    "sample_info",
    "skimage_image",
    "skimage_images",
]
