"""GLEAM geo-localization for QGIS: find where photos were taken, on the map.

Copyright (C) 2025 gleam-geo developers. Licensed under the GNU General Public License,
version 3 or (at your option) any later version (GPL-3.0-or-later); see LICENSE.

The plugin runs gleam_geo in a separate Python environment through a worker process, so
loading it imports no torch, faiss or gleam_geo into QGIS.
"""

from __future__ import annotations

from typing import Any

__all__ = ["classFactory"]


def classFactory(iface: Any) -> Any:
    """Create the plugin (called by QGIS when it loads the plugin)."""
    from .plugin import GleamGeoPlugin

    return GleamGeoPlugin(iface)
