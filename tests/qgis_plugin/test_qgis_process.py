"""The Processing algorithms from the command line: ``qgis_process`` with the plugin enabled.

The plugin is found through ``QGIS_PLUGINPATH`` and enabled in a throwaway profile
(``QGIS_CUSTOM_CONFIG_PATH``), as a user would with ``qgis_process plugins enable``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from gleam_geo_qgis.layers import RESULT_FIELDS
from plugin_test_utils import MAX_ERROR_M, PLUGIN_DIR, PLUGIN_ROOT, distance_m
from qgis.core import QgsVectorLayer


def _qgis_process() -> str | None:
    """Return the qgis_process executable, or ``None`` when QGIS has none installed."""
    wrapper = shutil.which("qgis_process")
    if wrapper is None:
        return None
    # Debian's wrapper script adds QGIS_OPTS from /etc/default/qgis (--noversioncheck, an
    # option of the desktop application that qgis_process rejects); run the binary itself.
    binary = Path(wrapper).with_name("qgis_process.bin")
    return str(binary) if binary.is_file() else wrapper


@pytest.fixture(scope="module")
def qgis_process(tmp_path_factory: pytest.TempPathFactory):
    """Run ``qgis_process`` headless with the plugin enabled in a throwaway profile."""
    executable = _qgis_process()
    if executable is None:
        pytest.skip("qgis_process is not installed (Debian: apt-get install --no-install-recommends qgis)")
    config = tmp_path_factory.mktemp("qgis_process_profile")
    ini = config / "profiles" / "default" / "QGIS" / "QGIS3.ini"
    ini.parent.mkdir(parents=True)
    ini.write_text(f"[PythonPlugins]\n{PLUGIN_DIR.name}=true\n")
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    env |= {
        "QT_QPA_PLATFORM": "offscreen",
        "QGIS_CUSTOM_CONFIG_PATH": str(config),
        "QGIS_PLUGINPATH": str(PLUGIN_ROOT),
    }

    def run(*args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [executable, *args], capture_output=True, text=True, env=env, timeout=timeout_s, check=False
        )

    return run


def _json(result: subprocess.CompletedProcess[str]) -> dict:
    assert result.returncode == 0, f"qgis_process failed: {result.stdout[-2000:]} {result.stderr[-2000:]}"
    return json.loads(result.stdout[result.stdout.index("{") :])


def test_qgis_process_lists_the_algorithms_with_help(qgis_process):
    result = qgis_process("help", "gleam_geo:localize")
    assert result.returncode == 0, result.stderr[-2000:]
    for text in ("Query photos", "Index folder", "Explain the best matches", "Candidates written"):
        assert text in result.stdout, text
    assert "gleam_geo:build_index" in qgis_process("list").stdout


def test_qgis_process_builds_an_index_and_localizes(qgis_process, kampala_small, query_crop, tmp_path):
    index_dir = tmp_path / "index"
    built = _json(
        qgis_process(
            "--json", "run", "gleam_geo:build_index", "--", f"RASTERS={kampala_small}", f"OUTPUT={index_dir}"
        )
    )
    assert built["results"]["CHIPS"] == 12 and (index_dir / "manifest.json").is_file()
    points_path = tmp_path / "points.gpkg"
    localized = _json(
        qgis_process(
            "--json",
            "run",
            "gleam_geo:localize",
            "--",
            f"IMAGES={query_crop['path']}",
            f"INDEX={index_dir}",
            "TOP_K=3",
            f"OUTPUT={points_path}",
        )
    )
    assert localized["results"]["COUNT"] == 3
    points = QgsVectorLayer(str(points_path), "points", "ogr")
    assert points.isValid() and points.crs().authid() == "EPSG:4326"
    assert [field.name() for field in points.fields()][1:] == [field.name for field in RESULT_FIELDS]
    features = sorted(points.getFeatures(), key=lambda feature: feature["rank"])
    assert [feature["rank"] for feature in features] == [1, 2, 3]
    assert all(feature["query_path"] == query_crop["path"] for feature in features)
    assert all(feature["source_raster"] == str(kampala_small) for feature in features)
    best = features[0].geometry().asPoint()
    assert distance_m(best.x(), best.y(), query_crop["lon"], query_crop["lat"]) < MAX_ERROR_M
