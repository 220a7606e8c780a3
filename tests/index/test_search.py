"""Search: exact Flat equals numpy, approximate factories recall stored vectors, incremental adds."""

from __future__ import annotations

import os

import faiss
import numpy as np
import pytest

from gleam_geo.errors import EmptyIndexError
from gleam_geo.index import GeoIndex
from gleam_geo.index.vectors import search_params

from .helpers import DIM, MODEL, TILING, brute_force, build, same_results, synthetic_chips, unit_vectors

N = 600


@pytest.fixture(scope="module")
def vectors():
    return unit_vectors(N, 10)


@pytest.fixture(scope="module")
def flat(vectors, tmp_path_factory):
    return build(tmp_path_factory.mktemp("flat") / "idx", synthetic_chips(N), vectors)


def test_flat_search_equals_brute_force(flat, vectors):
    queries = unit_vectors(20, 11)
    scores, ids = flat.search(queries, 10)
    expected_scores, expected_ids = brute_force(vectors, queries, 10)
    assert ids.dtype == np.int64 and scores.dtype == np.float32 and ids.shape == (20, 10)
    assert np.array_equal(ids, expected_ids)
    assert np.allclose(scores, expected_scores, atol=1e-5)


def test_k_larger_than_index_pads_with_minus_one(tmp_path):
    index = build(tmp_path / "idx", synthetic_chips(5), unit_vectors(5, 12))
    _, ids = index.search(unit_vectors(2, 13), 8)
    assert ids.shape == (2, 8)
    assert (ids[:, 5:] == -1).all() and sorted(ids[0, :5]) == list(range(5))


@pytest.mark.parametrize(
    ("factory", "params"),
    [("HNSW32", {"ef_search": 128}), ("IVF16,PQ8", {"nprobe": 16}), ("IVF16,Flat", {"nprobe": 16})],
)
def test_approximate_factories_recall_stored_vectors(tmp_path, vectors, factory, params):
    index = build(tmp_path / "idx", synthetic_chips(N), vectors, factory=factory)
    reopened = GeoIndex.open(index.path)
    assert reopened.manifest["factory"] == factory and len(reopened) == N
    _, ids = reopened.search(vectors[:100], 5, **params)
    top1 = np.mean(ids[:, 0] == np.arange(100))
    top5 = np.mean((ids == np.arange(100)[:, None]).any(axis=1))
    if factory.endswith("PQ8"):
        assert top5 >= 0.9  # 8-byte codes of 32-d vectors: the stored vector ranks near the top
    else:
        assert top1 >= 0.98


def test_default_search_parameters_are_set_on_new_indexes(tmp_path, vectors):
    hnsw = build(tmp_path / "hnsw", synthetic_chips(N), vectors, factory="HNSW32")
    _, ids = GeoIndex.open(hnsw.path).search(vectors[:100], 1)
    assert np.mean(ids[:, 0] == np.arange(100)) >= 0.98
    ivf = build(tmp_path / "ivf", synthetic_chips(N), vectors, factory="IVF16,Flat")
    # default nprobe (8 of 16 lists) finds nearly all; faiss's default of 1 would miss many
    _, ids = GeoIndex.open(ivf.path).search(vectors[:100], 1)
    assert np.mean(ids[:, 0] == np.arange(100)) >= 0.9


def test_misplaced_search_parameters_are_refused(flat, vectors):
    with pytest.raises(ValueError, match="nprobe does not apply"):
        flat.search(vectors[:1], 1, nprobe=4)
    with pytest.raises(ValueError, match="ef_search does not apply"):
        flat.search(vectors[:1], 1, ef_search=4)


def test_incremental_adds_then_reopen(tmp_path, vectors):
    chips = synthetic_chips(N)
    index = GeoIndex.create(tmp_path / "idx", embed_dim=DIM, tiling=TILING, **MODEL)
    assert index.add(vectors[:250], chips[:250], **MODEL) == 250
    assert index.add(vectors[250:], chips[250:], **MODEL) == N - 250
    reopened = GeoIndex.open(tmp_path / "idx")
    assert len(reopened) == N
    assert reopened.manifest["sources"] == [
        {"path": "/data/s.tif", "checksum": "s-checksum", "crs": "EPSG:4326", "chips": N}
    ]
    queries = unit_vectors(10, 14)
    assert np.array_equal(reopened.search(queries, 5)[1], brute_force(vectors, queries, 5)[1])
    assert sorted(p.name for p in (tmp_path / "idx").iterdir()) == [
        "chips.000002.parquet",
        "manifest.json",
        "vectors.000002.faiss",
    ]


@pytest.mark.parametrize("factory", ["Flat", "HNSW32", "IVF16,Flat"])
def test_add_to_memory_mapped_index(tmp_path, vectors, factory):
    chips = synthetic_chips(N)
    build(tmp_path / "idx", chips[:300], vectors[:300], factory=factory)
    mapped = GeoIndex.open(tmp_path / "idx", mmap=True)
    assert mapped.info()["memory_mapped"]
    mapped.add(vectors[300:], chips[300:], **MODEL)  # faiss aborts if a mapped index is changed in place
    assert len(GeoIndex.open(tmp_path / "idx")) == N
    _, ids = mapped.search(vectors[300:310], 1)
    assert ids[:, 0].tolist() == list(range(300, 310))


