"""Explain pairs end to end: refine, measure the evidence, call the backend, draw the figure.

:func:`explain` takes any query and one chip (a ``localize()`` row, a sidecar row or a
:class:`~gleam_geo.records.Chip`); :func:`explain_results` fills the explanation columns
of a ``localize()`` result. Both hand the backend the query and the part of the
reference patch that holds the chip and the photo's projected outline.
"""

from __future__ import annotations

import copy
import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from ..io.images import ImageInput, load_image
from ..raster import open_raster
from ..records import Chip
from ..refine import Refinement, Refiner
from ..schema import EXPLAIN_COLUMNS, column_names
from .base import Explainer, Explanation, check_language
from .cache import default_explanation_dir
from .evidence import measure_evidence
from .figure import write_figure
from .registry import get_explainer

__all__ = ["explain", "explain_refinement", "explain_results", "keeping_images"]

_WINDOW = ("source", "crs", "col_off", "row_off", "width", "height", "gsd_m")
_CROP_PAD = 0.1  # share of the crop's side added around the chip and the outline


def keeping_images(refiner: Refiner | None) -> Refiner:
    """A copy of ``refiner`` (or a default one) that keeps images and never stops early.

    The evidence needs the patches and matches, and every explained row needs its own
    ``match_prob``.
    """
    clone = copy.copy(refiner or Refiner())
    clone.keep_images = True
    clone.stop_prob = None
    return clone


@dataclass
class _Reference:
    """The reference view shown to the backend and drawn, in its own pixel frame."""

    pixels: np.ndarray
    chip_box: np.ndarray
    homography: np.ndarray | None
    query_points: np.ndarray | None
    reference_points: np.ndarray | None


def _chip_box(chip: Mapping[str, Any], refinement: Refinement) -> np.ndarray:
    """The chip's corners in reference patch pixels ``(4, 2)``."""
    source = open_raster(str(chip["source"]))
    col, row = float(chip["col_off"]), float(chip["row_off"])
    width, height = float(chip["width"]), float(chip["height"])
    corners = [(col, row), (col + width, row), (col + width, row + height), (col, row + height)]
    to_patch = ~refinement.patch.transform
    return np.array([to_patch @ (source.transform @ corner) for corner in corners], np.float64)


def _reference_view(query: np.ndarray, chip: Mapping[str, Any], refinement: Refinement) -> _Reference:
    """Crop the patch to the chip plus the photo's projected outline (padded), shifting the geometry."""
    patch = refinement.patch.pixels
    box = _chip_box(chip, refinement)
    verification = refinement.verification
    extent = box
    if verification is not None:
        height, width = query.shape[:2]
        corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float64)
        outline = cv2.perspectiveTransform(corners.reshape(-1, 1, 2), verification.homography)
        extent = np.vstack([box, outline.reshape(-1, 2)])
    low, high = extent.min(axis=0), extent.max(axis=0)
    pad = _CROP_PAD * float((high - low).max())
    x0, y0 = (int(max(0, np.floor(v - pad))) for v in low)
    x1 = int(min(patch.shape[1], np.ceil(high[0] + pad)))
    y1 = int(min(patch.shape[0], np.ceil(high[1] + pad)))
    if x1 - x0 < 8 or y1 - y0 < 8:  # a degenerate box: show the whole patch
        x0, y0, x1, y1 = 0, 0, patch.shape[1], patch.shape[0]
    shift = np.array([x0, y0], np.float64)
    if verification is None:
        return _Reference(np.ascontiguousarray(patch[y0:y1, x0:x1]), box - shift, None, None, None)
    move = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]], np.float64)
    return _Reference(
        np.ascontiguousarray(patch[y0:y1, x0:x1]),
        box - shift,
        move @ verification.homography,
        verification.query_points,
        verification.reference_points - shift,
    )


