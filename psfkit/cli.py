"""The ``psfkit`` command line: ``demo``, ``estimate``, ``deblur`` and ``deconvolve``.

A user error (a bad option, an unreadable input, an output that cannot be
written, too little memory) is one line on stderr and exit status 2, never a
traceback; anything else is a bug and keeps its traceback. Inputs and outputs
are checked before the networks (and torch) are imported, so a typo fails at
once. A command writes all its outputs or none, and never overwrites one
without ``--force``.

Many files (``psfkit deblur DIR/*.tif -o OUT/``, also ``deconvolve``) run on
dask.distributed (:mod:`psfkit.batch`): each input ``X.tif`` gives
``OUT/X.tif`` (``OUT/X.ome.zarr`` with ``--format zarr``) and ``OUT/X_psf.tif``.
Every output is checked before anything runs (exit status 2, nothing
written); then a file that fails is reported as ``psfkit: FILE: message`` and
skipped, the others finish, and the exit status is 1 if any failed.
"""

import argparse
import importlib.util
import math
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from psfkit.io import check_writable, read_image, write_images
from psfkit.io._images import to_uint8


class CommandError(Exception):
    """A user-facing error: printed as one line."""


# torch reports a missing device or exhausted GPU memory as RuntimeError
_USER_ERRORS = (CommandError, ValueError, TypeError, OSError, MemoryError, RuntimeError)


def _message(error):
    """One line for the user: OSErrors without their errno, whatever the text's own line breaks."""
    if isinstance(error, OSError) and error.strerror:
        text = error.strerror[:1].lower() + error.strerror[1:]
        text += f": {error.filename}" if error.filename is not None else ""
    elif isinstance(error, MemoryError):
        text = f"out of memory: {error}" if str(error) else "out of memory"
    else:
        text = str(error)
    return " ".join(text.split())


# ------------------------------------------------------------------- outputs
def _check_outputs(paths, force, *, stacked=False):
    """Refuse now, not after the computation, outputs that could not be written."""
    for path in paths:
        try:
            check_writable(path, overwrite=force, parents=True)
        except FileExistsError:
            raise CommandError(f"{path} exists; use --force to overwrite it") from None
        if stacked and Path(path).suffix.lower() == ".png":
            raise CommandError(f"{path}: a PNG holds one 2-D image, not a stack or a PSF map; write a .tif")


def _as_written(arrays):
    """One result per frame -> the float32 array written (a stack only for a stack)."""
    return np.asarray(arrays[0] if len(arrays) == 1 else np.stack(arrays), dtype=np.float32)


def figure(image, restored, psf):
    """Side-by-side 8-bit panel: input | restored | PSF (or PSF map), no plotting library needed."""
    height = image.shape[0]
    if psf.ndim == 4:  # PSF map: tile the local PSFs
        gy, gx, h, w = psf.shape
        psf = psf.transpose(0, 2, 1, 3).reshape(gy * h, gx * w)
    scale = max(1, height // psf.shape[0])
    panel = np.kron(psf / psf.max(), np.ones((scale, scale)))[:height]
    pad = np.zeros((height, panel.shape[1]))
    pad[: panel.shape[0]] = panel
    gap = np.full((height, 4), 255, dtype=np.uint8)
    return np.hstack([to_uint8(image), gap, to_uint8(restored), gap, to_uint8(pad, gamma=0.5)])


# ------------------------------------------------------------------ commands
def _grid(text):
    try:
        gy, gx = (int(v) for v in text.lower().split("x"))
    except ValueError:
        gy = gx = 0
    if gy < 1 or gx < 1:
        raise argparse.ArgumentTypeError(f"must be two positive integers like 4x4, got {text!r}")
    return gy, gx


def _positive(kind):
    """An argparse type for a positive finite int or float: refused with the usage errors, before any work."""

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"must be a positive {'integer' if kind is int else 'number'}, got {text!r}")
        return value

    return parse


def _frames(image):
    return [image] if image.ndim == 2 else list(image)


def _progress(frames, label):
    from tqdm import tqdm

    return tqdm(frames, desc=label, disable=len(frames) == 1 or not sys.stderr.isatty())


