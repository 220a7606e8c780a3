"""What the dock asks for: typed parameters, turned into worker requests by the plugin.

The dock builds one of these from its widgets and emits it; the plugin class turns it
into a task. Nothing here touches widgets, so the dock's output can be tested alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "EXPLAIN_BACKENDS",
    "LANGUAGES",
    "MODALITIES",
    "IndexParameters",
    "LocalizeParameters",
    "ParameterError",
    "Region",
]

MODALITIES: tuple[str, ...] = ("auto", "uav", "street_map", "panorama", "ground")
"""Query views offered in the dock; ``auto`` lets the library choose (uav or panorama)."""
EXPLAIN_BACKENDS: tuple[str, ...] = ("evidence", "openai")
"""Explainer backends: the offline evidence explainer, an OpenAI-compatible endpoint."""
LANGUAGES: tuple[str, ...] = ("en", "zh")
"""Languages explanations can be written in."""


class ParameterError(ValueError):
    """The dock's inputs are incomplete; the message says what to fill in."""


@dataclass(frozen=True)
class Region:
    """Where to search: a polygon as WKT in the CRS ``crs`` (an authority id or WKT)."""

    wkt: str
    crs: str

    def to_params(self) -> dict[str, str]:
        """Return the protocol's ``region`` object."""
        return {"wkt": self.wkt, "crs": self.crs}


@dataclass(frozen=True)
class IndexParameters:
    """Build a new index from rasters, or add rasters to an existing one.

    Attributes:
        rasters: raster file paths.
        index_dir: the index folder to create or update.
        update: add to the existing index instead of building a new one.
        overwrite: replace an existing index when building.
        factory: FAISS factory string for a new index.

    """

    rasters: tuple[str, ...]
    index_dir: str
    update: bool = False
    overwrite: bool = True
    factory: str = "Flat"

    def __post_init__(self) -> None:
        if not self.rasters:
            raise ParameterError("tick at least one raster layer to index")
        if not self.index_dir:
            raise ParameterError("choose the index folder to build or update")

    @property
    def method(self) -> str:
        """Return the worker method this runs."""
        return "add_to_index" if self.update else "build_index"

    def to_params(self, device: str = "") -> dict[str, Any]:
        """Return the worker request's params."""
        if self.update:
            return {"index": self.index_dir, "rasters": list(self.rasters)}
        params: dict[str, Any] = {
            "rasters": list(self.rasters),
            "out_dir": self.index_dir,
            "overwrite": self.overwrite,
            "factory": self.factory,
        }
        if device:
            params["device"] = device
        return params


@dataclass(frozen=True)
class LocalizeParameters:
    """Localize query photos against rasters or an index.

    Attributes:
        images: query photo paths.
        rasters: reference raster paths (indexed on the fly), or empty when ``index_dir`` is set.
        index_dir: an existing index folder, or empty.
        region: only search there; ``None`` for all of the reference imagery.
        modality: one of :data:`MODALITIES`.
        top_k: candidates per photo.
        refine: ask for geometric refinement (heading, error radius, match probability).
        query_gsd_m: the photos' ground size per pixel in metres, when known (0: unknown);
            lets refinement search by edge layout when the imagery is from another date.
        explain: ask for explanations (verdict, text, figure) of the top candidates.
        language: the explanations' language, one of :data:`LANGUAGES`.
        explain_backend: the explainer, one of :data:`EXPLAIN_BACKENDS`.
        footprints: also write the footprints layer.

    """

    images: tuple[str, ...]
    rasters: tuple[str, ...] = ()
    index_dir: str = ""
    region: Region | None = None
    modality: str = "auto"
    top_k: int = 10
    refine: bool = True
    query_gsd_m: float = 0.0
    explain: bool = False
    language: str = "en"
    explain_backend: str = "evidence"
    footprints: bool = True

    def __post_init__(self) -> None:
        if not self.images:
            raise ParameterError("add at least one query photo (Add photos…, or drop files on the panel)")
        if not self.rasters and not self.index_dir:
            raise ParameterError("choose reference imagery: tick raster layers or pick an index folder")
        if self.modality not in MODALITIES:
            raise ParameterError(f"unknown modality {self.modality!r}; use one of {', '.join(MODALITIES)}")
        if not 1 <= self.top_k <= 1000:
            raise ParameterError("top-K must be between 1 and 1000")
        if not 0 <= self.query_gsd_m <= 1000:
            raise ParameterError("the photo ground size must be 0 (unknown) to 1000 m per pixel")
        if self.language not in LANGUAGES:
            raise ParameterError(f"unknown language {self.language!r}; use one of {', '.join(LANGUAGES)}")
        if self.explain_backend not in EXPLAIN_BACKENDS:
            raise ParameterError(
                f"unknown explainer {self.explain_backend!r}; use one of {', '.join(EXPLAIN_BACKENDS)}"
            )

    def to_params(
        self, chip_dir: str | None = None, device: str = "", figure_dir: str | None = None
    ) -> dict[str, Any]:
        """Return the worker's ``localize`` params.

        ``chip_dir`` receives matched-chip PNGs and ``figure_dir`` explanation figures.
        """
        params: dict[str, Any] = {
            "images": list(self.images),
            "region": None if self.region is None else self.region.to_params(),
            "modality": self.modality,
            "top_k": self.top_k,
            "refine": self.refine,
            "explain": self.explain,
        }
        if self.query_gsd_m > 0:
            params["query_gsd_m"] = self.query_gsd_m
        if self.explain:
            params["language"] = self.language
            params["explain_backend"] = self.explain_backend
            if figure_dir:
                params["figure_dir"] = figure_dir
        if self.index_dir:
            params["index"] = self.index_dir
        else:
            params["rasters"] = list(self.rasters)
        if chip_dir:
            params["chip_dir"] = chip_dir
        if device:
            params["device"] = device
        return params
