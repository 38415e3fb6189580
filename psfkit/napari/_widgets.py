"""The *Estimate PSF* and *Deblur* widgets: psfkit's functions on a napari image layer, in a worker thread.

Each widget is a magicgui :class:`~magicgui.widgets.Container`: an image
layer, the optics (prefilled from the layer's ``scale``, ``units`` and
``metadata["optics"]``, see :func:`layer_optics`), the options of its
function, *Run* and *Cancel*, a progress bar and a status line. The
computation runs in a :func:`napari.qt.threading.create_worker` thread and
the GUI thread only adds the result; deconvolution iterations tick the
progress bar through psfkit's ``callback``, whose ``False`` (after *Cancel*,
or the cancel button of napari's activity dock) stops them. The result
layer's ``metadata["psfkit"]`` holds the exact arguments of the call and
what psfkit reports, so ``psfkit.deblur(layer_data, **arguments)`` reproduces
it.
"""

import dataclasses
import time

import napari
import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
    create_widget,
)
from napari.qt.threading import FunctionWorker, create_worker
from qtpy.QtCore import QObject, QTimer, Signal

from psfkit.optics.microscope import MODALITIES, Optics

# what the optics fields show when neither the layer nor its metadata says (a GFP-like oil-immersion set-up)
_DEFAULTS = {
    "na": 1.4, "wavelength": 0.52, "excitation": 0.488, "immersion_index": 1.515, "modality": "widefield",
    "sheet_thickness": 2.0, "pixel_size": 0.1, "z_step": 0.3,
}
_TICK = 0.05  # s between progress updates
_METHODS = ("auto", "unrolled", "rl-tv", "rl", "fista", "wiener")


def layer_optics(layer):
    """The :class:`psfkit.Optics` fields known for an image layer.

    Parameters
    ----------
    layer : napari.layers.Image

    Returns
    -------
    fields : dict
        ``layer.metadata["optics"]`` (as written by psfkit's reader and
        sample data), completed by the layer's calibrated ``scale``: the
        pixel size from the last axis, the z step from the first axis of a
        3-D layer, converted to um, for axes whose ``units`` are lengths
        (napari's default unit, ``pixel``, is not a calibration).

    Examples
    --------
    >>> import numpy as np
    >>> from napari.layers import Image
    >>> layer_optics(Image(np.zeros((3, 8, 8)), scale=(300, 65, 65), units="nm"))
    {'pixel_size': 0.065, 'z_step': 0.3}
    >>> layer_optics(Image(np.zeros((8, 8))))  # uncalibrated
    {}
    """
    metadata = layer.metadata.get("optics") if isinstance(layer.metadata, dict) else None
    fields = {key: value for key, value in dict(metadata or {}).items() if value is not None}
    lengths = [_micrometres(scale, unit) for scale, unit in zip(layer.scale, layer.units)]
    if "pixel_size" not in fields and lengths[-1] is not None:
        fields["pixel_size"] = lengths[-1]
    if layer.ndim == 3 and "z_step" not in fields and lengths[0] is not None:
        fields["z_step"] = lengths[0]
    return fields


def _micrometres(scale, unit):
    try:
        return float((scale * unit).to("micrometer").magnitude)
    except Exception:  # noqa: BLE001 - pint raises DimensionalityError for pixels, AttributeError for no unit
        return None


