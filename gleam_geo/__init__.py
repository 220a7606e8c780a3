"""gleam_geo: find where a photo was taken in georeferenced imagery, and explain why.

``import gleam_geo`` is light: the heavy parts (torch, timm, faiss, rasterio) load on
first use of the names that need them, so QGIS and other hosts can import it cheaply.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import *  # noqa: F403  (errors are light and part of the public API)
from .errors import __all__ as _error_names

logging.getLogger(__name__).addHandler(logging.NullHandler())

# Public name -> module that defines it, imported on first access (PEP 562).
_LAZY: dict[str, str] = {
    "localize": "gleam_geo.api",
    "explain": "gleam_geo.explain",
    "build_index": "gleam_geo.api",
    "GeoIndex": "gleam_geo.index",
    "RasterCatalog": "gleam_geo.raster",
    "TilingConfig": "gleam_geo.raster",
    "get_encoder": "gleam_geo.models",
    "list_encoders": "gleam_geo.models",
    "load_image": "gleam_geo.io",
    "write_results": "gleam_geo.io",
}

__all__ = ["__version__", *_error_names, *_LAZY]

if TYPE_CHECKING:  # pragma: no cover
    # ruff: noqa: F401  (names re-exported lazily through __getattr__)
    from .api import build_index, localize
    from .explain import explain
    from .index import GeoIndex
    from .io import load_image, write_results
    from .models import get_encoder, list_encoders
    from .raster import RasterCatalog, TilingConfig


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gleam_geo' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