def _announce(optics, cutoff, stack):
    """Say whether the PSF is identified or the nominal one of the optics, and why."""
    from psfkit.identification._nominal import route
    from psfkit.learned.ranges import FC_RANGE

    fc = optics.cutoff_frequency if optics is not None else cutoff
    print(f"PSF: {route(3 if stack else 2, optics, fc, FC_RANGE[1])[1]}")


def _spacing(optics, stack):
    """Voxel size stored in the outputs (um), when known."""
    if optics is None:
        return None
    return (optics.z_step, optics.pixel_size, optics.pixel_size) if stack else (optics.pixel_size,) * 2


def cmd_estimate(args):
    image = read_image(args.image)
    output = Path(args.output or Path(args.image).with_name(Path(args.image).stem + "_psf.tif"))
    optics, cutoff, stack = _identification_optics(args, image)
    _check_outputs([output], args.force, stacked=image.ndim == 3 or args.grid is not None)
    from psfkit.identification.estimate import estimate_psf  # imports torch: only once the inputs are known good

    _announce(optics, cutoff, stack)
    options = dict(
        optics=optics, cutoff=cutoff, max_amplitude=args.max_amplitude, size=args.size, grid=args.grid,
        refine=args.refine, device=args.device,
    )
    if stack:
        psf = estimate_psf(image, **options)
    else:
        psf = _as_written([estimate_psf(frame, **options) for frame in _progress(_frames(image), "estimating")])
    write_images({output: np.asarray(psf, np.float32)}, overwrite=args.force, parents=True,
                 spacing=_spacing(optics, stack))
    print(f"PSF written to {output}")


# ------------------------------------------------------------- many files
def _is_many(args):
    """Many-files mode: several inputs, an output folder (existing, or named with a trailing /), or a cluster asked for."""
    output = args.output
    return (len(args.image) > 1 or output.endswith(("/", os.sep)) or Path(output).is_dir()
            or args.workers is not None or args.scheduler is not None)


def _jobs(args):
    """``[(input, output, psf_output)]`` of a many-files run."""
    from psfkit import batch

    output = Path(args.output)
    file_name = output.suffix.lower() in (".tif", ".tiff", ".png", ".zarr")
    if args.output.endswith(("/", os.sep)) or output.is_dir() or (len(args.image) > 1 and not file_name):
        if output.exists() and not output.is_dir():
            raise CommandError(f"{output} is a file; the outputs of many inputs go to a folder")
        return batch.plan(args.image, output, args.format or "tif")
    if len(args.image) > 1:
        raise CommandError(f"{len(args.image)} inputs need an output folder (-o OUT/), got the file name {output}")
    return [(Path(args.image[0]), output, batch.psf_name(output))]


def _check_format(args, output):
    """A file name's format agrees with --format (which names the format of a folder's outputs)."""
    from psfkit import batch

    if args.format is not None and batch.is_zarr_name(output) != (args.format == "zarr"):
        raise CommandError(f"--format {args.format} does not match the output name {output}")
    if not batch.is_zarr_name(output) and output.suffix.lower() not in (".tif", ".tiff"):
        raise CommandError(f"{output}: tiles and many files are written as .tif or .ome.zarr")
    if batch.is_zarr_name(output) and importlib.util.find_spec("zarr") is None:
        raise CommandError("writing OME-Zarr needs zarr: pip install psfkit[dask]")


def _describe(error):
    """The message of a failed file: a user error as such, anything else with its type (a bug to report)."""
    text = _message(error)
    return text if isinstance(error, _USER_ERRORS) else f"{type(error).__name__}: {text}"


def _run_many(args, compute, options):
    """Every input as a task on dask.distributed; 0 if all were written, 1 if any failed."""
    from psfkit import batch

    if not batch.have_distributed():
        raise CommandError("several files, --workers and --scheduler run on dask.distributed, which is not installed: "
                           "pip install psfkit[dask]")
    if args.workers is not None and args.scheduler is not None:
        raise CommandError("--workers sets up local workers; with --scheduler the cluster has its own")
    jobs = _jobs(args)
    batch.check_inputs([source for source, _, _ in jobs])
    for _, output, _ in jobs:
        _check_format(args, output)
    try:
        batch.check_outputs(jobs, args.force)
    except FileExistsError as error:
        raise CommandError(f"{error.filename} exists; use --force to overwrite it") from None
    start = time.perf_counter()
    done, failed = batch.run_many(compute, jobs, options, workers=args.workers, scheduler=args.scheduler,
                                  chunks=args.chunks, describe=_describe)
    folder = jobs[0][1].parent if len({output.parent for _, output, _ in jobs}) == 1 else "their folders"
    print(f"{len(done)} of {len(jobs)} files written to {folder} in {time.perf_counter() - start:.1f} s"
          + (f"; {len(failed)} failed: {', '.join(str(source) for source, _ in failed)}" if failed else ""))
    return 1 if failed else 0


