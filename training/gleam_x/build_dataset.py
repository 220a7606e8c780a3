"""Build a GLEAM-X dataset: explained (query view, satellite chip) pairs cut from an index.

``python -m training.gleam_x.build_dataset --index DIR --out gleamx.jsonl --images-dir DIR --count N``

Each of the ``count`` groups draws a chip of the index, renders a synthetic UAV view around
it from the chip's raster (:mod:`gleam_geo.evaluation.queries`: random heading, scale,
forward tilt and photometric change), and pairs the view with the chip of that raster that
holds the view's centre (a positive) and with the best retrieved chips whose reference
patch shows none of the view's ground (hard negatives). Every pair is refined against its
chip and explained through :func:`gleam_geo.explain.pipeline.explain_refinement`, so the
measured :class:`~gleam_geo.explain.base.Evidence` and the reference image are those the
library gives an explainer; the teacher explains it in each language. One JSONL record
per (pair, language); the format is in ``training/gleam_x/README.md``.

The output is appended line by line (flushed and fsynced), so a run can be stopped and
started again: records already written are skipped, and a partial last line left by a
crash is dropped. Teacher calls go through a token bucket (requests per minute).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pandas as pd
import shapely
from PIL import Image
from pyproj import CRS, Transformer
from tqdm import tqdm

from gleam_geo.errors import ExplainerError, NoCoverageError
from gleam_geo.evaluation import SUITES, Query, ViewSpec, render_view
from gleam_geo.explain.base import LANGUAGES, Evidence, Explainer, Explanation, Language, check_language
from gleam_geo.explain.pipeline import explain_refinement
from gleam_geo.explain.prompt import PROMPT_VERSION
from gleam_geo.explain.registry import get_explainer
from gleam_geo.index import GeoIndex
from gleam_geo.models import Encoder, get_encoder
from gleam_geo.raster import open_raster
from gleam_geo.refine import Refiner, search_rotations

from ..gleam_c.params import parse_overrides

__all__ = [
    "BuildStats",
    "JsonlAppender",
    "TokenBucket",
    "ViewSampling",
    "build_dataset",
    "main",
    "read_done_ids",
]

logger = logging.getLogger(__name__)

_UAV = SUITES["uav_tilt30"]
_SUITE_CHIP_SIDE_M = 38.4  # chip side of the default tiling the suite's view sizes are drawn for
_MAX_TILT_DEG = 60.0  # the footprint bound used to pick negatives holds up to this tilt
_EXTRA_CANDIDATES = 64  # retrieved beyond the negatives wanted, as chips near the view are skipped


class TokenBucket:
    """Allow ``per_minute`` acquisitions a minute, in bursts of at most ``burst``.

    Args:
        per_minute: sustained rate; ``None`` or ``0`` means unlimited.
        burst: tokens the bucket holds (a full bucket at the start).
        clock: monotonic seconds (injectable for tests).
        sleep: waits the given seconds (injectable for tests).
    """

    def __init__(
        self,
        per_minute: float | None,
        *,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if per_minute is not None and per_minute < 0:
            raise ValueError(f"rate limit must be positive requests per minute (0 = none), got {per_minute}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        self.rate = (per_minute or 0.0) / 60.0
        self.burst = burst
        self._clock, self._sleep = clock, sleep
        self._tokens = float(burst)
        self._last = clock()

    def acquire(self) -> float:
        """Take one token, sleeping until one is there; return the seconds slept."""
        if self.rate == 0:
            return 0.0
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        waited = 0.0
        if self._tokens < 1.0:
            waited = (1.0 - self._tokens) / self.rate
            self._sleep(waited)
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
        self._tokens = max(0.0, self._tokens - 1.0)
        return waited


def read_done_ids(path: str | os.PathLike[str]) -> set[str]:
    """Ids of the records in the JSONL at ``path``, dropping a partial last line left by a crash.

    Raises:
        ValueError: a complete line that is not a JSON record with an ``id``.
    """
    path = Path(path)
    if not path.exists():
        return set()
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        logger.warning(
            "%s: dropping a partial last line (%d bytes) left by an interrupted run", path, len(data) - end
        )
        with path.open("r+b") as handle:
            handle.truncate(end)
            handle.flush()
            os.fsync(handle.fileno())
    ids = set()
    for number, line in enumerate(data[:end].splitlines(), start=1):
        if not line.strip():
            continue
        try:
            ids.add(str(json.loads(line)["id"]))
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ValueError(
                f"{path} line {number} is not a GLEAM-X record with an id; remove it or write to a new file"
            ) from None
    return ids


class JsonlAppender:
    """Append JSON records to a file one line at a time, each flushed and fsynced."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle: TextIO = self.path.open("a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` as one line and make it durable."""
        self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        """Close the file."""
        self._handle.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class ViewSampling:
    """How the synthetic UAV views are drawn (defaults: the ``uav_tilt30`` evaluation suite).

    Attributes:
        size_px: view side in pixels.
        side_scale: range of the view's ground side over the chip's ground side.
        tilt_deg: range of forward camera tilt.
        offset: the view centre is moved by up to this fraction of the chip side on each axis.
        photometric: apply gain, contrast, gamma, blur and JPEG.
    """

    size_px: int = _UAV.size_px
    side_scale: tuple[float, float] = (
        _UAV.side_m[0] / _SUITE_CHIP_SIDE_M,
        _UAV.side_m[1] / _SUITE_CHIP_SIDE_M,
    )
    tilt_deg: tuple[float, float] = _UAV.tilt_deg
    offset: float = 0.15
    photometric: bool = _UAV.photometric

    def __post_init__(self) -> None:
        if not 0 <= self.tilt_deg[0] <= self.tilt_deg[1] <= _MAX_TILT_DEG:
            raise ValueError(f"tilt_deg must be a range within 0-{_MAX_TILT_DEG}, got {self.tilt_deg}")
        if not 0 < self.side_scale[0] <= self.side_scale[1]:
            raise ValueError(f"side_scale must be a positive range, got {self.side_scale}")


@dataclass
class BuildStats:
    """What a build did: records ``written``, ``skipped`` (already there), ``failed`` teacher calls."""

    written: int = 0
    skipped: int = 0
    failed: int = 0
    teacher_calls: int = 0


@dataclass
class _Pair:
    pair_id: str
    label: bool
    chip: Any  # a sidecar row (namedtuple from GeoDataFrame.itertuples)
    score: float
    margin: float | None
    rank: int | None


def _relocate(source: str, data_dir: Path | None) -> str:
    """``source`` if it exists, else the same file under ``data_dir`` (matched by its last path parts)."""
    path = Path(source)
    if path.exists():
        return str(path)
    if data_dir is not None:
        for depth in range(1, min(4, len(path.parts)) + 1):
            candidate = data_dir.joinpath(*path.parts[-depth:])
            if candidate.exists():
                return str(candidate)
    raise FileNotFoundError(
        f"raster {source} of the index is missing; pass --data with the folder that now holds it"
    )


def _portable(source: str, data_dir: Path | None) -> str:
    """``source`` relative to ``data_dir`` when it lies inside it, else as it is."""
    if data_dir is not None:
        try:
            return Path(source).resolve().relative_to(data_dir.resolve()).as_posix()
        except ValueError:
            pass
    return source


def _metres_per_unit(source: str) -> float:
    raster = open_raster(source)
    return raster.pixel_size_m[0] / math.hypot(raster.transform.a, raster.transform.d)


def _view_spec(row: Any, rng: np.random.Generator, sampling: ViewSampling) -> ViewSpec:
    """A view around chip ``row``, kept inside its raster where it fits."""
    raster = open_raster(str(row.source))
    footprint = shapely.from_wkt(row.native_footprint)
    minx, miny, maxx, maxy = footprint.bounds
    u, v = rng.uniform(-sampling.offset, sampling.offset, size=2)
    x, y = footprint.centroid.x + u * (maxx - minx), footprint.centroid.y + v * (maxy - miny)
    if not CRS.from_user_input(row.crs).equals(CRS.from_user_input(raster.crs_string)):
        x, y = Transformer.from_crs(row.crs, raster.crs_string, always_xy=True).transform(x, y)
    side = float(row.width_px) * float(row.gsd_m) * float(rng.uniform(*sampling.side_scale))
    radius = side / math.sqrt(2) / _metres_per_unit(raster.path)
    left, bottom, right, top = raster.bounds
    x = float(np.clip(x, left + radius, right - radius)) if right - left > 2 * radius else (left + right) / 2
    y = float(np.clip(y, bottom + radius, top - radius)) if top - bottom > 2 * radius else (bottom + top) / 2
    return ViewSpec(
        source=raster.path,
        centre_xy=(x, y),
        heading_deg=float(rng.uniform(0, 360)),
        ground_side_m=side,
        size_px=sampling.size_px,
        tilt_deg=float(rng.uniform(*sampling.tilt_deg)),
        photometric=sampling.photometric,
        seed=int(rng.integers(2**31)),
    )


def _wgs84_point(xy: tuple[float, float], crs: str) -> shapely.Point:
    return shapely.Point(Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(*xy))


class _PairSampler:
    """Draws the positive and hard-negative pairs of each group from an index."""

    def __init__(
        self,
        index: GeoIndex,
        encoder: Encoder,
        *,
        seed: int,
        negatives: int,
        sampling: ViewSampling,
        data_dir: Path | None,
        margin: float,
    ) -> None:
        self.index, self.encoder, self.seed, self.margin = index, encoder, seed, margin
        self.negatives, self.sampling, self.data_dir = negatives, sampling, data_dir
        self.order = np.random.default_rng(seed).permutation(len(index))

    def chips(self, ids: Sequence[int]) -> pd.DataFrame:
        """Sidecar rows of ``ids`` with their ``source`` relocated to files that exist."""
        rows = self.index.chips(list(ids))
        rows["source"] = [_relocate(str(s), self.data_dir) for s in rows["source"]]
        return rows

    def group(self, number: int) -> tuple[Query, list[_Pair]]:
        """Render group ``number``'s view and pick its positive and negative chips."""
        rng = np.random.default_rng([self.seed, number])
        drawn = next(self.chips([int(self.order[number % len(self.order)])]).itertuples())
        query = render_view(_view_spec(drawn, rng, self.sampling))
        spec = query.spec
        centre = _wgs84_point(query.true_xy, query.crs)
        k = min(len(self.index), self.negatives + _EXTRA_CANDIDATES)
        scores, ids = search_rotations(self.index, self.encoder, query.pixels, "uav", k)
        ranked = dict(zip(ids.tolist(), scores.tolist(), strict=True))
        positive_id = self._positive(centre, spec.source, drawn)
        if positive_id not in ranked:  # score it among the chips around it
            footprint = self.index.chips([positive_id]).geometry.iloc[0]
            near = len(self.index.region_ids(footprint))
            extra_scores, extra_ids = search_rotations(
                self.index, self.encoder, query.pixels, "uav", near, region=footprint
            )
            ranked[positive_id] = float(extra_scores[extra_ids == positive_id][0])
        clear = self._clear_of_view(self.chips(ids.tolist()), query)
        negative_ids = [i for i, ok in zip(ids.tolist(), clear, strict=True) if ok]
        chosen = [positive_id, *negative_ids[: self.negatives]]
        rank = {chip: r for r, chip in enumerate(ids.tolist(), start=1)}
        group_id = f"s{self.seed}-g{number:06d}"
        pairs = []
        for j, (chip_id, row) in enumerate(zip(chosen, self.chips(chosen).itertuples(), strict=True)):
            others = [s for i, s in ranked.items() if i != chip_id]
            pairs.append(
                _Pair(
                    pair_id=f"{group_id}-pos" if j == 0 else f"{group_id}-neg{j - 1}",
                    label=j == 0,
                    chip=row,
                    score=float(ranked[chip_id]),
                    margin=float(ranked[chip_id] - max(others)) if others else None,
                    rank=rank.get(chip_id),
                )
            )
        return query, pairs

    def _clear_of_view(self, rows: pd.DataFrame, query: Query) -> list[bool]:
        """Whether each chip's reference patch (what the refiner reads) shows none of the view's ground.

        Both are bounded by circles: the view's holds its whole tilted footprint (the bound
        holds for tilts up to 60 degrees), the patch's is ``margin`` chip sides across.
        """
        spec = query.spec
        reach_m = spec.ground_side_m / math.sqrt(2) * (1 + math.tan(math.radians(spec.tilt_deg)))
        to_view = Transformer.from_crs("EPSG:4326", query.crs, always_xy=True)
        centres = shapely.centroid(rows.geometry.to_numpy())
        x, y = to_view.transform(shapely.get_x(centres).tolist(), shapely.get_y(centres).tolist())
        distance_m = np.hypot(np.subtract(x, query.true_xy[0]), np.subtract(y, query.true_xy[1]))
        distance_m *= _metres_per_unit(spec.source)
        patch_m = (
            self.margin * rows["width_px"].to_numpy(float) * rows["gsd_m"].to_numpy(float) / math.sqrt(2)
        )
        return (distance_m > reach_m + patch_m).tolist()

    def _positive(self, centre: shapely.Point, source: str, drawn: Any) -> int:
        """The chip of ``source`` that holds the view centre, nearest its own centre (else ``drawn``)."""
        try:
            ids = self.index.region_ids(centre)
        except NoCoverageError:
            return int(drawn.Index)
        rows = self.chips(ids.tolist())
        same = rows[[Path(s).resolve() == Path(source).resolve() for s in rows["source"]]]
        if same.empty:
            return int(drawn.Index)
        distances = shapely.distance(shapely.centroid(same.geometry.to_numpy()), centre)
        return int(same.index[int(np.argmin(distances))])


class _Recorder:
    """Passes each call on to ``teacher``, keeping the reference image and evidence it was given."""

    def __init__(self, teacher: Explainer) -> None:
        self.teacher, self.model_id = teacher, teacher.model_id
        self.reference: np.ndarray | None = None
        self.evidence: Evidence | None = None

    def explain(
        self, query: np.ndarray, reference: np.ndarray, evidence: Evidence, language: Language
    ) -> Explanation:
        """Keep ``reference`` and ``evidence``, then ask the teacher."""
        self.reference, self.evidence = reference, evidence
        return self.teacher.explain(query, reference, evidence, language)


def _save_png(pixels: np.ndarray, path: Path) -> None:
    """Write ``pixels`` to ``path`` as PNG through a temporary file, unless it is already there."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    Image.fromarray(pixels).save(partial, format="PNG")
    os.replace(partial, path)


def _relative(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path.resolve(), start.resolve())).as_posix()


def build_dataset(
    index: GeoIndex | str | os.PathLike[str],
    out: str | os.PathLike[str],
    images_dir: str | os.PathLike[str],
    *,
    teacher: Explainer | str = "openai",
    count: int = 100,
    negatives_per_positive: int = 1,
    languages: Sequence[str] = LANGUAGES,
    seed: int = 0,
    rate_limit_rpm: float | None = 30.0,
    encoder: Encoder | str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    sampling: ViewSampling | None = None,
    limiter: TokenBucket | None = None,
    progress: bool = True,
) -> BuildStats:
    """Build (or resume) a GLEAM-X JSONL dataset from ``index``.

    Args:
        index: the index (or its directory) whose chips are the references.
        out: the JSONL file; records already in it are kept and skipped.
        images_dir: where the query and reference PNGs go (records refer to them relative to ``out``).
        teacher: an explainer, or a registered name ("openai", "evidence", "transformers").
        count: groups, each one positive pair and up to ``negatives_per_positive`` negatives.
        negatives_per_positive: hard negatives per positive.
        languages: the languages each pair is explained in.
        seed: seeds the chip order and every view, so the same seed gives the same pairs.
        rate_limit_rpm: teacher requests per minute; ``None`` or 0 for no limit.
        encoder: the index's encoder (default: the one named in its manifest).
        data_dir: folder the index's rasters are looked up in when their paths moved, and
            that the ``source`` field is written relative to.
        sampling: how views are drawn (default: :class:`ViewSampling`).
        limiter: a token bucket to use instead of one made from ``rate_limit_rpm``.
        progress: show a progress bar.

    Returns:
        Counts of records written, skipped and failed, and teacher calls made.

    Raises:
        ValueError: bad counts or languages, or an output file that is not GLEAM-X JSONL.
    """
    if count < 1 or negatives_per_positive < 0:
        raise ValueError(f"count must be >= 1 and negatives >= 0, got {count} and {negatives_per_positive}")
    langs = [check_language(language) for language in languages]
    geo_index = index if isinstance(index, GeoIndex) else GeoIndex.open(index)
    enc = (
        encoder if isinstance(encoder, Encoder) else get_encoder(encoder or geo_index.manifest["model"]["id"])
    )
    geo_index.check_model(enc.model_id, enc.checksum)
    explainer = get_explainer(teacher)
    bucket = limiter or TokenBucket(rate_limit_rpm)
    out_path, image_root = Path(out), Path(images_dir)
    data = Path(data_dir) if data_dir is not None else None
    done = read_done_ids(out_path)
    refiner = Refiner(keep_images=True, stop_prob=None)  # every pair is refined, not just up to a match
    sampler = _PairSampler(
        geo_index,
        enc,
        seed=seed,
        negatives=negatives_per_positive,
        sampling=sampling or ViewSampling(),
        data_dir=data,
        margin=refiner.margin,
    )
    stats = BuildStats()
    per_group = (1 + negatives_per_positive) * len(langs)
    with (
        JsonlAppender(out_path) as writer,
        tqdm(total=count * per_group, disable=not progress, unit="rec") as bar,
    ):
        for number in range(count):
            group_id = f"s{seed}-g{number:06d}"
            expected = [f"{group_id}-pos"] + [f"{group_id}-neg{j}" for j in range(negatives_per_positive)]
            if all(f"{pair}-{lang}" in done for pair in expected for lang in langs):
                stats.skipped += per_group
                bar.update(per_group)
                continue
            for record in _group_records(
                sampler, refiner, explainer, bucket, number, langs, done, out_path, image_root, data, stats
            ):
                writer.write(record)
                done.add(record["id"])
                stats.written += 1
            bar.update(per_group)
            bar.set_postfix(written=stats.written, failed=stats.failed)
    return stats


def _group_records(
    sampler: _PairSampler,
    refiner: Refiner,
    explainer: Explainer,
    bucket: TokenBucket,
    number: int,
    languages: Sequence[str],
    done: set[str],
    out_path: Path,
    image_root: Path,
    data_dir: Path | None,
    stats: BuildStats,
) -> Iterator[dict[str, Any]]:
    """The records of group ``number`` not in ``done`` (skipped ones counted in ``stats``)."""
    query, pairs = sampler.group(number)
    todo = [pair for pair in pairs if any(f"{pair.pair_id}-{lang}" not in done for lang in languages)]
    stats.skipped += (len(pairs) - len(todo)) * len(languages)
    if not todo:
        return
    chips = pd.DataFrame([pair.chip._asdict() for pair in todo])
    refinements = refiner.refine(query.pixels, chips, [pair.score for pair in todo])
    query_png = image_root / "queries" / f"s{sampler.seed}-g{number:06d}.png"
    _save_png(query.pixels, query_png)
    base = out_path.parent
    spec = query.spec
    for pair, row, refinement in zip(todo, chips.to_dict("records"), refinements, strict=True):
        reference_png = image_root / "references" / f"{pair.pair_id}.png"
        recorder = _Recorder(explainer)
        for language in languages:
            record_id = f"{pair.pair_id}-{language}"
            if record_id in done:
                stats.skipped += 1
                continue
            bucket.acquire()
            stats.teacher_calls += 1
            try:
                if recorder.reference is None or recorder.evidence is None:
                    explanation = explain_refinement(
                        query.pixels,
                        row,
                        refinement,
                        recorder,
                        language,
                        retrieval_score=pair.score,
                        score_margin=pair.margin,
                        refiner=refiner,
                    )
                else:  # the same inputs again, without measuring the evidence twice
                    explanation = recorder.explain(
                        query.pixels, recorder.reference, recorder.evidence, language
                    )
            except ExplainerError as exc:
                stats.failed += 1
                logger.warning(
                    "%s: teacher %s failed (%s); a later run retries it", record_id, explainer.model_id, exc
                )
                continue
            _save_png(recorder.reference, reference_png)
            yield {
                "id": record_id,
                "pair_id": pair.pair_id,
                "query_image": _relative(query_png, base),
                "reference_image": _relative(reference_png, base),
                "chip_id": str(pair.chip.chip_id),
                "source": _portable(str(pair.chip.source), data_dir),
                "label": pair.label,
                "language": language,
                "evidence": recorder.evidence.to_dict(),
                "verdict": bool(explanation.verdict),
                "confidence": round(float(explanation.confidence), 4),
                "reasoning": explanation.reasoning,
                "teacher": explainer.model_id,
                "prompt_version": PROMPT_VERSION,
                "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "retrieval_rank": pair.rank,
                "query_view": {
                    "crs": query.crs,
                    "centre_xy": [round(v, 3) for v in query.true_xy],
                    "heading_deg": round(query.true_heading_deg, 2),
                    "ground_side_m": round(spec.ground_side_m, 2),
                    "tilt_deg": round(spec.tilt_deg, 2),
                    "source": _portable(spec.source, data_dir),
                },
            }


def main(argv: Sequence[str] | None = None) -> BuildStats:
    """Command line: build or resume a GLEAM-X dataset."""
    parser = argparse.ArgumentParser(prog="python -m training.gleam_x.build_dataset", description=__doc__)
    parser.add_argument("--index", required=True, help="index directory (gleam-geo index build)")
    parser.add_argument(
        "--data", help="folder holding the index's rasters if they moved; `source` is relative to it"
    )
    parser.add_argument(
        "--out", required=True, help="output JSONL (appended to; existing records are skipped)"
    )
    parser.add_argument("--images-dir", required=True, help="folder for the query and reference PNGs")
    parser.add_argument("--count", type=int, default=100, help="positive pairs (groups)")
    parser.add_argument("--negatives-per-positive", type=int, default=1, help="hard negatives per positive")
    parser.add_argument("--languages", nargs="+", default=list(LANGUAGES), choices=LANGUAGES)
    parser.add_argument(
        "--teacher", default="openai", help="explainer: openai (from env), evidence or transformers"
    )
    parser.add_argument(
        "--teacher-setting", nargs="*", default=[], metavar="KEY=VALUE", help="teacher settings"
    )
    parser.add_argument(
        "--rate-limit-rpm",
        type=float,
        help="teacher requests per minute, 0 for none (default: 30, none for the offline evidence teacher)",
    )
    parser.add_argument("--encoder", help="encoder of the index (default: the one in its manifest)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    teacher = get_explainer(args.teacher, **parse_overrides(args.teacher_setting))
    stats = build_dataset(
        args.index,
        args.out,
        args.images_dir,
        teacher=teacher,
        count=args.count,
        negatives_per_positive=args.negatives_per_positive,
        languages=args.languages,
        seed=args.seed,
        rate_limit_rpm=(0 if args.teacher == "evidence" else 30)
        if args.rate_limit_rpm is None
        else args.rate_limit_rpm,
        encoder=args.encoder,
        data_dir=args.data,
    )
    logger.info("%s: %s", args.out, stats)
    return stats


if __name__ == "__main__":
    main()