class OpticsForm(Container):
    """Optics fields, prefilled from an image layer; :meth:`optics` builds the :class:`psfkit.Optics`.

    *Known optics* off: the PSF is identified blindly from the image (2-D
    only; stacks need their optics).
    """

    def __init__(self):
        self.known = CheckBox(value=False, text="known optics (else identified from the image)")
        self.modality = ComboBox(choices=MODALITIES, value="widefield", label="modality")
        self.na = FloatSpinBox(min=0.05, max=1.7, step=0.01, label="NA")
        self.wavelength = FloatSpinBox(min=0.2, max=2.0, step=0.001, label="emission λ (µm)")
        self.excitation = FloatSpinBox(min=0.2, max=2.0, step=0.001, label="excitation λ (µm)")
        self.pixel_size = FloatSpinBox(min=0.0001, max=100.0, step=0.0001, label="pixel size (µm)")
        self.z_step = FloatSpinBox(min=0.0001, max=100.0, step=0.0001, label="z step (µm)")
        self.immersion_index = FloatSpinBox(min=1.0, max=2.0, step=0.001, label="immersion index")
        self.sheet_thickness = FloatSpinBox(min=0.01, max=100.0, step=0.01, label="sheet FWHM (µm)")
        self._fields = ("modality", "na", "wavelength", "excitation", "pixel_size", "z_step", "immersion_index",
                        "sheet_thickness")
        super().__init__(widgets=[self.known] + [getattr(self, name) for name in self._fields], labels=True)
        self.fill({})
        self.known.changed.connect(self._enable)
        self.modality.changed.connect(self._enable)

    def fill(self, fields, *, ndim=2):
        """Show ``fields`` (missing ones: typical values); known optics when the pixel size is known."""
        self._ndim = ndim
        for name in self._fields:
            value = fields.get(name, _DEFAULTS[name])
            getattr(self, name).value = value if name == "modality" else float(value)
        self.known.value = "pixel_size" in fields and (ndim == 2 or "z_step" in fields)
        self._enable()

    def _enable(self, *_):
        on, modality = self.known.value, self.modality.value
        for name in self._fields:
            getattr(self, name).enabled = on
        self.excitation.enabled = on and modality in ("confocal", "airyscan")
        self.sheet_thickness.enabled = on and modality == "lightsheet"
        self.z_step.enabled = on and self._ndim == 3

    def optics(self, ndim):
        """The :class:`psfkit.Optics` of the form for an image of ``ndim`` axes, or None (not known)."""
        if not self.known.value:
            return None
        modality = self.modality.value
        fields = {name: getattr(self, name).value for name in ("na", "wavelength", "pixel_size", "immersion_index")}
        fields["modality"] = modality
        if ndim == 3:
            fields["z_step"] = self.z_step.value
        if modality in ("confocal", "airyscan"):
            fields["excitation"] = self.excitation.value
        if modality == "lightsheet":
            fields["sheet_thickness"] = self.sheet_thickness.value
        return Optics(**fields)


def _warm_up():
    """Import what the jobs run, once, in a worker thread when the widget opens.

    The first :func:`psfkit.deblur` call imports torch (the PSF estimation
    does on every path), numba, dask and more; their C initialisation holds
    the GIL for up to about 0.2 s at a time (measured on 2 CPUs), which
    would stall the viewer during the first job. A tiny deblurring with a
    nominal (confocal) PSF runs that code path.
    """
    import torch  # noqa: F401

    from psfkit.pipeline import deblur

    optics = Optics(na=1.4, wavelength=0.52, pixel_size=0.05, modality="confocal", excitation=0.488)
    deblur(np.full((64, 64), 10.0), optics=optics, size=9, method="rl-tv", iterations=2)


class _Ticks(QObject):
    """Carries iteration numbers from the worker thread to the GUI thread (a queued Qt signal)."""

    tick = Signal(int)