def _run_one(args, compute, options):
    """One file in this process, tiled (--chunks) or to OME-Zarr: the many-files task, without a cluster."""
    from tqdm import tqdm

    from psfkit import batch

    source, output = Path(args.image), Path(args.output)
    psf_output = batch.psf_name(output)
    _check_format(args, output)
    if args.chunks is not None and importlib.util.find_spec("dask") is None:
        raise CommandError("--chunks computes tile by tile with dask, which is not installed: pip install psfkit[dask]")
    batch.check_inputs([source])
    try:
        batch.check_outputs([(source, output, psf_output)], args.force)
    except FileExistsError as error:
        raise CommandError(f"{error.filename} exists; use --force to overwrite it") from None
    tiles = tqdm(total=0, desc="tiles", unit="tile", disable=not sys.stderr.isatty())

    def report(n, total=None):
        if total:
            tiles.total += total
            tiles.refresh()
        if n:
            tiles.update(n)

    try:
        seconds, messages = batch.process_file(compute, source, output, psf_output, options, run=f"{os.getpid()}",
                                               chunks=args.chunks, threads=os.cpu_count() or 1, report=report)
    finally:
        tiles.close()
    for message in messages:
        _print_warning(message, UserWarning, "", 0)
    print(f"restored image written to {output} in {seconds:.1f} s\nPSF written to {psf_output}")
    return 0


_DEBLUR_OPTIONS = ("cutoff", "frames", "max_amplitude", "grid", "method", "iterations", "size", "refine", "device")


def _stacked(arrays):
    """As :func:`_as_written`, lazily for dask arrays."""
    if not any(hasattr(a, "dask") for a in arrays):
        return _as_written(arrays)
    import dask.array as da

    return (arrays[0] if len(arrays) == 1 else da.stack(arrays)).astype(np.float32)


def _deblur_file(path, options, chunks=None):
    """The deblur of one file, read by path (a many-files task, see :func:`psfkit.batch.process_file`)."""
    from psfkit.batch import open_image
    from psfkit.pipeline import deblur

    args = argparse.Namespace(image=str(path), **options)
    image = open_image(path, chunks)
    optics, cutoff, stack = _identification_optics(args, image)
    kwargs = dict(
        optics=optics, cutoff=cutoff, max_amplitude=args.max_amplitude, grid=args.grid, method=args.method,
        iterations=args.iterations, size=args.size, refine=args.refine, device=args.device,
    )
    if stack:
        restored, psf = deblur(image, **kwargs)
        return restored, np.asarray(psf, np.float32), _spacing(optics, stack)
    pairs = [deblur(frame, **kwargs) for frame in _frames(image)]
    return _stacked([r for r, _ in pairs]), _as_written([np.asarray(p) for _, p in pairs]), _spacing(optics, stack)


def _options(args, names):
    return {name: getattr(args, name, None) for name in (*names, *_OPTICS_OPTIONS)}


def cmd_deblur(args):
    if _is_many(args):
        return _run_many(args, _deblur_file, _options(args, _DEBLUR_OPTIONS))
    args.image = args.image[0]
    if args.chunks is not None or args.format is not None or _zarr_output(args.output):
        return _run_one(args, _deblur_file, _options(args, _DEBLUR_OPTIONS))
    image = read_image(args.image)
    output = Path(args.output)
    psf_path = output.with_name(output.stem + "_psf.tif")
    optics, cutoff, stack = _identification_optics(args, image)
    _check_outputs([output], args.force, stacked=image.ndim == 3)
    _check_outputs([psf_path], args.force)
    from psfkit.pipeline import deblur

    _announce(optics, cutoff, stack)
    options = dict(
        optics=optics, cutoff=cutoff, max_amplitude=args.max_amplitude, grid=args.grid, method=args.method,
        iterations=args.iterations, size=args.size, refine=args.refine, device=args.device,
    )
    if stack:
        restored, psf = deblur(image, **options, progress=sys.stderr.isatty())
    else:
        pairs = [deblur(frame, **options) for frame in _progress(_frames(image), "deblurring")]
        restored, psf = _as_written([r for r, _ in pairs]), _as_written([p for _, p in pairs])
    arrays = {output: np.asarray(restored, np.float32), psf_path: np.asarray(psf, np.float32)}
    write_images(arrays, overwrite=args.force, parents=True, spacing=_spacing(optics, stack))
    print(f"restored image written to {output}\nPSF written to {psf_path}")


