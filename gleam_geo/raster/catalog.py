"""A set of rasters to index, each in its own CRS.

Rasters are never merged or reprojected into one mosaic: every chip keeps its source's
CRS, and only footprints meet in WGS84.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import shapely

from ..errors import RasterReadError
from .source import RasterSource, open_raster

__all__ = ["RASTER_EXTENSIONS", "RasterCatalog"]

RASTER_EXTENSIONS: tuple[str, ...] = (".tif", ".tiff", ".vrt", ".jp2", ".img")
"""File extensions picked up when a folder is scanned (case-insensitive)."""

_GLOB_CHARS = ("*", "?", "[")


def _is_raster_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in RASTER_EXTENSIONS


def _expand(entry: str | os.PathLike[str]) -> list[Path]:
    """Files named by one entry: a file, a folder (recursively) or a glob pattern."""
    text = os.fspath(entry)
    path = Path(text).expanduser()
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if _is_raster_file(p))
    if path.exists():
        return [path]
    if any(char in text for char in _GLOB_CHARS):
        found: list[Path] = []
        for match in sorted(glob.glob(os.path.expanduser(text), recursive=True)):
            found.extend(_expand(match) if Path(match).is_dir() else [Path(match)])
        return found
    raise RasterReadError(f"cannot read raster {text}: no such file or folder; check the path")


class RasterCatalog:
    """Several :class:`RasterSource` s, in any mix of CRSs, iterated in a stable order."""

    def __init__(self, sources: Iterable[RasterSource]) -> None:
        self.sources: tuple[RasterSource, ...] = tuple(sources)

    @classmethod
    def from_paths(cls, paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> RasterCatalog:
        """Open rasters from files, folders (searched recursively) and glob patterns.

        Folders contribute files with the extensions in :data:`RASTER_EXTENSIONS`; files
        and glob matches named explicitly are opened whatever their extension. Each file
        is opened once even when several entries name it.

        Raises:
            RasterReadError: an entry does not exist, nothing was found, or a file cannot be read.
            NotGeoreferencedError: a raster has no CRS or geotransform.
            UnknownCRSError: a raster's CRS is unknown to PROJ.

        """
        entries = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
        files: dict[str, None] = {}
        for entry in entries:
            for path in _expand(entry):
                files.setdefault(os.path.abspath(path), None)
        if not files:
            named = ", ".join(os.fspath(entry) for entry in entries) or "(no paths given)"
            raise RasterReadError(
                f"cannot read rasters: no raster files found in {named}; "
                f"pass files, folders or globs of {'/'.join(RASTER_EXTENSIONS)} files"
            )
        return cls(open_raster(path) for path in files)

    def __iter__(self) -> Iterator[RasterSource]:
        return iter(self.sources)

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, index: int) -> RasterSource:
        return self.sources[index]

    def __repr__(self) -> str:
        return f"RasterCatalog({len(self.sources)} rasters)"

    def wgs84_union(self) -> shapely.Geometry:
        """Union of the rasters' footprints in EPSG:4326 (lon, lat); empty for an empty catalog."""
        return shapely.union_all([source.wgs84_footprint for source in self.sources])
