"""The index manifest, ``manifest.json``, and the save protocol built on it.

The manifest names the model that made the vectors, the faiss factory, the tiling, the
per-source chip counts and the file names of the current generation. A save writes the
files of a new generation, then replaces the manifest atomically (the commit point), then
removes older generations; files the manifest does not name are not part of the index,
so a crash at any point leaves a readable index, old or new.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import IndexFormatError
from ..io.atomic import atomic_path, atomic_write_text

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "METRIC",
    "REBUILD_HINT",
    "Manifest",
    "SourceEntry",
    "add_sources",
    "chips_file_name",
    "commit_generation",
    "read_manifest",
    "remove_stale_files",
    "utc_now",
    "vectors_file_name",
    "write_manifest",
]

_log = logging.getLogger(__name__)

FORMAT_VERSION = 1
"""Version of the on-disk layout; an index with a newer one is refused."""

MANIFEST_NAME = "manifest.json"

METRIC = "inner_product"
"""The only metric: vectors are L2-normalised, so inner product is cosine similarity."""

REBUILD_HINT = "rebuild the index with gleam-geo index build"
"""The fix named by errors about unreadable indexes."""

_GENERATION_FILE = re.compile(
    r"^(vectors\.\d+\.faiss|chips\.\d+\.parquet)$"
    r"|^\.(vectors\.\d+\.faiss|chips\.\d+\.parquet|manifest\.json)\..+$"
)
"""Generation files, and the temporary files beside them (``.<name>.<random><suffix>``)."""


def utc_now() -> str:
    """Return the current UTC time, ISO 8601 to the second."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


@dataclass(frozen=True)
class SourceEntry:
    """One raster that contributed chips to the index."""

    path: str
    checksum: str
    crs: str
    chips: int


