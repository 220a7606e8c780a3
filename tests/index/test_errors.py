"""Refusals: other models, bad files, bad factories, bad vectors, clobbering a directory."""

from __future__ import annotations

import json

import faiss
import numpy as np
import pytest

from gleam_geo.errors import IndexFormatError, ModelMismatchError
from gleam_geo.index import FORMAT_VERSION, GeoIndex

from .helpers import DIM, MODEL, OTHER_MODEL, TILING, build, synthetic_chips, unit_vectors


@pytest.fixture
def index(tmp_path):
    return build(tmp_path / "idx", synthetic_chips(50), unit_vectors(50, 30))


def test_other_model_is_refused(index):
    with pytest.raises(ModelMismatchError, match=r"built with model 'test-encoder' .* build a new index"):
        index.check_model(**OTHER_MODEL)
    with pytest.raises(ModelMismatchError):
        index.check_model(MODEL["model_id"], "1" * 64)  # same name, other weights
    with pytest.raises(ModelMismatchError):
        index.add(unit_vectors(1, 31), synthetic_chips(1, prefix="new"), **OTHER_MODEL)
    index.check_model(**MODEL)
    assert len(GeoIndex.open(index.path)) == 50


def test_vector_checks_on_add(index):
    chips = synthetic_chips(2, prefix="new")
    with pytest.raises(ValueError, match=r"\(N, 32\)"):
        index.add(unit_vectors(2, 32, dim=16), chips, **MODEL)
    with pytest.raises(ValueError, match="one chip per vector"):
        index.add(unit_vectors(3, 32), chips, **MODEL)
    with pytest.raises(ValueError, match="L2-normalised"):
        index.add(unit_vectors(2, 32) * 3, chips, **MODEL)
    with pytest.raises(ValueError, match="repeats chip ids"):
        index.add(unit_vectors(2, 32), [chips[0], chips[0]], **MODEL)
    assert len(index) == 50 and len(GeoIndex.open(index.path)) == 50


def test_chips_already_indexed(index):
    again = synthetic_chips(60)  # 50 known, 10 new
    vectors = unit_vectors(60, 33)
    with pytest.raises(ValueError, match="50 of the chips are already in index"):
        index.add(vectors, again, **MODEL)
    assert index.add(vectors, again, skip_existing=True, **MODEL) == 10
    assert len(GeoIndex.open(index.path)) == 60
    assert index.search(vectors[55:56], 1)[1][0, 0] == 55
    assert index.add(vectors, again, skip_existing=True, **MODEL) == 0


def test_create_refuses_non_empty_directory(tmp_path, index):
    with pytest.raises(FileExistsError, match="overwrite=True"):
        GeoIndex.create(index.path, embed_dim=DIM, tiling=TILING, **MODEL)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        GeoIndex.create(tmp_path, embed_dim=DIM, tiling=TILING, **MODEL)
    fresh = GeoIndex.create(
        index.path, embed_dim=DIM, tiling=TILING, factory="HNSW32", overwrite=True, **MODEL
    )
    assert len(fresh) == 0 and len(GeoIndex.open(index.path)) == 0
    assert GeoIndex.open(index.path).manifest["factory"] == "HNSW32"
    assert sorted(p.name for p in index.path.iterdir()) == [
        "chips.000002.parquet",
        "manifest.json",
        "vectors.000002.faiss",
    ]


@pytest.mark.parametrize(
    ("factory", "match"),
    [("Nonsense42", "faiss rejects factory"), ("IVF4,PQ5", "faiss rejects"), ("IDMap,Flat", "without IDMap")],
)
def test_bad_factories(tmp_path, factory, match):
    with pytest.raises(ValueError, match=match):
        GeoIndex.create(tmp_path / "idx", embed_dim=DIM, tiling=TILING, factory=factory, **MODEL)


