"""Many files on dask.distributed: the runner behind ``psfkit deblur DIR/*.tif -o OUT/``.

Each input file is one task, run on a local cluster of worker processes
(:data:`LOCAL_CLUSTER`, ``--workers N``) or on an existing scheduler
(``--scheduler tcp://host:8786``). A task gets the file's *path* and plain
options, reads the file itself (an open TIFF cannot be sent to another
process), computes, and writes its outputs under temporary names in the output
folder (``.X.tif.partial-<run>``), renamed onto their names only when all of
that file's outputs are complete. A file that fails is reported and skipped;
the others finish. Nothing here imports dask before a run asks for it.

With ``chunks`` a file is opened lazily (a dask array over the TIFF's zarr
view), the computation sees that dask array, and the result is stored tile by
tile (into the OME-Zarr output, or into a memory-mapped TIFF), with a progress
bar over tiles.
"""

import contextlib
import errno
import importlib.util
import os
import secrets
import shutil
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np

from psfkit.io import check_writable, read_image
from psfkit.io._images import _TIFF_MAGIC, _check_spacing, _tiff_calibration
from psfkit.io._zarr import create_ome_zarr, replace_directory, store_into
from psfkit.tiling import is_dask

FORMATS = {"tif": ".tif", "zarr": ".ome.zarr"}
_INPUT_SUFFIXES = (".ome.tiff", ".ome.tif", ".tiff", ".tif", ".png", ".jpeg", ".jpg")
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
_BIGTIFF_BYTES = 2**32 - 2**25  # ImageJ TIFFs end at 4 GiB: larger outputs are BigTIFF

# The local cluster of a run (``n_workers`` added per run): one thread per worker process, bound to the loopback
# interface (ports chosen freely).
LOCAL_CLUSTER = {
    "threads_per_worker": 1,
    "processes": True,
    "host": "127.0.0.1",
    "dashboard_address": "127.0.0.1:0",
}
# The environment local worker processes are spawned with (read by BLAS, OpenMP, torch and malloc at start-up):
# one thread each, and glibc's own (adaptive) trim threshold instead of distributed's 64 KiB, which made every
# large FFT buffer a round trip to the kernel (measured: 9.4 -> 17 s for one deblur of 128 x 128, +5.7 s system).
WORKER_ENVIRONMENT = {**{variable: "1" for variable in _THREAD_VARIABLES}, "MALLOC_TRIM_THRESHOLD_": None}
# Files take uneven times (a refined PSF estimate: 7 s, none: 1.6 s, on 512 x 512): a worker is given only the file it
# runs (no queue of its own, distributed's default saturation 1.1 gives it a second one), so that whichever worker
# is free takes the next file and the last ones are not left waiting behind a long one.
SCHEDULER_CONFIG = {"distributed.scheduler.worker-saturation": 1.0}


def have_distributed():
    """Whether dask.distributed (``pip install psfkit[dask]``) is installed; nothing is imported."""
    return all(importlib.util.find_spec(name) is not None for name in ("dask", "distributed"))


def default_workers(n_files):
    """Local workers when ``--workers`` is not given: one per file, at most one per CPU."""
    return max(1, min(n_files, os.cpu_count() or 1))


# ----------------------------------------------------------------- outputs
def output_stem(path):
    """``X`` of ``DIR/X.tif`` (also ``.ome.tif``, ``.tiff``, ``.png``, ``.jpg``)."""
    name = Path(path).name
    for suffix in _INPUT_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return Path(name).stem or name


def is_zarr_name(path):
    return str(path).lower().rstrip("/").endswith(".zarr")


def psf_name(output):
    """``X_psf.tif`` beside the output ``X.tif`` or ``X.ome.zarr``."""
    output = Path(output)
    name = output.name
    for suffix in (".ome.zarr", ".zarr"):
        if name.lower().endswith(suffix):
            return output.with_name(f"{name[: -len(suffix)]}_psf.tif")
    return output.with_name(f"{output_stem(output)}_psf.tif")


