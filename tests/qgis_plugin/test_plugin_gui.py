"""The plugin in a (headless) QGIS: loading, the dock panel, the settings dialog."""

from __future__ import annotations

import pytest
from gleam_geo_qgis.parameters import IndexParameters, LocalizeParameters, ParameterError
from qgis.core import QgsApplication, QgsProject, QgsRasterLayer, QgsVectorLayer
from qgis.PyQt.QtCore import QMimeData, QPointF, Qt, QUrl
from qgis.PyQt.QtGui import QDropEvent


@pytest.fixture
def plugin(qgis_iface, qgis_new_project):
    import gleam_geo_qgis

    instance = gleam_geo_qgis.classFactory(qgis_iface)
    instance.initGui()
    yield instance
    instance.unload()


@pytest.fixture
def kampala_layer(kampala):
    layer = QgsRasterLayer(str(kampala), "kampala_z19")
    assert layer.isValid()
    QgsProject.instance().addMapLayer(layer)
    return layer


def test_plugin_loads_registers_processing_and_opens_the_panel(plugin, qgis_iface):
    from gleam_geo_qgis.ui.dock import GleamDock

    registry = QgsApplication.processingRegistry()
    assert registry.providerById("gleam_geo") is not None
    assert registry.algorithmById("gleam_geo:localize") is not None
    assert registry.algorithmById("gleam_geo:build_index") is not None
    assert [action.text() for action in plugin.actions] == [
        "GLEAM localization panel",
        "Inspect a GLEAM result",
        "GLEAM settings…",
    ]
    dock = plugin.show_dock()
    assert isinstance(dock, GleamDock) and not dock.isHidden()
    assert dock.windowTitle() == "GLEAM localization"
    plugin.unload()
    assert registry.providerById("gleam_geo") is None
    assert plugin.dock is None


def test_dock_builds_localize_parameters(plugin, kampala_layer, query_crop):
    dock = plugin.show_dock()
    assert dock.raster_list.count() == 1 and dock.ticked_rasters() == (kampala_layer.source(),)
    emitted: list = []
    errors: list[str] = []
    plugin.dock.localize_requested.disconnect(plugin.start_localize)
    dock.localize_requested.connect(emitted.append)
    dock.invalid_input.connect(errors.append)
    dock.localize_button.click()
    assert emitted == [] and "query photo" in errors[-1]
    assert dock.add_images([query_crop["path"], query_crop["path"], "/not/an/image.txt"]) == 1
    dock.top_k.setValue(4)
    dock.modality.setCurrentText("uav")
    assert dock.refine.isChecked()  # on by default, as in the library
    assert dock.query_gsd.value() == 0 and dock.query_gsd.text() == "unknown"
    dock.query_gsd.setValue(4.5)
    dock.refine.setChecked(False)
    assert not dock.query_gsd.isEnabled()  # only refinement uses it
    dock.localize_button.click()
    (parameters,) = emitted
    assert isinstance(parameters, LocalizeParameters)
    assert parameters.images == (query_crop["path"],)
    assert parameters.rasters == (kampala_layer.source(),) and parameters.index_dir == ""
    assert (parameters.top_k, parameters.modality, parameters.refine, parameters.explain) == (
        4,
        "uav",
        False,
        False,
    )
    assert parameters.region is None
    params = parameters.to_params(chip_dir="/tmp/chips")
    assert params["rasters"] == [kampala_layer.source()] and "index" not in params
    assert params["chip_dir"] == "/tmp/chips" and params["refine"] is False
    assert parameters.query_gsd_m == 4.5 and params["query_gsd_m"] == 4.5
    assert "query_gsd_m" not in LocalizeParameters(images=("a.jpg",), index_dir="i").to_params()
    with pytest.raises(ParameterError, match="ground size"):
        LocalizeParameters(images=("a.jpg",), index_dir="i", query_gsd_m=-1.0)


def test_dock_regions(plugin, qgis_iface, kampala_layer, tmp_path):
    dock = plugin.show_dock()
    canvas = qgis_iface.mapCanvas()
    canvas.setDestinationCrs(kampala_layer.crs())
    canvas.setExtent(kampala_layer.extent())
    dock.region_mode.setCurrentIndex(dock.region_mode.findData("canvas"))
    region = dock.region()
    assert region.crs == "EPSG:3857" and region.wkt.startswith("Polygon")
    polygons = QgsVectorLayer("Polygon?crs=EPSG:4326", "areas", "memory")
    QgsProject.instance().addMapLayer(polygons)
    dock.region_mode.setCurrentIndex(dock.region_mode.findData("polygons"))
    dock.region_layer.setLayer(polygons)
    with pytest.raises(ParameterError, match="select one or more polygons"):
        dock.region()


