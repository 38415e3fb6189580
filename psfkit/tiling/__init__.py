"""Lazy tiled processing of big images held as dask arrays.

Each output block is computed from its own block plus a halo, read straight from the source array by the
task itself: no task holds its neighbours' blocks, so the memory a computation needs is a few tiles, whatever
the image's size (dask's ``map_overlap`` gathers the neighbours into the graph and kept most of the image in
memory here, ``../shared/notes/napari_dask.md``). dask is imported only when a dask array is given.
"""

from psfkit.tiling._blocks import (
    central_window,
    check_dask_image,
    halo_depth,
    is_dask,
    map_blocks_with_halo,
    read_window,
)

__all__ = ["central_window", "check_dask_image", "halo_depth", "is_dask", "map_blocks_with_halo", "read_window"]
