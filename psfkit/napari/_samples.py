"""napari sample data: the bundled 2-D image and a small synthetic 3-D stack."""

import functools

import numpy as np

# the synthetic stack's microscope: a water-immersion widefield objective, Nyquist-sampled laterally (fc = 0.23)
STACK_OPTICS = {"na": 1.2, "wavelength": 0.52, "pixel_size": 0.1, "z_step": 0.25, "immersion_index": 1.33}
STACK_SHAPE = (32, 128, 128)


def celegans():
    """The bundled C. elegans Airyscan image, calibrated (42.6 nm pixels).

    Returns
    -------
    layers : list of (data, kwargs, "image")
        :func:`psfkit.data.celegans` with ``scale`` in um and, in
        ``metadata``, the optics of :func:`psfkit.data.sample_info` (NA,
        wavelengths assumed, see there), source and licence.
    """
    from psfkit.data import celegans as image, sample_info

    info = sample_info("celegans")
    pixel = info["pixel_size"]
    metadata = {"optics": info["optics"], "source": info["source"], "licence": info["licence"]}
    kwargs = {"name": "C. elegans", "scale": (pixel, pixel), "units": "micrometer", "metadata": metadata}
    return [(image(), kwargs, "image")]


def beads_stack():
    """A synthetic widefield stack: beads and curved filaments, blurred by the 3-D PSF, with noise.

    Returns
    -------
    layers : list of (data, kwargs, "image")
        A (32, 128, 128) float32 stack (the same at every call), ``scale``
        (0.25, 0.1, 0.1) um and ``metadata["optics"]`` (NA 1.2 water,
        520 nm emission).
    """
    stack = synthetic_stack().copy()
    optics = dict(STACK_OPTICS, modality="widefield")
    scale = (optics["z_step"], optics["pixel_size"], optics["pixel_size"])
    kwargs = {"name": "beads and filaments", "scale": scale, "units": "micrometer",
              "metadata": {"optics": optics, "source": "psfkit.napari._samples.synthetic_stack (simulated)"}}
    return [(stack, kwargs, "image")]


@functools.lru_cache(maxsize=1)
def synthetic_stack():
    """The (32, 128, 128) stack of :func:`beads_stack` (seeded; read-only, cached).

    Specimen: 60 beads at random voxels and the filaments of a 2-D
    :func:`psfkit.data.filaments` image lifted onto a wavy sheet across the
    depth. Blurred with the scalar 3-D PSF of ``STACK_OPTICS``, then Poisson
    noise (up to about 1000 photons per voxel) and a camera
    baseline of 100.
    """
    from psfkit import Optics, microscope_psf, simulate_acquisition
    from psfkit.data import filaments

    rng = np.random.default_rng(0)
    nz, ny, nx = STACK_SHAPE
    specimen = np.zeros(STACK_SHAPE)
    sheet = filaments((ny, nx), rng=rng, count=6)
    x = np.arange(nx)
    depth = np.round(nz / 2 + nz / 4 * np.sin(2 * np.pi * x / nx)).astype(int)  # z of each column of the sheet
    specimen[depth[None, :], np.arange(ny)[:, None], x[None, :]] = sheet
    beads = rng.integers(0, STACK_SHAPE, size=(60, 3))
    specimen[tuple(beads.T)] += rng.uniform(1.0, 3.0, size=len(beads))
    psf = microscope_psf(Optics(**STACK_OPTICS), (31, 33, 33))
    stack = simulate_acquisition(specimen * 2e4, psf, gain=1.0, background=100.0, rng=rng)
    stack = stack.astype(np.float32)
    stack.flags.writeable = False
    return stack
