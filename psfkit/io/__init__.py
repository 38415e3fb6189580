"""Reading and writing microscope images (TIFF, PNG) for the command line and scripts.

TIFF needs tifffile (``pip install psfkit[io]``); PNG and JPEG use imageio.
"""

from psfkit.io._images import check_writable, read_image, write_image, write_images

__all__ = ["check_writable", "read_image", "write_image", "write_images"]
