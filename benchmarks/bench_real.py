"""Deblurring with real optics: measured PSFs, real specimens, real stacks (issue #24).

Run from the repository root::

    python benchmarks/bench_real.py [--quick] [--all-specimens] [--tiers 1,2,3] [--threads 1]

Prints Markdown tables (every method side by side, same run) and, for a full run, writes
``benchmarks/results/real.json`` (every case) and ``benchmarks/results/real.png`` (if matplotlib is
installed). ``--quick`` (a few cases, ~35 s) writes nothing. Full run: ~5.5 minutes on 2 shared cores.
Only psfkit's public API is used.

Data (``../shared/data``, see each folder's README; ``../shared/notes/real_optics.md`` has the anchor
figures).

**Tier 1 -- measured-PSF truth.** Three real 3-D PSFs, each recentred on its maximum voxel, normalised to sum 1:

- ``confocal``: MPI-CBG bead-averaged confocal PSF (``psf_beads_averaged_45cube.tif``, 22.49 nm x 125 nm).
  NA and wavelengths are not stated: as in ``bench_fit_psf.py`` we assume NA 1.4 oil (n 1.515), excitation
  0.488 / emission 0.52 um, 1-AU pinhole (``modality='confocal'``).
- ``llsm``: the raw lattice-light-sheet bead (``pycudadecon_llsm_bead_psf/psf.tif``, 101.1 nm x 100 nm),
  *measured* (not the ``fit_psf`` model): the median (camera offset + background, 142) subtracted, clipped at 0,
  normalised. As in ``bench_fit_psf.py``: detection NA 1.1 water (n 1.333), emission 0.52 um (pycudadecon's
  defaults, not stated for the file), ``modality='lightsheet'`` with an assumed 1.0 um sheet FWHM.
- ``dapi-bw``: deconwolf's pixel-integrated Born-Wolf PSF for the DAPI optics (``psf_bornwolf_dw_bw_65x65x41.tif``:
  widefield, NA 1.45 oil n 1.512, 461 nm, 130 nm x 300 nm) -- a model, not a measurement, but from an
  independent implementation and the paraxial model most deconvolution software uses.

2-D cases: the in-focus plane and a defocused plane (+3 planes = +375 nm for the confocal PSF, +300 nm for the
light sheet, +2 planes = +600 nm for the DAPI PSF) of each, cropped to 33 x 33, sum 1. 3-D cases: the PSF
cropped to 21 x 33 x 33 (confocal, llsm) or 39 x 65 x 65 (dapi-bw: as deep as the
40-plane stack allows -- a widefield PSF cut to 15 x 33 x 33 drops the out-of-focus cone that ``deblur``'s
full-depth nominal PSF then over-corrects: 13 dB instead of 30 in a trial, an artefact of the truncation).

Specimens (real textures; **each specimen's pixels are taken to be the PSF's sampling**, whatever their real
pixel size): the *C. elegans* Airyscan image (``psfkit.data.celegans()``), the in-focus plane (z = 22) of the
DAPI nucleus (``dapi_001.tif``), the maximum projection of the MPI-CBG line grid
(``DeconvolutionSampleVerticalGrid1AU-crop.tif``; photon-starved, so its own noise is part of the "truth"
texture) and ``skimage.data.cell()``; centre crops of at most (256 + 32)^2. 3-D specimen: the DAPI stack
(40 x 128 x 96 centre crop; blurred with ``boundary="reflect"`` since 40 planes are too few for "valid").
Each specimen is normalised: 0.5th percentile -> 0, 99.9th -> 1, clipped at 0.
Acquisition: ``psfkit.simulate_acquisition(specimen, psf, gain=G, read_noise=0.005, boundary="valid")`` (field
extension: no artificial border; the truth is the matching centre crop, at most 256 x 256). G = 3000 / 300 / 30
photons per unit intensity (~ at the specimen's peak): noise ``low`` / ``medium`` / ``high``. The simulated image
is in the specimen's intensity units (the shot noise keeps the mean), so PSNR uses ``data_range=1``; SSIM is
scikit-image's with ``data_range=1``. The full run takes 2 of the 4 specimens per (PSF, plane), rotating, at all
three noise levels (36 2-D cases); ``--all-specimens`` takes all four (72).

Methods (all in the same run): ``input`` (the blurred noisy image); ``oracle`` =
``deconvolve(y, true_psf)`` (rl-tv, automatic regularisation); ``nominal`` = ``deconvolve(y,
microscope_psf(optics, psf_shape))`` (the aberration-free PSF of the stated optics, in focus: a user does not
know the defocus); ``blind (optics)`` = ``deblur(y, optics=optics)`` (its route, ``estimate_psf(...)[1]["source"]``,
is recorded: ``nominal`` for stacks, confocal / Airyscan / light-sheet images and under-sampled widefield
images -- the DAPI optics are, fc = 0.41 -- so every tier-1 case with optics is on the nominal route today;
``deblur`` then runs rl-tv on that PSF with the camera background it estimates, so it differs from ``nominal``
only by that background); ``blind (no optics)`` = ``deblur(y)``
(2-D only; the network estimates fc in its range [0.1, 0.27], which the confocal sampling fc = 0.061 is below;
the candidate it used -- identified, milder or input, see ``deblur``'s support test -- is recorded);
``skimage RL best`` = ``skimage.restoration.richardson_lucy(clip(y, 0), true_psf, num_iter=k, clip=False)``,
the best k in {5, 10, 20, 40} picked with the truth (an oracle twice: true PSF, truth-picked k; its 'same'
convolution pads with zeros, which costs it dearly on the small DAPI plane and on stacks); ``psfkit rl`` =
``deconvolve(y, true_psf, method="rl")`` with its automatic iteration count. For stacks, ``oracle`` and
``nominal`` get ``spacing=(dz, dx, dx)`` like ``deblur`` does.

PSF metrics: PSF SNR = ``psfkit.psf_snr(estimate, truth, align=True)`` (best integer shift <= 3 px and point
reflection) on the 33 x 33 window (estimates cropped / zero-padded centrally); for 3-D PSFs the same formula
10 log10(||h||^2 / ||h - h'||^2) without alignment (both centred at n // 2, sum 1). FWHM with
``psfkit.metrics.fwhm`` on the profiles through the maximum voxel (x and y, and z for stacks), on the grid.

**Tier 2 -- real stacks with a known model.** ``estimate_psf(stack, optics=..., return_coefficients=True)`` on
the DAPI stack (vs deconwolf's Born-Wolf PSF; psfkit's ``model="born-wolf"`` too), on the MPI-CBG bead image
(vs the bead-averaged PSF) and on the raw LLSM bead (vs the background-subtracted bead): PSF SNR and FWHM.

**Tier 3 -- no truth.** ``psfkit.decorrelation_resolution`` (pixel-size units, nm) before and after ``deblur``:
the *C. elegans* image with assumed Airyscan optics (NA 1.4, 520 nm emission, 488 nm excitation, 42.6 nm pixels;
not stated in the source) and without optics; the MPI-CBG grid stack (confocal 1 AU, the assumptions above,
21.97 nm pixels), deblurred as a stack, maximum projections compared. Artefact measures (support = where the
input smoothed by a Gaussian of sigma = 2 px exceeds its minimum by 10 % of its range, dilated by 5 px;
deconvolution moves flux *into* the support, so what happens outside it is noise amplification or ringing):
``roughness`` = standard deviation of the image outside the support over
(its 99.9th percentile - its median outside the support), i.e. background noise relative to the signal range,
each image against its own background level (``deblur`` removes the camera baseline, which must not count);
``negative`` = energy of the negative values over the total energy.

Targets (issue #24), printed next to the results: blind PSF SNR >= nominal + 3 dB on average and never below;
FWHM within 10 % of the truth; ``deblur`` PSNR >= input on every case, mean >= oracle - 1.5 dB and >= nominal;
rl-tv automatic (oracle) >= skimage RL best.
"""

