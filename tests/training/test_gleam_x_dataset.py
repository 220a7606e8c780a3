"""The GLEAM-X dataset builder on a tiny real index: records, resume, crash recovery, rate limit."""

import json
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from PIL import Image
from pyproj import Transformer
from rasterio.windows import Window

import gleam_geo
from gleam_geo.errors import ExplainerError
from gleam_geo.explain.base import Evidence, Explanation
from gleam_geo.explain.evidence_explainer import EvidenceExplainer
from gleam_geo.explain.prompt import PROMPT_VERSION
from training.gleam_x.build_dataset import TokenBucket, build_dataset, main, read_done_ids

FIELDS = {
    "id", "pair_id", "query_image", "reference_image", "chip_id", "source", "label", "language",
    "evidence", "verdict", "confidence", "reasoning", "teacher", "prompt_version", "created_at",
    "retrieval_rank", "query_view",
}  # fmt: skip
COUNT, NEGATIVES, LANGS = 2, 1, ("en", "zh")
RECORDS = COUNT * (1 + NEGATIVES) * len(LANGS)


def write_window(src_path, dst_path, window):
    with rasterio.open(src_path) as src:
        profile = {**src.profile, "width": window.width, "height": window.height}
        with rasterio.open(dst_path, "w", **profile | {"transform": src.window_transform(window)}) as dst:
            dst.write(src.read(window=window))
    return dst_path


@pytest.fixture(scope="module")
def window_raster(shared_data, tmp_path_factory):
    """A 520 x 390 px window (about 155 x 116 m) of the Kampala orthophoto, and one of the Dutch one.

    Returns the Kampala window; the Dutch one lies beside it. Chips far apart always exist,
    so there are negatives whose reference patch is clear of any view.
    """
    folder = tmp_path_factory.mktemp("rasters")
    write_window(
        shared_data / "netherlands" / "nl_25cm.tif", folder / "nl_window.tif", Window(300, 300, 420, 420)
    )
    return write_window(
        shared_data / "kampala" / "kampala_z19.tif", folder / "kampala_window.tif", Window(100, 60, 520, 390)
    )


@pytest.fixture(scope="module")
def index(window_raster, tmp_path_factory):
    rasters = [window_raster, window_raster.parent / "nl_window.tif"]
    return gleam_geo.build_index(rasters, tmp_path_factory.mktemp("idx") / "index", tiling={"overlap": 0.0})


@pytest.fixture(scope="module")
def built(index, window_raster, tmp_path_factory):
    """The dataset built with the offline evidence teacher."""
    out = tmp_path_factory.mktemp("ds") / "gleamx.jsonl"
    stats = build_dataset(
        index, out, out.parent / "images", teacher="evidence", count=COUNT, negatives_per_positive=NEGATIVES,
        languages=LANGS, seed=3, rate_limit_rpm=None, data_dir=window_raster.parent, progress=False,
    )  # fmt: skip
    return out, stats


class CountingTeacher:
    """A fake explainer: counts calls, checks its inputs, can fail on chosen calls."""

    model_id = "fake-teacher"

    def __init__(self, fail_on=()):
        self.calls = 0
        self.fail_on = set(fail_on)

    def explain(self, query, reference, evidence, language):
        self.calls += 1
        assert query.dtype == np.uint8 and query.shape[2] == 3
        assert reference.dtype == np.uint8 and reference.shape[2] == 3
        assert isinstance(evidence, Evidence)
        if self.calls in self.fail_on:
            raise ExplainerError("reply without a verdict")
        same = evidence.inliers > 0
        return Explanation(same, 0.75, f"call {self.calls} in {language}", language, self.model_id, evidence)


class FakeClock:
    def __init__(self):
        self.now, self.slept = 100.0, []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


def records(path):
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def to_wgs84(crs, xy):
    return shapely.Point(Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(*xy))


def test_records_follow_the_format_and_the_index(built, index):
    out, stats = built
    rows = records(out)
    assert (stats.written, stats.skipped, stats.failed, stats.teacher_calls) == (RECORDS, 0, 0, RECORDS)
    assert len(rows) == RECORDS and len({r["id"] for r in rows}) == RECORDS
    chips = index.chips(np.arange(len(index))).set_index("chip_id")
    for r in rows:
        assert set(r) == FIELDS
        assert r["id"] == f"{r['pair_id']}-{r['language']}"
        assert r["label"] == r["pair_id"].endswith("-pos")
        assert r["source"] in ("kampala_window.tif", "nl_window.tif")  # relative to data_dir
        assert set(r["evidence"]) == {f.name for f in fields(Evidence)}
        assert -1 <= r["evidence"]["retrieval_score"] <= 1
        assert (r["teacher"], r["prompt_version"]) == ("evidence-v1", PROMPT_VERSION)
        query = np.asarray(Image.open(out.parent / r["query_image"]))
        reference = np.asarray(Image.open(out.parent / r["reference_image"]))
        assert query.shape == (256, 256, 3) and reference.ndim == 3
        # the offline teacher's verdict is a function of the stored evidence
        again = EvidenceExplainer().explain(query, reference, Evidence(**r["evidence"]), r["language"])
        assert (r["verdict"], r["confidence"]) == (again.verdict, again.confidence)
        assert any("\u4e00" <= c <= "\u9fff" for c in r["reasoning"]) == (r["language"] == "zh")
        # positives hold the view's centre, negatives do not
        centre = to_wgs84(r["query_view"]["crs"], r["query_view"]["centre_xy"])
        assert chips.loc[r["chip_id"], "geometry"].intersects(centre) == r["label"]
    positives = [r["evidence"]["inliers"] for r in rows if r["label"]]
    negatives = [r["evidence"]["inliers"] for r in rows if not r["label"]]
    assert min(positives) > max(negatives)


