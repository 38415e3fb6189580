"""The ``psfkit`` command line: ``demo``, ``estimate`` and ``deblur``.

Errors are reported as one line on stderr (exit status 2), never as a
traceback; an existing output is never overwritten without ``--force``.
"""

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np


class CommandError(Exception):
    """A user-facing error: printed as one line."""


# ---------------------------------------------------------------- image I/O
def read_image(path):
    """Read a TIFF (any pages) or PNG/JPEG as a float array (pages, y, x) or (y, x)."""
    path = Path(path)
    if not path.exists():
        raise CommandError(f"input file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            image = tifffile.imread(path)
        else:
            import imageio.v3 as iio

            image = iio.imread(path)
            if image.ndim == 3 and image.shape[-1] in (3, 4):  # colour -> luminance
                image = image[..., :3].astype(np.float64) @ np.array([0.2126, 0.7152, 0.0722])
    except CommandError:
        raise
    except Exception as error:  # noqa: BLE001 - any reader failure is a user-facing error
        raise CommandError(f"cannot read {path}: {error}") from error
    image = np.squeeze(np.asarray(image))
    if image.ndim not in (2, 3):
        raise CommandError(f"{path}: expected a 2-D image or a stack of 2-D frames, got shape {image.shape}")
    return image


def _check_output(path, force):
    path = Path(path)
    if path.exists() and not force:
        raise CommandError(f"{path} exists; use --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _check_format(path):
    if Path(path).suffix.lower() not in (".tif", ".tiff", ".png"):
        raise CommandError(f"unsupported output format {Path(path).suffix!r}: use .tif or .png")


def write_image(path, array, *, force):
    """Write a float array as TIFF (float32) or as an 8-bit PNG (scaled to its range)."""
    path = _check_output(path, force)
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        tifffile.imwrite(path, np.asarray(array, dtype=np.float32))
    elif path.suffix.lower() == ".png":
        import imageio.v3 as iio

        iio.imwrite(path, to_uint8(array))
    else:
        raise CommandError(f"unsupported output format {path.suffix!r}: use .tif or .png")
    return path


def to_uint8(array, *, gamma=1.0):
    """Scale to 8 bits between the 0.1 and 99.9 percentiles."""
    array = np.asarray(array, dtype=np.float64)
    lo, hi = np.percentile(array, [0.1, 99.9])
    scaled = np.clip((array - lo) / max(hi - lo, 1e-12), 0, 1) ** gamma
    return np.round(255 * scaled).astype(np.uint8)


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
    if text is None:
        return None
    try:
        gy, gx = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"grid must look like 4x4, got {text!r}") from None
    return gy, gx


def _frames(image):
    return [image] if image.ndim == 2 else list(image)


def _progress(frames, label):
    from tqdm import tqdm

    return tqdm(frames, desc=label, disable=len(frames) == 1 or not sys.stderr.isatty())


def cmd_estimate(args):
    from psfkit.identification.estimate import estimate_psf

    image = read_image(args.image)
    output = Path(args.output or Path(args.image).with_name(Path(args.image).stem + "_psf.tif"))
    _check_format(output)
    _check_output(output, args.force)
    cutoff = _cutoff(args)
    psfs = [
        estimate_psf(
            frame, cutoff=cutoff, max_amplitude=args.max_amplitude, size=args.size, grid=args.grid,
            refine=args.refine, device=args.device,
        )
        for frame in _progress(_frames(image), "estimating")
    ]
    write_image(output, psfs[0] if len(psfs) == 1 else np.stack(psfs), force=args.force)
    print(f"PSF written to {output}")


def cmd_deblur(args):
    from psfkit.pipeline import deblur

    image = read_image(args.image)
    _check_format(args.output)
    output = _check_output(args.output, args.force)
    psf_path = output.with_name(output.stem + "_psf.tif")
    _check_output(psf_path, args.force)
    cutoff = _cutoff(args)
    restored, psfs = [], []
    for frame in _progress(_frames(image), "deblurring"):
        r, p = deblur(
            frame, cutoff=cutoff, max_amplitude=args.max_amplitude, grid=args.grid, method=args.method,
            iterations=args.iterations, size=args.size, refine=args.refine, device=args.device,
        )
        restored.append(r)
        psfs.append(p)
    write_image(output, restored[0] if len(restored) == 1 else np.stack(restored), force=args.force)
    write_image(psf_path, psfs[0] if len(psfs) == 1 else np.stack(psfs), force=args.force)
    print(f"restored image written to {output}\nPSF written to {psf_path}")


def cmd_demo(args):
    from psfkit import data
    from psfkit.pipeline import deblur

    out = Path(args.output)
    paths = {name: out / name for name in ("input.tif", "restored.tif", "psf.tif", "figure.png")}
    for path in paths.values():
        _check_output(path, args.force)
    image = data.celegans()
    info = data.sample_info("celegans") if hasattr(data, "sample_info") else {}
    print(f"sample: C. elegans intestine, Airyscan, {image.shape[0]}x{image.shape[1]} pixels {info.get('source', '')}".rstrip())
    start = time.perf_counter()
    restored, psf = deblur(image, device=args.device)
    elapsed = time.perf_counter() - start
    write_image(paths["input.tif"], image, force=True)
    write_image(paths["restored.tif"], restored, force=True)
    write_image(paths["psf.tif"], psf, force=True)
    import imageio.v3 as iio

    iio.imwrite(paths["figure.png"], figure(image, restored, psf))
    print(f"blind PSF estimate + deconvolution in {elapsed:.2f} s")
    for path in paths.values():
        print(f"  wrote {path}")


def parser():
    p = argparse.ArgumentParser(prog="psfkit", description="Identify the blur of microscope images blindly and remove it.")
    sub = p.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the blind PSF estimate + deblurring on the bundled sample")
    demo.add_argument("-o", "--output", default="psfkit_demo_output", help="output folder")
    demo.add_argument("--force", action="store_true", help="overwrite existing outputs")
    demo.add_argument("--device", default=None, help="cpu or cuda (default: CUDA when available)")
    demo.set_defaults(run=cmd_demo)

    for name, helptext in (("estimate", "estimate the PSF of an image"), ("deblur", "estimate the PSF and deblur")):
        c = sub.add_parser(name, help=helptext)
        c.add_argument("image", help="input TIFF (multi-page: frame by frame) or PNG")
        c.add_argument("-o", "--output", required=name == "deblur", help="output .tif or .png")
        c.add_argument("--cutoff", type=float,
                       help="cut-off frequency fc in cycles/pixel (at most 0.27; below 0.125 the PSF is identified "
                            "on a downsampled copy)")
        c.add_argument("--na", type=float, help="numerical aperture")
        c.add_argument("--wavelength", type=float, help="emission wavelength (same unit as --pixel-size)")
        c.add_argument("--pixel-size", type=float, help="pixel size in the sample plane")
        c.add_argument("--max-amplitude", type=float, help="known bound of the aberrations (waves)")
        c.add_argument("--grid", type=_grid, help="space-varying PSF map, e.g. 4x4")
        c.add_argument("--size", type=int, default=33, help="PSF window side (default 33)")
        c.add_argument("--refine", action=argparse.BooleanOptionalAction, default=None,
                       help="fit the network's estimate to the image (about 3-7 s on 2 CPU cores; "
                            "default: on for a global PSF that the network finds strongly aberrated, "
                            "largest coefficient above 0.065 waves; off with --grid)")
        c.add_argument("--device", default=None, help="cpu or cuda (default: CUDA when available)")
        c.add_argument("--force", action="store_true", help="overwrite existing outputs")
        if name == "deblur":
            c.add_argument("--method", default="auto", help="auto (the unrolled network; rl-tv when --iterations is given), unrolled, rl-tv, rl, fista or wiener")
            c.add_argument("--iterations", type=int, default=None)
        c.set_defaults(run=cmd_estimate if name == "estimate" else cmd_deblur)
    return p


def _print_warning(message, category, filename, lineno, file=None, line=None):
    # a user of the command line wants the advice, not the source line that raised it
    print(f"psfkit: warning: {message}", file=sys.stderr)


def main(argv=None):
    args = parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _print_warning  # restored on exit: main() is also called in-process
        try:
            args.run(args)
        except (CommandError, ValueError, TypeError, FileNotFoundError, RuntimeError) as error:
            print(f"psfkit {args.command}: error: {error}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())


def run():
    """Console-script entry point."""
    sys.exit(main())