def test_too_few_vectors_to_train(tmp_path):
    ivf = GeoIndex.create(tmp_path / "ivf", embed_dim=DIM, tiling=TILING, factory="IVF64,Flat", **MODEL)
    with pytest.raises(ValueError, match=r"at least 64 vectors .* or 'Flat'"):
        ivf.add(unit_vectors(20, 34), synthetic_chips(20), **MODEL)
    pq = GeoIndex.create(tmp_path / "pq", embed_dim=DIM, tiling=TILING, factory="IVF4,PQ8", **MODEL)
    with pytest.raises(ValueError, match=r"cannot train .* 'Flat'"):
        pq.add(unit_vectors(100, 34), synthetic_chips(100), **MODEL)
    assert len(GeoIndex.open(tmp_path / "pq")) == 0 and not GeoIndex.open(tmp_path / "pq").info()["trained"]
    # after the failure the index still takes a batch large enough
    assert pq.add(unit_vectors(300, 35), synthetic_chips(300), **MODEL) == 300


def test_tiling_must_be_json(tmp_path):
    with pytest.raises(ValueError, match="JSON"):
        GeoIndex.create(tmp_path / "idx", embed_dim=DIM, tiling={"gsd": object()}, **MODEL)


def edit_manifest(index, change):
    path = index.path / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_missing_manifest(tmp_path, index):
    with pytest.raises(IndexFormatError, match=r"not a gleam_geo index .* gleam-geo index build"):
        GeoIndex.open(tmp_path)
    with pytest.raises(IndexFormatError, match="does not exist"):
        GeoIndex.open(tmp_path / "nowhere")


def test_garbled_manifest(index):
    (index.path / "manifest.json").write_text('{"format_version": 1, "model": ')
    with pytest.raises(IndexFormatError, match=r"cannot read .*manifest\.json"):
        GeoIndex.open(index.path)


def test_manifest_missing_a_key(index):
    edit_manifest(index, lambda data: data.pop("embed_dim"))
    with pytest.raises(IndexFormatError, match=r"garbled .*embed_dim"):
        GeoIndex.open(index.path)


def test_manifest_escaping_the_directory(index):
    edit_manifest(index, lambda data: data["files"].update(vectors="../elsewhere.faiss"))
    with pytest.raises(IndexFormatError, match="garbled"):
        GeoIndex.open(index.path)


def test_newer_format_version(index):
    edit_manifest(index, lambda data: data.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(IndexFormatError, match="upgrade gleam_geo"):
        GeoIndex.open(index.path)


def test_missing_faiss_file(index):
    (index.path / index.manifest["files"]["vectors"]).unlink()
    with pytest.raises(IndexFormatError, match="missing its vector file"):
        GeoIndex.open(index.path)


@pytest.mark.parametrize("mmap", [True, False])
def test_corrupt_faiss_file(index, mmap):
    path = index.path / index.manifest["files"]["vectors"]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(IndexFormatError, match="cannot read faiss index"):
        GeoIndex.open(index.path, mmap=mmap)
    path.write_bytes(np.random.default_rng(0).bytes(len(data)))
    with pytest.raises(IndexFormatError, match="cannot read faiss index"):
        GeoIndex.open(index.path, mmap=mmap)


def test_corrupt_or_missing_sidecar(index):
    path = index.path / index.manifest["files"]["chips"]
    path.write_bytes(b"PAR1 not really parquet")
    with pytest.raises(IndexFormatError, match="cannot read chip sidecar"):
        GeoIndex.open(index.path)
    path.unlink()
    with pytest.raises(IndexFormatError, match="missing its chip sidecar"):
        GeoIndex.open(index.path)


def test_count_mismatch(index):
    edit_manifest(index, lambda data: data.update(count=49))
    with pytest.raises(IndexFormatError, match="inconsistent"):
        GeoIndex.open(index.path)


def test_pq_indexes_skip_polysemous_training(tmp_path):
    """faiss's factory turns it on for PQ; it costs ~30 s per training and is unused here."""
    for factory in ("IVF4,PQ8", "PQ8", "OPQ8,IVF4,PQ8"):
        index = GeoIndex.create(
            tmp_path / factory.replace(",", "_"), embed_dim=DIM, tiling=TILING, factory=factory, **MODEL
        )
        inner = faiss.downcast_index(index._index.index) if factory.startswith("OPQ") else index._index
        assert inner.do_polysemous_training is False
