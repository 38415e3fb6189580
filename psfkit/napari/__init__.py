"""The napari plugin of psfkit (``pip install psfkit[napari]``).

The npe2 manifest ``psfkit/napari.yaml`` names what napari loads, only when
it is used: the *Estimate PSF* and *Deblur* widgets (:mod:`._widgets`), a
reader of TIFF / OME-TIFF files with their pixel sizes (:mod:`._reader`) and
sample data (:mod:`._samples`). Only this subpackage imports napari, magicgui
or Qt; ``import psfkit`` never does.
"""