def test_dock_index_parameters_and_drop(plugin, kampala_layer, query_crop, tmp_path):
    dock = plugin.show_dock()
    dock.index_dir.setFilePath(str(tmp_path / "idx"))
    parameters = dock.index_parameters(update=True)
    assert isinstance(parameters, IndexParameters) and parameters.method == "add_to_index"
    assert parameters.to_params() == {"index": str(tmp_path / "idx"), "rasters": [kampala_layer.source()]}
    not_image = tmp_path / "notes.txt"
    not_image.write_text("x")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(query_crop["path"]), QUrl.fromLocalFile(str(not_image))])
    event = QDropEvent(QPointF(5, 5), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    dock.dropEvent(event)
    assert dock.images() == (query_crop["path"],)


def test_settings_dialog_checks_the_environment(qgis_new_project, tmp_path):
    import torch
    from gleam_geo_qgis.settings import PluginSettings
    from gleam_geo_qgis.ui.settings_dialog import SettingsDialog

    dialog = SettingsDialog()
    task = dialog.environment_task()
    task.finished(task.run())
    report = dialog.report.toPlainText()
    assert "works" in report and torch.__version__ in report
    assert ("cuda" if torch.cuda.is_available() else "cpu") in report
    dialog.python.setFilePath(str(tmp_path / "missing" / "python"))
    task = dialog.environment_task()
    task.finished(task.run())
    assert (
        "not usable" in dialog.report.toPlainText()
        and "worker Python not found" in dialog.report.toPlainText()
    )
    dialog.results.setFilePath(str(tmp_path / "out.gpkg"))
    dialog.accept()
    saved = PluginSettings.load()
    assert saved.python.endswith("missing/python") and saved.results_gpkg == str(tmp_path / "out.gpkg")
    PluginSettings().save()


def test_explainer_key_goes_to_the_worker_environment_only(qgis_new_project, query_crop):
    """The openai backend's key comes from QGIS's auth manager; settings and requests never hold it."""
    from gleam_geo_qgis.settings import PluginSettings, resolve_worker
    from gleam_geo_qgis.ui.settings_dialog import SettingsDialog
    from qgis.core import QgsAuthMethodConfig, QgsSettings

    manager = QgsApplication.authManager()
    if manager.isDisabled():
        pytest.skip("the QGIS authentication manager is disabled in this build")
    assert manager.setMasterPassword("gleam-test-master", True)
    key = "sk-gleamtest0123456789"
    config = QgsAuthMethodConfig("Basic")
    config.setName("GLEAM test endpoint")
    config.setConfig("username", "gleam")
    config.setConfig("password", key)
    assert manager.storeAuthenticationConfig(config)
    try:
        dialog = SettingsDialog()
        dialog.explain_backend.setCurrentIndex(dialog.explain_backend.findData("openai"))
        dialog.llm_base_url.setText("http://127.0.0.1:9/v1")
        dialog.llm_model.setText("tiny-vlm")
        dialog.llm_auth.setConfigId(config.id())
        assert config.id() in dialog.key_source.text() and key not in dialog.key_source.text()
        dialog.accept()
        settings = PluginSettings.load()
        spec = resolve_worker(settings, explain=True)
        assert spec.env == {
            "GLEAM_GEO_LLM_BASE_URL": "http://127.0.0.1:9/v1",
            "GLEAM_GEO_LLM_MODEL": "tiny-vlm",
            "GLEAM_GEO_LLM_API_KEY": key,
        }
        assert key not in repr(spec) and resolve_worker(settings).env == {}
        with open(QgsSettings().fileName(), encoding="utf-8") as handle:
            assert key not in handle.read()
        parameters = LocalizeParameters(
            images=(query_crop["path"],), index_dir="idx", explain=True, explain_backend="openai"
        )
        assert key not in str(parameters.to_params())
        assert parameters.to_params()["explain_backend"] == "openai"
        plain = LocalizeParameters(images=(query_crop["path"],), index_dir="idx")
        assert "explain_backend" not in plain.to_params()
    finally:
        manager.removeAuthenticationConfig(config.id())
        PluginSettings().save()
