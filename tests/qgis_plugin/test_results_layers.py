"""Results layers: features, style, form, the inspect tool, and the rendered screenshots."""

from __future__ import annotations

import numpy as np
import pytest
from gleam_geo_qgis.layer_style import style_footprints, style_points
from gleam_geo_qgis.layers import append_results, features_from_result, open_results_layers
from plugin_test_utils import is_null
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsEditFormConfig,
    QgsFeature,
    QgsGeometry,
    QgsMapRendererParallelJob,
    QgsMapSettings,
    QgsMarkerSymbol,
    QgsPointXY,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsSingleSymbolRenderer,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QColor, QImage


def _pixels(image: QImage) -> np.ndarray:
    image = image.convertToFormat(QImage.Format_RGB888)
    buffer = image.constBits()
    buffer.setsize(image.sizeInBytes())
    rows = np.frombuffer(buffer, np.uint8).reshape(image.height(), image.bytesPerLine())
    return rows[:, : image.width() * 3].reshape(image.height(), image.width(), 3).copy()


def _render(layers, extent: QgsRectangle, crs: QgsCoordinateReferenceSystem) -> QImage:
    settings = QgsMapSettings()
    settings.setLayers(layers)
    settings.setDestinationCrs(crs)
    settings.setOutputSize(QSize(1000, 680))
    settings.setExtent(extent)
    settings.setBackgroundColor(QColor(255, 255, 255))
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    return job.renderedImage()


@pytest.fixture
def results_layers(explained_localization, tmp_path, qgis_new_project):
    points, footprints = open_results_layers(tmp_path / "gleam.gpkg")
    ids = append_results(explained_localization, points, footprints)
    assert len(ids) == 3
    style_footprints(footprints)
    style_points(points)
    # The project owns them, so they are deleted with it, before QGIS shuts GDAL down.
    QgsProject.instance().addMapLayers([footprints, points])
    return points, footprints


def test_features_keep_missing_fields_null(localization):
    points, footprints = features_from_result(localization)
    assert len(points) == len(footprints) == 5
    assert (
        is_null(points[0]["match_prob"])
        or "match_prob" in localization["results"]["features"][0]["properties"]
    )
    assert points[0]["source_raster"] == localization["results"]["features"][0]["properties"]["source"]


def test_results_layer_form_and_style(results_layers):
    points, _ = results_layers
    config = points.editFormConfig()
    assert config.layout() == QgsEditFormConfig.TabLayout
    tabs = [element.name() for element in config.tabs()]
    assert tabs == ["Match", "Details"]
    match_children = [child.name() for child in config.tabs()[0].children()]
    assert match_children == ["query_path", "chip_image", "Explanation figure", "Explanation"]
    figure, explanation = config.tabs()[0].children()[2:]
    assert [child.name() for child in figure.children()] == ["explanation_figure"]
    assert [child.name() for child in explanation.children()] == [
        "verdict",
        "explanation",
        "explanation_model",
        "language",
    ]
    assert "explanation" in explanation.visibilityExpression().data().expression()
    widget = points.editorWidgetSetup(points.fields().indexOf("chip_image"))
    assert widget.type() == "ExternalResource" and widget.config()["DocumentViewer"] == 1
    symbol = points.renderer().symbol()
    fill = symbol.symbolLayer(0).dataDefinedProperties().property(symbol.symbolLayer(0).PropertyFillColor)
    assert 'coalesce("match_prob", "score")' in fill.expressionString()
    arrow = symbol.symbolLayer(1)
    assert arrow.dataDefinedProperties().property(arrow.PropertyAngle).field() == "heading_deg"
    assert points.labelsEnabled() and points.labeling().settings().fieldName == "rank"


def _truth_layer(query_crop) -> QgsVectorLayer:
    """Where the query photo really is: a blue cross, for the documentation image."""
    layer = QgsVectorLayer("Point?crs=EPSG:4326", "true position", "memory")
    feature = QgsFeature()
    feature.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(query_crop["lon"], query_crop["lat"])))
    layer.dataProvider().addFeatures([feature])
    symbol = QgsMarkerSymbol.createSimple(
        {"name": "cross2", "size": "9", "outline_color": "30,90,255", "outline_width": "1.0"}
    )
    layer.setRenderer(QgsSingleSymbolRenderer(symbol))
    return layer


def test_render_results_on_the_raster(results_layers, kampala, query_crop, qgis_new_project, image_dir):
    points, footprints = results_layers
    raster = QgsRasterLayer(str(kampala), "kampala_z19")
    assert raster.isValid()
    truth = _truth_layer(query_crop)
    for layer in (raster, truth):
        QgsProject.instance().addMapLayer(layer)
    crs = raster.crs()
    extent = raster.extent()
    base = _pixels(_render([raster], extent, crs))
    image = _render([points, truth, footprints, raster], extent, crs)
    path = image_dir / "qgis_results.png"
    assert image.save(str(path))
    pixels = _pixels(QImage(str(path)))
    assert pixels.std() > 20, "the rendered map is blank"
    changed = np.any(np.abs(pixels.astype(int) - base.astype(int)) > 40, axis=-1).mean()
    assert changed > 0.002, "the results layers are not visible on the map"


