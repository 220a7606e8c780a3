"""How the results layers look and read: symbols, labels, heading arrows and the feature form.

Points are coloured from red (weak) to green (strong) by ``match_prob``, or by ``score``
while the library does not calibrate a probability (``coalesce("match_prob", "score")``),
sized and labelled by rank, and get an arrow rotated to ``heading_deg`` when the result
has a heading. The feature form puts the query photo beside the matched chip and, for
explained candidates, the explanation figure beside the verdict and explanation.

:func:`use_stored_style` keeps the style in the GeoPackage itself (its ``layer_styles``
table, as the default style), so the file shows the same map and form wherever it is
opened; a style the user saved there as the default is kept.
"""

from __future__ import annotations

from collections.abc import Callable

from qgis.core import (
    Qgis,
    QgsAttributeEditorContainer,
    QgsAttributeEditorField,
    QgsEditFormConfig,
    QgsEditorWidgetSetup,
    QgsExpression,
    QgsFeatureRequest,
    QgsFillSymbol,
    QgsMarkerSymbol,
    QgsMessageLog,
    QgsOptionalExpression,
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

__all__ = [
    "COLOR_EXPRESSION",
    "HEADING_ENABLED_EXPRESSION",
    "STYLE_NAME",
    "style_footprints",
    "style_points",
    "use_stored_style",
]

STYLE_NAME = "GLEAM results"
"""Name of the style stored in the results GeoPackage."""

STRENGTH_EXPRESSION = 'coalesce("match_prob", "score")'
"""The value points are coloured by: the calibrated probability, else the raw score."""

COLOR_EXPRESSION = f"color_hsv(scale_linear({STRENGTH_EXPRESSION}, 0.2, 0.9, 0, 120), 85, 92)"
"""Red (hue 0) for weak matches to green (hue 120) for strong ones."""

SIZE_EXPRESSION = 'scale_linear("rank", 1, 10, 5.0, 2.6)'
HEADING_ENABLED_EXPRESSION = '"heading_deg" IS NOT NULL'
MATCH_FIELDS = ("query_path", "chip_image")
EXPLANATION_FIELDS = ("verdict", "explanation", "explanation_model", "language")
FIGURE_FIELD = "explanation_figure"
EXPLAINED_EXPRESSION = '"explanation" IS NOT NULL OR "explanation_figure" IS NOT NULL'

MAP_TIP = (
    '<b>#[% "rank" %]</b> score [% format_number("score", 3) %]'
    '[% CASE WHEN "match_prob" IS NOT NULL THEN \' · p=\' || format_number("match_prob", 2) END %]<br>'
    '<img src="file:///[% "query_path" %]" width="160"> '
    '<img src="file:///[% "chip_image" %]" width="160"><br>'
    "[% CASE WHEN \"verdict\" IS NOT NULL THEN CASE WHEN \"verdict\" THEN '✔ ' ELSE '✘ ' END END %]"
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


def _image_widget(show_path: bool, width: int = 260) -> QgsEditorWidgetSetup:
    return QgsEditorWidgetSetup(
        "ExternalResource",
        {
            "DocumentViewer": 1,  # show the file as an image
            "DocumentViewerHeight": 260,
            "DocumentViewerWidth": width,
            "FileWidget": show_path,
            "FileWidgetButton": False,
            "StorageMode": 0,
            "RelativeStorage": 0,
            "UseLink": True,
            "FullUrl": True,
        },
    )


def _add_field(layer: QgsVectorLayer, parent: QgsAttributeEditorContainer, name: str) -> None:
    index = layer.fields().indexOf(name)
    if index >= 0:
        parent.addChildElement(QgsAttributeEditorField(name, index, parent))


def _configure_form(layer: QgsVectorLayer) -> None:
    """Lay the form out as a "Match" tab and a "Details" tab, all read-only.

    The Match tab shows the query photo beside the matched chip and, when the candidate
    was explained, the explanation figure beside the verdict and the explanation.
    """
    fields = layer.fields()
    config: QgsEditFormConfig = layer.editFormConfig()
    config.setLayout(QgsEditFormConfig.TabLayout)
    root = config.invisibleRootContainer()
    root.clear()
    match = QgsAttributeEditorContainer("Match", root)
    match.setColumnCount(2)
    figure = QgsAttributeEditorContainer("Explanation figure", match)
    explanation = QgsAttributeEditorContainer("Explanation", match)
    for group in (figure, explanation):
        group.setIsGroupBox(True)
        group.setVisibilityExpression(QgsOptionalExpression(QgsExpression(EXPLAINED_EXPRESSION)))
    details = QgsAttributeEditorContainer("Details", root)
    for name in MATCH_FIELDS:
        _add_field(layer, match, name)
    _add_field(layer, figure, FIGURE_FIELD)
    for name in EXPLANATION_FIELDS:
        _add_field(layer, explanation, name)
    for field in RESULT_FIELDS:
        index = fields.indexOf(field.name)
        if index < 0:
            continue
        layer.setFieldAlias(index, field.alias)
        config.setReadOnly(index, True)
        if field.name not in (*MATCH_FIELDS, *EXPLANATION_FIELDS, FIGURE_FIELD):
            _add_field(layer, details, field.name)
    match.addChildElement(figure)
    match.addChildElement(explanation)
    root.addChildElement(match)
    root.addChildElement(details)
    layer.setEditFormConfig(config)
    widgets = {
        "query_path": _image_widget(show_path=True),
        "chip_image": _image_widget(show_path=False),
        FIGURE_FIELD: _image_widget(show_path=False, width=520),
        "explanation": QgsEditorWidgetSetup("TextEdit", {"IsMultiline": True, "UseHtml": False}),
    }
    for name, widget in widgets.items():
        index = fields.indexOf(name)
        if index >= 0:
            layer.setEditorWidgetSetup(index, widget)


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


def use_stored_style(layer: QgsVectorLayer, style: Callable[[QgsVectorLayer], None]) -> None:
    """Keep the default style stored with ``layer``, else apply ``style`` and store it as the default.

    QGIS loads a GeoPackage layer's stored default style when it opens the layer, so a style
    the user saved there wins over the plugin's.
    """
    related, *_ = layer.listStylesInDatabase()
    if related > 0:
        return
    style(layer)
    error = layer.saveStyleToDatabase(STYLE_NAME, "GLEAM geo-localization results", True, "")
    if error:
        QgsMessageLog.logMessage(
            f"cannot store the style in {layer.source()}: {error}", "GLEAM", Qgis.Warning, notifyUser=False
        )