def test_same_seed_same_pairs_rate_limited_calls_failures_retried_and_resume_without_calls(
    built, index, window_raster, tmp_path
):
    out = tmp_path / "fake.jsonl"
    clock = FakeClock()
    kwargs = dict(
        count=COUNT, negatives_per_positive=NEGATIVES, languages=LANGS, seed=3, data_dir=window_raster.parent,
        limiter=TokenBucket(30, clock=clock, sleep=clock.sleep), progress=False,
    )  # fmt: skip
    teacher = CountingTeacher(fail_on={3})
    stats = build_dataset(index, out, tmp_path / "images", teacher=teacher, **kwargs)
    assert teacher.calls == RECORDS and (stats.written, stats.failed) == (RECORDS - 1, 1)
    # 30 a minute is one call every 2 s: the first goes at once (a full bucket), each later one waits
    assert clock.slept == pytest.approx([2.0] * (RECORDS - 1))
    rows = records(out)
    assert {r["teacher"] for r in rows} == {"fake-teacher"}
    # the same seed gives the same pairs, views and evidence as the evidence-teacher build
    keys = ("chip_id", "label", "evidence", "query_view", "retrieval_rank", "query_image", "reference_image")
    reference = {r["id"]: [r[k] for k in keys] for r in records(built[0])}
    assert len(reference) == RECORDS
    assert {r["id"]: [r[k] for k in keys] for r in rows}.items() <= reference.items()

    retry = CountingTeacher()
    stats = build_dataset(index, out, tmp_path / "images", teacher=retry, **kwargs)
    assert retry.calls == 1 and (stats.written, stats.skipped) == (1, RECORDS - 1)
    assert {r["id"] for r in records(out)} == set(reference)

    before = out.read_bytes()
    resumed = CountingTeacher()
    stats = build_dataset(index, out, tmp_path / "images", teacher=resumed, **kwargs)
    assert resumed.calls == 0 and (stats.written, stats.skipped) == (0, RECORDS)
    assert out.read_bytes() == before


def test_a_partial_last_line_is_dropped_and_redone(built, index, window_raster, tmp_path):
    out = tmp_path / "crashed.jsonl"
    lines = built[0].read_bytes().splitlines(keepends=True)
    out.write_bytes(b"".join(lines[:-1]) + lines[-1][:40])  # killed while writing the last record
    assert read_done_ids(out) == {json.loads(line)["id"] for line in lines[:-1]}
    assert out.read_bytes() == b"".join(lines[:-1])
    teacher = CountingTeacher()
    stats = build_dataset(
        index, out, tmp_path / "images", teacher=teacher, count=COUNT, negatives_per_positive=NEGATIVES,
        languages=LANGS, seed=3, rate_limit_rpm=None, data_dir=window_raster.parent, progress=False,
    )  # fmt: skip
    assert teacher.calls == 1 and stats.written == 1 and stats.skipped == RECORDS - 1
    rows = records(out)
    assert [r["id"] for r in rows] == [json.loads(line)["id"] for line in lines]


def test_token_bucket_refills_up_to_its_burst():
    clock = FakeClock()
    bucket = TokenBucket(60, burst=2, clock=clock, sleep=clock.sleep)
    assert [bucket.acquire() for _ in range(3)] == [0.0, 0.0, pytest.approx(1.0)]
    clock.now += 10.0  # ten seconds idle refill two tokens, not ten
    assert [bucket.acquire() for _ in range(3)] == [0.0, 0.0, pytest.approx(1.0)]
    assert TokenBucket(None, clock=clock, sleep=clock.sleep).acquire() == 0.0
    with pytest.raises(ValueError, match="requests per minute"):
        TokenBucket(-1)


def test_a_corrupt_line_in_the_middle_is_an_error(tmp_path):
    out = tmp_path / "bad.jsonl"
    out.write_text('{"id": "a"}\nnot json\n{"id": "b"}\n')
    with pytest.raises(ValueError, match="line 2 is not a GLEAM-X record"):
        read_done_ids(out)


def test_command_line_resumes_a_finished_build(built, index, window_raster):
    out, _ = built
    before = out.read_bytes()
    stats = main(
        ["--index", str(index.path), "--data", str(window_raster.parent), "--out", str(out), "--images-dir",
         str(out.parent / "images"), "--count", str(COUNT), "--negatives-per-positive", str(NEGATIVES),
         "--languages", *LANGS, "--teacher", "evidence", "--seed", "3"]
    )  # fmt: skip
    assert (stats.written, stats.skipped) == (0, RECORDS)
    assert out.read_bytes() == before
