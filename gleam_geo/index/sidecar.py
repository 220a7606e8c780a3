"""The GeoParquet sidecar: one row of chip metadata per vector, row ``i`` is vector ``i``.

Rows carry the WGS84 footprint (WKB ``geometry``, EPSG:4326), the native footprint and
CRS, the pixel window, GSD, date, XYZ tile and float64 ``minx/miny/maxx/maxy`` bbox
columns. The file is never read whole: readers memory-map it and pull the columns and row
groups they need; bbox filtering first skips row groups by their min/max statistics.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import shapely
from pyproj import CRS

from ..errors import IndexFormatError
from ..records import Chip
from .manifest import REBUILD_HINT, SourceEntry

__all__ = [
    "BBOX_COLUMNS",
    "Extent",
    "GEOPARQUET_VERSION",
    "ROW_GROUP_ROWS",
    "SCHEMA",
    "Sidecar",
    "chips_to_table",
    "table_extent",
    "table_to_geodataframe",
    "tally_sources",
    "union_extent",
    "write_sidecar",
]

GEOPARQUET_VERSION = "1.1.0"

BBOX_COLUMNS = ("minx", "miny", "maxx", "maxy")

_TILE_COLUMNS = ("tile_x", "tile_y", "tile_z")

ROW_GROUP_ROWS = 65_536
"""Rows per Parquet row group: the unit that region filtering and row look-ups read."""

SCHEMA = pa.schema(
    [
        pa.field("chip_id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("source_checksum", pa.string(), nullable=False),
        pa.field("crs", pa.string(), nullable=False),
        pa.field("native_footprint", pa.string(), nullable=False),
        pa.field("col_off", pa.int64(), nullable=False),
        pa.field("row_off", pa.int64(), nullable=False),
        pa.field("width", pa.int64(), nullable=False),
        pa.field("height", pa.int64(), nullable=False),
        pa.field("gsd_m", pa.float64(), nullable=False),
        pa.field("width_px", pa.int32(), nullable=False),
        pa.field("height_px", pa.int32(), nullable=False),
        pa.field("acquired", pa.date32()),
        pa.field("tile_x", pa.int32()),
        pa.field("tile_y", pa.int32()),
        pa.field("tile_z", pa.int32()),
        pa.field("minx", pa.float64(), nullable=False),
        pa.field("miny", pa.float64(), nullable=False),
        pa.field("maxx", pa.float64(), nullable=False),
        pa.field("maxy", pa.float64(), nullable=False),
        pa.field("geometry", pa.binary(), nullable=False),
    ]
)
"""Fixed column names and dtypes of every sidecar."""

_TYPE_NAMES = {
    int(shapely.GeometryType.POLYGON): "Polygon",
    int(shapely.GeometryType.MULTIPOLYGON): "MultiPolygon",
}

Extent = tuple[tuple[float, float, float, float] | None, frozenset[str]]
"""WGS84 bbox (``None`` when there are no rows) and geometry type names of some rows."""


def chips_to_table(chips: Sequence[Chip]) -> pa.Table:
    """Turn chips into sidecar rows (in order), validating their WGS84 footprints.

    Raises:
        ValueError: a footprint that is not valid WKT, not a (multi)polygon, or not lon/lat.

    """
    try:
        footprints = shapely.from_wkt([chip.wgs84_footprint_wkt for chip in chips])
    except shapely.errors.GEOSException as exc:
        raise ValueError(f"a chip footprint is not valid WKT ({exc}); fix the tiling that made it") from None
    bounds = shapely.bounds(footprints).reshape(-1, 4)
    types = shapely.get_type_id(footprints)
    empty = shapely.is_empty(footprints)
    for chip, geometry_type, is_empty, (minx, miny, maxx, maxy) in zip(
        chips, types, empty, bounds, strict=True
    ):
        if int(geometry_type) not in _TYPE_NAMES or is_empty:
            raise ValueError(
                f"chip {chip.chip_id}: footprint is not a non-empty (multi)polygon; give its WGS84 polygon"
            )
        if not (-180.0 <= minx <= maxx <= 180.0 and -90.0 <= miny <= maxy <= 90.0):
            raise ValueError(
                f"chip {chip.chip_id}: footprint bounds {(minx, miny, maxx, maxy)} are not lon/lat; "
                "reproject it to EPSG:4326"
            )
    native = np.array([chip.native_bounds for chip in chips], dtype=np.float64).reshape(-1, 4)
    columns: dict[str, Any] = {
        "chip_id": [chip.chip_id for chip in chips],
        "source": [chip.source for chip in chips],
        "source_checksum": [chip.source_checksum for chip in chips],
        "crs": [chip.crs for chip in chips],
        "native_footprint": shapely.to_wkt(
            shapely.box(native[:, 0], native[:, 1], native[:, 2], native[:, 3]), rounding_precision=-1
        ),
        "col_off": [chip.window.col_off for chip in chips],
        "row_off": [chip.window.row_off for chip in chips],
        "width": [chip.window.width for chip in chips],
        "height": [chip.window.height for chip in chips],
        "gsd_m": [chip.gsd_m for chip in chips],
        "width_px": [chip.size_px[0] for chip in chips],
        "height_px": [chip.size_px[1] for chip in chips],
        "acquired": [chip.acquired for chip in chips],
        **{
            name: [None if chip.tile is None else chip.tile[i] for chip in chips]
            for i, name in enumerate(_TILE_COLUMNS)
        },
        **{name: bounds[:, i] for i, name in enumerate(BBOX_COLUMNS)},
        "geometry": shapely.to_wkb(footprints),
    }
    return pa.Table.from_pydict(columns, schema=SCHEMA)


def table_extent(table: pa.Table) -> Extent:
    """Return the WGS84 bbox and geometry types of the rows of ``table``."""
    if table.num_rows == 0:
        return None, frozenset()
    x0, y0, x1, y1 = (table.column(name).to_numpy() for name in BBOX_COLUMNS)
    geometries = shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False))
    types = frozenset(_TYPE_NAMES[int(t)] for t in np.unique(shapely.get_type_id(geometries)))
    return (float(x0.min()), float(y0.min()), float(x1.max()), float(y1.max())), types


def tally_sources(rows: pa.Table | pa.RecordBatch) -> tuple[SourceEntry, ...]:
    """Count chips per (source, checksum, crs) in some sidecar rows, in order of appearance."""
    counts: dict[tuple[str, str, str], int] = {}
    columns = (rows.column(name).to_pylist() for name in ("source", "source_checksum", "crs"))
    for key in zip(*columns, strict=True):
        counts[key] = counts.get(key, 0) + 1
    return tuple(SourceEntry(path, checksum, crs, chips) for (path, checksum, crs), chips in counts.items())


def union_extent(extents: Iterable[Extent]) -> Extent:
    """Return the extent covering all of ``extents``."""
    boxes = [bbox for bbox, _ in extents if bbox is not None]
    types = frozenset().union(*(types for _, types in extents))
    if not boxes:
        return None, types
    array = np.array(boxes)
    return (
        float(array[:, 0].min()),
        float(array[:, 1].min()),
        float(array[:, 2].max()),
        float(array[:, 3].max()),
    ), types


def _geo_metadata(extent: Extent) -> bytes:
    bbox, types = extent
    column: dict[str, Any] = {
        "encoding": "WKB",
        "geometry_types": sorted(types),
        "crs": CRS.from_epsg(4326).to_json_dict(),
    }
    if bbox is not None:
        column["bbox"] = list(bbox)
    return json.dumps(
        {"version": GEOPARQUET_VERSION, "primary_column": "geometry", "columns": {"geometry": column}}
    ).encode()


def write_sidecar(
    path: str | os.PathLike[str], parts: Iterable[pa.Table | pa.RecordBatch], extent: Extent
) -> int:
    """Stream ``parts`` (rows in vector order) into a new GeoParquet file at ``path``.

    ``extent`` must cover every row; it goes into the ``geo`` metadata, which Parquet
    stores in the footer, so it is needed before the first row is written.

    Returns:
        The number of rows written.

    """
    schema = SCHEMA.with_metadata({b"geo": _geo_metadata(extent)})
    rows = 0
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for part in parts:
            batches = part.to_batches() if isinstance(part, pa.Table) else [part]
            for batch in batches:
                pending.append(batch)
                pending_rows += batch.num_rows
                if pending_rows >= ROW_GROUP_ROWS:
                    rows += _flush(writer, schema, pending)
                    pending, pending_rows = [], 0
        rows += _flush(writer, schema, pending)
    return rows


def _flush(writer: pq.ParquetWriter, schema: pa.Schema, batches: list[pa.RecordBatch]) -> int:
    if not batches:
        return 0
    table = pa.Table.from_batches(batches).replace_schema_metadata(schema.metadata)
    writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
    return table.num_rows


class Sidecar:
    """Read access to a sidecar file: memory-mapped, by column and row group, never whole."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self._file = pq.ParquetFile(self.path, memory_map=True)
            schema = self._file.schema_arrow
            geo = json.loads((schema.metadata or {})[b"geo"])
        except (OSError, pa.ArrowException, KeyError, ValueError) as exc:
            raise IndexFormatError(
                f"cannot read chip sidecar {self.path} ({type(exc).__name__}: {exc}); {REBUILD_HINT}"
            ) from None
        if schema.remove_metadata() != SCHEMA:
            self._file.close()
            raise IndexFormatError(
                f"chip sidecar {self.path} does not have the expected columns; {REBUILD_HINT}"
            )
        column = geo.get("columns", {}).get("geometry", {})
        bbox = column.get("bbox")
        self.extent: Extent = (
            tuple(float(v) for v in bbox) if bbox else None,  # type: ignore[assignment]
            frozenset(column.get("geometry_types", ())),
        )
        metadata = self._file.metadata
        self._row_group_starts = np.cumsum(
            [0] + [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
        )

    @property
    def num_rows(self) -> int:
        """Number of rows (= vectors)."""
        return int(self._row_group_starts[-1])

    @property
    def bounds(self) -> tuple[float, float, float, float] | None:
        """WGS84 bbox of all footprints (from the GeoParquet metadata), ``None`` when empty."""
        return self.extent[0]

    def close(self) -> None:
        """Release the file (needed before it can be deleted on Windows)."""
        self._file.close()

    def column(self, name: str) -> pa.ChunkedArray:
        """One whole column."""
        return self._file.read(columns=[name]).column(0)

    def iter_batches(self, columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
        """All rows in order, a row group at a time."""
        for group in range(self._file.metadata.num_row_groups):
            yield from self._file.read_row_group(group, columns=columns).to_batches()

    def read_rows(self, ids: np.ndarray, columns: Sequence[str] | None = None) -> pa.Table:
        """Rows ``ids`` (any order, repeats allowed), reading only the row groups that hold them."""
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size == 0:
            names = list(columns) if columns is not None else SCHEMA.names
            return pa.schema([SCHEMA.field(name) for name in names]).empty_table()
        groups = np.searchsorted(self._row_group_starts, ids, side="right") - 1
        wanted = np.unique(groups)
        table = self._file.read_row_groups(wanted.tolist(), columns=columns)
        sizes = np.diff(self._row_group_starts)[wanted]
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        local = ids - self._row_group_starts[groups] + offsets[np.searchsorted(wanted, groups)]
        return table.take(pa.array(local))

    def bbox_candidates(self, bbox: tuple[float, float, float, float]) -> np.ndarray:
        """Ids of rows whose bbox intersects ``bbox``; row groups are skipped by their statistics."""
        minx, miny, maxx, maxy = bbox
        found = []
        for group in range(self._file.metadata.num_row_groups):
            stats = self._group_bounds(group)
            if stats is not None and not (
                stats[2] >= minx and stats[0] <= maxx and stats[3] >= miny and stats[1] <= maxy
            ):
                continue
            table = self._file.read_row_group(group, columns=list(BBOX_COLUMNS))
            x0, y0, x1, y1 = (table.column(name).to_numpy() for name in BBOX_COLUMNS)
            hit = (x1 >= minx) & (x0 <= maxx) & (y1 >= miny) & (y0 <= maxy)
            found.append(np.flatnonzero(hit) + self._row_group_starts[group])
        return np.concatenate(found).astype(np.int64) if found else np.empty(0, np.int64)

    def _group_bounds(self, group: int) -> tuple[float, float, float, float] | None:
        """Bbox of a row group from its Parquet min/max statistics, if written."""
        row_group = self._file.metadata.row_group(group)
        values = []
        for i, name in enumerate(BBOX_COLUMNS):
            stats = row_group.column(SCHEMA.get_field_index(name)).statistics
            if stats is None or not stats.has_min_max:
                return None
            values.append(stats.min if i < 2 else stats.max)
        return tuple(values)  # type: ignore[return-value]


def table_to_geodataframe(table: pa.Table, ids: np.ndarray) -> gpd.GeoDataFrame:
    """Sidecar rows (with ``geometry``) as a GeoDataFrame in EPSG:4326, indexed by vector id."""
    data: dict[str, Any] = {}
    for name in table.column_names:
        column = table.column(name)
        if name in _TILE_COLUMNS:
            data[name] = pd.array(column.to_pylist(), dtype="Int32")
        elif name == "acquired":
            data[name] = np.array(column.to_pylist(), dtype=object)
        elif name == "geometry":
            data[name] = shapely.from_wkb(column.to_numpy(zero_copy_only=False))
        else:
            data[name] = column.to_numpy(zero_copy_only=False)
    index = pd.Index(np.asarray(ids, dtype=np.int64), name="vector_id")
    return gpd.GeoDataFrame(data, index=index, geometry="geometry", crs="EPSG:4326")
