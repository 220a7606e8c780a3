"""GeoIndex: a FAISS index of chip embeddings plus a GeoParquet sidecar, in one directory.

Layout (``<gen>`` is the save counter)::

    manifest.json             model, dim, factory, tiling, count, sources, current files
    vectors.<gen>.faiss       the FAISS index (inner product on L2-normalised vectors)
    chips.<gen>.parquet       GeoParquet sidecar, row i describes vector i

Every change is saved as a new generation committed by replacing the manifest (see
:mod:`.manifest`), so a crash leaves a readable index. One writer at a time; readers may
run beside it. Opening memory-maps the FAISS file where faiss can (see :mod:`.vectors`).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import faiss
import geopandas as gpd
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import EmptyIndexError, IndexFormatError, ModelMismatchError, NoCoverageError
from ..records import Chip
from .manifest import (
    MANIFEST_NAME,
    REBUILD_HINT,
    Manifest,
    SourceEntry,
    add_sources,
    chips_file_name,
    commit_generation,
    read_manifest,
    remove_stale_files,
    utc_now,
    vectors_file_name,
)
from .region import RegionLike, ids_in_region, to_wgs84_geometry
from .sidecar import (
    Extent,
    Sidecar,
    chips_to_table,
    table_extent,
    table_to_geodataframe,
    tally_sources,
    union_extent,
    write_sidecar,
)
from .vectors import (
    copy_to_gpus,
    merge_same_training,
    new_index,
    read_index,
    readd_vectors,
    search_params,
    train_index,
)

__all__ = ["Device", "GeoIndex"]

_log = logging.getLogger(__name__)

Device = Literal["auto", "cpu"]
"""Where to search: ``"auto"`` uses every GPU when faiss has GPU support, else the CPU."""

_NORM_TOLERANCE = 1e-3
"""Largest accepted deviation of a stored vector's L2 norm from 1."""


