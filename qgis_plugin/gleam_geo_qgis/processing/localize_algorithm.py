"""``gleam_geo:localize``: find where many photos were taken; write points (and footprints)."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsFeatureSink,
    QgsGeometry,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFile,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsWkbTypes,
)
from qgis.PyQt.QtGui import QIcon

from ..layers import features_from_result, result_fields, results_crs
from ..parameters import EXPLAIN_BACKENDS, LANGUAGES, MODALITIES, LocalizeParameters, ParameterError, Region
from ..settings import PluginSettings
from .common import CANCELLED, GROUP, GROUP_ID, gleam_icon, layer_file, run_worker, style_on_load

__all__ = ["LocalizeAlgorithm"]


class LocalizeAlgorithm(QgsProcessingAlgorithm):
    """Localize query photos against reference rasters or an index."""

    IMAGES = "IMAGES"
    RASTERS = "RASTERS"
    INDEX = "INDEX"
    EXTENT = "EXTENT"
    POLYGONS = "POLYGONS"
    MODALITY = "MODALITY"
    TOP_K = "TOP_K"
    REFINE = "REFINE"
    QUERY_GSD = "QUERY_GSD"
    EXPLAIN = "EXPLAIN"
    EXPLAIN_BACKEND = "EXPLAIN_BACKEND"
    LANGUAGE = "LANGUAGE"
    CHIP_FOLDER = "CHIP_FOLDER"
    OUTPUT = "OUTPUT"
    FOOTPRINTS = "FOOTPRINTS"
    COUNT = "COUNT"

    def name(self) -> str:
        """Return the algorithm id within the provider."""
        return "localize"

    def displayName(self) -> str:
        """Return the name shown in the toolbox."""
        return "Localize photos"

    def group(self) -> str:
        """Return the toolbox group."""
        return GROUP

    def groupId(self) -> str:
        """Return the toolbox group id."""
        return GROUP_ID

    def tags(self) -> list[str]:
        """Return search words for the toolbox."""
        return ["geolocation", "photo", "drone", "uav", "street view", "image matching", "gleam"]

    def shortDescription(self) -> str:
        """Return the one-line description shown in the toolbox and the Modeler."""
        return "Finds where photos were taken by matching them against reference imagery."

    def shortHelpString(self) -> str:
        """Return the help shown beside the dialog."""
        return (
            "Finds where each query photo was taken by matching it against the reference rasters "
            "(indexed on the fly and cached) or an index folder built with <i>Build GLEAM index</i>, and "
            "writes the top-K candidate positions per photo as points, optionally with the matched "
            "chips' footprints.<h3>Parameters</h3><ul>"
            "<li><b>Query photos</b>: image files (JPEG, PNG, TIFF); many are run in one batch.</li>"
            "<li><b>Reference rasters</b> or <b>Index folder</b>: where to search; give one of them.</li>"
            "<li><b>Search only in this extent</b> / <b>polygons</b>: limit the search (needs an index "
            "folder).</li>"
            "<li><b>Modality</b>: what the photos show; <i>auto</i> lets the library decide.</li>"
            "<li><b>Refine</b>: estimate heading, error radius and match probability.</li>"
            "<li><b>Explain</b>: add a verdict, an explanation and a figure (photo beside chip) to the "
            "best candidates, with the explainer and language of the advanced parameters.</li></ul>"
            "<h3>Outputs</h3>Points in EPSG:4326 with rank, score, match probability, heading, error "
            "radius, chip, source raster, model and the explanation fields; a field the library does not "
            "fill stays NULL. The work runs in the GLEAM worker Python (Plugins &gt; GLEAM &gt; GLEAM "
            "settings); cancelling stops it."
        )

    def icon(self) -> QIcon:
        """Return the algorithm icon."""
        return gleam_icon()

    def createInstance(self) -> LocalizeAlgorithm:
        """Return a new instance (Processing runs each in its own)."""
        return LocalizeAlgorithm()

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:
        """Declare the parameters and outputs."""
        self.addParameter(
            QgsProcessingParameterMultipleLayers(self.IMAGES, "Query photos", QgsProcessing.TypeFile)
        )
        self.addParameter(
            QgsProcessingParameterMultipleLayers(
                self.RASTERS, "Reference rasters", QgsProcessing.TypeRaster, optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterFile(
                self.INDEX,
                "Index folder (instead of rasters)",
                QgsProcessingParameterFile.Folder,
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterExtent(self.EXTENT, "Search only in this extent", optional=True)
        )
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                self.POLYGONS,
                "Search only in these polygons",
                [QgsProcessing.TypeVectorPolygon],
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterEnum(self.MODALITY, "Modality", list(MODALITIES), defaultValue=0)
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.TOP_K, "Candidates per photo", QgsProcessingParameterNumber.Integer, 10, minValue=1
            )
        )
        self.addParameter(
            QgsProcessingParameterBoolean(self.REFINE, "Refine (when the library offers it)", True)
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.QUERY_GSD,
                "Photo ground size, m per pixel (0: unknown; known, it finds imagery of another date)",
                QgsProcessingParameterNumber.Double,
                0.0,
                minValue=0.0,
                maxValue=1000.0,
            )
        )
        self.addParameter(QgsProcessingParameterBoolean(self.EXPLAIN, "Explain the best matches", False))
        backend = QgsProcessingParameterEnum(
            self.EXPLAIN_BACKEND,
            "Explainer",
            ["as in GLEAM settings", *EXPLAIN_BACKENDS],
            defaultValue=0,
        )
        language = QgsProcessingParameterEnum(
            self.LANGUAGE, "Explanation language", ["as in GLEAM settings", *LANGUAGES], defaultValue=0
        )
        chip_folder = QgsProcessingParameterFile(
            self.CHIP_FOLDER,
            "Folder for matched-chip images and explanation figures",
            QgsProcessingParameterFile.Folder,
            optional=True,
        )
        for advanced in (backend, language, chip_folder):
            advanced.setFlags(advanced.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(advanced)
        self.addParameter(
            QgsProcessingParameterFeatureSink(
                self.OUTPUT, "GLEAM localizations", QgsProcessing.TypeVectorPoint
            )
        )
        self.addParameter(
            QgsProcessingParameterFeatureSink(
                self.FOOTPRINTS,
                "GLEAM footprints",
                QgsProcessing.TypeVectorPolygon,
                optional=True,
                createByDefault=False,
            )
        )
        self.addOutput(QgsProcessingOutputNumber(self.COUNT, "Candidates written"))

    def _region(self, parameters: dict[str, Any], context: QgsProcessingContext) -> Region | None:
        source = self.parameterAsSource(parameters, self.POLYGONS, context)
        if source is not None:
            geometries = [feature.geometry() for feature in source.getFeatures() if feature.hasGeometry()]
            if not geometries:
                raise QgsProcessingException("the region polygons layer has no polygons")
            crs = source.sourceCrs()
            return Region(QgsGeometry.unaryUnion(geometries).asWkt(), crs.authid() or crs.toWkt())
        if parameters.get(self.EXTENT) in (None, ""):
            return None
        extent = self.parameterAsExtent(parameters, self.EXTENT, context)
        if extent.isNull():
            return None
        crs = self.parameterAsExtentCrs(parameters, self.EXTENT, context)
        return Region(QgsGeometry.fromRect(extent).asWkt(), crs.authid() or crs.toWkt())

    def _explainer(self, parameters: dict[str, Any], context: QgsProcessingContext) -> dict[str, str]:
        """Return the explainer backend and language: the parameters', else GLEAM settings'."""
        settings = PluginSettings.load().with_defaults()
        backend = self.parameterAsEnum(parameters, self.EXPLAIN_BACKEND, context)
        language = self.parameterAsEnum(parameters, self.LANGUAGE, context)
        return {
            "explain_backend": EXPLAIN_BACKENDS[backend - 1] if backend else settings.explain_backend,
            "language": LANGUAGES[language - 1] if language else settings.language,
        }

    def processAlgorithm(
        self, parameters: dict[str, Any], context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        """Localize the photos in the worker and write the candidates."""
        rasters = tuple(
            layer_file(layer) for layer in self.parameterAsLayerList(parameters, self.RASTERS, context)
        )
        try:
            request = LocalizeParameters(
                images=tuple(self.parameterAsFileList(parameters, self.IMAGES, context)),
                rasters=rasters,
                index_dir=self.parameterAsFile(parameters, self.INDEX, context) or "",
                region=self._region(parameters, context),
                modality=MODALITIES[self.parameterAsEnum(parameters, self.MODALITY, context)],
                top_k=self.parameterAsInt(parameters, self.TOP_K, context),
                refine=self.parameterAsBoolean(parameters, self.REFINE, context),
                query_gsd_m=self.parameterAsDouble(parameters, self.QUERY_GSD, context),
                explain=self.parameterAsBoolean(parameters, self.EXPLAIN, context),
                **self._explainer(parameters, context),
            )
        except ParameterError as exc:
            raise QgsProcessingException(str(exc)) from None
        chip_folder = self.parameterAsFile(parameters, self.CHIP_FOLDER, context) or None
        params = request.to_params(chip_dir=chip_folder, figure_dir=chip_folder)
        result = run_worker("localize", params, feedback)
        if result is CANCELLED:
            return {}
        for failure in result.get("failed") or []:
            feedback.reportError(f"{failure.get('image')}: {failure.get('message')}", fatalError=False)
        for note in result.get("notes") or []:
            feedback.pushWarning(note)
        points, footprints = features_from_result(result)
        sink, output_id = self.parameterAsSink(
            parameters, self.OUTPUT, context, result_fields(), QgsWkbTypes.Point, results_crs()
        )
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT))
        sink.addFeatures(points, QgsFeatureSink.FastInsert)
        style_on_load(context, output_id, "GLEAM localizations")
        outputs: dict[str, Any] = {self.OUTPUT: output_id, self.COUNT: len(points)}
        footprint_sink, footprint_id = self.parameterAsSink(
            parameters, self.FOOTPRINTS, context, result_fields(), QgsWkbTypes.Polygon, results_crs()
        )
        if footprint_sink is not None:
            footprint_sink.addFeatures(footprints, QgsFeatureSink.FastInsert)
            style_on_load(context, footprint_id, "GLEAM footprints", footprints=True)
            outputs[self.FOOTPRINTS] = footprint_id
        feedback.pushInfo(f"GLEAM: {len(points)} candidates for {len(request.images)} photo(s)")
        return outputs
