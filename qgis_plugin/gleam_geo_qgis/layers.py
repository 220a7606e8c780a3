"""The results layers: their fields, the GeoPackage they live in, and turning worker results into features.

Every localization run appends to two layers of one GeoPackage: ``gleam_localizations``
(points at the best position, shown as "GLEAM localizations") and ``gleam_footprints``
(the matched chips' footprints). Both are in EPSG:4326, the CRS of the worker's GeoJSON.

The fields are defined once, in :data:`RESULT_FIELDS`: the library's results columns (see
``gleam_geo/schema.py``; ``source`` is stored as ``source_raster``), the columns later
library versions add (refinement: ``match_prob``, ``heading_deg``, ``error_radius_m``,
``gsd_m``, ``inliers``, ``refine_method``; explanation: ``verdict``, ``explanation``, ``explanation_model``,
``language`` and ``figure_path``, stored as ``explanation_figure``), and two the plugin
fills (``created_at``, ``chip_image``). A column the worker does not send stays NULL;
nothing is made up.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from osgeo import ogr
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsCoordinateTransformContext,
    QgsFeature,
    QgsField,
    QgsFields,
    QgsGeometry,
    QgsProject,
    QgsRectangle,
    QgsUnitTypes,
    QgsVectorFileWriter,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QDateTime, Qt, QVariant

__all__ = [
    "FOOTPRINT_LAYER",
    "POINT_LAYER",
    "RESULT_FIELDS",
    "LayerError",
    "ResultField",
    "append_results",
    "features_from_result",
    "open_results_layers",
    "result_fields",
    "results_crs",
    "results_extent",
]

POINT_LAYER = "gleam_localizations"
FOOTPRINT_LAYER = "gleam_footprints"
DISPLAY_NAMES = {POINT_LAYER: "GLEAM localizations", FOOTPRINT_LAYER: "GLEAM footprints"}


class LayerError(RuntimeError):
    """The results GeoPackage cannot be created, opened or written."""


@dataclass(frozen=True)
class ResultField:
    """One field of the results layers.

    Attributes:
        name: the field name in the layer.
        type: ``int``, ``float``, ``bool``, ``str`` or ``datetime``.
        column: the worker's property it comes from (``None``: filled by the plugin).
        alias: the label shown in forms.

    """

    name: str
    type: str
    column: str | None
    alias: str


RESULT_FIELDS: tuple[ResultField, ...] = (
    ResultField("query_path", "str", "query_path", "Query photo"),
    ResultField("modality", "str", "modality", "Modality"),
    ResultField("rank", "int", "rank", "Rank"),
    ResultField("score", "float", "score", "Score (cosine similarity)"),
    ResultField("match_prob", "float", "match_prob", "Match probability"),
    ResultField("heading_deg", "float", "heading_deg", "Heading (°)"),
    ResultField("error_radius_m", "float", "error_radius_m", "Error radius (m)"),
    ResultField("gsd_m", "float", "gsd_m", "Query ground size (m/px)"),
    ResultField("inliers", "int", "inliers", "Verified matches"),
    ResultField("refine_method", "str", "refine_method", "Located by"),
    ResultField("chip_id", "str", "chip_id", "Chip id"),
    ResultField("source_raster", "str", "source", "Source raster"),
    ResultField("model", "str", "model", "Model"),
    ResultField("verdict", "bool", "verdict", "Same place (verdict)"),
    ResultField("explanation", "str", "explanation", "Explanation"),
    ResultField("explanation_model", "str", "explanation_model", "Explanation model"),
    ResultField("language", "str", "language", "Language"),
    ResultField("created_at", "datetime", None, "Created at (UTC)"),
    ResultField("chip_image", "str", "chip_image_path", "Matched chip"),
    ResultField("explanation_figure", "str", "figure_path", "Explanation figure"),
)
"""The fields of both results layers, in order."""

_QVARIANT = {
    "int": QVariant.Int,
    "float": QVariant.Double,
    "bool": QVariant.Bool,
    "str": QVariant.String,
    "datetime": QVariant.DateTime,
}


def result_fields() -> QgsFields:
    """Return :data:`RESULT_FIELDS` as QgsFields."""
    fields = QgsFields()
    for field in RESULT_FIELDS:
        qgs_field = QgsField(field.name, _QVARIANT[field.type])
        qgs_field.setAlias(field.alias)
        fields.append(qgs_field)
    return fields


def results_crs() -> QgsCoordinateReferenceSystem:
    """Return the CRS of the results layers (that of the worker's GeoJSON)."""
    return QgsCoordinateReferenceSystem("EPSG:4326")


def _geometry(geojson: Mapping[str, Any] | None) -> QgsGeometry:
    if not geojson:
        return QgsGeometry()
    parsed = ogr.CreateGeometryFromJson(json.dumps(geojson))
    return QgsGeometry() if parsed is None else QgsGeometry.fromWkt(parsed.ExportToWkt())


def _value(field: ResultField, raw: Any) -> Any:
    if raw is None:
        return None
    try:
        if field.type == "int":
            return int(raw)
        if field.type == "float":
            return float(raw)
        if field.type == "bool":
            return raw if isinstance(raw, bool) else str(raw).strip().lower() in ("true", "1", "yes")
        if field.type == "datetime":
            return QDateTime.fromString(str(raw), Qt.ISODate)
    except (TypeError, ValueError):
        return None
    return str(raw)


def features_from_result(
    result: Mapping[str, Any], fields: QgsFields | None = None
) -> tuple[list[QgsFeature], list[QgsFeature]]:
    """Turn a ``localize`` result into point features and footprint features.

    Args:
        result: the worker's ``localize`` result (``results`` FeatureCollection and ``created_at``).
        fields: the fields of the layer the features go to (e.g. with a GeoPackage ``fid``
            first); default :func:`result_fields`. Values are matched by field name.

    Returns:
        ``(points, footprints)``; a result without a footprint adds no footprint feature.

    """
    fields = fields if fields is not None else result_fields()
    points: list[QgsFeature] = []
    footprints: list[QgsFeature] = []
    for item in (result.get("results") or {}).get("features", []):
        properties = dict(item.get("properties") or {})
        properties.setdefault("created_at", result.get("created_at"))
        values = {
            field.name: _value(field, properties.get(field.column or field.name)) for field in RESULT_FIELDS
        }
        point = _feature(fields, values, _geometry(item.get("geometry")))
        points.append(point)
        footprint_geometry = _geometry(properties.get("footprint"))
        if not footprint_geometry.isNull():
            footprints.append(_feature(fields, values, footprint_geometry))
    return points, footprints


def _feature(fields: QgsFields, values: Mapping[str, Any], geometry: QgsGeometry) -> QgsFeature:
    feature = QgsFeature(fields)
    for name, value in values.items():
        if fields.indexOf(name) >= 0 and value is not None:
            feature.setAttribute(name, value)
    feature.setGeometry(geometry)
    return feature


def _create_layer(path: Path, name: str, geometry_type: QgsWkbTypes.Type) -> None:
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    options.layerName = name
    options.actionOnExistingFile = (
        QgsVectorFileWriter.CreateOrOverwriteLayer
        if path.exists()
        else QgsVectorFileWriter.CreateOrOverwriteFile
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = QgsVectorFileWriter.create(
        str(path), result_fields(), geometry_type, results_crs(), QgsCoordinateTransformContext(), options
    )
    if writer.hasError() != QgsVectorFileWriter.NoError:
        raise LayerError(f"cannot create layer {name} in {path}: {writer.errorMessage()}")
    del writer  # closes the file


def _open_layer(path: Path, name: str) -> QgsVectorLayer:
    layer = QgsVectorLayer(f"{path}|layername={name}", DISPLAY_NAMES[name], "ogr")
    if not layer.isValid():
        raise LayerError(f"cannot open layer {name} in {path}; choose another results file in GLEAM settings")
    missing = [field.name for field in RESULT_FIELDS if layer.fields().indexOf(field.name) < 0]
    if missing:
        added = layer.dataProvider().addAttributes([result_fields().field(name) for name in missing])
        layer.updateFields()
        if not added:
            raise LayerError(f"cannot add fields {', '.join(missing)} to {name} in {path}")
    return layer


def _layer_names(path: Path) -> set[str]:
    if not path.is_file():
        return set()
    dataset = ogr.Open(str(path))
    if dataset is None:
        raise LayerError(f"{path} is not a GeoPackage; choose another results file in GLEAM settings")
    return {dataset.GetLayerByIndex(i).GetName() for i in range(dataset.GetLayerCount())}


def open_results_layers(path: str | Path) -> tuple[QgsVectorLayer, QgsVectorLayer]:
    """Open (creating them first if needed) the points and footprints layers in ``path``.

    Raises:
        LayerError: the file cannot be created or is not a GeoPackage.

    """
    path = Path(path)
    existing = _layer_names(path)
    for name, geometry_type in ((POINT_LAYER, QgsWkbTypes.Point), (FOOTPRINT_LAYER, QgsWkbTypes.Polygon)):
        if name not in existing:
            _create_layer(path, name, geometry_type)
    return _open_layer(path, POINT_LAYER), _open_layer(path, FOOTPRINT_LAYER)


def append_results(
    result: Mapping[str, Any], points_layer: QgsVectorLayer, footprints_layer: QgsVectorLayer | None = None
) -> list[int]:
    """Append a ``localize`` result to the layers; return the new point feature ids.

    Raises:
        LayerError: the layer's data provider refused the features.

    """
    points, _ = features_from_result(result, points_layer.fields())
    added, new_points = points_layer.dataProvider().addFeatures(points)
    if not added:
        raise LayerError(
            f"cannot write to {points_layer.source()}: {points_layer.dataProvider().lastError()}"
        )
    _, footprints = features_from_result(result, footprints_layer.fields()) if footprints_layer else ([], [])
    if footprints_layer is not None and footprints:
        footprints_layer.dataProvider().addFeatures(footprints)
        footprints_layer.updateExtents()
        footprints_layer.triggerRepaint()
    points_layer.updateExtents()
    points_layer.triggerRepaint()
    return [feature.id() for feature in new_points]


def results_extent(
    layer: QgsVectorLayer, feature_ids: Sequence[int], target_crs: QgsCoordinateReferenceSystem
) -> QgsRectangle:
    """Return the extent of ``feature_ids`` in ``target_crs``, padded so single points show context."""
    extent = QgsRectangle()
    found = False
    for feature in layer.getFeatures(list(feature_ids)):
        if feature.hasGeometry():
            box = feature.geometry().boundingBox()
            extent = box if not found else extent
            extent.combineExtentWith(box)
            found = True
    if not found:
        return QgsRectangle()
    transform = QgsCoordinateTransform(layer.crs(), target_crs, QgsProject.instance())
    extent = transform.transformBoundingBox(extent)
    metre = QgsUnitTypes.fromUnitToUnitFactor(QgsUnitTypes.DistanceMeters, target_crs.mapUnits())
    extent.grow(max(extent.width(), extent.height()) * 0.5 + 100.0 * metre)
    return extent