@dataclass(frozen=True)
class Manifest:
    """Contents of ``manifest.json``.

    Attributes:
        model_id: id of the encoder that made the vectors.
        model_checksum: checksum of that encoder's weights.
        embed_dim: vector length.
        factory: faiss ``index_factory`` string of the index.
        tiling: the chipping parameters, as given by the caller (opaque here).
        count: number of vectors (and sidecar rows).
        sources: rasters in the index with their chip counts.
        generation: save counter; file names carry it.
        vectors_file: file name of the faiss index of this generation.
        chips_file: file name of the GeoParquet sidecar of this generation.
        created_at: when the index was created (ISO 8601, UTC).
        updated_at: when this generation was saved (ISO 8601, UTC).
        metric: always :data:`METRIC`.
        format_version: layout version, :data:`FORMAT_VERSION` when written by this code.
        gleam_geo_version: version of gleam_geo that wrote this generation.

    """

    model_id: str
    model_checksum: str
    embed_dim: int
    factory: str
    tiling: dict[str, Any]
    count: int
    sources: tuple[SourceEntry, ...]
    generation: int
    vectors_file: str
    chips_file: str
    created_at: str
    updated_at: str
    metric: str = METRIC
    format_version: int = FORMAT_VERSION
    gleam_geo_version: str = field(default=__version__)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON layout of ``manifest.json``."""
        return {
            "format_version": self.format_version,
            "gleam_geo_version": self.gleam_geo_version,
            "model": {"id": self.model_id, "checksum": self.model_checksum},
            "embed_dim": self.embed_dim,
            "metric": self.metric,
            "factory": self.factory,
            "tiling": json.loads(json.dumps(self.tiling)),
            "count": self.count,
            "sources": [asdict(source) for source in self.sources],
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "generation": self.generation,
            "files": {"vectors": self.vectors_file, "chips": self.chips_file},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        """Parse the JSON layout; raises ``KeyError``/``TypeError``/``ValueError`` on bad input."""
        files = data["files"]
        manifest = cls(
            model_id=str(data["model"]["id"]),
            model_checksum=str(data["model"]["checksum"]),
            embed_dim=int(data["embed_dim"]),
            factory=str(data["factory"]),
            tiling=dict(data["tiling"]),
            count=int(data["count"]),
            sources=tuple(
                SourceEntry(str(s["path"]), str(s["checksum"]), str(s["crs"]), int(s["chips"]))
                for s in data["sources"]
            ),
            generation=int(data["generation"]),
            vectors_file=_plain_name(files["vectors"]),
            chips_file=_plain_name(files["chips"]),
            created_at=str(data["created_at"]),
            updated_at=str(data["updated_at"]),
            metric=str(data["metric"]),
            format_version=int(data["format_version"]),
            gleam_geo_version=str(data["gleam_geo_version"]),
        )
        if manifest.metric != METRIC:
            raise ValueError(f"metric {manifest.metric!r} is not {METRIC!r}")
        if manifest.embed_dim < 1 or manifest.count < 0 or manifest.generation < 0:
            raise ValueError("embed_dim, count or generation out of range")
        return manifest

    def next_generation(self, count: int, sources: tuple[SourceEntry, ...]) -> Manifest:
        """Return the manifest of the next save, holding ``count`` vectors from ``sources``."""
        generation = self.generation + 1
        return replace(
            self,
            count=count,
            sources=sources,
            generation=generation,
            vectors_file=vectors_file_name(generation),
            chips_file=chips_file_name(generation),
            updated_at=utc_now(),
            format_version=FORMAT_VERSION,
            gleam_geo_version=__version__,
        )


def vectors_file_name(generation: int) -> str:
    """File name of the faiss index of ``generation``."""
    return f"vectors.{generation:06d}.faiss"


def chips_file_name(generation: int) -> str:
    """File name of the GeoParquet sidecar of ``generation``."""
    return f"chips.{generation:06d}.parquet"


def _plain_name(name: object) -> str:
    """Check that a file name stays inside the index directory (no path parts)."""
    text = str(name)
    if not text or text in (".", "..") or os.sep in text or "/" in text or (os.altsep and os.altsep in text):
        raise ValueError(f"file name {text!r} is not a plain file name")
    return text


def read_manifest(directory: str | os.PathLike[str]) -> Manifest:
    """Read and validate ``manifest.json`` of the index in ``directory``.

    Raises:
        IndexFormatError: missing, unreadable or garbled manifest, or a newer format version.

    """
    path = Path(directory) / MANIFEST_NAME
    if not Path(directory).is_dir():
        raise IndexFormatError(
            f"index directory {directory} does not exist; {REBUILD_HINT} or check the path"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IndexFormatError(
            f"{directory} is not a gleam_geo index (no {MANIFEST_NAME}); {REBUILD_HINT} or check the path"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IndexFormatError(f"cannot read {path} ({exc}); {REBUILD_HINT}") from None
    version = data.get("format_version") if isinstance(data, dict) else None
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise IndexFormatError(
            f"{path} has format version {version} but this gleam_geo {__version__} reads up to "
            f"{FORMAT_VERSION}; upgrade gleam_geo or {REBUILD_HINT}"
        )
    try:
        return Manifest.from_dict(data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise IndexFormatError(f"{path} is garbled ({type(exc).__name__}: {exc}); {REBUILD_HINT}") from None


def write_manifest(directory: str | os.PathLike[str], manifest: Manifest) -> None:
    """Replace ``manifest.json`` atomically: this is the commit point of a save."""
    text = json.dumps(manifest.to_dict(), indent=2, sort_keys=False) + "\n"
    atomic_write_text(Path(directory) / MANIFEST_NAME, text)


def add_sources(*groups: Iterable[SourceEntry]) -> tuple[SourceEntry, ...]:
    """Sum chip counts per (path, checksum, crs), in order of first appearance."""
    counts: dict[tuple[str, str, str], int] = {}
    for source in itertools.chain(*groups):
        key = (source.path, source.checksum, source.crs)
        counts[key] = counts.get(key, 0) + source.chips
    return tuple(SourceEntry(path, checksum, crs, chips) for (path, checksum, crs), chips in counts.items())


def commit_generation(
    directory: Path,
    manifest: Manifest,
    write_vectors: Callable[[Path], None],
    write_chips: Callable[[Path], int],
) -> None:
    """Write the files ``manifest`` names (each via a temporary file), then commit the manifest.

    Args:
        directory: the index directory.
        manifest: the manifest of the new generation.
        write_vectors: writes the vector file to the path it is given.
        write_chips: writes the sidecar to the path it is given; returns its row count.

    On failure the new files are removed and the manifest still names the old generation.
    """
    written = [directory / manifest.vectors_file, directory / manifest.chips_file]
    try:
        with atomic_path(written[0]) as tmp:
            write_vectors(tmp)
        with atomic_path(written[1]) as tmp:
            rows = write_chips(tmp)
        if rows != manifest.count:
            raise RuntimeError(
                f"internal error: wrote {rows} sidecar rows for {manifest.count} vectors; not committed"
            )
        write_manifest(directory, manifest)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise


def remove_stale_files(directory: Path, manifest: Manifest) -> None:
    """Delete generation and temporary files that ``manifest`` does not name (best effort)."""
    current = {manifest.vectors_file, manifest.chips_file}
    for entry in directory.iterdir():
        if entry.name in current or not _GENERATION_FILE.match(entry.name):
            continue
        try:
            entry.unlink()
        except OSError as exc:  # e.g. still open by a reader on Windows; the next save retries
            _log.debug("cannot remove stale index file %s: %s", entry, exc)