class _JobWidget(Container):
    """An image layer, optics, options, Run / Cancel, progress and status: one job at a time in a worker.

    Subclasses define ``arguments``, ``compute`` and ``show`` (see the *jobs* section below).
    """

    title = ""

    def __init__(self, napari_viewer, options):
        self.viewer = napari_viewer
        self.image = ComboBox(label="image", choices=())
        self.optics_form = OpticsForm()
        self.run_button = PushButton(text="Run")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(value=0, min=0, max=1, label="progress")
        self.status = Label(value="")
        self.status.native.setWordWrap(True)  # long settings lines must not widen the dock
        buttons = Container(widgets=[self.run_button, self.cancel_button], layout="horizontal", labels=False)
        super().__init__(
            widgets=[self.image, self.optics_form, *options, buttons, self.progress, self.status], labels=True
        )
        self.worker, self.job, self.ready = None, None, False
        self._ticks = _Ticks()
        self._ticks.tick.connect(self._on_tick)
        self.image.changed.connect(self._prefill)
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        if self.viewer is not None:
            self.reset_choices()
            self._prefill()
        self._warm_up = FunctionWorker(_warm_up)
        self._warm_up.finished.connect(lambda: setattr(self, "ready", True))
        QTimer.singleShot(0, self._warm_up.start)  # once the widget is docked and drawn

    def reset_choices(self, *_):
        """Refresh the layer list (napari calls it when layers change)."""
        layers = [] if self.viewer is None else self.viewer.layers
        self.image.choices = [(layer.name, layer) for layer in layers if isinstance(layer, napari.layers.Image)]

    def _prefill(self, *_):
        layer = self.image.value
        if layer is not None:
            self.optics_form.fill(layer_optics(layer), ndim=layer.ndim)

    # ----------------------------------------------------------------- jobs
    # A widget defines arguments(layer) (the keyword arguments of its psfkit call, the settings shown),
    # compute(data, arguments, callback) (run in the worker thread) and show(layer, arguments, result) (in the
    # GUI thread: add the result layer, say what was done).

    def total(self, arguments):
        """Number of progress ticks, or 0 (unknown: a busy indicator)."""
        return 0

    def run(self, *_):
        """Start the job on the chosen layer in a worker thread (returns at once)."""
        layer = self.image.value
        if self.worker is not None:
            return
        if layer is None or layer.rgb or layer.multiscale or layer.ndim not in (2, 3):
            self.status.value = "choose a 2-D image or a 3-D stack (not RGB, not multiscale)"
            return
        try:
            arguments = self.arguments(layer)
        except (TypeError, ValueError) as error:  # an impossible optics form: said, nothing started
            self.status.value = f"not started: {error}"
            return
        job = {"layer": layer, "arguments": arguments, "warnings": [], "total": self.total(arguments), "ticked": 0.0}

        def callback(iteration, estimate):  # worker thread: tick (at most every 50 ms), and stop when cancelled
            now = time.monotonic()
            if now - job["ticked"] >= _TICK or iteration == job["total"]:
                # an update per iteration (hundreds per second) would queue more redraws than the GUI thread can do
                job["ticked"] = now
                self._ticks.tick.emit(iteration)
            return False if job["worker"].abort_requested else None

        worker = create_worker(
            self.compute, layer.data, arguments, callback, _start_thread=False,
            _progress={"desc": f"psfkit: {self.title}"},
        )
        job["worker"] = worker  # before the thread starts: the callback reads it
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.warned.connect(lambda w: job["warnings"].append(str(w[0])))
        worker.finished.connect(self._on_finished)
        self.worker, self.job = worker, job
        self.progress.max, self.progress.value = job["total"], 0
        self.run_button.enabled, self.cancel_button.enabled = False, True
        self.status.value = f"running {self.title} on {layer.name}…"
        worker.start()

    def cancel(self, *_):
        """Ask the running job to stop: iterations stop at the next one; no layer is added."""
        if self.worker is not None:
            self.worker.quit()
            self.status.value = "cancelling…"

    def _on_tick(self, iteration):
        if self.job is None:
            return
        self.progress.value = min(iteration, self.progress.max) if self.progress.max else 0
        pbar = getattr(self.worker, "pbar", None)  # the activity dock's bar
        if pbar is not None and self.job["total"]:
            pbar.total = self.job["total"]
            pbar.n = min(iteration, self.job["total"])
            pbar.refresh()
        self.status.value = f"running {self.title}: iteration {iteration}"

    def _on_returned(self, result):
        self.show(self.job["layer"], self.job["arguments"], result)
        if self.job["warnings"]:
            self.status.value += "\nwarning: " + "\nwarning: ".join(self.job["warnings"])

    def _on_errored(self, error):
        self.job["error"] = error
        self.status.value = f"failed: {error}"

    def _on_finished(self):
        if self.worker.abort_requested:
            self.status.value = f"{self.title} cancelled: no layer added"
        self.progress.max, self.progress.value = 1, 1 if "error" not in self.job else 0
        self.run_button.enabled, self.cancel_button.enabled = True, False
        self.worker = None


def _optics_record(optics):
    return None if optics is None else dataclasses.asdict(optics)


def _settings(arguments):
    """The arguments as plain values (the Optics as a dict), for layer metadata."""
    return {key: _optics_record(value) if key == "optics" else value for key, value in arguments.items()}


def _grid(value):
    return None if tuple(value) == (1, 1) else (int(value[0]), int(value[1]))


