"""Background tasks end to end: localize into the results layer, cancel a build, broken worker."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from gleam_geo_qgis.layers import RESULT_FIELDS
from gleam_geo_qgis.parameters import IndexParameters, LocalizeParameters
from gleam_geo_qgis.settings import PluginSettings, WorkerSpec, resolve_worker
from gleam_geo_qgis.task_results import TaskCancelled, TaskFailed, TaskSuccess
from gleam_geo_qgis.tasks import WorkerTask
from plugin_test_utils import MAX_ERROR_M, distance_m, is_null, process_alive, wait_for
from qgis.core import Qgis, QgsProject


@pytest.fixture
def plugin(qgis_iface, qgis_new_project, tmp_path):
    import gleam_geo_qgis

    PluginSettings(results_gpkg=str(tmp_path / "results" / "gleam.gpkg")).save()
    instance = gleam_geo_qgis.classFactory(qgis_iface)
    instance.initGui()
    instance.show_dock()
    qgis_iface.messageBar().clear_messages()
    yield instance
    instance.unload()
    PluginSettings().save()


def _run(plugin, task, timeout_s: float = 150.0):
    assert task is not None
    assert wait_for(lambda: plugin.last_outcome is not None, timeout_s), "task did not finish"
    outcome, plugin.last_outcome = plugin.last_outcome, None
    return outcome


def _library_columns() -> set[str]:
    from gleam_geo.schema import column_names

    return set(column_names())


def test_localize_task_fills_the_results_layer(
    plugin, qgis_iface, kampala_small, query_crop, localization, tmp_path
):
    parameters = LocalizeParameters(images=(query_crop["path"],), rasters=(str(kampala_small),), top_k=4)
    progress: list[float] = []
    task = plugin.start_localize(parameters)
    task.progressChanged.connect(progress.append)
    outcome = _run(plugin, task)
    assert isinstance(outcome, TaskSuccess), getattr(outcome, "message", outcome)
    assert progress and max(progress) == pytest.approx(100.0)
    assert plugin.dock.localize_button.isEnabled() and not plugin.dock.cancel_button.isEnabled()
    (points,) = QgsProject.instance().mapLayersByName("GLEAM localizations")
    (footprints,) = QgsProject.instance().mapLayersByName("GLEAM footprints")
    assert Path(points.source().split("|")[0]) == tmp_path / "results" / "gleam.gpkg"
    assert [field.name() for field in points.fields()][1:] == [field.name for field in RESULT_FIELDS]
    features = sorted(points.getFeatures(), key=lambda feature: feature["rank"])
    assert [feature["rank"] for feature in features] == [1, 2, 3, 4]
    assert footprints.featureCount() == 4
    present = _library_columns()
    for feature in features:
        for name in ("score", "rank", "chip_id", "source_raster", "model", "query_path", "created_at"):
            assert not is_null(feature[name]) and feature[name] != "", name
        for field in RESULT_FIELDS:  # what the library does not provide yet stays NULL
            if field.column and field.column not in present and field.column != "chip_image_path":
                assert is_null(feature[field.name]), field.name
        assert Path(feature["chip_image"]).is_file()
    if "match_prob" in present:  # refinement is on by default: the best candidate is refined
        assert not is_null(features[0]["match_prob"]) and 0 <= features[0]["match_prob"] <= 1
    best = features[0].geometry().asPoint()
    assert distance_m(best.x(), best.y(), query_crop["lon"], query_crop["lat"]) < MAX_ERROR_M
    assert features[0]["source_raster"] == str(kampala_small)
    assert features[0]["query_path"] == query_crop["path"]
    messages = qgis_iface.messageBar().get_messages(Qgis.Success)
    assert any("4 candidates" in message for message in messages)

    # Another run's results append to the same layers instead of adding new ones.
    added = plugin.outcomes.handle(TaskSuccess("localize", localization, task.request))
    assert len(added.feature_ids) == 5 and added.points is points
    assert len(QgsProject.instance().mapLayersByName("GLEAM localizations")) == 1
    assert points.featureCount() == 9 and footprints.featureCount() == 9


def test_failed_request_shows_the_one_line_cause(plugin, qgis_iface, query_crop, tmp_path):
    parameters = LocalizeParameters(images=(query_crop["path"],), index_dir=str(tmp_path / "gone_index"))
    outcome = _run(plugin, plugin.start_localize(parameters))
    assert isinstance(outcome, TaskFailed)
    assert outcome.error_type == "IndexFormatError"
    assert "gone_index" in outcome.message and "\n" not in outcome.message
    (critical,) = qgis_iface.messageBar().get_messages(Qgis.Critical)
    assert critical == f"GLEAM:{outcome.message}"
    assert not QgsProject.instance().mapLayersByName("GLEAM localizations")


def test_broken_worker_environment_gives_a_clear_message(plugin, qgis_iface, query_crop, kampala, tmp_path):
    PluginSettings(python=str(tmp_path / "venv" / "bin" / "python")).save()
    parameters = LocalizeParameters(images=(query_crop["path"],), rasters=(str(kampala),))
    outcome = _run(plugin, plugin.start_localize(parameters), timeout_s=30)
    assert isinstance(outcome, TaskFailed) and outcome.error_type == "WorkerStartError"
    assert "worker Python not found" in outcome.message and "GLEAM settings" in outcome.message
    assert any("worker Python not found" in m for m in qgis_iface.messageBar().get_messages(Qgis.Critical))


def test_cancelling_an_index_build_stops_quickly_and_leaves_nothing(
    plugin, worker_spec, shared_data, tmp_path
):
    raster = shared_data / "netherlands" / "nl_25cm.tif"
    out = tmp_path / "nl_index"
    parameters = IndexParameters(rasters=(str(raster),), index_dir=str(out))
    task = plugin.start_index(parameters)
    assert isinstance(task, WorkerTask)
    assert wait_for(lambda: task.progress() > 0, 120), "the build never reported progress"
    pid = task.worker_pid
    assert pid is not None
    started = time.monotonic()
    plugin.dock.cancel_button.click()
    outcome = _run(plugin, task, timeout_s=30)
    elapsed = time.monotonic() - started
    assert isinstance(outcome, TaskCancelled)
    assert elapsed < 10, f"cancel took {elapsed:.1f} s"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not out.exists()
    assert not [path.name for path in tmp_path.iterdir() if path.name.startswith(".nl_index")]
    assert task.status() == task.Terminated


def test_worker_task_reports_success_directly(worker_spec):
    """``run()`` and ``finished()`` called by hand, as the QGIS task manager would."""
    task = WorkerTask("ping", WorkerSpec(worker_spec.python, worker_spec.pythonpath), "ping", {})
    outcomes: list = []
    task.completed.connect(outcomes.append)
    task.finished(task.run())
    (outcome,) = outcomes
    assert isinstance(outcome, TaskSuccess) and outcome.result["pong"] is True


def _ping(plugin) -> int:
    outcome = _run(plugin, plugin._start(WorkerTask("ping", resolve_worker(), "ping", {})))
    assert isinstance(outcome, TaskSuccess), outcome
    return outcome.result["pid"]


def test_tasks_reuse_one_worker_until_the_python_changes_or_the_plugin_unloads(plugin, tmp_path):
    first = _ping(plugin)
    assert _ping(plugin) == first  # kept between runs
    wrapper = tmp_path / "python"
    wrapper.write_text(f'#!/bin/sh\nexec {resolve_worker().python} "$@"\n')
    wrapper.chmod(0o755)
    PluginSettings(python=str(wrapper), results_gpkg=str(tmp_path / "results" / "gleam.gpkg")).save()
    second = _ping(plugin)
    assert second != first and wait_for(lambda: not process_alive(first), 10)
    plugin.unload()
    assert wait_for(lambda: not process_alive(second), 10)


EXPLANATION_FIELDS = ("verdict", "explanation", "explanation_model", "language", "explanation_figure")


@pytest.mark.parametrize("explain", [True, False], ids=["explain", "no_explain"])
def test_localize_task_fills_explanations_only_when_asked(plugin, kampala_index, query_crop, explain):
    parameters = LocalizeParameters(
        images=(query_crop["path"],), index_dir=kampala_index["path"], top_k=3, explain=explain
    )
    outcome = _run(plugin, plugin.start_localize(parameters))
    assert isinstance(outcome, TaskSuccess), getattr(outcome, "message", outcome)
    assert not outcome.result["notes"], outcome.result["notes"]  # the library took every option
    (points,) = QgsProject.instance().mapLayersByName("GLEAM localizations")
    best = min(points.getFeatures(), key=lambda feature: feature["rank"])
    if explain:
        for name in EXPLANATION_FIELDS:
            assert not is_null(best[name]) and best[name] != "", name
        assert isinstance(best["verdict"], bool) and best["language"] == "en"
        figure = Path(best["explanation_figure"])
        assert figure.is_file() and figure.parent == outcome.request.figure_dir
    else:
        for feature in points.getFeatures():
            assert all(is_null(feature[name]) for name in EXPLANATION_FIELDS)
