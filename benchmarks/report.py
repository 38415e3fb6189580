"""Tables of the committed benchmark results, for the docs and the README.

``doc/benchmarks.rst`` includes the reStructuredText this writes at every
Sphinx build (``doc/conf.py`` calls :func:`write_rst`), so the documentation
never drifts from ``benchmarks/results/*.json``; README's headline table is
:func:`headline_markdown`, and a test checks that README carries it verbatim.

    python benchmarks/report.py            # print the headline table (Markdown)
    python benchmarks/report.py --all      # print every table (Markdown)
"""

import argparse
import json
import math
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
NOISES = ("none", "moderate", "strong")


def load(name):
    return json.loads((RESULTS / f"{name}.json").read_text())


def fmt(value, digits=1):
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value != 0 and (abs(value) < 10 ** -digits or abs(value) >= 1e5):
            return f"{value:.2e}"
        return f"{value:.{digits}f}"
    if isinstance(value, (list, tuple)):
        return " / ".join(fmt(v, digits) for v in value)
    return str(value)


class Table:
    """A titled table: a header and rows of already formatted cells."""

    def __init__(self, title, header, rows, note=""):
        self.title, self.header, self.rows, self.note = title, list(header), [list(r) for r in rows], note

    def markdown(self):
        lines = [f"**{self.title}**", ""] if self.title else []
        lines.append("| " + " | ".join(self.header) + " |")
        lines.append("|" + "|".join("---" for _ in self.header) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        if self.note:
            lines += ["", self.note]
        return "\n".join(lines)

    def rst(self):
        lines = [".. list-table:: " + self.title, "   :header-rows: 1", ""]
        for row in [self.header, *self.rows]:
            lines.append("   * - " + (row[0] or " "))
            lines += ["     - " + (cell or " ") for cell in row[1:]]
        if self.note:
            lines += ["", self.note]
        return "\n".join(lines)


def pivot(rows, value, *, title, columns=NOISES, column_key="noise", row_key="method", digits=1, note=""):
    """Rows (method) x columns (noise level) of ``value``, in the order the methods first appear."""
    order, cells = [], {}
    for r in rows:
        if r.get(column_key) not in columns:
            continue
        if r[row_key] not in order:
            order.append(r[row_key])
        cells[r[row_key], r[column_key]] = r[value]
    body = [[m] + [fmt(cells.get((m, c)), digits) if (m, c) in cells else "" for c in columns] for m in order]
    return Table(title, [row_key] + list(columns), body, note)


def scalar_columns(records):
    keys = []
    for r in records:
        for k, v in r.items():
            if k not in keys and not isinstance(v, dict) and not (isinstance(v, list) and len(v) > 3):
                keys.append(k)
    return keys


def records_table(title, records, digits=3):
    keys = scalar_columns(records)
    return Table(title, keys, [[fmt(r.get(k), digits) for k in keys] for r in records])


# ----------------------------------------------------------------- per suite
def identification_tables():
    d = load("identification")
    yield pivot(d["global"], "psf_snr_raw_mean", title="Identification, strongly aberrated set: PSF SNR (dB, mean)",
                note=f"{d['global'][0]['n']} images per noise level; ``python benchmarks/run.py identification``.")
    yield pivot(d["global_mild"], "psf_snr_raw_mean", title="Identification, mildly aberrated set: PSF SNR (dB, mean)",
                note=f"{d['global_mild'][0]['n']} images per noise level.")
    t = d["tilted_sample"]
    rows = [[k, fmt(v["mean"]), fmt(v["min"])] for k, v in t.items() if isinstance(v, dict) and "mean" in v]
    yield Table(f"Tilted sample, {t['grid'][0]}x{t['grid'][1]} PSF map ({t['noise']} noise): PSF SNR per local PSF (dB)",
                ["cutoff", "mean", "min"], rows)
    yield Table("Identification latency (network alone)", ["case", "seconds"],
                [[k, fmt(v, 3)] for k, v in d["latency_s"].items()])


def measured_psf_tables():
    d = load("measured_psfs")
    for psf in dict.fromkeys(r["psf"] for r in d["rows"]):
        rows = [r for r in d["rows"] if r["psf"] == psf]
        yield pivot(rows, "psf_snr_raw_mean", title=f"Measured PSF '{psf}' blurring held-out specimens: PSF SNR (dB, mean)")


def oversampled_tables():
    d = load("oversampled")
    yield pivot(d["rows"], "psf_snr_raw_mean", title="Finely sampled images (fc 0.05-0.12): PSF SNR (dB, mean)")


def deblurring_tables():
    d = load("deblurring")
    yield pivot(d["rows"], "psnr", title="Blind deblurring: PSNR (dB, mean)", note="``python benchmarks/run.py deblurring``.")
    yield pivot(d["rows"], "ssim", title="Blind deblurring: SSIM (mean)", digits=3)


def deconvolution_tables():
    d = load("deconvolution_quality")
    mean = d["space_invariant"]["mean"]
    levels = list(mean)
    methods = list(mean[levels[0]])
    rows = [[m] + [fmt(mean[lv][m][0]) for lv in levels] for m in methods]
    yield Table("Non-blind deconvolution, true PSF: PSNR (dB, mean)", ["method"] + levels, rows,
                note="scikit-image RL at its best iteration count in "
                     f"{d['skimage_iterations_tried']}; ``python benchmarks/run.py deconvolution``.")
    s = load("deconvolution_speed")
    yield records_table(f"Richardson-Lucy iteration time vs scikit-image ({s['size']}^2, {s['psf_size']}^2 PSF)",
                        s["richardson_lucy_vs_skimage"])


def speed_tables():
    c = load("convolution")
    yield records_table("convolve vs scipy.signal.fftconvolve", c["convolve"])
    yield records_table("Product convolution (PSF grid) vs deepinv", c["product_convolution"])
    z = load("zernike")
    for setting, block in z["settings"].items():
        rows = [{"method": m, **v} for m, v in block["methods"].items()]
        yield records_table(f"zernike_psf throughput ({setting}, {z['size']}^2 PSFs)", rows)


def baseline_tables():
    b = load("baselines")
    for key, block in b.items():
        if key.startswith("summary"):
            rows = [{"setting": k, **v} for k, v in block.items() if isinstance(v, dict)]
            yield records_table(f"Baselines vs the published IPOL figures ({key})", rows)


def safety_tables():
    """deblur's no-reference support test: its calibration and the criteria compared (issue #24)."""
    calib = load("consistency_calibration")["summary"]
    noref = load("noreference")
    rows = [[f"{k} x shipped", fmt(v["max_true_or_nominal_z"]), str(v["true_or_nominal_refuted"]),
             str(len(v["network_refuted_real"])), str(len(v["network_refuted_synthetic"]))] for k, v in calib.items()]
    first = Table(
        "Support test calibration (36 real-optics + 24 synthetic images; refuted when z > 6)",
        ["dead-zone level", "max z, true / nominal PSFs", "true / nominal refuted", "network refuted, real",
         "network refuted, synthetic"], rows,
        note="`python benchmarks/calibrate_consistency.py`",
    )
    worse, total = noref["outputs_worse_than_input"], noref["outputs"]
    rows = [[c, fmt(v["accuracy"], 2), f"{v['harm_let_through']}/{worse}", f"{v['good_rejected']}/{total - worse}"]
            for c, v in noref["summary"].items()]
    second = Table(
        "Is a restoration better than its input? No-reference criteria on the 36 real-optics cases x 4 outputs",
        ["criterion", "accuracy", "worse outputs called better", "better outputs rejected"], rows,
        note="`python benchmarks/compare_noreference.py --deepinv PATH` (BlurStrength, SharpnessIndex: deepinv 0.5.0)",
    )
    return [first, second]


def scale_tables():
    """Tiled against whole-image deconvolution, peak memory, many files on 2 workers (issue #26)."""
    tiling = load("tiling")
    rows = []
    for r in tiling["seams"]["rows"]:
        cells = [f"{r[k]['seams']:.1e} / {r[k]['elsewhere']:.1e} / {r[k]['pixels_above_1e-3']}"
                 for k in ("float32", "float64", "round_off_floor")]
        rows.append([r["case"], "x".join(map(str, r["chunks"])), *cells,
                     f"{fmt(r['whole_s_float32'])} / {fmt(r['tiled_s_float32'])}"])
    seams = Table(
        "Tiled vs whole image: largest absolute difference over the range, near tile edges / elsewhere / pixels above 1e-3 "
        "(one PSF size inside the image)",
        ["case", "chunks", "float32", "float64", "round-off floor (whole float32 vs float64)",
         "seconds whole / tiled"], rows,
        note="`python benchmarks/bench_tiling.py seams`",
    )
    limit = tiling["memory"]["limit_gb"]

    def cell(m):
        if "error" in m:
            return f"failed: {m['error']}"
        if m["out_of_memory"]:
            return f"out of memory (> {limit:g} GB, stopped)"
        return f"{fmt(m['peak_gb'], 2)} GB, {fmt(m['seconds'])} s"

    memory = Table(
        "Peak resident memory of deblur, tiled (zarr in, zarr out) and on the whole image in memory",
        ["case", "chunks, threads", "tiled", "whole image"],
        [[r["case"], f"{'x'.join(map(str, r['chunks']))}, {r['threads']}", cell(r["tiled"]), cell(r["whole"])]
         for r in tiling["memory"]["rows"]],
        note="`python benchmarks/bench_tiling.py memory`",
    )
    files = load("many_files")
    rows = [[r["setting"], fmt(r["wall_s"]), fmt(r["files_per_minute"]), fmt(r["median_s_per_file"], 2)]
            for r in files["rows"]]
    ratio = files["ratio_2_vs_1"]
    many = Table(
        f"{files['files']} files of {files['size']}^2, `{files['command']}`: 2 workers vs 1 "
        f"{fmt(ratio['end_to_end'], 2)}x end to end, {fmt(ratio['steady'], 2)}x warmed up",
        ["setting", "wall s", "files / minute", "median s per file"], rows,
        note="`python benchmarks/bench_many_files.py`",
    )
    return [seams, memory, many]


SUITES = {
    "identification": identification_tables,
    "measured PSFs": measured_psf_tables,
    "finely sampled images": oversampled_tables,
    "deblurring": deblurring_tables,
    "deconvolution": deconvolution_tables,
    "speed": speed_tables,
    "baselines": baseline_tables,
    "no-reference safety": safety_tables,
    "scale": scale_tables,
}


# ------------------------------------------------------------------ headline
def _row(rows, method, noise, key):
    matches = [r[key] for r in rows if r["method"] == method and r["noise"] == noise]
    if len(matches) != 1:
        raise KeyError(f"{method!r} at noise {noise!r}: {len(matches)} rows")
    return matches[0]


def _triple(rows, method, key):
    return " / ".join(fmt(_row(rows, method, n, key)) for n in NOISES)


def _real_optics_row():
    """``deblur(image, optics=...)`` on measured PSFs blurring real specimens (benchmarks/bench_real.py)."""
    cases = load("real")["tier1"]
    cells = {}
    for method in ("blind", "input", "oracle"):
        cells[method] = " / ".join(
            fmt(sum(c["quality"][method][0] for c in cases if c["dims"] == d) / sum(c["dims"] == d for c in cases))
            for d in (2, 3)
        )
    below = " / ".join(
        str(sum(c["quality"]["blind"][0] < c["quality"]["input"][0] for c in cases if c["dims"] == d)) for d in (2, 3)
    )
    return [
        "deblur with the optics, measured confocal / LLSM / Born-Wolf PSFs on real specimens (PSNR, dB; 2-D / 3-D)",
        f"{cells['blind']} (below the input: {below} cases)",
        f"input {cells['input']}; measured PSF {cells['oracle']}",
        "`python benchmarks/bench_real.py`",
    ]


def headline():
    """The README's table: psfkit's main figures beside their baselines, each with its command."""
    ident, deblur = load("identification")["global"], load("deblurring")["rows"]
    deconv = load("deconvolution_quality")["space_invariant"]["mean"]
    speed = load("deconvolution_speed")["richardson_lucy_vs_skimage"]
    rl = [r for r in speed if r["setting"] == "float32"]
    rows = [
        ["Blind PSF identification (PSF SNR, dB)", _triple(ident, "default (refine=None), fc known", "psf_snr_raw_mean"),
         "image-blind mean PSF " + _triple(ident, "image-blind mean PSF at true fc (floor)", "psf_snr_raw_mean"),
         "`python benchmarks/run.py identification`"],
        ["Blind deblurring, refined estimate + unrolled network (PSNR, dB)", _triple(deblur, "blind: estimate_psf(refine=True) (fc known) + unrolled", "psnr"),
         "input " + _triple(deblur, "blurry input", "psnr") + "; true PSF "
         + _triple(deblur, "oracle: true PSF + rl-tv", "psnr"),
         "`python benchmarks/run.py deblurring`"],
        ["Deconvolution with the true PSF, RL-TV automatic (PSNR, dB; low / medium / high noise)", " / ".join(fmt(deconv[lv]["psfkit rl-tv"][0]) for lv in deconv),
         "scikit-image RL, best iterations " + " / ".join(fmt(deconv[lv]["skimage-rl (oracle)"][0]) for lv in deconv),
         "`python benchmarks/run.py deconvolution`"],
        _real_optics_row(),
        ["Richardson-Lucy iteration, 1024² float32 (speed-up, 1 / 2 threads)",
         " / ".join(fmt(r["speedup"]) + "×" for r in rl), "scikit-image `richardson_lucy` 1×",
         "`python benchmarks/bench_deconvolution.py`"],
    ]
    return Table("", ["what (none / moderate / strong noise)", "psfkit", "baseline, same set", "command"], rows)


def headline_markdown():
    return headline().markdown()


def write_rst(path):
    """Write every suite's tables as reStructuredText (included by ``doc/benchmarks.rst``)."""
    parts = ["Headline figures", "----------------", "", headline().rst(), ""]
    for suite, tables in SUITES.items():
        parts += [suite[0].upper() + suite[1:], "-" * len(suite), ""]
        for table in tables():
            parts += [table.rst(), ""]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts))
    return path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--all", action="store_true", help="every table, not only the headline")
    args = p.parse_args(argv)
    print(headline_markdown())
    if args.all:
        for suite, tables in SUITES.items():
            print(f"\n## {suite}\n")
            for table in tables():
                print(table.markdown(), end="\n\n")


if __name__ == "__main__":
    main()
