"""Saves are atomic: a failure or a crash at any point leaves a readable index, old or new."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import faiss
import pyarrow.parquet as pq
import pytest

from gleam_geo.index import GeoIndex
from gleam_geo.index import geoindex as geoindex_module
from gleam_geo.index import manifest as manifest_module

from .helpers import MODEL, build, synthetic_chips, unit_vectors

CURRENT = ["chips.000001.parquet", "manifest.json", "vectors.000001.faiss"]


class Boom(RuntimeError):
    pass


@pytest.fixture
def index(tmp_path):
    return build(tmp_path / "idx", synthetic_chips(100), unit_vectors(100, 40))


def listing(index):
    return sorted(p.name for p in index.path.iterdir())


def raise_boom(*args, **kwargs):
    raise Boom("disk full")


def assert_old_index_intact(index):
    assert listing(index) == CURRENT  # no new-generation or temporary files left behind
    reopened = GeoIndex.open(index.path)
    assert len(reopened) == 100
    assert reopened.search(unit_vectors(100, 40)[7:8], 1)[1][0, 0] == 7
    # the object that failed to save is still usable and consistent
    assert len(index) == 100
    assert index.search(unit_vectors(100, 40)[7:8], 1)[1][0, 0] == 7
    assert index.add(unit_vectors(10, 41), synthetic_chips(10, prefix="late"), **MODEL) == 10
    assert len(GeoIndex.open(index.path)) == 110


@pytest.mark.parametrize(
    ("target", "name"),
    [
        (pq.ParquetWriter, "write_table"),  # halfway through the sidecar
        (faiss, "write_index"),  # while writing the vectors
        (manifest_module, "write_manifest"),  # just before the commit point
    ],
)
def test_failure_during_save_keeps_the_old_index(index, monkeypatch, target, name):
    with monkeypatch.context() as patch:
        patch.setattr(target, name, raise_boom)
        with pytest.raises(Boom):
            index.add(unit_vectors(50, 42), synthetic_chips(50, prefix="new"), **MODEL)
    assert_old_index_intact(index)


def test_failure_after_mmap_open(index, monkeypatch):
    mapped = GeoIndex.open(index.path, mmap=True)
    with monkeypatch.context() as patch:
        patch.setattr(pq.ParquetWriter, "write_table", raise_boom)
        with pytest.raises(Boom):
            mapped.add(unit_vectors(50, 42), synthetic_chips(50, prefix="new"), **MODEL)
    assert_old_index_intact(mapped)


TESTS = Path(__file__).resolve().parents[1]


def run_and_crash(index, *patch: str):
    """Add 50 vectors in a child process that dies (``os._exit(3)``) where ``patch`` says."""
    code = "\n".join(
        [
            "import os",
            "import pyarrow.parquet as pq",
            "from gleam_geo.index import GeoIndex, geoindex",
            "from index.helpers import MODEL, synthetic_chips, unit_vectors",
            *patch,
            f"index = GeoIndex.open({str(index.path)!r})",
            'index.add(unit_vectors(50, 42), synthetic_chips(50, prefix="new"), **MODEL)',
        ]
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 3, done.stderr


def test_crash_while_writing_the_sidecar(index):
    run_and_crash(
        index,
        "write = pq.ParquetWriter.write_table",
        "pq.ParquetWriter.write_table = lambda self, table, **kw: (write(self, table, **kw), os._exit(3))",
    )
    leftovers = set(listing(index)) - set(CURRENT)
    assert leftovers, "the crash should leave the unfinished generation behind"
    assert all(name.startswith(".chips.") or name == "vectors.000002.faiss" for name in leftovers)
    reopened = GeoIndex.open(index.path)
    assert len(reopened) == 100
    reopened.add(unit_vectors(10, 41), synthetic_chips(10, prefix="late"), **MODEL)
    assert listing(index) == ["chips.000002.parquet", "manifest.json", "vectors.000002.faiss"]
    assert len(GeoIndex.open(index.path)) == 110


def test_crash_after_the_commit_point(index):
    run_and_crash(index, "geoindex.remove_stale_files = lambda *args: os._exit(3)")
    assert set(listing(index)) == set(CURRENT) | {"chips.000002.parquet", "vectors.000002.faiss"}
    reopened = GeoIndex.open(index.path)
    assert len(reopened) == 150
    assert reopened.search(unit_vectors(50, 42)[:1], 1)[1][0, 0] == 100


def test_open_retries_when_a_writer_commits_meanwhile(index, monkeypatch):
    stale = geoindex_module.read_manifest(index.path)  # names generation 1
    index.add(unit_vectors(50, 42), synthetic_chips(50, prefix="new"), **MODEL)  # generation 2 deletes 1
    answers = [stale]
    real = geoindex_module.read_manifest
    monkeypatch.setattr(
        geoindex_module, "read_manifest", lambda path: answers.pop() if answers else real(path)
    )
    assert len(GeoIndex.open(index.path)) == 150