import argparse
import sys

import _threads  # noqa: E402,F401  (first: sets the BLAS threads before numpy is imported)

import json  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import psfkit  # noqa: E402
from _common import machine_info  # noqa: E402
from psfkit.metrics import fwhm, psnr  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "real.json"
FIGURE = RESULTS.with_suffix(".png")
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MPICBG_DIR = SHARED / "mpicbg_confocal_beads"
LLSM_FILE = SHARED / "pycudadecon_llsm_bead_psf" / "psf.tif"
DAPI_DIR = SHARED / "deconwolf_dapi_widefield"

CONFOCAL = psfkit.Optics(na=1.4, wavelength=0.52, pixel_size=0.02249, z_step=0.125, modality="confocal",
                         excitation=0.488)
GRID_OPTICS = psfkit.Optics(na=1.4, wavelength=0.52, pixel_size=0.02197, z_step=0.125, modality="confocal",
                            excitation=0.488)
LLSM = psfkit.Optics(na=1.1, wavelength=0.52, pixel_size=0.1011, z_step=0.1, immersion_index=1.333,
                     modality="lightsheet", sheet_thickness=1.0)
DAPI = psfkit.Optics(na=1.45, wavelength=0.461, pixel_size=0.13, z_step=0.3, immersion_index=1.512)
AIRYSCAN = psfkit.Optics(na=1.4, wavelength=0.52, pixel_size=0.0426, modality="airyscan", excitation=0.488)

NOISE = {"low": 3000.0, "medium": 300.0, "high": 30.0}  # photons per unit intensity
READ_NOISE = 0.005
SIDE = 33  # lateral PSF window
SIZE = 256  # largest 2-D truth
SKIMAGE_ITERATIONS = (5, 10, 20, 40)
METHODS = ("input", "oracle", "nominal", "blind", "blind_no_optics", "skimage_rl_best", "psfkit_rl")
LABELS = {"input": "input", "oracle": "oracle (rl-tv)", "nominal": "nominal", "blind": "blind (optics)",
          "blind_no_optics": "blind (no optics)", "skimage_rl_best": "skimage RL best*", "psfkit_rl": "psfkit rl"}


