"""The results schema: one definition of every column ``localize()`` returns.

The GeoDataFrame, the file writers, the worker protocol and the QGIS results layer all
read their column names, types and meanings from here.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Column", "RESULT_COLUMNS", "CORE_COLUMNS", "EXPLAIN_COLUMNS", "REFINE_COLUMNS", "column_names"]


@dataclass(frozen=True)
class Column:
    """One results column: its name, its type ("int", "float", "str", "bool") and its meaning."""

    name: str
    dtype: str
    description: str


CORE_COLUMNS: tuple[Column, ...] = (
    Column("rank", "int", "1 for the best candidate"),
    Column("score", "float", "cosine similarity between the query and the chip embeddings"),
    Column("chip_id", "str", "stable id of the matched reference chip"),
    Column("source", "str", "raster the chip was cut from"),
    Column("modality", "str", "query view: uav, satellite, street_map, panorama or ground"),
    Column("model", "str", "id of the encoder that embedded the query and the index"),
    Column("query_path", "str", "path of the query image, when it was given as a path"),
)
"""Columns every ``localize()`` result has, besides the ``geometry`` point and ``footprint``."""

REFINE_COLUMNS: tuple[Column, ...] = (
    Column("match_prob", "float", "calibrated probability (0-1) that the refined position is right"),
    Column("heading_deg", "float", "direction of the image's up, degrees clockwise from grid north"),
    Column("error_radius_m", "float", "radius around the point that holds the true position ~9 in 10"),
    Column("gsd_m", "float", "estimated ground size of one query pixel at its centre, metres"),
    Column("inliers", "int", "geometrically verified feature matches (0 when not verified)"),
    Column(
        "refine_method",
        "str",
        "how the position was found: keypoints (verified feature matches) or structure "
        "(edge-layout search, for imagery from another date); null when not placed",
    ),
)
"""Refinement columns; NaN (``inliers`` 0, ``refine_method`` null) for candidates that were not
refined or not verified.
Refined candidates carry the projected query centre as ``geometry`` and its outline as
``footprint``; the others keep the chip centre and the chip polygon."""

RESULT_COLUMNS: tuple[Column, ...] = CORE_COLUMNS + REFINE_COLUMNS
"""All results columns, in the order they are written."""

EXPLAIN_COLUMNS: tuple[Column, ...] = (
    Column("verdict", "bool", "explainer's verdict: true when the photo and the chip show the same place"),
    Column("explanation", "str", "why, in words a person can check against the figure"),
    Column("explanation_model", "str", "explainer that wrote it, e.g. evidence-v1 or openai:gpt-4o"),
    Column("language", "str", "language of the explanation: en or zh"),
    Column("figure_path", "str", "PNG of the photo and the chip side by side, matches and outline drawn"),
)
"""Columns ``localize(..., explain=True)`` adds after :data:`RESULT_COLUMNS`; null for the rows
that were not explained (all but the first ``explain_top_k``)."""


def column_names(columns: tuple[Column, ...] = RESULT_COLUMNS) -> list[str]:
    """Names of ``columns``, in order."""
    return [column.name for column in columns]
