"""The ``psfkit`` command line: ``demo``, ``estimate``, ``deblur`` and ``deconvolve``.

A user error (a bad option, an unreadable input, an output that cannot be
written, too little memory) is one line on stderr and exit status 2, never a
traceback; anything else is a bug and keeps its traceback. Inputs and outputs
are checked before the networks (and torch) are imported, so a typo fails at
once. A command writes all its outputs or none, and never overwrites one
without ``--force``.
"""

import argparse
import math
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
def _cutoff(args):
    physical = (args.na, args.wavelength, args.pixel_size)
    if args.cutoff is not None and any(v is not None for v in physical):
        raise CommandError("give either --cutoff or --na/--wavelength/--pixel-size, not both")
    if any(v is not None for v in physical):
        if any(v is None for v in physical):
            raise CommandError("--na, --wavelength and --pixel-size must be given together (same length unit)")
        from psfkit.optics.psf import cutoff_frequency

        return cutoff_frequency(args.na, args.wavelength, args.pixel_size)
    return args.cutoff


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


def cmd_estimate(args):
    image = read_image(args.image)
    output = Path(args.output or Path(args.image).with_name(Path(args.image).stem + "_psf.tif"))
    _check_outputs([output], args.force, stacked=image.ndim == 3 or args.grid is not None)
    cutoff = _cutoff(args)
    from psfkit.identification.estimate import estimate_psf  # imports torch: only once the inputs are known good

    psfs = [
        estimate_psf(
            frame, cutoff=cutoff, max_amplitude=args.max_amplitude, size=args.size, grid=args.grid,
            refine=args.refine, device=args.device,
        )
        for frame in _progress(_frames(image), "estimating")
    ]
    write_images({output: _as_written(psfs)}, overwrite=args.force, parents=True)
    print(f"PSF written to {output}")


def cmd_deblur(args):
    image = read_image(args.image)
    output = Path(args.output)
    psf_path = output.with_name(output.stem + "_psf.tif")
    _check_outputs([output], args.force, stacked=image.ndim == 3)
    _check_outputs([psf_path], args.force)
    cutoff = _cutoff(args)
    from psfkit.pipeline import deblur

    restored, psfs = [], []
    for frame in _progress(_frames(image), "deblurring"):
        r, p = deblur(
            frame, cutoff=cutoff, max_amplitude=args.max_amplitude, grid=args.grid, method=args.method,
            iterations=args.iterations, size=args.size, refine=args.refine, device=args.device,
        )
        restored.append(r)
        psfs.append(p)
    write_images({output: _as_written(restored), psf_path: _as_written(psfs)}, overwrite=args.force, parents=True)
    print(f"restored image written to {output}\nPSF written to {psf_path}")


# Optics fields the deconvolve command takes from its options (um for lengths), and the option that gives each
_OPTICS_OPTIONS = {
    "na": "--na", "wavelength": "--wavelength", "pixel_size": "--pixel-size", "z_step": "--z-step",
    "immersion_index": "--immersion-index", "sample_index": "--sample-index", "modality": "--modality",
    "excitation": "--excitation", "pinhole": "--pinhole", "sheet_thickness": "--sheet-thickness",
}
# Largest PSF half-width in pixels chosen automatically (the widefield out-of-focus cone is wider still).
_MAX_PSF_REACH = 32


def _optics(args, path, ndim):
    """Optics from the file's metadata, overridden by the options; a CommandError naming what is missing."""
    from psfkit.io._images import _TIFF_MAGIC
    from psfkit.optics.microscope import Optics, _tiff_metadata

    given = {field: getattr(args, field) for field in _OPTICS_OPTIONS if getattr(args, field) is not None}
    with open(path, "rb") as file:
        is_tiff = file.read(4) in _TIFF_MAGIC
    found = {}
    if is_tiff:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            found = _tiff_metadata(tif)
    values = {**found, **given}
    needed = ("na", "wavelength", "pixel_size") + (("z_step",) if ndim == 3 else ())
    missing = [_OPTICS_OPTIONS[name] for name in needed if values.get(name) is None]
    if missing:
        where = "the file's metadata" if is_tiff else "a non-TIFF file's (absent) metadata"
        raise CommandError(
            f"missing {', '.join(missing)}: not given and not in {where} ({path}); lengths in um"
            + ("; --z-step is the stack's axial step" if "--z-step" in missing else "")
        )
    if is_tiff:
        return Optics.from_tiff(path, **given)
    return Optics(**values)