# ----------------------------------------------------------------------------------------------- helpers
def imread(path):
    import tifffile

    return np.asarray(tifffile.imread(path), dtype=np.float64)


def normalise(x):
    lo, hi = np.percentile(x, [0.5, 99.9])
    return np.clip((x - lo) / (hi - lo), 0, None)


def fit_window(array, shape):
    """Centre crop / zero-pad ``array`` to ``shape`` (centre at n // 2 kept at n // 2)."""
    out = np.zeros(shape)
    src, dst = [], []
    for n_in, n_out in zip(array.shape, shape):
        c_in, c_out = n_in // 2, n_out // 2
        lo = min(c_in, c_out)
        hi = min(n_in - c_in, n_out - c_out)
        src.append(slice(c_in - lo, c_in + hi))
        dst.append(slice(c_out - lo, c_out + hi))
    out[tuple(dst)] = array[tuple(src)]
    return out


def around_max(array, shape):
    """Window of ``shape`` centred on the maximum voxel (zero-padded where it leaves the array), sum 1."""
    peak = np.unravel_index(np.argmax(array), array.shape)
    padded = np.pad(array, [(n, n) for n in shape])
    sl = tuple(slice(p + n - n // 2, p + n - n // 2 + n) for p, n in zip(peak, shape))
    out = np.clip(padded[sl], 0, None)
    return out / out.sum()


def centre_crop(x, shape):
    sl = tuple(slice((n - m) // 2, (n - m) // 2 + m) for n, m in zip(x.shape, shape))
    return x[sl]


def snr_nd(estimate, truth, align=True):
    """PSF SNR (dB) on truth's window: psfkit.psf_snr (aligned) in 2-D, the plain formula in 3-D."""
    est = fit_window(np.clip(np.asarray(estimate, dtype=np.float64), 0, None), truth.shape)
    if truth.ndim == 2:
        return float(psfkit.psf_snr(est, truth, align=align))
    est, ref = est / est.sum(), truth / truth.sum()
    return float(10 * np.log10(np.sum(ref**2) / np.sum((ref - est) ** 2)))


def widths(psf, spacing):
    """FWHM (on the grid) through the maximum voxel along every axis, in ``spacing`` units (z, y, x order)."""
    psf = np.asarray(psf, dtype=np.float64)
    peak = np.unravel_index(np.argmax(psf), psf.shape)
    out = []
    for axis, step in enumerate(spacing):
        index = list(peak)
        index[axis] = slice(None)
        try:
            out.append(float(fwhm(psf[tuple(index)], spacing=step)))
        except ValueError:
            out.append(float("nan"))
    return out


def quality(estimate, truth):
    from skimage.metrics import structural_similarity

    estimate = np.asarray(estimate, dtype=np.float64)
    p = float(psnr(estimate, truth, data_range=1.0))
    s = float(structural_similarity(estimate, truth, data_range=1.0))
    return p, s


def skimage_best(y, psf, truth):
    from skimage.restoration import richardson_lucy

    best = None
    for k in SKIMAGE_ITERATIONS:
        estimate = richardson_lucy(np.clip(y, 0, None), psf, num_iter=k, clip=False)
        p, s = quality(estimate, truth)
        if best is None or p > best[0]:
            best = (p, s, k)
    return best


def timed(func):
    start = time.perf_counter()
    out = func()
    return out, time.perf_counter() - start


# ----------------------------------------------------------------------------------------------- data
def load_psfs():
    """name -> (3-D PSF around its maximum, optics, 2-D defocus in planes, 3-D window)."""
    conf = imread(MPICBG_DIR / "psf_beads_averaged_45cube.tif")
    llsm = imread(LLSM_FILE)
    llsm = np.clip(llsm - np.median(llsm), 0, None)
    bw = imread(DAPI_DIR / "psf_bornwolf_dw_bw_65x65x41.tif")
    return {
        "confocal": (conf, CONFOCAL, 3, (21, SIDE, SIDE)),
        "llsm": (llsm, LLSM, 3, (21, SIDE, SIDE)),
        "dapi-bw": (bw, DAPI, 2, (39, 65, 65)),  # a widefield PSF keeps its whole cone (see the docstring)
    }


def load_specimens():
    import skimage.data

    dapi = imread(DAPI_DIR / "dapi_001.tif")
    grid = imread(MPICBG_DIR / "DeconvolutionSampleVerticalGrid1AU-crop.tif")
    full = SIZE + SIDE - 1
    planes = {
        "celegans": np.asarray(psfkit.data.celegans(), dtype=np.float64),
        "dapi-plane": dapi[22],
        "grid-maxproj": grid.max(axis=0),
        "skimage-cell": np.asarray(skimage.data.cell(), dtype=np.float64),
    }
    planes = {k: normalise(centre_crop(v, [min(n, full) for n in v.shape])) for k, v in planes.items()}
    stack = normalise(centre_crop(dapi, (40, 128, 96)))
    return planes, stack


# ----------------------------------------------------------------------------------------------- tier 1
def run_case(y, truth, true_psf, optics, nominal_psf, dims):
    """Every method on one simulated image; returns the row (qualities, PSF metrics, timings)."""
    row = {"quality": {}, "seconds": {}}
    spacing = (optics.z_step, optics.pixel_size, optics.pixel_size) if dims == 3 else None
    kwargs = {"spacing": spacing} if spacing else {}
    row["quality"]["input"] = quality(y, truth)
    out, row["seconds"]["oracle"] = timed(lambda: psfkit.deconvolve(y, true_psf, **kwargs))
    row["quality"]["oracle"] = quality(out, truth)
    out, row["seconds"]["nominal"] = timed(lambda: psfkit.deconvolve(y, nominal_psf, **kwargs))
    row["quality"]["nominal"] = quality(out, truth)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (out, blind_psf), row["seconds"]["blind"] = timed(lambda: psfkit.deblur(y, optics=optics))
        row["source"] = psfkit.estimate_psf(y, optics=optics, return_coefficients=True)[1]["source"]
    row["quality"]["blind"] = quality(out, truth)
    row["warnings"] = sorted({str(w.message)[:160] for w in caught})
    pix = [optics.z_step, optics.pixel_size, optics.pixel_size][-dims:]
    pix = [1000 * p for p in pix]  # nm
    row["psf"] = {"fwhm_truth_nm": widths(true_psf, pix), "fwhm_nominal_nm": widths(nominal_psf, pix),
                  "fwhm_blind_nm": widths(fit_window(blind_psf, true_psf.shape), pix),
                  "snr_nominal_db": snr_nd(nominal_psf, true_psf), "snr_blind_db": snr_nd(blind_psf, true_psf)}
    if dims == 2:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            (out, psf_no, info), row["seconds"]["blind_no_optics"] = timed(lambda: psfkit.deblur(y, return_info=True))
        row["quality"]["blind_no_optics"] = quality(out, truth)
        row["candidate_no_optics"] = info["candidate"]
        row["consistency_no_optics"] = info["consistency"]
        row["psf"]["snr_blind_no_optics_db"] = snr_nd(psf_no, true_psf)
        row["psf"]["fwhm_blind_no_optics_nm"] = widths(fit_window(psf_no, true_psf.shape), pix)
    (p, s, k), row["seconds"]["skimage_rl_best"] = timed(lambda: skimage_best(y, true_psf, truth))
    row["quality"]["skimage_rl_best"] = (p, s)
    row["skimage_iterations"] = k
    out, row["seconds"]["psfkit_rl"] = timed(lambda: psfkit.deconvolve(y, true_psf, method="rl", **kwargs))
    row["quality"]["psfkit_rl"] = quality(out, truth)
    return row


def tier1(quick, all_specimens):
    psfs = load_psfs()
    planes, stack = load_specimens()
    names = list(planes)
    rows = []
    levels = ["medium"] if quick else list(NOISE)
    for i, (psf_name, (psf3, optics, dz, depth)) in enumerate(psfs.items()):
        cube = around_max(psf3, (2 * dz + 1, SIDE, SIDE))
        nominal2 = psfkit.microscope_psf(optics, (SIDE, SIDE))
        for j, (plane_name, plane) in enumerate((("in-focus", dz), (f"defocus +{dz}", 2 * dz))):
            if quick and j:
                continue
            true_psf = cube[plane] / cube[plane].sum()
            if quick:
                chosen = [names[i % len(names)]]
            elif all_specimens:
                chosen = names
            else:
                k = 2 * i + j
                chosen = [names[k % 4], names[(k + 2) % 4]]
            for level in levels:
                for spec_name in chosen:
                    specimen = planes[spec_name]
                    seed = 1000 * i + 100 * j + 10 * names.index(spec_name) + list(NOISE).index(level)
                    y = psfkit.simulate_acquisition(specimen, true_psf, gain=NOISE[level], read_noise=READ_NOISE,
                                                    boundary="valid", rng=seed)
                    truth = centre_crop(specimen, y.shape)
                    row = run_case(y, truth, true_psf, optics, nominal2, 2)
                    row.update(dims=2, psf=dict(row["psf"], name=psf_name), plane=plane_name, specimen=spec_name,
                               noise=level, gain=NOISE[level], shape=list(y.shape), seed=seed)
                    rows.append(row)
                    progress(row)
        if quick and i:
            continue
        true3 = around_max(psf3, depth)
        nominal3 = psfkit.microscope_psf(optics, true3.shape)
        for level in levels:
            seed = 5000 + 10 * i + list(NOISE).index(level)
            # reflect: the 40-plane stack is too thin for "valid" with a 21-plane PSF
            y = psfkit.simulate_acquisition(stack, true3, gain=NOISE[level], read_noise=READ_NOISE,
                                            boundary="reflect", rng=seed)
            truth = stack
            row = run_case(y, truth, true3, optics, nominal3, 3)
            row.update(dims=3, psf=dict(row["psf"], name=psf_name), plane="3-D", specimen="dapi-stack",
                       noise=level, gain=NOISE[level], shape=list(y.shape), seed=seed)
            rows.append(row)
            progress(row)
    return rows


def progress(row):
    q = row["quality"]
    text = "  ".join(f"{m} {q[m][0]:5.2f}" for m in METHODS if m in q)
    print(f"  {row['psf']['name']:8s} {row['plane']:10s} {row['specimen']:13s} {row['noise']:6s} {text}  "
          f"[{row['source']}, deblur {row['seconds']['blind']:.1f} s]", flush=True)


# ----------------------------------------------------------------------------------------------- tier 2
def tier2():
    rows = []
    bw = imread(DAPI_DIR / "psf_bornwolf_dw_bw_65x65x41.tif")
    bw = bw / bw.sum()
    dapi = imread(DAPI_DIR / "dapi_001.tif")
    conf = around_max(imread(MPICBG_DIR / "psf_beads_averaged_45cube.tif"), (41, SIDE, SIDE))
    beads = imread(MPICBG_DIR / "Bead_Image1_crop.tif")
    llsm_raw = imread(LLSM_FILE)
    llsm = around_max(np.clip(llsm_raw - np.median(llsm_raw), 0, None), (41, SIDE, SIDE))
    cases = [
        ("DAPI stack -> estimate_psf vs deconwolf Born-Wolf", dapi, DAPI, around_max(bw, (41, SIDE, SIDE))),
        ("MPI-CBG bead image -> estimate_psf vs bead average", beads, CONFOCAL, conf),
        ("LLSM raw bead -> estimate_psf vs the bead (background removed)", llsm_raw, LLSM, llsm),
    ]
    for name, stack, optics, truth in cases:
        (estimate, info), seconds = timed(lambda: psfkit.estimate_psf(stack, optics=optics, size=SIDE,
                                                                        return_coefficients=True))
        pix = [1000 * optics.z_step, 1000 * optics.pixel_size, 1000 * optics.pixel_size]
        shape = tuple(min(a, b) for a, b in zip(estimate.shape, truth.shape))
        shape = tuple(n - (1 - n % 2) for n in shape)  # odd
        est_c, truth_c = fit_window(estimate, shape), fit_window(truth, shape)
        row = {"case": name, "source": info["source"], "estimate_shape": list(estimate.shape),
               "compared_shape": list(shape), "seconds": seconds,
               "snr_db": snr_nd(est_c, truth_c),
               "snr_in_focus_db": float(psfkit.psf_snr(est_c[shape[0] // 2], truth_c[shape[0] // 2], align=True)),
               "fwhm_estimate_nm": widths(est_c, pix), "fwhm_truth_nm": widths(truth_c, pix)}
        rows.append(row)
        if optics is DAPI:  # psfkit's own paraxial model at the same optics: the like-for-like check
            bwk = psfkit.microscope_psf(optics, shape, model="born-wolf")
            rows.append({"case": "psfkit microscope_psf(model='born-wolf') vs deconwolf Born-Wolf",
                         "source": "model", "estimate_shape": list(shape), "compared_shape": list(shape),
                         "seconds": 0.0, "snr_db": snr_nd(bwk, truth_c),
                         "snr_in_focus_db": float(psfkit.psf_snr(bwk[shape[0] // 2], truth_c[shape[0] // 2],
                                                                 align=True)),
                         "fwhm_estimate_nm": widths(bwk, pix), "fwhm_truth_nm": widths(truth_c, pix)})
    return rows


# ----------------------------------------------------------------------------------------------- tier 3
def artefacts(image, reference):
    """(background roughness, negative energy, support fraction) of ``image``; support from ``reference``."""
    ref = np.asarray(reference, dtype=np.float64)
    img = np.asarray(image, dtype=np.float64)
    smooth = ndimage.gaussian_filter(ref, 2.0)
    support = smooth > smooth.min() + 0.1 * (smooth.max() - smooth.min())
    support = ndimage.binary_dilation(support, iterations=5)
    outside = img[~support]
    if outside.size < 100:
        return float("nan"), float("nan"), float(support.mean())
    level = np.median(outside)
    roughness = float(np.std(outside) / (np.percentile(img, 99.9) - level))
    negative = float(np.sum(np.clip(img, None, 0) ** 2) / np.sum(img**2))
    return roughness, negative, float(support.mean())


def tier3(quick):
    rows = []
    cel = np.asarray(psfkit.data.celegans(), dtype=np.float64)
    grid = imread(MPICBG_DIR / "DeconvolutionSampleVerticalGrid1AU-crop.tif")
    cases = [("C. elegans, Airyscan optics (assumed)", cel, AIRYSCAN, 0.0426)]
    if not quick:
        cases.append(("C. elegans, no optics", cel, None, 0.0426))
    cases.append(("MPI-CBG grid stack, confocal 1 AU (assumed), max projection", grid, GRID_OPTICS, 0.02197))
    for name, image, optics, pixel in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            (restored, psf), seconds = timed(lambda: psfkit.deblur(image, optics=optics))
            source = psfkit.estimate_psf(image, optics=optics, return_coefficients=True)[1]["source"]
        before, after = (image.max(axis=0), restored.max(axis=0)) if image.ndim == 3 else (image, restored)
        res_before = float(psfkit.decorrelation_resolution(before, pixel_size=1000 * pixel))
        res_after = float(psfkit.decorrelation_resolution(np.asarray(after, dtype=np.float64),
                                                          pixel_size=1000 * pixel))
        out_in, neg_in, support = artefacts(before, before)
        out_re, neg_re, _ = artefacts(after, before)
        rows.append({"case": name, "source": source, "seconds": seconds, "resolution_before_nm": res_before,
                     "resolution_after_nm": res_after, "roughness_input": out_in, "roughness_restored": out_re,
                     "negative_input": neg_in, "negative_restored": neg_re, "support_fraction": support,
                     "psf_fwhm_nm": widths(psf, [1000 * pixel] * psf.ndim if psf.ndim == 2 else
                                           [1000 * optics.z_step, 1000 * pixel, 1000 * pixel])})
    return rows


# ----------------------------------------------------------------------------------------------- report
def groups(rows):
    out = {}
    for r in rows:
        out.setdefault((r["psf"]["name"], r["plane"], r["noise"]), []).append(r)
    return out


def fmt(values):
    if not values:
        return "-"
    return f"{np.mean([v[0] for v in values]):.2f} ({np.mean([v[1] for v in values]):.3f})"


def print_tier1(rows):
    print("\n### Tier 1: measured-PSF truth -- PSNR dB (SSIM), mean over the specimens of each row\n")
    print("| PSF | plane | noise | n | " + " | ".join(LABELS[m] for m in METHODS) + " | deblur s |")
    print("|---|---|---|---|" + "---|" * len(METHODS) + "---|")
    for (name, plane, level), rs in groups(rows).items():
        cells = [fmt([r["quality"][m] for r in rs if m in r["quality"]]) for m in METHODS]
        print(f"| {name} | {plane} | {level} | {len(rs)} | " + " | ".join(cells)
              + f" | {np.mean([r['seconds']['blind'] for r in rs]):.2f} |")
    for dims in (2, 3):
        rs = [r for r in rows if r["dims"] == dims]
        if rs:
            cells = [fmt([r["quality"][m] for r in rs if m in r["quality"]]) for m in METHODS]
            print(f"| **all {dims}-D** | | | {len(rs)} | " + " | ".join(cells)
                  + f" | {np.mean([r['seconds']['blind'] for r in rs]):.2f} |")
    print("\n*skimage RL best: true PSF and the iteration count in {5, 10, 20, 40} picked with the truth (oracle).")

    print("\n### Tier 1: PSFs -- PSF SNR dB (2-D: aligned psf_snr; 3-D: unaligned) and lateral FWHM x nm "
          "(3-D: x / z)\n")
    print("| PSF | plane | route (optics) | SNR nominal | SNR blind (optics) | SNR blind (no optics) "
          "| FWHM truth | FWHM nominal | FWHM blind (optics) | FWHM blind (no optics) |")
    print("|---|---|---|---|---|---|---|---|---|---|")

    def w(values, dims):
        v = np.nanmean(np.array(values), axis=0)
        return f"{v[-1]:.0f}" if dims == 2 else f"{v[-1]:.0f} / {v[0]:.0f}"

    seen = {}
    for r in rows:
        seen.setdefault((r["psf"]["name"], r["plane"]), []).append(r)
    for (name, plane), rs in seen.items():
        dims = rs[0]["dims"]
        p = [r["psf"] for r in rs]
        no = (f"{np.mean([q['snr_blind_no_optics_db'] for q in p]):.2f}" if dims == 2 else "-")
        no_w = w([q["fwhm_blind_no_optics_nm"] for q in p], dims) if dims == 2 else "-"
        print(f"| {name} | {plane} | {'/'.join(sorted({r['source'] for r in rs}))} "
              f"| {np.mean([q['snr_nominal_db'] for q in p]):.2f} | {np.mean([q['snr_blind_db'] for q in p]):.2f} "
              f"| {no} | {w([q['fwhm_truth_nm'] for q in p], dims)} | {w([q['fwhm_nominal_nm'] for q in p], dims)} "
              f"| {w([q['fwhm_blind_nm'] for q in p], dims)} | {no_w} |")


def summary(rows):
    """Counts and the issue's targets."""
    def col(m, rs):
        return np.array([r["quality"][m][0] for r in rs])

    lines = []
    out = {}
    for label, rs in (("2-D", [r for r in rows if r["dims"] == 2]), ("3-D", [r for r in rows if r["dims"] == 3])):
        if not rs:
            continue
        inp, ora, nom, bl, sk = (col(m, rs) for m in ("input", "oracle", "nominal", "blind", "skimage_rl_best"))
        snr_b = np.array([r["psf"]["snr_blind_db"] for r in rs])
        snr_n = np.array([r["psf"]["snr_nominal_db"] for r in rs])
        fw_t = np.array([r["psf"]["fwhm_truth_nm"][-1] for r in rs])
        fw_b = np.array([r["psf"]["fwhm_blind_nm"][-1] for r in rs])
        fw_err = np.abs(fw_b / fw_t - 1)
        s = {
            "cases": len(rs),
            "blind_below_input": int(np.sum(bl < inp)),
            "mean_blind_minus_input_db": float(np.mean(bl - inp)),
            "mean_blind_minus_oracle_db": float(np.mean(bl - ora)),
            "mean_blind_minus_nominal_db": float(np.mean(bl - nom)),
            "blind_below_nominal": int(np.sum(bl < nom)),
            "oracle_minus_skimage_best_db": float(np.mean(ora - sk)),
            "oracle_below_skimage_best": int(np.sum(ora < sk)),
            "psf_snr_blind_minus_nominal_db": float(np.mean(snr_b - snr_n)),
            "psf_snr_blind_below_nominal": int(np.sum(snr_b < snr_n - 1e-9)),
            "fwhm_within_10pct": int(np.sum(fw_err <= 0.10)),
            "routes": {k: int(sum(r["source"] == k for r in rs)) for k in ("identified", "nominal")},
        }
        if label == "2-D":
            no = col("blind_no_optics", rs)
            s["blind_no_optics_below_input"] = int(np.sum(no < inp))
            s["blind_no_optics_candidates"] = {c: sum(r.get("candidate_no_optics") == c for r in rs)
                                               for c in ("identified", "milder", "input")}
            s["mean_blind_no_optics_minus_oracle_db"] = float(np.mean(no - ora))
            s["mean_blind_no_optics_minus_nominal_db"] = float(np.mean(no - nom))
            snr_o = np.array([r["psf"]["snr_blind_no_optics_db"] for r in rs])
            s["psf_snr_blind_no_optics_minus_nominal_db"] = float(np.mean(snr_o - snr_n))
            s["psf_snr_blind_no_optics_below_nominal"] = int(np.sum(snr_o < snr_n))
        out[label] = s
        psf_target = s["psf_snr_blind_minus_nominal_db"] >= 3 and not s["psf_snr_blind_below_nominal"]
        n = len(rs)
        lines += [
            f"| {label} | PSF SNR blind >= nominal + 3 dB on average, never below | "
            f"mean {s['psf_snr_blind_minus_nominal_db']:+.2f} dB, below on {s['psf_snr_blind_below_nominal']}/{n}"
            + (f"; no optics: {s['psf_snr_blind_no_optics_minus_nominal_db']:+.2f} dB, below on "
               f"{s['psf_snr_blind_no_optics_below_nominal']}/{n}" if label == "2-D" else "")
            + f" | {'yes' if psf_target else 'NO'} |",
            f"| {label} | blind FWHM (x) within 10 % of the truth | {s['fwhm_within_10pct']}/{n} cases "
            f"| {'yes' if s['fwhm_within_10pct'] == n else 'NO'} |",
            f"| {label} | deblur PSNR >= input on every case | below input on {s['blind_below_input']}/{n} "
            f"(mean {s['mean_blind_minus_input_db']:+.2f} dB)"
            + (f"; no optics: {s['blind_no_optics_below_input']}/{n} (candidates used: "
               + ", ".join(f"{k} {v}" for k, v in s["blind_no_optics_candidates"].items()) + ")"
               if label == "2-D" else "")
            + f" | {'yes' if not s['blind_below_input'] else 'NO'} |",
            f"| {label} | deblur mean >= oracle - 1.5 dB | {s['mean_blind_minus_oracle_db']:+.2f} dB"
            + (f"; no optics {s['mean_blind_no_optics_minus_oracle_db']:+.2f} dB" if label == "2-D" else "")
            + f" | {'yes' if s['mean_blind_minus_oracle_db'] >= -1.5 else 'NO'} |",
            f"| {label} | deblur mean >= nominal | {s['mean_blind_minus_nominal_db']:+.2f} dB, below on "
            f"{s['blind_below_nominal']}/{n}"
            + (f"; no optics {s['mean_blind_no_optics_minus_nominal_db']:+.2f} dB" if label == "2-D" else "")
            + f" | {'yes' if s['mean_blind_minus_nominal_db'] >= 0 else 'NO'} |",
            f"| {label} | rl-tv automatic (oracle) >= skimage RL best | {s['oracle_minus_skimage_best_db']:+.2f} dB, "
            f"below on {s['oracle_below_skimage_best']}/{n} | "
            f"{'yes' if s['oracle_minus_skimage_best_db'] >= 0 else 'NO'} |",
        ]
    print("\n### Targets (issue #24)\n")
    print("| cases | target | result | met |")
    print("|---|---|---|---|")
    print("\n".join(lines))
    return out


def print_tier2(rows):
    print("\n### Tier 2: estimate_psf on real stacks vs a known PSF\n")
    print("| case | route | compared (z, y, x) | PSF SNR 3-D dB | in-focus plane dB (aligned) "
          "| FWHM x / y / z estimate nm | FWHM x / y / z truth nm | s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        e, t = r["fwhm_estimate_nm"], r["fwhm_truth_nm"]
        print(f"| {r['case']} | {r['source']} | {'x'.join(map(str, r['compared_shape']))} | {r['snr_db']:.2f} "
              f"| {r['snr_in_focus_db']:.2f} | {e[2]:.0f} / {e[1]:.0f} / {e[0]:.0f} "
              f"| {t[2]:.0f} / {t[1]:.0f} / {t[0]:.0f} | {r['seconds']:.2f} |")


def print_tier3(rows):
    print("\n### Tier 3: no truth -- decorrelation resolution and artefacts before / after deblur\n")
    print("| image | route | resolution before nm | after nm | background roughness input -> restored "
          "| negative energy input -> restored | PSF FWHM x nm | deblur s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['source']} | {r['resolution_before_nm']:.0f} | {r['resolution_after_nm']:.0f} "
              f"| {r['roughness_input']:.4f} -> {r['roughness_restored']:.4f} (support {r['support_fraction']:.2f}) "
              f"| {r['negative_input']:.2e} -> {r['negative_restored']:.2e} | {r['psf_fwhm_nm'][-1]:.0f} "
              f"| {r['seconds']:.1f} |")


def figure(rows):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("figure skipped: matplotlib not installed")
        return
    keys = list({(r["psf"]["name"], r["plane"]): None for r in rows})
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [3, 1]})
    width = 0.8 / len(METHODS)
    for m_i, m in enumerate(METHODS):
        means = [np.mean([r["quality"][m][0] - r["quality"]["input"][0] for r in rows
                          if (r["psf"]["name"], r["plane"]) == k and m in r["quality"]] or [np.nan]) for k in keys]
        axes[0].bar(np.arange(len(keys)) + (m_i - len(METHODS) / 2 + 0.5) * width, means, width, label=LABELS[m])
    axes[0].axhline(0, color="k", lw=0.8)
    axes[0].set_xticks(np.arange(len(keys)), [f"{a}\n{b}" for a, b in keys], fontsize=8)
    axes[0].set_ylabel("PSNR gain over the input (dB)")
    axes[0].set_title("Tier 1: measured / reference PSFs, real specimens")
    axes[0].legend(fontsize=7, ncol=4)
    x = [r["quality"]["oracle"][0] - r["quality"]["input"][0] for r in rows]
    y = [r["quality"]["blind"][0] - r["quality"]["input"][0] for r in rows]
    axes[1].scatter(x, y, s=12, c=["C0" if r["dims"] == 2 else "C3" for r in rows])
    lim = [min(x + y) - 0.5, max(x + y) + 0.5]
    axes[1].plot(lim, lim, "k:", lw=0.8)
    axes[1].axhline(0, color="k", lw=0.8)
    axes[1].set_xlabel("oracle - input (dB)")
    axes[1].set_ylabel("deblur(optics) - input (dB)")
    axes[1].set_title("per case (blue 2-D, red 3-D)")
    fig.tight_layout()
    fig.savefig(FIGURE, dpi=110)
    print(f"wrote {FIGURE}")


def git_state():
    """The checkout's commit and whether psfkit/ differs from it (results move with the code)."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "psfkit"], cwd=root, capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return {}
    return {"git_commit": commit, "psfkit_modified": bool(dirty)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few cases (about a minute), writes nothing")
    parser.add_argument("--all-specimens", action="store_true", help="all four specimens per PSF and plane")
    parser.add_argument("--tiers", default="1,2,3", help="comma-separated tiers to run (default 1,2,3)")
    parser.add_argument("--threads", default="1", help="BLAS threads (default 1)")
    args = parser.parse_args()
    tiers = {int(t) for t in args.tiers.split(",")}
    if not SHARED.is_dir():
        raise SystemExit(f"{SHARED} not found: this benchmark needs the shared real data sets")
    start = time.perf_counter()
    result = {"quick": args.quick, "all_specimens": args.all_specimens, "noise_gain": NOISE,
              "read_noise": READ_NOISE}
    if 1 in tiers:
        rows = tier1(args.quick, args.all_specimens)
        result["tier1"] = rows
    if 2 in tiers:
        result["tier2"] = tier2()
    if 3 in tiers:
        result["tier3"] = tier3(args.quick)
    if 1 in tiers:
        print_tier1(result["tier1"])
        result["summary"] = summary(result["tier1"])
    if 2 in tiers:
        print_tier2(result["tier2"])
    if 3 in tiers:
        print_tier3(result["tier3"])
    result["seconds_total"] = time.perf_counter() - start
    info = machine_info(threads=args.threads, **git_state())
    result["machine"] = info
    print(f"\n{info['platform']}, {info['cpu_count']} CPUs, load {info.get('loadavg_1min')}, BLAS threads "
          f"{args.threads}, psfkit {info['psfkit']} at {info.get('git_commit', '?')[:7]}"
          f"{' (psfkit/ modified)' if info.get('psfkit_modified') else ''}; total {result['seconds_total']:.0f} s")
    if not args.quick and tiers == {1, 2, 3}:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=1, default=float) + "\n")
        print(f"wrote {RESULTS}")
        figure(result["tier1"])


if __name__ == "__main__":
    main()