# Optics fields the deconvolve command takes from its options (um for lengths), and the option that gives each
_OPTICS_OPTIONS = {
    "na": "--na", "wavelength": "--wavelength", "pixel_size": "--pixel-size", "z_step": "--z-step",
    "immersion_index": "--immersion-index", "sample_index": "--sample-index", "modality": "--modality",
    "excitation": "--excitation", "pinhole": "--pinhole", "sheet_thickness": "--sheet-thickness",
}


def _metadata(path):
    """The Optics fields stored in the file (empty for a non-TIFF), and whether it is a TIFF."""
    from psfkit.io._images import _TIFF_MAGIC
    from psfkit.optics.microscope import _tiff_metadata

    with open(path, "rb") as file:
        if file.read(4) not in _TIFF_MAGIC:
            return {}, False
    import tifffile

    with tifffile.TiffFile(path) as tif:
        return _tiff_metadata(tif), True


def _optics(args, path, ndim, metadata=None):
    """Optics from the file's metadata (``metadata``: already read by :func:`_metadata`), overridden by the options;
    a CommandError naming what is missing."""
    from psfkit.optics.microscope import Optics

    given = {field: getattr(args, field) for field in _OPTICS_OPTIONS if getattr(args, field, None) is not None}
    found, is_tiff = _metadata(path) if metadata is None else metadata
    values = {**found, **given}
    needed = ("na", "wavelength", "pixel_size") + (("z_step",) if ndim == 3 else ())
    missing = [_OPTICS_OPTIONS[name] for name in needed if values.get(name) is None]
    if missing:
        where = "the file's metadata" if is_tiff else "a non-TIFF file's (absent) metadata"
        raise CommandError(
            f"missing {', '.join(missing)}: not given and not in {where} ({path}); lengths in um"
            + ("; --z-step is the stack's axial step" if "--z-step" in missing else "")
        )
    return Optics(**values)


def _identification_optics(args, image):
    """``(optics or None, cutoff or None, stack)`` of the estimate and deblur commands.

    A multi-page file is one (z, y, x) stack when its z step is known (metadata or --z-step) unless
    --frames is given; optics are built when the NA or the wavelength is known, or a stack needs them.
    """
    physical = [name for name in _OPTICS_OPTIONS if getattr(args, name, None) is not None]
    if args.cutoff is not None:
        if physical:
            raise CommandError(f"give either --cutoff or {_OPTICS_OPTIONS[physical[0]]} (the optics), not both")
        return None, args.cutoff, False
    metadata = _metadata(args.image)
    values = {**metadata[0], **{name: getattr(args, name) for name in physical}}
    stack = image.ndim == 3 and not args.frames and values.get("z_step") is not None
    if not (stack or physical or values.get("na") is not None or values.get("wavelength") is not None):
        return None, None, False  # nothing known: fully blind
    return _optics(args, args.image, 3 if stack else 2, metadata), None, stack


def _psf_shape(optics, image_shape):
    """Odd PSF sides: the whole stack depth, laterally the out-of-focus cone of that depth (capped), within the image."""
    from psfkit.identification._nominal import stack_psf_shape

    return stack_psf_shape(optics, (1,) * (3 - len(image_shape)) + tuple(image_shape), None)[3 - len(image_shape):]


_DECONVOLVE_OPTIONS = ("model", "psf_shape", "method", "iterations", "background")