def explain_refinement(
    query: np.ndarray,
    chip: Mapping[str, Any],
    refinement: Refinement,
    explainer: Explainer,
    language: str = "en",
    *,
    retrieval_score: float | None = None,
    score_margin: float | None = None,
    figure_path: str | os.PathLike[str] | None = None,
    refiner: Refiner | None = None,
) -> Explanation:
    """Explain one refined pair.

    Args:
        query: the photo, RGB uint8.
        chip: the chip's sidecar row (``source``, ``col_off``, ``row_off``, ``width``, ``height``).
        refinement: its refinement, run with ``keep_images=True``.
        explainer: the backend.
        language: "en" or "zh".
        retrieval_score: the chip's retrieval score, when known.
        score_margin: that score minus the strongest other candidate's, when known.
        figure_path: where to write the PNG figure (none when ``None``).
        refiner: the refiner that produced ``refinement``; its matcher counts the putative
            matches of a pair that failed verification.
    """
    language = check_language(language)
    if refinement.patch is None:
        raise ValueError("the refinement holds no reference patch: refine with Refiner(keep_images=True)")
    evidence = measure_evidence(
        query,
        refinement,
        retrieval_score=retrieval_score,
        score_margin=score_margin,
        matcher=refiner.matcher if refiner is not None else None,
        query_max_px=refiner.query_max_px if refiner is not None else 384,
    )
    view = _reference_view(query, chip, refinement)
    explanation = explainer.explain(query, view.pixels, evidence, language)
    if figure_path is not None:
        explanation.figure = write_figure(
            figure_path,
            query,
            view.pixels,
            explanation,
            homography=view.homography,
            query_points=view.query_points,
            reference_points=view.reference_points,
            chip_box=view.chip_box,
        )
    return explanation


def _figure_name(query: np.ndarray, chip_id: str, model_id: str) -> str:
    digest = hashlib.blake2b(np.ascontiguousarray(query).tobytes(), digest_size=8).hexdigest()
    return f"{digest}_{chip_id}_{re.sub(r'[^A-Za-z0-9.-]+', '-', model_id)}.png"


def _chip_row(chip_or_candidate: Any, index: Any) -> tuple[dict[str, Any], float | None]:
    """The chip's sidecar fields and the candidate's retrieval score, when it has one."""
    if isinstance(chip_or_candidate, Chip):
        chip = chip_or_candidate
        return {
            "chip_id": chip.chip_id,
            "source": chip.source,
            "crs": chip.crs,
            **asdict(chip.window),
            "gsd_m": chip.gsd_m,
        }, None
    if not isinstance(chip_or_candidate, (Mapping, pd.Series)):
        raise ValueError(
            f"cannot explain a {type(chip_or_candidate).__name__}: pass a localize() result row, "
            "a chip sidecar row or a gleam_geo.records.Chip"
        )
    row = dict(chip_or_candidate.items())
    score = row.get("score")
    score = None if score is None or pd.isna(score) else float(score)
    if all(name in row for name in _WINDOW):
        return row, score
    if index is None or "chip_id" not in row:
        raise ValueError(
            "the candidate has no chip window (source, col_off, row_off, width, height, gsd_m): "
            "pass index= the index it came from"
        )
    vector_id = int(index.ids_of([row["chip_id"]])[0])
    if vector_id < 0:
        raise ValueError(
            f"chip {row['chip_id']} is not in index {index.path}: pass the index the candidate came from"
        )
    return index.chips([vector_id]).iloc[0].to_dict(), score


def _retrieval(index: Any, query: np.ndarray, chip_id: str, rotations: int = 4) -> tuple[float, float | None]:
    """The chip's retrieval score (best over rotations, as in localize) and its lead over the next chip."""
    from ..api import _encoder_for_index, resolve_modality
    from ..refine import rotated_views

    encoder = _encoder_for_index(index, None)
    views = rotated_views(query, [360.0 * i / rotations for i in range(rotations)])
    vectors = encoder.embed_images(views, resolve_modality("auto", query)).astype(np.float32)
    vector_id = int(index.ids_of([chip_id])[0])
    near_scores, near_ids = index.search(vectors, 64, region=index.chips([vector_id]).geometry.iloc[0])
    score = float(near_scores[near_ids == vector_id].max())
    scores, ids = index.search(vectors, 2)
    others = scores[(ids != vector_id) & (ids >= 0)]
    return score, (score - float(others.max())) if others.size else None