def plan(inputs, folder, fmt="tif"):
    """``[(input, output, psf_output)]``: ``DIR/X.tif`` -> ``folder/X.tif`` (or ``X.ome.zarr``) and ``folder/X_psf.tif``.

    Raises ValueError when two inputs would write the same output.
    """
    folder = Path(folder)
    jobs, seen = [], {}
    for path in inputs:
        output = folder / (output_stem(path) + FORMATS[fmt])
        if output in seen:
            raise ValueError(f"{seen[output]} and {path} would both be written to {output}; rename one")
        seen[output] = path
        jobs.append((Path(path), output, psf_name(output)))
    return jobs


def check_inputs(paths):
    """Every input is an existing file (reading them is each task's job: a corrupt one fails alone)."""
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(errno.ENOENT, "image file not found", str(path))
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, "expected an image file, got a directory", str(path))


def check_outputs(jobs, force):
    """Refuse, before any work, outputs that could not be written; an output that is its own input always."""
    for source, *outputs in jobs:
        for output in outputs:
            if output.exists() and source.exists() and output.resolve() == source.resolve():
                raise ValueError(f"{output} would overwrite its input; choose another output folder")
            if is_zarr_name(output):
                if output.exists() and not force:
                    raise FileExistsError(errno.EEXIST, "the output exists", str(output))
                check_writable(output.with_name(".probe.tif"), overwrite=True, parents=True)  # the folder
                if output.exists() and not output.is_dir():
                    raise NotADirectoryError(errno.ENOTDIR, "the output exists and is not a zarr folder", str(output))
            else:
                check_writable(output, overwrite=force, parents=True)


def partial_name(output, run):
    """The temporary name of ``output`` in this run: hidden, beside it (a rename never crosses file systems)."""
    return output.with_name(f".{output.name}.partial-{run}")