def _deconvolve_file(path, options, chunks=None):
    """The deconvolution of one file, read by path (a many-files task, see :func:`psfkit.batch.process_file`)."""
    from psfkit.batch import open_image
    from psfkit.optics.microscope import microscope_psf
    from psfkit.restoration.deconvolution import deconvolve

    args = argparse.Namespace(image=str(path), **options)
    image = open_image(path, chunks)
    optics = _optics(args, args.image, image.ndim)
    shape = _psf_shape(optics, image.shape) if args.psf_shape is None else args.psf_shape
    if len(shape) != image.ndim:
        raise CommandError(f"--psf-shape has {len(shape)} sides for a {image.ndim}-D image of shape {image.shape}")
    psf = microscope_psf(optics, shape, model=args.model)
    spacing = _spacing(optics, image.ndim == 3)
    restored = deconvolve(image, psf, method=args.method, iterations=args.iterations, background=args.background,
                          dtype=np.float32, spacing=spacing if image.ndim == 3 else None)
    return restored, np.asarray(psf, np.float32), spacing


def _zarr_output(output):
    return output.lower().rstrip("/").endswith(".zarr")


def cmd_deconvolve(args):
    if _is_many(args):
        return _run_many(args, _deconvolve_file, _options(args, _DECONVOLVE_OPTIONS))
    args.image = args.image[0]
    if args.chunks is not None or args.format is not None or _zarr_output(args.output):
        return _run_one(args, _deconvolve_file, _options(args, _DECONVOLVE_OPTIONS))
    image = read_image(args.image)
    output = Path(args.output)
    psf_path = output.with_name(output.stem + "_psf.tif")
    _check_outputs([output], args.force, stacked=image.ndim == 3)
    _check_outputs([psf_path], args.force, stacked=image.ndim == 3)
    optics = _optics(args, args.image, image.ndim)
    from psfkit.optics.microscope import microscope_psf
    from psfkit.restoration.deconvolution import deconvolve

    shape = _psf_shape(optics, image.shape) if args.psf_shape is None else args.psf_shape
    if len(shape) != image.ndim:
        raise CommandError(f"--psf-shape has {len(shape)} sides for a {image.ndim}-D image of shape {image.shape}")
    start = time.perf_counter()
    psf = microscope_psf(optics, shape, model=args.model)
    spacing = _spacing(optics, image.ndim == 3)
    restored = deconvolve(
        image, psf, method=args.method, iterations=args.iterations, background=args.background,
        dtype=np.float32, progress=sys.stderr.isatty(), spacing=spacing if image.ndim == 3 else None,
    )
    elapsed = time.perf_counter() - start
    write_images({output: _as_written([restored]), psf_path: _as_written([psf])}, overwrite=args.force, parents=True,
                 spacing=spacing)
    print(
        f"deconvolved {'x'.join(map(str, image.shape))} with a {args.model} {optics.modality} PSF "
        f"{'x'.join(map(str, shape))} in {elapsed:.1f} s\nrestored image written to {output}\nPSF written to {psf_path}"
    )


def _chunks(text):
    try:
        sides = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        sides = ()
    if len(sides) == 1:
        sides *= 2
    if len(sides) != 2 or min(sides) < 16:
        raise argparse.ArgumentTypeError(f"must be a tile side like 1024 or 1024x512 (y x), at least 16, got {text!r}")
    return sides


def _batch_options(command):
    """Many files on dask.distributed, tiles, OME-Zarr."""
    group = command.add_argument_group(
        "many files and large images",
        "several inputs, or -o OUT/ (a folder): each input X.tif gives OUT/X.tif (or OUT/X.ome.zarr) and "
        "OUT/X_psf.tif, one dask.distributed task per file (pip install psfkit[dask]); a file that fails is "
        "reported and skipped, and the exit status is 1",
    )
    group.add_argument("--workers", type=_positive(int),
                       help="local worker processes, one file at a time each (default: one per file, at most one "
                            "per CPU; each needs the memory of one image's computation)")
    group.add_argument("--scheduler", metavar="ADDRESS",
                       help="run on an existing dask.distributed scheduler, e.g. tcp://host:8786, instead of local workers")
    group.add_argument("--chunks", type=_chunks, metavar="SIDE",
                       help="open each image lazily and compute it tile by tile (e.g. 1024 or 1024x512; default: the "
                            "whole image in memory)")
    group.add_argument("--format", choices=("tif", "zarr"),
                       help="format of the outputs in a folder: tif (default) or zarr (OME-Zarr, chunked, with the "
                            "pixel sizes); a single output named X.ome.zarr is OME-Zarr")


