"""pytest at the repository root: doctests of optional parts are collected only where their extra is installed."""

import importlib.util

# the napari plugin's modules import napari and magicgui at the top (psfkit[napari])
collect_ignore_glob = [] if importlib.util.find_spec("napari") else ["psfkit/napari/_*.py"]
