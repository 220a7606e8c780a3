"""Searchable stores of chip embeddings: a FAISS index plus a GeoParquet sidecar per directory.

Importing this package imports faiss; ``import gleam_geo`` alone does not.
"""

from __future__ import annotations

from .geoindex import Device, GeoIndex
from .manifest import FORMAT_VERSION, METRIC, Manifest, SourceEntry
from .region import RegionLike, to_wgs84_geometry

__all__ = [
    "Device",
    "FORMAT_VERSION",
    "GeoIndex",
    "METRIC",
    "Manifest",
    "RegionLike",
    "SourceEntry",
    "to_wgs84_geometry",
]
