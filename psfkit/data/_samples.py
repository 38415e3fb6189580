"""Real images: the bundled microscopy sample and scikit-image's offline images."""

import copy
import functools
import os

import numpy as np

_SAMPLES = os.path.join(os.path.dirname(__file__), "samples")

_INFO = {
    "celegans": {
        "description": "2D Airyscan confocal image of a C. elegans intestine",
        "shape": (316, 316),
        "pixel_size": 0.0426,
        "unit": "micrometre",
        "source": "sdeconv 1.0.4 wheel, sdeconv/data/celegans.tif (github.com/sylvainprigent/sdeconv)",
        "licence": "BSD-3-Clause (Copyright (c) 2021, STracking)",
        # the file states the modality and the pixel size only; the rest is a typical Airyscan set-up
        "optics": {
            "modality": "airyscan", "pixel_size": 0.0426, "na": 1.4, "wavelength": 0.52, "excitation": 0.488,
        },
        "optics_assumed": ("na", "wavelength", "excitation"),
    },
    "cell": {
        "description": "quantitative phase image of a cell floating in saline (scikit-image's data.cell)",
        "shape": (660, 550),
        "pixel_size": 0.107,
        "unit": "micrometre",
        "source": "scikit-image, skimage/data/cell.png (Müller et al., Opt. Express 26, 10729, 2018)",
        "licence": "CC0-1.0",
    },
}

# name -> (skimage.data function, file shipped inside the scikit-image wheel)
_SKIMAGE = {
    "astronaut": ("astronaut", "astronaut.png"),
    "brick": ("brick", "brick.png"),
    "camera": ("camera", "camera.png"),
    "cell": ("cell", "cell.png"),
    "chelsea": ("chelsea", "chelsea.png"),
    "clock": ("clock", "clock_motion.png"),
    "coffee": ("coffee", "coffee.png"),
    "coins": ("coins", "coins.png"),
    "colorwheel": ("colorwheel", "color.png"),
    "grass": ("grass", "grass.png"),
    "gravel": ("gravel", "gravel.png"),
    "horse": ("horse", "horse.png"),
    "hubble_deep_field": ("hubble_deep_field", "hubble_deep_field.jpg"),
    "immunohistochemistry": ("immunohistochemistry", "ihc.png"),
    "logo": ("logo", "logo.png"),
    "microaneurysms": ("microaneurysms", "microaneurysms.png"),
    "moon": ("moon", "moon.png"),
    "page": ("page", "page.png"),
    "retina": ("retina", "retina.jpg"),
    "rocket": ("rocket", "rocket.jpg"),
    "shepp_logan_phantom": ("shepp_logan_phantom", "phantom.png"),
    "text": ("text", "text.png"),
}


def sample_info(name):
    """Metadata of a real sample image: pixel size, source and licence.

    Parameters
    ----------
    name : {"celegans", "cell"}
        ``"celegans"`` is the bundled sample (:func:`celegans`); ``"cell"`` is
        scikit-image's quantitative-phase cell image (``skimage_image("cell")``).

    Returns
    -------
    info : dict
        Keys ``description``, ``shape``, ``pixel_size`` (in ``unit``),
        ``unit``, ``source`` and ``licence``; for ``"celegans"`` also
        ``optics`` (the :class:`psfkit.Optics` fields, um) and
        ``optics_assumed`` (those fields not stated by the source: an oil
        NA 1.4 objective, GFP-like 488 nm excitation and 520 nm emission).
        A new dict at every call.

    Examples
    --------
    >>> from psfkit.data import sample_info
    >>> sample_info("celegans")["pixel_size"]
    0.0426
    """
    if not isinstance(name, str) or name not in _INFO:
        raise ValueError(f"unknown sample name {name!r}; expected one of {', '.join(map(repr, _INFO))}")
    return copy.deepcopy(_INFO[name])


@functools.lru_cache(maxsize=1)
def _celegans_counts():
    with np.load(os.path.join(_SAMPLES, "celegans.npz")) as archive:
        counts = archive["image"]
    counts.flags.writeable = False
    return counts


def celegans():
    """Real 2D Airyscan image of a *Caenorhabditis elegans* intestine (bundled sample).

    Read from a compressed NumPy copy of ``samples/celegans.tif`` (the
    original TIFF is bundled too), so no TIFF reader is needed. Pixel size
    42.6 nm; no PSF or ground truth is known. See :func:`sample_info` and
    ``psfkit/data/samples/README.md`` for source and licence (BSD-3-Clause).

    Returns
    -------
    image : (316, 316) ndarray of float32
        Integer-valued detector counts, 185 to 6207 (a new array at every call).

    Examples
    --------
    >>> from psfkit.data import celegans
    >>> image = celegans()
    >>> image.shape, image.dtype, float(image.min()), float(image.max())
    ((316, 316), dtype('float32'), 185.0, 6207.0)
    """
    return _celegans_counts().astype(np.float32)


def _skimage_dir():
    import skimage.data

    return os.path.dirname(skimage.data.__file__)


@functools.lru_cache(maxsize=1)
def _available():
    folder = _skimage_dir()
    return tuple(name for name, (_, filename) in _SKIMAGE.items() if os.path.isfile(os.path.join(folder, filename)))


def skimage_images():
    """Names of the scikit-image sample images that load without a download.

    Only images whose file ships inside the installed scikit-image wheel are
    listed (scikit-image downloads its other samples with pooch at first use,
    which fails offline).

    Returns
    -------
    names : tuple of str
        Sorted names accepted by :func:`skimage_image`.

    Examples
    --------
    >>> from psfkit.data import skimage_images
    >>> "camera" in skimage_images() and "cell" in skimage_images()
    True
    """
    return _available()


def skimage_image(name):
    """Load a scikit-image sample image as greyscale float64 in [0, 1].

    Colour images are converted with :func:`skimage.color.rgb2gray` (after
    compositing RGBA on white), integer images are scaled by their type's
    maximum (:func:`skimage.util.img_as_float`).

    Parameters
    ----------
    name : str
        One of :func:`skimage_images`, e.g. ``"camera"``, ``"cell"``,
        ``"moon"``, ``"coins"``, ``"text"``, ``"brick"``, ``"grass"``.

    Returns
    -------
    image : (M, N) ndarray of float64
        A new array at every call.

    Examples
    --------
    >>> from psfkit.data import skimage_image
    >>> image = skimage_image("camera")
    >>> image.shape, image.dtype
    ((512, 512), dtype('float64'))
    """
    if not isinstance(name, str) or name not in _SKIMAGE:
        raise ValueError(f"unknown scikit-image image name {name!r}; expected one of {', '.join(_SKIMAGE)}")
    if name not in _available():
        raise ValueError(f"scikit-image image name {name!r} is not shipped with the installed scikit-image")
    import skimage.data
    from skimage import color, util

    image = getattr(skimage.data, _SKIMAGE[name][0])()
    if image.ndim == 3:
        if image.shape[-1] == 4:
            image = color.rgba2rgb(image)
        image = color.rgb2gray(image)
    return np.array(util.img_as_float(image), dtype=np.float64)