def test_panel_screenshot(qgis_iface, qgis_new_project, kampala, query_crop, image_dir):
    import gleam_geo_qgis

    raster = QgsRasterLayer(str(kampala), "kampala_z19")
    QgsProject.instance().addMapLayer(raster)
    plugin = gleam_geo_qgis.classFactory(qgis_iface)
    plugin.initGui()
    try:
        dock = plugin.show_dock()
        dock.add_images([query_crop["path"]])
        dock.top_k.setValue(5)
        dock.resize(380, 760)
        dock.widget().resize(380, 740)
        image = dock.grab().toImage()
        path = image_dir / "qgis_panel.png"
        assert image.save(str(path))
        pixels = _pixels(QImage(str(path)))
        assert pixels.shape[0] > 300 and pixels.std() > 10, "the panel screenshot is blank"
    finally:
        plugin.unload()


def test_inspect_tool_opens_the_form_of_a_clicked_result(results_layers, qgis_iface, qgis_new_project):
    from gleam_geo_qgis.ui.inspect_tool import InspectResultTool, gleam_layers

    points, footprints = results_layers
    assert gleam_layers() == [points, footprints]
    tool = InspectResultTool(qgis_iface.mapCanvas(), qgis_iface)
    qgis_iface.openFeatureForm.reset_mock()
    tool.activate()
    assert tool.target is points
    feature = next(points.getFeatures())
    tool.featureIdentified[QgsFeature].emit(feature)
    qgis_iface.openFeatureForm.assert_called_once()
    layer, opened, *_ = qgis_iface.openFeatureForm.call_args.args
    assert layer is points and opened.id() == feature.id()


def test_form_shows_photo_beside_chip(results_layers, qgis_new_project, image_dir):
    from qgis.gui import QgsAttributeForm
    from qgis.PyQt import sip

    points, _ = results_layers
    feature = next(points.getFeatures())
    assert not is_null(feature["explanation"]) and feature["rank"] == 1
    form = QgsAttributeForm(points, feature)
    form.resize(900, 760)
    image = form.grab().toImage()
    sip.delete(form)
    path = image_dir / "qgis_form.png"
    assert image.save(str(path))
    pixels = _pixels(QImage(str(path)))
    # The photo and chip are colourful; the form chrome alone is grey.
    saturation = pixels.max(axis=-1).astype(int) - pixels.min(axis=-1)
    assert (saturation > 40).mean() > 0.05, "the form shows no images"


def test_style_is_stored_in_the_geopackage(localization, query_crop, tmp_path, qgis_new_project):
    """Reopening the results GeoPackage, without the plugin, shows the GLEAM style and form."""
    from gleam_geo_qgis.outcomes import LocalizeRequest, OutcomeHandler
    from gleam_geo_qgis.parameters import LocalizeParameters
    from pytest_qgis.mock_qgis_classes import MockMessageBar

    gpkg = tmp_path / "styled.gpkg"
    request = LocalizeRequest(LocalizeParameters(images=(query_crop["path"],), index_dir="index"), gpkg)
    OutcomeHandler(MockMessageBar()).add_results(request, localization)
    QgsProject.instance().removeAllMapLayers()
    points = QgsVectorLayer(f"{gpkg}|layername=gleam_localizations", "reopened", "ogr")
    footprints = QgsVectorLayer(f"{gpkg}|layername=gleam_footprints", "reopened", "ogr")
    related, _, names, *_ = points.listStylesInDatabase()
    assert related == 1 and names[0] == "GLEAM results"
    symbol = points.renderer().symbol()
    dot, arrow = symbol.symbolLayer(0), symbol.symbolLayer(1)
    assert "match_prob" in dot.dataDefinedProperties().property(dot.PropertyFillColor).expressionString()
    assert arrow.dataDefinedProperties().property(arrow.PropertyAngle).field() == "heading_deg"
    assert points.labelsEnabled() and points.labeling().settings().fieldName == "rank"
    assert [tab.name() for tab in points.editFormConfig().tabs()] == ["Match", "Details"]
    figure = points.editorWidgetSetup(points.fields().indexOf("explanation_figure"))
    assert figure.type() == "ExternalResource"
    outline = footprints.renderer().symbol().symbolLayer(0)
    stroke = outline.dataDefinedProperties().property(outline.PropertyStrokeColor)
    assert "match_prob" in stroke.expressionString()
    # A style the user stored as the default is kept on later runs.
    points.setLabelsEnabled(False)
    assert points.saveStyleToDatabase("mine", "", True, "") == ""
    QgsProject.instance().removeAllMapLayers()
    OutcomeHandler(MockMessageBar()).add_results(request, localization)
    (again,) = QgsProject.instance().mapLayersByName("GLEAM localizations")
    assert not again.labelsEnabled()