@pytest.mark.parametrize("factory", ["Flat", "HNSW32", "IVF16,PQ8"])
def test_mmap_open_searches_like_a_full_read(tmp_path, vectors, factory):
    build(tmp_path / "idx", synthetic_chips(N), vectors, factory=factory)
    mapped = GeoIndex.open(tmp_path / "idx", mmap=True)
    loaded = GeoIndex.open(tmp_path / "idx", mmap=False)
    assert mapped.info()["memory_mapped"] and not loaded.info()["memory_mapped"]
    queries = unit_vectors(30, 15)
    mapped_scores, mapped_ids = mapped.search(queries, 7)
    loaded_scores, loaded_ids = loaded.search(queries, 7)
    assert np.array_equal(mapped_ids, loaded_ids) and np.array_equal(mapped_scores, loaded_scores)


def test_flat_index_file_is_really_mapped(tmp_path, vectors):
    """The vector file shows up among the process's memory mappings (Linux only)."""
    maps = "/proc/self/maps"
    if not os.path.exists(maps):
        pytest.skip("needs /proc/self/maps")
    index = build(tmp_path / "idx", synthetic_chips(N), vectors)
    vector_file = str(tmp_path / "idx" / index.manifest["files"]["vectors"])
    mapped = GeoIndex.open(tmp_path / "idx", mmap=True)
    with open(maps) as handle:
        assert vector_file in handle.read()
    assert mapped.search(vectors[:1], 1)[1][0, 0] == 0


def test_empty_index_search(tmp_path):
    empty = GeoIndex.create(tmp_path / "idx", embed_dim=DIM, tiling=TILING, **MODEL)
    with pytest.raises(EmptyIndexError, match="is empty"):
        empty.search(unit_vectors(1, 16), 3)
    reopened = GeoIndex.open(tmp_path / "idx")
    assert len(reopened) == 0
    with pytest.raises(EmptyIndexError):
        reopened.search(unit_vectors(1, 16), 3, region=(0, 0, 1, 1))


def test_query_shape_and_k_errors(flat):
    with pytest.raises(ValueError, match=r"\(N, 32\).*got shape \(2, 16\)"):
        flat.search(np.zeros((2, 16), np.float32), 3)
    with pytest.raises(ValueError, match=r"reshape\(1, -1\)"):
        flat.search(np.zeros(DIM, np.float32), 3)
    with pytest.raises(ValueError, match="k must be"):
        flat.search(unit_vectors(1, 17), 0)
    with pytest.raises(ValueError, match="NaN"):
        flat.search(np.full((1, DIM), np.nan, np.float32), 1)


def test_info(flat, vectors):
    info = flat.info()
    assert info["count"] == N and info["embed_dim"] == DIM and info["factory"] == "Flat"
    assert info["model"] == {"id": MODEL["model_id"], "checksum": MODEL["model_checksum"]}
    assert info["metric"] == "inner_product" and info["tiling"] == TILING
    assert info["bounds_wgs84"] == pytest.approx([30.0, 0.0, 30.05, 0.012])
    assert info["size_bytes"] > N * DIM * 4
    assert info["sources"][0]["chips"] == N


def test_device_auto_falls_back_to_cpu(flat, vectors, monkeypatch):
    queries = unit_vectors(5, 18)
    expected = flat.search(queries, 4, device="cpu")
    assert same_results(flat.search(queries, 4, device="auto"), expected)
    with pytest.raises(ValueError, match="device"):
        flat.search(queries, 4, device="cuda")
    # faiss with GPUs: the index is copied to them once and searched there
    copies = []

    def fake_to_gpus(index):
        copies.append(index)
        return faiss.clone_index(index)

    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1, raising=False)
    monkeypatch.setattr(faiss, "index_cpu_to_all_gpus", fake_to_gpus, raising=False)
    fresh = GeoIndex.open(flat.path)
    for _ in range(2):
        assert same_results(fresh.search(queries, 4), expected)
    assert len(copies) == 1

    # a GPU build that cannot take this index type: silently stays on the CPU
    def refuse(index):
        raise RuntimeError("not supported on GPU")

    monkeypatch.setattr(faiss, "index_cpu_to_all_gpus", refuse, raising=False)
    other = GeoIndex.open(flat.path)
    assert same_results(other.search(queries, 4), expected)


def test_region_search_keeps_the_index_search_settings(tmp_path, vectors):
    """Parameter objects replace the index's own nprobe/efSearch unless carried over."""
    ivf = build(tmp_path / "ivf", synthetic_chips(N), vectors, factory="IVF16,Flat")
    region = (30.0, 0.0, 30.05, 0.0055)  # chips 0..299 (lat 0 to 0.006)
    queries = unit_vectors(200, 19)
    _, ids = ivf.search(queries, 1, region=region)
    _, exact = brute_force(vectors, queries, 1, np.arange(300))
    assert np.mean(ids[:, 0] == exact[:, 0]) >= 0.85  # with nprobe 1 (faiss's default) about half
    hnsw = build(tmp_path / "hnsw", synthetic_chips(N), vectors, factory="HNSW32")
    params = search_params(hnsw._index, "HNSW32", faiss.IDSelectorBatch(np.arange(3)), None, None)
    assert params.efSearch == 64
    assert search_params(hnsw._index, "HNSW32", None, None, 200).efSearch == 200