def _shape(text):
    try:
        sides = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        sides = ()
    if len(sides) not in (2, 3) or min(sides) < 1:
        raise argparse.ArgumentTypeError(f"must be 2 or 3 positive integers like 31x33x33 (z, y, x), got {text!r}")
    return sides


def cmd_demo(args):
    out = Path(args.output)
    paths = {name: out / name for name in ("input.tif", "restored.tif", "psf.tif", "figure.png")}
    _check_outputs(paths.values(), args.force)
    from psfkit import data
    from psfkit.metrics import decorrelation_resolution
    from psfkit.optics.microscope import Optics
    from psfkit.pipeline import deblur

    image = data.celegans()
    info = data.sample_info("celegans")
    optics = Optics(**info["optics"])
    assumed = ", ".join(f"{name} {info['optics'][name]:g}" for name in info["optics_assumed"])
    print(
        f"sample: C. elegans intestine, {optics.modality}, {image.shape[0]}x{image.shape[1]} pixels of "
        f"{1000 * optics.pixel_size:.1f} nm ({info['source']})\n"
        f"optics: {optics.modality} and pixel size from the file; assumed (not in the file): {assumed} (um)"
    )
    _announce(optics, None, False)
    start = time.perf_counter()
    restored, psf = deblur(image, optics=optics, device=args.device)
    elapsed = time.perf_counter() - start
    nm = 1000 * optics.pixel_size
    before, after = (decorrelation_resolution(a, pixel_size=nm) for a in (image, restored))
    arrays = [_as_written([image]), _as_written([restored]), _as_written([psf]), figure(image, restored, psf)]
    write_images(dict(zip(paths.values(), arrays)), overwrite=args.force, parents=True,
                 spacing=(optics.pixel_size,) * 2)
    print(f"PSF + deconvolution in {elapsed:.2f} s")
    print(f"resolution (image decorrelation analysis, Descloux et al. 2019): {before:.0f} nm -> {after:.0f} nm")
    for path in paths.values():
        print(f"  wrote {path}")


