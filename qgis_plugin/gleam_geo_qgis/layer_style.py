"""How the results layers look and read: symbols, labels, heading arrows and the feature form.

Points are coloured from red (weak) to green (strong) by ``match_prob``, or by ``score``
while the library does not calibrate a probability (``coalesce("match_prob", "score")``),
sized and labelled by rank, and get an arrow rotated to ``heading_deg`` when the result
has a heading. The feature form puts the query photo beside the matched chip.
"""

from __future__ import annotations

from qgis.core import (
    QgsAttributeEditorContainer,
    QgsAttributeEditorField,
    QgsEditFormConfig,
    QgsEditorWidgetSetup,
    QgsFeatureRequest,
    QgsFillSymbol,
    QgsMarkerSymbol,
    QgsPalLayerSettings,
    QgsProperty,
    QgsSimpleFillSymbolLayer,
    QgsSimpleMarkerSymbolLayer,
    QgsSimpleMarkerSymbolLayerBase,
    QgsSingleSymbolRenderer,
    QgsSymbolLayer,
    QgsTextBufferSettings,
    QgsTextFormat,
    QgsVectorLayer,
    QgsVectorLayerSimpleLabeling,
)
from qgis.PyQt.QtCore import QPointF, Qt
from qgis.PyQt.QtGui import QColor

from .layers import RESULT_FIELDS

__all__ = ["COLOR_EXPRESSION", "HEADING_ENABLED_EXPRESSION", "style_footprints", "style_points"]

STRENGTH_EXPRESSION = 'coalesce("match_prob", "score")'
"""The value points are coloured by: the calibrated probability, else the raw score."""

COLOR_EXPRESSION = f"color_hsv(scale_linear({STRENGTH_EXPRESSION}, 0.2, 0.9, 0, 120), 85, 92)"
"""Red (hue 0) for weak matches to green (hue 120) for strong ones."""

SIZE_EXPRESSION = 'scale_linear("rank", 1, 10, 5.0, 2.6)'
HEADING_ENABLED_EXPRESSION = '"heading_deg" IS NOT NULL'
IMAGE_FIELDS = ("query_path", "chip_image")

MAP_TIP = (
    '<b>#[% "rank" %]</b> score [% format_number("score", 3) %]'
    '[% CASE WHEN "match_prob" IS NOT NULL THEN \' · p=\' || format_number("match_prob", 2) END %]<br>'
    '<img src="file:///[% "query_path" %]" width="160"> '
    '<img src="file:///[% "chip_image" %]" width="160"><br>'
    "[% coalesce(\"explanation\", '') %]"
)


def _point_symbol() -> QgsMarkerSymbol:
    symbol = QgsMarkerSymbol()
    symbol.deleteSymbolLayer(0)
    dot = QgsSimpleMarkerSymbolLayer(QgsSimpleMarkerSymbolLayerBase.Circle, 4.0)
    dot.setStrokeColor(QColor(20, 20, 20))
    dot.setStrokeWidth(0.4)
    dot.setDataDefinedProperty(QgsSymbolLayer.PropertyFillColor, QgsProperty.fromExpression(COLOR_EXPRESSION))
    dot.setDataDefinedProperty(QgsSymbolLayer.PropertySize, QgsProperty.fromExpression(SIZE_EXPRESSION))
    symbol.appendSymbolLayer(dot)
    arrow = QgsSimpleMarkerSymbolLayer(QgsSimpleMarkerSymbolLayerBase.ArrowHeadFilled, 4.0)
    arrow.setColor(QColor(255, 255, 255))
    arrow.setStrokeColor(QColor(20, 20, 20))
    arrow.setOffset(QPointF(0, -4.6))  # ahead of the dot; the offset turns with the angle
    arrow.setDataDefinedProperty(QgsSymbolLayer.PropertyAngle, QgsProperty.fromField("heading_deg"))
    arrow.setDataDefinedProperty(
        QgsSymbolLayer.PropertyLayerEnabled, QgsProperty.fromExpression(HEADING_ENABLED_EXPRESSION)
    )
    symbol.appendSymbolLayer(arrow)
    return symbol


