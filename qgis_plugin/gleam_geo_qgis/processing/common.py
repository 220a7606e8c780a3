"""What both GLEAM algorithms share: running a worker request under Processing feedback."""

from __future__ import annotations

import queue
from pathlib import Path
from typing import Any, ClassVar

from qgis.core import (
    QgsMapLayer,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingLayerPostProcessorInterface,
    QgsRasterLayer,
    QgsVectorLayer,
)
from qgis.PyQt.QtGui import QIcon

from ..settings import PluginSettings, resolve_worker
from ..worker_client import SHARED_WORKERS, WorkerCancelled, WorkerError

__all__ = [
    "CANCELLED",
    "GROUP",
    "GROUP_ID",
    "StyleResults",
    "gleam_icon",
    "layer_file",
    "run_worker",
    "style_on_load",
]

CANCELLED = object()
"""Returned by :func:`run_worker` when the user cancelled the algorithm."""
GROUP = "Photo localization"
GROUP_ID = "photo_localization"


def gleam_icon() -> QIcon:
    """Return the plugin icon."""
    return QIcon(str(Path(__file__).resolve().parents[1] / "icon.svg"))


def layer_file(layer: QgsMapLayer) -> str:
    """Return the file behind a layer (its source without GDAL/OGR options).

    Raises:
        QgsProcessingException: the layer is not a local file.

    """
    path = layer.source().split("|", 1)[0]
    if (isinstance(layer, QgsRasterLayer) and layer.providerType() != "gdal") or not Path(path).is_file():
        raise QgsProcessingException(
            f"layer {layer.name()!r} is not a local raster file; save it as GeoTIFF first"
        )
    return path


def run_worker(method: str, params: dict[str, Any], feedback: QgsProcessingFeedback) -> Any:
    """Run one worker request, reporting progress to ``feedback`` and polling its cancel flag.

    Returns:
        The request's result, or :data:`CANCELLED`.

    Raises:
        QgsProcessingException: the worker failed; the message is the library's one-line message.

    """
    settings = PluginSettings.load()
    worker = resolve_worker(settings, explain=bool(params.get("explain")))
    if settings.device and "device" not in params and method in ("build_index", "localize"):
        params = {**params, "device": settings.device}
    stage = {"name": ""}
    stderr: queue.SimpleQueue[str] = queue.SimpleQueue()  # filled by the client's reader thread

    def flush_stderr() -> None:  # feedback is used from the algorithm's thread only
        while not stderr.empty():
            feedback.pushDebugInfo(stderr.get())

    def on_progress(name: str, done: int, total: int | None) -> None:
        flush_stderr()
        if name != stage["name"]:
            stage["name"] = name
            feedback.setProgressText(f"GLEAM: {name}")
        if total:
            feedback.setProgress(100.0 * done / total)

    try:
        with SHARED_WORKERS.lease(
            worker.python, worker.pythonpath, worker.env, on_stderr=stderr.put
        ) as client:
            feedback.pushInfo(f"GLEAM worker: {worker.python} (pid {client.pid})")
            return client.call(method, params, on_progress=on_progress, is_cancelled=feedback.isCanceled)
    except WorkerCancelled:
        feedback.reportError("GLEAM: cancelled; nothing was written", fatalError=False)
        return CANCELLED
    except WorkerError as exc:
        raise QgsProcessingException(str(exc)) from None
    finally:
        flush_stderr()


class StyleResults(QgsProcessingLayerPostProcessorInterface):
    """Styles a GLEAM output layer once Processing has loaded it into the project.

    Processing keeps only a pointer to a post-processor, so instances are kept here
    until they have run.
    """

    _alive: ClassVar[list[StyleResults]] = []

    def __init__(self, footprints: bool) -> None:
        super().__init__()
        self.footprints = footprints

    @classmethod
    def create(cls, footprints: bool = False) -> StyleResults:
        """Return a post-processor that stays alive until Processing used it."""
        instance = cls(footprints)
        cls._alive.append(instance)
        return instance

    def postProcessLayer(
        self, layer: QgsMapLayer, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> None:
        """Apply the results style (and form) to ``layer``."""
        from ..layer_style import style_footprints, style_points

        if isinstance(layer, QgsVectorLayer):
            (style_footprints if self.footprints else style_points)(layer)


def style_on_load(context: QgsProcessingContext, layer_id: str, name: str, footprints: bool = False) -> None:
    """Name and style output ``layer_id`` when Processing loads it into the project."""
    if context.willLoadLayerOnCompletion(layer_id):
        details = context.layerToLoadOnCompletionDetails(layer_id)
        details.name = name
        details.setPostProcessor(StyleResults.create(footprints))