class EstimatePSFWidget(_JobWidget):
    """*Estimate PSF*: :func:`psfkit.estimate_psf` on an image layer; adds the PSF as a new layer.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer (napari passes it).

    Notes
    -----
    A 2-D image without known optics is identified blindly by the bundled
    network (about 5 s with its refinement); known optics give the nominal
    PSF where the network does not apply (stacks, confocal, Airyscan,
    under-sampled images), see :func:`psfkit.estimate_psf`. The estimation
    has no iterations to stop: *Cancel* discards its result. The PSF layer
    has the image's pixel spacing; a ``grid`` map is a (gy, gx, size, size)
    layer, one PSF per slider position. Its ``metadata["psfkit"]`` holds the
    arguments and the Zernike description (``"info"``).
    """

    title = "Estimate PSF"

    def __init__(self, napari_viewer=None):
        self.size = SpinBox(value=0, min=0, max=257, label="PSF size (0: default)")
        self.grid = create_widget(value=(1, 1), annotation=tuple[int, int], label="PSF grid (rows, cols)")
        self.refine = ComboBox(choices=("auto", "yes", "no"), value="auto", label="refine")
        super().__init__(napari_viewer, [self.size, self.grid, self.refine])

    def arguments(self, layer):
        return {
            "optics": self.optics_form.optics(layer.ndim),
            "size": self.size.value or None,
            "grid": _grid(self.grid.value),
            "refine": {"auto": None, "yes": True, "no": False}[self.refine.value],
        }

    def compute(self, data, arguments, callback):
        from psfkit.identification.estimate import estimate_psf

        return estimate_psf(np.asarray(data), **arguments, return_coefficients=True)

    def show(self, layer, arguments, result):
        psf, info = result
        spacing = tuple(layer.scale[-psf.ndim:]) if psf.ndim <= layer.ndim else (1, 1, *layer.scale[-2:])
        units = tuple(layer.units[-psf.ndim:]) if psf.ndim <= layer.ndim else ("pixel", "pixel", *layer.units[-2:])
        metadata = {"psfkit": {"function": "estimate_psf", "source_layer": layer.name,
                               "arguments": _settings(arguments), "info": info}}
        self.viewer.add_image(psf, name=f"PSF of {layer.name}", scale=spacing, units=units, metadata=metadata,
                              colormap="inferno")
        cutoff = np.mean(info["cutoff"])
        self.status.value = f"{info['source']} PSF, shape {psf.shape}, fc = {cutoff:.3f} cycles/pixel"


class DeblurWidget(_JobWidget):
    """*Deblur*: :func:`psfkit.deblur` on an image layer; adds the restored image and shows the settings.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer (napari passes it).

    Notes
    -----
    The PSF is estimated (or nominal, from known optics), then the image is
    deconvolved with ``method``; iterations are chosen automatically or
    fixed. The progress bar ticks per iteration; *Cancel* stops at the next
    iteration and adds nothing (during the PSF estimation, which cannot be
    interrupted, it stops at the first iteration). The result's
    ``metadata["psfkit"]`` holds the ``arguments`` of the call, psfkit's
    ``info`` (method run, iterations, PSF source, resolution before/after)
    and the PSF; the status line says the same.
    """

    title = "Deblur"

    def __init__(self, napari_viewer=None):
        self.method = ComboBox(choices=_METHODS, value="auto", label="method")
        self.automatic = CheckBox(value=True, text="automatic iterations")
        self.iterations = SpinBox(value=20, min=1, max=10000, label="iterations", enabled=False)
        self.grid = create_widget(value=(1, 1), annotation=tuple[int, int], label="PSF grid (rows, cols)")
        super().__init__(napari_viewer, [self.method, self.automatic, self.iterations, self.grid])
        self.automatic.changed.connect(lambda on: setattr(self.iterations, "enabled", not on))

    def arguments(self, layer):
        return {
            "optics": self.optics_form.optics(layer.ndim),
            "grid": _grid(self.grid.value),
            "method": self.method.value,
            "iterations": None if self.automatic.value else int(self.iterations.value),
        }

    def total(self, arguments):
        return arguments["iterations"] or 0

    def compute(self, data, arguments, callback):
        from psfkit.pipeline import deblur

        return deblur(np.asarray(data), **arguments, callback=callback, return_info=True)

    def show(self, layer, arguments, result):
        restored, psf, info = result
        metadata = {"psfkit": {"function": "deblur", "source_layer": layer.name, "arguments": _settings(arguments),
                               "info": info, "psf": psf}}
        self.viewer.add_image(restored, name=f"{layer.name} deblurred", scale=layer.scale, units=layer.units,
                              translate=layer.translate, metadata=metadata)
        self.status.value = describe(info, psf)


def describe(info, psf):
    """One line on what :func:`psfkit.deblur` did (its ``info``): method, iterations, PSF, resolution."""
    if info["method"] is None:
        return f"returned unchanged: no PSF consistent with the image ({info['source']} estimate refuted)"
    steps = "learned steps" if info["iterations"] is None else f"{info['iterations']} iterations"
    before, after = info["resolution"]
    sharper = "" if before is None else f", resolution {before:.2f} → {after:.2f} px"
    return (f"{info['method']}, {steps}, {info['candidate']} PSF {psf.shape}{sharper} "
            f"({info['confidence']} confidence)")
