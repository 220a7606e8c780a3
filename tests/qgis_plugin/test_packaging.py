"""The plugin package: metadata, the installable zip, and a light import."""

from __future__ import annotations

import configparser
import importlib.util
import py_compile
import subprocess
import sys
import zipfile
from pathlib import Path

from plugin_test_utils import PLUGIN_DIR, PLUGIN_ROOT, REPO


def _build_module():
    spec = importlib.util.spec_from_file_location("build_plugin", REPO / "scripts" / "build_plugin.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_metadata_has_every_required_field():
    build = _build_module()
    general = build.check_metadata(PLUGIN_DIR)
    assert general["qgisMinimumVersion"] == "3.22"
    assert general["hasProcessingProvider"] == "yes"
    assert general["license"].startswith("GPL-3.0")
    assert (PLUGIN_DIR / general["icon"]).is_file()
    assert "GNU GENERAL PUBLIC LICENSE" in (PLUGIN_DIR / "LICENSE").read_text()[:200]
    assert PLUGIN_DIR.name != "gleam_geo"


def test_metadata_links_point_to_one_repository():
    general = _build_module().check_metadata(PLUGIN_DIR)
    repository = general["repository"]
    assert repository.startswith("https://") and not repository.endswith("/")
    assert general["tracker"] == f"{repository}/issues"
    assert general["homepage"].startswith(repository)
    for key in ("homepage", "repository", "tracker", "email"):
        assert not any(word in general[key].lower() for word in ("example", "todo", "xxx", "your")), key


def test_metadata_check_names_missing_fields(tmp_path):
    build = _build_module()
    broken = tmp_path / "gleam_geo_qgis"
    broken.mkdir()
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read(PLUGIN_DIR / "metadata.txt")
    parser.remove_option("general", "tracker")
    with open(broken / "metadata.txt", "w") as handle:
        parser.write(handle)
    try:
        build.check_metadata(broken)
    except build.BuildError as exc:
        assert "tracker" in str(exc)
    else:
        raise AssertionError("metadata without a tracker passed the check")


def test_zip_is_installable_and_has_no_binaries(tmp_path):
    # Make sure there is compiled junk in the source folder that the build must leave out.
    py_compile.compile(str(PLUGIN_DIR / "plugin.py"), doraise=True)
    assert list(PLUGIN_DIR.glob("__pycache__/*.pyc"))
    out = tmp_path / "gleam_geo_qgis.zip"
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "build_plugin.py"), str(out)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    names = zipfile.ZipFile(out).namelist()
    assert all(name.startswith("gleam_geo_qgis/") for name in names)
    for required in (
        "__init__.py",
        "metadata.txt",
        "LICENSE",
        "icon.svg",
        "plugin.py",
        "processing/provider.py",
    ):
        assert f"gleam_geo_qgis/{required}" in names
    assert not [name for name in names if "__pycache__" in name or name.endswith((".pyc", ".pyo", ".so"))]


def test_loading_the_plugin_imports_no_ml_stack():
    """Load the plugin, open its panel and register Processing in a fresh QGIS; list heavy modules."""
    script = f"""
import sys
sys.path.insert(0, {str(PLUGIN_ROOT)!r})
from qgis.core import QgsApplication
from qgis.gui import QgsMapCanvas
from qgis.PyQt.QtWidgets import QMainWindow
from pytest_qgis.qgis_interface import QgisInterface
from pytest_qgis.mock_qgis_classes import MockMessageBar
app = QgsApplication([], False)
app.initQgis()
window = QMainWindow()
iface = QgisInterface(QgsMapCanvas(window), MockMessageBar(), window)
import gleam_geo_qgis
plugin = gleam_geo_qgis.classFactory(iface)
plugin.initGui()
plugin.show_dock()
from gleam_geo_qgis.ui.settings_dialog import SettingsDialog
SettingsDialog()
assert QgsApplication.processingRegistry().algorithmById("gleam_geo:localize") is not None
roots = ("torch", "faiss", "timm", "gleam_geo", "rasterio")
heavy = sorted(m for m in sys.modules if m.split(".")[0] in roots)
print("HEAVY:" + ",".join(heavy))
plugin.unload()
"""
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**_env(), "QT_QPA_PLATFORM": "offscreen"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("HEAVY:"))
    assert line == "HEAVY:", f"loading the plugin imported {line[6:]}"


def _env() -> dict[str, str]:
    import os

    return {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}


def test_layer_fields_cover_the_library_schema():
    from gleam_geo_qgis.layers import RESULT_FIELDS

    from gleam_geo.schema import EXPLAIN_COLUMNS, RESULT_COLUMNS, column_names

    sources = {field.column for field in RESULT_FIELDS}
    library = set(column_names(RESULT_COLUMNS + EXPLAIN_COLUMNS))
    assert library <= sources, library - sources
    types = {field.column: field.type for field in RESULT_FIELDS}
    assert {column.name: types[column.name] for column in EXPLAIN_COLUMNS} == {
        column.name: column.dtype for column in EXPLAIN_COLUMNS
    }
    names = [field.name for field in RESULT_FIELDS]
    expected = [
        "query_path",
        "modality",
        "rank",
        "score",
        "match_prob",
        "heading_deg",
        "error_radius_m",
        "chip_id",
        "source_raster",
        "model",
        "verdict",
        "explanation",
        "explanation_model",
        "language",
        "created_at",
    ]
    assert [name for name in names if name in expected] == expected  # all there, in the order
    assert len(set(names)) == len(names)


def test_worker_module_imports_without_torch():
    code = (
        "import sys, gleam_geo.worker, gleam_geo.results_geojson; "
        "print(','.join(m for m in ('torch', 'faiss', 'timm', 'rasterio') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_plugin_sources_never_print_or_raise_bare_exception():
    offenders = []
    for path in Path(PLUGIN_DIR).rglob("*.py"):
        text = path.read_text()
        if "print(" in text or "raise Exception(" in text or "except Exception" in text:
            offenders.append(path.name)
    assert offenders == []
