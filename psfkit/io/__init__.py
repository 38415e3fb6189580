"""Reading and writing microscope images (TIFF, PNG, OME-Zarr) for the command line and scripts.

TIFF needs tifffile (``pip install psfkit[io]``); PNG and JPEG use imageio;
OME-Zarr needs zarr (``pip install psfkit[dask]``), imported only when used.
"""

from psfkit.io._images import check_writable, read_image, write_image, write_images
from psfkit.io._zarr import write_ome_zarr

__all__ = ["check_writable", "read_image", "write_image", "write_images", "write_ome_zarr"]
