"""Main-thread handling of finished tasks: results into layers, errors into the message bar.

A localization appends to the results GeoPackage and adds its layers to the project once
(with the style stored in the GeoPackage); later runs append to the same layers. Failures
show the library's one-line message; cancellations say that nothing was written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qgis.core import Qgis, QgsProject, QgsProviderRegistry, QgsVectorLayer
from qgis.gui import QgsMapCanvas

from .layer_style import style_footprints, style_points, use_stored_style
from .layers import (
    FOOTPRINT_LAYER,
    POINT_LAYER,
    LayerError,
    append_results,
    open_results_layers,
    results_extent,
)
from .parameters import IndexParameters, LocalizeParameters
from .task_results import TaskCancelled, TaskFailed, TaskOutcome, TaskSuccess

__all__ = ["LocalizeRequest", "OutcomeHandler", "ResultsAdded", "find_project_layer"]

TITLE = "GLEAM"


@dataclass(frozen=True)
class LocalizeRequest:
    """A localization as the plugin runs it: the dock's parameters and where results go."""

    parameters: LocalizeParameters
    gpkg: Path

    @property
    def chip_dir(self) -> Path:
        """Return the folder for matched-chip PNGs, beside the GeoPackage."""
        return self.gpkg.parent / f"{self.gpkg.stem}_chips"

    @property
    def figure_dir(self) -> Path:
        """Return the folder for explanation figures, beside the GeoPackage."""
        return self.gpkg.parent / f"{self.gpkg.stem}_explanations"


@dataclass(frozen=True)
class ResultsAdded:
    """What a localization added: the layers (in the project) and the new point ids."""

    points: QgsVectorLayer
    footprints: QgsVectorLayer | None
    feature_ids: list[int]


def find_project_layer(
    path: Path, layer_name: str, project: QgsProject | None = None
) -> QgsVectorLayer | None:
    """Return the project's layer showing ``layer_name`` of GeoPackage ``path``, if there is one."""
    project = project or QgsProject.instance()
    registry = QgsProviderRegistry.instance()
    target = path.resolve()
    for layer in project.mapLayers().values():
        if not isinstance(layer, QgsVectorLayer) or layer.providerType() != "ogr":
            continue
        parts = registry.decodeUri("ogr", layer.source())
        if parts.get("layerName") == layer_name and Path(parts.get("path", "")).resolve() == target:
            return layer
    return None


class OutcomeHandler:
    """Turns task outcomes into layers and messages.

    Args:
        message_bar: where messages go (``iface.messageBar()``).
        canvas: the map canvas to zoom to new results (``None``: no zoom).

    """

    def __init__(self, message_bar: Any, canvas: QgsMapCanvas | None = None) -> None:
        self.message_bar = message_bar
        self.canvas = canvas

    def handle(self, outcome: TaskOutcome) -> ResultsAdded | None:
        """Handle one outcome; return what a successful localization added."""
        if isinstance(outcome, TaskFailed):
            self.message_bar.pushMessage(TITLE, outcome.message, Qgis.Critical, 0)
        elif isinstance(outcome, TaskCancelled):
            self.message_bar.pushMessage(
                TITLE, f"{_what(outcome.method)} cancelled; nothing was written", Qgis.Info, 5
            )
        elif isinstance(outcome, TaskSuccess) and isinstance(outcome.request, LocalizeRequest):
            return self._localized(outcome.request, outcome.result)
        elif isinstance(outcome, TaskSuccess) and isinstance(outcome.request, IndexParameters):
            result = outcome.result or {}
            verb = f"added {result.get('added', 0)} chips;" if outcome.request.update else "built:"
            self.message_bar.pushMessage(
                TITLE, f"index {verb} {result.get('chips', 0)} chips in {result.get('path')}", Qgis.Success, 8
            )
        return None

    def _localized(self, request: LocalizeRequest, result: dict[str, Any]) -> ResultsAdded | None:
        try:
            added = self.add_results(request, result)
        except LayerError as exc:
            self.message_bar.pushMessage(TITLE, str(exc), Qgis.Critical, 0)
            return None
        photos = len(request.parameters.images) - len(result.get("failed") or [])
        self.message_bar.pushMessage(
            TITLE,
            f"localized {photos} photo(s): {len(added.feature_ids)} candidates in {request.gpkg.name}",
            Qgis.Success,
            8,
        )
        for failure in result.get("failed") or []:
            name = Path(failure.get("image", "")).name
            self.message_bar.pushMessage(TITLE, f"{name}: {failure.get('message')}", Qgis.Warning, 0)
        for note in result.get("notes") or []:
            self.message_bar.pushMessage(TITLE, note, Qgis.Info, 8)
        return added

    def add_results(self, request: LocalizeRequest, result: dict[str, Any]) -> ResultsAdded:
        """Append ``result`` to the results layers, add them to the project, zoom to the new points."""
        project = QgsProject.instance()
        points = find_project_layer(request.gpkg, POINT_LAYER, project)
        footprints = find_project_layer(request.gpkg, FOOTPRINT_LAYER, project)
        if points is None or (footprints is None and request.parameters.footprints):
            new_points, new_footprints = open_results_layers(request.gpkg)
            if footprints is None and request.parameters.footprints:
                use_stored_style(new_footprints, style_footprints)
                project.addMapLayer(new_footprints)
                footprints = new_footprints
            if points is None:
                use_stored_style(new_points, style_points)
                project.addMapLayer(new_points)
                points = new_points
        if not request.parameters.footprints:
            footprints = None
        ids = append_results(result, points, footprints)
        if self.canvas is not None and ids:
            extent = results_extent(points, ids, self.canvas.mapSettings().destinationCrs())
            if not extent.isEmpty():
                self.canvas.setExtent(extent)
                self.canvas.refresh()
        return ResultsAdded(points, footprints, ids)


def _what(method: str) -> str:
    return {"build_index": "index build", "add_to_index": "index update", "localize": "localization"}.get(
        method, method
    )