def _labels() -> QgsVectorLayerSimpleLabeling:
    settings = QgsPalLayerSettings()
    settings.fieldName = "rank"
    settings.placement = QgsPalLayerSettings.OverPoint
    settings.quadOffset = QgsPalLayerSettings.QuadrantAboveRight
    settings.xOffset = 1.5
    settings.yOffset = -1.5
    text = QgsTextFormat()
    text.setSize(9)
    text.setColor(QColor(15, 15, 15))
    buffer = QgsTextBufferSettings()
    buffer.setEnabled(True)
    buffer.setSize(1.0)
    buffer.setColor(QColor(255, 255, 255))
    text.setBuffer(buffer)
    settings.setFormat(text)
    return QgsVectorLayerSimpleLabeling(settings)


def _image_widget(show_path: bool) -> QgsEditorWidgetSetup:
    return QgsEditorWidgetSetup(
        "ExternalResource",
        {
            "DocumentViewer": 1,  # show the file as an image
            "DocumentViewerHeight": 260,
            "DocumentViewerWidth": 260,
            "FileWidget": show_path,
            "FileWidgetButton": False,
            "StorageMode": 0,
            "RelativeStorage": 0,
            "UseLink": True,
            "FullUrl": True,
        },
    )


def _configure_form(layer: QgsVectorLayer) -> None:
    """Lay the form out as a "Match" tab (photo beside chip) and a "Details" tab, all read-only."""
    fields = layer.fields()
    config: QgsEditFormConfig = layer.editFormConfig()
    config.setLayout(QgsEditFormConfig.TabLayout)
    root = config.invisibleRootContainer()
    root.clear()
    match = QgsAttributeEditorContainer("Match", root)
    match.setColumnCount(2)
    details = QgsAttributeEditorContainer("Details", root)
    for field in RESULT_FIELDS:
        index = fields.indexOf(field.name)
        if index < 0:
            continue
        layer.setFieldAlias(index, field.alias)
        parent = match if field.name in IMAGE_FIELDS else details
        parent.addChildElement(QgsAttributeEditorField(field.name, index, parent))
        config.setReadOnly(index, True)
    root.addChildElement(match)
    root.addChildElement(details)
    layer.setEditFormConfig(config)
    for name in IMAGE_FIELDS:
        index = fields.indexOf(name)
        if index >= 0:
            layer.setEditorWidgetSetup(index, _image_widget(show_path=name == "query_path"))


def style_points(layer: QgsVectorLayer) -> None:
    """Style the localizations layer: colour, size, label, heading arrow, form and map tip."""
    renderer = QgsSingleSymbolRenderer(_point_symbol())
    renderer.setOrderBy(QgsFeatureRequest.OrderBy([QgsFeatureRequest.OrderByClause("rank", False)]))
    renderer.setOrderByEnabled(True)  # rank 1 drawn last, on top
    layer.setRenderer(renderer)
    layer.setLabeling(_labels())
    layer.setLabelsEnabled(True)
    layer.setDisplayExpression("'#' || \"rank\" || ' ' || base_file_name(\"query_path\")")
    layer.setMapTipTemplate(MAP_TIP)
    _configure_form(layer)


def style_footprints(layer: QgsVectorLayer) -> None:
    """Style the footprints layer: unfilled outlines coloured like their points."""
    outline = QgsSimpleFillSymbolLayer()
    outline.setBrushStyle(Qt.NoBrush)
    outline.setStrokeWidth(0.5)
    outline.setDataDefinedProperty(
        QgsSymbolLayer.PropertyStrokeColor, QgsProperty.fromExpression(COLOR_EXPRESSION)
    )
    symbol = QgsFillSymbol()
    symbol.changeSymbolLayer(0, outline)
    renderer = QgsSingleSymbolRenderer(symbol)
    renderer.setOrderBy(QgsFeatureRequest.OrderBy([QgsFeatureRequest.OrderByClause("rank", False)]))
    renderer.setOrderByEnabled(True)
    layer.setRenderer(renderer)
    layer.setMapTipTemplate(MAP_TIP)
    _configure_form(layer)