def _psf_shape(optics, image_shape):
    """Odd PSF sides: the whole stack depth, laterally the out-of-focus cone of that depth (capped), within the image."""
    def odd_within(reach, n):
        side = 2 * int(reach) + 1
        return max(1, min(side, n if n % 2 else n - 1))

    # lateral reach: 4 Airy radii in focus, the edge of the light cone at the deepest plane of the PSF
    airy = 0.61 * optics.wavelength / optics.na / optics.pixel_size
    lateral = 4 * airy
    shape = []
    if len(image_shape) == 3:
        nz = odd_within(image_shape[0] // 2, image_shape[0])
        sin = optics.na / optics.immersion_index
        cone = (nz // 2) * optics.z_step * sin / math.sqrt(1 - sin * sin) / optics.pixel_size
        lateral = max(lateral, cone)
        shape.append(nz)
    reach = min(math.ceil(lateral), _MAX_PSF_REACH)
    shape += [odd_within(reach, n) for n in image_shape[-2:]]
    return tuple(shape)


def cmd_deconvolve(args):
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
    spacing = None
    if image.ndim == 3:
        spacing = (optics.z_step, optics.pixel_size, optics.pixel_size)
    restored = deconvolve(
        image, psf, method=args.method, iterations=args.iterations, background=args.background,
        dtype=np.float32, progress=sys.stderr.isatty(), spacing=spacing,
    )
    elapsed = time.perf_counter() - start
    write_images({output: _as_written([restored]), psf_path: _as_written([psf])}, overwrite=args.force, parents=True)
    print(
        f"deconvolved {'x'.join(map(str, image.shape))} with a {args.model} {optics.modality} PSF "
        f"{'x'.join(map(str, shape))} in {elapsed:.1f} s\nrestored image written to {output}\nPSF written to {psf_path}"
    )


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
    from psfkit.pipeline import deblur

    image = data.celegans()
    info = data.sample_info("celegans") if hasattr(data, "sample_info") else {}
    print(f"sample: C. elegans intestine, Airyscan, {image.shape[0]}x{image.shape[1]} pixels {info.get('source', '')}".rstrip())
    start = time.perf_counter()
    restored, psf = deblur(image, device=args.device)
    elapsed = time.perf_counter() - start
    arrays = [_as_written([image]), _as_written([restored]), _as_written([psf]), figure(image, restored, psf)]
    write_images(dict(zip(paths.values(), arrays)), overwrite=args.force, parents=True)
    print(f"blind PSF estimate + deconvolution in {elapsed:.2f} s")
    for path in paths.values():
        print(f"  wrote {path}")


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
        c.add_argument("image", help="input TIFF (multi-page: frame by frame) or PNG")
        c.add_argument("-o", "--output", required=name == "deblur", help="output .tif or .png")
        c.add_argument("--cutoff", type=_positive(float),
                       help="cut-off frequency fc in cycles/pixel (at most 0.27; below 0.125 the PSF is identified "
                            "on a downsampled copy)")
        c.add_argument("--na", type=_positive(float), help="numerical aperture")
        c.add_argument("--wavelength", type=_positive(float), help="emission wavelength (same unit as --pixel-size)")
        c.add_argument("--pixel-size", type=_positive(float), help="pixel size in the sample plane")
        c.add_argument("--max-amplitude", type=_positive(float), help="known bound of the aberrations (waves)")
        c.add_argument("--grid", type=_grid, help="space-varying PSF map, e.g. 4x4")
        c.add_argument("--size", type=_positive(int), default=33, help="PSF window side (default 33)")
        c.add_argument("--refine", action=argparse.BooleanOptionalAction, default=None,
                       help="fit the network's estimate to the image (about 4-8 s on 2 CPU cores; "
                            "default: on for a global PSF that the network finds strongly aberrated, "
                            "largest coefficient above 0.065 waves; off with --grid)")
        c.add_argument("--device", default=None, help="cpu or cuda (default: CUDA when available)")
        c.add_argument("--force", action="store_true", help="overwrite existing outputs")
        if name == "deblur":
            c.add_argument("--method", default="auto", choices=_METHODS, metavar="METHOD", help="auto (the unrolled network; rl-tv when --iterations is given), unrolled, rl-tv, rl, fista or wiener")
            c.add_argument("--iterations", type=_positive(int), default=None)
        c.set_defaults(run=cmd_estimate if name == "estimate" else cmd_deblur, subparser=c)

    from psfkit.optics.microscope import MODALITIES, MODELS

    d = sub.add_parser("deconvolve", help="deconvolve a 2-D image or a 3-D stack with the PSF of known optics")
    d.add_argument("image", help="input TIFF (a multi-page TIFF is one (z, y, x) stack) or PNG")
    d.add_argument("-o", "--output", required=True, help="output .tif (the PSF goes to <name>_psf.tif)")
    d.add_argument("--na", type=_positive(float), help="numerical aperture (default: the file's metadata)")
    d.add_argument("--wavelength", type=_positive(float), help="emission wavelength in um (default: metadata)")
    d.add_argument("--pixel-size", type=_positive(float), help="pixel size in the sample in um (default: metadata)")
    d.add_argument("--z-step", type=_positive(float), help="axial step of a stack in um (default: metadata)")
    d.add_argument("--modality", choices=MODALITIES, help="imaging mode (default: widefield)")
    d.add_argument("--model", choices=MODELS, default="scalar",
                   help="PSF model: scalar (non-paraxial, default), born-wolf (paraxial, as deconwolf) or vectorial")
    d.add_argument("--immersion-index", type=_positive(float), help="immersion refractive index (default 1.515)")
    d.add_argument("--sample-index", type=_positive(float), help="sample refractive index (default: immersion)")
    d.add_argument("--excitation", type=_positive(float), help="excitation wavelength in um (confocal, airyscan)")
    d.add_argument("--pinhole", type=float, help="pinhole diameter in Airy units (confocal, airyscan)")
    d.add_argument("--sheet-thickness", type=_positive(float), help="light-sheet FWHM in um (lightsheet)")
    d.add_argument("--psf-shape", type=_shape, help="PSF sides, e.g. 39x65x65 (default: from the optics)")
    d.add_argument("--method", default="rl-tv", choices=("rl-tv", "rl", "fista", "wiener"),
                   help="rl-tv (default), rl, fista or wiener (see psfkit.deconvolve)")
    d.add_argument("--iterations", type=_positive(int), default=None,
                   help="iterations (default: psfkit.deconvolve's, 50 for rl-tv)")
    d.add_argument("--background", type=float, default=0.0, help="known constant background (camera offset)")
    d.add_argument("--force", action="store_true", help="overwrite existing outputs")
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
            args.run(args)
        except _USER_ERRORS as error:
            print(f"psfkit {args.command}: error: {_message(error)}", file=sys.stderr)
            return 2
    return 0


def run():
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