def explain(
    query: ImageInput,
    chip_or_candidate: Any,
    *,
    language: str = "en",
    backend: str | Explainer | None = None,
    index: Any = None,
    figure_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    refiner: Refiner | None = None,
) -> Explanation:
    """Explain whether ``query`` shows the place of one chip: verdict, confidence, reasons.

    The chip is refined against the query (SIFT + RANSAC against its source raster), the
    evidence measured, and the backend asked.

    Args:
        query: anything :func:`gleam_geo.load_image` accepts.
        chip_or_candidate: a row of a ``localize()`` result (needs ``index``), a chip
            sidecar row (``GeoIndex.chips``) or a :class:`~gleam_geo.records.Chip`.
        language: "en" or "zh".
        backend: an explainer name ("evidence", "openai", "transformers", "auto") or
            instance; ``None`` is "auto" (see :func:`gleam_geo.explain.get_explainer`).
        index: the :class:`~gleam_geo.GeoIndex` (or its folder) the chip is in. With it, the
            retrieval score and its margin are measured too.
        figure_dir: write the PNG figure here (named after the query, chip and backend).
        cache_dir: where model backends cache explanations.
        refiner: a configured :class:`~gleam_geo.refine.Refiner`.

    Returns:
        The explanation; ``figure`` is set when ``figure_dir`` was given.
    """
    language = check_language(language)
    explainer = get_explainer(backend, cache_dir=cache_dir)
    image = load_image(query).pixels
    if index is not None and not hasattr(index, "ids_of"):
        from ..index import GeoIndex

        index = GeoIndex.open(index)
    chip, score = _chip_row(chip_or_candidate, index)
    margin = None
    if index is not None and "chip_id" in chip:
        score, margin = _retrieval(index, image, str(chip["chip_id"]))
    refiner = keeping_images(refiner)
    refinement = refiner.refine(image, pd.DataFrame([chip]), [score if score is not None else 0.0])[0]
    figure = None
    if figure_dir is not None:
        figure = Path(figure_dir) / _figure_name(image, str(chip.get("chip_id", "chip")), explainer.model_id)
    return explain_refinement(
        image,
        chip,
        refinement,
        explainer,
        language,
        retrieval_score=score,
        score_margin=margin,
        figure_path=figure,
        refiner=refiner,
    )


def explain_results(
    results: pd.DataFrame,
    query: np.ndarray,
    chips: pd.DataFrame,
    refinements: Mapping[str, Refinement],
    *,
    language: str = "en",
    backend: str | Explainer | None = None,
    top_k: int = 3,
    figure_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    refiner: Refiner | None = None,
) -> pd.DataFrame:
    """Fill the explanation columns (:data:`gleam_geo.schema.EXPLAIN_COLUMNS`) of the top rows.

    Args:
        results: a ``localize()`` result, best first.
        query: the photo, RGB uint8.
        chips: sidecar rows of (at least) the candidates, with ``chip_id``.
        refinements: kept-image refinements by chip id; rows without one are refined here.
        language: "en" or "zh".
        backend: explainer name or instance (see :func:`gleam_geo.explain.get_explainer`).
        top_k: how many of the first rows are explained; the rest get nulls.
        figure_dir: where the figures go (default: ``figures`` in the explanation cache).
        cache_dir: where model backends cache explanations.
        refiner: used for rows that were not refined yet.

    Returns:
        ``results`` with the columns added.
    """
    language = check_language(language)
    if top_k < 0:
        raise ValueError(f"explain_top_k must be at least 0, got {top_k}")
    explainer = get_explainer(backend, cache_dir=cache_dir)
    folder = Path(figure_dir) if figure_dir is not None else default_explanation_dir() / "figures"
    by_id = {str(row["chip_id"]): row for row in chips.to_dict("records")}
    columns: dict[str, list[Any]] = {name: [None] * len(results) for name in column_names(EXPLAIN_COLUMNS)}
    refiner = keeping_images(refiner)
    scores = results["score"].to_numpy(dtype=np.float64)
    for position in range(min(top_k, len(results))):
        chip_id = str(results["chip_id"].iloc[position])
        chip = by_id[chip_id]
        refinement = refinements.get(chip_id)
        if refinement is None or refinement.patch is None:
            refinement = refiner.refine(query, pd.DataFrame([chip]), [scores[position]])[0]
        others = np.delete(scores, position)
        margin = float(scores[position] - others.max()) if len(others) else None
        explanation = explain_refinement(
            query,
            chip,
            refinement,
            explainer,
            language,
            retrieval_score=float(scores[position]),
            score_margin=margin,
            figure_path=folder / _figure_name(query, chip_id, explainer.model_id),
            refiner=refiner,
        )
        for name, value in (
            ("verdict", explanation.verdict),
            ("explanation", explanation.reasoning),
            ("explanation_model", explanation.model),
            ("language", explanation.language),
            ("figure_path", str(explanation.figure) if explanation.figure else None),
        ):
            columns[name][position] = value
    out = results.copy()
    for name, values in columns.items():
        out[name] = pd.array(values, dtype="boolean" if name == "verdict" else "string")
    return out