class GeoIndex:
    """Chip embeddings searchable by cosine similarity, each with its georeferenced footprint.

    Create one with :meth:`create`, open one with :meth:`open`, combine shards with
    :meth:`merge`. Search returns faiss's ``(scores, ids)``; :meth:`chips` gives the rows.
    """

    def __init__(
        self, path: Path, manifest: Manifest, index: faiss.Index, sidecar: Sidecar, mapped: bool
    ) -> None:
        self._path = path
        self._manifest = manifest
        self._index = index
        self._sidecar = sidecar
        self._mapped = mapped
        self._gpu_index: faiss.Index | None = None
        self._gpu_failed = False

    # -- creating and opening -------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        *,
        model_id: str,
        model_checksum: str,
        embed_dim: int,
        tiling: dict[str, Any],
        factory: str = "Flat",
        overwrite: bool = False,
    ) -> GeoIndex:
        """Create an empty index directory.

        Args:
            path: the directory; created if missing.
            model_id: id of the encoder whose vectors the index will hold.
            model_checksum: checksum of that encoder's weights.
            embed_dim: vector length.
            tiling: the chipping parameters (JSON-serialisable), recorded for shards and merges.
            factory: a ``faiss.index_factory`` string, built with inner-product metric: "Flat"
                (exact), "HNSW32", "IVF1024,PQ32", "IVF256,Flat", ...
            overwrite: replace the index files of a non-empty directory (other files stay).

        Raises:
            FileExistsError: ``path`` is a non-empty directory and ``overwrite`` is False.
            ValueError: a factory string faiss rejects, or a tiling that is not JSON.

        """
        directory = Path(path)
        if directory.exists() and not directory.is_dir():
            raise FileExistsError(f"{directory} is a file; choose a folder path for the index")
        if directory.is_dir() and any(directory.iterdir()) and not overwrite:
            raise FileExistsError(
                f"{directory} exists and is not empty; pass overwrite=True or choose another folder"
            )
        if embed_dim < 1:
            raise ValueError(f"embed_dim must be positive, got {embed_dim}")
        try:
            tiling = json.loads(json.dumps(tiling))
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"tiling must be a JSON-serialisable dict ({exc}); pass plain numbers and strings"
            ) from None
        index = new_index(embed_dim, factory)
        generation = 0
        if overwrite:
            try:
                generation = read_manifest(directory).generation + 1
            except IndexFormatError:
                generation = 0
        now = utc_now()
        manifest = Manifest(
            model_id=model_id,
            model_checksum=model_checksum,
            embed_dim=embed_dim,
            factory=factory,
            tiling=tiling,
            count=0,
            sources=(),
            generation=generation,
            vectors_file=vectors_file_name(generation),
            chips_file=chips_file_name(generation),
            created_at=now,
            updated_at=now,
        )
        directory.mkdir(parents=True, exist_ok=True)
        _save(directory, manifest, index, [], (None, frozenset()))
        remove_stale_files(directory, manifest)
        return cls(directory, manifest, index, Sidecar(directory / manifest.chips_file), mapped=False)

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, mmap: bool = True) -> GeoIndex:
        """Open an index directory.

        Args:
            path: the index directory.
            mmap: memory-map the FAISS index where faiss can (see the module notes), so
                opening is fast and memory is shared between processes; the sidecar is
                always memory-mapped and read by column on demand.

        Raises:
            IndexFormatError: missing or garbled files, or a newer format version.

        """
        directory = Path(path)
        manifest = read_manifest(directory)
        try:
            return cls._load(directory, manifest, mmap)
        except IndexFormatError:
            latest = read_manifest(directory)
            if latest.generation == manifest.generation:
                raise
            return cls._load(directory, latest, mmap)  # a writer committed meanwhile

    @classmethod
    def _load(cls, directory: Path, manifest: Manifest, mmap: bool) -> GeoIndex:
        index, mapped = read_index(directory / manifest.vectors_file, mmap)
        sidecar_path = directory / manifest.chips_file
        if not sidecar_path.is_file():
            raise IndexFormatError(
                f"index {directory} is missing its chip sidecar {manifest.chips_file}; {REBUILD_HINT}"
            )
        sidecar = Sidecar(sidecar_path)
        if not (index.ntotal == sidecar.num_rows == manifest.count) or index.d != manifest.embed_dim:
            sidecar.close()
            raise IndexFormatError(
                f"index {directory} is inconsistent (manifest: {manifest.count} vectors of dim "
                f"{manifest.embed_dim}, faiss file: {index.ntotal} of dim {index.d}, "
                f"sidecar: {sidecar.num_rows} rows); {REBUILD_HINT}"
            )
        return cls(directory, manifest, index, sidecar, mapped)

    @classmethod
    def merge(
        cls,
        shards: Sequence[str | os.PathLike[str] | GeoIndex],
        out: str | os.PathLike[str],
        *,
        factory: str | None = None,
        overwrite: bool = False,
    ) -> GeoIndex:
        """Merge indexes built separately (e.g. on several machines) into a new one at ``out``.

        Chips whose ``chip_id`` is already in an earlier shard (the same raster chipped
        twice) are dropped. IVF shards that share their trained quantizer and codebooks
        (all made from one index prepared with :meth:`train`) and keep their factory are
        merged list by list without decoding. Otherwise vectors are read back and added to a
        fresh ``factory`` index (trained on a sample of them); for PQ/SQ shards the vectors
        read back are their decoded approximations.

        Args:
            shards: index directories or open indexes, merged in this order.
            out: the new index directory.
            factory: factory of the merged index; default: that of the first shard.
            overwrite: as in :meth:`create`.

        Raises:
            ModelMismatchError: shards built with different models or dimensions.
            ValueError: no shards, different tiling, ``out`` being a shard, or shards whose
                vectors cannot be read back.

        """
        opened = [shard if isinstance(shard, GeoIndex) else cls.open(shard) for shard in shards]
        if not opened:
            raise ValueError("merge needs at least one shard")
        out_dir = Path(out)
        first = opened[0]
        for shard in opened:
            if out_dir.resolve() == shard.path.resolve():
                raise ValueError(
                    f"merge output {out_dir} is one of the shards; write the merge to a new folder"
                )
            _check_compatible(first, shard)
        target_factory = factory or first._manifest.factory
        keeps = _unique_chip_masks(opened)
        total = int(sum(int(keep.sum()) for keep in keeps))
        # Read each shard afresh (mapped) so that nothing done here touches the callers' objects.
        readers = [read_index(shard._path / shard._manifest.vectors_file, mmap=True)[0] for shard in opened]
        if total and all(shard._manifest.factory == target_factory for shard in opened):
            index = merge_same_training(readers, keeps)
        else:
            index = None
        if index is None:
            index = readd_vectors(readers, keeps, target_factory, first._manifest.embed_dim, total)
        merged = cls.create(
            out_dir,
            model_id=first._manifest.model_id,
            model_checksum=first._manifest.model_checksum,
            embed_dim=first._manifest.embed_dim,
            tiling=first._manifest.tiling,
            factory=target_factory,
            overwrite=overwrite,
        )
        sources = _merged_sources(opened, keeps)
        extent = union_extent([shard._sidecar.extent for shard in opened])
        parts = _kept_rows(opened, keeps)
        merged._commit(
            merged._manifest.next_generation(count=index.ntotal, sources=sources), index, parts, extent
        )
        return merged

    # -- properties -----------------------------------------------------------------------

    @property
    def path(self) -> Path:
        """The index directory."""
        return self._path

    @property
    def manifest(self) -> dict[str, Any]:
        """A copy of ``manifest.json`` as a dict (``model.id``, ``tiling``, ``sources``, ...)."""
        return self._manifest.to_dict()

    @property
    def embed_dim(self) -> int:
        """Vector length."""
        return self._manifest.embed_dim

    def __len__(self) -> int:
        return self._manifest.count

    def __repr__(self) -> str:
        return (
            f"GeoIndex({str(self._path)!r}, count={self._manifest.count}, "
            f"factory={self._manifest.factory!r}, model={self._manifest.model_id!r})"
        )

    def info(self) -> dict[str, Any]:
        """Summary for people and tools: count, dim, factory, model, sources, WGS84 bounds, size."""
        manifest = self._manifest
        files = (MANIFEST_NAME, manifest.vectors_file, manifest.chips_file)
        bounds = self._sidecar.bounds
        return {
            "path": str(self._path),
            "count": manifest.count,
            "embed_dim": manifest.embed_dim,
            "metric": manifest.metric,
            "factory": manifest.factory,
            "trained": bool(self._index.is_trained),
            "model": {"id": manifest.model_id, "checksum": manifest.model_checksum},
            "tiling": manifest.tiling,
            "sources": [asdict(source) for source in manifest.sources],
            "bounds_wgs84": list(bounds) if bounds is not None else None,
            "size_bytes": sum((self._path / name).stat().st_size for name in files),
            "memory_mapped": self._mapped,
            "format_version": manifest.format_version,
            "gleam_geo_version": manifest.gleam_geo_version,
            "created_at": manifest.created_at,
            "updated_at": manifest.updated_at,
        }

    def close(self) -> None:
        """Release the open files (needed before moving or deleting them on Windows)."""
        self._sidecar.close()
        self._gpu_index = None

    # -- adding ---------------------------------------------------------------------------

    def check_model(self, model_id: str, model_checksum: str) -> None:
        """Refuse an encoder other than the one that built the index.

        Raises:
            ModelMismatchError: ``model_id`` or ``model_checksum`` differ from the manifest's.

        """
        manifest = self._manifest
        if (model_id, model_checksum) != (manifest.model_id, manifest.model_checksum):
            raise ModelMismatchError(
                f"index {self._path} was built with model {manifest.model_id!r} (checksum "
                f"{manifest.model_checksum[:12]}), not {model_id!r} (checksum {model_checksum[:12]}); "
                "open it with that model or build a new index"
            )

    def add(
        self,
        vectors: np.ndarray,
        chips: Sequence[Chip],
        *,
        model_id: str,
        model_checksum: str,
        skip_existing: bool = False,
    ) -> int:
        """Append vectors and their chips (vector ``i`` belongs to ``chips[i]``), then save.

        An untrained index (IVF, PQ, ...) is trained on the first batch, so that batch must
        be large enough for it.

        Args:
            vectors: ``(N, D)`` float32 L2-normalised embeddings.
            chips: the ``N`` chips they were computed from.
            model_id: id of the encoder that computed them.
            model_checksum: checksum of its weights.
            skip_existing: drop chips whose ``chip_id`` is already indexed instead of refusing.

        Returns:
            The number of vectors added.

        Raises:
            ModelMismatchError: another model than the index's.
            ValueError: wrong shapes, unnormalised vectors, duplicate chips, or too few
                vectors to train the index.

        """
        self.check_model(model_id, model_checksum)
        vectors = self._as_vectors(vectors, "vectors")
        if len(chips) != len(vectors):
            raise ValueError(f"got {len(vectors)} vectors but {len(chips)} chips; pass one chip per vector")
        norms = np.linalg.norm(vectors, axis=1)
        if norms.size and float(np.abs(norms - 1.0).max()) > _NORM_TOLERANCE:
            raise ValueError(
                f"vectors must be L2-normalised (norms range {norms.min():.4g}..{norms.max():.4g}); "
                "normalise them (faiss.normalize_L2) before adding"
            )
        chips, vectors = self._new_chips(list(chips), vectors, skip_existing)
        if not chips:
            return 0
        table = chips_to_table(chips)
        index = self._writable_index()
        try:
            if not index.is_trained:
                train_index(index, vectors, self._manifest.factory)
            index.add(vectors)
            sources = add_sources(self._manifest.sources, tally_sources(table))
            manifest = self._manifest.next_generation(count=int(index.ntotal), sources=sources)
            extent = union_extent([self._sidecar.extent, table_extent(table)])
            self._commit(manifest, index, itertools.chain(self._sidecar.iter_batches(), [table]), extent)
        except BaseException:
            self._index, self._mapped = read_index(self._path / self._manifest.vectors_file, mmap=False)
            raise
        return len(chips)

    def train(self, vectors: np.ndarray, *, model_id: str, model_checksum: str) -> None:
        """Train an empty IVF/PQ index without adding vectors, and save it.

        Copies of a trained empty index, filled on several machines, merge without
        decoding (see :meth:`merge`).

        Raises:
            ModelMismatchError: another model than the index's.
            ValueError: the index already holds vectors, or too few vectors to train.

        """
        self.check_model(model_id, model_checksum)
        if self._manifest.count:
            raise ValueError(f"index {self._path} already holds vectors; train only an empty index")
        vectors = self._as_vectors(vectors, "vectors")
        index = self._writable_index()
        try:
            train_index(index, vectors, self._manifest.factory)
            self._commit(self._manifest.next_generation(0, ()), index, [], (None, frozenset()))
        except BaseException:
            self._index, self._mapped = read_index(self._path / self._manifest.vectors_file, mmap=False)
            raise

    def _new_chips(
        self, chips: list[Chip], vectors: np.ndarray, skip_existing: bool
    ) -> tuple[list[Chip], np.ndarray]:
        """Drop (or refuse) chips that are already indexed or repeated in the batch."""
        ids = [chip.chip_id for chip in chips]
        if len(set(ids)) != len(ids):
            raise ValueError("the batch repeats chip ids; add each chip once")
        if not self._manifest.count or not ids:
            return chips, vectors
        stored = self._sidecar.column("chip_id")
        known = set(pc.filter(stored, pc.is_in(stored, value_set=pa.array(ids))).to_pylist())
        if not known:
            return chips, vectors
        if not skip_existing:
            example = next(chip for chip in chips if chip.chip_id in known)
            raise ValueError(
                f"{len(known)} of the chips are already in index {self._path} (e.g. {example.chip_id} from "
                f"{example.source}); skip rasters already indexed or pass skip_existing=True"
            )
        keep = [i for i, chip in enumerate(chips) if chip.chip_id not in known]
        return [chips[i] for i in keep], vectors[keep]

    def _writable_index(self) -> faiss.Index:
        """Return the faiss index in memory; mapped ones are read-only in faiss (changing one aborts)."""
        if self._mapped:
            self._index, self._mapped = read_index(self._path / self._manifest.vectors_file, mmap=False)
        return self._index

    def _commit(self, manifest: Manifest, index: faiss.Index, parts: Iterable[Any], extent: Extent) -> None:
        """Save a new generation, switch to it, then delete older generations."""
        _save(self._path, manifest, index, parts, extent)
        old = self._sidecar
        self._sidecar = Sidecar(self._path / manifest.chips_file)
        old.close()
        self._manifest, self._index, self._gpu_index = manifest, index, None
        remove_stale_files(self._path, manifest)

    # -- searching ------------------------------------------------------------------------

    def search(
        self,
        queries: np.ndarray,
        k: int,
        *,
        region: RegionLike | None = None,
        region_crs: Any = None,
        nprobe: int | None = None,
        ef_search: int | None = None,
        device: Device = "auto",
    ) -> tuple[np.ndarray, np.ndarray]:
        """Find the ``k`` chips most similar to each query.

        Args:
            queries: ``(Q, D)`` float32 query embeddings (L2-normalised for cosine scores).
            k: results per query.
            region: search only chips whose WGS84 footprint intersects it: a shapely
                geometry (in ``region_crs``, else lon/lat), a lon/lat bbox
                ``(minx, miny, maxx, maxy)``, a GeoDataFrame or a GeoSeries.
            region_crs: CRS of a shapely or bbox ``region`` (anything pyproj understands).
            nprobe: IVF lists to visit (IVF indexes only); default: the index's own.
            ef_search: HNSW search breadth (HNSW indexes only); default: the index's own.
            device: "auto" searches on the GPU(s) when faiss has GPU support, else the CPU;
                "cpu" forces the CPU. Region searches run on the CPU (ID selectors).

        With HNSW and IVF indexes a small region can leave fewer than ``k`` hits among the
        visited candidates (``-1`` padding); raise ``ef_search`` or ``nprobe`` then.

        Returns:
            ``(scores, ids)``, both ``(Q, k)``, best first, as faiss returns them: cosine
            scores (float32) and vector ids (int64), ids ``-1`` where fewer than ``k`` were found.

        Raises:
            EmptyIndexError: the index holds no vectors.
            NoCoverageError: ``region`` covers no chip.
            ValueError: queries of the wrong shape or dim, ``k < 1``, misplaced parameters.

        """
        if self._manifest.count == 0:
            raise EmptyIndexError(
                f"index {self._path} is empty; add imagery with gleam-geo index add (or GeoIndex.add) first"
            )
        queries = self._as_vectors(queries, "queries")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if device not in ("auto", "cpu"):
            raise ValueError(f"device must be 'auto' or 'cpu', got {device!r}")
        selector = None
        if region is not None:
            ids = self.region_ids(region, region_crs)
            if ids.size < self._manifest.count:
                selector = faiss.IDSelectorBatch(ids)
        params = search_params(self._index, self._manifest.factory, selector, nprobe, ef_search)
        gpu = self._gpu() if device == "auto" and selector is None else None
        if gpu is not None:
            try:
                return gpu.search(queries, int(k), params=params)
            except RuntimeError as exc:
                _log.info("GPU search failed (%s); searching on the CPU", str(exc).splitlines()[0])
                self._gpu_index, self._gpu_failed = None, True
        return self._index.search(queries, int(k), params=params)

    def region_ids(self, region: RegionLike, crs: Any = None) -> np.ndarray:
        """Sorted ids of the chips whose WGS84 footprint intersects ``region``.

        Raises:
            NoCoverageError: the region covers no chip.

        """
        geometry = to_wgs84_geometry(region, crs)
        ids = ids_in_region(self._sidecar, geometry)
        if ids.size == 0:
            spans = self._sidecar.bounds
            span = "nothing" if spans is None else "lon/lat bbox " + _fmt_bbox(spans)
            raise NoCoverageError(
                f"the region with lon/lat bounds {_fmt_bbox(geometry.bounds)} covers none of the "
                f"{self._manifest.count} chips in index {self._path} (which spans {span}); "
                "pick a region inside it or index imagery that covers it"
            )
        return ids

    def chips(self, ids: Sequence[int] | np.ndarray) -> gpd.GeoDataFrame:
        """Sidecar rows of vector ``ids``, in the given order, as a GeoDataFrame (EPSG:4326).

        Only the row groups holding ``ids`` are read. The frame is indexed by vector id
        (``vector_id``); ``geometry`` is the WGS84 footprint, ``native_footprint`` the WKT
        footprint in ``crs``.

        Raises:
            IndexError: an id out of range (drop faiss's ``-1`` padding first).

        """
        array = np.asarray(ids, dtype=np.int64).reshape(-1)
        bad = array[(array < 0) | (array >= self._manifest.count)]
        if bad.size:
            raise IndexError(
                f"vector ids {bad[:5].tolist()} are out of range 0..{self._manifest.count - 1} for index "
                f"{self._path}; drop faiss's -1 padding (ids[ids >= 0]) first"
            )
        return table_to_geodataframe(self._sidecar.read_rows(array), array)

    def ids_of(self, chip_ids: Sequence[str]) -> np.ndarray:
        """Vector ids of ``chip_ids``, in the given order; ``-1`` for a chip id not in the index."""
        wanted = pa.array([str(chip_id) for chip_id in chip_ids], pa.string())
        found = pc.index_in(self._sidecar.column("chip_id"), value_set=wanted).to_numpy(zero_copy_only=False)
        rows = np.flatnonzero(~np.isnan(found.astype(np.float64)))
        out = np.full(len(wanted), -1, dtype=np.int64)
        out[found[rows].astype(np.int64)] = rows
        return out

    def _as_vectors(self, array: np.ndarray, what: str) -> np.ndarray:
        """Return ``array`` as C-contiguous float32 ``(N, D)``, checked against the index dim."""
        vectors = np.ascontiguousarray(array, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self._manifest.embed_dim:
            raise ValueError(
                f"{what} must be an (N, {self._manifest.embed_dim}) array for index {self._path} "
                f"(model {self._manifest.model_id!r}), got shape {vectors.shape}; embed them with that model"
                + (" and reshape single vectors with .reshape(1, -1)" if vectors.ndim == 1 else "")
            )
        if not np.isfinite(vectors).all():
            raise ValueError(f"{what} contain NaN or infinite values; check the encoder output")
        return vectors

    def _gpu(self) -> faiss.Index | None:
        """Return the index copied to every GPU (made once); ``None`` on CPU-only faiss or failure."""
        if self._gpu_index is None and not self._gpu_failed:
            self._gpu_index = copy_to_gpus(self._index)
            self._gpu_failed = self._gpu_index is None
        return self._gpu_index


# -- merging -----------------------------------------------------------------------------


def _check_compatible(first: GeoIndex, shard: GeoIndex) -> None:
    a, b = first._manifest, shard._manifest
    if (a.model_id, a.model_checksum, a.embed_dim, a.metric) != (
        b.model_id,
        b.model_checksum,
        b.embed_dim,
        b.metric,
    ):
        raise ModelMismatchError(
            f"shard {shard.path} was built with model {b.model_id!r} (checksum {b.model_checksum[:12]}, dim "
            f"{b.embed_dim}) but {first.path} with {a.model_id!r} (checksum {a.model_checksum[:12]}, dim "
            f"{a.embed_dim}); merge only shards built with the same model"
        )
    if json.dumps(a.tiling, sort_keys=True) != json.dumps(b.tiling, sort_keys=True):
        raise ValueError(
            f"shard {shard.path} was chipped with tiling {b.tiling} but {first.path} with {a.tiling}; "
            "rebuild the shards with the same tiling"
        )


def _unique_chip_masks(shards: list[GeoIndex]) -> list[np.ndarray]:
    """Per shard, which rows to keep: those whose chip_id no earlier shard holds."""
    seen = pa.array([], pa.string())
    masks = []
    for shard in shards:
        ids = shard._sidecar.column("chip_id").combine_chunks()
        keep = ~pc.is_in(ids, value_set=seen).to_numpy(zero_copy_only=False).astype(bool)
        masks.append(keep)
        seen = pa.concat_arrays([seen, ids.filter(pa.array(keep))])
    return masks


def _kept_rows(shards: list[GeoIndex], keeps: list[np.ndarray]) -> Iterator[pa.RecordBatch]:
    for shard, keep in zip(shards, keeps, strict=True):
        start = 0
        for batch in shard._sidecar.iter_batches():
            mask = keep[start : start + batch.num_rows]
            start += batch.num_rows
            yield batch if mask.all() else batch.filter(pa.array(mask))


def _merged_sources(shards: list[GeoIndex], keeps: list[np.ndarray]) -> tuple[SourceEntry, ...]:
    tallies = []
    for shard, keep in zip(shards, keeps, strict=True):
        if not keep.any():
            continue
        if keep.all():
            tallies.append(shard._manifest.sources)
            continue
        start = 0
        for batch in shard._sidecar.iter_batches(["source", "source_checksum", "crs"]):
            mask = keep[start : start + batch.num_rows]
            start += batch.num_rows
            tallies.append(tally_sources(batch.filter(pa.array(mask))))
    return add_sources(*tallies)


def _save(
    directory: Path, manifest: Manifest, index: faiss.Index, parts: Iterable[Any], extent: Extent
) -> None:
    """Write and commit a generation holding ``index`` and the sidecar rows ``parts``."""
    commit_generation(
        directory,
        manifest,
        write_vectors=lambda path: faiss.write_index(index, str(path)),
        write_chips=lambda path: write_sidecar(path, parts, extent),
    )


def _fmt_bbox(bbox: Sequence[float]) -> str:
    return "(" + ", ".join(f"{value:.6g}" for value in bbox) + ")"
