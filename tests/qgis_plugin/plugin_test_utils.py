"""Helpers shared by the QGIS plugin tests (paths, distances, waiting on Qt events)."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PLUGIN_ROOT = REPO / "qgis_plugin"
PLUGIN_DIR = PLUGIN_ROOT / "gleam_geo_qgis"
DOCS_IMAGES = REPO / "docs" / "images"

KAMPALA = "kampala/kampala_z19.tif"
# Centre of the query crop, in source pixels; 128 px at 0.3 m is one encoder chip (~38 m).
CROP_CENTRE_PX = (430, 250)
CROP_SIZE_PX = 128
MAX_ERROR_M = 40.0


def distance_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance in metres."""
    radius = 6_371_008.8
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi, dlambda = phi2 - phi1, math.radians(lon2 - lon1)
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlambda / 2) ** 2
    return 2 * radius * math.asin(math.sqrt(a))


def wait_for(condition: Callable[[], bool], timeout_s: float = 120.0) -> bool:
    """Process Qt events until ``condition()`` holds or the timeout passes; return whether it held."""
    from qgis.core import QgsApplication

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        QgsApplication.processEvents()
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def is_null(value: object) -> bool:
    """Whether a QGIS attribute value is NULL (``None`` or a null QVariant)."""
    from qgis.PyQt.QtCore import QVariant

    return value is None or (isinstance(value, QVariant) and value.isNull())


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
