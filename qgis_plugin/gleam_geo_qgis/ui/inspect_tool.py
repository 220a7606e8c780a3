"""A map tool: click a GLEAM result to open its form (the photo beside the matched chip)."""

from __future__ import annotations

from typing import Any

from qgis.core import QgsFeature, QgsProject, QgsVectorLayer
from qgis.gui import QgsMapCanvas, QgsMapToolIdentifyFeature

from ..layers import FOOTPRINT_LAYER, POINT_LAYER

__all__ = ["InspectResultTool", "gleam_layers"]


def gleam_layers(project: QgsProject | None = None) -> list[QgsVectorLayer]:
    """Return the project's GLEAM results layers, points layers first."""
    project = project or QgsProject.instance()
    found = []
    for layer in project.mapLayers().values():
        if isinstance(layer, QgsVectorLayer) and layer.providerType() == "ogr":
            name = layer.source().rsplit("layername=", 1)[-1].split("|", 1)[0]
            if name in (POINT_LAYER, FOOTPRINT_LAYER):
                found.append((name != POINT_LAYER, layer))
    return [layer for _, layer in sorted(found, key=lambda pair: pair[0])]


class InspectResultTool(QgsMapToolIdentifyFeature):
    """Identify a feature of a GLEAM results layer and open its attribute form.

    Args:
        canvas: the map canvas.
        iface: the QGIS interface (opens the form).

    """

    def __init__(self, canvas: QgsMapCanvas, iface: Any) -> None:
        super().__init__(canvas)
        self.iface = iface
        self.target: QgsVectorLayer | None = None
        self.featureIdentified[QgsFeature].connect(self.open_form)

    def setLayer(self, layer: QgsVectorLayer) -> None:
        """Identify features of ``layer``."""
        self.target = layer
        super().setLayer(layer)

    def activate(self) -> None:
        """Point the tool at the active layer if it is a GLEAM layer, else the first GLEAM layer."""
        layers = gleam_layers()
        active = self.iface.activeLayer()
        target = active if active in layers else (layers[0] if layers else None)
        if target is not None:
            self.setLayer(target)
        super().activate()

    def open_form(self, feature: QgsFeature) -> None:
        """Open the identified feature's form, without blocking the map."""
        if self.target is not None:
            self.iface.openFeatureForm(self.target, feature, False, False)
