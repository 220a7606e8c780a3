"""The FAISS side of an index: make, read (memory-mapped), train, search, merge.

Memory mapping, measured with faiss 1.15 by loading 200k x 64-d indexes and watching RSS
and ``/proc/self/maps``: ``IO_FLAG_MMAP_IFC`` maps the codes of Flat, PQ, SQ and every IVF
index (IVF-Flat, IVF-PQ, IVF-SQ, IVF-RaBitQ, OPQ/PCA-wrapped), and the vector storage of
HNSW-Flat and HNSW-SQ (the HNSW graph itself is read into memory). FastScan (``PQ16x4fs``)
and HNSW-PQ are read into memory. ``IO_FLAG_MMAP`` alone maps only IVF lists, and both
flags together fail on IVF. A mapped index is read-only: faiss aborts the process if one
is changed, so callers must re-read it (``mmap=False``) before adding to it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from faiss.contrib.inspect_tools import get_invlist

from ..errors import IndexFormatError
from .manifest import REBUILD_HINT

__all__ = [
    "DEFAULT_EF_SEARCH",
    "copy_to_gpus",
    "default_nprobe",
    "faiss_message",
    "merge_same_training",
    "new_index",
    "read_index",
    "readd_vectors",
    "search_params",
    "train_index",
]

_log = logging.getLogger(__name__)

_MMAP_FLAGS = getattr(faiss, "IO_FLAG_MMAP_IFC", faiss.IO_FLAG_MMAP) | faiss.IO_FLAG_READ_ONLY
"""faiss >= 1.11 maps flat codes (Flat, PQ, SQ, IVF lists, HNSW storage); older faiss only IVF lists."""

DEFAULT_EF_SEARCH = 64
"""HNSW ``efSearch`` set on new indexes (faiss's own default, 16, loses recall)."""

_BATCH_VECTORS = 65_536
"""Vectors read back per batch when a merge re-adds them."""

_TRAIN_VECTORS_PER_LIST = 64
_TRAIN_VECTORS_MIN = 65_536
"""A merge that retrains samples ``max(_TRAIN_VECTORS_MIN, _TRAIN_VECTORS_PER_LIST * nlist)`` vectors."""


def default_nprobe(nlist: int) -> int:
    """``nprobe`` set on new IVF indexes: about sqrt(nlist), at least 8 (faiss's default is 1)."""
    return int(min(nlist, max(8, round(nlist**0.5))))


def new_index(embed_dim: int, factory: str) -> faiss.Index:
    """Make an empty inner-product index from a factory string, with sensible search defaults."""
    try:
        index = faiss.index_factory(embed_dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise ValueError(
            f"faiss rejects factory {factory!r} for dim {embed_dim} ({faiss_message(exc)}); "
            "use e.g. 'Flat', 'HNSW32', 'IVF1024,PQ32' (PQ sub-vectors must divide the dim)"
        ) from None
    if isinstance(index, faiss.IndexIDMap) or index.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise ValueError(
            f"factory {factory!r} makes a {type(index).__name__} with metric {index.metric_type}; "
            "use an inner-product index without IDMap, e.g. 'Flat', 'HNSW32' or 'IVF1024,PQ32'"
        )
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf.nprobe = default_nprobe(ivf.nlist)
    encoder = _unwrap(index)
    if hasattr(encoder, "do_polysemous_training"):
        # The factory turns it on for PQ; it only serves Hamming-filtered search, which is
        # unused here, and costs ~30 s of simulated annealing per training.
        encoder.do_polysemous_training = False
    hnsw = _hnsw(index)
    if hnsw is not None:
        hnsw.hnsw.efSearch = DEFAULT_EF_SEARCH
    return index


def read_index(path: Path, mmap: bool) -> tuple[faiss.Index, bool]:
    """Read a faiss index, memory-mapped when asked and possible; returns it and whether mapped."""
    if not path.is_file():
        raise IndexFormatError(f"index {path.parent} is missing its vector file {path.name}; {REBUILD_HINT}")
    if mmap:
        try:
            return faiss.read_index(str(path), _MMAP_FLAGS), True
        except RuntimeError as exc:
            _log.debug("cannot memory-map %s (%s); reading it into memory", path, faiss_message(exc))
    try:
        return faiss.read_index(str(path)), False
    except RuntimeError as exc:
        raise IndexFormatError(
            f"cannot read faiss index {path} ({faiss_message(exc)}); {REBUILD_HINT}"
        ) from None


def train_index(index: faiss.Index, vectors: np.ndarray, factory: str) -> None:
    """Train ``index`` on ``vectors``; too few of them is a ``ValueError`` that names the fix."""
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None and len(vectors) < ivf.nlist:
        raise ValueError(
            f"factory {factory!r} needs at least {ivf.nlist} vectors to train its {ivf.nlist} lists, got "
            f"{len(vectors)}; add more chips in the first batch, use fewer lists or 'Flat'"
        )
    try:
        index.train(vectors)
    except RuntimeError as exc:
        raise ValueError(
            f"cannot train factory {factory!r} on {len(vectors)} vectors ({faiss_message(exc)}); "
            "add more chips in the first batch (8-bit PQ needs at least 256), use fewer lists or 'Flat'"
        ) from None


def _unwrap(index: faiss.Index) -> faiss.Index:
    """Return the index inside a pre-transform (OPQ, PCA) wrapper, or ``index`` itself."""
    return faiss.downcast_index(index.index) if isinstance(index, faiss.IndexPreTransform) else index


def _hnsw(index: faiss.Index) -> faiss.IndexHNSW | None:
    inner = _unwrap(index)
    return inner if isinstance(inner, faiss.IndexHNSW) else None


def search_params(
    index: faiss.Index,
    factory: str,
    selector: faiss.IDSelector | None,
    nprobe: int | None,
    ef_search: int | None,
) -> faiss.SearchParameters | None:
    """Search parameters for ``index`` (faiss keeps Python references to the objects passed)."""
    ivf = faiss.try_extract_index_ivf(index)
    hnsw = _hnsw(index)
    for name, value, applies in (
        ("nprobe", nprobe, ivf is not None),
        ("ef_search", ef_search, hnsw is not None),
    ):
        if value is None:
            continue
        if not applies:
            raise ValueError(f"{name} does not apply to factory {factory!r}; leave it unset")
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if selector is None and nprobe is None and ef_search is None:
        return None
    extra: dict[str, Any] = {} if selector is None else {"sel": selector}
    # Parameter objects replace the index's own settings, so carry those over when unset.
    if ivf is not None:
        params = faiss.SearchParametersIVF(nprobe=int(nprobe or ivf.nprobe), **extra)
    elif hnsw is not None:
        params = faiss.SearchParametersHNSW(efSearch=int(ef_search or hnsw.hnsw.efSearch), **extra)
    else:
        params = faiss.SearchParameters(**extra)
    if isinstance(index, faiss.IndexPreTransform):
        return faiss.SearchParametersPreTransform(index_params=params)
    return params


def _trained_state(index: faiss.Index) -> bytes:
    """Serialise the index with its IVF lists emptied: equal for copies of one trained index."""
    ivf = faiss.extract_index_ivf(index)
    lists, owned, ntotal = ivf.invlists, ivf.own_invlists, index.ntotal
    empty = faiss.ArrayInvertedLists(ivf.nlist, ivf.code_size)
    ivf.own_invlists = False
    ivf.replace_invlists(empty, False)
    ivf.ntotal = index.ntotal = 0
    try:
        return faiss.serialize_index(index).tobytes()
    finally:
        ivf.replace_invlists(lists, owned)
        ivf.ntotal = index.ntotal = ntotal


def merge_same_training(readers: list[faiss.Index], keeps: list[np.ndarray]) -> faiss.Index | None:
    """Merge IVF shards that share their training by copying codes list by list; else ``None``.

    ``merge_from`` would empty the (memory-mapped, read-only) shards and keep duplicates,
    so the kept entries are copied with ``add_entries`` and renumbered instead.
    """
    if any(faiss.try_extract_index_ivf(reader) is None for reader in readers):
        return None
    states = [_trained_state(reader) for reader in readers]
    if any(state != states[0] for state in states[1:]):
        return None
    merged = faiss.deserialize_index(np.frombuffer(states[0], dtype=np.uint8))
    lists = faiss.extract_index_ivf(merged).invlists
    offset = 0
    for reader, keep in zip(readers, keeps, strict=True):
        new_ids = np.cumsum(keep, dtype=np.int64) - 1 + offset
        source = faiss.extract_index_ivf(reader).invlists
        for list_no in range(source.nlist):
            ids, codes = get_invlist(source, list_no)
            kept = keep[ids]
            if not kept.any():
                continue
            ids_out = np.ascontiguousarray(new_ids[ids[kept]])
            codes_out = np.ascontiguousarray(codes[kept])
            lists.add_entries(list_no, len(ids_out), faiss.swig_ptr(ids_out), faiss.swig_ptr(codes_out))
        offset += int(keep.sum())
    faiss.extract_index_ivf(merged).ntotal = merged.ntotal = offset
    return merged


def readd_vectors(
    readers: list[faiss.Index], keeps: list[np.ndarray], factory: str, embed_dim: int, total: int
) -> faiss.Index:
    """Read the kept vectors back from each shard and add them to a new ``factory`` index."""
    index = new_index(embed_dim, factory)
    if total == 0:
        return index
    if not index.is_trained:
        ivf = faiss.try_extract_index_ivf(index)
        wanted = min(total, max(_TRAIN_VECTORS_MIN, _TRAIN_VECTORS_PER_LIST * (ivf.nlist if ivf else 0)))
        picks = np.sort(np.random.default_rng(0).choice(total, size=wanted, replace=False))
        train_index(index, np.concatenate(list(_kept_vectors(readers, keeps, picks))), factory)
    for batch in _kept_vectors(readers, keeps, None):
        index.add(batch)
    return index


def _kept_vectors(
    readers: list[faiss.Index], keeps: list[np.ndarray], picks: np.ndarray | None
) -> Iterator[np.ndarray]:
    """Kept vectors in merge order, in batches; only merge positions ``picks`` when given."""
    offset = 0
    for reader, keep in zip(readers, keeps, strict=True):
        ids = np.flatnonzero(keep)
        if picks is not None:
            local = picks[(picks >= offset) & (picks < offset + ids.size)] - offset
            ids = ids[local]
        offset += int(keep.sum())
        for start in range(0, ids.size, _BATCH_VECTORS):
            yield _reconstruct(reader, ids[start : start + _BATCH_VECTORS])


def _reconstruct(index: faiss.Index, ids: np.ndarray) -> np.ndarray:
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None and ivf.direct_map.type == faiss.DirectMap.NoMap:
        ivf.make_direct_map()
    try:
        return index.reconstruct_batch(ids)
    except RuntimeError as exc:
        raise ValueError(
            f"cannot read vectors back from a {type(index).__name__} shard ({faiss_message(exc)}); "
            "build shards with 'Flat', or with IVF copies of one trained index (GeoIndex.train)"
        ) from None


def copy_to_gpus(index: faiss.Index) -> faiss.Index | None:
    """Copy ``index`` to every GPU; ``None`` on CPU-only faiss or for types GPUs lack (HNSW)."""
    if not (hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0):
        return None
    try:
        return faiss.index_cpu_to_all_gpus(index)
    except (RuntimeError, AttributeError) as exc:
        _log.info("cannot move a %s to the GPU (%s); searching on the CPU", type(index).__name__, exc)
        return None


def faiss_message(exc: BaseException) -> str:
    """Extract the useful part of a faiss error ("Error in <function> at <file>: Error: <this>")."""
    lines = str(exc).strip().splitlines()
    text = lines[-1] if lines else type(exc).__name__
    return text.rsplit("Error: ", 1)[-1]
