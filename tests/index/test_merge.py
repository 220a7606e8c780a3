"""Merging shards: same result as one index of all vectors, duplicates dropped, mismatches refused."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from gleam_geo.errors import ModelMismatchError
from gleam_geo.index import GeoIndex

from .helpers import DIM, MODEL, OTHER_MODEL, TILING, build, same_results, synthetic_chips, unit_vectors

N = 400


@pytest.fixture(scope="module")
def data():
    """400 chips and vectors; shard A holds 0..249, shard B 150..399 (150..249 in both)."""
    return synthetic_chips(N), unit_vectors(N, 50)


def shards(tmp_path, data, factory="Flat"):
    chips, vectors = data
    a = build(tmp_path / "a", chips[:250], vectors[:250], factory=factory)
    b = build(tmp_path / "b", chips[150:], vectors[150:], factory=factory)
    return a, b


def test_flat_merge_equals_one_index_and_drops_duplicates(tmp_path, data):
    chips, vectors = data
    a, b = shards(tmp_path, data)
    merged = GeoIndex.merge([a, tmp_path / "b"], tmp_path / "merged")
    whole = build(tmp_path / "whole", chips, vectors)
    assert len(merged) == N and len(GeoIndex.open(tmp_path / "merged")) == N
    queries = unit_vectors(25, 51)
    assert same_results(merged.search(queries, 10), whole.search(queries, 10))
    assert list(merged.chips(range(N))["chip_id"]) == [chip.chip_id for chip in chips]
    assert merged.manifest["sources"] == whole.manifest["sources"]
    assert merged.info()["bounds_wgs84"] == whole.info()["bounds_wgs84"]
    assert merged.manifest["tiling"] == TILING and merged.manifest["model"]["id"] == MODEL["model_id"]
    # shards are untouched
    assert len(GeoIndex.open(a.path)) == 250 and len(GeoIndex.open(b.path)) == 250


def test_merge_into_another_factory(tmp_path, data):
    _, vectors = data
    merged = GeoIndex.merge(shards(tmp_path, data), tmp_path / "merged", factory="IVF8,Flat")
    assert merged.manifest["factory"] == "IVF8,Flat" and len(merged) == N
    _, ids = GeoIndex.open(tmp_path / "merged").search(vectors, 1, nprobe=8)
    assert ids[:, 0].tolist() == list(range(N))


def test_hnsw_shards(tmp_path, data):
    _, vectors = data
    merged = GeoIndex.merge(shards(tmp_path, data, "HNSW32"), tmp_path / "merged")
    assert merged.manifest["factory"] == "HNSW32" and len(merged) == N
    _, ids = merged.search(vectors, 1, ef_search=128)
    assert np.mean(ids[:, 0] == np.arange(N)) >= 0.98


def test_ivf_shards_of_one_trained_index_merge_without_decoding(tmp_path, data):
    chips, vectors = data
    template = GeoIndex.create(
        tmp_path / "template", embed_dim=DIM, tiling=TILING, factory="IVF8,PQ8", **MODEL
    )
    template.train(vectors, **MODEL)
    for name, part in (("a", slice(0, 250)), ("b", slice(150, N))):
        shutil.copytree(template.path, tmp_path / name)
        GeoIndex.open(tmp_path / name).add(vectors[part], chips[part], **MODEL)
    whole_path = tmp_path / "whole"
    shutil.copytree(template.path, whole_path)
    whole = GeoIndex.open(whole_path)
    whole.add(vectors, chips, **MODEL)
    merged = GeoIndex.merge([tmp_path / "a", tmp_path / "b"], tmp_path / "merged")
    assert len(merged) == N
    queries = unit_vectors(25, 52)
    # identical PQ codes in identical lists: the same results as adding everything to one index
    assert same_results(merged.search(queries, 10), whole.search(queries, 10))
    assert same_results(GeoIndex.open(tmp_path / "merged").search(queries, 10), whole.search(queries, 10))


def test_separately_trained_pq_shards_are_decoded_and_retrained(tmp_path, data):
    _, vectors = data
    a, b = shards(tmp_path, data, "IVF4,PQ8x4")  # 4-bit codes: 250 vectors are enough to train
    merged = GeoIndex.merge([a, b], tmp_path / "merged", factory="Flat")
    assert len(merged) == N
    _, ids = merged.search(vectors, 5)
    assert np.mean((ids == np.arange(N)[:, None]).any(axis=1)) >= 0.9


def test_train_refuses_a_filled_index(tmp_path, data):
    a, _ = shards(tmp_path, data)
    with pytest.raises(ValueError, match="already holds vectors"):
        a.train(data[1], **MODEL)


def test_mismatched_shards_are_refused(tmp_path, data):
    chips, vectors = data
    a, _ = shards(tmp_path, data)
    other = GeoIndex.create(tmp_path / "other", embed_dim=DIM, tiling=TILING, **OTHER_MODEL)
    other.add(vectors[:10], chips[:10], **OTHER_MODEL)
    with pytest.raises(ModelMismatchError, match="merge only shards built with the same model"):
        GeoIndex.merge([a, other], tmp_path / "merged")
    wide = GeoIndex.create(tmp_path / "wide", embed_dim=DIM * 2, tiling=TILING, **MODEL)
    with pytest.raises(ModelMismatchError, match="dim 64"):
        GeoIndex.merge([a, wide], tmp_path / "merged")
    tiled = GeoIndex.create(tmp_path / "tiled", embed_dim=DIM, tiling={**TILING, "gsd_m": 1.0}, **MODEL)
    with pytest.raises(ValueError, match="same tiling"):
        GeoIndex.merge([a, tiled], tmp_path / "merged")
    with pytest.raises(ValueError, match="one of the shards"):
        GeoIndex.merge([a, tmp_path / "b"], a.path, overwrite=True)
    assert not (tmp_path / "merged").exists()
