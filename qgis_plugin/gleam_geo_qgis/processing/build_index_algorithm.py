"""``gleam_geo:build_index``: chip and embed rasters into a GeoIndex folder (or add to one)."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterString,
)
from qgis.PyQt.QtGui import QIcon

from ..parameters import IndexParameters, ParameterError
from .common import CANCELLED, GROUP, GROUP_ID, gleam_icon, layer_file, run_worker

__all__ = ["BuildIndexAlgorithm"]


class BuildIndexAlgorithm(QgsProcessingAlgorithm):
    """Build a GLEAM index from rasters, or add rasters to an existing one."""

    RASTERS = "RASTERS"
    OUTPUT = "OUTPUT"
    UPDATE = "UPDATE"
    OVERWRITE = "OVERWRITE"
    FACTORY = "FACTORY"
    CHIPS = "CHIPS"

    def name(self) -> str:
        """Return the algorithm id within the provider."""
        return "build_index"

    def displayName(self) -> str:
        """Return the name shown in the toolbox."""
        return "Build GLEAM index"

    def group(self) -> str:
        """Return the toolbox group."""
        return GROUP

    def groupId(self) -> str:
        """Return the toolbox group id."""
        return GROUP_ID

    def tags(self) -> list[str]:
        """Return search words for the toolbox."""
        return ["index", "embedding", "faiss", "raster", "chips", "gleam"]

    def shortDescription(self) -> str:
        """Return the one-line description shown in the toolbox and the Modeler."""
        return "Indexes reference rasters so that Localize photos can search them quickly."

    def shortHelpString(self) -> str:
        """Return the help shown beside the dialog."""
        return (
            "Cuts the rasters into chips, embeds them with the GLEAM encoder and stores them in an "
            "index folder that <i>Localize photos</i> can search (in a model, connect this algorithm's "
            "index folder to its <b>Index folder</b> input).<h3>Parameters</h3><ul>"
            "<li><b>Reference rasters</b>: georeferenced GeoTIFFs or other local raster files.</li>"
            "<li><b>Add to an existing index</b>: add the rasters to the index in the output folder "
            "(rasters already in it are skipped).</li>"
            "<li><b>Replace an existing index</b>: overwrite a non-empty output folder.</li>"
            "<li><b>FAISS index type</b>: a FAISS factory string; <i>Flat</i> searches exactly.</li></ul>"
            "<h3>Outputs</h3>The index folder and its number of chips. The work runs in the GLEAM "
            "worker Python (Plugins &gt; GLEAM &gt; GLEAM settings); a cancelled build leaves no index "
            "behind."
        )

    def icon(self) -> QIcon:
        """Return the algorithm icon."""
        return gleam_icon()

    def createInstance(self) -> BuildIndexAlgorithm:
        """Return a new instance (Processing runs each in its own)."""
        return BuildIndexAlgorithm()

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:
        """Declare the parameters and outputs."""
        self.addParameter(
            QgsProcessingParameterMultipleLayers(self.RASTERS, "Reference rasters", QgsProcessing.TypeRaster)
        )
        self.addParameter(QgsProcessingParameterBoolean(self.UPDATE, "Add to an existing index", False))
        self.addParameter(QgsProcessingParameterBoolean(self.OVERWRITE, "Replace an existing index", False))
        factory = QgsProcessingParameterString(self.FACTORY, "FAISS index type", "Flat")
        factory.setFlags(factory.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(factory)
        self.addParameter(QgsProcessingParameterFolderDestination(self.OUTPUT, "Index folder"))
        self.addOutput(QgsProcessingOutputNumber(self.CHIPS, "Chips in the index"))

    def processAlgorithm(
        self, parameters: dict[str, Any], context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        """Build or update the index in the worker."""
        rasters = tuple(
            layer_file(layer) for layer in self.parameterAsLayerList(parameters, self.RASTERS, context)
        )
        try:
            request = IndexParameters(
                rasters=rasters,
                index_dir=self.parameterAsString(parameters, self.OUTPUT, context),
                update=self.parameterAsBoolean(parameters, self.UPDATE, context),
                overwrite=self.parameterAsBoolean(parameters, self.OVERWRITE, context),
                factory=self.parameterAsString(parameters, self.FACTORY, context) or "Flat",
            )
        except ParameterError as exc:
            raise QgsProcessingException(str(exc)) from None
        result = run_worker(request.method, request.to_params(), feedback)
        if result is CANCELLED:
            return {}
        feedback.pushInfo(f"GLEAM index {result.get('path')}: {result.get('chips')} chips")
        return {self.OUTPUT: result.get("path") or request.index_dir, self.CHIPS: result.get("chips")}