def remove_partials(jobs, run):
    """Remove what a task of this run could leave behind when its worker died mid-write."""
    for _, *outputs in jobs:
        for output in outputs:
            temporary = partial_name(output, run)
            if temporary.is_dir() and not temporary.is_symlink():
                shutil.rmtree(temporary, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    temporary.unlink()


# ------------------------------------------------------------------ reading
def open_image(path, chunks=None):
    """The image of ``path``: a NumPy array (:func:`psfkit.io.read_image`), or with ``chunks`` a lazy dask array.

    ``chunks`` (sides of y and x; a stack keeps one plane per chunk) opens a
    TIFF through tifffile's zarr view, so that only the tiles being computed
    are in memory; other formats are read whole and then chunked. Squeezed
    and converted like :func:`~psfkit.io.read_image` (colour -> luminance).
    """
    if chunks is None:
        return read_image(path)
    import dask.array as da

    with open(path, "rb") as file:
        is_tiff = file.read(4) in _TIFF_MAGIC
    if not is_tiff:
        image = read_image(path)
        return da.from_array(image, chunks=_dask_chunks(image.shape, chunks))
    import tifffile
    import zarr

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes, shape, dtype = series.axes, series.shape, series.dtype
            has_samples = "S" in axes  # as read_image: samples per pixel, RGB(A) or grey + alpha
        store = tifffile.imread(path, aszarr=True)
        node = zarr.open(store, mode="r")
        array = node if hasattr(node, "shape") else node["0"]  # a pyramid: its full-resolution level
        image = da.from_array(array, chunks=array.chunks, inline_array=True)
    except MemoryError:
        raise
    except Exception as error:  # noqa: BLE001 - corrupt files fail anywhere in the reader
        first = str(error).strip().splitlines()
        raise ValueError(f"{path}: cannot read the TIFF lazily ({first[0] if first else type(error).__name__}); "
                         "the file may be truncated or corrupt") from error
    if dtype.kind not in "uif" or image.size == 0:
        raise ValueError(f"{path}: expected real-valued pixels, got dtype {dtype} and shape {shape}")
    if has_samples and len(axes) == image.ndim:
        image = da.moveaxis(image, axes.index("S"), -1)
        if image.shape[-1] > 4:
            raise ValueError(f"{path}: expected grey, RGB or RGBA pixels, got {image.shape[-1]} samples per pixel")
        weights = np.array([0.2126, 0.7152, 0.0722])  # Rec. 709, as read_image
        image = image[..., :3].astype(np.float64) @ weights if image.shape[-1] >= 3 else image[..., 0]
    image = image.squeeze() if 1 in image.shape else image
    if image.ndim not in (2, 3):
        raise ValueError(f"{path}: expected a 2-D image or a stack of 2-D frames, got shape {tuple(shape)}")
    return image.rechunk(_dask_chunks(image.shape, chunks))


def _dask_chunks(shape, chunks):
    """Lateral chunks of ``chunks`` pixels; a stack keeps all its planes in every chunk (its PSF is long in z)."""
    sides = (chunks, chunks) if isinstance(chunks, int) else tuple(chunks)
    return tuple(shape[:-2]) + tuple(min(int(c), s) for c, s in zip(sides, shape[-2:]))


# ------------------------------------------------------------------ writing
def _tile_callbacks(report):
    """A dask (local scheduler) callback reporting each finished store task: one per output tile."""
    from dask.callbacks import Callback

    def posttask(key, result, dsk, state, worker_id):
        name = key[0] if isinstance(key, tuple) else key
        if isinstance(name, str) and name.startswith("store-"):
            report(1)

    return [Callback(posttask=posttask)._callback]  # the local schedulers take the callbacks' tuples


def _store(array, target, threads, report):
    """Compute the dask ``array`` tile by tile into ``target`` (a zarr array or a memory map) on ``threads`` threads."""
    import dask
    import dask.array as da

    report(0, total=int(np.prod(array.numblocks)))
    # inside a distributed task, dask would otherwise send the tiles back to the cluster and wait for them
    with dask.config.set(scheduler="threads", num_workers=threads):
        da.store(array.astype(target.dtype), target, lock=False, callbacks=_tile_callbacks(report))


def _write_tiff(temporary, array, spacing, threads, report):
    import tifffile

    dtype = np.dtype(np.float32)
    bigtiff = int(np.prod(array.shape)) * dtype.itemsize > _BIGTIFF_BYTES
    options = {"photometric": "minisblack"}
    if spacing is not None:
        probe = np.empty((1,) * array.ndim, dtype)
        calibration = _tiff_calibration(probe, spacing)
        if bigtiff and calibration.get("imagej"):  # ImageJ's format has no BigTIFF: centimetre tags instead
            calibration = _tiff_calibration(probe.astype(np.float64), spacing)
        options.update(calibration)
    if not is_dask(array):
        tifffile.imwrite(temporary, np.asarray(array, dtype), bigtiff=bigtiff, **options)
        return
    # memory-bounded: the tiles go straight into a memory-mapped (contiguous) TIFF, paged out by the system
    target = tifffile.memmap(temporary, shape=array.shape, dtype=dtype, bigtiff=bigtiff, **options)
    try:
        _store(array, target, threads, report)
        target.flush()
    finally:
        del target


def _write_zarr(temporary, array, spacing, chunks, threads, report):
    spacing = spacing or ()
    target = create_ome_zarr(
        temporary, array.shape, np.float32, pixel_size=spacing[-1] if spacing else None,
        z_step=spacing[0] if len(spacing) == 3 else None, chunks=chunks,
    )
    if is_dask(array):
        # one task per zarr chunk: no two tasks write one chunk, so no lock
        _store(array.rechunk(target.chunks), target, threads, report)
    else:
        store_into(array, target)


def write_outputs(restored, psf, spacing, output, psf_output, run, *, chunks=None, threads=1, report=None):
    """Write the restored image (TIFF or OME-Zarr by ``output``'s name) and the PSF, both or neither.

    Each goes to :func:`partial_name` first; both are renamed onto their names
    once complete, and on any error the temporaries are removed.
    """
    report = report or (lambda n, total=None: None)
    spacing = _check_spacing(spacing)
    temporaries = [partial_name(output, run), partial_name(psf_output, run)]
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        if is_zarr_name(output):
            _write_zarr(temporaries[0], restored, spacing, chunks, threads, report)
        else:
            _write_tiff(temporaries[0], restored, spacing, threads, report)
        _write_tiff(temporaries[1], np.asarray(psf, np.float32), spacing, threads, report)
        for temporary, path in zip(temporaries, (output, psf_output)):
            if temporary.is_dir():
                replace_directory(temporary, path)
            else:
                os.replace(temporary, path)
    except BaseException:
        for temporary in temporaries:
            if temporary.is_dir() and not temporary.is_symlink():
                shutil.rmtree(temporary, ignore_errors=True)
            else:
                temporary.unlink(missing_ok=True)
        raise


# -------------------------------------------------------------------- tasks
class _FFTThreads:
    """psfkit's FFT threads, lowered while any task of this process runs (in-process workers share the module)."""

    lock = threading.Lock()
    active = 0
    saved = None


@contextlib.contextmanager
def _limit_threads(threads):
    """Keep this task's numerical libraries to ``threads`` threads (one per task on a worker's one thread).

    BLAS/OpenMP read their variables when loaded (the local cluster's workers
    are spawned with them, see :data:`LOCAL_CLUSTER`); torch is told directly;
    psfkit's own FFTs of large images follow ``psfkit._fft._WORKERS`` (every
    CPU by default), for which ``deblur`` has no knob: it is lowered while the
    tasks of this process run and restored after the last one.
    """
    from psfkit import _fft

    if "torch" in sys.modules:  # imported by an earlier task; a fresh import reads OMP_NUM_THREADS
        sys.modules["torch"].set_num_threads(threads)
    with _FFTThreads.lock:
        if _FFTThreads.active == 0:
            _FFTThreads.saved = _fft._WORKERS
        _FFTThreads.active += 1
        _fft._WORKERS = min(threads, _FFTThreads.saved)
    try:
        yield
    finally:
        with _FFTThreads.lock:
            _FFTThreads.active -= 1
            if _FFTThreads.active == 0:
                _fft._WORKERS = _FFTThreads.saved


_TASK = threading.local()  # .warnings: the list collecting the warnings of the task running on this thread
_HOOK_LOCK = threading.Lock()


def _relay_warning(message, category, filename, lineno, file=None, line=None):
    """``warnings.showwarning`` while tasks run here: a task's warnings go back with its result."""
    sink = getattr(_TASK, "warnings", None)
    if sink is not None:
        sink.append(str(message))
    else:
        _relay_warning.previous(message, category, filename, lineno, file, line)


@contextlib.contextmanager
def _collect_warnings():
    """The warnings of this thread's task, in a list (thread-safe, unlike ``warnings.catch_warnings``)."""
    with _HOOK_LOCK:
        if warnings.showwarning is not _relay_warning:
            _relay_warning.previous = warnings.showwarning
            warnings.showwarning = _relay_warning
    _TASK.warnings = collected = []
    try:
        yield collected
    finally:
        _TASK.warnings = None


def _event_reporter(topic):
    """Send tile counts to the client (``log_event``), when running in a distributed worker."""
    if topic is None:
        return None
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return None

    def report(n, total=None):
        worker.log_event(topic, {"done": n, "total": total})

    return report


def process_file(compute, path, output, psf_output, options, *, run, chunks=None, threads=1, topic=None, report=None):
    """One file, start to end: ``compute(path, options, chunks) -> (restored, psf, spacing)``, then both outputs.

    ``compute`` is a top-level function (sent to workers by reference); it
    reads the file by path (see :func:`open_image`). Returns the seconds
    taken and the messages of the warnings issued (a worker process's own
    stderr is not the user's terminal).
    """
    start = time.perf_counter()
    context = contextlib.nullcontext()
    if chunks is not None or topic is not None:
        import dask

        # a lazy computation inside a task runs on this process's threads, not back on the cluster
        context = dask.config.set(scheduler="threads", num_workers=threads)
    with context, _limit_threads(threads), _collect_warnings() as collected:
        restored, psf, spacing = compute(path, options, chunks)
        if chunks is not None and not is_dask(restored):
            import dask.array as da

            restored = da.from_array(np.asarray(restored, np.float32), chunks=_dask_chunks(restored.shape, chunks))
        write_outputs(restored, psf, spacing, output, psf_output, run, chunks=chunks, threads=threads,
                      report=report or _event_reporter(topic))
    return time.perf_counter() - start, collected


# ------------------------------------------------------------------ cluster
def start_client(workers=None, scheduler=None, *, local_directory=None):
    """``(client, cluster)``: a client of ``scheduler``, or of a new local cluster of ``workers`` workers (cluster None
    for an existing scheduler)."""
    import logging

    import dask
    from distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            return Client(scheduler, timeout="10s"), None
        except (OSError, ValueError, TypeError) as error:
            raise ConnectionError(f"cannot reach the dask scheduler {scheduler}: {error}") from None
    # a failed file is reported once, by the client: not also by the worker's log ("Compute Failed")
    options = dict(LOCAL_CLUSTER, n_workers=workers, silence_logs=logging.CRITICAL)
    if local_directory is not None:
        options["local_directory"] = str(local_directory)
    config = dict(SCHEDULER_CONFIG)
    if options.get("processes", True):
        environment = {**dask.config.get("distributed.nanny.pre-spawn-environ", {}), **WORKER_ENVIRONMENT}
        config["distributed.nanny.pre-spawn-environ"] = {k: v for k, v in environment.items() if v is not None}
    else:  # threads in this process: no host of their own
        options.pop("host", None)
        options.setdefault("worker_dashboard_address", "127.0.0.1:0")
    with dask.config.set(config):  # read when the scheduler and the nannies are made
        cluster = LocalCluster(**options)
    try:
        client = Client(cluster)
        if options.get("processes", True):
            # our own worker processes: every file's warnings, not only the first of each text and line
            client.run(warnings.simplefilter, "always")
        return client, cluster
    except BaseException:
        cluster.close()
        raise


def run_many(compute, jobs, options, *, workers=None, scheduler=None, chunks=None, describe=str, progress=None,
             out=None, err=None, client=None):
    """Run ``compute`` on every ``(input, output, psf_output)`` of ``jobs``; each file is a task.

    The tasks run on ``client`` when given (left open), else on a client of
    :func:`start_client` (``workers``, ``scheduler``), closed at the end.

    Returns ``(done, failed)``: lists of ``(input, seconds)`` and ``(input,
    message)``. A failed file is reported at once on ``err`` as ``psfkit:
    FILE: message`` (``describe(exception)`` gives the message) and skipped;
    no partial output of it remains. Progress bars (tqdm, on stderr) over
    files and, with ``chunks``, over tiles.
    """
    from distributed import as_completed
    from tqdm import tqdm

    out, err = out or sys.stdout, err or sys.stderr
    progress = err.isatty() if progress is None else progress
    run = f"{os.getpid()}-{secrets.token_hex(4)}"
    topic = f"psfkit-tiles-{run}" if chunks is not None else None
    done, failed = [], []
    new_folders = {output.parent for _, output, _ in jobs if not output.parent.exists()}
    files = tqdm(total=len(jobs), desc="files", unit="file", disable=not progress, file=err, position=0)
    tiles = tqdm(total=0, desc="tiles", unit="tile", disable=not (progress and chunks), file=err, position=1)

    def on_tiles(event):
        _, message = event
        if message.get("total"):
            tiles.total += message["total"]
            tiles.refresh()
        if message.get("done"):
            tiles.update(message["done"])

    own = client is None
    cluster = None
    try:
        if own:
            client, cluster = start_client(workers if workers is not None else default_workers(len(jobs)), scheduler)
        if topic is not None:
            client.subscribe_topic(topic, on_tiles)
        futures = {}
        for source, output, psf_output in jobs:
            future = client.submit(process_file, compute, str(source), output, psf_output, options, run=run,
                                   chunks=chunks, topic=topic, key=f"psfkit-{output.name}-{run}", pure=False)
            futures[future] = source
        for future in as_completed(futures):
            source = futures[future]
            if future.status == "finished":
                seconds, messages = future.result()
                done.append((source, seconds))
                for message in messages:
                    tqdm.write(f"psfkit: {source}: warning: {' '.join(message.split())}", file=err)
                tqdm.write(f"wrote {jobs_output(jobs, source)} ({seconds:.1f} s)", file=out)
            else:
                try:
                    error = future.exception()
                except BaseException as cancelled:  # noqa: BLE001 - a cancelled future raises its reason
                    error = cancelled
                message = describe(error)
                failed.append((source, message[len(f"{source}: "):] if message.startswith(f"{source}: ") else message))
                tqdm.write(f"psfkit: {source}: {failed[-1][1]}", file=err)
            files.update(1)
            future.release()
    finally:
        files.close()
        tiles.close()
        if topic is not None and client is not None:
            client.unsubscribe_topic(topic)
        if own and client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
        remove_partials(jobs, run)  # a worker killed mid-write (out of memory) cannot clean up after itself
        for folder in new_folders:  # made for outputs of which none was written
            with contextlib.suppress(OSError):
                folder.rmdir()
    return done, failed


def jobs_output(jobs, source):
    return next(output for input_, output, _ in jobs if input_ == source)