def _optics_options(command, *, stack):
    """The options describing the microscope (um), each defaulting to the file's metadata."""
    from psfkit.optics.microscope import MODALITIES

    group = command.add_argument_group("optics", f"lengths in um, defaults from the file's metadata; {stack}")
    group.add_argument("--na", type=_positive(float), help="numerical aperture")
    group.add_argument("--wavelength", type=_positive(float), help="emission wavelength")
    group.add_argument("--pixel-size", type=_positive(float), help="pixel size in the sample plane")
    group.add_argument("--z-step", type=_positive(float), help="axial step of a stack")
    group.add_argument("--modality", choices=MODALITIES, help="imaging mode (default: widefield)")
    group.add_argument("--immersion-index", type=_positive(float), help="immersion refractive index (default 1.515)")
    group.add_argument("--sample-index", type=_positive(float), help="sample refractive index (default: immersion)")
    group.add_argument("--excitation", type=_positive(float), help="excitation wavelength (confocal, airyscan)")
    group.add_argument("--pinhole", type=float, help="pinhole diameter in Airy units (confocal, airyscan)")
    group.add_argument("--sheet-thickness", type=_positive(float), help="light-sheet FWHM (lightsheet)")


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # one line, like every other error: argparse would print the whole usage first
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def parser():
    from psfkit.pipeline import _METHODS  # numpy only: torch is imported when deblur runs

    p = _Parser(prog="psfkit", description="Identify the blur of microscope images blindly and remove it.")
    sub = p.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the blind PSF estimate + deblurring on the bundled sample")
    demo.add_argument("-o", "--output", default="psfkit_demo_output", help="output folder")
    demo.add_argument("--force", action="store_true", help="overwrite existing outputs")
    demo.add_argument("--device", default=None, help="cpu or cuda (default: CUDA when available)")
    demo.set_defaults(run=cmd_demo, subparser=demo)

    for name, helptext in (("estimate", "estimate the PSF of an image"), ("deblur", "estimate the PSF and deblur")):
        c = sub.add_parser(name, help=helptext)
        c.add_argument("image", nargs="+" if name == "deblur" else None,
                       help="input TIFF (multi-page: a stack or frames, see --frames) or PNG"
                            + ("; several: see 'many files'" if name == "deblur" else ""))
        c.add_argument("-o", "--output", required=name == "deblur",
                       help="output .tif or .png" + (", .ome.zarr, or a folder OUT/" if name == "deblur" else ""))
        c.add_argument("--cutoff", type=_positive(float),
                       help="cut-off frequency fc in cycles/pixel, instead of the optics (below 0.125 the PSF is "
                            "identified on a downsampled copy; above 0.27, under-sampled, it is the nominal one)")
        _optics_options(c, stack="a multi-page file with a known z step is one (z, y, x) stack, given the "
                                 "nominal 3-D PSF of its optics")
        c.add_argument("--frames", action="store_true",
                       help="treat a multi-page file as independent 2-D frames even when its z step is known")
        c.add_argument("--max-amplitude", type=_positive(float), help="known bound of the aberrations (waves)")
        c.add_argument("--grid", type=_grid, help="space-varying PSF map, e.g. 4x4")
        c.add_argument("--size", type=_positive(int), default=None,
                       help="PSF window side (default 33; for a stack, from the optics)")
        c.add_argument("--refine", action=argparse.BooleanOptionalAction, default=None,
                       help="fit the network's estimate to the image (about 4-8 s on 2 CPU cores; "
                            "default: on for a global PSF that the network finds strongly aberrated, "
                            "largest coefficient above 0.065 waves; off with --grid)")
        c.add_argument("--device", default=None, help="cpu or cuda (default: CUDA when available)")
        c.add_argument("--force", action="store_true", help="overwrite existing outputs")
        if name == "deblur":
            c.add_argument("--method", default="auto", choices=_METHODS, metavar="METHOD", help="auto (the unrolled network; rl-tv when --iterations is given), unrolled, rl-tv, rl, fista or wiener")
            c.add_argument("--iterations", type=_positive(int), default=None)
            _batch_options(c)
        c.set_defaults(run=cmd_estimate if name == "estimate" else cmd_deblur, subparser=c)

    from psfkit.optics.microscope import MODELS

    d = sub.add_parser("deconvolve", help="deconvolve a 2-D image or a 3-D stack with the PSF of known optics")
    d.add_argument("image", nargs="+",
                   help="input TIFF (a multi-page TIFF is one (z, y, x) stack) or PNG; several: see 'many files'")
    d.add_argument("-o", "--output", required=True,
                   help="output .tif (the PSF goes to <name>_psf.tif), .ome.zarr, or a folder OUT/")
    _optics_options(d, stack="a multi-page TIFF is one (z, y, x) stack")
    d.add_argument("--model", choices=MODELS, default="scalar",
                   help="PSF model: scalar (non-paraxial, default), born-wolf (paraxial, as deconwolf) or vectorial")
    d.add_argument("--psf-shape", type=_shape, help="PSF sides, e.g. 39x65x65 (default: from the optics)")
    d.add_argument("--method", default="rl-tv", choices=("rl-tv", "rl", "fista", "wiener"),
                   help="rl-tv (default), rl, fista or wiener (see psfkit.deconvolve)")
    d.add_argument("--iterations", type=_positive(int), default=None,
                   help="iterations (default: stop when the data are fitted to their noise level, see psfkit.deconvolve)")
    d.add_argument("--background", type=float, default=0.0, help="known constant background (camera offset)")
    d.add_argument("--force", action="store_true", help="overwrite existing outputs")
    _batch_options(d)
    d.set_defaults(run=cmd_deconvolve, subparser=d)
    return p


def _print_warning(message, category, filename, lineno, file=None, line=None):
    # a user of the command line wants the advice, not the source line that raised it
    print(f"psfkit: warning: {message}", file=sys.stderr)


def main(argv=None):
    args, unknown = parser().parse_known_args(argv)
    if unknown:  # reported by the command's parser, so the line names the command
        args.subparser.error(f"unrecognized arguments: {' '.join(unknown)}")
    with warnings.catch_warnings():
        warnings.showwarning = _print_warning  # restored on exit: main() is also called in-process
        try:
            status = args.run(args)
        except _USER_ERRORS as error:
            print(f"psfkit {args.command}: error: {_message(error)}", file=sys.stderr)
            return 2
    return status or 0  # 1: a many-files run in which some files failed


def run():
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
